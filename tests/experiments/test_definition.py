"""Experiment definitions: validation that names the field and the fix, variant options applied to a
request's options, share changes recorded, files in JSON and TOML."""

from __future__ import annotations

import json

import pytest

from recsvc.core.experiment_attribution import design_from_definition
from recsvc.core.types import Filters, RankOptions
from recsvc.experiments.definition import InvalidExperiment, parse_experiment, stopped, with_changes
from recsvc.experiments.registry import ExperimentsFileError, read_experiments_file

NOW = 1_790_000_000.0


def defn(**kw):
    d = {"experiment_id": "exp1",
         "variants": [{"name": "control", "share": 0.5},
                      {"name": "B", "share": 0.5, "model": "challenger",
                       "options": {"max_per_category": 2, "exclude_history": "none", "min_price": 20, "n": 5}}],
         "start": "2026-11-23T00:00:00Z", "end": "2026-12-07T00:00:00Z"}
    d.update(kw)
    return d


def fields_of(err) -> set[str]:
    return {d["field"] for d in err.value.details}


def test_a_valid_definition_round_trips_through_its_stored_form():
    e = parse_experiment(defn(), now=NOW)
    assert e.control.name == "control" and e.control.control  # named control: taken as the control
    assert e.variant("B").model == "challenger" and e.salt == "exp1" and e.primary_metric == "conversion"
    assert e.attribution_window_hours == 168 and e.alpha == 0.05
    again = parse_experiment(json.loads(json.dumps(e.as_dict())))
    assert again == e
    d = design_from_definition(e.as_dict())  # what the report (and the CLI) read of it
    assert d.variants == ("control", "B") and d.control == "control" and d.start == e.start
    assert d.periods[0].shares == (0.5, 0.5)


@pytest.mark.parametrize("change, field", [
    ({"variants": [{"name": "A", "share": 0.5}, {"name": "B", "share": 0.5}]}, "variants"),  # no control
    ({"variants": [{"name": "control", "share": 0.6}, {"name": "B", "share": 0.5}]}, "variants"),  # sum 1.1
    ({"variants": [{"name": "control", "share": 0.0, "control": True}, {"name": "B", "share": 1.0}]},
     "variants[0].share"),  # the holdout is always present
    ({"variants": [{"name": "control", "share": 0.5, "model": "x"}, {"name": "B", "share": 0.5}]},
     "variants[0].model"),
    ({"variants": [{"name": "control", "share": 0.5}, {"name": "control", "share": 0.5}]}, "variants[1].name"),
    ({"variants": [{"name": "control", "share": 0.5}, {"name": "B", "share": 0.5, "options": {"n": 0}}]},
     "variants[1].options.n"),
    ({"variants": [{"name": "control", "share": 0.5},
                   {"name": "B", "share": 0.5, "options": {"exclude_history": "always"}}]},
     "variants[1].options.exclude_history"),
    ({"variants": [{"name": "control", "share": 0.5},
                   {"name": "B", "share": 0.5, "options": {"min_price": 50, "max_price": 10}}]},
     "variants[1].options.min_price"),
    ({"eligibility": {"channels": ["web", "fax"]}}, "eligibility.channels[1]"),
    ({"end": "2026-11-01T00:00:00Z"}, "end"),
    ({"primary_metric": "happiness"}, "primary_metric"),
    ({"experiment_id": "has space"}, "experiment_id"),
    ({"colour": "blue"}, "colour"),
    ({"start": "yesterday"}, "start"),
])
def test_invalid_definitions_name_the_field(change, field):
    with pytest.raises(InvalidExperiment) as err:
        parse_experiment(defn(**change), now=NOW)
    assert field in fields_of(err), err.value.details
    assert err.value.status == 422 and field in err.value.message or field in str(err.value.details)


def test_variant_options_apply_on_top_of_the_request():
    e = parse_experiment(defn(), now=NOW)
    base = RankOptions(n=10, filters=Filters(category="shoes", max_price=80.0), max_per_category=None)
    o = e.variant("B").options.apply(base)
    assert o.n == 5 and o.max_per_category == 2 and o.exclude_history == "none"
    assert o.filters == Filters(category="shoes", min_price=20.0, max_price=80.0)  # the band is intersected
    assert e.control.options.apply(base) is base  # the control changes nothing


def test_share_changes_are_recorded_and_nothing_else_may_change():
    e = parse_experiment(defn(), now=NOW)
    changed = with_changes(e, {"variants": [{"name": "control", "share": 0.2}, {"name": "B", "share": 0.8}]},
                           e.start + 3600)
    assert [v.share for v in changed.variants] == [0.2, 0.8]
    assert [p.version for p in changed.share_history] == [1, 2]
    assert changed.share_history[1].since == e.start + 3600 and changed.shares_version == 2
    assert design_from_definition(changed.as_dict()).periods[1].shares == (0.2, 0.8)
    with pytest.raises(InvalidExperiment) as err:
        with_changes(e, {"salt": "other"}, NOW)
    assert "salt" in fields_of(err)
    with pytest.raises(InvalidExperiment):
        with_changes(e, {"variants": [{"name": "control", "share": 0.5},
                                      {"name": "B", "share": 0.5, "model": "champion"}]}, NOW)
    with pytest.raises(InvalidExperiment):
        with_changes(e, {"variants": [{"name": "control", "share": 1.0}]}, NOW)


def test_state_follows_dates_and_stop():
    e = parse_experiment(defn(), now=NOW)
    assert e.state(e.start - 1) == "scheduled" and e.state(e.start) == "running"
    assert e.state(e.end) == "ended" and not e.is_active(e.end)
    s = stopped(e, e.start + 10)
    assert s.state(e.start + 11) == "stopped" and s.stopped_at == e.start + 10


def test_experiments_file_in_json_and_toml(tmp_path):
    j = tmp_path / "e.json"
    j.write_text(json.dumps({"experiments": [defn(), defn(experiment_id="exp2")]}))
    assert [e.experiment_id for e in read_experiments_file(str(j), now=NOW)] == ["exp1", "exp2"]
    t = tmp_path / "e.toml"
    t.write_text('''
[[experiments]]
experiment_id = "diversity"
primary_metric = "revenue_per_customer"
eligibility = { channels = ["web", "app", "store"], locales = ["fr-FR"] }

[[experiments.variants]]
name = "control"
share = 0.5
control = true

[[experiments.variants]]
name = "capped"
share = 0.5
options = { max_per_category = 2 }
''')
    (e,) = read_experiments_file(str(t), now=NOW)
    assert e.variant("capped").options.max_per_category == 2 and e.start == NOW
    assert e.eligibility.admits("store", "s1", "fr-FR", None) and not e.eligibility.admits("call_center", None,
                                                                                             "fr-FR", None)
    assert e.eligibility.admits("web", None, "fr_fr", None) and not e.eligibility.admits("web", None, "en-GB", None)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"experiments": [defn(variants=[])]}))
    with pytest.raises(InvalidExperiment) as err:
        read_experiments_file(str(bad))
    assert "bad.json experiments[0]" in err.value.message
    with pytest.raises(ExperimentsFileError):
        read_experiments_file(str(tmp_path / "missing.json"))
    dup = tmp_path / "dup.json"
    dup.write_text(json.dumps({"experiments": [defn(), defn()]}))
    with pytest.raises(ExperimentsFileError, match="declared twice"):
        read_experiments_file(str(dup))
