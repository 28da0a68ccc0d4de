"""Who was shown which offers, and what they did afterwards: the attribution join of an experiment.

Pure numpy + stdlib, so the service (`GET /v1/experiments/{id}/report`) and `recsvc-train experiments
report` compute the same numbers from the same records.

Records, as the service writes them and the report reads them:

- impression (one per list served in an experiment): `rid` (recommendation_id), `u` (the unit's
  pseudonym), `a` (pseudonyms of the unit's other ids, space-separated), `v` (variant), `ch` (channel
  shown), `st` (store), `ts` (epoch seconds), `it` (the offered item ids, JSON array);
- event: a live-state event (`customer_id`, `item_id`, `event`, `channel`, `ts`, `quantity`, `value`,
  `recommendation_id`, `event_id`).

Crediting rules (the README's "Running an experiment" states them too):

1. an event carrying the `recommendation_id` of an impression is credited to that impression: its
   unit, variant and channel shown (clicks and accepted/declined offers count only this way);
2. a purchase without such an id is credited to the latest impression shown to the same customer, on
   any channel, that offered the purchased item, when it happened within the attribution window after
   it (last touch);
3. the channel shown is the impression's, the channel bought the purchase's: "shown on the app, bought
   in store" is one cell of the shown x bought table.

Customers are units: assignment, and so every per-customer metric, is by customer, never by channel.
Records never hold a customer id, only its pseudonym (a salted SHA-256), so erasing a customer's
events leaves nothing in the experiment's keys that names them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from recsvc.core.types import CHANNELS

CREDITED_EVENTS = ("click", "offer_accepted", "offer_declined", "purchase")
CLICK, ACCEPT, DECLINE, PURCHASE = range(4)
METRICS = ("conversion", "revenue_per_customer", "click_through", "acceptance")
HOUR = 3600.0


class DesignError(ValueError):
    """A stored experiment definition the report cannot read (field named in the message)."""


def pseudonym(salt: str, unit: str) -> str:
    """The unit's salted SHA-256 (32 hex): what assignments and impressions are keyed by."""
    return hashlib.sha256(f"{salt}\x1f{unit}".encode("utf-8", "surrogatepass")).hexdigest()[:32]


def bucket(pseudo: str) -> float:
    """Uniform position in [0, 1) of a pseudonym (its first 52 bits)."""
    return int(pseudo[:13], 16) / float(1 << 52)


def variant_at(position: float, shares: Iterable[float]) -> int:
    """Index of the variant whose cumulative share range holds `position`."""
    acc = 0.0
    last = 0
    for k, s in enumerate(shares):
        if s > 0:
            last = k
            acc += s
            if position < acc:
                return k
    return last  # rounding: shares summing to 0.9999999


def epoch(value, field: str) -> float | None:
    """ISO-8601 (no offset: UTC) or epoch seconds -> epoch seconds; None stays None."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            d = dt.datetime.fromisoformat(value)
        except ValueError:
            raise DesignError(f"{field}: {value!r} is not ISO-8601 or epoch seconds") from None
        if d.tzinfo is None:
            d = d.replace(tzinfo=dt.UTC)
        return d.timestamp()
    raise DesignError(f"{field}: expected a timestamp, got {type(value).__name__}")


def iso(t: float | None) -> str | None:
    if t is None:
        return None
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class SharePeriod:
    """Shares in force from `since` on (first assignments made then follow them)."""

    version: int
    since: float
    shares: tuple[float, ...]  # aligned with Design.variants


@dataclass(frozen=True, slots=True)
class Design:
    """What the report needs of an experiment definition (read from the stored JSON)."""

    experiment_id: str
    variants: tuple[str, ...]
    control: str
    salt: str
    window_s: float
    alpha: float
    primary_metric: str
    start: float
    end: float | None
    stopped_at: float | None
    periods: tuple[SharePeriod, ...]

    @property
    def control_index(self) -> int:
        return self.variants.index(self.control)

    def state(self, now: float) -> str:
        """stopped | scheduled | ended | running (as the service's Experiment.state)."""
        if self.stopped_at is not None:
            return "stopped"
        if now < self.start:
            return "scheduled"
        if self.end is not None and now >= self.end:
            return "ended"
        return "running"

    def closes_at(self) -> float | None:
        """When the last impression can have been shown (stop or end), None while open-ended."""
        ends = [t for t in (self.stopped_at, self.end) if t is not None]
        return min(ends) if ends else None


def design_from_definition(d: Mapping) -> Design:
    """The stored definition JSON (`recsvc.experiments.definition.to_dict`) -> Design."""
    try:
        variants = tuple(str(v["name"]) for v in d["variants"])
        controls = [str(v["name"]) for v in d["variants"] if v.get("control")]
        history = d.get("share_history") or [
            {"version": 1, "since": d["start"], "shares": {str(v["name"]): float(v["share"]) for v in d["variants"]}}
        ]
        periods = tuple(
            SharePeriod(int(h["version"]), epoch(h["since"], "share_history.since"),
                        tuple(float(h["shares"].get(v, 0.0)) for v in variants))
            for h in history
        )
        return Design(
            experiment_id=str(d["experiment_id"]),
            variants=variants,
            control=controls[0] if controls else variants[0],
            salt=str(d.get("salt") or d["experiment_id"]),
            window_s=float(d.get("attribution_window_hours", 168)) * HOUR,
            alpha=float(d.get("alpha", 0.05)),
            primary_metric=str(d.get("primary_metric", "conversion")),
            start=epoch(d["start"], "start"),
            end=epoch(d.get("end"), "end"),
            stopped_at=epoch(d.get("stopped_at"), "stopped_at"),
            periods=tuple(sorted(periods, key=lambda p: (p.since, p.version))),
        )
    except (KeyError, TypeError, IndexError) as e:
        raise DesignError(f"experiment definition: missing or malformed field ({e})") from None


@dataclass(frozen=True, slots=True)
class Impressions:
    """Lists served in the experiment, one row each; units and items as dense codes."""

    unit: np.ndarray  # int64, 0..n_units-1
    variant: np.ndarray  # int64, index into Design.variants
    channel: np.ndarray  # int64, index into CHANNELS
    ts: np.ndarray  # float64 epoch seconds
    item_indptr: np.ndarray  # int64, len n+1: items of row k are items[indptr[k]:indptr[k+1]]
    items: np.ndarray  # int64 item codes
    n_units: int

    def __len__(self) -> int:
        return int(self.unit.shape[0])


@dataclass(frozen=True, slots=True)
class Events:
    """Events that may be credited: clicks, accepted/declined offers, purchases."""

    unit: np.ndarray  # int64 unit code, -1 when not a unit of the experiment
    impression: np.ndarray  # int64 row of the impression whose recommendation_id it carries, -1 none
    kind: np.ndarray  # int64 index into CREDITED_EVENTS
    channel: np.ndarray  # int64 index into CHANNELS
    ts: np.ndarray  # float64
    item: np.ndarray  # int64 item code (the impressions' vocabulary), -1 never offered
    revenue: np.ndarray  # float64 (purchases; 0 for the rest)

    def __len__(self) -> int:
        return int(self.unit.shape[0])


@dataclass(frozen=True, slots=True)
class UnitTable:
    """Per unit (customer) and channel shown: what the statistics work on."""

    variant: np.ndarray  # (U,) int64
    first_seen: np.ndarray  # (U,) float64: first impression
    impressions: np.ndarray  # (U, C) int64
    clicks: np.ndarray  # (U, C) int64
    accepts: np.ndarray  # (U, C) int64
    declines: np.ndarray  # (U, C) int64
    purchases: np.ndarray  # (U, C) int64: attributed purchases, by channel shown
    revenue: np.ndarray  # (U, C) float64: their revenue
    shown_bought: np.ndarray  # (V, C, C) int64 purchases [variant, shown, bought]
    shown_bought_revenue: np.ndarray  # (V, C, C) float64
    credited_by_id: int  # purchases credited through their recommendation_id
    credited_by_window: int  # purchases credited by the window rule

    @property
    def n_units(self) -> int:
        return int(self.variant.shape[0])


# -- records -> tables
_CHANNEL = {c: k for k, c in enumerate(CHANNELS)}
_KIND = {e: k for k, e in enumerate(CREDITED_EVENTS)}


def _items_of(raw) -> list[str]:
    if isinstance(raw, str):
        import json

        raw = json.loads(raw) if raw.startswith("[") else raw.split()
    return [str(x) for x in raw or ()]


def tables_from_records(
    design: Design,
    impressions: Iterable[Mapping],
    events: Iterable[Mapping],
    price_of: Callable[[str], float | None] | None = None,
) -> tuple[Impressions, Events, list[str]]:
    """Impression records + event records -> (Impressions, Events, item vocabulary).

    Events are matched to units through their recommendation_id, else through the pseudonym of their
    customer id (salted like the assignment). Revenue of a purchase: its `value`, else quantity x
    `price_of(item)`, else 0. Events of unknown kinds, channels or customers are dropped here."""
    variant_code = {v: k for k, v in enumerate(design.variants)}
    unit_code: dict[str, int] = {}  # pseudonym (the unit's own or an alias) -> unit code
    n_units = 0
    item_code: dict[str, int] = {}
    rid_row: dict[str, int] = {}
    unit, variant, channel, ts, indptr, items = [], [], [], [], [0], []
    for rec in impressions:
        v = variant_code.get(str(rec.get("v")))
        ch = _CHANNEL.get(str(rec.get("ch")))
        if v is None or ch is None:
            continue
        primary, aliases = str(rec["u"]), str(rec.get("a") or "").split()
        u = unit_code.get(primary)
        if u is None:  # a device seen before its owner logged in: the same person, the same unit
            u = next((unit_code[a] for a in aliases if a in unit_code), None)
            if u is None:
                u = n_units
                n_units += 1
            unit_code[primary] = u
        for alias in aliases:
            unit_code.setdefault(alias, u)
        rid_row.setdefault(str(rec.get("rid")), len(unit))
        unit.append(u)
        variant.append(v)
        channel.append(ch)
        ts.append(float(rec["ts"]))
        for it in _items_of(rec.get("it")):
            items.append(item_code.setdefault(it, len(item_code)))
        indptr.append(len(items))
    imp = Impressions(
        unit=np.asarray(unit, np.int64), variant=np.asarray(variant, np.int64),
        channel=np.asarray(channel, np.int64), ts=np.asarray(ts, np.float64),
        item_indptr=np.asarray(indptr, np.int64), items=np.asarray(items, np.int64),
        n_units=n_units,
    )
    lo = design.start
    closes = design.closes_at()
    hi = None if closes is None else closes + design.window_s
    e_unit, e_imp, e_kind, e_ch, e_ts, e_item, e_rev = [], [], [], [], [], [], []
    seen: set[str] = set()
    salt = design.salt
    for rec in events:
        kind = _KIND.get(rec.get("event"))
        ch = _CHANNEL.get(rec.get("channel"))
        if kind is None or ch is None:
            continue
        t = float(rec.get("ts") or 0.0)
        if t < lo or (hi is not None and t > hi):
            continue
        eid = rec.get("event_id")
        if eid is not None:
            if eid in seen:  # the same event copied into an adopting customer's history
                continue
            seen.add(eid)
        row = rid_row.get(rec.get("recommendation_id") or "", -1)
        if row >= 0:
            u = int(unit[row])
        else:
            if kind != PURCHASE:
                continue  # clicks and offer answers count only with the list they answer
            u = unit_code.get(pseudonym(salt, str(rec.get("customer_id"))), -1)
            if u < 0:
                continue
        item = str(rec.get("item_id"))
        revenue = 0.0
        if kind == PURCHASE:
            value = rec.get("value")
            if value is not None:
                revenue = float(value)
            elif price_of is not None:
                p = price_of(item)
                revenue = float(rec.get("quantity") or 1.0) * float(p) if p is not None else 0.0
        e_unit.append(u)
        e_imp.append(row)
        e_kind.append(kind)
        e_ch.append(ch)
        e_ts.append(t)
        e_item.append(item_code.get(item, -1))
        e_rev.append(revenue)
    ev = Events(
        unit=np.asarray(e_unit, np.int64), impression=np.asarray(e_imp, np.int64),
        kind=np.asarray(e_kind, np.int64), channel=np.asarray(e_ch, np.int64),
        ts=np.asarray(e_ts, np.float64), item=np.asarray(e_item, np.int64),
        revenue=np.asarray(e_rev, np.float64),
    )
    vocab = [""] * len(item_code)
    for k, v in item_code.items():
        vocab[v] = k
    return imp, ev, vocab


# -- the join
def _window_matches(imp: Impressions, unit: np.ndarray, item: np.ndarray, ts: np.ndarray,
                    window_s: float) -> np.ndarray:
    """For each purchase (unit, item, ts): the row of the latest impression of that unit that offered
    the item at or before ts and no longer than window_s before it; -1 where none. Vectorised: one
    sort of the exploded (unit, item, time) offers and one binary search per purchase."""
    out = np.full(unit.shape[0], -1, np.int64)
    if unit.shape[0] == 0 or imp.items.shape[0] == 0:
        return out
    counts = np.diff(imp.item_indptr)
    rows = np.repeat(np.arange(len(imp), dtype=np.int64), counts)
    n_items = int(imp.items.max()) + 1
    key = imp.unit[rows] * n_items + imp.items
    t_offer = imp.ts[rows]
    order = np.lexsort((t_offer, key))
    key_s, t_s, rows_s = key[order], t_offer[order], rows[order]
    new_key = np.empty(key_s.shape[0], bool)
    new_key[0] = True
    np.not_equal(key_s[1:], key_s[:-1], out=new_key[1:])
    uniq = key_s[new_key]
    rank_s = np.cumsum(new_key) - 1
    valid = (unit >= 0) & (item >= 0)
    pkey = np.where(valid, unit * n_items + np.maximum(item, 0), -1)
    prank = np.minimum(np.searchsorted(uniq, pkey), len(uniq) - 1)
    present = valid & (uniq[prank] == pkey)
    t0 = min(float(t_s.min()), float(ts[present].min()) if present.any() else float(t_s.min()))
    span_s = max(float(t_s.max()), float(ts.max())) - t0 + 1.0
    scale = 1000.0 if span_s * 1000.0 * (len(uniq) + 1) < 2**62 else 1.0  # ms when it fits in int64
    span = int(np.ceil(span_s * scale)) + 1
    comp_s = rank_s * span + np.floor((t_s - t0) * scale).astype(np.int64)
    comp_p = prank * span + np.floor((ts - t0) * scale).astype(np.int64)
    pos = np.searchsorted(comp_s, comp_p, side="right") - 1
    posc = np.maximum(pos, 0)
    ok = present & (pos >= 0) & (rank_s[posc] == prank) & (ts >= t_s[posc]) & (ts - t_s[posc] <= window_s)
    out[ok] = rows_s[posc[ok]]
    return out


def attribute(design: Design, imp: Impressions, ev: Events) -> UnitTable:
    """Credit events to units and channels (the rules in the module docstring)."""
    n_c, n_v = len(CHANNELS), len(design.variants)
    n_u = imp.n_units
    first = np.full(n_u, np.inf)
    np.minimum.at(first, imp.unit, imp.ts)
    # a unit's variant is the one of its first impression (assignment is persisted, so they agree)
    order = np.lexsort((imp.ts, imp.unit))
    u_sorted = imp.unit[order]
    starts = np.flatnonzero(np.r_[True, u_sorted[1:] != u_sorted[:-1]]) if len(imp) else np.empty(0, np.int64)
    variant = np.zeros(n_u, np.int64)
    variant[u_sorted[starts]] = imp.variant[order][starts]

    def per_unit(u: np.ndarray, c: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
        flat = np.bincount(u * n_c + c, weights=w, minlength=n_u * n_c)
        return flat.reshape(n_u, n_c) if w is not None else flat.reshape(n_u, n_c).astype(np.int64)

    impressions = per_unit(imp.unit, imp.channel)
    by_id = ev.impression >= 0
    shown = np.where(by_id, imp.channel[np.maximum(ev.impression, 0)] if len(imp) else 0, -1)
    tables = {}
    for name, kind in (("clicks", CLICK), ("accepts", ACCEPT), ("declines", DECLINE)):
        m = by_id & (ev.kind == kind)
        tables[name] = per_unit(ev.unit[m], shown[m])
    is_purchase = ev.kind == PURCHASE
    window_rows = _window_matches(imp, np.where(is_purchase & ~by_id, ev.unit, -1), ev.item, ev.ts, design.window_s)
    by_window = window_rows >= 0
    shown = np.where(by_window, imp.channel[np.maximum(window_rows, 0)] if len(imp) else 0, shown)
    credited = is_purchase & (by_id | by_window)
    u, s, b, r = ev.unit[credited], shown[credited], ev.channel[credited], ev.revenue[credited]
    v = variant[u]
    flat = (v * n_c + s) * n_c + b
    return UnitTable(
        variant=variant,
        first_seen=first,
        impressions=impressions,
        clicks=tables["clicks"],
        accepts=tables["accepts"],
        declines=tables["declines"],
        purchases=per_unit(u, s),
        revenue=per_unit(u, s, r),
        shown_bought=np.bincount(flat, minlength=n_v * n_c * n_c).reshape(n_v, n_c, n_c).astype(np.int64),
        shown_bought_revenue=np.bincount(flat, weights=r, minlength=n_v * n_c * n_c).reshape(n_v, n_c, n_c),
        credited_by_id=int((is_purchase & by_id).sum()),
        credited_by_window=int((is_purchase & by_window).sum()),
    )
