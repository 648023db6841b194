"""The serving loop: the clock, the request lifecycle, and the decode fast-forward.

One *iteration* is either a prefill (prompt chunks on the GPUs, then their KV spread over the tiers)
or a decode segment. Between events — an arrival that could be admitted, a KV-scheduler window,
the cache filling — every step reads a number of tokens per tier that grows linearly with context,
so a *segment* of k steps is priced in one vectorised call instead of k Python iterations; a request
that completes inside it leaves the batch from the next step with its own finish time. This is exact
for the model of time (nothing that changes inside a segment is ignored): accesses per tier are
refreshed at each KV scheduling window, which is also a segment boundary.
"""

from __future__ import annotations

import math
import time as wallclock
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd

from pamkv.scheduling.requests import BatchLimits, RequestScheduler
from pamkv.sim.result import Result, percentile


class KVState(Protocol):
    """What the engine needs from the KV side (blocks, placement, locality, online scheduling)."""

    tier_names: list[str]
    imbalance: np.ndarray

    def fits(self, rid: int, tokens: int) -> bool: ...
    def free_tokens(self) -> int: ...
    def add_tokens(self, rids: np.ndarray, tokens: np.ndarray) -> None: ...
    def add_decode_tokens(self, rids: np.ndarray, steps: np.ndarray) -> None: ...
    def free(self, rids: np.ndarray | int) -> None: ...
    def read_shares(self, rids: np.ndarray) -> np.ndarray: ...
    def window(self, steps: int) -> np.ndarray: ...
    def below_top(self) -> bool: ...
    def occupancy(self) -> np.ndarray: ...
    def tokens_lost(self) -> int: ...


class Pricer(Protocol):
    """What the engine needs from the hardware side: seconds, busy time and energy of an iteration."""

    resource_names: list[str]

    def prefill(self, chunks: list[int], contexts: list[int]) -> tuple[float, np.ndarray, float]: ...
    def decode(
        self, batch: np.ndarray, reads: np.ndarray, context: np.ndarray, imbalance: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...
    def migration(self, link_bytes: np.ndarray) -> tuple[float, float]: ...


@dataclass
class Requests:
    """All requests of a run as arrays (index = request id)."""

    arrival: np.ndarray
    prompt: np.ndarray
    output: np.ndarray
    generated: np.ndarray = field(init=False)
    first_token: np.ndarray = field(init=False)
    finish: np.ndarray = field(init=False)
    migrated_bytes: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        n = len(self.arrival)
        self.generated = np.zeros(n, dtype=np.int64)
        self.first_token = np.full(n, np.nan)
        self.finish = np.full(n, np.nan)
        self.migrated_bytes = np.zeros(n)


@dataclass(frozen=True)
class EngineOptions:
    """Knobs of the loop itself."""

    limits: BatchLimits
    sparsity_ratio: float
    """Decode reads ceil(context / ratio) tokens per request and layer (1 = dense)."""
    schedule_every: int
    """Decode steps between KV-scheduler windows (0 = never)."""
    migration_overlapped: bool
    """Migrations run beside attention (PAM's interface) or stall the step (host-driven copies)."""
    max_sim_s: float
    min_selected: int = 64
    """A step reads at least this many tokens of a request (or all it has): sinks plus recent window."""
    idle_window_factor: int = 4
    """While every block sits in the top tier, windows come this many times less often: nothing can
    migrate and the top tier serves every read, so a window only refreshes importance (docs/sim.md)."""


class Engine:
    """Runs one workload through one system; :meth:`run` returns the :class:`Result`."""

    def __init__(self, reqs: Requests, kv: KVState, pricer: Pricer, opts: EngineOptions):
        self.reqs, self.kv, self.pricer, self.opts = reqs, kv, pricer, opts
        self.sched = RequestScheduler(opts.limits, fits=kv.fits, release=self._preempt)
        self.now = 0.0
        self.steps = 0
        self.since_window = 0
        self.busy = np.zeros(len(pricer.resource_names))
        self.energy_j = 0.0
        self.migrated = 0.0
        self.prefill_s = 0.0
        self.decode_s = 0.0
        self.decode_tokens = 0
        self.rows: list[tuple[Any, ...]] = []
        self.recompute: dict[int, int] = {}

    # --- lifecycle -------------------------------------------------------------------------------
    def _preempt(self, rid: int) -> None:
        self.kv.free(rid)
        self.recompute[rid] = int(self.reqs.generated[rid])

    def _prompt_len(self, rid: int) -> int:
        # A preempted request recomputes its prompt and what it had generated (vLLM's recompute).
        return int(self.reqs.prompt[rid]) + self.recompute.get(rid, 0)

    def _finish(self, rids: np.ndarray, at: np.ndarray | float | None = None) -> None:
        """Complete ``rids`` at times ``at`` (default now) and release their KV."""
        if rids.size:
            self.reqs.finish[rids] = self.now if at is None else at
            self.sched.finish(rids.tolist())
            self.kv.free(rids)

    # --- the loop --------------------------------------------------------------------------------
    def run(self) -> Result:
        """Simulate until every request completes (or ``max_sim_s``); returns metrics and tables."""
        wall0 = wallclock.perf_counter()
        order = np.argsort(self.reqs.arrival, kind="stable")
        nxt = 0
        n = len(order)
        while True:
            while nxt < n and self.reqs.arrival[order[nxt]] <= self.now:
                self.sched.add(int(order[nxt]))
                nxt += 1
            if not self.sched.running and not self.sched.waiting:
                if nxt >= n:
                    break
                self.now = float(self.reqs.arrival[order[nxt]])
                continue
            if self.now > self.opts.max_sim_s:
                break
            plan = self.sched.plan(self._prompt_len)
            if plan.prefill:
                self._prefill(plan.prefill)
            elif plan.decode:
                next_arrival = float(self.reqs.arrival[order[nxt]]) if nxt < n else math.inf
                self._decode(np.asarray(plan.decode, dtype=np.int64), next_arrival)
            else:
                if nxt >= n and not self.sched.running:
                    raise RuntimeError("scheduler made no progress: a request can never fit")  # guarded earlier
                if nxt < n:
                    self.now = max(self.now, float(self.reqs.arrival[order[nxt]]))
                else:
                    raise RuntimeError("no request can run: KV capacity too small for any running request")
        return self._result(wallclock.perf_counter() - wall0)

    def _prefill(self, chunks: list[tuple[int, int]]) -> None:
        sizes = [c for _, c in chunks]
        contexts = [self.sched.prefilled[r] for r, _ in chunks]
        seconds, busy, energy = self.pricer.prefill(sizes, contexts)
        self.kv.add_tokens(np.array([r for r, _ in chunks], dtype=np.int64), np.asarray(sizes, dtype=np.int64))
        start = self.now
        self.now += seconds
        self.prefill_s += seconds
        self.busy += busy
        self.energy_j += energy
        done = []
        for rid, _ in chunks:
            if self.sched.prefilled[rid] >= self._prompt_len(rid):
                if np.isnan(self.reqs.first_token[rid]):
                    self.reqs.first_token[rid] = self.now
                self.reqs.generated[rid] = max(1, self.reqs.generated[rid])
                if self.reqs.generated[rid] >= self.reqs.output[rid]:
                    done.append(rid)
        self._finish(np.asarray(done, dtype=np.int64))
        self._row(start, "prefill", len(chunks), 1, sum(sizes), 0.0)

    def _decode(self, rids: np.ndarray, next_arrival: float) -> None:
        """Run decode steps of ``rids`` up to the next event; requests that finish on the way drop out."""
        reqs, opts = self.reqs, self.opts
        left = reqs.output[rids] - reqs.generated[rids]
        k = int(left.max())
        if opts.schedule_every:
            k = min(k, max(1, self._window_every() - self.since_window))
        full = len(self.sched.running) >= opts.limits.max_batch
        if self.sched.waiting or (full and next_arrival < math.inf):
            k = min(k, int(left.min()))  # a finish frees room for a waiting request: admit it then
        k = max(1, min(k, self.kv.free_tokens() // max(1, len(rids))))
        context = reqs.prompt[rids] + reqs.generated[rids]  # tokens in cache at the first step
        shares = self.kv.read_shares(rids)  # [B, tiers], refreshed at each scheduling window
        s = np.arange(k)[:, None]
        ctx = context[None, :] + s  # [k, B]
        active = s < left[None, :]  # request b still decodes at step s
        if opts.sparsity_ratio > 1:
            chosen = np.minimum(ctx, np.maximum(np.ceil(ctx / opts.sparsity_ratio), opts.min_selected))
        else:
            chosen = ctx.astype(np.float64)
        chosen *= active
        reads = chosen @ shares  # [k, tiers] tokens read per layer over the batch
        batch = active.sum(axis=1)
        seconds, busy, energy = self.pricer.decode(batch, reads, (ctx * active).sum(axis=1), self.kv.imbalance)
        cum = np.cumsum(seconds)
        if next_arrival < math.inf and not full:
            # Stop after the step during which the next request arrives: it is prefilled next.
            k = min(k, int(np.searchsorted(self.now + cum, next_arrival, side="left")) + 1)
        start = self.now
        self.now += float(cum[k - 1])
        self.decode_s += float(cum[k - 1])
        took = np.minimum(left, k)
        self.decode_tokens += int(took.sum())
        self.busy += busy[:k].sum(axis=0)
        self.energy_j += float(energy[:k].sum())
        self.steps += k
        self.since_window += k
        self.kv.add_decode_tokens(rids, took)
        reqs.generated[rids] += took
        migrated = 0.0
        if opts.schedule_every and self.since_window >= self._window_every():
            migrated = self._window()
        done = left <= k
        self._finish(rids[done], start + cum[left[done] - 1])
        self._row(start, "decode", len(rids), k, int(reads[:k].sum()), migrated)

    def _window_every(self) -> int:
        """Decode steps from one KV-scheduler window to the next."""
        every = self.opts.schedule_every
        return every if self.kv.below_top() else every * self.opts.idle_window_factor

    def _window(self) -> float:
        link_bytes = self.kv.window(self.since_window)
        self.since_window = 0
        moved = float(link_bytes.sum())
        if moved:
            seconds, energy = self.pricer.migration(link_bytes)
            self.energy_j += energy
            if not self.opts.migration_overlapped:
                self.now += seconds
            self.migrated += moved
            running = np.asarray(self.sched.running, dtype=np.int64)
            if running.size:
                self.reqs.migrated_bytes[running] += moved / running.size
        return moved

    def _row(self, start: float, kind: str, batch: int, steps: int, tokens: int, migrated: float) -> None:
        self.rows.append((start, self.now, kind, batch, steps, tokens, migrated, *self.kv.occupancy()))

    # --- metrics ---------------------------------------------------------------------------------
    def _result(self, wall_s: float) -> Result:
        reqs = self.reqs
        done = np.isfinite(reqs.finish)
        out_tokens = float(np.minimum(reqs.generated, reqs.output)[done].sum())
        start = float(reqs.arrival.min()) if len(reqs.arrival) else 0.0
        makespan = max(self.now - start, 1e-12)
        ttft = reqs.first_token - reqs.arrival
        e2e = reqs.finish - reqs.arrival
        decode_tokens = np.maximum(reqs.output - 1, 1)
        tpot = np.where(reqs.output > 1, (reqs.finish - reqs.first_token) / decode_tokens, np.nan)
        util = {name: float(b / makespan) for name, b in zip(self.pricer.resource_names, self.busy, strict=True)}
        metrics: dict[str, Any] = {
            "throughput_tokens_per_s": out_tokens / makespan,
            "decode_throughput_tokens_per_s": self.decode_tokens / max(self.decode_s, 1e-12),
            "prefill_s": self.prefill_s,
            "decode_s": self.decode_s,
            "requests_per_s": float(done.sum()) / makespan,
            "ttft_s_p50": percentile(ttft[done], 50),
            "ttft_s_p99": percentile(ttft[done], 99),
            "tpot_s_p50": percentile(tpot[done], 50),
            "tpot_s_p99": percentile(tpot[done], 99),
            "tpot_s_mean": float(np.nanmean(tpot[done])) if done.any() else float("nan"),
            "e2e_s_p50": percentile(e2e[done], 50),
            "e2e_s_p99": percentile(e2e[done], 99),
            "energy_j_per_token": self.energy_j / max(out_tokens, 1.0),
            "energy_j": self.energy_j,
            "migrated_bytes": self.migrated,
            "device_utilization": util,
            "tokens_lost": int(self.kv.tokens_lost()),
            "requests_completed": int(done.sum()),
            "requests": len(reqs.arrival),
            "output_tokens": out_tokens,
            "makespan_s": makespan,
            "decode_steps": self.steps,
            "preemptions": int(sum(self.sched.preemptions.values())),
            "sim_wall_s": wall_s,
        }
        per_request = pd.DataFrame(
            {
                "arrival_s": reqs.arrival,
                "prompt_tokens": reqs.prompt,
                "output_tokens": reqs.output,
                "ttft_s": ttft,
                "tpot_s": tpot,
                "e2e_s": e2e,
                "preemptions": [self.sched.preemptions.get(i, 0) for i in range(len(reqs.arrival))],
                "migrated_bytes": reqs.migrated_bytes,
            }
        )
        cols = ["start_s", "end_s", "kind", "batch", "steps", "tokens", "migrated_bytes"]
        cols += [f"occupancy_{t}" for t in self.kv.tier_names]
        timeline = pd.DataFrame(self.rows, columns=cols)
        return Result(metrics=metrics, requests=per_request, timeline=timeline)
