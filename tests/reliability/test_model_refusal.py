"""A corrupt or partial model artifact (bad checksum, missing array, unknown format version, no manifest)
never gets served: under a real gunicorn with 2 workers, by `POST /v1/models/reload` or by moving the
`champion` alias, it is refused with one log line naming the model and what is wrong, the previous
model keeps serving on every worker (a worker respawned after kill -9 included), and /readyz of every
worker says why; before any model was ever loaded, /readyz is 503 with the reason."""

from __future__ import annotations

import os
import signal
import time

import pytest

from recsvc.artifact.registry import Registry
from tests.reliability import (
    BROKEN_KINDS,
    REASON,
    broken_model,
    every_worker,
    gunicorn,
    later_model,
    point_alias,
    refusal_lines,
    worker_pids,
    workers_up,
)
from tests.service import request

pytestmark = [pytest.mark.slow]

REC = {"customer": {"customer_id": "c00003"}, "context": {"channel": "store", "store_id": "s1"}, "n": 5}


def serving(model_id: str, reason: str | None):
    """check(status, js) of /readyz: ready, serving model_id, last_error naming `reason` (or none)."""

    def check(status, js):
        if status != 200 or js.get("ready") is not True or js.get("model_id") != model_id:
            return False
        err = js.get("last_error")
        return err is None if reason is None else bool(err) and reason in err
    return check


def recommends_from(server, model_id: str) -> None:
    every_worker(server, "/v1/recommendations", lambda s, js: s == 200 and js["model_id"] == model_id,
                 method="POST", body=REC)


def test_a_broken_model_posted_for_reload_is_refused_and_every_worker_keeps_the_old_one(models_dir, tmp_path):
    first = Registry(models_dir).alias("champion")
    server = gunicorn(models_dir, "memory://", tmp_path, "post", RECSVC_RELOAD_POLL_S="0.2")
    try:
        for seed, kind in enumerate(BROKEN_KINDS, start=1):
            bad = broken_model(models_dir, kind, seed)
            status, js = request("POST", server.base + "/v1/models/reload", {"model": bad})
            assert status == 409 and js["error"]["code"] == "model_refused", js
            assert REASON[kind] in js["error"]["message"] and f"still serving {first}" in js["error"]["message"]
            ready = every_worker(server, "/readyz", serving(first, REASON[kind]))[1]
            assert bad in ready["last_error"]  # which model, and what is wrong with it
            recommends_from(server, first)
            [line] = refusal_lines(server, bad)  # one line, from the worker that got the request
            assert REASON[kind] in line["msg"] and line["model_id"] == first and line["refused_model"] == bad
        good = later_model(models_dir, seed=7)
        status, js = request("POST", server.base + "/v1/models/reload", {"model": good})
        assert status == 200 and js["model_id"] == good
        every_worker(server, "/readyz", serving(good, None))  # the refusals are history now
        recommends_from(server, good)
    finally:
        server.stop()
    assert "Traceback" not in server.log()


def test_a_champion_moved_to_a_broken_model_is_refused_once_and_survives_a_worker_crash(models_dir, tmp_path):
    reg = Registry(models_dir)
    first = reg.alias("champion")
    server = gunicorn(models_dir, "memory://", tmp_path, "alias", RECSVC_RELOAD_POLL_S="0.2")
    try:
        for seed, kind in enumerate((*BROKEN_KINDS, "no_manifest"), start=1):
            bad = broken_model(models_dir, kind, seed)
            point_alias(models_dir, "champion", bad)
            ready = every_worker(server, "/readyz", serving(first, REASON[kind]))[1]
            assert bad in ready["last_error"]
            recommends_from(server, first)
            [line] = refusal_lines(server, bad)  # both workers polled the alias; one decided and logged
            assert REASON[kind] in line["msg"] and line["model_id"] == first
        # champion still points at a broken folder: a worker killed now comes back serving the last good model
        victim = worker_pids(server)[0]
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while victim in worker_pids(server) and time.monotonic() < deadline:
            time.sleep(0.05)
        workers_up(server, 2)
        every_worker(server, "/readyz", serving(first, REASON["no_manifest"]), streak=16)
        recommends_from(server, first)
        assert len(refusal_lines(server, bad)) == 1  # the new worker adopted the refusal, no second line
        good = later_model(models_dir, seed=7)
        reg.set_alias("champion", good)  # fixed: every worker moves on
        every_worker(server, "/readyz", serving(good, None))
        recommends_from(server, good)
    finally:
        server.stop()
    assert "Traceback" not in server.log()


def test_before_any_model_loads_readyz_is_503_with_the_reason(models_dir, tmp_path):
    bad = broken_model(models_dir, "checksum", seed=1)
    point_alias(models_dir, "champion", bad)
    server = gunicorn(models_dir, "memory://", tmp_path, "none", ready=False, RECSVC_RELOAD_POLL_S="0.2")
    try:
        def not_ready(status, js):
            return (status == 503 and js["ready"] is False and js["model_id"] is None
                    and js["error"]["code"] == "not_ready" and "checksum" in js["error"]["message"]
                    and bad in js["error"]["message"] and "checksum" in js["last_error"])

        every_worker(server, "/readyz", not_ready)
        status, js = request("POST", server.base + "/v1/recommendations", REC)
        assert status == 503 and js["error"]["code"] == "model_not_ready" and "/readyz" in js["error"]["message"]
        assert len(refusal_lines(server, bad)) == 1  # two workers started on it; one line says why
        good = later_model(models_dir, seed=7)
        Registry(models_dir).set_alias("champion", good)
        every_worker(server, "/readyz", serving(good, None))
        recommends_from(server, good)
    finally:
        server.stop()
    assert "Traceback" not in server.log()
