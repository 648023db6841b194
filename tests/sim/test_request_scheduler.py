"""The request scheduler: prefill first, token budget, batch cap, capacity admission, preemption."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pamkv.scheduling.requests import BatchLimits, RequestScheduler


class Capacity:
    """A toy KV manager: a token pool with per-request holdings."""

    def __init__(self, tokens: int) -> None:
        self.free = tokens
        self.held: dict[int, int] = {}

    def fits(self, rid: int, tokens: int) -> bool:
        return tokens <= self.free

    def take(self, rid: int, tokens: int) -> None:
        self.free -= tokens
        self.held[rid] = self.held.get(rid, 0) + tokens

    def release(self, rid: int) -> None:
        self.free += self.held.pop(rid, 0)


def test_prefill_first_then_decode() -> None:
    cap = Capacity(10_000)
    s = RequestScheduler(BatchLimits(max_batch=8, max_tokens_per_iter=1000), cap.fits, cap.release)
    for r in range(3):
        s.add(r)
    plan = s.plan(lambda r: 300)
    assert [r for r, _ in plan.prefill] == [0, 1, 2] and plan.decode == []
    plan = s.plan(lambda r: 300)
    assert plan.prefill == [] and plan.decode == [0, 1, 2]


def test_token_budget_and_batch_cap() -> None:
    cap = Capacity(10**9)
    s = RequestScheduler(BatchLimits(max_batch=2, max_tokens_per_iter=500), cap.fits, cap.release)
    for r in range(4):
        s.add(r)
    plan = s.plan(lambda r: 200)
    assert len(plan.prefill) == 2  # 2 x 200 within 500, and the batch cap is 2
    assert s.plan(lambda r: 200).decode == [0, 1]


def test_long_prompt_runs_alone_without_chunking() -> None:
    cap = Capacity(10**9)
    s = RequestScheduler(BatchLimits(max_batch=8, max_tokens_per_iter=100), cap.fits, cap.release)
    s.add(0)
    s.add(1)
    plan = s.plan(lambda r: 250)
    assert plan.prefill == [(0, 250)]


def test_chunked_prefill_splits_a_prompt() -> None:
    cap = Capacity(10**9)
    s = RequestScheduler(BatchLimits(8, 100, chunked_prefill=True), cap.fits, cap.release)
    s.add(0)
    chunks = []
    while True:
        plan = s.plan(lambda r: 250)
        if not plan.prefill:
            break
        chunks += [c for _, c in plan.prefill]
    assert chunks == [100, 100, 50]


def test_admission_waits_for_capacity() -> None:
    cap = Capacity(300)
    s = RequestScheduler(BatchLimits(8, 10_000), cap.fits, cap.release)
    s.add(0)
    s.add(1)
    plan = s.plan(lambda r: 200)
    for r, c in plan.prefill:
        cap.take(r, c)
    assert [r for r, _ in plan.prefill] == [0]
    assert list(s.waiting) == [1]


def test_preemption_evicts_newest_and_requeues_first() -> None:
    cap = Capacity(400)
    s = RequestScheduler(BatchLimits(8, 10_000), cap.fits, cap.release)
    for r in range(2):
        s.add(r)
    plan = s.plan(lambda r: 200)
    for r, c in plan.prefill:
        cap.take(r, c)
    plan = s.plan(lambda r: 200)  # no room for 2 more tokens: the newest is preempted
    assert plan.preempted == [1] and plan.decode == [0]
    assert s.waiting[0] == 1 and s.preemptions[1] == 1


@settings(max_examples=40, deadline=None)
@given(
    prompts=st.lists(st.integers(1, 400), min_size=1, max_size=12),
    budget=st.integers(1, 900),
    batch=st.integers(1, 6),
    chunked=st.booleans(),
)
def test_every_request_is_prefilled_exactly_once(prompts: list[int], budget: int, batch: int, chunked: bool) -> None:
    cap = Capacity(10**9)
    s = RequestScheduler(BatchLimits(batch, budget, chunked), cap.fits, cap.release)
    for r in range(len(prompts)):
        s.add(r)
    done: dict[int, int] = {}
    for _ in range(10_000):
        plan = s.plan(lambda r: prompts[r])
        for r, c in plan.prefill:
            done[r] = done.get(r, 0) + c
            assert c <= budget or not chunked
        if plan.decode:
            assert len(plan.decode) <= batch
            for r in plan.decode:  # each decodes once and leaves
                s.finish(r)
        if not s.running and not s.waiting:
            break
    assert done == dict(enumerate(prompts))
