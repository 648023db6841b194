"""The online KV scheduler (Algorithm 2): both forms agree, ratios move toward targets, it stops."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pamkv.scheduling.online_kv import (
    ScheduleError,
    balanced_targets,
    pam_targets,
    schedule_kv,
    tier_scores,
)


@st.composite
def problems(draw: st.DrawFn, max_items: int = 120) -> dict[str, object]:
    """A random scheduling problem: items with (often tied) importance, sizes, tiers and capacities."""
    tiers = draw(st.sampled_from([2, 3]))
    n = draw(st.integers(0, max_items))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    tier = rng.integers(0, tiers, n)
    if draw(st.booleans()):
        imp = rng.integers(0, 4, n).astype(float)  # many ties
    else:
        imp = rng.exponential(1.0, n) * (rng.random(n) < 0.7)
    size = rng.integers(1, 17, n).astype(float) if draw(st.booleans()) else None
    cap = np.bincount(tier, minlength=tiers) + rng.integers(0, 4, tiers)
    targets = None if draw(st.booleans()) else tuple(
        sorted(draw(st.lists(st.floats(1.0, 50.0), min_size=tiers - 1, max_size=tiers - 1)), reverse=True)
    ) + (1.0,)
    return dict(
        importance=imp * (size if size is not None else 1.0), tier=tier, capacity=cap, targets=targets,
        size=size, max_swaps=draw(st.one_of(st.none(), st.integers(0, 12))),
        max_promotions=draw(st.one_of(st.none(), st.integers(0, 5))),
        margin=draw(st.sampled_from([0.0, 0.25])), promote=draw(st.booleans()),
        promote_threshold=draw(st.sampled_from([0.0, None])),
    )


@settings(max_examples=150, deadline=None)
@given(problems())
def test_heap_and_vector_forms_agree_exactly(p: dict[str, object]) -> None:
    a = schedule_kv(method="heap", **p)  # type: ignore[arg-type]
    b = schedule_kv(method="vector", **p)  # type: ignore[arg-type]
    assert np.array_equal(a.tier, b.tier)
    assert (a.swaps, a.promotions) == (b.swaps, b.promotions)
    assert np.array_equal(a.scores_after, b.scores_after)
    assert np.array_equal(a.items, b.items) and np.array_equal(a.dst, b.dst)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 8))
def test_forms_agree_on_large_stores_with_small_budgets(seed: int, budget: int) -> None:
    """Exercises the partial-selection path of the vector form (candidates << items)."""
    rng = np.random.default_rng(seed)
    n = 3000
    tier = rng.integers(0, 3, n)
    imp = np.round(rng.exponential(1.0, n), 1)
    cap = np.bincount(tier, minlength=3)
    kw = dict(importance=imp, tier=tier, capacity=cap, targets=pam_targets(40, 6), max_swaps=budget)
    a, b = schedule_kv(method="heap", **kw), schedule_kv(method="vector", **kw)  # type: ignore[arg-type]
    assert np.array_equal(a.tier, b.tier) and a.swaps == b.swaps


def _ratio(imp: np.ndarray, size: np.ndarray, tier: np.ndarray) -> float:
    s = tier_scores(imp, size, tier, 2)
    return math.inf if s[1] == 0 else s[0] / s[1]


@settings(max_examples=100, deadline=None)
@given(problems(max_items=60))
def test_two_tier_ratio_rises_toward_target_and_stops_for_a_reason(p: dict[str, object]) -> None:
    if len(p["capacity"]) != 2 or p["targets"] is None:  # type: ignore[arg-type]
        return
    p = {**p, "promote": False}
    imp, tier = np.asarray(p["importance"]), np.asarray(p["tier"])
    size = np.ones_like(imp) if p["size"] is None else np.asarray(p["size"])
    target = p["targets"][0]  # type: ignore[index]
    r = schedule_kv(**p)  # type: ignore[arg-type]
    before, after = _ratio(imp, size, tier), _ratio(imp, size, r.tier)
    if r.swaps:
        assert after > before
    else:
        assert after == before
    if after < target and (p["max_swaps"] is None or r.swaps < p["max_swaps"]):  # type: ignore[operator]
        # stopped by the rule: no candidate more important, or the next swap would not raise the ratio
        again = schedule_kv(**{**p, "max_swaps": None})  # type: ignore[arg-type]
        follow = schedule_kv(**{**p, "tier": r.tier, "max_swaps": None})  # type: ignore[arg-type]
        assert follow.swaps == 0
        assert np.array_equal(again.tier, r.tier)


def test_algorithm_2_by_hand() -> None:
    """H={1,9}, D={2,8}, S={7,0}, x:y:1 = 4:2:1 — phase 1 swaps 2<->7, phase 2 swaps 1<->8, then stops."""
    imp = np.array([1.0, 9.0, 2.0, 8.0, 7.0, 0.0])
    tier = np.array([0, 0, 1, 1, 2, 2])
    for method in ("heap", "vector"):
        r = schedule_kv(imp, tier, [2, 2, 2], pam_targets(4, 2), method=method)
        assert r.tier.tolist() == [1, 0, 2, 0, 1, 2]
        assert r.swaps == 2 and r.promotions == 0
        assert r.items.tolist() == [0, 2, 3, 4]
        assert r.scores_before.tolist() == [5.0, 5.0, 3.5]
        assert r.scores_after.tolist() == [8.5, 4.0, 1.0]


def test_a_swap_that_would_lower_the_ratio_is_not_made() -> None:
    """Per-token more important, yet so large that it dilutes the upper tier: the stop rule refuses it."""
    imp = np.array([1.0, 100.0, 20.0, 0.0])
    size = np.array([1.0, 1.0, 10.0, 1.0])
    tier = np.array([0, 0, 1, 1])
    r = schedule_kv(imp, tier, [2, 2], (100.0, 1.0), size=size)
    assert r.swaps == 0 and np.array_equal(r.tier, tier)
    # without a target (pure ordering by importance) the same swap is made
    assert schedule_kv(imp, tier, [2, 2], None, size=size).swaps == 1


def test_unreachable_targets_stop_once_sorted_and_budget_is_respected() -> None:
    rng = np.random.default_rng(7)
    imp = rng.random(400)
    tier = rng.integers(0, 2, 400)
    cap = np.bincount(tier, minlength=2)
    r = schedule_kv(imp, tier, cap, (1e9, 1.0))  # the paper's bare loop would never end here
    hi, lo = imp[r.tier == 0], imp[r.tier == 1]
    assert hi.min() >= lo.max()  # sorted: no lower item more important than an upper one
    assert r.swaps <= min(cap)
    assert schedule_kv(imp, r.tier, cap, (1e9, 1.0)).swaps == 0
    assert schedule_kv(imp, tier, cap, (1e9, 1.0), max_swaps=5).swaps == 5


def test_margin_suppresses_marginal_swaps() -> None:
    imp = np.array([1.0, 1.1])
    tier = np.array([0, 1])
    assert schedule_kv(imp, tier, [1, 1], (10.0, 1.0)).swaps == 1
    assert schedule_kv(imp, tier, [1, 1], (10.0, 1.0), margin=0.5).swaps == 0


def test_promotion_fills_free_room_top_down_with_the_most_important() -> None:
    imp = np.array([9.0, 5.0, 0.0, 3.0, 1.0])
    tier = np.array([0, 1, 1, 2, 2])
    r = schedule_kv(imp, tier, [2, 2, 4], pam_targets(1, 1))
    # HBM has one free slot: DDR's 5 goes up; DDR then has one free: SSD's 3 goes up; 0 is never promoted
    assert r.tier.tolist() == [0, 0, 1, 1, 2]
    assert r.promotions == 2
    r0 = schedule_kv(imp, tier, [2, 2, 4], pam_targets(1, 1), promote_threshold=None, max_promotions=1)
    assert r0.promotions == 1 and r0.tier.tolist() == [0, 0, 1, 2, 2]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(importance=[1.0, 2.0], tier=[0, 0], capacity=[1, 5]), "more items than its capacity"),
        (dict(importance=[1.0], tier=[3], capacity=[1, 5]), "tier indices"),
        (dict(importance=[1.0, 2.0], tier=[0], capacity=[1, 5]), "same length"),
        (dict(importance=[-1.0], tier=[0], capacity=[1, 5]), "non-negative"),
        (dict(importance=[1.0], tier=[0], capacity=[1, 5], size=[0.0]), "positive size"),
        (dict(importance=[np.nan], tier=[0], capacity=[1, 5]), "finite"),
        (dict(importance=[1.0], tier=[0], capacity=[1, -5]), "non-negative value per tier"),
    ],
)
def test_impossible_input_is_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ScheduleError, match=message):
        schedule_kv(targets=(2.0, 1.0), **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ScheduleError, match="targets"):
        schedule_kv([1.0], [0], [1, 1], (2.0, 1.0, 1.0))


def test_balanced_targets_equalise_tier_time() -> None:
    thr, tokens = [1000.0, 100.0, 10.0], [100.0, 1000.0, 10000.0]
    x, y, one = balanced_targets(thr, tokens)
    assert (x, y, one) == pytest.approx((10000.0, 100.0, 1.0))
    # with IS in those ratios, reads per tier / throughput are equal
    reads = np.array(tokens) * np.array([x, y, one])
    assert np.allclose(reads / np.array(thr), reads[0] / thr[0])
    with pytest.raises(ScheduleError):
        balanced_targets([1.0, 0.0], [1.0, 1.0])


def test_eq8_tier_scores() -> None:
    imp = np.array([2.0, 4.0, 1.0])
    size = np.array([1.0, 3.0, 1.0])
    assert tier_scores(imp, size, np.array([0, 0, 2]), 3).tolist() == [1.5, 0.0, 1.0]
