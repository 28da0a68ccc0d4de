"""Seeded synthetic omnichannel data: a catalog, stores with assortments and stock, customers with
tastes and channel habits, and their events on the web, the app, in store and at the call centre.

Same seed and arguments, same bytes. Everything is drawn with numpy in bulk (no Python loop over
events), so 10M events take seconds. What the data holds, for tests, demos and benchmarks:

- catalog: ids like `0493995001` (`0` + 6-digit product code + 3-digit colour variant: leading zeros
  exercise string ids), 12 categories with log-normal prices around a per-category median, brands,
  `;`-separated tags (colour, material), locales `en-GB;fr-FR` (~90%) or one locale, `channels` empty
  (~97%) or `web;app` (online only), a validity window for ~5% (seasonal), Zipf popularity;
- stores in French and British cities, each carrying a subset of the items sold in its locale
  (popular items in more stores), stock quantities with some zeros;
- customers `c000123` with 1-3 preferred categories, a channel habit (~30% web/app only, ~25% store
  only, the rest both), heavy-tailed activity, segment, locale, home store, consent (~95%), loyalty
  card, hashed email and phone;
- events in sessions: online sessions are mostly views and clicks, with add-to-cart and purchase of
  an item just viewed; store sessions are receipts (purchases of items the store carries, mostly at
  the customer's home store, with its store_id); ~85% of sessions browse a preferred category; some
  purchases are returned later (often in store, even when bought online); offers are shown and then
  accepted or declined under one recommendation_id; ratings are rare. Timestamps cover `days` days
  ending at `end` with weekly seasonality per channel and a mild upward trend.
"""

from __future__ import annotations

import hashlib
import math
import os
import sys

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from recsvc.core.types import CHANNELS, EVENTS
from training.errors import ConfigError

DAY = 86400
FORMATS = ("csv", "parquet", "jsonl")
# name, median price, nouns
CATEGORIES = (
    ("shoes", 65.0, ("Sneaker", "Boot", "Loafer", "Sandal", "Runner")),
    ("shirts", 35.0, ("Oxford Shirt", "Linen Shirt", "Polo", "Overshirt")),
    ("trousers", 45.0, ("Chino", "Jeans", "Cargo Trousers", "Jogger")),
    ("dresses", 55.0, ("Wrap Dress", "Midi Dress", "Shirt Dress", "Maxi Dress")),
    ("jackets", 95.0, ("Parka", "Blazer", "Bomber", "Trench Coat", "Puffer")),
    ("knitwear", 50.0, ("Cardigan", "Jumper", "Roll Neck", "Knit Vest")),
    ("accessories", 18.0, ("Scarf", "Belt", "Cap", "Gloves", "Sunglasses")),
    ("bags", 40.0, ("Tote", "Backpack", "Crossbody Bag", "Weekender")),
    ("sportswear", 30.0, ("Running Tee", "Leggings", "Track Jacket", "Shorts")),
    ("underwear", 12.0, ("Boxer Briefs", "Socks", "Bralette", "Vest")),
    ("beauty", 15.0, ("Lip Balm", "Eau de Toilette", "Hand Cream", "Shampoo")),
    ("home", 25.0, ("Cushion Cover", "Throw", "Candle", "Towel Set")),
)
CATEGORY_SHARE = np.array([12, 14, 11, 9, 8, 9, 10, 6, 8, 6, 4, 3], dtype=np.float64)
ADJECTIVES = ("Classic", "Slim", "Relaxed", "Organic", "Essential", "Premium", "Soft", "Light", "Urban",
              "Vintage", "Tailored", "Cosy")
COLOURS = ("black", "white", "navy", "grey", "beige", "red", "green", "blue", "pink", "brown")
MATERIALS = ("cotton", "wool", "linen", "leather", "denim", "recycled", "jersey", "silk")
BRANDS = ("Northwind", "Maison Lumiere", "Atlas", "Verde", "Kite", "Oakline", "Mistral", "Harbour", "Lune",
          "Fjord", "Solstice", "Ember")
LOCALES = ("en-GB", "fr-FR")
CITIES = (("Paris", "fr-FR"), ("London", "en-GB"), ("Lyon", "fr-FR"), ("Manchester", "en-GB"),
          ("Marseille", "fr-FR"), ("Bristol", "en-GB"), ("Lille", "fr-FR"), ("Leeds", "en-GB"),
          ("Bordeaux", "fr-FR"), ("Glasgow", "en-GB"), ("Nantes", "fr-FR"), ("Liverpool", "en-GB"))
BRANCHES = ("Centre", "Gare", "Nord", "Sud", "Est", "Ouest", "Riverside", "Park", "Market", "Old Town")
SEGMENTS = ("young", "family", "premium", "value")
SEGMENT_SHARE = (0.3, 0.3, 0.15, 0.25)
ONLINE, STORE_ONLY, BOTH = 0, 1, 2
HABIT_SHARE = (0.30, 0.25, 0.45)
CH_WEB, CH_APP, CH_STORE, CH_CALL = (CHANNELS.index(c) for c in ("web", "app", "store", "call_center"))
# day-of-week weights, Monday first
DOW_ONLINE = np.array([1.0, 0.95, 0.95, 1.0, 1.05, 1.1, 1.3])
DOW_STORE = np.array([0.7, 0.8, 0.85, 0.9, 1.1, 1.7, 0.35])
HOUR_ONLINE = np.array([2, 1, 1, 1, 1, 2, 4, 6, 7, 7, 7, 8, 9, 8, 7, 7, 8, 9, 11, 13, 14, 12, 8, 4], float)
HOUR_STORE = np.array([0] * 9 + [5, 7, 9, 11, 10, 8, 8, 9, 11, 12, 8] + [0] * 4, float)
INTERACTION_COLUMNS = ("event_id", "timestamp", "customer_id", "item_id", "event", "channel", "store_id",
                       "quantity", "value", "session_id", "recommendation_id", "actor_type", "actor_id")
EV = {e: i for i, e in enumerate(EVENTS)}


def synth(out_dir: str, *, customers: int = 2000, items: int = 500, stores: int = 5, events: int = 50_000,
          seed: int = 0, fmt: str = "csv", end: str = "2026-11-01", days: int = 180,
          progress: bool = False) -> dict:
    """Write a data directory (interactions.<fmt>, catalog.csv, customers.csv, stores.csv, stock.csv).

    Returns the counts written. Deterministic: the same arguments give the same bytes.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"fmt must be one of {', '.join(FORMATS)}, got {fmt!r}")
    for name, v, lo in (("customers", customers, 1), ("items", items, 1), ("stores", stores, 1),
                        ("events", events, 0), ("days", days, 1)):
        if int(v) != v or v < lo:
            raise ConfigError(f"{name} must be a whole number >= {lo}, got {v}")
    end_ts = _epoch_day(end)
    start_ts = end_ts - days * DAY
    steps = _Steps(progress, 5)
    r_cat, r_store, r_cust, r_ev = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4))
    cat = _catalog(r_cat, items, start_ts, end_ts)
    steps.step("catalog")
    st = _stores(r_store, stores, cat)
    steps.step("stores")
    cu = _customers(r_cust, customers, st)
    steps.step("customers")
    ev = _events(r_ev, events, cat, st, cu, start_ts, end_ts, days)
    steps.step("events")
    os.makedirs(out_dir, exist_ok=True)
    _write_catalog(out_dir, cat)
    _write_stores(out_dir, st, cat)
    _write_customers(out_dir, cu, st)
    _write_interactions(out_dir, fmt, ev, cat, st, cu)
    steps.step("write")
    steps.close()
    counts = {"interactions": len(ev["ts"]), "items": items, "customers": customers, "stores": stores,
              "stock": len(st["pair_item"])}
    counts.update({key: int((ev["event"] == EV[e]).sum())
                   for key, e in (("purchases", "purchase"), ("returns", "return"), ("offers_shown", "offer_shown"))})
    return counts


# ---------------------------------------------------------------- helpers
class _Steps:
    def __init__(self, enabled: bool, total: int) -> None:
        self.bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc="synth", unit="step", leave=False)

    def step(self, what: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(what, refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _epoch_day(day: str) -> int:
    try:
        d = np.datetime64(day, "D")
    except ValueError:
        raise ConfigError(f"end must be a date like 2026-11-01, got {day!r}") from None
    return int(d.astype("datetime64[s]").astype(np.int64))


def _digits(numbers: np.ndarray, width: int) -> pa.Array:
    """Zero-padded decimal strings (numbers >= 0) from two small lookup tables: no per-row formatting."""
    numbers = np.asarray(numbers, dtype=np.int64)
    if len(numbers) == 0:
        return pa.array([], pa.string())
    if width <= 4:
        table = pc.utf8_lpad(pc.cast(pa.array(np.arange(int(numbers.max()) + 1)), pa.string()), width, "0")
        return table.take(pa.array(numbers))
    hi, lo = np.divmod(numbers, 10_000)
    return pc.binary_join_element_wise(_digits(hi, width - 4), _digits(lo, 4), "")


def _fmt_ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    return pc.binary_join_element_wise(prefix, _digits(numbers, width), "")


def _names(codes: np.ndarray, names) -> pa.Array:
    """names[codes] as an arrow string array (via a dictionary: no numpy unicode arrays)."""
    return pa.DictionaryArray.from_arrays(pa.array(np.asarray(codes, dtype=np.int32)),
                                          pa.array(list(names), pa.string())).cast(pa.string())


def _iso_times(ts: np.ndarray) -> pa.Array:
    """`YYYY-MM-DDTHH:MM:SSZ` from per-day and per-second lookup tables (strftime per row is slow)."""
    day, sec = np.divmod(np.asarray(ts, dtype=np.int64), DAY)
    first = int(day.min()) if len(day) else 0
    days = np.arange(first, (int(day.max()) if len(day) else 0) + 1)
    day_txt = pc.strftime(pa.array((days * DAY).astype("datetime64[s]")), format="%Y-%m-%dT")
    clock = pc.strftime(pa.array(np.arange(DAY).astype("datetime64[s]")), format="%H:%M:%SZ")
    return pc.binary_join_element_wise(day_txt.take(pa.array(day - first)), clock.take(pa.array(sec)), "")


def _width(n: int, minimum: int) -> int:
    return max(minimum, len(str(max(n - 1, 0))))


def _choice_rows(rng: np.random.Generator, p: np.ndarray, size: int) -> np.ndarray:
    """rng.choice(len(p), size, p=p) by inverse CDF (fast for millions of draws over millions of options)."""
    cdf = np.cumsum(p, dtype=np.float64)
    return np.minimum(np.searchsorted(cdf, rng.random(size) * cdf[-1], side="right"), len(p) - 1)


def _rank_within(groups: np.ndarray) -> np.ndarray:
    """0-based position of each element among equal `groups` values (in index order)."""
    order = np.argsort(groups, kind="stable")
    g = groups[order]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    rank_sorted = np.arange(len(g)) - np.repeat(starts, np.diff(np.r_[starts, len(g)]))
    rank = np.empty_like(rank_sorted)
    rank[order] = rank_sorted
    return rank


# ---------------------------------------------------------------- catalog
def _catalog(rng: np.random.Generator, n: int, start_ts: int, end_ts: int) -> dict:
    n_cat = min(len(CATEGORIES), n)
    n_prod = max(1, math.ceil(n / 1.8))
    width = 6 if n_prod <= 450_000 else len(str(2 * n_prod))
    codes = rng.choice(9 * 10 ** (width - 1), size=n_prod, replace=False) + 10 ** (width - 1)
    prod_cat = _choice_rows(rng, CATEGORY_SHARE[:n_cat] / CATEGORY_SHARE[:n_cat].sum(), n_prod)
    prod_cat[: n_cat] = np.arange(n_cat)[: min(n_cat, n_prod)]  # every category has a product
    prod_of = np.concatenate([np.arange(n_prod), rng.integers(0, n_prod, n - n_prod)])
    variant = _rank_within(prod_of) + 1
    ids = pc.binary_join_element_wise(
        "0", pc.utf8_lpad(pc.cast(pa.array(codes[prod_of]), pa.string()), width, "0"),
        pc.utf8_lpad(pc.cast(pa.array(variant), pa.string()), 3, "0"), "")
    order = np.argsort(np.asarray(ids.to_numpy(zero_copy_only=False), dtype=str), kind="stable")
    prod_of, variant, ids = prod_of[order], variant[order], ids.take(pa.array(order))
    category = prod_cat[prod_of]
    # per product: adjective, noun, brand, material, price
    adj = rng.integers(0, len(ADJECTIVES), n_prod)
    noun_pick = rng.integers(0, 1 << 30, n_prod)
    brand_p = 1.0 / np.arange(1, len(BRANDS) + 1) ** 0.8
    brand = _choice_rows(rng, brand_p / brand_p.sum(), n_prod)
    material = rng.integers(0, len(MATERIALS), n_prod)
    median = np.array([c[1] for c in CATEGORIES])[prod_cat]
    price = np.floor(np.exp(np.log(median) + 0.35 * rng.standard_normal(n_prod))) + 0.99
    colour = (rng.integers(0, len(COLOURS), n_prod)[prod_of] + variant - 1) % len(COLOURS)
    nouns = [CATEGORIES[c][2][k % len(CATEGORIES[c][2])] for c, k in zip(prod_cat.tolist(), noun_pick.tolist(),
                                                                         strict=True)]
    title_prod = np.array([f"{ADJECTIVES[a]} {nn}" for a, nn in zip(adj.tolist(), nouns, strict=True)])
    colour_names = np.array(COLOURS)[colour]
    title = np.char.add(np.char.add(title_prod[prod_of], ", "), colour_names)
    tags = np.char.add(np.char.add(colour_names, ";"), np.array(MATERIALS)[material[prod_of]])
    # popularity: Zipf over a random ranking
    pop = 1.0 / (rng.permutation(n) + 1.0) ** 0.9
    u = rng.random(n)
    locale_mask = np.where(u < 0.90, 3, np.where(u < 0.95, 1, 2)).astype(np.int8)  # bit0 en-GB, bit1 fr-FR
    online_only = rng.random(n) < 0.03
    seasonal = rng.random(n) < 0.05
    vf = start_ts + rng.integers(-60, max((end_ts - start_ts) // DAY - 30, -59), n) * DAY
    vt = np.maximum(vf + rng.integers(60, 151, n) * DAY, start_ts + 30 * DAY)
    top = int(np.argmax(pop))  # sold everywhere, always valid: no assortment is ever empty
    locale_mask[top], online_only[top], seasonal[top] = 3, False, False
    return {
        "n": n, "ids": ids, "category": category, "n_cat": n_cat, "title": title, "price": price[prod_of],
        "brand": np.array(BRANDS)[brand[prod_of]], "tags": tags, "pop": pop, "locale_mask": locale_mask,
        "online_only": online_only, "seasonal": seasonal, "valid_from": np.where(seasonal, vf, 0),
        "valid_to": np.where(seasonal, vt, 0),
    }


# ---------------------------------------------------------------- stores and assortments
def _stores(rng: np.random.Generator, n: int, cat: dict) -> dict:
    city = np.arange(n) % len(CITIES)
    locale = np.array([LOCALES.index(CITIES[c][1]) for c in city.tolist()], dtype=np.int64)
    names = [f"{CITIES[c][0]} {BRANCHES[(k // len(CITIES)) % len(BRANCHES)]}"
             + (f" {k // (len(CITIES) * len(BRANCHES)) + 1}" if k >= len(CITIES) * len(BRANCHES) else "")
             for k, c in enumerate(city.tolist())]
    pop_pct = np.argsort(np.argsort(cat["pop"])) / max(cat["n"] - 1, 1)
    top = int(np.argmax(cat["pop"]))
    pair_store, pair_item = [], []
    for s in range(n):  # one vectorised draw per store
        sells = ((cat["locale_mask"] >> locale[s]) & 1).astype(bool) & ~cat["online_only"]
        carried = sells & (rng.random(cat["n"]) < 0.2 + 0.6 * pop_pct)
        carried[top] = True
        idx = np.flatnonzero(carried)
        pair_store.append(np.full(len(idx), s))
        pair_item.append(idx)
    pair_store = np.concatenate(pair_store)
    pair_item = np.concatenate(pair_item)
    qty = rng.poisson(3.0, len(pair_item))
    qty[rng.random(len(qty)) < 0.08] = 0
    size = 1.0 / np.arange(1, n + 1) ** 0.5  # flagship stores draw more customers
    return {"n": n, "ids": _fmt_ids("s", np.arange(1, n + 1), _width(n + 1, 3)), "names": names, "locale": locale,
            "pair_store": pair_store, "pair_item": pair_item, "qty": qty, "size": size / size.sum()}


# ---------------------------------------------------------------- customers
def _customers(rng: np.random.Generator, n: int, st: dict) -> dict:
    n_cat = len(CATEGORIES)
    habit = _choice_rows(rng, np.array(HABIT_SHARE), n)
    n_pref = _choice_rows(rng, np.array([0.3, 0.45, 0.25]), n) + 1
    race = -np.log(rng.random((n, n_cat))) / (CATEGORY_SHARE / CATEGORY_SHARE.sum())
    pref = np.argsort(race, axis=1)[:, :3]  # weighted sample of 3 categories without replacement
    home = _choice_rows(rng, st["size"], n)
    has_home = (habit != ONLINE) | (rng.random(n) < 0.3)
    store_locale = st["locale"][home]
    random_locale = (rng.random(n) < 0.5).astype(np.int64)
    keep_store_locale = rng.random(n) < 0.92
    locale = np.where(has_home & keep_store_locale, store_locale,
                      np.where(has_home, 1 - store_locale, random_locale))
    activity = np.exp(rng.normal(0.0, 1.1, n)) * np.array([1.0, 0.45, 1.2])[habit]
    app_share = rng.beta(2.0, 2.0, n)
    consent = rng.random(n) < 0.95
    card = (habit != ONLINE) & (rng.random(n) < 0.95) | (habit == ONLINE) & (rng.random(n) < 0.2)
    email = rng.random(n) < 0.95
    phone = rng.random(n) < 0.7
    segment = _choice_rows(rng, np.array(SEGMENT_SHARE), n)
    return {"n": n, "ids": _fmt_ids("c", np.arange(n), _width(n, 6)), "habit": habit, "n_pref": n_pref,
            "pref": pref, "home": np.where(has_home, home, -1), "locale": locale, "activity": activity,
            "app_share": app_share, "consent": consent, "card": card, "email": email, "phone": phone,
            "segment": segment}


# ---------------------------------------------------------------- assortments for item draws
class _Assortments:
    """Items one can draw in a context: online per locale (0..L-1) and per store (L + s), by category,
    weighted by popularity. Draws are one searchsorted over one cumulative array."""

    def __init__(self, cat: dict, st: dict) -> None:
        n_cat = len(CATEGORIES)
        groups, items = [], []
        for loc in range(len(LOCALES)):
            idx = np.flatnonzero((cat["locale_mask"] >> loc) & 1)
            groups.append(np.full(len(idx), loc))
            items.append(idx)
        groups.append(len(LOCALES) + st["pair_store"])
        items.append(st["pair_item"])
        g = np.concatenate(groups)
        it = np.concatenate(items)
        c = cat["category"][it]
        order = np.lexsort((it, c, g))
        self.g, self.item, self.cat = g[order], it[order], c[order]
        self.n_groups = len(LOCALES) + st["n"]
        self.cum = np.cumsum(cat["pop"][self.item])
        before = np.r_[0.0, self.cum]
        key = self.g * n_cat + self.cat
        n_keys = self.n_groups * n_cat
        lo = np.searchsorted(key, np.arange(n_keys), side="left")
        hi = np.searchsorted(key, np.arange(n_keys), side="right")
        self.kc_lo, self.kc_hi = lo, hi
        self.kc_base, self.kc_width = before[lo], before[hi] - before[lo]
        glo = np.searchsorted(self.g, np.arange(self.n_groups), side="left")
        ghi = np.searchsorted(self.g, np.arange(self.n_groups), side="right")
        self.g_lo, self.g_hi = glo, ghi
        self.g_base, self.g_width = before[glo], before[ghi] - before[glo]
        self.n_cat = n_cat

    def draw(self, rng: np.random.Generator, group: np.ndarray, category: np.ndarray) -> np.ndarray:
        """An item per row from `group`, within `category` where it has any (-1: any category)."""
        k = group * self.n_cat + np.maximum(category, 0)
        in_cat = (category >= 0) & (self.kc_width[k] > 0)
        base = np.where(in_cat, self.kc_base[k], self.g_base[group])
        width = np.where(in_cat, self.kc_width[k], self.g_width[group])
        lo = np.where(in_cat, self.kc_lo[k], self.g_lo[group])
        hi = np.where(in_cat, self.kc_hi[k], self.g_hi[group])
        pos = np.searchsorted(self.cum, base + rng.random(len(group)) * width, side="right")
        return self.item[np.clip(pos, lo, hi - 1)]


# ---------------------------------------------------------------- events
def _day_probs(start_ts: int, days: int, dow: np.ndarray) -> np.ndarray:
    day = np.arange(days)
    weekday = (start_ts // DAY + day + 3) % 7  # 1970-01-01 was a Thursday
    p = dow[weekday] * (1.0 + 0.3 * day / max(days - 1, 1))
    return p / p.sum()


def _times(rng: np.random.Generator, channel: np.ndarray, start_ts: int, days: int) -> np.ndarray:
    """A start time per row: day by channel seasonality, hour by channel habits."""
    in_store = channel == CH_STORE
    ts = np.empty(len(channel), dtype=np.int64)
    for mask, dow, hours in ((in_store, DOW_STORE, HOUR_STORE), (~in_store, DOW_ONLINE, HOUR_ONLINE)):
        m = int(mask.sum())
        day = _choice_rows(rng, _day_probs(start_ts, days, dow), m)
        hour = _choice_rows(rng, hours / hours.sum(), m)
        ts[mask] = start_ts + day * DAY + hour * 3600 + rng.integers(0, 3600, m)
    return ts


def _session_channels(rng: np.random.Generator, cu: dict, cust: np.ndarray, store_share: float,
                      call_share: float) -> np.ndarray:
    habit = cu["habit"][cust]
    u = rng.random(len(cust))
    online = np.where(rng.random(len(cust)) < cu["app_share"][cust], CH_APP, CH_WEB)
    return np.select(
        [habit == ONLINE, habit == STORE_ONLY],
        [online, np.where(u < 0.97, CH_STORE, CH_CALL)],
        np.where(u < store_share, CH_STORE, np.where(u < store_share + call_share, CH_CALL, online)),
    ).astype(np.int8)


def _stores_of(rng: np.random.Generator, cu: dict, st: dict, cust: np.ndarray) -> np.ndarray:
    """A store per row: the customer's home store ~85% of the time, else another store."""
    home = cu["home"][cust]
    other = _choice_rows(rng, st["size"], len(cust))
    return np.where((home >= 0) & (rng.random(len(cust)) < 0.85), home, other)


def _taste_categories(rng: np.random.Generator, cu: dict, cust: np.ndarray, share: float) -> np.ndarray:
    """A preferred category of each row's customer with probability `share`, else -1 (any)."""
    pick = cu["pref"][cust, rng.integers(0, 1 << 30, len(cust)) % cu["n_pref"][cust]]
    return np.where(rng.random(len(cust)) < share, pick, -1)


def _events(rng: np.random.Generator, n_events: int, cat: dict, st: dict, cu: dict, start_ts: int,
            end_ts: int, days: int) -> dict:
    shop = _Assortments(cat, st)
    n_loc = len(LOCALES)
    cust_p = cu["activity"] / cu["activity"].sum()
    # ---- offers: shown, then accepted / declined / ignored under one recommendation_id
    n_offers = round(0.03 * n_events)
    o_cust = _choice_rows(rng, cust_p * cu["consent"], n_offers) if n_offers else np.zeros(0, np.int64)
    o_chan = _session_channels(rng, cu, o_cust, 0.4, 0.05)
    o_store = np.where(o_chan == CH_STORE, _stores_of(rng, cu, st, o_cust), -1)
    o_group = np.where(o_store >= 0, n_loc + o_store, cu["locale"][o_cust])
    o_item = shop.draw(rng, o_group, _taste_categories(rng, cu, o_cust, 0.75))
    o_ts = _in_season(_times(rng, o_chan, start_ts, days), o_item, np.arange(len(o_item)) + (1 << 40), cat,
                      start_ts, end_ts)
    response = _choice_rows(rng, np.array([0.25, 0.45, 0.30]), n_offers)  # accepted, declined, none
    answered = np.flatnonzero(response < 2)
    n_offer_rows = n_offers + len(answered)
    if n_offer_rows > n_events:  # only for a handful of events: no offers then
        n_offers, n_offer_rows, answered = 0, 0, np.zeros(0, np.int64)
        o_cust = o_chan = o_store = o_item = o_ts = response = np.zeros(0, np.int64)
    # ---- sessions until the remaining budget is filled
    budget = n_events - n_offer_rows
    batches: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    total = 0
    while total < budget:
        m = max(1000, (budget - total) // 3)
        c = _choice_rows(rng, cust_p, m)
        ch = _session_channels(rng, cu, c, 0.35, 0.03)
        sz = np.select([ch == CH_STORE, ch == CH_CALL], [1 + rng.poisson(1.6, m), 1 + rng.poisson(0.5, m)],
                       rng.geometric(0.2, m))
        batches.append((c, ch, sz))
        total += int(sz.sum())
    s_cust, s_chan, size = (np.concatenate([b[k] for b in batches]) if batches else np.zeros(0, np.int64)
                            for k in range(3))
    cum = np.cumsum(size)
    n_sess = int(np.searchsorted(cum, budget, side="left")) + 1 if budget else 0
    s_cust, s_chan, size = s_cust[:n_sess], s_chan[:n_sess].astype(np.int8), size[:n_sess].copy()
    if n_sess:
        size[-1] -= int(cum[n_sess - 1] - budget)
    s_store = np.where(s_chan == CH_STORE, _stores_of(rng, cu, st, s_cust), -1)
    s_cat = _taste_categories(rng, cu, s_cust, 0.85)
    s_ts = _times(rng, s_chan, start_ts, days)
    # ---- rows of the sessions
    sess = np.repeat(np.arange(n_sess), size)
    first = np.r_[True, sess[1:] != sess[:-1]] if len(sess) else np.zeros(0, bool)
    cust, chan, store = s_cust[sess], s_chan[sess], s_store[sess]
    row_cat = np.where(rng.random(len(sess)) < 0.1, -1, s_cat[sess])
    group = np.where(store >= 0, n_loc + store, cu["locale"][cust])
    item = shop.draw(rng, group, row_cat)
    gap = rng.exponential(90.0, len(sess)).astype(np.int64) + 5
    gap[first] = 0
    offset = np.cumsum(gap) - np.repeat(np.cumsum(gap)[first] if len(sess) else gap, size)
    u = rng.random(len(sess))
    online_ev = np.select([u < 0.62, u < 0.82, u < 0.91, u < 0.99],
                          [EV["view"], EV["click"], EV["add_to_cart"], EV["purchase"]], EV["rating"])
    event = np.select([chan == CH_STORE, chan == CH_CALL],
                      [np.full(len(sess), EV["purchase"]), np.where(u < 0.6, EV["purchase"], EV["view"])],
                      online_ev).astype(np.int8)
    funnel = ~first & ((event == EV["add_to_cart"]) | (event == EV["purchase"])) & (chan != CH_STORE)
    item[funnel] = item[np.flatnonzero(funnel) - 1]  # add-to-cart / purchase of the item just viewed
    ts = _in_season(s_ts[sess] + offset, item, sess, cat, start_ts, end_ts)
    qty = np.where(event == EV["purchase"], 1 + _choice_rows(rng, np.array([0.85, 0.12, 0.03]), len(sess)), 1)
    rating = 1 + _choice_rows(rng, np.array([0.05, 0.1, 0.2, 0.35, 0.3]), len(sess))
    # ---- append offers (shown + answers)
    resp_code = np.where(response[answered] == 0, EV["offer_accepted"], EV["offer_declined"])
    cust = np.concatenate([cust, o_cust, o_cust[answered]])
    chan = np.concatenate([chan, o_chan, o_chan[answered]]).astype(np.int8)
    store = np.concatenate([store, o_store, o_store[answered]])
    item = np.concatenate([item, o_item, o_item[answered]])
    ts = np.concatenate([ts, o_ts, o_ts[answered] + rng.integers(10, 300, len(answered))])
    event = np.concatenate([event, np.full(n_offers, EV["offer_shown"]), resp_code]).astype(np.int8)
    qty = np.concatenate([qty, np.ones(n_offer_rows, np.int64)])
    rating = np.concatenate([rating, np.zeros(n_offer_rows, np.int64)])
    session = np.concatenate([sess, np.full(n_offer_rows, -1)])
    reco = np.concatenate([np.full(len(sess), -1), np.arange(n_offers), answered])
    ts = np.minimum(ts, end_ts - 1)
    # ---- returns: some purchases come back later, often to a store; each replaces a view
    buys = np.flatnonzero((event == EV["purchase"]) & (ts < end_ts - 2 * DAY))
    views = np.flatnonzero(event == EV["view"])
    n_ret = min(round(0.08 * len(buys)), len(views))
    ret_of = np.sort(rng.choice(buys, n_ret, replace=False)) if n_ret else np.zeros(0, np.int64)
    drop = rng.choice(views, n_ret, replace=False) if n_ret else np.zeros(0, np.int64)
    r_cust, r_item = cust[ret_of], item[ret_of]
    delay = DAY + (rng.exponential(7.0, n_ret) * DAY).astype(np.int64)
    r_ts = np.minimum(ts[ret_of] + np.minimum(delay, 30 * DAY), end_ts - 1)
    r_store = np.where(store[ret_of] >= 0, store[ret_of], cu["home"][r_cust])
    carried = _carries(st, cat["n"], r_store, r_item)
    goes_to_store = (cu["habit"][r_cust] != ONLINE) & (rng.random(n_ret) < 0.6)
    to_store = (r_store >= 0) & carried & ((chan[ret_of] == CH_STORE) | goes_to_store)
    r_chan = np.where(to_store, CH_STORE, np.where(chan[ret_of] == CH_STORE, CH_WEB, chan[ret_of]))
    keep = np.ones(len(event), dtype=bool)
    keep[drop] = False
    out = {
        "cust": np.concatenate([cust[keep], r_cust]), "item": np.concatenate([item[keep], r_item]),
        "chan": np.concatenate([chan[keep], r_chan]).astype(np.int8),
        "store": np.concatenate([store[keep], np.where(to_store, r_store, -1)]),
        "ts": np.concatenate([ts[keep], r_ts]), "event": np.concatenate([event[keep], np.full(n_ret, EV["return"])]),
        "qty": np.concatenate([qty[keep], qty[ret_of]]), "rating": np.concatenate([rating[keep], rating[ret_of]]),
        "session": np.concatenate([session[keep], np.full(n_ret, -1)]),
        "reco": np.concatenate([reco[keep], np.full(n_ret, -1)]),
    }
    compact = {"cust": np.int32, "item": np.int32, "chan": np.int8, "store": np.int32, "ts": np.int64,
               "event": np.int8, "qty": np.int8, "rating": np.int8, "session": np.int32, "reco": np.int32}
    order = np.argsort(out["ts"], kind="stable")
    return {k: v.astype(compact[k], copy=False)[order] for k, v in out.items()}


def _in_season(ts: np.ndarray, item: np.ndarray, key: np.ndarray, cat: dict, start_ts: int,
               end_ts: int) -> np.ndarray:
    """Move rows of seasonal items to a day inside the item's window, keeping the time of day.

    The day depends only on (key, item), so the rows of one item in one session (view, add to cart,
    purchase) move together and keep their order.
    """
    seas = cat["seasonal"][item]
    lo = np.maximum(cat["valid_from"][item], start_ts)
    hi = np.minimum(cat["valid_to"][item], end_ts)
    u = (key * 0.6180339887498949 + item * 0.7548776662466927) % 1.0
    day = lo // DAY + (u * np.maximum((hi - lo) // DAY, 1)).astype(np.int64)
    return np.where(seas, np.clip(day * DAY + ts % DAY, lo, hi - 1), ts)


def _carries(st: dict, n_items: int, store: np.ndarray, item: np.ndarray) -> np.ndarray:
    keys = np.sort(st["pair_store"].astype(np.int64) * n_items + st["pair_item"])
    q = np.maximum(store, 0).astype(np.int64) * n_items + item
    if len(keys) == 0:
        return np.zeros(len(q), dtype=bool)
    at = np.minimum(np.searchsorted(keys, q), len(keys) - 1)
    return (keys[at] == q) & (store >= 0)


# ---------------------------------------------------------------- writing
def _write_csv(table: pa.Table, path: str, quote: bool = True) -> None:
    """quote=False for tables of ids and names without commas or quotes: smaller, faster files."""
    pacsv.write_csv(table, path, write_options=pacsv.WriteOptions(quoting_style="needed" if quote else "none"))


def _dates(ts: np.ndarray, valid: np.ndarray) -> pa.Array:
    s = pc.strftime(pa.array(ts.astype("datetime64[s]")), format="%Y-%m-%d")
    return pc.if_else(pa.array(valid), s, "")


def _write_catalog(out_dir: str, cat: dict) -> None:
    locales = np.array(["", "en-GB", "fr-FR", "en-GB;fr-FR"])[cat["locale_mask"]]
    table = pa.table({
        "item_id": cat["ids"],
        "title": pa.array(cat["title"]),
        "category": pa.array(np.array([c[0] for c in CATEGORIES])[cat["category"]]),
        "price": pa.array(np.round(cat["price"], 2)),
        "brand": pa.array(cat["brand"]),
        "tags": pa.array(cat["tags"]),
        "channels": pa.array(np.where(cat["online_only"], "web;app", "")),
        "locales": pa.array(locales),
        "valid_from": _dates(cat["valid_from"], cat["seasonal"]),
        "valid_to": _dates(cat["valid_to"], cat["seasonal"]),
        "image_url": pc.binary_join_element_wise("https://img.example.com/", cat["ids"], ".jpg", ""),
    })
    _write_csv(table, os.path.join(out_dir, "catalog.csv"))


def _write_stores(out_dir: str, st: dict, cat: dict) -> None:
    _write_csv(pa.table({"store_id": st["ids"], "name": pa.array(st["names"], pa.string()),
                         "locale": pa.array(np.array(LOCALES)[st["locale"]])}),
               os.path.join(out_dir, "stores.csv"), quote=False)
    _write_csv(pa.table({"store_id": st["ids"].take(pa.array(st["pair_store"])),
                         "item_id": cat["ids"].take(pa.array(st["pair_item"])),
                         "quantity": pa.array(st["qty"])}),
               os.path.join(out_dir, "stock.csv"), quote=False)


def _sha(values: list[str]) -> list[str]:
    return [hashlib.sha256(v.encode()).hexdigest() for v in values]


def _write_customers(out_dir: str, cu: dict, st: dict) -> None:
    n = cu["n"]
    ids = cu["ids"].to_pylist()
    k = np.arange(n, dtype=np.int64)
    card = _fmt_ids("0", (k * 7919 + 104729) % 10**12, 12)  # 7919 is prime to 10^12: unique cards
    # E.164, no spaces: the form the clerk page hashes a typed number to
    phones = [f"+336{(i * 104723 + 7) % 10**8:08d}" for i in range(n)]
    home = cu["home"]
    table = pa.table({
        "customer_id": cu["ids"],
        "segment": pa.array(np.array(SEGMENTS)[cu["segment"]]),
        "locale": pa.array(np.array(LOCALES)[cu["locale"]]),
        "home_store": pc.if_else(pa.array(home >= 0), st["ids"].take(pa.array(np.maximum(home, 0))), ""),
        "consent_personalisation": pa.array(np.where(cu["consent"], "true", "false")),
        "loyalty_card": pc.if_else(pa.array(cu["card"]), card, ""),
        "email_sha256": pc.if_else(pa.array(cu["email"]), pa.array(_sha([f"{c}@mail.example" for c in ids])), ""),
        "phone_sha256": pc.if_else(pa.array(cu["phone"]), pa.array(_sha(phones)), ""),
    })
    _write_csv(table, os.path.join(out_dir, "customers.csv"))


def _interaction_table(ev: dict, cat: dict, st: dict, cu: dict, epoch: bool) -> pa.Table:
    n = len(ev["ts"])
    event = ev["event"]
    chan = ev["chan"]
    store_ok = pa.array(ev["store"] >= 0)
    store_id = pc.if_else(store_ok, st["ids"].take(pa.array(np.maximum(ev["store"], 0))), "")
    price = cat["price"][ev["item"]]
    value = np.where(event == EV["rating"], ev["rating"].astype(np.float64),
                     np.where((event == EV["purchase"]) | (event == EV["return"]), np.round(price * ev["qty"], 2),
                              np.nan))
    clerk = (chan == CH_STORE) | (chan == CH_CALL)
    clerk_no = _digits((ev["cust"] % 4) + 1, 1)
    actor_id = pc.if_else(store_ok, pc.binary_join_element_wise(store_id, "-clerk", clerk_no, ""),
                          pc.if_else(pa.array(chan == CH_CALL),
                                     pc.binary_join_element_wise("cc-agent", clerk_no, ""), ""))
    ts = pa.array(ev["ts"]) if epoch else _iso_times(ev["ts"])
    return pa.table({
        "event_id": _fmt_ids("e", np.arange(n), _width(n, 9)),
        "timestamp": ts,
        "customer_id": cu["ids"].take(pa.array(ev["cust"])),
        "item_id": cat["ids"].take(pa.array(ev["item"])),
        "event": _names(event, EVENTS),
        "channel": _names(chan, CHANNELS),
        "store_id": store_id,
        "quantity": pa.array(ev["qty"].astype(np.int64)),
        "value": pa.array(value, from_pandas=True),
        "session_id": pc.if_else(pa.array(ev["session"] >= 0),
                                 _fmt_ids("ss", np.maximum(ev["session"], 0), _width(n, 8)), ""),
        "recommendation_id": pc.if_else(pa.array(ev["reco"] >= 0),
                                        _fmt_ids("r-", np.maximum(ev["reco"], 0), _width(n, 8)), ""),
        "actor_type": _names(clerk, ("customer", "clerk")),
        "actor_id": actor_id,
    })


def _write_interactions(out_dir: str, fmt: str, ev: dict, cat: dict, st: dict, cu: dict) -> None:
    path = os.path.join(out_dir, f"interactions.{fmt}")
    table = _interaction_table(ev, cat, st, cu, epoch=fmt == "parquet")
    if fmt == "csv":
        _write_csv(table, path, quote=False)
    elif fmt == "parquet":
        pq.write_table(table, path, compression="zstd")
    else:
        _write_jsonl(table, path)


def _write_jsonl(table: pa.Table, path: str) -> None:
    """JSON Lines assembled with arrow string kernels (ids and names here need no JSON escaping)."""
    parts: list = []
    for i, name in enumerate(table.column_names):
        col = table.column(name)
        if pa.types.is_string(col.type):
            text = pc.binary_join_element_wise('"', col, '"', "")
        else:
            text = pc.fill_null(pc.cast(col, pa.string()), "null")
        parts += [("{" if i == 0 else ",") + f'"{name}":', text]
    parts.append("}\n")
    lines = pc.binary_join_element_wise(*parts, "")
    arr = lines.combine_chunks() if isinstance(lines, pa.ChunkedArray) else lines
    arr = arr.cast(pa.large_string())
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset: arr.offset + len(arr) + 1]
    with open(path, "wb") as f:
        if len(arr):
            f.write(memoryview(arr.buffers()[2])[int(offsets[0]): int(offsets[-1])])
