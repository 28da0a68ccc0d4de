"""Adapters from public data sets to a recsvc data directory (CONTRACT.md section 1).

For benchmarks only: the public files stay outside the repository (see their SOURCE.md).

- `convert_movielens`: the GroupLens ML-100K release (`u.data`, `u.item`, `u.genre`, optional
  `u.user`). Every rating becomes a `rating` event on the `web` channel with the rating as value.
- `convert_hm`: the H&M cross-channel sample (`transactions.csv`, `articles.csv`, `customers.csv`).
  `sales_channel_id` 1 = physical store, 2 = online (the community reading of the Kaggle data; the
  data set does not document it), so `store` / `web`. Identical rows are units of one purchase line
  and become one purchase with that quantity. Article ids keep their leading zero.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from training.errors import DataError

HM_CHANNELS = {"1": "store", "2": "web"}
AGE_BANDS = ((0, 25, "16-24"), (25, 35, "25-34"), (35, 45, "35-44"), (45, 55, "45-54"), (55, 65, "55-64"),
             (65, 200, "65+"))


def _need(src: str, name: str) -> str:
    path = os.path.join(src, name)
    if not os.path.isfile(path):
        raise DataError(f"{src}: no {name}; point the converter at the folder that holds it")
    return path


def _read_csv(path: str, **kw) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, **kw)
    except (ValueError, OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot be read ({e})") from None


def _write(out: str, name: str, df: pd.DataFrame) -> None:
    os.makedirs(out, exist_ok=True)
    df.to_csv(os.path.join(out, name), index=False)


# ---------------------------------------------------------------- MovieLens 100K
def convert_movielens(src: str, out: str) -> dict:
    """ML-100K folder -> data directory. Returns the counts written."""
    ratings = _read_csv(_need(src, "u.data"), sep="\t", header=None,
                        names=["customer_id", "item_id", "rating", "timestamp"])
    genres = _read_csv(_need(src, "u.genre"), sep="|", header=None, names=["name", "index"], encoding="latin-1")
    genres = genres[genres["name"] != ""]
    genre_names = genres.sort_values("index", key=lambda s: s.astype(int))["name"].tolist()
    cols = ["item_id", "title", "release_date", "video_release_date", "url"] + [f"g{k}" for k in range(len(genre_names))]
    movies = _read_csv(_need(src, "u.item"), sep="|", header=None, names=cols, encoding="latin-1")
    flags = movies[[f"g{k}" for k in range(len(genre_names))]].to_numpy() == "1"
    names = np.array(genre_names, dtype=object)
    first = np.where(flags.any(axis=1), names[np.argmax(flags, axis=1)], "unknown")
    catalog = pd.DataFrame({
        "item_id": movies["item_id"], "title": movies["title"].replace("", "unknown"), "category": first,
        "price": 0.0, "tags": [";".join(names[row]) for row in flags],
    })
    n = len(ratings)
    interactions = pd.DataFrame({
        "event_id": [f"ml-{k}" for k in range(n)], "customer_id": ratings["customer_id"],
        "item_id": ratings["item_id"], "event": "rating", "channel": "web",
        "timestamp": ratings["timestamp"], "value": ratings["rating"],
    })
    _write(out, "interactions.csv", interactions)
    _write(out, "catalog.csv", catalog)
    counts = {"interactions": n, "items": len(catalog)}
    user_path = os.path.join(src, "u.user")
    if os.path.isfile(user_path):
        users = _read_csv(user_path, sep="|", header=None, names=["customer_id", "age", "gender", "occupation", "zip"])
        customers = pd.DataFrame({"customer_id": users["customer_id"], "segment": _age_band(users["age"]),
                                  "gender": users["gender"], "occupation": users["occupation"]})
        _write(out, "customers.csv", customers)
        counts["customers"] = len(customers)
    return counts


def _age_band(age: pd.Series) -> np.ndarray:
    a = pd.to_numeric(age, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    band = np.full(len(a), "unknown", dtype=object)
    for lo, hi, name in AGE_BANDS:
        band[(a >= lo) & (a < hi)] = name
    return band


# ---------------------------------------------------------------- H&M cross-channel sample
def convert_hm(src: str, out: str) -> dict:
    """H&M sample folder -> data directory. Returns the counts written."""
    tx = _read_csv(_need(src, "transactions.csv"))
    for col in ("t_dat", "customer_id", "article_id", "price", "sales_channel_id"):
        if col not in tx.columns:
            raise DataError(f"{src}/transactions.csv: missing column '{col}'")
    # identical rows are units of one line: one purchase with quantity = count, order of first sight kept
    keys = ["t_dat", "customer_id", "article_id", "price", "sales_channel_id"]
    lines = tx.groupby(keys, sort=False).size().reset_index(name="quantity")
    price = pd.to_numeric(lines["price"], errors="coerce")
    interactions = pd.DataFrame({
        "event_id": [f"hm-{k}" for k in range(len(lines))],
        "customer_id": lines["customer_id"], "item_id": lines["article_id"], "event": "purchase",
        "channel": lines["sales_channel_id"].map(HM_CHANNELS).fillna(lines["sales_channel_id"]),  # others: rejected
        "timestamp": lines["t_dat"], "quantity": lines["quantity"],
        "value": (price * lines["quantity"]).round(8),
    })
    catalog = _hm_catalog(_read_csv(_need(src, "articles.csv")), lines["article_id"], price)
    _write(out, "interactions.csv", interactions)
    _write(out, "catalog.csv", catalog)
    counts = {"interactions": len(interactions), "items": len(catalog), "units": int(lines["quantity"].sum())}
    cust_path = os.path.join(src, "customers.csv")
    if os.path.isfile(cust_path):
        cust = _read_csv(cust_path)
        customers = pd.DataFrame({"customer_id": cust["customer_id"], "segment": _age_band(cust.get("age", pd.Series(
            [""] * len(cust))))})
        for extra in ("club_member_status", "fashion_news_frequency"):
            if extra in cust.columns:
                customers[extra] = cust[extra]
        _write(out, "customers.csv", customers)
        counts["customers"] = len(customers)
    return counts


def _hm_catalog(articles: pd.DataFrame, sold: pd.Series, price: pd.Series) -> pd.DataFrame:
    """Every sold article gets a row. Articles without metadata borrow it from another colour of the
    same product (the first 7 characters of the id are the product code), else `unknown`."""
    ids = pd.Index(pd.unique(pd.concat([articles["article_id"], sold], ignore_index=True)))
    meta = articles.drop_duplicates("article_id").set_index("article_id")
    product = pd.Series(ids.str[:7], index=ids)
    by_product = articles.assign(_p=articles["article_id"].str[:7]).drop_duplicates("_p").set_index("_p")

    def pick(col: str, default: str) -> pd.Series:
        own = meta[col].reindex(ids) if col in meta else pd.Series(np.nan, index=ids)
        borrowed = by_product[col].reindex(product.to_numpy()).set_axis(ids) if col in by_product else own
        return own.where(own.notna() & (own != ""), borrowed).fillna(default).replace("", default)

    median = price.groupby(sold.to_numpy()).median()
    p = median.reindex(ids).fillna(float(median.median()) if len(median) else 0.0)
    tags = [pick(c, "") for c in ("product_type_name", "colour_group_name", "index_group_name", "garment_group_name")]
    tag_text = tags[0].str.cat(tags[1:], sep=";").str.replace(r";+", ";", regex=True).str.strip(";")
    title = pick("prod_name", "")
    title = title.where(title != "", "article " + ids.to_series(index=ids))
    return pd.DataFrame({
        "item_id": ids, "title": title.to_numpy(), "category": pick("product_group_name", "unknown").to_numpy(),
        "price": p.to_numpy(), "tags": tag_text.to_numpy(),
    })
