"""Intra-device mapping: unit choice, slot geometry, the per-bank load report, and balance under skew."""

from __future__ import annotations

import heapq

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pamkv.hardware.layout import DeviceLayout
from pamkv.kv import (
    ActivityWindow,
    CapacityError,
    StaticPolicy,
    StoreSpec,
    TieredKVStore,
    TierSpec,
    build_geometry,
    round_robin,
    sequential,
    unit_load,
    waterfill,
)
from pamkv.kv.mapping import kth_smallest


def greedy(n: int, base: np.ndarray, free: np.ndarray, delta: int, tie: np.ndarray) -> list[int]:
    """Reference: pop the lowest (level, tie, unit) n times."""
    heap = [(int(base[u]), int(tie[u]), u) for u in range(base.size) if free[u] > 0]
    heapq.heapify(heap)
    left = free.copy()
    out = []
    for _ in range(n):
        level, t, u = heapq.heappop(heap)
        out.append(u)
        left[u] -= 1
        if left[u] > 0:
            heapq.heappush(heap, (level + delta, t, u))
    return out


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 12), st.integers(0, 2**32 - 1), st.integers(1, 7))
def test_waterfill_equals_the_greedy_least_level_choice(units: int, seed: int, delta: int) -> None:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 20, units)
    free = rng.integers(0, 6, units)
    tie = rng.integers(0, 3, units)
    n = int(rng.integers(0, free.sum() + 1))
    assert waterfill(n, base, free, delta, tie).tolist() == greedy(n, base, free, delta, tie)
    with pytest.raises(CapacityError):
        waterfill(int(free.sum()) + 1, base, free, delta, tie)


def test_round_robin_and_sequential() -> None:
    free = np.array([5, 5, 0, 5])
    assert round_robin(5, free, start=1).tolist() == [1, 3, 0, 1, 3]
    assert sequential(7, free).tolist() == [0] * 5 + [1] * 2


@settings(max_examples=60, deadline=None)
@given(units=st.integers(1, 4), banks=st.integers(1, 8), row_bytes=st.sampled_from([64, 256, 1000, 4096]),
       token_bytes=st.integers(1, 700), block_tokens=st.integers(1, 20), layers=st.integers(1, 3))
def test_slots_are_disjoint_row_aligned_and_spread_evenly_over_banks(
    units: int, banks: int, row_bytes: int, token_bytes: int, block_tokens: int, layers: int
) -> None:
    layout = DeviceLayout("d", "dram", units, banks, rows_per_bank=48, row_bytes=row_bytes)
    try:
        g = build_geometry(layout, block_tokens=block_tokens, token_bytes=token_bytes, layers=layers)
    except ValueError:
        return  # the layout holds no block of this size
    slots = np.arange(g.max_unit_slots)
    bank, row, col = g.slot_position(slots)
    start = row * row_bytes + col
    end = start + g.slot_bytes
    assert (start[1:] >= end[:-1]).all()  # slots never overlap
    assert (end <= (layout.rows_per_bank // layers) * row_bytes).all()  # inside layer 0's region
    if g.slot_bytes <= row_bytes:
        assert (col + g.slot_bytes <= row_bytes).all()  # a slot never straddles a row
    else:
        assert (col == 0).all()
    # a full block: tokens spread evenly over banks; equal in-bank index -> same row in every bank
    off = np.arange(block_tokens)
    s = np.full(block_tokens, g.max_unit_slots - 1)
    tb, r0, _ = g.token_position(s, off)
    counts = np.bincount(tb, minlength=banks)
    assert counts.max() - counts.min() <= 1
    for i in range(-(-block_tokens // banks)):
        same = off // banks == i
        assert np.unique(r0[same]).size == 1


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([16, 64, 300, 2048]))
def test_unit_load_counts_tokens_and_distinct_rows(seed: int, token_bytes: int) -> None:
    rng = np.random.default_rng(seed)
    layout = DeviceLayout("d", "dram", units=3, banks_per_unit=4, rows_per_bank=256, row_bytes=1024)
    g = build_geometry(layout, block_tokens=16, token_bytes=token_bytes, layers=1)
    n = int(rng.integers(0, 200))
    unit = rng.integers(0, 3, n)
    slot = rng.integers(0, g.max_unit_slots, n)
    off = rng.integers(0, 16, n)
    load = unit_load(g, unit, slot, off, token_bytes)
    assert load.tokens.shape == (3, 4) and load.tokens.sum() == n
    bank, r0, r1 = g.token_position(slot, off)
    want = np.zeros((3, 4), dtype=int)
    for u in range(3):
        for b in range(4):
            sel = (unit == u) & (bank == b)
            rows = {r for a, z in zip(r0[sel], r1[sel], strict=True) for r in range(a, z + 1)}
            want[u, b] = len(rows)
            assert load.tokens[u, b] == sel.sum()
    assert np.array_equal(load.rows, want)


def _imbalance(mapping: str, requests: int = 16, prefill: int = 64, steps: int = 120) -> float:
    """Mean over decode steps of (busiest unit's reads / mean unit reads) under sink + recent-window access."""
    spec = StoreSpec(token_bytes=64, mapping=mapping, tiers=[TierSpec(  # type: ignore[arg-type]
        name="hbm", capacity_blocks=400,
        layout=dict(units=8, banks_per_unit=2, rows_per_bank=512, row_bytes=1024))])  # type: ignore[arg-type]
    store = TieredKVStore(spec, StaticPolicy())
    reqs = np.arange(requests)
    store.append(reqs, prefill)
    out = []
    for step in range(steps):
        store.append(reqs, 1)
        n = store.length(0)
        pos = np.concatenate([np.arange(16), np.arange(n - 32, n)])  # the sink block and the last 32 tokens
        rr, pp = np.repeat(reqs, pos.size), np.tile(pos, requests)
        store.observe(reqs, rr, pp)
        if step >= steps // 2:
            per_unit = store.unit_loads(rr, pp)[0][0].tokens.sum(axis=1)
            out.append(per_unit.max() / per_unit.mean())
    return float(np.mean(out))


def test_least_active_mapping_spreads_skewed_load_better_than_naive_mappings() -> None:
    """Prefill interleaving puts every sink block on 2 of 8 units; activity-aware placement of the new
    (hot) blocks steers around them, frequency-blind round-robin cannot, fill-first is worst."""
    activity, rr, seq = _imbalance("activity"), _imbalance("round-robin"), _imbalance("sequential")
    assert activity < 0.8 * rr
    assert rr < seq
    assert activity < 1.5


def test_ssd_tiers_interleave_channels_even_in_activity_mode() -> None:
    spec = StoreSpec(token_bytes=64, tiers=[TierSpec(
        name="ssd", capacity_blocks=64,
        layout=dict(kind="ssd", units=8, banks_per_unit=4, rows_per_bank=64, row_bytes=16384))])  # type: ignore[arg-type]
    store = TieredKVStore(spec, StaticPolicy())
    store.append([0], 16 * 16)
    assert store.block_table(0)["unit"].tolist() == list(range(8)) * 2


@settings(max_examples=80, deadline=None)
@given(st.integers(20, 600), st.integers(0, 2**32 - 1), st.integers(1, 40), st.booleans())
def test_waterfill_picks_few_items_among_many_units_like_the_greedy(units: int, seed: int, delta: int,
                                                                    bounded: bool) -> None:
    """Few items among many units (only the lowest units are candidates), full units, tied levels."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, int(rng.integers(1, 12)), units) * (rng.random(units) < rng.random())
    free = rng.integers(0, 4, units) * (rng.random(units) < 0.9)
    tie = rng.integers(0, 3, units)
    if free.sum() == 0:
        return
    n = int(rng.integers(1, min(int(free.sum()), 90) + 1))
    got = waterfill(n, base, free, delta, tie, tie_bound=3 if bounded else None)
    assert got.tolist() == greedy(n, base, free, delta, tie)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 6))
def test_activity_window_totals_are_the_sum_over_the_window(seed: int, window: int) -> None:
    rng = np.random.default_rng(seed)
    act = ActivityWindow(12, window)
    steps = []
    for _ in range(int(rng.integers(1, 20))):
        reads = rng.integers(0, 14, int(rng.integers(0, 30)))  # units 12, 13 lie outside: not counted
        act.record(reads)
        steps.append(np.bincount(reads, minlength=14)[:12])
        want = np.sum(steps[-window:], axis=0)
        assert np.array_equal(act.totals(), want)
        assert np.array_equal(act.counts.sum(axis=0), want)
        assert np.array_equal(act.totals(3, 9), want[3:9])


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32 - 1), st.booleans())
def test_kth_smallest_is_the_sorted_kth(seed: int, floats: bool) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 300))
    ints = rng.integers(0, int(rng.integers(1, 20)), n) * (rng.random(n) < rng.random())
    ints = ints * int(rng.choice([1, 10**9]))
    values = ints.astype(float) * 0.1 if floats else ints
    k = int(rng.integers(0, n))
    assert kth_smallest(values, k) == np.sort(values)[k]
