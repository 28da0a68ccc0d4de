"""Redis key names of RedisStore, in one of two layouts (documented in recsvc/state/base.py).

`shards=0` (the default on a single server): the layout recsvc always had: one event stream
`<prefix>:events`, a customer's keys tagged by its id. Fine on one primary, CROSSSLOT on a Cluster.

`shards=N` (N >= 1, the default 64 with `cluster=1`): customers are spread over N buckets by
crc32(id) mod N, and everything one write touches together carries the bucket's hash tag
`{<prefix>:b<k>}`: the customer's keys, its tombstone, the bucket's event stream and adoption hash.
Identifiers get a bucket of their own ("type:hash" hashed the same way), shared by their lookup
key, their tombstone and the anonymous profile made for them (its id is picked to land there), so
every Lua script names keys of one slot. N is fixed for the life of the data (every key name
depends on it): the store records it at `<prefix>:shards` and refuses another value.
"""

from __future__ import annotations

import os
import zlib

DEFAULT_CLUSTER_SHARDS = 64
MAX_SHARDS = 16384  # as many buckets as Cluster has slots; more would only share slots


class Layout:
    """Key names for one prefix and shard count (0: the single-server layout)."""

    __slots__ = ("_cust_pre", "_tags", "prefix", "shards")

    def __init__(self, prefix: str, shards: int = 0):
        if not 0 <= shards <= MAX_SHARDS:
            raise ValueError(f"shards must be 0 (single server) to {MAX_SHARDS}, not {shards}")
        self.prefix = prefix
        self.shards = shards
        self._tags = [f"{prefix}:b{k}" for k in range(shards)]
        self._cust_pre = [f"{prefix}:cust:{{{t}}}:" for t in self._tags]

    @property
    def bucketed(self) -> bool:
        return self.shards > 0

    def bucket(self, name: str) -> int:
        """The bucket of a customer id or identifier key (always 0 without shards)."""
        if not self.shards:
            return 0
        return zlib.crc32(name.encode("utf-8", "surrogatepass")) % self.shards

    # -- per bucket
    def stream(self, bucket: int = 0) -> str:
        """The event stream of a bucket (the one global stream without shards)."""
        if not self.shards:
            return f"{self.prefix}:events"
        return f"{self.prefix}:events:{{{self._tags[bucket]}}}"

    def streams(self) -> list[str]:
        return [self.stream(k) for k in range(max(self.shards, 1))]

    def adopted(self, anon_id: str) -> str:
        """The hash anonymous profile -> adopting customer that holds `anon_id`'s adoption."""
        if not self.shards:
            return f"{self.prefix}:adopted"
        return f"{self.prefix}:adopted:{{{self._tags[self.bucket(anon_id)]}}}"

    def adopted_hashes(self) -> list[str]:
        if not self.shards:
            return [f"{self.prefix}:adopted"]
        return [f"{self.prefix}:adopted:{{{t}}}" for t in self._tags]

    # -- per customer
    def cust_base(self, customer_id: str) -> str:
        """What a customer's key names start with (+ "events", "ids", ...)."""
        if not self.shards:
            return f"{self.prefix}:cust:{{{customer_id}}}:"
        return self._cust_pre[self.bucket(customer_id)] + customer_id + ":"

    def cust_affixes(self, near: str) -> tuple[str, str]:
        """(before, after) the customer id in a customer key of the bucket of `near`: lets a Lua script
        name the keys of a customer it learns while running (one of that bucket only)."""
        if not self.shards:
            return f"{self.prefix}:cust:{{", "}:"
        return self._cust_pre[self.bucket(near)], ":"

    def tomb(self, owner: str, hashed: str) -> str:
        """A tombstone: the keyed hash `hashed`, in the bucket of `owner` (a customer id or an
        identifier key, never stored)."""
        if not self.shards:
            return f"{self.prefix}:tomb:{{{hashed}}}"
        return f"{self.prefix}:tomb:{{{self._tags[self.bucket(owner)]}}}:{hashed}"

    # -- per identifier ("type:hash")
    def ident(self, key: str) -> str:
        if not self.shards:
            return f"{self.prefix}:ident:{{{key}}}"
        return f"{self.prefix}:ident:{{{self._tags[self.bucket(key)]}}}:{key}"

    def ident_op(self, key: str) -> str:
        """The journal of a link/unlink in progress on the identifier (see RedisStore.link_identifier)."""
        return self.ident(key) + ":op"

    def anon_id(self, prefix: str, near: str) -> str:
        """A new anonymous profile id in the bucket of `near` (an identifier key): its keys then share
        the identifier's slot. About `shards` crc32s of a few bytes each (microseconds)."""
        base = prefix + os.urandom(8).hex()
        if not self.shards:
            return base + "0000"
        want = self.bucket(near)
        head = zlib.crc32(base.encode())
        for n in range(1 << 20):
            tail = f"{n:04x}"
            if zlib.crc32(tail.encode(), head) % self.shards == want:
                return base + tail
        raise AssertionError("no anonymous id found for the bucket")  # 2**20 tries: never

    @property
    def shards_key(self) -> str:
        return f"{self.prefix}:shards"


def tomb_hash(key_name: str) -> str:
    """The keyed hash a tombstone key holds, in either layout."""
    last = key_name.rsplit(":", 1)[-1]
    return last[1:-1] if last.startswith("{") and last.endswith("}") else last


def event_streams(client, prefix: str) -> list[str]:
    """Every event stream a prefix may hold, for readers (experiments): the single-server layout's,
    then one per bucket of the layout recorded at `<prefix>:shards` (none when it is 0 or unset)."""
    n = int(client.get(Layout(prefix).shards_key) or 0)
    return [Layout(prefix).stream()] + (Layout(prefix, n).streams() if n else [])
