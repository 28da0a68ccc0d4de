"""Two gunicorn instances (2 workers each) behind one Redis: whichever instance and worker answers, the
same customer gets the same selection, and an event or consent change sent to one counts on the other."""

from __future__ import annotations

import pytest

from tests.realtime import CHANNELS, event, ids_of, rec_body
from tests.service import GUNICORN, GUNICORN_CONF, Server, free_port, request, server_env

pytestmark = [pytest.mark.redis, pytest.mark.slow]


@pytest.fixture
def pair(models_dir, redis_url, tmp_path):
    servers = []
    try:
        for name in ("a", "b"):
            port = free_port()
            s = Server([GUNICORN, "-c", GUNICORN_CONF, "recsvc.wsgi:app", "--bind", f"127.0.0.1:{port}",
                        "--workers", "2"], server_env(models_dir, redis_url), str(tmp_path), port,
                       str(tmp_path / f"{name}.log"))
            servers.append(s)
        for s in servers:
            s.wait_ready()
        yield servers
    finally:
        for s in servers:
            s.stop()


def lists(servers, customer: str) -> list[list[str]]:
    out = []
    for s in servers:
        for ch in CHANNELS:
            for _ in range(2):  # likely both workers of each instance
                status, js = request("POST", s.base + "/v1/recommendations", rec_body(customer, ch, "s1"))
                assert status == 200
                out.append((js["personalised"], ids_of(js)))
    return out


def test_two_instances_sharing_redis_return_the_same_selection(pair):
    a, b = pair
    status, _ = request("POST", a.base + "/v1/events", {"events": [
        event("c00010", "i00003", "purchase", "web"),
        *[event("newbie-2", f"i{k:05d}", "view", "app") for k in (2, 6, 10, 14, 18)]]})
    assert status == 202
    for customer in ("c00010", "newbie-2", "c00011"):
        got = lists(pair, customer)
        assert all(x == got[0] for x in got) and got[0][0] is True
    assert "i00003" not in lists(pair, "c00010")[0][1]
    request("PUT", b.base + "/v1/customers/newbie-2/consent",
            {"personalisation": False, "source": "app settings", "channel": "app"})
    got = lists(pair, "newbie-2")
    assert all(x == got[0] for x in got) and got[0][0] is False
