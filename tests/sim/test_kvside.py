"""The simulator's KV side: capacity with generated tokens pending placement, shares, frees."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pamkv.config.workloads import LocalityConfig
from pamkv.kv import LayoutSpec, PamPolicy
from pamkv.sim.kvside import SimKV, TierPlan, top_blocks
from pamkv.workloads.locality import LocalityModel

BT = 16


def small_kv() -> SimKV:
    """Two tiers of 8 and 16 blocks (128 + 256 tokens), PAM policy, locality-driven selection."""
    lay = LayoutSpec(units=2, banks_per_unit=2, rows_per_bank=64, row_bytes=64)
    plans = [TierPlan("hbm", 1, 8 * BT * 2.0, lay), TierPlan("ddr", 2, 8 * BT * 2.0, lay)]
    return SimKV(plans, 1.0, 2, BT, PamPolicy(x=2.0, y=1.0), "pam", LocalityModel(LocalityConfig()),
                 sparsity_ratio=8.0, min_selected=16, frequency_blind=False, schedule=True, seed=3)


def test_tokens_count_at_once_and_are_placed_at_the_window() -> None:
    kv = small_kv()
    empty = kv.free_tokens()
    kv.add_tokens(np.array([0]), np.array([40]))  # 3 blocks: the top tier has room, so they wait
    kv.add_decode_tokens(np.array([0]), np.array([30]))  # 40 -> 70 tokens: blocks 3 -> 5
    assert kv.store.requests == []  # nothing placed yet
    assert kv.free_tokens() == empty - 5 * BT - BT  # but all five blocks are spoken for (+ its slack)
    assert kv.tokens_lost() == 0
    kv.window()
    assert kv.store.length(0) == 70 and not kv.pending.any()
    assert kv.free_tokens() == empty - 5 * BT - BT
    kv.store.check()


def test_a_prompt_the_top_tier_cannot_take_is_placed_at_once_after_what_waits() -> None:
    kv = small_kv()
    kv.add_tokens(np.array([0]), np.array([100]))  # 7 of the top tier's 8 blocks: waits
    assert kv.store.requests == [] and not kv.below_top()
    kv.add_tokens(np.array([1]), np.array([50]))  # 4 more blocks do not fit on top: placed now
    assert kv.store.length(0) == 100 and kv.store.length(1) == 50 and not kv.pending.any()
    assert kv.below_top()
    kv.store.check()


def test_freeing_a_request_with_pending_tokens_returns_all_its_room() -> None:
    kv = small_kv()
    empty = kv.free_tokens()
    kv.add_tokens(np.array([0, 1]), np.array([40, 17]))
    kv.add_decode_tokens(np.array([0, 1]), np.array([9, 30]))
    kv.free(np.array([0]))
    kv.free(1)
    assert kv.free_tokens() == empty and kv.tokens_lost() == 0
    assert kv.store.requests == []
    kv.store.check()


def test_a_request_in_one_tier_reads_only_from_it_without_a_draw() -> None:
    kv = small_kv()
    kv.add_tokens(np.array([5]), np.array([50]))  # 4 blocks: all fit in the top tier
    shares = kv.read_shares(np.array([5]))
    assert shares.tolist() == [[1.0, 0.0]]
    assert kv.batch is not None and 5 not in kv.batch  # no locality stream opened for it


def test_a_request_across_tiers_gets_shares_from_its_selection() -> None:
    kv = small_kv()
    kv.add_tokens(np.array([0]), np.array([300]))  # 19 blocks: 8 in the top tier, the rest below
    shares = kv.read_shares(np.array([0]))[0]
    assert shares.sum() == 1.0 and 0 < shares[0] < 1


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["add", "decode", "window", "free"]), st.integers(1, 200)),
                min_size=1, max_size=40))
def test_capacity_is_never_exceeded_and_no_token_is_lost(ops: list[tuple[str, int]]) -> None:
    """Ops as the engine makes them: admit when ``fits``, decode at most ``free_tokens`` over the batch."""
    kv = small_kv()
    next_id = 0
    for op, n in ops:
        live = np.flatnonzero(kv.live)
        if op == "add" and kv.fits(next_id, n):
            kv.add_tokens(np.array([next_id]), np.array([n]))
            next_id += 1
        elif op == "decode" and live.size:
            steps = min(n % 20 + 1, kv.free_tokens() // live.size)
            if steps:
                kv.add_decode_tokens(live, np.full(live.size, steps))
        elif op == "window":
            kv.window()
        elif op == "free" and live.size:
            kv.free(live[n % live.size])
        assert kv.tokens_lost() == 0
        assert kv.free_tokens() >= 0
        assert (kv.store.used <= kv.store.capacity).all()
    kv.window()  # placing everything pending must fit
    assert not kv.pending.any()
    kv.store.check()


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(1, 400), min_size=1, max_size=40), st.integers(1, 8), st.integers(0, 2**31))
def test_top_blocks_picks_each_requests_heaviest_blocks(sizes: list[int], ratio: int, seed: int) -> None:
    nblocks = np.array(sizes, dtype=np.int64)
    k = np.maximum(1, nblocks // ratio)
    mass = np.random.default_rng(seed).random(int(nblocks.sum()))
    flat = top_blocks(mass, nblocks, k)
    owner = np.repeat(np.arange(nblocks.size), k)
    start = 0
    for i, (nb, want) in enumerate(zip(nblocks.tolist(), k.tolist(), strict=True)):
        assert np.array_equal(flat[owner == i], start + np.argsort(-mass[start:start + nb], kind="stable")[:want])
        start += nb


def test_a_finished_requests_room_is_free_at_once_and_released_at_the_window() -> None:
    kv = small_kv()
    empty = kv.free_tokens()
    kv.add_tokens(np.array([0]), np.array([300]))  # does not fit on top: placed at once
    assert kv.store.length(0) == 300
    kv.free(0)
    assert kv.free_tokens() == empty and kv.tokens_lost() == 0
    assert kv.fits(1, empty - BT) and not kv.fits(1, empty - BT + 1)
    kv.add_tokens(np.array([0]), np.array([200]))  # the same id again (a preempted request recomputed)
    assert kv.store.length(0) == 200 and kv.tokens_lost() == 0
    kv.window()
    kv.free(0)
    kv.window()
    assert kv.store.requests == [] and int(kv.store.used.sum()) == 0
    kv.store.check()
