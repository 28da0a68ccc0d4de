"""Apps and keys for the security tests: a Flask app with API keys on (memory store unless a Redis URL
is given) and one key per role, plus bound keys (a clerk of s1 and of s2, a web-only storefront)."""

from __future__ import annotations

import pytest

from recsvc.security.keys import create_key

SECRET = "test-keys-secret-0123456789"


@pytest.fixture
def keys_file(tmp_path) -> str:
    return str(tmp_path / "keys.json")


@pytest.fixture
def keys(keys_file) -> dict[str, str]:
    """role (or binding) -> key."""
    made = {}
    for name, role, kw in (
        ("storefront", "storefront", {}),
        ("web_only", "storefront", {"channels": ("web",)}),
        ("clerk", "clerk", {"store_id": "s1"}),
        ("clerk_s2", "clerk", {"store_id": "s2"}),
        ("analyst", "analyst", {}),
        ("admin", "admin", {}),
    ):
        _, made[name] = create_key(keys_file, SECRET, role, name=name, **kw)
    return made


@pytest.fixture
def auth_app(make_app, keys_file, keys):
    """factory(**config) -> an app with API keys on, reading `keys_file`."""

    def factory(**kw):
        kw.setdefault("auth", True)
        kw.setdefault("keys_file", keys_file)
        kw.setdefault("keys_secret", SECRET)
        return make_app(**kw)

    return factory
