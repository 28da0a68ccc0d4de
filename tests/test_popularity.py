"""Recency-decayed popularity, global and per group (store, locale, segment; never channel)."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from training import popularity as pop

DAY = 86400.0


def test_global_popularity_decays_with_age_and_ignores_negative_weights():
    items = np.array([0, 0, 1, 2, 2])
    ts = np.array([100, 70, 100, 100, 100]) * DAY
    w = np.array([1.0, 2.0, 4.0, 1.0, -8.0])  # item 2: a purchase then a return
    got = pop.global_popularity(items, 4, weights=w, ts=ts, now=100 * DAY, half_life_days=30)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, [1 + 2 * 0.5, 4, 1, 0], rtol=1e-6)
    np.testing.assert_allclose(pop.global_popularity(items, 4), [2, 1, 2, 0])


def test_interactions_after_now_do_not_count():
    got = pop.global_popularity(np.array([0, 1]), 2, ts=np.array([10.0, 20.0]) * DAY, now=15 * DAY)
    assert got[1] == 0 and got[0] > 0


def test_group_popularity_top_lists_with_ties_by_item_row():
    items = np.array([3, 3, 1, 2, 2, 0, 5, 4])
    groups = np.array([0, 0, 0, 0, 0, 1, -1, 1])  # -1: belongs to no group
    top_items, top_scores = pop.group_popularity(items, groups, 3, 6, top=3, half_life_days=None)
    assert top_items.dtype == np.int32 and top_scores.dtype == np.float32
    assert top_items.tolist() == [[2, 3, 1], [0, 4, -1], [-1, -1, -1]]
    assert top_scores.tolist() == [[2, 2, 1], [1, 1, 0], [0, 0, 0]]


def test_group_popularity_validates_lengths():
    with pytest.raises(ValueError, match="groups"):
        pop.group_popularity(np.array([1, 2]), np.array([0]), 1, 3)


def test_no_popularity_function_takes_a_channel():
    for fn in (pop.global_popularity, pop.group_popularity, pop.interaction_weights):
        assert not any("channel" in p for p in inspect.signature(fn).parameters)
