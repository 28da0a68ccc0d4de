"""The Dockerfile, read as a reviewer would (slim base, non-root user, healthcheck, gunicorn entry point
with the shipped config, models as a volume), then its command lines run here: the gunicorn CMD from
the project root (where `recsvc/gunicorn.conf.py` is, as under the image's WORKDIR) with the image's
environment, and the HEALTHCHECK command against it. No Docker engine runs on this machine."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys

import pytest

from tests.service import Server, free_port, server_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def instructions(path: str) -> list[tuple[str, str]]:
    """[(INSTRUCTION, arguments)] with continuation lines joined and comments dropped."""
    out, buf = [], ""
    with open(path, encoding="utf-8") as f:
        for line in f:
            s = line.rstrip("\n")
            if not buf and (not s.strip() or s.lstrip().startswith("#")):
                continue
            if s.endswith("\\"):
                buf += s[:-1] + " "
                continue
            buf += s
            word, _, rest = buf.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
            buf = ""
    return out


def final_stage(ins: list[tuple[str, str]]) -> list[tuple[str, str]]:
    last = max(k for k, (i, _) in enumerate(ins) if i == "FROM")
    return ins[last:]


def env_of(stage) -> dict[str, str]:
    env = {}
    for i, args in stage:
        if i == "ENV":
            for tok in shlex.split(args):
                k, _, v = tok.partition("=")
                env[k] = v
    return env


def exec_form(args: str) -> list[str]:
    argv = json.loads(args)
    assert isinstance(argv, list) and all(isinstance(a, str) for a in argv), "exec form (JSON array) expected"
    return argv


@pytest.fixture(scope="module")
def stage():
    return final_stage(instructions(os.path.join(ROOT, "Dockerfile")))


def test_slim_python_base_for_every_stage():
    froms = [a.split()[0] for i, a in instructions(os.path.join(ROOT, "Dockerfile")) if i == "FROM"]
    assert froms and all(f == "python:3.11-slim" for f in froms)


def test_runs_as_a_non_root_user(stage):
    users = [a for i, a in stage if i == "USER"]
    assert users and users[-1] not in ("root", "0", "0:0")
    assert any(i == "RUN" and "useradd" in a for i, a in stage)


def test_models_volume_blas_threads_and_install(stage):
    volumes = [a for i, a in stage if i == "VOLUME"]
    assert any("/models" in v for v in volumes)
    env = env_of(stage)
    assert env["RECSVC_MODELS_DIR"] == "/models"
    assert env["OPENBLAS_NUM_THREADS"] == env["OMP_NUM_THREADS"] == "1"
    assert any(i == "RUN" and "pip install" in a for i, a in stage)
    assert "curl" not in " ".join(a for _, a in stage)  # not in slim images


def test_event_log_lives_in_a_volume_the_user_owns(stage):
    """The embedded store fsyncs every acknowledged event to RECSVC_EVENT_LOG: the service user
    must be able to write there, and it must outlive the container."""
    log = env_of(stage)["RECSVC_EVENT_LOG"]
    folder = os.path.dirname(log)
    assert any(folder in a.split() for i, a in stage if i == "VOLUME")
    assert any(i == "RUN" and "chown" in a and folder in a for i, a in stage)


def test_healthcheck_and_gunicorn_entry_point(stage):
    hc = [a for i, a in stage if i == "HEALTHCHECK"]
    assert len(hc) == 1 and "/healthz" in hc[0]
    cmd = [a for i, a in stage if i in ("CMD", "ENTRYPOINT")]
    assert exec_form(cmd[-1]) == ["gunicorn", "-c", "recsvc/gunicorn.conf.py", "recsvc.wsgi:app"]
    assert os.path.isfile(os.path.join(ROOT, "recsvc", "gunicorn.conf.py"))


def test_dockerignore_keeps_the_context_small():
    with open(os.path.join(ROOT, ".dockerignore"), encoding="utf-8") as f:
        lines = f.read().split()
    assert {".git", "models", "tests"} <= set(lines)


@pytest.mark.slow
def test_the_declared_commands_run(stage, models_dir, tmp_path):
    env = server_env(models_dir)
    image_env = env_of(stage)
    port = free_port()
    env.update({k: v for k, v in image_env.items() if k != "RECSVC_MODELS_DIR"})
    # the image's /data volume is this test's scratch folder
    env.update({k: v.replace("/data/", f"{tmp_path}/", 1) for k, v in image_env.items() if v.startswith("/data/")})
    env["RECSVC_BIND"] = f"127.0.0.1:{port}"
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    cmd = exec_form([a for i, a in stage if i == "CMD"][-1])
    server = Server(cmd, env, ROOT, port, str(tmp_path / "gunicorn.log"))
    try:
        server.wait_ready()
        hc = next(a for i, a in stage if i == "HEALTHCHECK")
        argv = exec_form(hc[hc.index("CMD") + 3 :].strip())
        argv[0] = sys.executable if argv[0] == "python" else argv[0]
        ok = subprocess.run(
            argv, check=False, env=env, timeout=30, capture_output=True, text=True, stdin=subprocess.DEVNULL
        )
        assert ok.returncode == 0, ok.stderr
    finally:
        server.stop()
    env["RECSVC_BIND"] = f"127.0.0.1:{free_port()}"  # nothing listens there: the healthcheck must fail
    bad = subprocess.run(
        argv, check=False, env=env, timeout=30, capture_output=True, stdin=subprocess.DEVNULL
    )
    assert bad.returncode != 0
