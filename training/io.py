"""Read a data directory (CONTRACT.md section 1) into typed frames; every bad row goes to a rejects file.

Nothing is dropped silently: a row that fails a check is written to the rejects CSV
(`file,line,field,reason,value`, one line per bad row, the first failed check wins), and the load stops
with `DataError` when the rejected share of interaction rows exceeds `max_reject_share`.

Files are read with pyarrow (multi-threaded CSV, Parquet, JSON Lines; `.csv.gz`/`.jsonl.gz` too) with
**every column as a string**, so `0493995001` keeps its leading zero; checks are vectorised over arrow
arrays, and low-cardinality columns (timestamps at day resolution, quantities, events) are parsed once
per distinct value.

`line` is the 1-based line of the row in its file (CSV: the header is line 1; JSON Lines: the line;
Parquet: the row number). Blank lines are not counted, and a quoted CSV value spanning several lines
counts as one line.

Dtypes of `Dataset.interactions`, chosen for 10M-row speed and memory:
  - customer_id, item_id, store_id: pandas Categorical of str (only observed values; not sorted);
  - event, channel: Categorical whose categories are exactly `EVENTS` / `CHANNELS` in that order, so
    `.cat.codes` index those tuples;
  - ts, line: int64 (epoch seconds; line as above); quantity, value: float64 (value NaN if none);
  - event_id, recommendation_id, session_id, actor_type, actor_id: str (pyarrow-backed), "" if none.
Catalog, customers and stores keep extra columns (as str) after the typed ones; interactions keep
only the columns above.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import logging
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from recsvc.artifact.manifest import NO_DATE_FROM, NO_DATE_TO
from recsvc.core.types import CHANNELS, EVENTS
from training.errors import DataError

log = logging.getLogger(__name__)

SUFFIXES = (".csv", ".csv.gz", ".parquet", ".jsonl", ".jsonl.gz")
REQUIRED = {
    "interactions": ("customer_id", "item_id", "event", "channel", "timestamp"),
    "catalog": ("item_id", "title", "category", "price"),
    "customers": ("customer_id",),
    "stores": ("store_id",),
    "stock": ("store_id", "item_id"),
}
INTERACTION_STR_COLUMNS = ("event_id", "recommendation_id", "session_id", "actor_type", "actor_id")
CATALOG_STR_COLUMNS = ("brand", "tags", "channels", "locales", "image_url")
CUSTOMER_STR_COLUMNS = ("segment", "locale", "home_store", "loyalty_card", "email_sha256", "phone_sha256")
STORE_STR_COLUMNS = ("name", "locale")
REJECT_COLUMNS = ("file", "line", "field", "reason", "value")
MAX_EPOCH = 1e11  # seconds; larger integers are most likely milliseconds
TRUE_WORDS = ("true", "1", "yes", "y", "t")
FALSE_WORDS = ("false", "0", "no", "n", "f")

# timestamp / number parse status
OK, EMPTY, BAD, OUT_OF_RANGE = 0, 1, 2, 3


@dataclass
class Dataset:
    """A validated data directory. See the module docstring for the columns and dtypes."""

    interactions: pd.DataFrame
    catalog: pd.DataFrame
    customers: pd.DataFrame | None
    stores: pd.DataFrame | None
    stock: pd.DataFrame | None  # store_id, item_id (str), quantity (int64)
    fingerprint: str  # sha256 over the input files' names and bytes, hex
    n_rows: int  # interaction rows read (valid or not, before `until`)
    n_rejects: int  # rejected rows in all files
    rejects_path: str | None  # where the rejects were written; None when there were none


# ---------------------------------------------------------------- reading files as strings
@dataclass(frozen=True)
class _Table:
    """One file, every column a non-null string ("" where empty)."""

    name: str  # basename, as written in the rejects file
    table: pa.Table
    lines: np.ndarray  # int64 line per table row
    malformed: tuple[tuple[int, str, str], ...]  # (line, reason, text) of rows that could not be parsed

    @property
    def n_read(self) -> int:
        return self.table.num_rows + len(self.malformed)

    def column(self, name: str) -> pa.ChunkedArray:
        if name not in self.table.column_names:
            return pa.chunked_array([pa.repeat("", self.table.num_rows)], pa.string())
        return self.table.column(name)


def find_input(data_dir: str, stem: str, *, required: bool) -> str | None:
    """The one `<stem>.<csv|csv.gz|parquet|jsonl|jsonl.gz>` in data_dir (None if optional and absent)."""
    found = [p for s in SUFFIXES if os.path.isfile(p := os.path.join(data_dir, stem + s))]
    if len(found) > 1:
        names = ", ".join(os.path.basename(p) for p in found)
        raise DataError(f"{data_dir}: several {stem} files ({names}); keep exactly one")
    if not found and required:
        raise DataError(f"{data_dir}: no {stem} file; expected {stem}.csv, {stem}.parquet or {stem}.jsonl")
    return found[0] if found else None


def read_table(path: str) -> pd.DataFrame:
    """A CSV / Parquet / JSON Lines file as a DataFrame with every column a str ("" where empty).

    Rows that cannot be parsed at all (wrong number of CSV fields, invalid JSON) are left out; use
    `load_dataset` to have them reported.
    """
    return _read(path).table.to_pandas()


def _read(path: str) -> _Table:
    name = os.path.basename(path)
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file")
    if name.endswith((".csv", ".csv.gz")):
        tab = _read_csv(path, name)
    elif name.endswith(".parquet"):
        try:
            table = pq.read_table(path)
        except (pa.ArrowException, OSError) as e:
            raise DataError(f"{name}: not a readable Parquet file ({e})") from None
        table = _stringify(table, name)
        tab = _Table(name, table, np.arange(1, table.num_rows + 1, dtype=np.int64), ())
    elif name.endswith((".jsonl", ".jsonl.gz")):
        tab = _read_jsonl(path, name)
    else:
        raise DataError(f"{name}: unknown format; use .csv, .csv.gz, .parquet, .jsonl or .jsonl.gz")
    return tab


def _read_once(path: str) -> _Table:
    """`_read`, unless `recsvc-train fit` already read the file while it started (training.prefetch)."""
    from training import prefetch

    return prefetch.take(path) or _read(path)


def _open_binary(path: str):
    return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")


def _csv_header(path: str, name: str) -> list[str]:
    with _open_binary(path) as f:
        first = f.readline()
    text = first.decode("utf-8-sig", errors="replace").strip("\r\n")
    if not text.strip():
        raise DataError(f"{name}: empty file or empty header line; the first line must name the columns")
    return [c.strip() for c in next(csv.reader([text]))]


def _read_csv(path: str, name: str) -> _Table:
    """newlines_in_values only outside interactions: 3x faster parsing of the big file (an interaction
    value never spans lines; if one does, its row is reported as malformed, not misread)."""
    header = _csv_header(path, name)
    multiline = not name.startswith("interactions.")
    malformed: list[tuple[int | None, str, str]] = []

    def on_bad_row(row) -> str:
        malformed.append((row.number, f"expected {row.expected_columns} fields, got {row.actual_columns}",
                          row.text))
        return "skip"

    def read(threads: bool) -> pa.Table:
        return pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(use_threads=threads, block_size=1 << 24, skip_rows=1,
                                           column_names=header),
            parse_options=pacsv.ParseOptions(invalid_row_handler=on_bad_row, newlines_in_values=multiline),
            convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in header},
                                                 strings_can_be_null=False),
        )

    try:
        table = read(True)
        if malformed and any(m[0] is None for m in malformed):
            malformed.clear()  # line numbers are known only to a single-threaded read
            table = read(False)
    except (pa.ArrowException, OSError, EOFError) as e:
        raise DataError(f"{name}: cannot be read as UTF-8 CSV ({str(e).splitlines()[0]}); "
                        "check the quoting and save it as UTF-8") from None
    table = _strip(table)
    n_all = table.num_rows + len(malformed)
    lines = np.arange(2, n_all + 2, dtype=np.int64)
    if malformed:
        lines = np.setdiff1d(lines, np.array([m[0] for m in malformed], dtype=np.int64))[: table.num_rows]
    return _Table(name, table, lines, tuple((int(n), r, t) for n, r, t in malformed))


def _read_jsonl(path: str, name: str) -> _Table:
    try:
        with pa.input_stream(path, compression="detect") as stream:
            table = pajson.read_json(stream)
    except pa.ArrowInvalid:
        return _read_jsonl_rowwise(path, name)  # mixed types or a bad line: slow path, exact rejects
    table = _stringify(table.flatten() if _has_struct(table) else table, name)
    return _Table(name, table, np.arange(1, table.num_rows + 1, dtype=np.int64), ())


def _has_struct(table: pa.Table) -> bool:
    return any(pa.types.is_struct(f.type) for f in table.schema)


def _json_cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return ";".join(_json_cell(x) for x in v)
    return str(v)


def _read_jsonl_rowwise(path: str, name: str) -> _Table:
    import orjson

    rows: list[dict] = []
    lines: list[int] = []
    malformed: list[tuple[int, str, str]] = []
    with _open_binary(path) as f:
        for i, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError as e:
                malformed.append((i, f"invalid JSON ({e})", raw.decode("utf-8", "replace")[:200]))
                continue
            if not isinstance(obj, dict):
                malformed.append((i, "not a JSON object", raw.decode("utf-8", "replace")[:200]))
                continue
            flat: dict[str, str] = {}
            for k, v in obj.items():
                if isinstance(v, dict):
                    flat.update({f"{k}_{k2}": _json_cell(v2) for k2, v2 in v.items()})
                else:
                    flat[k] = _json_cell(v)
            rows.append(flat)
            lines.append(i)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    table = pa.table({k: pa.array([r.get(k, "") for r in rows], pa.string()) for k in keys})
    return _Table(name, _strip(table), np.array(lines, dtype=np.int64), tuple(malformed))


def _stringify(table: pa.Table, name: str) -> pa.Table:
    """Every column as a non-null, whitespace-trimmed string; struct fields as `parent_child`."""
    cols = {}
    for field, col in zip(table.schema, table.columns, strict=True):
        cols[field.name.strip().replace(".", "_")] = pa.chunked_array(
            [_to_string(chunk, field.name, name) for chunk in col.chunks], pa.string())
    return _strip(pa.table(cols))


def _to_string(a: pa.Array, column: str, name: str) -> pa.Array:
    t = a.type
    if pa.types.is_dictionary(t):
        return _to_string(a.dictionary_decode(), column, name)
    if pa.types.is_timestamp(t):
        per_second = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[t.unit]
        secs = pc.floor(pc.divide(pc.cast(pc.cast(a, pa.timestamp(t.unit)), pa.int64()).cast(pa.float64()),
                                  float(per_second)))
        a = pc.cast(secs, pa.int64())
    elif pa.types.is_floating(t):
        a = pc.if_else(pc.is_nan(a), pa.scalar(None, t), a)
    elif pa.types.is_list(t) or pa.types.is_large_list(t):
        a = pc.binary_join(pc.cast(a, pa.list_(pa.string())), ";")
    elif pa.types.is_null(t):
        return pa.repeat("", len(a))
    try:
        s = pc.cast(a, pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise DataError(f"{name}: column {column!r} of type {t} cannot be read as text") from None
    return pc.fill_null(s, "")


def _strip(table: pa.Table) -> pa.Table:
    """Trim surrounding blanks (`c1, i9` is `c1`,`i9`). Columns are checked in parallel and only those
    holding a blank at an end are trimmed: trimming every column of 10M rows costs seconds."""

    def clean(col: pa.ChunkedArray) -> pa.ChunkedArray:
        blank = any(pc.any(f(col, ch)).as_py() for f in (pc.starts_with, pc.ends_with) for ch in (" ", "\t"))
        return pc.utf8_trim_whitespace(col) if blank else col

    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        cols = list(pool.map(clean, table.columns))
    return pa.table(dict(zip(table.column_names, cols, strict=True)))


def _combine(col) -> pa.Array:
    if isinstance(col, pa.ChunkedArray):
        if col.num_chunks == 1:
            return col.chunk(0)
        if pa.types.is_string(col.type) and col.nbytes > (1 << 30):
            col = col.cast(pa.large_string())  # 32-bit offsets cannot hold > 2 GiB in one array
        return col.combine_chunks()
    return col


# ---------------------------------------------------------------- parsing values
def _np(a) -> np.ndarray:
    if isinstance(a, pa.ChunkedArray):
        return a.to_numpy()
    return a.to_numpy(zero_copy_only=False)


def _encoded(a: pa.Array, *, dense_ok: bool = False) -> tuple[np.ndarray, pa.Array]:
    """(codes int64 per row, distinct values): parse each distinct value once.

    dense_ok: when a sample shows mostly distinct values (timestamps to the second), skip the hash
    pass and return the values themselves with codes 0..n-1.
    """
    if dense_ok and len(a) > 200_000:
        sample = a.slice(0, 100_000)
        if len(pc.unique(sample)) > 50_000:
            return np.arange(len(a), dtype=np.int64), a
    d = pc.dictionary_encode(a)
    if isinstance(d, pa.ChunkedArray):  # one dictionary for all chunks: the last chunk's is complete
        if d.num_chunks == 0:
            return np.zeros(0, dtype=np.int64), pa.array([], a.type)
        codes = np.concatenate([c.indices.to_numpy(zero_copy_only=False) for c in d.chunks]).astype(np.int64)
        return codes, d.chunk(d.num_chunks - 1).dictionary
    return _np(d.indices).astype(np.int64, copy=False), d.dictionary


def _ts_status(values: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Parse distinct strings: (epoch seconds int64, status OK/EMPTY/BAD/OUT_OF_RANGE)."""
    n = len(values)
    out = np.zeros(n, dtype=np.int64)
    status = np.full(n, BAD, dtype=np.int8)
    empty = _np(pc.equal(values, ""))
    status[empty] = EMPTY
    _fast_iso(values, ~empty, out, status)
    todo = status == BAD
    is_int = np.zeros(n, dtype=bool)
    if todo.any():
        is_int[todo] = _np(pc.match_substring_regex(values.filter(pa.array(todo)), r"^[+-]?[0-9]{1,18}$"))
    if is_int.any():
        v = _np(pc.cast(pc.filter(values, pa.array(is_int)), pa.int64()))
        idx = np.flatnonzero(is_int)
        fits = np.abs(v) < MAX_EPOCH
        out[idx[fits]] = v[fits]
        status[idx] = np.where(fits, OK, OUT_OF_RANGE)
    other = (status == BAD) & ~is_int
    if other.any():
        idx = np.flatnonzero(other)
        s = pd.Series(pc.filter(values, pa.array(other)).to_pandas())
        dt = pd.to_datetime(s, format="ISO8601", utc=True, errors="coerce")
        good = dt.notna().to_numpy()
        secs = dt[good].dt.tz_convert(None).to_numpy().astype("datetime64[s]").astype(np.int64)
        out[idx[good]] = secs
        status[idx[good]] = OK
    return out, status


FAST_ISO = (("%Y-%m-%dT%H:%M:%SZ", 20), ("%Y-%m-%d", 10), ("%Y-%m-%dT%H:%M:%S", 19), ("%Y-%m-%d %H:%M:%S", 19))


def _fast_iso(values: pa.Array, todo: np.ndarray, out: np.ndarray, status: np.ndarray) -> None:
    """Arrow strptime for the common fixed-width ISO forms (10x faster than the general parser).

    strptime rolls 2026-02-30 over to March, so the day of month must read back unchanged; anything
    else is left for the general parser.
    """
    length = _np(pc.utf8_length(values))
    for fmt, width in FAST_ISO:
        idx = np.flatnonzero(todo & (length == width) & (status == BAD))
        if idx.size == 0:
            continue
        sub = values if idx.size == len(values) else values.take(pa.array(idx))
        parsed = pc.strptime(sub, format=fmt, unit="s", error_is_null=True)
        ok = _np(pc.is_valid(parsed))
        if not ok.any():
            continue
        got = pc.filter(parsed, pa.array(ok))
        day = _np(pc.cast(pc.utf8_slice_codeunits(pc.filter(sub, pa.array(ok)), 8, 10), pa.int64()))
        same_day = _np(pc.day(got)) == day
        rows = idx[ok][same_day]
        out[rows] = _np(pc.cast(got, pa.int64()))[same_day]
        status[rows] = OK


def _parse_ts(a: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    codes, values = _encoded(a, dense_ok=True)
    ts, status = _ts_status(values)
    return ts[codes], status[codes]


def parse_timestamp_series(s: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """ISO-8601 (a date alone is 00:00 UTC, no zone is UTC) or integer epoch seconds.

    Returns (int64 epoch seconds, bool ok); rows that are empty, unparseable or out of range (an
    integer >= 1e11 is taken for milliseconds) are not ok and hold 0.
    """
    a = pa.array(s.astype("str").fillna("") if s.dtype != "str" else s.fillna(""), pa.string())
    ts, status = _parse_ts(pc.utf8_trim_whitespace(a))
    return ts, status == OK


def _parse_float(a: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(float64 per row, status): EMPTY rows are NaN; BAD = not a finite number."""
    codes, values = _encoded(a, dense_ok=True)
    s = pd.Series(values.to_pandas())
    v = np.array(pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan))
    status = np.where(np.isfinite(v), OK, BAD).astype(np.int8)
    status[(s == "").to_numpy()] = EMPTY
    v[status != OK] = np.nan
    return v[codes], status[codes]


def _in_set(a: pa.Array, allowed: pa.Array) -> tuple[np.ndarray, np.ndarray, pa.Array]:
    """(bool per row: a value of `allowed`, codes, distinct values)."""
    codes, values = _encoded(a)
    ok = _np(pc.is_in(values, value_set=allowed))
    return ok[codes], codes, values


# ---------------------------------------------------------------- rejects
class _Rejects:
    """Reject records of every file, in check order."""

    def __init__(self) -> None:
        self._parts: list[pd.DataFrame] = []
        self.by_file: dict[str, int] = {}

    def add(self, file: str, lines: np.ndarray, field: str, reason, values) -> None:
        if len(lines) == 0:
            return
        self._parts.append(pd.DataFrame({
            "file": file, "line": np.asarray(lines, dtype=np.int64), "field": field,
            "reason": reason, "value": [_short(v) for v in values],
        }))
        self.by_file[file] = self.by_file.get(file, 0) + len(lines)

    @property
    def total(self) -> int:
        return sum(self.by_file.values())

    def frame(self, order: list[str]) -> pd.DataFrame:
        if not self._parts:
            return pd.DataFrame({c: [] for c in REJECT_COLUMNS})
        df = pd.concat(self._parts, ignore_index=True)
        rank = {f: i for i, f in enumerate(order)}
        df["_r"] = df["file"].map(lambda f: rank.get(f, len(rank)))
        return df.sort_values(["_r", "line"], kind="stable").drop(columns="_r")


def _short(v) -> str:
    s = "" if v is None else str(v)
    return s if len(s) <= 200 else s[:197] + "..."


class _Checker:
    """Applies row checks to one file in order; a row fails at most once (its first failed check)."""

    def __init__(self, tab: _Table, rejects: _Rejects) -> None:
        self.tab = tab
        self.rejects = rejects
        self.bad = np.zeros(tab.table.num_rows, dtype=bool)
        for line, reason, text in tab.malformed:
            rejects.add(tab.name, np.array([line]), "(row)", f"malformed row: {reason}", [text])

    def reject(self, mask: np.ndarray, field: str, reason, values=None) -> None:
        """Reject rows where mask holds (and no earlier check failed). reason: str or per-row array."""
        idx = np.flatnonzero(mask & ~self.bad)
        if idx.size == 0:
            return
        self.bad[idx] = True
        col = values if values is not None else self.tab.column(field)
        vals = _np(col.take(pa.array(idx))) if isinstance(col, (pa.Array, pa.ChunkedArray)) else col[idx]
        why = reason if isinstance(reason, str) else np.asarray(reason)[idx]
        self.rejects.add(self.tab.name, self.tab.lines[idx], field, why, vals)

    def missing(self, field: str) -> None:
        self.reject(_np(pc.equal(self.tab.column(field), "")), field, "missing")

    def duplicates(self, field: str, keys=None, *, among: np.ndarray | None = None, what: str | None = None) -> None:
        """Reject later rows repeating a key among rows still valid (the first is kept).

        keys: one hashable value per row (default: the column's strings); among: rows taking part.
        """
        col = self.tab.column(field).to_pandas() if keys is None else pd.Series(keys)
        live = ~self.bad if among is None else (~self.bad & among)
        rows = np.flatnonzero(live)
        if rows.size < 2:
            return
        s = col.iloc[rows].reset_index(drop=True)
        dup = s.duplicated(keep="first").to_numpy()
        if not dup.any():
            return
        repeated = s[dup]
        firsts = s[~dup & s.isin(repeated.unique()).to_numpy()]
        first_row = pd.Series(rows[firsts.index.to_numpy()], index=firsts.to_numpy())
        first_line = self.tab.lines[first_row.loc[repeated.to_numpy()].to_numpy()]
        reason = np.empty(len(self.bad), dtype=object)
        reason[rows[dup]] = [f"duplicate {what or field} (first at line {n})" for n in first_line.tolist()]
        mask = np.zeros(len(self.bad), dtype=bool)
        mask[rows[dup]] = True
        self.reject(mask, field, reason)

    @property
    def good(self) -> np.ndarray:
        return ~self.bad


def _require_columns(tab: _Table, kind: str) -> None:
    have = set(tab.table.column_names)
    for col in REQUIRED[kind]:
        if col not in have:
            raise DataError(f"{tab.name}: missing required column '{col}' "
                            f"(required: {', '.join(REQUIRED[kind])}; found: {', '.join(tab.table.column_names)})")


def _kept(table: pa.Table, keep: np.ndarray) -> pa.Table:
    return table if keep.all() else table.filter(pa.array(keep))


def _str_col(t: pa.Table, c: str) -> pd.Series:
    return t.column(c).to_pandas() if c in t.column_names else pa.repeat("", t.num_rows).to_pandas()


def _frame(t: pa.Table, first: tuple[str, ...], typed: dict[str, object]) -> pd.DataFrame:
    """`first` columns as str ("" when absent), then the `typed` ones, then any extra column as str."""
    out: dict[str, object] = {c: _str_col(t, c) for c in first}
    out.update(typed)
    out.update({c: _str_col(t, c) for c in t.column_names if c not in out})
    return pd.DataFrame(out)


# ---------------------------------------------------------------- per-file validation
def _load_catalog(tab: _Table, rejects: _Rejects) -> pd.DataFrame:
    _require_columns(tab, "catalog")
    ck = _Checker(tab, rejects)
    for f in ("item_id", "title", "category"):
        ck.missing(f)
    price, st = _parse_float(tab.column("price"))
    ck.reject(st == EMPTY, "price", "missing")
    ck.reject(st == BAD, "price", "not a number")
    ck.reject(price < 0, "price", "negative")
    vf = _optional_date(ck, "valid_from", NO_DATE_FROM)
    vt = _optional_date(ck, "valid_to", NO_DATE_TO)
    ck.reject(vf >= vt, "valid_to", "not after valid_from")
    _check_channel_lists(ck)
    ck.duplicates("item_id")
    keep = ck.good
    t = _kept(tab.table, keep)
    typed = {"price": price[keep], **{c: _str_col(t, c) for c in CATALOG_STR_COLUMNS},
             "valid_from": vf[keep], "valid_to": vt[keep]}
    return _frame(t, ("item_id", "title", "category"), typed)


def _optional_date(ck: _Checker, field: str, default: int) -> np.ndarray:
    ts, st = _parse_ts(ck.tab.column(field))
    ck.reject(st == BAD, field, "not ISO-8601 or integer epoch seconds")
    ck.reject(st == OUT_OF_RANGE, field, "epoch seconds out of range (milliseconds?)")
    return np.where(st == OK, ts, default).astype(np.int64)


def _check_channel_lists(ck: _Checker) -> None:
    col = _combine(ck.tab.column("channels"))
    parts = pc.split_pattern(col, ";")
    flat = pc.utf8_trim_whitespace(pc.list_flatten(parts))
    parent = _np(pc.list_parent_indices(parts))
    bad_part = _np(pc.and_(pc.not_equal(flat, ""), pc.invert(pc.is_in(flat, value_set=pa.array(CHANNELS)))))
    if bad_part.any():
        mask = np.zeros(len(col), dtype=bool)
        mask[parent[bad_part]] = True
        ck.reject(mask, "channels", f"unknown channel (allowed: {', '.join(CHANNELS)})")


def _load_customers(tab: _Table, rejects: _Rejects) -> pd.DataFrame:
    _require_columns(tab, "customers")
    ck = _Checker(tab, rejects)
    ck.missing("customer_id")
    raw = pc.utf8_lower(tab.column("consent_personalisation"))
    is_true = _np(pc.is_in(raw, value_set=pa.array(TRUE_WORDS)))
    is_false = _np(pc.is_in(raw, value_set=pa.array(FALSE_WORDS)))
    empty = _np(pc.equal(raw, ""))
    ck.reject(~(is_true | is_false | empty), "consent_personalisation", "not true or false")
    ck.duplicates("customer_id")
    keep = ck.good
    t = _kept(tab.table, keep)
    consent = pd.array(np.where(is_true, True, False)[keep], dtype="boolean")
    consent[empty[keep]] = pd.NA
    typed = {**{c: _str_col(t, c) for c in CUSTOMER_STR_COLUMNS}, "consent_personalisation": consent}
    return _frame(t, ("customer_id",), typed)


def _load_stores(tab: _Table, rejects: _Rejects) -> tuple[pd.DataFrame, pa.Table, np.ndarray]:
    """(stores frame, kept rows as arrow, their lines) — the latter for items_in_stock."""
    _require_columns(tab, "stores")
    ck = _Checker(tab, rejects)
    ck.missing("store_id")
    ck.duplicates("store_id")
    keep = ck.good
    t = _kept(tab.table, keep)
    return _frame(t, ("store_id",) + STORE_STR_COLUMNS, {}), t, tab.lines[keep]


def _load_stock(tab: _Table | None, stores_kept: pa.Table | None, store_lines: np.ndarray | None,
                stores_name: str | None, items: pa.Array, store_ids: pa.Array | None,
                rejects: _Rejects) -> pd.DataFrame | None:
    parts: list[pd.DataFrame] = []
    if tab is not None:
        _require_columns(tab, "stock")
        ck = _Checker(tab, rejects)
        ck.missing("store_id")
        ck.missing("item_id")
        if store_ids is not None:
            ok, _, _ = _in_set(tab.column("store_id"), store_ids)
            ck.reject(~ok, "store_id", "unknown store (not in stores file)")
        ok, _, _ = _in_set(tab.column("item_id"), items)
        ck.reject(~ok, "item_id", "unknown item (not in catalog)")
        qty, st = _parse_float(tab.column("quantity"))
        ck.reject(st == BAD, "quantity", "not a number")
        ck.reject((st == OK) & ((qty < 0) | (qty != np.floor(qty))), "quantity", "not a whole number >= 0")
        pair = pc.binary_join_element_wise(tab.column("store_id"), tab.column("item_id"), "\x1f")
        ck.duplicates("item_id", pair.to_pandas(), what="store_id,item_id pair")
        keep = ck.good
        t = _kept(tab.table, keep)
        parts.append(pd.DataFrame({
            "store_id": t.column("store_id").to_pandas(), "item_id": t.column("item_id").to_pandas(),
            "quantity": np.where(st[keep] == OK, qty[keep], 1.0).astype(np.int64)}))
    if stores_kept is not None and "items_in_stock" in stores_kept.column_names:
        lists = pc.split_pattern(_combine(stores_kept.column("items_in_stock")), ";")
        flat = pc.utf8_trim_whitespace(pc.list_flatten(lists))
        parent = _np(pc.list_parent_indices(lists))
        nonempty = _np(pc.not_equal(flat, ""))
        known = _np(pc.is_in(flat, value_set=items))
        bad = nonempty & ~known
        if bad.any():
            rejects.add(stores_name, store_lines[parent[bad]], "items_in_stock",
                        "unknown item (not in catalog)", _np(pc.filter(flat, pa.array(bad))))
        good = nonempty & known
        sid = _np(stores_kept.column("store_id").combine_chunks().take(pa.array(parent[good])))
        parts.append(pd.DataFrame({"store_id": pd.array(sid, dtype="str"),
                                   "item_id": pd.array(_np(pc.filter(flat, pa.array(good))), dtype="str"),
                                   "quantity": np.ones(int(good.sum()), dtype=np.int64)}))
    if not parts:
        return None
    stock = pd.concat(parts, ignore_index=True)
    return stock.drop_duplicates(["store_id", "item_id"], keep="first").reset_index(drop=True)


def _categorical(codes: np.ndarray, values: pa.Array) -> pd.Categorical:
    """Categorical over the observed codes only (values not used by kept rows are dropped)."""
    used = np.zeros(len(values), dtype=bool)
    used[codes] = True
    small = np.int32 if len(values) < 2**31 else np.int64
    if used.all():
        return pd.Categorical.from_codes(codes.astype(small), categories=pd.Index(values.to_pandas(), dtype="str"))
    remap = (np.cumsum(used) - 1).astype(small)
    cats = pd.Index(pc.filter(values, pa.array(used)).to_pandas(), dtype="str")
    return pd.Categorical.from_codes(remap[codes], categories=cats)


def _load_interactions(tab: _Table, rejects: _Rejects, items: pa.Array, store_ids: pa.Array | None,
                       until: float | None) -> pd.DataFrame:
    _require_columns(tab, "interactions")
    ck = _Checker(tab, rejects)
    col = tab.column
    # every column is parsed at once on the cores (arrow and numpy release the GIL); the checks then
    # apply in their fixed order, so the rejects are the same as a one-column-at-a-time pass
    with ThreadPoolExecutor(max_workers=_workers()) as pool:
        parsed = {
            "timestamp": pool.submit(_parse_ts, col("timestamp")),
            "item_id": pool.submit(_in_set, col("item_id"), items),
            "customer_id": pool.submit(_encoded, col("customer_id")),
            "store_id": pool.submit(_encoded, col("store_id")),
            "quantity": pool.submit(_parse_float, col("quantity")),
            "value": pool.submit(_parse_float, col("value")),
            "event": pool.submit(_in_set, col("event"), pa.array(EVENTS)),
            "channel": pool.submit(_in_set, col("channel"), pa.array(CHANNELS)),
            "no_customer": pool.submit(lambda: _np(pc.equal(col("customer_id"), ""))),
            "no_item": pool.submit(lambda: _np(pc.equal(col("item_id"), ""))),
            "event_id": pool.submit(_event_id_check, tab),
        }
        parsed = {name: f.result() for name, f in parsed.items()}
    ck.reject(parsed["no_customer"], "customer_id", "missing")
    ck.reject(parsed["no_item"], "item_id", "missing")
    ok_ev, ev_codes, ev_values = parsed["event"]
    ck.reject(~ok_ev, "event", f"unknown event (allowed: {', '.join(EVENTS)})")
    ok_ch, ch_codes, ch_values = parsed["channel"]
    ck.reject(~ok_ch, "channel", f"unknown channel (allowed: {', '.join(CHANNELS)})")
    ts, st = parsed["timestamp"]
    ck.reject(st == EMPTY, "timestamp", "missing")
    ck.reject(st == BAD, "timestamp", "not ISO-8601 or integer epoch seconds")
    ck.reject(st == OUT_OF_RANGE, "timestamp", "epoch seconds out of range (milliseconds?)")
    qty, qst = parsed["quantity"]
    ck.reject(qst == BAD, "quantity", "not a number")
    ck.reject((qst == OK) & (qty < 0), "quantity", "negative")
    value, vst = parsed["value"]
    ck.reject(vst == BAD, "value", "not a number")
    ok_item, item_codes, item_values = parsed["item_id"]
    ck.reject(~ok_item, "item_id", "unknown item (not in catalog)")
    store_codes, store_values = parsed["store_id"]
    if store_ids is not None:
        known = _np(pc.or_(pc.equal(store_values, ""), pc.is_in(store_values, value_set=store_ids)))
        ck.reject(~known[store_codes], "store_id", "unknown store (not in stores file)")
    has_id = parsed["event_id"]
    if has_id is not None:
        ck.duplicates("event_id", among=has_id)  # rows without an id never collide
    keep = ck.good
    if until is not None:
        keep = keep & (ts < until)
    cust_codes, cust_values = parsed["customer_id"]
    t = _kept(tab.table, keep)
    ev_map = _map_codes(ev_values, EVENTS)
    ch_map = _map_codes(ch_values, CHANNELS)
    data = {
        "customer_id": _categorical(cust_codes[keep], cust_values),
        "item_id": _categorical(item_codes[keep], item_values),
        "event": pd.Categorical.from_codes(ev_map[ev_codes[keep]], categories=pd.Index(EVENTS, dtype="str")),
        "channel": pd.Categorical.from_codes(ch_map[ch_codes[keep]], categories=pd.Index(CHANNELS, dtype="str")),
        "ts": ts[keep],
        "store_id": _categorical(store_codes[keep], store_values),
        "quantity": np.where(qst == OK, qty, 1.0)[keep],
        "value": value[keep],
    }
    for c in INTERACTION_STR_COLUMNS:
        data[c] = _str_col(t, c)
    data["line"] = tab.lines[keep]
    return pd.DataFrame(data)


def _workers() -> int:
    try:
        return max(1, min(4, len(os.sched_getaffinity(0))))
    except (AttributeError, OSError):
        return max(1, min(4, os.cpu_count() or 1))


def _event_id_check(tab: _Table) -> np.ndarray | None:
    """The rows with an event_id when ids may repeat (None when there is nothing to check: no column,
    no ids, or every row has one and they strictly increase, so none can repeat)."""
    if "event_id" not in tab.table.column_names:
        return None
    eid = tab.column("event_id")
    has_id = _np(pc.not_equal(eid, ""))
    increasing = len(eid) < 2 or pc.all(pc.greater(eid.slice(1), eid.slice(0, len(eid) - 1))).as_py()
    if has_id.any() and not (has_id.all() and increasing):
        return has_id
    return None


def _map_codes(values: pa.Array, allowed: tuple[str, ...]) -> np.ndarray:
    """Code of each distinct value -> index in `allowed` (0 for values rejected anyway)."""
    pos = {v: i for i, v in enumerate(allowed)}
    return np.array([pos.get(v, 0) for v in values.to_pylist()], dtype=np.int8)


# ---------------------------------------------------------------- the data directory
def fingerprint_files(paths: list[str]) -> str:
    """sha256 over each file's basename and bytes, in name order: same inputs, same fingerprint."""
    h = hashlib.sha256()
    for p in sorted(paths, key=os.path.basename):
        h.update(os.path.basename(p).encode() + b"\0")
        with open(p, "rb") as f:
            while chunk := f.read(1 << 23):
                h.update(chunk)
        h.update(b"\0")
    return h.hexdigest()


def default_rejects_path(data_dir: str) -> str:
    """`./rejects-<data dir name>.csv` in the working directory: never written into the input folder."""
    return os.path.join(os.getcwd(), f"rejects-{os.path.basename(os.path.normpath(os.path.abspath(data_dir)))}.csv")


class _Stages:
    """A tqdm bar over load stages, shown only when asked for and stderr is a terminal."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc="load", unit="step", leave=False)
        self.t0 = time.perf_counter()

    def step(self, what: str) -> None:
        now = time.perf_counter()
        log.info("%s in %.2fs", what, now - self.t0)
        self.t0 = now
        if self.bar is not None:
            self.bar.set_postfix_str(what, refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def load_dataset(data_dir: str, *, rejects_path: str | None = None, max_reject_share: float = 0.05,
                 until: float | None = None, progress: bool = False) -> Dataset:
    """Read and validate a data directory; write the rejects file when any row was rejected.

    Raises DataError for a missing file or column, or when rejected interaction rows exceed
    `max_reject_share` of those read. `until`: keep only interactions with ts < until.
    """
    if not os.path.isdir(data_dir):
        raise DataError(f"{data_dir}: no such data directory")
    if not 0.0 <= max_reject_share <= 1.0:
        raise DataError(f"max_reject_share must be within 0..1, got {max_reject_share}")
    paths = {stem: find_input(data_dir, stem, required=stem in ("interactions", "catalog"))
             for stem in ("interactions", "catalog", "customers", "stores", "stock")}
    stages = _Stages(progress, 6)
    try:
        rejects = _Rejects()
        # the fingerprint hashes the files while arrow parses them (both release the GIL)
        with ThreadPoolExecutor(max_workers=1 + len(paths)) as pool:
            fp = pool.submit(fingerprint_files, [p for p in paths.values() if p])
            reads = {stem: pool.submit(_read_once, p) for stem, p in paths.items() if p}
            tabs = {stem: f.result() for stem, f in reads.items()}
            fingerprint = fp.result()
        stages.step("fingerprint, read " + ", ".join(t.name for t in tabs.values()))
        catalog = _load_catalog(tabs["catalog"], rejects)
        items = pa.array(catalog["item_id"].to_numpy(dtype=object), pa.string())
        stages.step(f"catalog: {len(catalog)} items")
        customers = _load_customers(tabs["customers"], rejects) if "customers" in tabs else None
        stores = stores_kept = store_lines = None
        if "stores" in tabs:
            stores, stores_kept, store_lines = _load_stores(tabs["stores"], rejects)
        store_ids = None if stores is None else pa.array(stores["store_id"].to_numpy(dtype=object), pa.string())
        stock = _load_stock(tabs.get("stock"), stores_kept, store_lines,
                            tabs["stores"].name if "stores" in tabs else None, items, store_ids, rejects)
        stages.step("customers, stores, stock")
        itab = tabs["interactions"]
        inter = _load_interactions(itab, rejects, items, store_ids, until)
        stages.step(f"interactions: {len(inter)} valid of {itab.n_read}")
        n_rows = itab.n_read
        n_bad = rejects.by_file.get(itab.name, 0)
        written = None
        if rejects.total:
            written = rejects_path or default_rejects_path(data_dir)
            parent = os.path.dirname(os.path.abspath(written))
            os.makedirs(parent, exist_ok=True)
            rejects.frame([t.name for t in tabs.values()]).to_csv(written, index=False)
            log.warning("%d rejected rows written to %s", rejects.total, written)
        stages.step("rejects")
        if n_rows == 0:
            raise DataError(f"{itab.name}: no interaction rows")
        share = n_bad / n_rows
        if share > max_reject_share:
            raise DataError(f"{n_bad} of {n_rows} interaction rows rejected ({share:.1%} > {max_reject_share:.1%}); "
                            f"see {written}")
        if len(inter) == 0:
            raise DataError(f"{itab.name}: no valid interaction rows"
                            + (f" before {until:.0f} (--until)" if until is not None else ""))
        stages.step("done")
    finally:
        stages.close()
    return Dataset(interactions=inter, catalog=catalog, customers=customers, stores=stores, stock=stock,
                   fingerprint=fingerprint, n_rows=n_rows, n_rejects=rejects.total, rejects_path=written)
