"""Frozen value types passed between the edge (HTTP, batch) and the ranking core."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

CHANNELS = ("web", "app", "store", "call_center")
EVENTS = ("view", "click", "add_to_cart", "purchase", "return", "rating",
          "offer_shown", "offer_accepted", "offer_declined")
FULFILMENT = ("take_home", "order_for_delivery", "pick_up_elsewhere")
EXCLUDE_MODES = ("seen", "purchased", "none")


@dataclass(frozen=True, slots=True)
class Context:
    """Where and when the selection is shown. The channel only filters eligibility, never scores."""

    channel: str
    store_id: str | None = None
    locale: str | None = None
    page: str | None = None
    item_id: str | None = None
    category: str | None = None
    cart: tuple[str, ...] = ()
    at: float | None = None  # epoch seconds; None means now


class LiveEvent(NamedTuple):
    """One event from live state (newest last in CustomerState.events). A named tuple, not a dataclass:
    a request's state read builds dozens of these, and a tuple is built in a tenth of the time."""

    item_id: str
    event: str
    channel: str
    ts: float
    store_id: str | None = None
    quantity: float = 1.0
    value: float | None = None
    recommendation_id: str | None = None


@dataclass(frozen=True, slots=True)
class CustomerState:
    """What live state knows of a customer. customer_id None = anonymous."""

    customer_id: str | None = None
    consent: bool | None = None  # None: no recorded choice (the configured default applies)
    erased: bool = False
    events: tuple[LiveEvent, ...] = ()
    segment: str | None = None


@dataclass(frozen=True, slots=True)
class Filters:
    category: str | None = None
    max_price: float | None = None
    min_price: float | None = None
    in_stock_only: bool = False


@dataclass(frozen=True, slots=True)
class RankOptions:
    n: int = 10
    filters: Filters = field(default_factory=Filters)
    exclude: tuple[str, ...] = ()
    explain: bool = True
    exclude_history: str = "purchased"  # seen | purchased | none
    max_per_category: int | None = None  # diversity cap; None = no cap
    decline_cap: int = 2  # declined this many times (any channel) -> not offered again
    consent_default: bool = True
    reason_locale: str | None = None  # language of reason texts; defaults to context.locale


@dataclass(frozen=True, slots=True)
class Reason:
    code: str
    text: str


@dataclass(frozen=True, slots=True)
class Availability:
    store_id: str | None
    in_stock: bool | None
    quantity: int | None
    fulfilment: str


@dataclass(frozen=True, slots=True)
class RankedOffer:
    item_id: str
    rank: int
    score: float
    title: str
    category: str
    price: float | None
    reasons: tuple[Reason, ...]
    availability: Availability | None


@dataclass(frozen=True, slots=True)
class Ranking:
    customer_id: str | None
    personalised: bool
    strategy: str  # personalised | context | store_popular | locale_popular | segment_popular | popular
    fallback_reason: str | None
    offers: tuple[RankedOffer, ...]
