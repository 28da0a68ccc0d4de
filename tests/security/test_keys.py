"""Keys and their file: the token format, keyed hashes compared in constant time, the secret kept apart,
workers following the file (new, revoked, broken, another secret), locked atomic writes, and the rate
limiter's arithmetic."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import subprocess

import pytest

from recsvc.errors import StoreUnavailable
from recsvc.security import keys as K
from recsvc.security.keys import KeyError_, KeyRing, Principal, create_key, list_keys, revoke_key
from recsvc.security.ratelimit import RateLimiter
from recsvc.state.memory import InMemoryStore
from tests.service import PYTHON

SECRET = "unit-test-secret-0123456789"


def test_tokens_name_their_key_and_are_what_scripts_expect(tmp_path):
    path = str(tmp_path / "k.json")
    rec, token = create_key(path, SECRET, "storefront", name="web")
    assert re.fullmatch(r"rk_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", token) and token.split("_")[1] == rec["id"]
    assert K.key_id_of(token) == rec["id"] and K.key_id_of(token + "x") is None
    # the checks' parse_key: the last line, one token of 16+ characters
    assert re.fullmatch(r"(?:[A-Za-z _-]{0,20}[:=]\s*)?([A-Za-z0-9_\-.~+/=]{16,})", token)
    p = subprocess.run([PYTHON, "-m", "recsvc", "keys", "create", "--role", "clerk", "--store", "s7",
                        "--keys-file", path], check=False, capture_output=True, text=True, timeout=60,
                       env={**os.environ, "RECSVC_KEYS_SECRET": SECRET})
    assert p.returncode == 0 and len(p.stdout.splitlines()) == 1
    assert re.fullmatch(r"rk_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", p.stdout.strip())
    assert "clerk key" in p.stderr and "store s7" in p.stderr and p.stdout.strip() not in p.stderr


def test_the_file_holds_an_hmac_of_the_token_under_the_separate_secret(tmp_path):
    path = str(tmp_path / "k.json")
    _, token = create_key(path, SECRET, "admin")
    with open(path, encoding="utf-8") as f:
        stored = json.load(f)["keys"][0]
    assert stored["hash"] == hmac.new(SECRET.encode(), token.encode(), hashlib.sha256).hexdigest()
    assert token.split("_", 2)[2] not in json.dumps(stored) and SECRET not in json.dumps(stored)
    assert not os.path.exists(path + ".secret")  # the configured secret is never written down
    # without a configured secret, one is generated beside the file, mode 600
    path2 = str(tmp_path / "k2.json")
    create_key(path2, None, "admin")
    assert oct(os.stat(path2 + ".secret").st_mode & 0o777) == "0o600"


def test_verification_uses_a_constant_time_comparison(tmp_path, monkeypatch):
    path = str(tmp_path / "k.json")
    rec, token = create_key(path, SECRET, "clerk", store_id="s1")
    ring = KeyRing(path, SECRET)
    seen = []
    real = hmac.compare_digest

    def spy(a, b):
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(K.hmac, "compare_digest", spy)
    assert ring.verify(token) == Principal(rec["id"], rec["name"], "clerk", "s1", ())
    wrong = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert ring.verify(wrong) is None
    assert len(seen) == 2 and all(len(a) == len(b) == 64 for a, b in seen)
    # malformed tokens and unknown ids are refused before any hashing
    for bad in ("", "rk_", token + "x", token.replace("rk_", "xx_"), "rk_ffffffffffff_" + "A" * 43):
        assert ring.verify(bad) is None
    assert len(seen) == 2


def test_workers_follow_the_file_new_revoked_broken_another_secret(tmp_path):
    path = str(tmp_path / "k.json")
    _, a = create_key(path, SECRET, "storefront", name="a")
    ring = KeyRing(path, SECRET)
    assert ring.verify(a) is not None and ring.active == 1 and ring.problem is None
    _, b = create_key(path, SECRET, "analyst", name="b")
    ring._next_check = 0.0  # the next look at the file's metadata is due (every CHECK_S seconds)
    assert ring.verify(b).role == "analyst"
    revoke_key(path, "a")
    ring._next_check = 0.0
    assert ring.verify(a) is None and ring.verify(b) is not None
    assert [k["revoked_at"] is not None for k in list_keys(path)] == [True, False]
    # another secret than the keys were made with: every key refused, and said so
    other = KeyRing(path, "another-secret-0123456789")
    assert other.verify(b) is None and "another keys secret" in other.problem
    # no secret at all (unset and no .secret file): refused
    assert KeyRing(path, None).verify(b) is None
    # a broken file refuses every key rather than serving a stale set
    with open(path, "w", encoding="utf-8") as f:
        f.write("{not json")
    ring.refresh(force=True)
    assert ring.verify(b) is None and "not a readable keys file" in ring.problem
    # a missing file: no keys
    os.unlink(path)
    ring.refresh(force=True)
    assert ring.verify(b) is None and ring.active == 0 and "no active API key" in ring.problem


@pytest.mark.parametrize("kw, message", [
    ({"role": "cashier"}, "unknown role"),
    ({"role": "clerk"}, "bound to one store"),
    ({"role": "analyst", "store_id": "s1"}, "not bound to a store"),
    ({"role": "storefront", "channels": ("fax",)}, "unknown channel"),
    ({"role": "storefront", "name": "has space"}, "--name"),
    ({"role": "storefront", "rate_limit": 0}, "--rate-limit"),
    ({"role": "clerk", "store_id": "s\x01"}, "--store"),
])
def test_bad_requests_for_keys_are_refused_in_one_line(tmp_path, kw, message):
    with pytest.raises(KeyError_) as e:
        create_key(str(tmp_path / "k.json"), SECRET, **kw)
    assert message in e.value.message and "\n" not in e.value.message


def test_names_are_unique_among_active_keys_and_revoke_needs_a_match(tmp_path):
    path = str(tmp_path / "k.json")
    create_key(path, SECRET, "storefront", name="shop")
    with pytest.raises(KeyError_, match="already named"):
        create_key(path, SECRET, "storefront", name="shop")
    revoke_key(path, "shop")
    create_key(path, SECRET, "storefront", name="shop")  # free again once revoked
    with pytest.raises(KeyError_, match="no active key"):
        revoke_key(path, "nobody")
    with pytest.raises(KeyError_, match="another keys secret"):
        create_key(path, "a-different-secret-0123", "admin")


def test_concurrent_creations_all_land_in_the_file(tmp_path):
    path = str(tmp_path / "k.json")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECSVC_")}
    procs = [subprocess.Popen([PYTHON, "-m", "recsvc", "keys", "create", "--role", "storefront", "--name", f"k{i}",
                               "--keys-file", path], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for i in range(6)]
    tokens = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        tokens.append(out.strip())
    ring = KeyRing(path, None)
    assert ring.active == 6 and all(ring.verify(t) is not None for t in tokens)
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".keys-")]  # no temporary file left


# -- rate limits

def principal(limit=None, role="clerk", kid="aaaaaaaaaaaa"):
    return Principal(kid, "n", role, "s1", (), limit)


def test_a_fixed_window_counted_in_live_state(tmp_path):
    store = InMemoryStore()
    rl = RateLimiter(store, {"clerk": 3, "storefront": 0}, window_s=60)
    p = principal()
    t = 6000.0
    assert [rl.admit(p, now=t + k) for k in range(3)] == [None, None, None]
    assert rl.admit(p, now=t + 10) == 50.0  # seconds to the next window
    assert rl.admit(p, now=t + 59.5) == 1.0
    assert rl.admit(p, now=t + 60) is None  # a new window
    assert rl.admit(principal(role="storefront", kid="bbbbbbbbbbbb"), now=t) is None  # 0 = no limit
    assert rl.admit(Principal(None, "(auth off)", "admin"), now=t) is None


def test_workers_take_blocks_of_one_percent_and_never_exceed_the_limit():
    store = InMemoryStore()
    workers = [RateLimiter(store, {"storefront": 1000}, window_s=60) for _ in range(3)]
    p = principal(role="storefront")
    admitted = sum(w.admit(p, now=120.0) is None for _ in range(600) for w in workers)
    assert 1000 - 3 * 10 <= admitted <= 1000  # at most a block per worker left unused
    assert store.incr_counter("aaaaaaaaaaaa:2", 0, 60) <= 1000 + 3 * 10


def test_a_per_key_limit_wins_over_the_roles_and_live_state_down_lets_requests_through():
    class Down:
        def incr_counter(self, *a):
            raise StoreUnavailable("redis down")

    errors = []
    rl = RateLimiter(Down(), {"clerk": 600}, on_store_error=lambda op, e: errors.append(op))
    assert rl.limit_of(principal(limit=5)) == 5 and rl.limit_of(principal()) == 600
    assert rl.admit(principal(), now=0.0) is None and errors == ["rate_limit"]
