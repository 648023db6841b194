"""Trace helpers (selection, windows, rate scaling, sampling) and arrival processes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pamkv.config.workloads import ArrivalConfig
from pamkv.errors import UserError
from pamkv.workloads import Trace, apply_arrivals, gamma_arrivals


def _trace(n: int, seed: int = 0, hashes: bool = True) -> Trace:
    rng = np.random.default_rng(seed)
    inp = rng.integers(1, 3000, n)
    blocks = -(-inp // 512)
    offs = np.concatenate([[0], np.cumsum(blocks)])
    ids = rng.integers(0, 50, offs[-1])
    return Trace.from_arrays(
        np.cumsum(rng.exponential(1.0, n)), inp, rng.integers(0, 500, n),
        hash_offsets=offs if hashes else None, hash_ids=ids if hashes else None,
    )


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 60), seed=st.integers(0, 10_000), data=st.data())
def test_take_keeps_rows_together(n: int, seed: int, data: st.DataObject) -> None:
    t = _trace(n, seed)
    idx = np.array(data.draw(st.lists(st.integers(0, n - 1), max_size=30)), dtype=np.int64)
    sub = t.take(idx)
    assert sub.hash_offsets is not None and sub.hash_ids is not None
    assert t.hash_offsets is not None and t.hash_ids is not None
    for j, i in enumerate(idx):
        assert sub.input_tokens[j] == t.input_tokens[i]
        assert np.array_equal(sub.hash_ids[sub.hash_offsets[j]: sub.hash_offsets[j + 1]],
                              t.hash_ids[t.hash_offsets[i]: t.hash_offsets[i + 1]])


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 80), seed=st.integers(0, 10_000), factor=st.floats(0.1, 20))
def test_rate_scaling_scales_the_rate(n: int, seed: int, factor: float) -> None:
    t = _trace(n, seed, hashes=False)
    s0, s1 = t.stats(), t.scale_rate(factor).stats()
    assert s1["arrival_rate_per_s"] == pytest.approx(s0["arrival_rate_per_s"] * factor, rel=1e-9)
    assert s1["interarrival_cv"] == pytest.approx(s0["interarrival_cv"], rel=1e-9)
    assert np.array_equal(t.scale_rate(factor).input_tokens, t.input_tokens)


def test_head_window_sample() -> None:
    t = _trace(200, 1)
    assert len(t.head(10)) == 10 and np.array_equal(t.head(10).input_tokens, t.input_tokens[:10])
    w = t.window(20.0, 60.0)
    assert w.arrival_s[0] == 0.0
    inside = (t.arrival_s >= 20.0) & (t.arrival_s < 60.0)
    assert len(w) == int(inside.sum())
    assert np.array_equal(w.input_tokens, t.input_tokens[inside])
    a, b = t.sample(50, seed=3), t.sample(50, seed=3)
    assert np.array_equal(a.input_tokens, b.input_tokens)  # seeded: identical
    assert np.all(np.diff(a.arrival_s) >= 0)  # kept in arrival order
    assert not np.array_equal(a.input_tokens, t.sample(50, seed=4).input_tokens)
    with pytest.raises(UserError):
        t.sample(500, seed=0)
    with pytest.raises(UserError):
        t.window(5.0, 1.0)
    with pytest.raises(UserError):
        t.scale_rate(0.0)


def test_unsorted_arrivals_are_sorted_stably() -> None:
    t = Trace.from_arrays(np.array([5.0, 1.0, 5.0, 3.0]), np.array([1, 2, 3, 4]), np.array([0, 0, 0, 0]))
    assert t.arrival_s.tolist() == [0.0, 2.0, 4.0, 4.0]
    assert t.input_tokens.tolist() == [2, 4, 1, 3]


def test_shared_prefix_counts_blocks_seen_earlier() -> None:
    # Request 0: blocks [7, 8] (600 tokens: 512 + 88); request 1 reuses block 7 then adds 9.
    t = Trace.from_arrays(np.array([0.0, 1.0]), np.array([600, 700]), np.array([1, 1]),
                          hash_offsets=np.array([0, 2, 4]), hash_ids=np.array([7, 8, 7, 9]))
    shared = t.shared_prefix_tokens()
    assert shared is not None and shared.tolist() == [0, 512]


@settings(max_examples=15, deadline=None)
@given(rate=st.floats(0.5, 50), cv=st.floats(0.3, 4.0), seed=st.integers(0, 1000))
def test_gamma_arrivals_have_the_asked_rate_and_cv(rate: float, cv: float, seed: int) -> None:
    arr = gamma_arrivals(20_000, rate, cv, np.random.default_rng(seed))
    gaps = np.diff(arr)
    assert arr[0] == 0.0 and np.all(gaps >= 0)
    # 20k gaps: the sample mean and CV are within a few standard errors of the asked values.
    assert 1 / gaps.mean() == pytest.approx(rate, rel=0.03 * max(1.0, cv))
    assert gaps.std() / gaps.mean() == pytest.approx(cv, rel=0.08 * max(1.0, cv))


def test_apply_arrivals_processes() -> None:
    t = _trace(100, 2)
    rng = np.random.default_rng(0)
    assert apply_arrivals(t, ArrivalConfig(process="none"), rng).offline
    p = apply_arrivals(t, ArrivalConfig(process="poisson", rate_per_s=3.0), rng)
    assert p.arrivals == "poisson(3/s)" and np.array_equal(p.input_tokens, t.input_tokens)
    offline = apply_arrivals(t, ArrivalConfig(process="none"), rng)
    with pytest.raises(UserError, match="no arrival times"):
        apply_arrivals(offline, ArrivalConfig(process="trace"), rng)
