"""The synthetic generator: same seed, same bytes; and the omnichannel shape tests and benchmarks rely on."""

from __future__ import annotations

import filecmp
import os

import numpy as np
import pandas as pd
import pytest

from training.errors import ConfigError
from training.io import load_dataset
from training.synth import synth

FILES = ("catalog.csv", "customers.csv", "stores.csv", "stock.csv")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("synth") / "d")
    counts = synth(d, customers=1500, items=400, stores=4, events=30_000, seed=3)
    return d, counts, load_dataset(d, max_reject_share=0.0)


@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl"])
def test_same_seed_same_bytes_other_seed_other_data(tmp_path, fmt):
    kw = {"customers": 300, "items": 120, "stores": 3, "events": 4000, "fmt": fmt}
    synth(str(tmp_path / "a"), seed=7, **kw)
    synth(str(tmp_path / "b"), seed=7, **kw)
    synth(str(tmp_path / "c"), seed=8, **kw)
    names = FILES + (f"interactions.{fmt}",)
    assert sorted(os.listdir(tmp_path / "a")) == sorted(names)
    for name in names:
        assert filecmp.cmp(tmp_path / "a" / name, tmp_path / "b" / name, shallow=False), name
    assert not filecmp.cmp(tmp_path / "a" / f"interactions.{fmt}", tmp_path / "c" / f"interactions.{fmt}",
                           shallow=False)


def test_formats_hold_the_same_events(tmp_path):
    kw = {"customers": 200, "items": 80, "stores": 2, "events": 2500, "seed": 1}
    frames = []
    for fmt in ("csv", "parquet", "jsonl"):
        synth(str(tmp_path / fmt), fmt=fmt, **kw)
        inter = load_dataset(str(tmp_path / fmt), max_reject_share=0.0).interactions
        frames.append(inter.drop(columns="line").astype(object))
    pd.testing.assert_frame_equal(frames[0], frames[1])
    pd.testing.assert_frame_equal(frames[0], frames[2])


def test_counts_are_exact_and_every_row_is_valid(data):
    _, counts, ds = data
    assert counts["interactions"] == 30_000 == ds.n_rows == len(ds.interactions) and ds.n_rejects == 0
    assert len(ds.catalog) == 400 and len(ds.customers) == 1500 and len(ds.stores) == 4
    assert ds.interactions["event_id"].is_unique
    assert counts["returns"] > 0 and counts["purchases"] > counts["returns"] and counts["offers_shown"] == 900


@pytest.mark.parametrize("kw", [{"customers": 5, "items": 3, "stores": 1, "events": 40}, {"events": 0, "items": 12},
                                {"customers": 50, "items": 20, "stores": 1, "events": 1000}])
def test_tiny_sizes_work(tmp_path, kw):
    counts = synth(str(tmp_path / "d"), **kw)
    ds = load_dataset(str(tmp_path / "d"), max_reject_share=0.0) if kw["events"] else None
    assert counts["interactions"] == kw["events"]
    if ds is not None:
        assert len(ds.interactions) == kw["events"]


def test_bad_arguments(tmp_path):
    with pytest.raises(ConfigError, match="fmt"):
        synth(str(tmp_path), fmt="xlsx")
    with pytest.raises(ConfigError, match="stores"):
        synth(str(tmp_path), stores=0)
    with pytest.raises(ConfigError, match="end"):
        synth(str(tmp_path), end="someday")


def test_ids_are_strings_with_leading_zeros(data):
    _, _, ds = data
    items = ds.catalog["item_id"]
    assert items.str.fullmatch(r"0\d{9}").all() and items.is_monotonic_increasing
    assert ds.customers["customer_id"].str.fullmatch(r"c\d{6}").all()
    assert ds.customers["loyalty_card"].replace("", np.nan).dropna().str.fullmatch(r"0\d{12}").all()
    assert ds.customers["email_sha256"].replace("", np.nan).dropna().str.fullmatch(r"[0-9a-f]{64}").all()


def test_catalog_shape(data):
    _, _, ds = data
    cat = ds.catalog
    assert cat["category"].nunique() == 12
    assert (cat["price"] > 0).all() and cat.groupby("category")["price"].median().nunique() > 6
    assert cat["tags"].str.contains(";").all() and (cat["brand"] != "").all()
    both = (cat["locales"] == "en-GB;fr-FR").mean()
    assert 0.8 < both < 0.97 and set(cat["locales"]) == {"en-GB;fr-FR", "en-GB", "fr-FR"}
    online_only = (cat["channels"] == "web;app").mean()
    assert 0.003 < online_only < 0.08 and set(cat["channels"]) == {"", "web;app"}
    seasonal = cat["valid_from"] > np.iinfo(np.int64).min // 2
    assert 0.01 < seasonal.mean() < 0.12 and (cat.loc[seasonal, "valid_to"] > cat.loc[seasonal, "valid_from"]).all()
    # power-law popularity: the top 10% of items draw a large share of the events
    per_item = ds.interactions["item_id"].value_counts().to_numpy()
    assert per_item[: len(cat) // 10].sum() > 0.35 * per_item.sum()


def test_channel_habits_and_heavy_tailed_activity(data):
    _, _, ds = data
    inter = ds.interactions
    ch = inter["channel"].astype(str)
    per = pd.crosstab(inter["customer_id"].astype(str), np.where(ch.isin(["web", "app"]), "online",
                                                                 np.where(ch == "store", "store", "other")))
    online_only = ((per["online"] > 0) & (per["store"] == 0)).mean()
    store_only = ((per["store"] > 0) & (per["online"] == 0)).mean()
    assert online_only > 0.2 and store_only > 0.1 and 1 - online_only - store_only > 0.3
    assert set(ch.unique()) == {"web", "app", "store", "call_center"}
    n = inter.groupby("customer_id", observed=True).size()
    assert n.max() > 10 * n.median()  # heavy and light customers
    # store-only customers are light: a few receipts, mostly purchases
    store_only_ids = per.index[(per["store"] > 0) & (per["online"] == 0)]
    assert n.loc[store_only_ids].median() < n.median()


def test_store_events_carry_store_ids_of_stocked_items(data):
    _, _, ds = data
    inter = ds.interactions
    store_rows = inter[inter["channel"] == "store"]
    assert (store_rows["store_id"].astype(str) != "").all()
    assert (inter.loc[inter["channel"] != "store", "store_id"].astype(str) == "").all()
    stocked = set(zip(ds.stock["store_id"], ds.stock["item_id"], strict=True))
    pairs = set(zip(store_rows["store_id"].astype(str), store_rows["item_id"].astype(str), strict=True))
    assert pairs <= stocked
    # mostly at the customer's home store
    home = ds.customers.set_index("customer_id")["home_store"]
    at_home = (store_rows["store_id"].astype(str).to_numpy() == home.loc[store_rows["customer_id"].astype(str)].to_numpy())
    assert at_home.mean() > 0.7
    assert (ds.stock["quantity"] == 0).any() and (ds.stock["quantity"] > 0).mean() > 0.8


def test_events_have_a_realistic_shape(data):
    _, _, ds = data
    inter = ds.interactions
    ev = inter["event"].astype(str)
    online = inter["channel"].isin(["web", "app"]).to_numpy()
    share = ev[online].value_counts(normalize=True)
    assert share["view"] > share["click"] > share["add_to_cart"] > share["rating"]
    assert (ev[inter["channel"] == "store"].isin(["purchase", "return", "offer_shown", "offer_accepted",
                                                  "offer_declined"])).all()
    buys = inter[ev == "purchase"]
    prices = ds.catalog.set_index("item_id")["price"]
    expected = (prices.loc[buys["item_id"].astype(str)].to_numpy() * buys["quantity"].to_numpy()).round(2)
    assert np.allclose(buys["value"].to_numpy(), expected)
    ratings = inter.loc[ev == "rating", "value"]
    assert len(ratings) and ratings.between(1, 5).all()
    # weekly seasonality: stores are busier on Saturdays than on Sundays
    day = pd.to_datetime(inter.loc[inter["channel"] == "store", "ts"], unit="s").dt.day_of_week
    assert (day == 5).sum() > 2 * (day == 6).sum()
    span = inter["ts"].max() - inter["ts"].min()
    assert 170 * 86400 < span <= 180 * 86400 and inter["ts"].max() < pd.Timestamp("2026-11-01", tz="UTC").timestamp()


def test_returns_follow_purchases_and_offers_are_answered_under_their_id(data):
    _, _, ds = data
    inter = ds.interactions
    ev = inter["event"].astype(str)
    key = inter["customer_id"].astype(str) + "|" + inter["item_id"].astype(str)
    first_buy = inter.assign(key=key)[ev == "purchase"].groupby("key")["ts"].min()
    rets = inter.assign(key=key)[ev == "return"]
    assert rets["key"].isin(first_buy.index).all()
    assert (rets["ts"].to_numpy() > first_buy.loc[rets["key"]].to_numpy()).all()
    shown = inter[ev == "offer_shown"].set_index("recommendation_id")
    answers = inter[ev.isin(["offer_accepted", "offer_declined"])]
    assert shown.index.is_unique and (shown.index != "").all()
    assert answers["recommendation_id"].isin(shown.index).all()
    s = shown.loc[answers["recommendation_id"]]
    assert (s["item_id"].astype(str).to_numpy() == answers["item_id"].astype(str).to_numpy()).all()
    assert (s["ts"].to_numpy() <= answers["ts"].to_numpy()).all()
    assert 0 < (ev == "offer_declined").sum() and 0 < (ev == "offer_accepted").sum()
    clerk = inter[inter["channel"] == "store"]
    assert (clerk["actor_type"] == "clerk").all() and clerk["actor_id"].str.startswith("s").all()


def test_customers_stick_to_their_tastes(data):
    _, _, ds = data
    inter = ds.interactions
    cat = ds.catalog.set_index("item_id")["category"]
    df = pd.DataFrame({"c": inter["customer_id"].astype(str), "k": cat.loc[inter["item_id"].astype(str)].to_numpy()})
    per = df.groupby(["c", "k"]).size()
    active = df["c"].value_counts()
    active = active[active >= 30].index
    top3 = per.loc[active].groupby(level=0).apply(lambda s: s.nlargest(3).sum() / s.sum())
    assert top3.median() > 0.7  # ~80% of a customer's items come from 1-3 preferred categories
    seg = ds.customers["segment"].value_counts(normalize=True)
    assert set(seg.index) == {"young", "family", "premium", "value"}
    assert 0.9 < ds.customers["consent_personalisation"].fillna(False).astype(bool).mean() < 0.99


def test_seasonal_items_sell_only_in_their_window(data):
    _, _, ds = data
    inter = ds.interactions
    cat = ds.catalog.set_index("item_id")
    seasonal = cat.index[cat["valid_from"] > np.iinfo(np.int64).min // 2]
    rows = inter[inter["item_id"].isin(seasonal) & (inter["event"] != "return")]
    assert len(rows) > 0
    lo = cat.loc[rows["item_id"].astype(str), "valid_from"].to_numpy()
    hi = cat.loc[rows["item_id"].astype(str), "valid_to"].to_numpy()
    assert ((rows["ts"].to_numpy() >= lo) & (rows["ts"].to_numpy() < hi)).all()
