"""Attribution from records: shown on one channel and bought on another within the window is credited to
both channels; after the window, or for an item never offered, it is not; events carrying a
recommendation_id go to that list; the latest offer before a purchase takes the credit."""

from __future__ import annotations

import pytest

from recsvc.core.experiment_attribution import (
    attribute,
    design_from_definition,
    pseudonym,
    tables_from_records,
)
from recsvc.core.experiment_stats import analyse
from recsvc.core.types import CHANNELS
from recsvc.experiments.definition import parse_experiment

T = 1_790_000_000.0
H = 3600.0
C = {c: k for k, c in enumerate(CHANNELS)}


def design(window_h=48):
    e = parse_experiment({"experiment_id": "attr", "start": T - 72 * H, "end": T + 30 * 24 * H,
                          "attribution_window_hours": window_h,
                          "variants": [{"name": "control", "share": 0.5, "control": True},
                                       {"name": "B", "share": 0.5}]}, now=T)
    return design_from_definition(e.as_dict())


def shown(d, rid, customer, channel, at, items, variant="B"):
    return {"rid": rid, "u": pseudonym(d.salt, customer), "a": "", "v": variant, "ch": channel, "st": "",
            "ts": at, "it": items}


def event(customer, kind, item, channel, at, rid=None, value=None, eid=None):
    return {"event_id": eid or f"e-{customer}-{kind}-{item}-{at}", "customer_id": customer, "item_id": item,
            "event": kind, "channel": channel, "ts": at, "quantity": 1.0, "value": value,
            "recommendation_id": rid}


def table(d, impressions, events):
    imp, ev, _ = tables_from_records(d, impressions, events)
    return attribute(d, imp, ev)


def test_shown_on_the_app_bought_in_store_within_the_window_is_credited_to_both_channels():
    d = design(window_h=48)
    t = table(d, [shown(d, "r1", "c1", "app", T, ["i1", "i2"])],
              [event("c1", "purchase", "i2", "store", T + 24 * H, value=30.0)])
    assert t.purchases[0, C["app"]] == 1 and t.revenue[0, C["app"]] == 30.0
    assert t.shown_bought[1, C["app"], C["store"]] == 1
    assert t.credited_by_window == 1 and t.credited_by_id == 0


@pytest.mark.parametrize("purchase, why", [
    (event("c1", "purchase", "i2", "store", T + 49 * H, value=30.0), "after the window"),
    (event("c1", "purchase", "i9", "store", T + 2 * H, value=30.0), "an item never offered"),
    (event("c2", "purchase", "i2", "store", T + 2 * H, value=30.0), "another customer"),
    (event("c1", "purchase", "i2", "store", T - 2 * H, value=30.0), "before the offer"),
    (event("c1", "view", "i2", "store", T + 2 * H), "not a purchase"),
    (event("c1", "click", "i2", "app", T + 2 * H), "a click without the list's id"),
])
def test_not_credited(purchase, why):
    d = design(window_h=48)
    t = table(d, [shown(d, "r1", "c1", "app", T, ["i1", "i2"])], [purchase])
    assert t.purchases.sum() == 0 and t.clicks.sum() == 0, why


def test_events_with_the_recommendation_id_go_to_that_list_whatever_the_time_or_channel():
    d = design(window_h=1)
    t = table(d, [shown(d, "r1", "c1", "store", T, ["i1"]), shown(d, "r2", "c1", "web", T + H, ["i1"])], [
        event("c1", "click", "i1", "web", T + 60, rid="r1"),
        event("c1", "offer_accepted", "i1", "store", T + 70, rid="r1"),
        event("c1", "offer_declined", "i1", "store", T + 80, rid="r2"),
        event("c1", "purchase", "i5", "app", T + 100 * H, rid="r1", value=12.0),  # long after, other item
    ])
    assert t.clicks[0, C["store"]] == 1 and t.accepts[0, C["store"]] == 1 and t.declines[0, C["web"]] == 1
    assert t.purchases[0, C["store"]] == 1 and t.shown_bought[1, C["store"], C["app"]] == 1
    assert t.credited_by_id == 1


def test_the_latest_offer_before_the_purchase_takes_the_credit():
    d = design(window_h=48)
    t = table(d, [shown(d, "r1", "c1", "web", T, ["i1"]), shown(d, "r2", "c1", "store", T + H, ["i1"]),
                  shown(d, "r3", "c1", "app", T + 5 * H, ["i1"])],
              [event("c1", "purchase", "i1", "call_center", T + 2 * H, value=5.0)])
    assert t.purchases[0].tolist() == [0, 0, 1, 0]  # the store list, not the earlier web or later app one
    assert t.impressions[0].tolist() == [1, 1, 1, 0]


def test_a_retried_event_counts_once_and_a_device_joins_its_owner():
    d = design()
    dev = "device:abc"
    imps = [{**shown(d, "r1", dev, "app", T, ["i1"]), "a": pseudonym(d.salt, "anon-1")},
            {**shown(d, "r2", "c7", "store", T + H, ["i2"]), "a": pseudonym(d.salt, dev)}]
    p = event("anon-1", "purchase", "i1", "app", T + 2 * H, value=10.0, eid="same")
    t = table(d, imps, [p, dict(p)])
    assert t.n_units == 1  # the device and the customer who logged in with it are one unit
    assert t.purchases.sum() == 1 and t.impressions.sum() == 2


def test_revenue_from_the_catalogue_price_when_the_event_has_no_value():
    d = design()
    imp, ev, _ = tables_from_records(d, [shown(d, "r1", "c1", "app", T, ["i1"])],
                                     [{**event("c1", "purchase", "i1", "web", T + H), "quantity": 3.0}],
                                     price_of=lambda item: 2.5)
    assert attribute(d, imp, ev).revenue.sum() == 7.5


def test_the_report_of_a_tiny_experiment_has_every_part():
    d = design()
    imps = [shown(d, f"r{k}", f"c{k}", CHANNELS[k % 4], T + k, ["i1", "i2"], variant="B" if k % 2 else "control")
            for k in range(40)]
    evs = [event(f"c{k}", "purchase", "i1", "store", T + H + k, value=10.0) for k in range(0, 40, 3)]
    rep = analyse(d, table(d, imps, evs), status="running", now=T)
    assert rep["customers"] == 40 and rep["srm"]["observed"] == {"control": 20, "B": 20}
    assert set(rep["variants"]["B"]) == {"overall", *CHANNELS}
    m = rep["variants"]["B"]["overall"]["metrics"]["conversion"]
    assert set(m) == {"value", "ci", "lift", "lift_ci", "p_value", "significant"}
    assert rep["variants"]["control"]["overall"]["metrics"]["conversion"]["lift"] is None
