"""Reading and validating a data directory: every kind of bad row lands in the rejects file."""

from __future__ import annotations

import calendar
import gzip
import json
import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from recsvc.artifact.manifest import NO_DATE_FROM, NO_DATE_TO
from recsvc.core.types import CHANNELS, EVENTS
from training.errors import DataError
from training.io import load_dataset, parse_timestamp_series, read_table

CATALOG = """item_id,title,category,price,channels,valid_from,valid_to
0493995001,Shirt,shirts,19.9,,,
0493995002,Shoe,shoes,49,web;app,2026-01-01,2026-12-31
i3,Hat,accessories,5,,,
"""
STORES = "store_id,name,locale,items_in_stock\ns1,Paris,fr-FR,0493995001;i3\ns2,London,en-GB,\n"
CUSTOMERS = "customer_id,segment,consent_personalisation\n007,young,true\nc2,,FALSE\nc3,,\n"
HEADER = "customer_id,item_id,event,channel,timestamp,store_id,quantity,value,event_id"
GOOD_ROWS = [
    "007,0493995001,view,web,2026-10-01,,,,e1",
    "007,0493995002,click,app,2026-10-01T10:00:00Z,,,,e2",
    "007,0493995001,purchase,store,1790000000,s1,2,39.8,e3",
    "c2,i3,add_to_cart,web,2026-10-02T10:00:00+02:00,,1,,e4",
    "c2,i3,return,store,2026-10-03 09:30,s1,1,5,e5",
    "c9,0493995001,offer_shown,call_center,1790000100,,,,e6",
    "c9,0493995001,offer_declined,call_center,1790000200,,,,e7",
    "c9,i3,rating,web,1790000300,,,4,e8",
    "c3,i3,offer_accepted,store,1790000400,,,,",
    "c3,i3,view,app,1790000500,,,,",
]


def write_dir(d, rows=None, *, catalog=CATALOG, stores=STORES, customers=CUSTOMERS, stock=None, header=HEADER):
    os.makedirs(d, exist_ok=True)
    for name, text in (("catalog.csv", catalog), ("stores.csv", stores), ("customers.csv", customers),
                       ("stock.csv", stock)):
        if text is not None:
            with open(os.path.join(d, name), "w", encoding="utf-8") as f:
                f.write(text)
    with open(os.path.join(d, "interactions.csv"), "w", encoding="utf-8") as f:
        f.write("\n".join([header] + (GOOD_ROWS if rows is None else rows)) + "\n")
    return str(d)


def epoch(y, mo, d, h=0, mi=0, s=0):
    return calendar.timegm((y, mo, d, h, mi, s))


def rejects_of(ds):
    return pd.read_csv(ds.rejects_path, dtype=str, keep_default_na=False)


# ---------------------------------------------------------------- the happy path
def test_reads_typed_frames_and_keeps_leading_zeros(tmp_path):
    ds = load_dataset(write_dir(tmp_path / "d"), rejects_path=str(tmp_path / "rej.csv"))
    inter = ds.interactions
    assert ds.n_rows == len(GOOD_ROWS) == len(inter) and ds.n_rejects == 0 and ds.rejects_path is None
    assert not (tmp_path / "rej.csv").exists()
    assert list(inter.columns) == ["customer_id", "item_id", "event", "channel", "ts", "store_id", "quantity",
                                   "value", "event_id", "recommendation_id", "session_id", "actor_type",
                                   "actor_id", "line"]
    assert inter["customer_id"].iloc[0] == "007" and inter["item_id"].iloc[0] == "0493995001"
    assert tuple(inter["event"].cat.categories) == EVENTS and tuple(inter["channel"].cat.categories) == CHANNELS
    assert inter["ts"].dtype == np.int64 and inter["line"].tolist() == list(range(2, 2 + len(GOOD_ROWS)))
    assert inter["quantity"].tolist()[:3] == [1.0, 1.0, 2.0]
    assert np.isnan(inter["value"].iloc[0]) and inter["value"].iloc[2] == 39.8
    assert inter["store_id"].tolist()[2] == "s1" and inter["store_id"].tolist()[0] == ""
    assert inter["event_id"].tolist()[-1] == ""
    cat = ds.catalog
    assert cat["item_id"].tolist() == ["0493995001", "0493995002", "i3"]
    assert cat["price"].dtype == np.float64 and cat["price"].tolist() == [19.9, 49.0, 5.0]
    assert cat["valid_from"].tolist() == [NO_DATE_FROM, epoch(2026, 1, 1), NO_DATE_FROM]
    assert cat["valid_to"].tolist() == [NO_DATE_TO, epoch(2026, 12, 31), NO_DATE_TO]
    assert cat["brand"].tolist() == ["", "", ""] and cat["channels"].tolist() == ["", "web;app", ""]
    cust = ds.customers
    assert cust["customer_id"].tolist() == ["007", "c2", "c3"]
    assert str(cust["consent_personalisation"].dtype) == "boolean"
    assert cust["consent_personalisation"].tolist() == [True, False, pd.NA]
    assert ds.stores["store_id"].tolist() == ["s1", "s2"]
    assert ds.stock.to_dict("records") == [{"store_id": "s1", "item_id": "0493995001", "quantity": 1},
                                           {"store_id": "s1", "item_id": "i3", "quantity": 1}]
    assert len(ds.fingerprint) == 64


def test_date_only_zoned_and_epoch_timestamps(tmp_path):
    ts = load_dataset(write_dir(tmp_path / "d")).interactions["ts"].tolist()
    assert ts[0] == epoch(2026, 10, 1)  # a date alone is 00:00 UTC
    assert ts[1] == epoch(2026, 10, 1, 10)
    assert ts[2] == 1790000000  # epoch seconds
    assert ts[3] == epoch(2026, 10, 2, 8)  # +02:00 converted to UTC
    assert ts[4] == epoch(2026, 10, 3, 9, 30)  # no zone: UTC


def test_parse_timestamp_series():
    ts, ok = parse_timestamp_series(pd.Series(["2026-11-01", "1790000000", "nope", "", "1790000000000",
                                               "2026-11-01T00:00:01.900Z"]))
    assert ok.tolist() == [True, True, False, False, False, True]
    assert ts[0] == epoch(2026, 11, 1) and ts[1] == 1790000000 and ts[5] == epoch(2026, 11, 1, 0, 0, 1)


def test_read_table_gives_strings(tmp_path):
    d = write_dir(tmp_path / "d")
    df = read_table(os.path.join(d, "catalog.csv"))
    assert df["item_id"].tolist()[0] == "0493995001" and df["price"].tolist() == ["19.9", "49", "5"]


def test_stock_file_and_until(tmp_path):
    stock = "store_id,item_id,quantity\ns1,0493995002,7\ns2,i3,0\n"
    d = write_dir(tmp_path / "d", stock=stock)
    ds = load_dataset(d, until=1790000250)
    assert ds.interactions["ts"].max() < 1790000250 and ds.n_rows == len(GOOD_ROWS)
    assert ds.interactions["event_id"].tolist() == ["e3", "e6", "e7"]
    got = {(r.store_id, r.item_id): r.quantity for r in ds.stock.itertuples()}
    assert got == {("s1", "0493995002"): 7, ("s2", "i3"): 0, ("s1", "0493995001"): 1, ("s1", "i3"): 1}
    assert ds.stock["quantity"].dtype == np.int64


# ---------------------------------------------------------------- all the formats
def _records():
    rows = [dict(zip(HEADER.split(","), r.split(","), strict=True)) for r in GOOD_ROWS]
    return [{k: v for k, v in r.items() if v != ""} for r in rows]


def _same_frames(a: pd.DataFrame, b: pd.DataFrame):
    cols = [c for c in a.columns if c != "line"]
    pd.testing.assert_frame_equal(a[cols].astype(object), b[cols].astype(object))


@pytest.mark.parametrize("fmt", ["csv.gz", "parquet", "jsonl", "jsonl.gz"])
def test_every_format_reads_the_same(tmp_path, fmt):
    ref = load_dataset(write_dir(tmp_path / "ref")).interactions
    d = write_dir(tmp_path / "d")
    os.remove(os.path.join(d, "interactions.csv"))
    path = os.path.join(d, f"interactions.{fmt}")
    recs = _records()
    if fmt == "csv.gz":
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write("\n".join([HEADER] + GOOD_ROWS) + "\n")
    elif fmt == "parquet":
        # typed columns: numbers and a real timestamp type must come out as the CSV's
        df = pd.DataFrame(recs)
        df["timestamp"] = pd.to_datetime(ref["ts"].to_numpy(), unit="s", utc=True)
        df["quantity"] = pd.to_numeric(df["quantity"])
        df["value"] = pd.to_numeric(df["value"])
        assert pa.types.is_timestamp(pa.Table.from_pandas(df).schema.field("timestamp").type)
        pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path)
    else:
        for r in recs:  # numbers as JSON numbers where they are numbers
            for k in ("quantity", "value"):
                if k in r:
                    r[k] = float(r[k])
            if r["timestamp"].isdigit():
                r["timestamp"] = int(r["timestamp"])
        text = "".join(json.dumps(r) + "\n" for r in recs)
        opener = gzip.open if fmt.endswith(".gz") else open
        with opener(path, "wt", encoding="utf-8") as f:
            f.write(text)
    got = load_dataset(d).interactions
    _same_frames(ref, got)
    first_line = 2 if fmt.startswith("csv") else 1
    assert got["line"].tolist() == list(range(first_line, first_line + len(GOOD_ROWS)))


def test_jsonl_bad_lines_are_rejects_with_their_line(tmp_path):
    d = write_dir(tmp_path / "d")
    os.remove(os.path.join(d, "interactions.csv"))
    lines = [json.dumps(r) for r in _records()]
    lines.insert(2, "{not json")
    lines.insert(4, json.dumps({"customer_id": "007", "item_id": "i3", "event": "view", "channel": "web",
                                "timestamp": 1790000000, "value": "abc"}))  # mixed types in one column
    with open(os.path.join(d, "interactions.jsonl"), "w") as f:
        f.write("\n".join(lines) + "\n")
    ds = load_dataset(d, rejects_path=str(tmp_path / "r.csv"), max_reject_share=0.5)
    rej = rejects_of(ds)
    assert rej[["file", "line", "field"]].values.tolist() == [["interactions.jsonl", "3", "(row)"],
                                                             ["interactions.jsonl", "5", "value"]]
    assert rej["reason"].tolist()[0].startswith("malformed row: invalid JSON")
    assert len(ds.interactions) == len(GOOD_ROWS) and ds.interactions["customer_id"].iloc[0] == "007"


# ---------------------------------------------------------------- every kind of reject
BAD_INTERACTIONS = [
    ("c1,i3,buy,web,1790000000,,,,x", "event", "unknown event", "buy"),
    ("c1,i3,view,fax,1790000000,,,,x", "channel", "unknown channel", "fax"),
    ("c1,i3,view,web,yesterday,,,,x", "timestamp", "not ISO-8601 or integer epoch seconds", "yesterday"),
    ("c1,i3,view,web,2026-13-45,,,,x", "timestamp", "not ISO-8601 or integer epoch seconds", "2026-13-45"),
    ("c1,i3,view,web,,,,,x", "timestamp", "missing", ""),
    ("c1,i3,view,web,1790000000000,,,,x", "timestamp", "out of range (milliseconds?)", "1790000000000"),
    (",i3,view,web,1790000000,,,,x", "customer_id", "missing", ""),
    ("c1,,view,web,1790000000,,,,x", "item_id", "missing", ""),
    ("c1,i3,purchase,web,1790000000,,-1,,x", "quantity", "negative", "-1"),
    ("c1,i3,purchase,web,1790000000,,two,,x", "quantity", "not a number", "two"),
    ("c1,i3,purchase,web,1790000000,,1,12eur,x", "value", "not a number", "12eur"),
    ("c1,0493995009,view,web,1790000000,,,,x", "item_id", "unknown item (not in catalog)", "0493995009"),
    ("c1,i3,purchase,store,1790000000,s9,,,x", "store_id", "unknown store", "s9"),
    ("c1,i3,view,web,1790000000,,,,e3", "event_id", "duplicate event_id (first at line 4)", "e3"),
    ("c1,i3,view,web", "(row)", "malformed row: expected 9 fields, got 4", "c1,i3,view,web"),
]


@pytest.mark.parametrize("row,field,reason,value", BAD_INTERACTIONS, ids=[f"{b[1]}:{b[2][:20]}" for b in BAD_INTERACTIONS])
def test_each_bad_interaction_row_is_rejected(tmp_path, row, field, reason, value):
    d = write_dir(tmp_path / "d", GOOD_ROWS + [row])
    ds = load_dataset(d, rejects_path=str(tmp_path / "rejects.csv"), max_reject_share=1.0)
    assert len(ds.interactions) == len(GOOD_ROWS) and ds.n_rejects == 1 and ds.n_rows == len(GOOD_ROWS) + 1
    rej = rejects_of(ds)
    assert list(rej.columns) == ["file", "line", "field", "reason", "value"]
    assert len(rej) == 1
    r = rej.iloc[0]
    assert (r["file"], r["line"], r["field"], r["value"]) == ("interactions.csv", str(len(GOOD_ROWS) + 2), field, value)
    assert reason in r["reason"]


def test_store_rows_may_lack_a_store_and_store_ids_need_no_stores_file(tmp_path):
    rows = GOOD_ROWS + ["c1,i3,purchase,store,1790000000,,,,x1", "c1,i3,purchase,store,1790000000,s77,,,x2"]
    ds = load_dataset(write_dir(tmp_path / "d", rows, stores=None), max_reject_share=0.0)
    assert ds.n_rejects == 0 and ds.interactions["store_id"].tolist()[-2:] == ["", "s77"]


def test_first_of_duplicate_event_ids_is_kept_even_when_an_earlier_copy_was_bad(tmp_path):
    rows = ["c1,i3,view,web,nope,,,,dup", "c1,i3,click,web,1790000000,,,,dup", "c1,i3,view,web,1790000001,,,,dup"]
    ds = load_dataset(write_dir(tmp_path / "d", GOOD_ROWS + rows), rejects_path=str(tmp_path / "r.csv"),
                      max_reject_share=1.0)
    kept = ds.interactions[ds.interactions["event_id"] == "dup"]
    assert kept["event"].tolist() == ["click"]
    assert rejects_of(ds)[["line", "field"]].values.tolist() == [["12", "timestamp"], ["14", "event_id"]]


BAD_OTHER = [
    ("catalog", "item_id,title,category,price\n,Hat,acc,1\n", "item_id", "missing", ""),
    ("catalog", "item_id,title,category,price\ni9,,acc,1\n", "title", "missing", ""),
    ("catalog", "item_id,title,category,price\ni9,Hat,,1\n", "category", "missing", ""),
    ("catalog", "item_id,title,category,price\ni9,Hat,acc,cheap\n", "price", "not a number", "cheap"),
    ("catalog", "item_id,title,category,price\ni9,Hat,acc,-2\n", "price", "negative", "-2"),
    ("catalog", "item_id,title,category,price\ni9,Hat,acc,\n", "price", "missing", ""),
    ("catalog", "item_id,title,category,price\ni3,Hat again,acc,1\n", "item_id", "duplicate item_id (first at line 4)", "i3"),
    ("catalog", "item_id,title,category,price,channels\ni9,Hat,acc,1,web;shop\n", "channels", "unknown channel", "web;shop"),
    ("catalog", "item_id,title,category,price,valid_from\ni9,Hat,acc,1,soon\n", "valid_from", "not ISO-8601", "soon"),
    ("catalog", "item_id,title,category,price,valid_from,valid_to\ni9,Hat,acc,1,2026-02-01,2026-01-01\n",
     "valid_to", "not after valid_from", "2026-01-01"),
    ("customers", "customer_id,consent_personalisation\n,true\n", "customer_id", "missing", ""),
    ("customers", "customer_id,consent_personalisation\nc2,true\n", "customer_id", "duplicate customer_id (first at line 3)", "c2"),
    ("customers", "customer_id,consent_personalisation\nc8,maybe\n", "consent_personalisation", "not true or false", "maybe"),
    ("stores", "store_id,name\n,Nowhere\n", "store_id", "missing", ""),
    ("stores", "store_id,name\ns1,Paris again\n", "store_id", "duplicate store_id (first at line 2)", "s1"),
    ("stores", "store_id,name,items_in_stock\ns8,Lille,i3;nope\n", "items_in_stock", "unknown item", "nope"),
    ("stock", "store_id,item_id,quantity\ns1,nope,1\n", "item_id", "unknown item", "nope"),
    ("stock", "store_id,item_id,quantity\ns9,i3,1\n", "store_id", "unknown store", "s9"),
    ("stock", "store_id,item_id,quantity\ns2,i3,1.5\n", "quantity", "not a whole number", "1.5"),
    ("stock", "store_id,item_id,quantity\ns2,i3,lots\n", "quantity", "not a number", "lots"),
]


@pytest.mark.parametrize("kind,extra,field,reason,value", BAD_OTHER, ids=[f"{b[0]}:{b[2]}:{b[3][:16]}" for b in BAD_OTHER])
def test_each_bad_catalog_customer_store_stock_row_is_rejected(tmp_path, kind, extra, field, reason, value):
    base = {"catalog": CATALOG, "customers": CUSTOMERS, "stores": STORES,
            "stock": "store_id,item_id,quantity\ns1,i3,2\n"}
    header, bad_row = extra.splitlines()
    texts = dict(base)
    if kind == "stock":
        texts["stock"] = base["stock"] + bad_row + "\n"
        line = 3
    else:
        # the new header may have more columns: rewrite the base rows under it
        old = pd.read_csv(pd.io.common.StringIO(base[kind]), dtype=str, keep_default_na=False)
        cols = header.split(",")
        old = old.reindex(columns=cols, fill_value="")
        texts[kind] = old.to_csv(index=False) + bad_row + "\n"
        line = len(old) + 2
    d = write_dir(tmp_path / "d", **texts)
    ds = load_dataset(d, rejects_path=str(tmp_path / "r.csv"), max_reject_share=1.0)
    rej = rejects_of(ds)
    ours = rej[rej["file"] == f"{kind}.csv"]
    assert len(ours) == 1, rej
    r = ours.iloc[0]
    assert (r["line"], r["field"], r["value"]) == (str(line), field, value)
    assert reason in r["reason"]


def test_interactions_of_a_rejected_catalog_row_are_rejected_too(tmp_path):
    catalog = CATALOG + "i9,,acc,1,,,\n"
    ds = load_dataset(write_dir(tmp_path / "d", GOOD_ROWS + ["c1,i9,view,web,1790000000,,,,z"], catalog=catalog),
                      rejects_path=str(tmp_path / "r.csv"), max_reject_share=1.0)
    rej = rejects_of(ds)
    assert rej[["file", "field"]].values.tolist() == [["interactions.csv", "item_id"], ["catalog.csv", "title"]]


# ---------------------------------------------------------------- stopping
def test_too_many_rejects_stop_the_load_with_the_rejects_file_written(tmp_path):
    rows = GOOD_ROWS + ["c1,i3,buy,web,1790000000,,,,", "c1,i3,view,web,never,,,,"]
    path = str(tmp_path / "out" / "rejects.csv")
    with pytest.raises(DataError) as e:
        load_dataset(write_dir(tmp_path / "d", rows), rejects_path=path, max_reject_share=0.05)
    assert str(e.value) == f"2 of 12 interaction rows rejected (16.7% > 5.0%); see {path}"
    assert len(pd.read_csv(path)) == 2
    assert load_dataset(write_dir(tmp_path / "d", rows), rejects_path=path, max_reject_share=0.2).n_rejects == 2


def test_default_rejects_file_goes_to_the_working_directory(tmp_path, monkeypatch):
    d = write_dir(tmp_path / "shop-data", GOOD_ROWS + ["c1,i3,buy,web,1790000000,,,,"])
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    ds = load_dataset(d, max_reject_share=0.5)
    assert ds.rejects_path == str(work / "rejects-shop-data.csv") and os.path.isfile(ds.rejects_path)
    assert sorted(os.listdir(d)) == ["catalog.csv", "customers.csv", "interactions.csv", "stores.csv"]


@pytest.mark.parametrize("remove,needle", [("interactions.csv", "no interactions file"),
                                            ("catalog.csv", "no catalog file")])
def test_missing_required_file(tmp_path, remove, needle):
    d = write_dir(tmp_path / "d")
    os.remove(os.path.join(d, remove))
    with pytest.raises(DataError, match=needle):
        load_dataset(d)


def test_missing_required_column_names_file_and_column(tmp_path):
    d = write_dir(tmp_path / "d", [r.rsplit(",", 5)[0] for r in GOOD_ROWS], header="customer_id,item_id,event,channel")
    with pytest.raises(DataError, match=r"interactions\.csv: missing required column 'timestamp'"):
        load_dataset(d)
    d2 = write_dir(tmp_path / "d2", catalog="item_id,title,price\ni3,Hat,5\n")
    with pytest.raises(DataError, match=r"catalog\.csv: missing required column 'category'"):
        load_dataset(d2)


def test_two_interaction_files_are_ambiguous(tmp_path):
    d = write_dir(tmp_path / "d")
    with open(os.path.join(d, "interactions.jsonl"), "w") as f:
        f.write("{}\n")
    with pytest.raises(DataError, match="several interactions files"):
        load_dataset(d)


def test_fingerprint_follows_the_bytes(tmp_path):
    a = load_dataset(write_dir(tmp_path / "a")).fingerprint
    b = load_dataset(write_dir(tmp_path / "b")).fingerprint
    c = load_dataset(write_dir(tmp_path / "c", GOOD_ROWS[:-1])).fingerprint
    assert a == b != c


def test_blanks_around_values_are_trimmed(tmp_path):
    rows = GOOD_ROWS + [" c1 , i3,view ,\tweb, 1790000000 ,,,,"]
    ds = load_dataset(write_dir(tmp_path / "d", rows), max_reject_share=0.0)
    last = ds.interactions.iloc[-1]
    assert (last["customer_id"], last["item_id"], last["event"], last["channel"], last["ts"]) == (
        "c1", "i3", "view", "web", 1790000000)
    assert ds.interactions["customer_id"].iloc[0] == "007"


def test_not_utf8_is_a_data_error(tmp_path):
    d = write_dir(tmp_path / "d")
    with open(os.path.join(d, "catalog.csv"), "wb") as f:
        f.write(b"item_id,title,category,price\ni3,Caf\xe9,x,1\n")
    with pytest.raises(DataError, match=r"catalog\.csv: cannot be read as UTF-8 CSV"):
        load_dataset(d)
