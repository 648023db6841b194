"""The store's fast paths for few new blocks among many units return exactly what the general code returns:
unit choice from the kept rank keys vs :func:`waterfill`, the lowest free slot of distinct units vs the
general slot search, the all-on-top placement vs :func:`cascade`, and the small helpers."""

from __future__ import annotations

from unittest import mock

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pamkv.kv import PamPolicy, PolicyView, RecentWindowPolicy, StoreSpec, TieredKVStore, TierSpec, cascade
from pamkv.kv.mapping import waterfill, waterfill_candidates
from pamkv.kv.policies import NewBlocks
from pamkv.kv.store import _ceil_div, _ranges


def many_units_spec(block_tokens: int, window: int) -> StoreSpec:
    """Tiers of many small units (2-5 slots each), so units fill up, free slots leave holes, and a few
    new blocks choose among far more units than they take."""
    return StoreSpec(
        block_tokens=block_tokens, token_bytes=64, window=window,
        tiers=[
            TierSpec(name="hbm", devices=2, capacity_blocks=150,
                     layout=dict(units=64, banks_per_unit=4, rows_per_bank=64, row_bytes=1024)),  # type: ignore[arg-type]
            TierSpec(name="ddr", devices=1, capacity_blocks=200,
                     layout=dict(units=40, banks_per_unit=4, rows_per_bank=256, row_bytes=1024)),  # type: ignore[arg-type]
            TierSpec(name="ssd", devices=1, capacity_blocks=4000,
                     layout=dict(kind="ssd", units=4, banks_per_unit=4, rows_per_bank=4096, row_bytes=4096)),  # type: ignore[arg-type]
        ],
    )


def general_units(store: TieredKVStore, n: int, t: int) -> np.ndarray:
    """The activity mapping's units by :func:`waterfill` over the whole tier (the general path)."""
    u0, u1 = store._tier_units[t]
    act = store.activity.totals(u0, u1)
    free = store.unit_cap[u0:u1] - store.unit_used[u0:u1]
    delta = max(1, round(int(act.sum()) * store.block_tokens / max(1, int(store.tier_tokens[t]))))
    return waterfill(n, act, free, delta, store.unit_used[u0:u1], tie_bound=store._tier_bound[t]) + u0


def compare_fast_paths(store: TieredKVStore, rng: np.random.Generator) -> int:
    """Check both fast paths against the general code on the store as it is; returns the checks made."""
    checks = 0
    for t in (0, 1):
        for n in {1, 2, int(rng.integers(1, 24))}:
            fast = store._least_active(n, t)
            if fast is not None:
                assert np.array_equal(fast, general_units(store, n, t)), (t, n)
                checks += 1
        u0, u1 = store._tier_units[t]
        room = np.flatnonzero(store.unit_used[u0:u1] < store.unit_cap[u0:u1]) + u0
        if room.size:
            units = rng.choice(room, int(rng.integers(1, min(room.size, 40) + 1)), replace=False)
            slots, uniq, counts, last = store._free_slots(units, t)
            assert np.array_equal(store._first_free_slots(units, t), slots)
            checks += 1
    return checks


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), block_tokens=st.sampled_from([4, 16, 6]), window=st.sampled_from([1, 3, 10]))
def test_kept_keys_and_first_free_slots_choose_what_the_general_path_chooses(seed: int, block_tokens: int,
                                                                              window: int) -> None:
    rng = np.random.default_rng(seed)
    store = TieredKVStore(many_units_spec(block_tokens, window), PamPolicy(x=8.0, y=3.0))
    lengths: dict[int, int] = {}
    next_id = checks = 0
    for _ in range(60):
        op = rng.random()
        if op < 0.3 or not lengths:  # a prompt
            n = int(rng.integers(1, 12 * block_tokens))
            if store.blocks_needed([next_id], [n]) <= int(store.free_blocks().sum()):
                store.append([next_id], [n])
                lengths[next_id] = n
                next_id += 1
        elif op < 0.6:  # a decode window: every request grows
            rids = np.array(sorted(lengths), dtype=np.int64)
            steps = int(rng.integers(1, 2 * block_tokens))
            if store.blocks_needed(rids, np.full(rids.size, steps)) <= int(store.free_blocks().sum()):
                store.append(rids, np.full(rids.size, steps))
                for r in rids.tolist():
                    lengths[r] += steps
        elif op < 0.85:  # a step's reads, then the scheduler
            rids = np.array(sorted(lengths), dtype=np.int64)
            reqs, pos = [], []
            for r in rids.tolist():
                p = np.unique(rng.integers(0, lengths[r], int(rng.integers(1, 6))))
                reqs.append(np.full(p.size, r))
                pos.append(p)
            rr, pp = np.concatenate(reqs), np.concatenate(pos)
            store.observe(rids, rr, pp, rng.exponential(1.0, pp.size))
            store.schedule()
        else:
            r = int(rng.choice(sorted(lengths)))
            store.free([r])
            del lengths[r]
        checks += compare_fast_paths(store, rng)
    store.check()
    assert checks > 0


def test_kept_keys_are_set_aside_when_they_could_overflow() -> None:
    store = TieredKVStore(many_units_spec(4, 2), PamPolicy(x=8.0, y=3.0))
    store.append([0], [40])
    # as if the window had read more tokens than the keys can count
    with mock.patch.object(store.activity, "totals", return_value=np.array([2**62])):
        assert store._least_active(1, 0) is None


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), units=st.integers(8, 80), delta=st.integers(1, 6))
def test_waterfill_over_its_candidates_is_waterfill(seed: int, units: int, delta: int) -> None:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 6, units)
    free = rng.integers(0, 4, units)
    tie = rng.integers(0, 5, units)
    live = np.flatnonzero(free > 0)
    if live.size < 8:
        return
    n = int(rng.integers(1, (live.size - 1) // 4 + 1))
    cand = np.sort(live[np.lexsort((live, tie[live], base[live]))[:n]])
    got = cand[waterfill_candidates(n, base[cand], free[cand], delta, tie[cand])]
    assert np.array_equal(got, waterfill(n, base, free, delta, tie))


def random_view(rng: np.random.Generator) -> PolicyView:
    cap = rng.integers(0, 12, 3)
    used = np.array([int(rng.integers(0, c + 1)) for c in cap.tolist()])
    tier = np.repeat(np.arange(3), used)
    rng.shuffle(tier)
    n = tier.size
    return PolicyView(tier=tier, importance=rng.integers(0, 3, n).astype(float), tokens=rng.integers(1, 5, n),
                      birth=rng.permutation(n), logical=rng.integers(0, 4, n), tail=np.full(n, 4),
                      capacity=cap, used=used)


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_new_blocks_that_fit_on_top_are_placed_as_the_cascade_places_them(seed: int) -> None:
    rng = np.random.default_rng(seed)
    view = random_view(rng)
    count = int(rng.integers(0, int(view.free.sum()) + 1))
    logical = rng.integers(0, 6, count)
    new = NewBlocks(logical, logical + rng.integers(0, 4, count), view.birth.size + np.arange(count))
    pam = PamPolicy(x=4.0, y=2.0)
    hot = (new.logical == 0) | (new.tail - new.logical < pam.hot_new_blocks)
    density = view.importance / np.maximum(view.tokens, 1)
    for got, want in (
        (pam.place(view, new), cascade(view, density, np.where(hot, np.inf, 0.0), new.birth)),
        (RecentWindowPolicy().place(view, new),
         cascade(view, (view.logical - view.tail).astype(float), (new.logical - new.tail).astype(float), new.birth)),
    ):
        for a, b in ((got.tier, want.tier), (got.moved, want.moved), (got.moved_to, want.moved_to)):
            assert np.array_equal(a, b) and a.dtype == b.dtype


@given(a=st.lists(st.integers(-10**12, 10**12), max_size=20), b=st.integers(1, 70))
def test_ceil_div_and_ranges(a: list[int], b: int) -> None:
    arr = np.array(a, dtype=np.int64)
    assert np.array_equal(_ceil_div(arr, b), -(-arr // b))
    starts, counts = np.abs(arr[:1]) % 1000, np.abs(arr[1:2]) % 50
    if starts.size and counts.size:
        owner, value = _ranges(starts, counts)
        assert np.array_equal(owner, np.zeros(int(counts[0]), dtype=np.int64))
        assert np.array_equal(value, np.arange(int(starts[0]), int(starts[0] + counts[0])))
