"""Batch top-N with the service's own ranking code (recsvc.core): batch == API."""

from __future__ import annotations

import csv
import os

from recsvc.artifact import load_model
from recsvc.core import Context, RankOptions
from recsvc.core.batch import recommend_many
from training.errors import DataError
from training.io import find_input, read_table


def customers_from(model, data_dir: str | None, customers_file: str | None) -> list[str]:
    if customers_file:
        if not os.path.isfile(customers_file):
            raise DataError(f"--customers {customers_file}: no such file")
        df = read_table(customers_file)
        if "customer_id" not in df.columns:
            raise DataError(f"--customers {customers_file}: no customer_id column")
        ids = [c for c in df["customer_id"].astype(str) if c]
        return list(dict.fromkeys(ids))
    ids = {str(c) for c in model.customer_ids}
    if data_dir:
        path = find_input(data_dir, "interactions", required=True)
        ids |= set(read_table(path)["customer_id"].astype(str)) - {""}
    return sorted(ids)


def recommend_to_csv(model_dir: str, out: str, *, customers: list[str] | None = None,
                     data_dir: str | None = None, customers_file: str | None = None, n: int = 10,
                     channel: str = "web", store: str | None = None, locale: str | None = None,
                     exclude: str = "purchased", at: float | None = None) -> int:
    """Write customer_id,rank,item_id,score; returns the number of customers written."""
    model = load_model(model_dir)
    if customers is None:
        customers = customers_from(model, data_dir, customers_file)
    import time

    ctx = Context(channel=channel, store_id=store, locale=locale, at=at if at is not None else time.time())
    opts = RankOptions(n=n, exclude_history=exclude)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    tmp = out + ".tmp"
    written = set()
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["customer_id", "rank", "item_id", "score"])
        for row in recommend_many(model, customers, ctx, opts):
            w.writerow(row)
            written.add(row[0])
    os.replace(tmp, out)
    return len(written)
