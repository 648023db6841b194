"""Stateful test of the store: random appends, reads, migrations, schedules and frees keep every invariant."""

from __future__ import annotations

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from kv_fixtures import small_spec, snapshot

from pamkv.kv import (
    CapacityError,
    LayeredPolicy,
    MigrationPlan,
    PamPolicy,
    PlanError,
    RecentWindowPolicy,
    StaticPolicy,
    TieredKVStore,
)

POLICIES = [PamPolicy(x=4.0, y=2.0), PamPolicy(x=3.0, y=1.5, max_swaps=2, method="heap"),
            LayeredPolicy(), StaticPolicy(), RecentWindowPolicy(max_swaps=3)]


class StoreMachine(RuleBasedStateMachine):
    """A shadow model of request lengths beside the store; every refusal must leave the store unchanged."""

    def __init__(self) -> None:
        super().__init__()
        self.lengths: dict[int, int] = {}
        self.next_id = 0

    @initialize(policy=st.sampled_from(POLICIES),
                mapping=st.sampled_from(["activity", "round-robin", "sequential"]),
                block_tokens=st.sampled_from([1, 3, 4]), first=st.integers(1, 40))
    def build(self, policy: object, mapping: str, block_tokens: int, first: int) -> None:
        self.store = TieredKVStore(small_spec(block_tokens=block_tokens, mapping=mapping), policy)  # type: ignore[arg-type]
        self.new_request(first)

    def _append(self, reqs: list[int], counts: list[int]) -> None:
        before = snapshot(self.store)
        try:
            starts = self.store.append(reqs, counts)
        except CapacityError:
            assert snapshot(self.store) == before
            return
        for r, c, s in zip(reqs, counts, starts.tolist(), strict=True):
            assert s == self.lengths.get(r, 0)
            self.lengths[r] = self.lengths.get(r, 0) + c

    @rule(n=st.integers(1, 40))
    def new_request(self, n: int) -> None:
        self.next_id += 1
        self._append([self.next_id], [n])

    @precondition(lambda self: bool(self.lengths))
    @rule(data=st.data())
    def append_existing(self, data: st.DataObject) -> None:
        reqs = data.draw(st.lists(st.sampled_from(sorted(self.lengths)), min_size=1, unique=True))
        counts = data.draw(st.lists(st.integers(0, 9), min_size=len(reqs), max_size=len(reqs)))
        self._append(reqs, counts)

    @precondition(lambda self: bool(self.lengths))
    @rule(data=st.data())
    def observe(self, data: st.DataObject) -> None:
        batch = data.draw(st.lists(st.sampled_from(sorted(self.lengths)), min_size=1, unique=True))
        reqs, pos = [], []
        for r in batch:
            n = self.lengths[r]
            if n:
                chosen = data.draw(st.lists(st.integers(0, n - 1), unique=True, max_size=6))
                reqs += [r] * len(chosen)
                pos += chosen
        scores = data.draw(st.lists(st.floats(0, 5), min_size=len(pos), max_size=len(pos)))
        self.store.observe(batch, reqs, pos, scores)

    @rule()
    def schedule(self) -> None:
        before_tokens = self.store.tier_tokens.sum()
        report = self.store.schedule()
        assert report.bytes == report.tokens * self.store.bytes_per_token
        assert self.store.tier_tokens.sum() == before_tokens

    @precondition(lambda self: bool(self.lengths))
    @rule(data=st.data())
    def random_migration(self, data: st.DataObject) -> None:
        view, live = self.store.view()
        idx = data.draw(st.lists(st.integers(0, live.size - 1), unique=True, max_size=6)) if live.size else []
        dst = [data.draw(st.sampled_from([t for t in range(3) if t != view.tier[i]])) for i in idx]
        plan = MigrationPlan(live[idx], view.tier[idx], np.array(dst, dtype=np.int64))
        before = snapshot(self.store)
        try:
            report = self.store.migrate(plan)
        except CapacityError:
            assert snapshot(self.store) == before
            return
        assert report.blocks == len(idx)
        assert np.array_equal(self.store._b["tier"][plan.blocks], plan.dst)

    @precondition(lambda self: bool(self.lengths))
    @rule(data=st.data(), kind=st.sampled_from(["unknown", "wrong-src", "twice", "same-tier"]))
    def impossible_plan(self, data: st.DataObject, kind: str) -> None:
        view, live = self.store.view()
        if live.size == 0:
            return
        i = data.draw(st.integers(0, live.size - 1))
        b, t = live[i : i + 1], view.tier[i : i + 1]
        other = (t + 1) % 3
        plan = {
            "unknown": MigrationPlan(np.array([10**6]), t, other),
            "wrong-src": MigrationPlan(b, other, (t + 2) % 3),
            "twice": MigrationPlan(np.repeat(b, 2), np.repeat(t, 2), np.repeat(other, 2)),
            "same-tier": MigrationPlan(b, t, t),
        }[kind]
        before = snapshot(self.store)
        try:
            self.store.migrate(plan)
        except PlanError:
            assert snapshot(self.store) == before
        else:
            raise AssertionError(f"{kind} plan was accepted")

    @precondition(lambda self: len(self.lengths) > 1)
    @rule(data=st.data())
    def free(self, data: st.DataObject) -> None:
        r = data.draw(st.sampled_from(sorted(self.lengths)))
        self.store.free([r])
        del self.lengths[r]

    @invariant()
    def consistent(self) -> None:
        store = getattr(self, "store", None)
        if store is None:
            return
        store.check()
        assert (store.used <= store.capacity).all()
        assert sorted(store.requests) == sorted(self.lengths)
        assert int(store.tier_tokens.sum()) == sum(self.lengths.values())
        for r, n in self.lengths.items():
            assert store.length(r) == n
            parts = store.read(r)
            got = np.sort(np.concatenate([p.positions for p in parts])) if parts else np.zeros(0)
            assert np.array_equal(got, np.arange(n))  # every token once: none lost, none duplicated
            table = store.block_table(r)
            for p in parts:
                blocks = p.positions // store.block_tokens
                assert (table["tier"][blocks] == p.tier).all()
                assert (table["device"][blocks] == p.device).all()


StoreMachine.TestCase.settings = settings(max_examples=30, stateful_step_count=25, deadline=None)
TestStoreMachine = StoreMachine.TestCase
