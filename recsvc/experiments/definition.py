"""An experiment as declared in a file or through `POST /v1/experiments`, validated into frozen values.

    {"experiment_id": "new-model-2026-11",
     "variants": [{"name": "control", "share": 0.5, "control": true},
                  {"name": "B", "share": 0.5, "model": "challenger",
                   "options": {"max_per_category": 3, "exclude_history": "none", "min_price": 10, "n": 8}}],
     "eligibility": {"channels": ["web", "app", "store"], "stores": [], "locales": ["fr-FR"], "segments": []},
     "start": "2026-11-23T00:00:00Z", "end": "2026-12-07T00:00:00Z",
     "primary_metric": "conversion", "attribution_window_hours": 168, "alpha": 0.05, "salt": "..."}

The control is always present: exactly one variant has `"control": true` (or is named `control`), it
serves the champion with the service's default options, and its share is above zero. Shares sum to 1.
Empty eligibility lists mean "all". Every error names the field and says what to write instead.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace

from recsvc.core.experiment_attribution import METRICS, epoch, iso
from recsvc.core.types import CHANNELS, EXCLUDE_MODES, Filters, RankOptions
from recsvc.errors import RecsvcError

EXPERIMENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
VARIANT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
MAX_VARIANTS = 8
SHARE_TOLERANCE = 1e-6
STATUSES = ("running", "stopped")  # stored; `state()` also derives scheduled and ended from the dates
OPTION_KEYS = ("n", "max_per_category", "exclude_history", "min_price", "max_price")
TOP_KEYS = ("experiment_id", "description", "variants", "eligibility", "start", "end", "primary_metric",
            "attribution_window_hours", "alpha", "salt", "status", "created_at", "stopped_at", "share_history")


class ExperimentError(RecsvcError):
    code = "experiment_error"
    status = 400


class InvalidExperiment(ExperimentError):
    """A definition that cannot run as written; `details` has one entry per offending field."""

    code = "invalid_experiment"
    status = 422


class UnknownExperiment(ExperimentError):
    code = "unknown_experiment"
    status = 404


class ExperimentConflict(ExperimentError):
    code = "experiment_conflict"
    status = 409


@dataclass(frozen=True, slots=True)
class VariantOptions:
    """Ranking options a variant sets; None leaves the request's (or the service's default) value."""

    n: int | None = None
    max_per_category: int | None = None  # diversity cap
    exclude_history: str | None = None  # repurchase policy: purchased | seen | none
    min_price: float | None = None  # price band, intersected with the request's filters
    max_price: float | None = None

    def apply(self, options: RankOptions) -> RankOptions:
        f = options.filters
        lo = _tighter(f.min_price, self.min_price, max)
        hi = _tighter(f.max_price, self.max_price, min)
        filters = f if (lo, hi) == (f.min_price, f.max_price) else Filters(
            category=f.category, min_price=lo, max_price=hi, in_stock_only=f.in_stock_only)
        changes = {k: v for k, v in (("n", self.n), ("max_per_category", self.max_per_category),
                                     ("exclude_history", self.exclude_history)) if v is not None}
        if not changes and filters is f:
            return options
        return replace(options, filters=filters, **changes)

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in OPTION_KEYS if getattr(self, k) is not None}


def _tighter(a: float | None, b: float | None, pick) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return pick(a, b)


@dataclass(frozen=True, slots=True)
class Variant:
    name: str
    share: float
    control: bool = False
    model: str | None = None  # model id or alias; None = the served champion
    options: VariantOptions = VariantOptions()

    def as_dict(self) -> dict:
        d = {"name": self.name, "share": self.share, "control": self.control, "model": self.model}
        opts = self.options.as_dict()
        if opts:
            d["options"] = opts
        return d


@dataclass(frozen=True, slots=True)
class Eligibility:
    """Who may enter: empty tuples mean everyone. The channel list is the analyst's choice; assignment
    itself never looks at the channel, so a customer has one variant on every eligible channel."""

    channels: tuple[str, ...] = ()
    stores: tuple[str, ...] = ()
    locales: tuple[str, ...] = ()
    segments: tuple[str, ...] = ()

    def admits(self, channel: str, store_id: str | None, locale: str | None, segment: str | None) -> bool:
        return ((not self.channels or channel in self.channels)
                and (not self.stores or store_id in self.stores)
                and (not self.locales or _locale_in(locale, self.locales))
                and (not self.segments or segment in self.segments))

    def as_dict(self) -> dict:
        return {"channels": list(self.channels), "stores": list(self.stores), "locales": list(self.locales),
                "segments": list(self.segments)}


def _locale_in(locale: str | None, allowed: tuple[str, ...]) -> bool:
    """fr-FR matches fr-FR and fr; case and -/_ do not matter."""
    if not locale:
        return False
    loc = locale.replace("_", "-").lower()
    return any(loc == a.replace("_", "-").lower() or loc.split("-")[0] == a.lower() for a in allowed)


@dataclass(frozen=True, slots=True)
class SharePeriod:
    version: int
    since: float
    shares: tuple[tuple[str, float], ...]


@dataclass(frozen=True, slots=True)
class Experiment:
    experiment_id: str
    variants: tuple[Variant, ...]
    eligibility: Eligibility
    start: float
    end: float | None
    primary_metric: str
    salt: str
    attribution_window_hours: float = 168.0
    alpha: float = 0.05
    description: str = ""
    status: str = "running"
    created_at: float = 0.0
    stopped_at: float | None = None
    share_history: tuple[SharePeriod, ...] = ()

    @property
    def control(self) -> Variant:
        return next(v for v in self.variants if v.control)

    def variant(self, name: str) -> Variant | None:
        return next((v for v in self.variants if v.name == name), None)

    def state(self, now: float) -> str:
        """stopped | scheduled (before start) | ended (after end) | running."""
        if self.status == "stopped":
            return "stopped"
        if now < self.start:
            return "scheduled"
        if self.end is not None and now >= self.end:
            return "ended"
        return "running"

    def is_active(self, now: float) -> bool:
        return self.state(now) == "running"

    @property
    def shares_version(self) -> int:
        return self.share_history[-1].version if self.share_history else 1

    def model_refs(self) -> set[str]:
        return {v.model for v in self.variants if v.model}

    def as_dict(self) -> dict:
        return {
            "experiment_id": self.experiment_id,
            "description": self.description,
            "variants": [v.as_dict() for v in self.variants],
            "eligibility": self.eligibility.as_dict(),
            "start": iso(self.start),
            "end": iso(self.end),
            "primary_metric": self.primary_metric,
            "attribution_window_hours": self.attribution_window_hours,
            "alpha": self.alpha,
            "salt": self.salt,
            "status": self.status,
            "created_at": iso(self.created_at),
            "stopped_at": iso(self.stopped_at),
            "share_history": [{"version": p.version, "since": iso(p.since), "shares": dict(p.shares)}
                              for p in self.share_history],
        }


class _Errors:
    def __init__(self, source: str):
        self.source = source
        self.details: list[dict] = []

    def add(self, field: str, reason: str) -> None:
        self.details.append({"field": field, "reason": reason})

    def raise_if_any(self) -> None:
        if self.details:
            first = self.details[0]
            more = f" (and {len(self.details) - 1} more)" if len(self.details) > 1 else ""
            where = f"{self.source}: " if self.source else ""
            raise InvalidExperiment(f"{where}{first['field']}: {first['reason']}{more}", self.details)


def _number(err: _Errors, field: str, v, lo: float, hi: float, integer: bool = False):
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and not float(v).is_integer()):
        err.add(field, f"expected {'a whole number' if integer else 'a number'} from {lo:g} to {hi:g}")
        return None
    if not (math.isfinite(v) and lo <= v <= hi):
        err.add(field, f"expected a number from {lo:g} to {hi:g}, got {v}")
        return None
    return int(v) if integer else float(v)


def _strings(err: _Errors, field: str, v, allowed: tuple[str, ...] | None = None) -> tuple[str, ...]:
    if v is None:
        return ()
    if not isinstance(v, list) or not all(isinstance(x, str) and 0 < len(x) <= 128 for x in v):
        err.add(field, "expected a list of names (empty or absent: all)")
        return ()
    if allowed is not None:
        for k, x in enumerate(v):
            if x not in allowed:
                err.add(f"{field}[{k}]", f"unknown {x!r}; expected one of {', '.join(allowed)}")
    return tuple(dict.fromkeys(v))


def _time(err: _Errors, field: str, v) -> float | None:
    try:
        return epoch(v, field)
    except ValueError:
        err.add(field, "expected an ISO-8601 time like 2026-11-23T00:00:00Z or epoch seconds")
        return None


def _options(err: _Errors, field: str, raw) -> VariantOptions:
    if raw is None:
        return VariantOptions()
    if not isinstance(raw, Mapping):
        err.add(field, f"expected an object with some of {', '.join(OPTION_KEYS)}")
        return VariantOptions()
    for k in raw:
        if k not in OPTION_KEYS:
            err.add(f"{field}.{k}", f"unknown option; expected one of {', '.join(OPTION_KEYS)}")
    eh = raw.get("exclude_history")
    if eh is not None and eh not in EXCLUDE_MODES:
        err.add(f"{field}.exclude_history", f"expected one of {', '.join(EXCLUDE_MODES)}")
        eh = None
    o = VariantOptions(
        n=_number(err, f"{field}.n", raw.get("n"), 1, 100, integer=True),
        max_per_category=_number(err, f"{field}.max_per_category", raw.get("max_per_category"), 1, 100, integer=True),
        exclude_history=eh,
        min_price=_number(err, f"{field}.min_price", raw.get("min_price"), 0, 1e12),
        max_price=_number(err, f"{field}.max_price", raw.get("max_price"), 0, 1e12),
    )
    if o.min_price is not None and o.max_price is not None and o.min_price > o.max_price:
        err.add(f"{field}.min_price", "must not exceed max_price")
    return o


def _variants(err: _Errors, raw) -> tuple[Variant, ...]:
    if not isinstance(raw, list) or not 2 <= len(raw) <= MAX_VARIANTS:
        err.add("variants", f"expected a list of 2 to {MAX_VARIANTS} variants, one of them the control")
        return ()
    out: list[Variant] = []
    for k, v in enumerate(raw):
        f = f"variants[{k}]"
        if not isinstance(v, Mapping):
            err.add(f, "expected an object with name, share and optionally control, model, options")
            continue
        for key in v:
            if key not in ("name", "share", "control", "model", "options"):
                err.add(f"{f}.{key}", "unknown field; expected name, share, control, model, options")
        name = v.get("name")
        if not isinstance(name, str) or not VARIANT_NAME.match(name):
            err.add(f"{f}.name", "expected 1-32 letters, digits, - or _ (e.g. control, B)")
            name = f"#{k}"
        share = _number(err, f"{f}.share", v.get("share"), 0, 1)
        if v.get("share") is None:
            err.add(f"{f}.share", "required: the variant's share of traffic, from 0 to 1")
        control = v.get("control", False)
        if not isinstance(control, bool):
            err.add(f"{f}.control", "expected true or false")
            control = False
        model = v.get("model")
        if model is not None and (not isinstance(model, str) or not 0 < len(model) <= 200):
            err.add(f"{f}.model", "expected a model id or alias (e.g. challenger), or null for the champion")
            model = None
        out.append(Variant(name=name, share=share or 0.0, control=control, model=model,
                           options=_options(err, f"{f}.options", v.get("options"))))
    names = [v.name for v in out]
    for k, n in enumerate(names):
        if names.index(n) != k:
            err.add(f"variants[{k}].name", f"duplicate variant name {n!r}")
    flagged = [k for k, v in enumerate(out) if v.control]
    if not flagged:
        named = [k for k, v in enumerate(out) if v.name.lower() == "control"]
        if len(named) == 1:
            out[named[0]] = replace(out[named[0]], control=True)
            flagged = named
    if len(flagged) != 1:
        err.add("variants", "exactly one variant must be the control: add \"control\": true to it")
    else:
        c = out[flagged[0]]
        f = f"variants[{flagged[0]}]"
        if c.model is not None:
            err.add(f"{f}.model", "the control serves the champion: remove model (put the other model in a variant)")
        if c.options != VariantOptions():
            err.add(f"{f}.options", "the control uses the service's default options: move options to a variant")
        if c.share <= 0:
            err.add(f"{f}.share", "the control needs a share above 0 (it is the always-present holdout)")
    total = sum(v.share for v in out)
    if out and abs(total - 1.0) > SHARE_TOLERANCE:
        err.add("variants", f"shares must sum to 1; they sum to {total:g}")
    return tuple(out)


def parse_experiment(raw, source: str = "", now: float | None = None) -> Experiment:
    """Validate a definition (file entry or request body) -> Experiment. InvalidExperiment lists every
    offending field. A stored definition (with status and share_history) round-trips."""
    now = time.time() if now is None else now
    err = _Errors(source)
    if not isinstance(raw, Mapping):
        err.add("body", "expected an experiment object")
        err.raise_if_any()
    for k in raw:
        if k not in TOP_KEYS:
            err.add(k, f"unknown field; expected some of {', '.join(TOP_KEYS[:10])}")
    eid = raw.get("experiment_id")
    if not isinstance(eid, str) or not EXPERIMENT_ID.match(eid):
        err.add("experiment_id", "expected 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
        eid = "?"
    variants = _variants(err, raw.get("variants"))
    el = raw.get("eligibility") or {}
    if not isinstance(el, Mapping):
        err.add("eligibility", "expected an object with channels, stores, locales, segments (lists)")
        el = {}
    for k in el:
        if k not in ("channels", "stores", "locales", "segments"):
            err.add(f"eligibility.{k}", "unknown field; expected channels, stores, locales or segments")
    eligibility = Eligibility(
        channels=_strings(err, "eligibility.channels", el.get("channels"), CHANNELS),
        stores=_strings(err, "eligibility.stores", el.get("stores")),
        locales=_strings(err, "eligibility.locales", el.get("locales")),
        segments=_strings(err, "eligibility.segments", el.get("segments")),
    )
    start = _time(err, "start", raw.get("start")) if raw.get("start") is not None else now
    end = _time(err, "end", raw.get("end"))
    if start is not None and end is not None and end <= start:
        err.add("end", "must be after start")
    metric = raw.get("primary_metric", "conversion")
    if metric not in METRICS:
        err.add("primary_metric", f"expected one of {', '.join(METRICS)}")
    window = _number(err, "attribution_window_hours", raw.get("attribution_window_hours", 168), 0.01, 24 * 90)
    alpha = _number(err, "alpha", raw.get("alpha", 0.05), 1e-6, 0.5)
    salt = raw.get("salt", eid)
    if not isinstance(salt, str) or not 0 < len(salt) <= 128:
        err.add("salt", "expected a string of 1-128 characters (default: the experiment id)")
    description = raw.get("description", "")
    if not isinstance(description, str) or len(description) > 2000:
        err.add("description", "expected text of at most 2000 characters")
    status = raw.get("status", "running")
    if status not in STATUSES:
        err.add("status", f"expected one of {', '.join(STATUSES)}")
    created = _time(err, "created_at", raw.get("created_at")) if raw.get("created_at") else now
    stopped = _time(err, "stopped_at", raw.get("stopped_at"))
    err.raise_if_any()
    history = _history(err, raw.get("share_history"), variants, start)
    err.raise_if_any()
    return Experiment(
        experiment_id=eid, variants=variants, eligibility=eligibility, start=start, end=end,
        primary_metric=metric, salt=salt, attribution_window_hours=window, alpha=alpha,
        description=description, status=status, created_at=created, stopped_at=stopped, share_history=history,
    )


def _history(err: _Errors, raw, variants: tuple[Variant, ...], start: float) -> tuple[SharePeriod, ...]:
    if not raw:
        return (SharePeriod(1, start, tuple((v.name, v.share) for v in variants)),)
    out = []
    try:
        for h in raw:
            out.append(SharePeriod(int(h["version"]), epoch(h["since"], "share_history.since"),
                                   tuple((str(k), float(x)) for k, x in h["shares"].items())))
    except (KeyError, TypeError, ValueError):
        err.add("share_history", "malformed (it is written by the service; leave it out of new definitions)")
    return tuple(out)


def with_changes(exp: Experiment, raw: Mapping, now: float) -> Experiment:
    """PUT /v1/experiments/{id}: new shares (existing customers keep their variant; new customers
    follow the new shares), end, description, eligibility, alpha, primary metric. The variants' names,
    models and options, the salt and the start are fixed once traffic flowed: start a new experiment."""
    allowed = ("variants", "end", "description", "eligibility", "alpha", "primary_metric")
    err = _Errors("")
    for k in raw:
        if k not in allowed and k != "experiment_id":
            err.add(k, f"cannot be changed on a created experiment; changeable: {', '.join(allowed)}")
    if raw.get("experiment_id", exp.experiment_id) != exp.experiment_id:
        err.add("experiment_id", "does not match the experiment in the path")
    err.raise_if_any()
    merged = exp.as_dict()
    shares_changed = False
    if "variants" in raw:
        new = raw["variants"]
        if not isinstance(new, list):
            err.add("variants", "expected the list of variants with their new shares")
            err.raise_if_any()
        by_name = {v.get("name"): v for v in new if isinstance(v, Mapping)}
        if set(by_name) != {v.name for v in exp.variants}:
            err.add("variants", "list every existing variant by name (variants cannot be added or removed)")
        for v in merged["variants"]:
            given = by_name.get(v["name"], {})
            for key in ("model", "options", "control"):
                if key in given and given[key] != v.get(key, {} if key == "options" else None):
                    err.add(f"variants.{v['name']}.{key}", "fixed once the experiment exists; only share changes")
            if "share" in given:
                shares_changed |= given["share"] != v["share"]
                v["share"] = given["share"]
        err.raise_if_any()
    for k in ("end", "description", "eligibility", "alpha", "primary_metric"):
        if k in raw:
            merged[k] = raw[k]
    updated = parse_experiment(merged, now=now)
    if shares_changed:
        since = max(now, exp.start)  # a change before the start applies from the start
        period = SharePeriod(exp.shares_version + 1, since, tuple((v.name, v.share) for v in updated.variants))
        updated = replace(updated, share_history=exp.share_history + (period,))
    return updated


def stopped(exp: Experiment, now: float) -> Experiment:
    if exp.status == "stopped":
        return exp
    return replace(exp, status="stopped", stopped_at=now)
