"""Configuration from RECSVC_* variables: documented defaults, one-line errors naming the variable."""

from __future__ import annotations

import subprocess

import pytest

from recsvc.config import VARIABLES, Config, ConfigError
from tests.service import GUNICORN, GUNICORN_CONF, PYTHON, free_port, server_env


def test_defaults():
    c = Config.from_env({})
    assert (c.models_dir, c.model, c.store_url, c.auth, c.consent_default) == (
        "models",
        "champion",
        "memory://",
        True,  # API keys required unless RECSVC_AUTH=off is set
        True,
    )
    assert c.max_body_bytes == 1 << 20 and c.reload_poll_s == 5.0 and c.max_per_category is None
    assert c.keys_file == "recsvc-keys.json" and c.keys_secret is None and c.cors_origins == ()
    assert dict(c.rate_limits) == {"storefront": 300000, "clerk": 600, "analyst": 600, "admin": 6000}
    assert c.rate_window_s == 60


def test_every_variable_is_read():
    env = {
        "RECSVC_MODELS_DIR": "/m",
        "RECSVC_MODEL": "als-1",
        "RECSVC_STORE_URL": "redis://h:1/2?prefix=p",
        "RECSVC_AUTH": "off",
        "RECSVC_KEYS_FILE": "/k",
        "RECSVC_CONSENT_DEFAULT": "denied",
        "RECSVC_MAX_PER_CATEGORY": "3",
        "RECSVC_REDIS_TIMEOUT_MS": "50",
        "RECSVC_MAX_BODY_BYTES": "2048",
        "RECSVC_LOG_LEVEL": "debug",
        "RECSVC_EVENT_LOG": "/e",
        "RECSVC_RELOAD_POLL_S": "0",
        "RECSVC_RUNTIME_DIR": "/r",
        "RECSVC_ERASURE_KEY": "0123456789abcdef0123",
        "RECSVC_EXPERIMENTS_FILE": "/x.json",
        "RECSVC_EXPERIMENTS_POLL_S": "2",
        "RECSVC_KEYS_SECRET": "fedcba9876543210fedc",
        "RECSVC_RATE_LIMIT": "clerk=30, storefront=0",
        "RECSVC_RATE_WINDOW_S": "10",
        "RECSVC_CORS_ORIGINS": "https://shop.example.com, http://localhost:3000/",
        "RECSVC_ANN_MIN_ITEMS": "50000",
    }
    assert set(env) == set(VARIABLES)
    c = Config.from_env(env)
    assert c == Config(
        models_dir="/m",
        model="als-1",
        store_url="redis://h:1/2?prefix=p",
        auth=False,
        keys_file="/k",
        consent_default=False,
        max_per_category=3,
        redis_timeout_ms=50,
        max_body_bytes=2048,
        log_level="DEBUG",
        event_log="/e",
        reload_poll_s=0.0,
        runtime_dir="/r",
        erasure_key="0123456789abcdef0123",
        experiments_file="/x.json",
        experiments_poll_s=2.0,
        keys_secret="fedcba9876543210fedc",
        rate_limits=(("admin", 6000), ("analyst", 600), ("clerk", 30), ("storefront", 0)),
        rate_window_s=10,
        cors_origins=("https://shop.example.com", "http://localhost:3000"),
        ann_min_items=50000,
    )
    assert Config.from_env(env, models_dir="/x", model=None).models_dir == "/x"


@pytest.mark.parametrize(
    "var, value",
    [
        ("RECSVC_AUTH", "maybe"),
        ("RECSVC_CONSENT_DEFAULT", "yes"),
        ("RECSVC_MAX_PER_CATEGORY", "0"),
        ("RECSVC_REDIS_TIMEOUT_MS", "fast"),
        ("RECSVC_MAX_BODY_BYTES", "-1"),
        ("RECSVC_LOG_LEVEL", "LOUD"),
        ("RECSVC_RELOAD_POLL_S", "nan"),
        ("RECSVC_STORE_URL", "mongodb://x"),
        ("RECSVC_KEYS_SECRET", "short"),
        ("RECSVC_RATE_LIMIT", "cashier=10"),
        ("RECSVC_RATE_LIMIT", "clerk=lots"),
        ("RECSVC_RATE_WINDOW_S", "0"),
        ("RECSVC_CORS_ORIGINS", "shop.example.com"),
        ("RECSVC_ANN_MIN_ITEMS", "0"),
        ("RECSVC_ANN_MIN_ITEMS", "many"),
    ],
)
def test_bad_values_name_the_variable(var, value):
    with pytest.raises(ConfigError) as info:
        Config.from_env({var: value})
    assert str(info.value).startswith(f"{var}=") and "\n" not in str(info.value)


def test_serve_refuses_a_bad_variable_in_one_line(models_dir, tmp_path):
    env = server_env(models_dir, RECSVC_CONSENT_DEFAULT="perhaps")
    p = subprocess.run(
        [PYTHON, "-m", "recsvc", "serve", "--port", str(free_port())],
        check=False,
        env=env,
        cwd=str(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert p.returncode == 2
    assert p.stderr.strip().splitlines()[-1] == (
        "recsvc serve: RECSVC_CONSENT_DEFAULT='perhaps': expected granted or denied"
    )


def test_gunicorn_stops_on_a_bad_variable(models_dir, tmp_path):
    env = server_env(models_dir, RECSVC_MAX_PER_CATEGORY="lots")
    p = subprocess.run(
        [
            GUNICORN,
            "-c",
            GUNICORN_CONF,
            "recsvc.wsgi:app",
            "--bind",
            f"127.0.0.1:{free_port()}",
            "--workers",
            "1",
        ],
        check=False,
        env=env,
        cwd=str(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert p.returncode != 0
    assert "recsvc: RECSVC_MAX_PER_CATEGORY='lots': expected a whole number from 1 to 100" in p.stderr


def test_cli_help():
    p = subprocess.run(
        [PYTHON, "-m", "recsvc", "--help"], check=False, capture_output=True, text=True, timeout=60
    )
    assert p.returncode == 0 and "serve" in p.stdout and "demo" in p.stdout


def test_the_readme_documents_every_variable():
    import os

    with open(os.path.join(os.path.dirname(__file__), "..", "..", "README.md"), encoding="utf-8") as f:
        readme = f.read()
    table = readme[readme.index("## Configuration"):readme.index("## Operating recsvc")]
    assert [v for v in VARIABLES if f"`{v}`" not in table] == []
