"""Adapters: tiny invented files in the public data sets' shapes become valid data directories."""

from __future__ import annotations

import os
import shutil

import pytest

from training.convert import convert_hm, convert_movielens
from training.errors import DataError
from training.io import load_dataset

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


def test_movielens(tmp_path):
    out = str(tmp_path / "ml")
    counts = convert_movielens(os.path.join(FIXTURES, "ml-tiny"), out)
    assert counts == {"interactions": 5, "items": 3, "customers": 3}
    ds = load_dataset(out, max_reject_share=0.0)
    inter = ds.interactions
    assert (inter["event"] == "rating").all() and (inter["channel"] == "web").all()
    assert inter["value"].tolist() == [5.0, 3.0, 4.0, 1.0, 2.0]
    assert inter["ts"].tolist()[0] == 881250949
    assert inter["customer_id"].astype(str).tolist() == ["1", "1", "2", "2", "3"]
    cat = ds.catalog.set_index("item_id")
    assert cat.loc["10", "category"] == "Action" and cat.loc["10", "tags"] == "Action;Comedy"
    assert cat.loc["20", "title"] == "Café Society, The (1996)" and cat.loc["20", "category"] == "Drama"
    assert cat.loc["30", "category"] == "unknown"
    assert (cat["price"] == 0).all()
    assert ds.customers.set_index("customer_id")["segment"].to_dict() == {"1": "16-24", "2": "45-54", "3": "16-24"}


def test_hm(tmp_path):
    out = str(tmp_path / "hm")
    counts = convert_hm(os.path.join(FIXTURES, "hm-tiny"), out)
    assert counts == {"interactions": 6, "items": 4, "units": 7, "customers": 3}
    ds = load_dataset(out, max_reject_share=0.0)
    inter = ds.interactions
    assert (inter["event"] == "purchase").all()
    first = inter.iloc[0]
    # the two identical rows are one line of two units; channel 2 is online, 1 is the store
    assert (first["customer_id"], first["item_id"], first["channel"], first["quantity"]) == ("aa01", "0123456001", "web", 2.0)
    assert first["value"] == pytest.approx(0.0162)
    assert inter["channel"].astype(str).tolist() == ["web", "store", "store", "web", "web", "store"]
    assert inter["ts"].tolist()[0] == 1598918400  # 2020-09-01, a date alone: 00:00 UTC
    cat = ds.catalog.set_index("item_id")
    assert cat.index.tolist() == ["0123456001", "0123456002", "0999999001", "0123456003"]
    assert cat.loc["0123456001", "category"] == "Garment Upper body" and cat.loc["0123456001", "title"] == "Test top"
    # no metadata: borrowed from another colour of the same product, else unknown
    assert cat.loc["0123456003", "category"] == "Garment Upper body" and cat.loc["0123456003", "title"] == "Test top"
    assert cat.loc["0999999001", "category"] == "unknown" and cat.loc["0999999001", "title"] == "article 0999999001"
    assert cat.loc["0123456001", "price"] == pytest.approx(0.0086)  # median over its lines
    assert cat.loc["0123456001", "tags"] == "Vest top;Black;Ladieswear;Jersey Basic"
    cust = ds.customers.set_index("customer_id")
    assert cust["segment"].to_dict() == {"aa01": "16-24", "bb02": "65+", "cc03": "unknown"}
    assert "postal_code" not in cust.columns and cust.loc["bb02", "club_member_status"] == "ACTIVE"


def test_hm_unknown_channel_code_is_rejected_not_guessed(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("articles.csv", "customers.csv"):
        shutil.copy(os.path.join(FIXTURES, "hm-tiny", name), src / name)
    (src / "transactions.csv").write_text("t_dat,customer_id,article_id,price,sales_channel_id\n"
                                          "2020-09-01,aa01,0123456001,0.01,2\n2020-09-01,aa01,0123456002,0.01,3\n")
    convert_hm(str(src), str(tmp_path / "out"))
    ds = load_dataset(str(tmp_path / "out"), rejects_path=str(tmp_path / "r.csv"), max_reject_share=1.0)
    assert len(ds.interactions) == 1 and ds.n_rejects == 1
    assert (tmp_path / "r.csv").read_text().splitlines()[1].startswith('interactions.csv,3,channel,"unknown channel')


def test_missing_source_file_is_named(tmp_path):
    with pytest.raises(DataError, match="no u.data"):
        convert_movielens(str(tmp_path), str(tmp_path / "out"))
    with pytest.raises(DataError, match="no transactions.csv"):
        convert_hm(str(tmp_path), str(tmp_path / "out"))
