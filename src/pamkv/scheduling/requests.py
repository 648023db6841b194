"""The request scheduler: continuous batching with a token budget, prefill first (as vLLM).

Pure bookkeeping over request ids: it decides which waiting requests to prefill this iteration and
which running requests decode, admitting by KV capacity and preempting (recompute, newest first) when
the cache runs out. It keeps no clock and prices nothing.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field


@dataclass(frozen=True)
class BatchLimits:
    """Limits of one iteration."""

    max_batch: int
    """Most requests decoding at once."""
    max_tokens_per_iter: int
    """Most prompt tokens prefilled in one iteration."""
    chunked_prefill: bool = False
    """Split a prompt longer than the budget over iterations (else it takes a whole iteration alone)."""


@dataclass(frozen=True)
class Plan:
    """What one iteration runs: prompt chunks to prefill, and requests to decode one token each."""

    prefill: list[tuple[int, int]]
    """(request id, prompt tokens prefilled this iteration)."""
    decode: list[int]
    """Requests that decode one token this iteration."""
    preempted: list[int] = field(default_factory=list)
    """Requests evicted this iteration (their KV freed; they wait to be recomputed)."""


class RequestScheduler:
    """Waiting queue (FIFO) and running set, with prefill-first admission.

    ``fits(rid, tokens)`` asks whether ``tokens`` more KV tokens fit in the cache's free capacity;
    within one plan the scheduler passes the running total it has granted so far (KV is only
    allocated when the iteration runs). ``release(rid)`` frees a preempted request's KV.
    Every operation costs O(requests it touches), not O(queue): the waiting queue is only peeked.
    """

    def __init__(self, limits: BatchLimits, fits: Callable[[int, int], bool], release: Callable[[int], None]):
        self.limits = limits
        self._fits = fits
        self._release = release
        self.waiting: deque[int] = deque()
        self.running: list[int] = []
        self.prefilled: dict[int, int] = {}
        self.preemptions: dict[int, int] = {}
        self._partial: list[int] = []  # running requests part-way through a chunked prefill, in order

    def add(self, rid: int) -> None:
        """Queue an arrived request."""
        self.waiting.append(rid)

    def finish(self, rids: int | Iterable[int]) -> None:
        """Remove completed requests from the running set."""
        done = {rids} if isinstance(rids, int) else set(rids)
        self.running = [r for r in self.running if r not in done]
        for r in done:
            self.prefilled.pop(r, None)

    def _candidates(self) -> Iterator[tuple[int, bool]]:
        """Requests that may prefill, in order: unfinished chunked prefills, then the waiting queue's
        head (re-read after each admission); each with whether it is waiting."""
        for rid in list(self._partial):
            yield rid, False
        while self.waiting:
            yield self.waiting[0], True

    def plan(self, prompt_len: Callable[[int], int]) -> Plan:
        """Plan one iteration: prefill waiting requests while budget, batch and capacity allow; else decode.

        Prefill comes first (vLLM's default): an iteration that admits prompts runs no decode.
        """
        budget = self.limits.max_tokens_per_iter
        prefill: list[tuple[int, int]] = []
        granted = 0
        for rid, waiting in self._candidates():
            full = prompt_len(rid)
            done = self.prefilled.get(rid, 0)
            if waiting and len(self.running) >= self.limits.max_batch:
                break
            take = min(full - done, budget) if self.limits.chunked_prefill else full - done
            if take <= 0 or (take > budget and prefill):
                break
            if not self._fits(rid, granted + take):
                break
            if waiting:
                self.waiting.popleft()
                self.running.append(rid)
                if done + take < full:
                    self._partial.append(rid)
            elif done + take >= full:
                self._partial.remove(rid)
            self.prefilled[rid] = done + take
            prefill.append((rid, take))
            budget -= take
            granted += take
            if budget <= 0:
                break
        if prefill:
            return Plan(prefill=prefill, decode=[])
        decode, preempted = self._decode_set()
        return Plan(prefill=[], decode=decode, preempted=preempted)

    def _decode_set(self) -> tuple[list[int], list[int]]:
        partial = set(self._partial)
        ready = [r for r in self.running if r not in partial] if partial else list(self.running)
        preempted: list[int] = []
        while ready and not self._fits(-1, len(ready)):
            victim = ready.pop()  # newest first, as vLLM's recompute preemption
            self.running.remove(victim)
            self.prefilled.pop(victim, None)
            self._release(victim)
            self.waiting.appendleft(victim)
            self.preemptions[victim] = self.preemptions.get(victim, 0) + 1
            preempted.append(victim)
        return ready, preempted
