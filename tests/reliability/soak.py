"""The soak run shared by tests/reliability/test_soak.py (which asserts on its outcome) and bench/soak.py
(which runs it alone and prints): mixed traffic against a real gunicorn (2 workers) on a redis-server of
its own (appendonly yes, appendfsync always), during which Redis is restarted once (stop, start on the
same port from the same AOF folder) and the `champion` alias is moved once to a newly published model.

Traffic, from a few threads on loopback, for `duration` seconds:
- recommendations on all four channels (known, new and anonymous customers; some with a store in
  context), and similar items;
- event batches with fresh event ids (a 503 or a reset connection is retried later with the same ids,
  as a client must); every tenth post re-sends a batch already acknowledged (it must count 0 accepted);
- consent changes, identifier links and lookups, customer views.

The outcome holds every answer (endpoint, status, latency, Retry-After, fallback_reason, model_id), what
was acknowledged, and the times of the Redis restart and the model move; `summary()` turns it into the
figures written to bench/results/soak.json (error rate and latency percentiles per endpoint).
"""

from __future__ import annotations

import http.client
import json
import os
import random
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from recsvc.artifact.registry import Registry
from tests.realtime import RedisServer, event
from tests.reliability import gunicorn, later_model, live_event_ids, stream_event_ids, worker_pids

CHANNELS = ("web", "app", "store", "call_center")
BATCH = 20
OUTAGE_GRACE_S = 5.0  # after Redis is back: a worker's breaker (1 s) and its first reconnect may still 503
LIVE_STATE = ("POST /v1/events", "PUT /v1/customers/{id}/consent", "POST /v1/customers/{id}/identifiers",
              "POST /v1/customers/lookup", "GET /v1/customers/{id}")


@dataclass
class Answer:
    endpoint: str
    status: int  # 0: no HTTP answer (connection refused or reset)
    seconds: float
    at: float  # time.monotonic() when the request started
    body: dict | None = None
    retry_after: str | None = None
    channel: str | None = None


@dataclass
class Outcome:
    duration: float
    answers: list[Answer] = field(default_factory=list)
    batches: list[list[dict]] = field(default_factory=list)
    acked: dict[int, dict] = field(default_factory=dict)  # batch -> body of its first 202
    resent: list[dict] = field(default_factory=list)  # bodies of deliberate re-sends of acknowledged batches
    consent: dict[str, bool] = field(default_factory=dict)  # last acknowledged choice per customer
    links: dict[str, str] = field(default_factory=dict)  # loyalty card -> customer, acknowledged links
    lookups_wrong: list = field(default_factory=list)
    redis_stop: float = 0.0
    redis_back: float = 0.0
    model_move: float = 0.0
    first_model: str = ""
    second_model: str = ""
    stream_ids: list[str] = field(default_factory=list)
    live_ids: list[str] = field(default_factory=list)
    consent_after: dict[str, bool | None] = field(default_factory=dict)
    served_after: set[str] = field(default_factory=set)
    workers: list[int] = field(default_factory=list)
    server_log: str = ""

    def in_outage(self, a: Answer) -> bool:
        return self.redis_stop <= a.at + a.seconds and a.at <= self.redis_back + OUTAGE_GRACE_S


class Client:
    """One keep-nothing HTTP client per thread (gunicorn's sync workers close every connection)."""

    def __init__(self, port: int, outcome: Outcome):
        self.port = port
        self.out = outcome

    def call(self, method: str, path: str, endpoint: str, body=None, channel: str | None = None) -> Answer:
        t0 = time.monotonic()
        p0 = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
        try:
            data = json.dumps(body).encode() if body is not None else None
            conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
            r = conn.getresponse()
            raw = r.read()
            status, retry = r.status, r.getheader("Retry-After")
            js = json.loads(raw) if r.getheader("Content-Type", "").startswith("application/json") else None
        except (OSError, http.client.HTTPException):
            status, retry, js = 0, None, None
        finally:
            conn.close()
        a = Answer(endpoint, status, time.perf_counter() - p0, t0, js, retry, channel)
        self.out.answers.append(a)  # list.append is atomic under the GIL
        return a


def _recommendations(c: Client, stop: threading.Event, seed: int) -> None:
    rng = random.Random(seed)
    k = 0
    while not stop.is_set():
        k += 1
        ch = CHANNELS[k % 4]
        who = rng.random()
        if who < 0.6:
            customer = {"customer_id": f"c{rng.randrange(40):05d}"}
        elif who < 0.85:
            customer = {"customer_id": f"soak-{rng.randrange(30)}"}
        else:
            customer = None
        ctx = {"channel": ch}
        if ch == "store" or rng.random() < 0.3:
            ctx["store_id"] = rng.choice(("s1", "s2"))
        if k % 8 == 0:
            c.call("GET", f"/v1/items/i{rng.randrange(60):05d}/similar?n=5&channel={ch}",
                   "GET /v1/items/{id}/similar", channel=ch)
            continue
        body = {"context": ctx, "n": 10, **({"customer": customer} if customer else {})}
        c.call("POST", "/v1/recommendations", "POST /v1/recommendations", body, channel=ch)


def _events(c: Client, stop: threading.Event, out: Outcome, seed: int) -> None:
    rng = random.Random(seed)
    pending: list[tuple[float, int]] = []  # (not before, batch) to send again: 503 or no answer
    n = 0

    def post(b: int) -> None:
        a = c.call("POST", "/v1/events", "POST /v1/events", {"events": out.batches[b]})
        if a.status == 202:
            out.acked.setdefault(b, a.body)
        else:
            delay = float(a.retry_after) if a.retry_after else 0.5
            pending.append((time.monotonic() + delay, b))

    while not stop.is_set():
        now = time.monotonic()
        due = [p for p in pending if p[0] <= now]
        if due:
            pending.remove(due[0])
            post(due[0][1])
        elif n % 10 == 9 and out.acked:
            b = rng.choice(list(out.acked))  # a client that did not see its 202 sends the batch again
            a = c.call("POST", "/v1/events", "POST /v1/events", {"events": out.batches[b]})
            if a.status == 202:
                out.resent.append(a.body)
        else:
            b = len(out.batches)
            out.batches.append([
                event(f"c{rng.randrange(40):05d}" if rng.random() < 0.7 else f"soak-{rng.randrange(30)}",
                      f"i{rng.randrange(60):05d}", rng.choice(("view", "view", "click", "add_to_cart", "purchase")),
                      CHANNELS[(b + j) % 4], event_id=f"soak-{b}-{j}")
                for j in range(BATCH)])
            post(b)
        n += 1
        time.sleep(0.01)
    deadline = time.monotonic() + 60  # the run is over: what was never acknowledged is sent until it is
    while pending and time.monotonic() < deadline:
        _, b = pending.pop(0)
        post(b)
        time.sleep(0.05)


def _customers(c: Client, stop: threading.Event, out: Outcome, seed: int) -> None:
    rng = random.Random(seed)
    owners: dict[str, str] = {}
    k = 0
    while not stop.is_set():
        k += 1
        cid = f"c{rng.randrange(10):05d}"
        kind = k % 4
        if kind == 0:
            granted = rng.random() < 0.5
            a = c.call("PUT", f"/v1/customers/{cid}/consent", "PUT /v1/customers/{id}/consent",
                       {"personalisation": granted, "source": "soak", "channel": rng.choice(CHANNELS)})
            if a.status == 200:
                out.consent[cid] = granted
            else:  # no answer, or a 503 from a Redis going away mid-call: applied or not, unknown
                out.consent.pop(cid, None)
        elif kind == 1:
            card = f"8800{rng.randrange(30):012d}"
            # a card stays with the customer first chosen for it, even when that link's answer was lost
            owner = owners.setdefault(card, f"soak-{rng.randrange(30)}")
            a = c.call("POST", f"/v1/customers/{owner}/identifiers", "POST /v1/customers/{id}/identifiers",
                       {"type": "loyalty_card", "value": card, "channel": "store"})
            if a.status in (200, 201):
                out.links[card] = owner
        elif kind == 2 and out.links:
            card = rng.choice(list(out.links))
            a = c.call("POST", "/v1/customers/lookup", "POST /v1/customers/lookup",
                       {"type": "loyalty_card", "value": card})
            if a.status == 200 and a.body.get("customer_id") != out.links[card]:
                out.lookups_wrong.append((card, out.links[card], a.body))
        else:
            c.call("GET", f"/v1/customers/{cid}?limit=10", "GET /v1/customers/{id}")
        time.sleep(0.01)


def _wait_for(pred, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


def run_soak(workdir: str, models_dir: str, duration: float, log=print) -> Outcome:
    """Run the soak in `workdir` (redis folder, server log); `models_dir` holds a `champion`."""
    out = Outcome(duration=duration)
    reg = Registry(models_dir)
    out.first_model = reg.alias("champion")
    redis_server = RedisServer(os.path.join(workdir, "redis"), aof=True).start()
    prefix = "soak"
    url = f"{redis_server.url}?prefix={prefix}"
    server = None
    try:
        server = gunicorn(models_dir, url, _Dir(workdir), "soak", RECSVC_RELOAD_POLL_S="1",
                          RECSVC_REDIS_TIMEOUT_MS="1000")
        out.workers = worker_pids(server)
        stop = threading.Event()
        threads = [threading.Thread(target=_recommendations, args=(Client(server.port, out), stop, s))
                   for s in (1, 2)]
        threads.append(threading.Thread(target=_events, args=(Client(server.port, out), stop, out, 3)))
        threads.append(threading.Thread(target=_customers, args=(Client(server.port, out), stop, out, 4)))
        t0 = time.monotonic()
        for t in threads:
            t.start()
        log(f"soak: {duration:.0f} s of mixed traffic on {server.base}")
        time.sleep(duration / 3)
        # Redis restart: stopped until the traffic has met it (recommendations and events answered
        # while it is down), then started on the same port from the same AOF folder
        out.redis_stop = time.monotonic()
        redis_server.stop()
        log(f"soak: redis stopped at {out.redis_stop - t0:.1f} s")

        def met_outage() -> bool:
            down = [a for a in out.answers if a.at >= out.redis_stop]
            return (sum(a.endpoint == "POST /v1/recommendations" and _state_unavailable(a) for a in down) >= 3
                    and sum(a.endpoint == "POST /v1/events" and a.status == 503 for a in down) >= 2)

        _wait_for(met_outage, 30)
        redis_server.start()
        out.redis_back = time.monotonic()
        log(f"soak: redis back at {out.redis_back - t0:.1f} s")
        time.sleep(max(0.0, t0 + duration / 2 - time.monotonic()))
        # model reload: a second model published, the champion alias moved (as `models promote` does)
        out.second_model = later_model(models_dir, seed=5)
        out.model_move = time.monotonic()
        reg.set_alias("champion", out.second_model)
        log(f"soak: champion moved to {out.second_model} at {out.model_move - t0:.1f} s")
        time.sleep(max(0.0, t0 + duration - time.monotonic()))
        stop.set()
        for t in threads:
            t.join(timeout=120)
        log(f"soak: traffic over, {len(out.answers)} answers")
        c = Client(server.port, Outcome(0))
        for cid in out.consent:
            a = c.call("GET", f"/v1/customers/{cid}?limit=0", "GET /v1/customers/{id}")
            out.consent_after[cid] = (a.body or {}).get("consent", {}).get("personalisation")
        for _ in range(24):
            a = c.call("POST", "/v1/recommendations", "", {"context": {"channel": "web"}})
            out.served_after.add((a.body or {}).get("model_id"))
        r = redis_server.client()
        try:
            out.stream_ids = stream_event_ids(r, prefix)
            out.live_ids = live_event_ids(r, prefix)
        finally:
            r.close()
    finally:
        if server is not None:
            server.stop()
        redis_server.stop()
    out.server_log = server.log() if server is not None else ""
    return out


class _Dir(str):
    """gunicorn() wants a pathlib-like folder (`tmp_path / name`); a str with `/` will do."""

    def __truediv__(self, name: str) -> str:
        return os.path.join(self, name)


def _pct(xs: list[float]) -> dict:
    if not xs:
        return {}
    a = np.asarray(xs) * 1000
    return {"p50_ms": round(float(np.percentile(a, 50)), 2), "p90_ms": round(float(np.percentile(a, 90)), 2),
            "p99_ms": round(float(np.percentile(a, 99)), 2), "max_ms": round(float(a.max()), 2)}


def _state_unavailable(a: Answer) -> bool:
    return bool(a.body) and a.body.get("fallback_reason") == "state_unavailable"


def summary(out: Outcome) -> dict:
    """Error rate and latency percentiles per endpoint (recommendations also per channel), what the
    Redis restart cost, the model move, and the event accounting."""
    by: dict[str, list[Answer]] = defaultdict(list)
    for a in out.answers:
        by[a.endpoint].append(a)
        if a.endpoint == "POST /v1/recommendations":
            by[f"POST /v1/recommendations [{a.channel}]"].append(a)
    endpoints = {}
    for ep, xs in sorted(by.items()):
        statuses = defaultdict(int)
        for a in xs:
            statuses[str(a.status)] += 1
        errors = sum(not 200 <= a.status < 300 for a in xs)
        endpoints[ep] = {
            "requests": len(xs),
            "statuses": dict(sorted(statuses.items())),
            "error_rate": round(errors / len(xs), 5),
            "errors_outside_redis_restart": sum(not 200 <= a.status < 300 and not out.in_outage(a) for a in xs),
            **_pct([a.seconds for a in xs]),
            "ok": _pct([a.seconds for a in xs if 200 <= a.status < 300]),
        }
    recs = by["POST /v1/recommendations"]
    fallbacks = defaultdict(int)
    for a in recs:
        if a.body and a.body.get("fallback_reason"):
            fallbacks[a.body["fallback_reason"]] += 1
    total = len(out.answers)
    return {
        "duration_s": out.duration,
        "setup": "gunicorn 2 sync workers, redis-server (appendonly yes, appendfsync always) on loopback, "
                 "RECSVC_REDIS_TIMEOUT_MS=1000; 4 client threads (2 recommendations + similar, 1 events, "
                 "1 consent/identifiers/lookups) on the same 2-core machine",
        "requests": total,
        "requests_per_s": round(total / out.duration, 1) if out.duration else None,
        "error_rate": round(sum(not 200 <= a.status < 300 for a in out.answers) / max(total, 1), 5),
        "status_5xx_other_than_503": sum(a.status >= 500 and a.status != 503 for a in out.answers),
        "no_answer": sum(a.status == 0 for a in out.answers),
        "redis_restart": {
            "down_s": round(out.redis_back - out.redis_stop, 2),
            "answers_503": sum(a.status == 503 for a in out.answers),
            "answers_503_outside_restart": sum(a.status == 503 and not out.in_outage(a) for a in out.answers),
            "recommendations_state_unavailable": fallbacks.get("state_unavailable", 0),
            "last_degraded_answer_s_after_redis_start": round(max([0.0, *(a.at + a.seconds - out.redis_back for a in out.answers
                                                         if a.status == 503 or _state_unavailable(a))]), 2),
        },
        "model_reload": {"from": out.first_model, "to": out.second_model,
                         "served_at_the_end": sorted(m for m in out.served_after if m)},
        "events": {
            "batches": len(out.batches),
            "events_sent": len(out.batches) * BATCH,
            "events_acknowledged": sum(js["accepted"] + js["duplicates"] for js in out.acked.values()),
            "batches_acknowledged": len(out.acked),
            "resent_acknowledged_batches": len(out.resent),
            "in_stream": len(out.stream_ids),
            "distinct_in_stream": len(set(out.stream_ids)),
        },
        "fallback_reasons": dict(sorted(fallbacks.items())),
        "endpoints": endpoints,
    }
