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
        False,
        True,
    )
    assert c.max_body_bytes == 1 << 20 and c.reload_poll_s == 5.0 and c.max_per_category is None


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
