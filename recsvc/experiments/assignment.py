"""Which variant a customer is in: a salted hash of who they are, kept once given.

The unit is the RESOLVED customer: a customer id, a loyalty card, a hashed email or a device linked to
that customer all lead to the same id, hence the same variant on web, app and in store. An anonymous
visitor (an identifier that resolves to no customer, or to an anonymous profile `anon-…`) is assigned
by the identifier itself (in practice the app's device id).

- Deterministic: the variant of a new unit is where the salted SHA-256 of its id falls among the
  cumulative shares, so every worker and instance computes the same answer.
- Kept: the first assignment is persisted (Redis `HSETNX`, atomic); when shares change, customers
  already assigned keep their variant and only new ones follow the new shares.
- Login: a customer seen for the first time inherits the variant of an identifier or anonymous profile
  linked to them (the device they browsed with before logging in); a customer already assigned keeps
  theirs, so the customer's variant is the same on every channel.
- The channel is never an input.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from recsvc.core.experiment_attribution import bucket, pseudonym, variant_at
from recsvc.experiments.backend import ExperimentBackend
from recsvc.experiments.definition import Experiment
from recsvc.state.base import ANON_PREFIX, identifier_key


@dataclass(frozen=True, slots=True)
class Unit:
    """Who is assigned: `key` (customer id, or `type:hash` of an anonymous visitor's identifier) and the
    other ids the same person was seen under. `customer_id` is the resolved id (may be anonymous)."""

    key: str
    aliases: tuple[str, ...] = ()
    customer_id: str | None = None

    @property
    def is_customer(self) -> bool:
        return self.key == self.customer_id and not self.key.startswith(ANON_PREFIX)


def unit_of(customer_id: str | None, identifier_type: str | None = None,
            identifier_value: str | None = None) -> Unit | None:
    """The unit of a request: None when nobody is identified (no customer, no identifier)."""
    ident = identifier_key(identifier_type, identifier_value) if identifier_type and identifier_value else None
    if customer_id is not None and not customer_id.startswith(ANON_PREFIX):
        return Unit(customer_id, (ident,) if ident else (), customer_id)
    if ident is not None:
        return Unit(ident, (customer_id,) if customer_id else (), customer_id)
    if customer_id is not None:
        return Unit(customer_id, (), customer_id)
    return None


def proposed_variant(exp: Experiment, pseudo: str) -> str:
    """The variant a new unit gets under the experiment's current shares."""
    return exp.variants[variant_at(bucket(pseudo), (v.share for v in exp.variants))].name


class Assigner:
    """Assigns and remembers. A persisted assignment never changes, so each worker keeps the ones it
    has seen in a bounded LRU (`cache_size` units): a returning customer costs no round trip."""

    def __init__(self, backend: ExperimentBackend, state_store=None, cache_size: int = 100_000):
        self.backend = backend
        self.state = state_store
        self._cache: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def _remember(self, key: tuple[str, str], variant: str) -> None:
        with self._lock:
            self._cache[key] = variant
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)

    def _recall(self, key: tuple[str, str]) -> str | None:
        with self._lock:
            v = self._cache.get(key)
            if v is not None:
                self._cache.move_to_end(key)
            return v

    def pseudonyms(self, exp: Experiment, unit: Unit) -> tuple[str, ...]:
        return tuple(pseudonym(exp.salt, k) for k in (unit.key, *unit.aliases))

    def assign(self, exp: Experiment, unit: Unit, pseudos: Sequence[str] | None = None) -> str:
        """The unit's variant: kept if assigned before (under any of its ids), else inherited from an
        id linked to the customer, else by hash; persisted on first sight (one round trip once known)."""
        pseudos = list(pseudos or self.pseudonyms(exp, unit))
        key = (exp.experiment_id, pseudos[0])
        cached = self._recall(key)
        if cached is not None:
            return cached
        known = self.backend.assigned(exp.experiment_id, pseudos)
        if known and known[0] is not None:
            self._remember(key, known[0])
            return known[0]
        if unit.is_customer and self.state is not None:
            pseudos += [pseudonym(exp.salt, k) for k in self._linked(unit.key)]
        variant = self.backend.assign(exp.experiment_id, pseudos, proposed_variant(exp, pseudos[0]))
        self._remember(key, variant)
        return variant

    def _linked(self, customer_id: str) -> list[str]:
        """Identifier keys and adopted anonymous profiles of a customer (where they were before login)."""
        out = []
        for li in self.state.identifiers(customer_id):
            out.append(li.key)
            if li.adopted:
                out.append(li.adopted)
        return out
