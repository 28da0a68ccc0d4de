"""RecommendationRequestSchema.load_everyday: the shortcut accepts only what the schema accepts and
builds exactly what `load` builds (hypothesis over valid and invalid bodies alike)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError

from recsvc.core.types import RankOptions
from recsvc.schemas.recommendations import RecommendationRequestSchema

SCHEMA = RecommendationRequestSchema(defaults=RankOptions(max_per_category=3, consent_default=False))

text = st.one_of(st.text(max_size=140), st.sampled_from(["c1", "s1", "i00001", "", "a\nb", "x\x7f", "en\n",
                                                          "fr-FR", "en", "tv", "x" * 129]))
anything = st.one_of(st.none(), st.booleans(), st.integers(-5, 200), st.floats(allow_nan=False), text,
                     st.lists(text, max_size=3), st.dictionaries(text, text, max_size=2))


def mostly(good, bad=anything):
    """Valid values most of the time, anything now and then: accepted and refused bodies both come up."""
    return st.integers(0, 5).flatmap(lambda k: bad if k == 0 else good)


ids = st.one_of(st.sampled_from(["c1", "i00001", "0493995001", "é-ü", "x" * 128]), st.text(min_size=1, max_size=8))
context = st.fixed_dictionaries(
    {"channel": mostly(st.sampled_from(["web", "app", "store", "call_center"]))},
    optional={"store_id": mostly(st.one_of(st.none(), ids)), "locale": mostly(st.sampled_from([None, "fr-FR", "en",
                                                                                               "pt-BR", "en_GB"])),
              "page": mostly(st.one_of(st.none(), st.text(min_size=1, max_size=64))), "item_id": mostly(ids),
              "category": mostly(st.one_of(st.none(), st.text(min_size=1, max_size=20))),
              "cart": mostly(st.lists(ids, max_size=3)),
              "at": mostly(st.none(), st.one_of(st.just("2026-11-23T10:00:00Z"), anything))})
body = st.fixed_dictionaries(
    {"context": mostly(context)},
    optional={"customer": mostly(st.one_of(st.none(), st.fixed_dictionaries({"customer_id": ids})),
                                 st.one_of(st.just({"identifier": {"type": "loyalty_card", "value": "12"}}), anything)),
              "n": mostly(st.integers(1, 100), st.one_of(st.integers(-1, 102), anything)),
              "exclude": mostly(st.lists(ids, max_size=3)),
              "exclude_history": mostly(st.sampled_from(["seen", "purchased", "none"])),
              "explain": mostly(st.booleans()), "filters": mostly(st.none())})
unknown_key = st.builds(lambda b, k, v: {**b, k: v} if isinstance(b, dict) else b, body, text, anything)


@settings(max_examples=600, deadline=None)
@given(b=st.integers(0, 5).flatmap(lambda k: (unknown_key, anything)[k] if k < 2 else body))
def test_the_shortcut_agrees_with_the_schema(b):
    fast = SCHEMA.load_everyday(b)
    if fast is None:
        return
    try:
        slow = SCHEMA.load(b)
    except ValidationError as e:
        raise AssertionError(f"the shortcut accepted a body the schema refuses: {e.messages}") from None
    assert fast == slow


def test_everyday_bodies_take_the_shortcut():
    for b in (
        {"context": {"channel": "web"}},
        {"customer": {"customer_id": "c42"}, "context": {"channel": "store", "store_id": "s7"}, "n": 10},
        {"customer": None, "context": {"channel": "app", "locale": "fr-FR", "page": "product", "item_id": "i9",
                                       "category": "shoes", "cart": ["i3"], "at": None},
         "n": 100, "exclude": ["i5"], "exclude_history": "none", "explain": False, "filters": None},
    ):
        fast = SCHEMA.load_everyday(b)
        assert fast is not None and fast == SCHEMA.load(b)
        assert fast.options.max_per_category == 3 and fast.options.consent_default is False
