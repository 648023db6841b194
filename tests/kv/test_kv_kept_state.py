"""What the store keeps for speed equals what recomputing from scratch gives, and the fast paths of the
policies and the scheduler return exactly what the general algorithm returns."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from kv_fixtures import small_spec

from pamkv.kv import (
    LayeredPolicy,
    PamPolicy,
    PlacementPolicy,
    PolicyView,
    RecentWindowPolicy,
    StaticPolicy,
    StoreSpec,
    TieredKVStore,
    TierSpec,
    cascade,
)
from pamkv.kv.policies import NewBlocks, Placement
from pamkv.scheduling.online_kv import schedule_kv


def reference_cascade(view: PolicyView, key: np.ndarray, new_key: np.ndarray, new_birth: np.ndarray) -> Placement:
    """The cascade by full sorts: every tier keeps its highest (key, incoming last, newer) blocks."""
    count = new_key.size
    free = view.free
    new_tier = np.full(count, -1, dtype=np.int64)
    moved_to = view.tier.copy()
    inc_ref, inc_key, inc_birth = -np.arange(count) - 1, new_key.astype(float), new_birth.astype(np.int64)
    for t in range(free.size):
        if inc_ref.size <= free[t]:
            new_tier[-inc_ref[inc_ref < 0] - 1] = t
            moved_to[inc_ref[inc_ref >= 0]] = t
            break
        here = np.flatnonzero(view.tier == t)
        ref = np.concatenate((here, inc_ref))
        k = np.concatenate((key[here], inc_key))
        birth = np.concatenate((view.birth[here], inc_birth))
        resident = np.concatenate((np.ones(here.size, np.int64), np.zeros(inc_ref.size, np.int64)))
        order = np.lexsort((birth, resident, k))
        over = inc_ref.size - int(free[t])
        stay = order[over:]
        landed = ref[stay][resident[stay] == 0]
        new_tier[-landed[landed < 0] - 1] = t
        moved_to[landed[landed >= 0]] = t
        leave = order[:over]
        inc_ref, inc_key, inc_birth = ref[leave], k[leave], birth[leave]
    moved = np.flatnonzero(moved_to != view.tier)
    return Placement(new_tier, moved, moved_to[moved])


def random_view(rng: np.random.Generator, tiers: int, ties: bool) -> PolicyView:
    cap = rng.integers(0, 12, tiers)
    used = np.array([int(rng.integers(0, c + 1)) for c in cap.tolist()])
    tier = np.repeat(np.arange(tiers), used)
    rng.shuffle(tier)
    n = tier.size
    tokens = rng.integers(1, 17, n)
    imp = (rng.integers(0, 3, n).astype(float) if ties else rng.exponential(1.0, n)) * tokens
    return PolicyView(tier=tier, importance=imp, tokens=tokens, birth=rng.permutation(n) * 2,
                      logical=rng.integers(0, 9, n), tail=np.full(n, 8), capacity=cap, used=used)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 3), st.booleans())
def test_cascade_selects_exactly_what_sorting_selects(seed: int, tiers: int, ties: bool) -> None:
    rng = np.random.default_rng(seed)
    view = random_view(rng, tiers, ties)
    count = int(rng.integers(0, int(view.free.sum()) + 1))
    key = view.importance / np.maximum(view.tokens, 1)
    new_key = np.where(rng.random(count) < 0.5, np.inf, rng.integers(0, 3, count).astype(float))
    new_birth = 10_000 + np.arange(count)
    got = cascade(view, key, new_key, new_birth)
    lazy = cascade(view, lambda: key, new_key, new_birth)
    want = reference_cascade(view, key, new_key, new_birth)
    for p in (got, lazy):
        assert np.array_equal(p.tier, want.tier)
        assert np.array_equal(p.moved, want.moved) and np.array_equal(p.moved_to, want.moved_to)


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(2, 3), st.booleans())
def test_policies_that_skip_the_scheduler_skip_only_when_it_would_move_nothing(seed: int, tiers: int,
                                                                              ties: bool) -> None:
    rng = np.random.default_rng(seed)
    view = random_view(rng, tiers, ties)
    targets = tuple(float(x) for x in sorted(rng.uniform(1, 20, tiers - 1), reverse=True)) + (1.0,)
    pam = PamPolicy(x=0, y=0, targets=targets)
    cases: list[tuple[PlacementPolicy, dict[str, object]]] = [
        (pam, dict(importance=view.importance, targets=targets, size=view.tokens)),
        (LayeredPolicy(), dict(importance=-view.birth.astype(float), targets=None, max_swaps=0,
                               promote_threshold=None)),
        (RecentWindowPolicy(), dict(importance=(view.logical - view.tail).astype(float), targets=None,
                                    promote_threshold=None)),
    ]
    for policy, kw in cases:
        items, dst = policy.plan(view)
        direct = schedule_kv(tier=view.tier, capacity=view.capacity, **kw)  # type: ignore[arg-type]
        assert np.array_equal(items, direct.items) and np.array_equal(dst, direct.dst)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from(["vector", "heap"]))
def test_integer_and_float_sizes_schedule_the_same(seed: int, method: str) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 80))
    tier = rng.integers(0, 3, n)
    size = rng.integers(1, 17, n)
    imp = rng.integers(0, 3, n) * size * rng.random()
    cap = np.bincount(tier, minlength=3) + rng.integers(0, 3, 3)
    kw = dict(importance=imp, tier=tier, capacity=cap, targets=(9.0, 3.0, 1.0), method=method)
    a = schedule_kv(size=size, **kw)  # type: ignore[arg-type]
    b = schedule_kv(size=size.astype(float), **kw)  # type: ignore[arg-type]
    assert np.array_equal(a.tier, b.tier) and np.array_equal(a.scores_after, b.scores_after)
    assert (a.swaps, a.promotions) == (b.swaps, b.promotions)


class Recorder:
    """A policy that reads every view field and keeps copies (to compare with the store's full view)."""

    name = "recorder"

    def __init__(self, inner: PlacementPolicy, store: list[TieredKVStore]) -> None:
        self.inner, self.store, self.seen = inner, store, 0

    def _compare(self, view: PolicyView) -> None:
        full, _ = self.store[0].view()
        for f in ("tier", "importance", "tokens", "birth", "logical"):
            assert np.array_equal(getattr(view, f), getattr(full, f)), f
        self.seen += 1

    def place(self, view: PolicyView, new: NewBlocks) -> Placement:
        self._compare(view)
        return self.inner.place(view, new)

    def plan(self, view: PolicyView) -> tuple[np.ndarray, np.ndarray]:
        self._compare(view)
        assert np.array_equal(view.tail, self.store[0].view()[0].tail)
        return self.inner.plan(view)


def sim_like_spec(block_tokens: int) -> StoreSpec:
    return StoreSpec(
        block_tokens=block_tokens, token_bytes=64, window=3, tiers=[
            TierSpec(name="hbm", devices=2, capacity_blocks=24,
                     layout=dict(units=16, banks_per_unit=4, rows_per_bank=64, row_bytes=1024)),  # type: ignore[arg-type]
            TierSpec(name="ddr", devices=1, capacity_blocks=60,
                     layout=dict(units=8, banks_per_unit=4, rows_per_bank=256, row_bytes=1024)),  # type: ignore[arg-type]
            TierSpec(name="ssd", capacity_blocks=400,
                     layout=dict(kind="ssd", units=4, banks_per_unit=4, rows_per_bank=4096, row_bytes=4096)),  # type: ignore[arg-type]
        ])


@settings(max_examples=8, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([1, 4, 16]),
       st.sampled_from(["pam", "recent", "l-pim", "ls-pim"]))
def test_kept_state_equals_recomputation_under_simulator_calls(seed: int, block_tokens: int, which: str) -> None:
    """The simulator's pattern: the whole batch appends, one read per selected block (sometimes several
    per block), every request observed, schedules, frees that leave gaps, new requests that fill them.
    After every call the kept importance, live ids, free ids, unit bounds and activity totals equal a
    recomputation (``check``), and the policy saw the same arrays as the full view."""
    rng = np.random.default_rng(seed)
    policies: dict[str, PlacementPolicy] = {"pam": PamPolicy(x=6.0, y=2.0), "recent": RecentWindowPolicy(max_swaps=4),
                                            "l-pim": LayeredPolicy(), "ls-pim": StaticPolicy()}
    inner = policies[which]
    holder: list[TieredKVStore] = []
    policy = Recorder(inner, holder)
    store = TieredKVStore(sim_like_spec(block_tokens), policy)
    holder.append(store)
    lengths: dict[int, int] = {}
    next_id = 0
    bt = block_tokens
    for _ in range(12):
        while len(lengths) < 5 and int(store.free_blocks().sum()) * bt > 60 * bt:
            n = int(rng.integers(1, 30 * bt))
            if store.blocks_needed([next_id], [n]) > int(store.free_blocks().sum()):
                break
            store.append([next_id], [n])
            lengths[next_id] = n
            next_id += 1
        rids = np.array(sorted(lengths))
        steps = int(rng.integers(1, 2 * bt + 1))
        if store.blocks_needed(rids, np.full(rids.size, steps)) <= int(store.free_blocks().sum()):
            store.append(rids, steps)
            lengths = {r: n + steps for r, n in lengths.items()}
        reqs, pos = [], []
        for r in rids.tolist():
            nb = -(-lengths[r] // bt)
            blocks = rng.choice(nb, max(1, nb // 4), replace=False)
            offsets = np.zeros(blocks.size, dtype=np.int64) if rng.random() < 0.7 else rng.integers(0, bt, blocks.size)
            p = np.minimum(blocks * bt + offsets, lengths[r] - 1)
            if rng.random() < 0.3:  # a second token in some blocks
                p = np.unique(np.concatenate((p, np.minimum(p + 1, lengths[r] - 1))))
            reqs.append(np.full(p.size, r))
            pos.append(p)
        rr, pp = np.concatenate(reqs), np.concatenate(pos)
        scores = rng.exponential(1.0, pp.size) * (rng.random(pp.size) < 0.9)
        store.observe(rids, rr, pp, scores)
        store.check()
        store.schedule()
        store.check()
        if rng.random() < 0.3:  # a request outside the batch keeps its importance
            store.observe(rids[:1], rr[rr == rids[0]], pp[rr == rids[0]])
            store.check()
        for r in rng.choice(rids, int(rng.integers(0, 3)), replace=False).tolist():
            store.free([r])
            del lengths[r]
    store.check()
    view, live = store.view()
    assert np.array_equal(view.importance, store._imp[live].sum(axis=1))
    assert policy.seen > 0


def test_request_ids_need_not_be_small() -> None:
    """Huge and negative request ids work (the id table gives way to the sorted index)."""
    store = TieredKVStore(small_spec(), PamPolicy(x=4.0, y=2.0))
    ids = [3, 10**12, -7]
    store.append(ids, [5, 6, 7])
    store.append(ids, 1)
    assert [store.length(r) for r in ids] == [6, 7, 8]
    loc = store.locate([-7, 10**12], [7, 0])
    assert loc.block.tolist() == [store.block_table(-7)["block"][1], store.block_table(10**12)["block"][0]]
    store.observe(ids, [-7, 3], [0, 5])
    store.free([10**12])
    assert sorted(store.requests) == [-7, 3]
    store.check()
