"""A seeded synthetic population in an experiment, simulated with numpy (no HTTP, no Redis): customers
assigned by the real assignment hash, two weeks of lists served on every channel, clicks carrying the
recommendation_id, purchases on any channel (many in store, without an id) after an offer, plus noise
the attribution must ignore (items never offered, purchases long after the window)."""

from __future__ import annotations

import numpy as np

from recsvc.core.experiment_attribution import (
    CLICK,
    PURCHASE,
    Design,
    Events,
    Impressions,
    SharePeriod,
    bucket,
    pseudonym,
    variant_at,
)
from recsvc.core.types import CHANNELS

DAY = 86400.0
T0 = 1_790_000_000.0  # 2026-09-21
N_ITEMS = 300
PER_LIST = 8


def design(salt: str, shares=(0.5, 0.5), window_h: float = 168.0, variants=("control", "B"),
           periods: tuple[SharePeriod, ...] | None = None) -> Design:
    return Design(experiment_id="sim", variants=tuple(variants), control=variants[0], salt=salt,
                  window_s=window_h * 3600.0, alpha=0.05, primary_metric="conversion", start=T0,
                  end=T0 + 14 * DAY, stopped_at=None,
                  periods=periods or (SharePeriod(1, T0, tuple(shares)),))


def assign(d: Design, n: int, first_offset: int = 0) -> np.ndarray:
    """Variant codes of customers c<first_offset>..: the service's hash, under the design's last shares."""
    shares = d.periods[-1].shares
    return np.array([variant_at(bucket(pseudonym(d.salt, f"c{k}")), shares)
                     for k in range(first_offset, first_offset + n)], np.int64)


def simulate(seed: int, n: int, multiplier=None, base: float = 0.12, ctr: float = 0.08,
             shares=(0.5, 0.5), variant: np.ndarray | None = None, d: Design | None = None):
    """-> (design, Impressions, Events). multiplier(variant codes, shown channel codes) -> conversion
    factor per customer (default: 1, an A/A test). Each converting customer buys one offered item after
    a random one of their lists (exponential delay, mean one day), on a random channel."""
    rng = np.random.default_rng(seed)
    d = d or design(f"sim-{seed}", shares)
    v = assign(d, n) if variant is None else variant
    # lists served: 1 + Poisson(3) per customer over two weeks, channel by the customer's own mix
    per = 1 + rng.poisson(3.0, n)
    unit = np.repeat(np.arange(n), per)
    m = unit.shape[0]
    mix = rng.dirichlet(np.full(len(CHANNELS), 0.7), n)
    cum = np.cumsum(mix, axis=1)[unit]
    channel = np.minimum((rng.random(m)[:, None] > cum).sum(axis=1), len(CHANNELS) - 1)
    ts = T0 + rng.random(m) * 14 * DAY
    items = rng.integers(0, N_ITEMS, m * PER_LIST)
    imp = Impressions(unit=unit.astype(np.int64), variant=v[unit], channel=channel.astype(np.int64),
                      ts=ts, item_indptr=np.arange(0, m * PER_LIST + 1, PER_LIST, dtype=np.int64),
                      items=items.astype(np.int64), n_units=n)
    # clicks on lists, with their recommendation_id
    clicked = np.flatnonzero(rng.random(m) < ctr)
    # conversion: one touch list per customer (its first row + a random offset)
    first_row = np.concatenate([[0], np.cumsum(per)[:-1]])
    touch = first_row + (rng.random(n) * per).astype(np.int64)
    factor = np.ones(n) if multiplier is None else multiplier(v, channel[touch])
    converts = np.flatnonzero(rng.random(n) < base * factor)
    t_row = touch[converts]
    p_ts = ts[t_row] + rng.exponential(DAY, converts.shape[0])
    p_item = items[t_row * PER_LIST + rng.integers(0, PER_LIST, converts.shape[0])]
    bought = rng.integers(0, len(CHANNELS), converts.shape[0])
    with_id = (bought != CHANNELS.index("store")) & (rng.random(converts.shape[0]) < 0.5)
    # noise: purchases of items never offered (item code -1) and purchases far after any window
    noise = rng.integers(0, n, n // 5)
    late = rng.integers(0, n, n // 10)
    ev_unit = np.concatenate([unit[clicked], converts, noise, late])
    ev_imp = np.concatenate([clicked, np.where(with_id, t_row, -1), np.full(noise.shape[0] + late.shape[0], -1)])
    ev_kind = np.concatenate([np.full(clicked.shape[0], CLICK), np.full(converts.shape[0] + noise.shape[0]
                                                                        + late.shape[0], PURCHASE)])
    ev_ch = np.concatenate([channel[clicked], bought, rng.integers(0, 4, noise.shape[0] + late.shape[0])])
    ev_ts = np.concatenate([ts[clicked] + 60.0, p_ts, T0 + rng.random(noise.shape[0]) * 14 * DAY,
                            T0 + 40 * DAY + rng.random(late.shape[0]) * DAY])
    ev_item = np.concatenate([items[clicked * PER_LIST], p_item, np.full(noise.shape[0], -1),
                              rng.integers(0, N_ITEMS, late.shape[0])])
    ev_rev = np.where(ev_kind == PURCHASE, 20.0 + 60.0 * rng.random(ev_kind.shape[0]), 0.0)
    ev = Events(unit=ev_unit.astype(np.int64), impression=ev_imp.astype(np.int64), kind=ev_kind.astype(np.int64),
                channel=ev_ch.astype(np.int64), ts=ev_ts, item=ev_item.astype(np.int64), revenue=ev_rev)
    return d, imp, ev
