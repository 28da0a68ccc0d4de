"""The ranking core: plain Python + numpy, no Flask, Redis or training imports.

It takes a model, the customer's live state and the request context, and returns ranked offers with
reasons. The HTTP API and the batch `recsvc-train recommend` both call `rank`, so they agree.
"""

from recsvc.core.types import (
    CHANNELS,
    EVENTS,
    Availability,
    Context,
    CustomerState,
    Filters,
    LiveEvent,
    RankedOffer,
    Ranking,
    RankOptions,
    Reason,
)

__all__ = [
    "CHANNELS",
    "EVENTS",
    "Availability",
    "Context",
    "CustomerState",
    "Filters",
    "LiveEvent",
    "RankOptions",
    "RankedOffer",
    "Ranking",
    "Reason",
    "rank",
]


def rank(*args, **kwargs):
    from recsvc.core.ranking import rank as _rank

    return _rank(*args, **kwargs)
