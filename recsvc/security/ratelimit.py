"""Per-key rate limits: a fixed window counted in live state (Redis: shared by every worker and
instance; the memory store: this process).

Each worker takes its key's requests from the shared counter in small blocks (1% of the limit, at
least 1): one `INCRBY`+`EXPIRE` round trip per block instead of one per request, so the check costs
the request path nothing measurable. A block a worker took but did not use by the end of the window
is lost, so a key may be refused up to (workers x block) requests early: at most 1% of its limit per
worker. Over the limit: 429 with `Retry-After` (seconds to the next window).

Live state down: the request is let through (and the failure counted in
recsvc_store_errors_total{operation="rate_limit"}): a Redis outage must not take the shop down.
"""

from __future__ import annotations

import math
import threading
import time

from recsvc.errors import StoreUnavailable
from recsvc.security.keys import Principal


class _Block:
    __slots__ = ("left", "refused", "window")

    def __init__(self, window: int, left: int, refused: bool = False):
        self.window, self.left, self.refused = window, left, refused


class RateLimiter:
    def __init__(self, store, limits: dict[str, int], window_s: int = 60, on_store_error=None):
        self.store = store
        self.limits = {k: int(v) for k, v in limits.items()}
        self.window_s = int(window_s)
        self._on_store_error = on_store_error
        self._blocks: dict[str, _Block] = {}
        self._lock = threading.Lock()
        self.enabled = any(v > 0 for v in self.limits.values())

    def limit_of(self, p: Principal) -> int:
        return p.rate_limit if p.rate_limit else self.limits.get(p.role, 0)

    def admit(self, p: Principal, now: float | None = None) -> float | None:
        """None when the request may go on; else the seconds until the key's next window."""
        if p.key_id is None:
            return None
        limit = p.rate_limit or self.limits.get(p.role, 0)
        if limit <= 0:
            return None
        now = time.time() if now is None else now
        w = int(now // self.window_s)
        with self._lock:
            b = self._blocks.get(p.key_id)
            if b is not None and b.window == w:
                if b.left > 0:
                    b.left -= 1
                    return None
                if b.refused:
                    return self._retry(w, now)
        block = max(1, limit // 100)
        try:
            total = self.store.incr_counter(f"{p.key_id}:{w}", block, self.window_s * 2)
        except StoreUnavailable as e:
            if self._on_store_error is not None:
                self._on_store_error("rate_limit", e)
            return None
        granted = min(block, limit - (total - block))
        with self._lock:
            if granted <= 0:
                self._blocks[p.key_id] = _Block(w, 0, refused=True)
                return self._retry(w, now)
            self._blocks[p.key_id] = _Block(w, granted - 1)
            if len(self._blocks) > 100_000:  # keys seen long ago
                self._blocks = {k: v for k, v in self._blocks.items() if v.window == w}
        return None

    def _retry(self, w: int, now: float) -> float:
        return max(1.0, math.ceil((w + 1) * self.window_s - now))
