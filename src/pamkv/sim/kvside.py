"""The simulator's KV side: the real tiered store, fed by the locality model, run at block level.

Blocks (16 tokens of one request, all layers and KV heads together) live in
:class:`pamkv.kv.TieredKVStore` under the system's placement policy — the same store, policies and
online scheduler the functional path runs. What is aggregated (docs/sim.md shows aggregated vs
per-step runs agree):

* one importance per token for all layers and heads (the real system keeps one selection per layer
  and KV head; reference/locality.md: one set per layer keeps 0.913 of the mass vs 0.940 per head);
* accesses are drawn from the locality model once per *window* of ``schedule_every`` decode steps:
  each running request's attention mass per block, top blocks up to the step's budget selected
  (oracle selection by mass — Double Sparsity approximates it), EMA importance updated, the online
  scheduler run, and each request's share of selected tokens per tier refreshed. Between windows a
  step reads ``budget x share`` tokens per tier.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pamkv.kv import (
    LayeredPolicy,
    LayoutSpec,
    PamPolicy,
    PlacementPolicy,
    RecentWindowPolicy,
    StaticPolicy,
    StoreSpec,
    TieredKVStore,
    TierSpec,
)
from pamkv.kv.migration import link_name
from pamkv.workloads.locality.model import LocalitySource, LocalityStream


@dataclass(frozen=True)
class TierPlan:
    """One tier as the store needs it: devices, KV bytes each device holds, its internal layout."""

    name: str
    devices: int
    capacity_bytes: float
    layout: LayoutSpec


def make_policy(placement: str, x: float, y: float, balanced: tuple[float, ...] | None) -> PlacementPolicy:
    """The store policy behind a system's ``placement`` name."""
    if placement == "pam":
        return PamPolicy(x=x, y=y)
    if placement == "balanced":
        # Frequency-blind: the same scheduler, but importance replaced by plain token counts, and
        # targets from tier throughput (the no-mapping ablation) — see docs/systems.md.
        return PamPolicy(x=x, y=y, targets=balanced, hot_new_blocks=0, name="balanced")
    if placement == "top-down":
        return LayeredPolicy()
    if placement == "static":
        return StaticPolicy()
    if placement == "recent":
        return RecentWindowPolicy()
    raise ValueError(f"unknown placement '{placement}'")


class SimKV:
    """Implements the engine's ``KVState`` protocol over a :class:`TieredKVStore`."""

    def __init__(
        self,
        tiers: list[TierPlan],
        token_bytes_per_layer: float,
        layers: int,
        block_tokens: int,
        policy: PlacementPolicy,
        mapping: str,
        locality: LocalitySource | None,
        sparsity_ratio: float,
        min_selected: int,
        frequency_blind: bool,
        schedule: bool,
        seed: int,
    ) -> None:
        spec = StoreSpec(
            tiers=[TierSpec(name=t.name, devices=t.devices, capacity_bytes=t.capacity_bytes, layout=t.layout)
                   for t in tiers],
            block_tokens=block_tokens,
            token_bytes=token_bytes_per_layer,
            layers=layers,
            mapping="activity" if mapping == "pam" else "sequential",
        )
        self.store = TieredKVStore(spec, policy)
        self.tier_names = [t.name for t in tiers]
        self.links = [link_name(a, b) for a in self.tier_names for b in self.tier_names if a != b]
        self.block_tokens = block_tokens
        self.locality = locality
        self.ratio = sparsity_ratio
        self.min_selected = min_selected
        self.frequency_blind = frequency_blind
        self.schedule = schedule
        self.capacity_tokens = int(self.store.capacity.sum()) * block_tokens
        self.rng = np.random.default_rng(seed)
        self.streams: dict[int, LocalityStream] = {}
        self.held: dict[int, int] = {}
        self._last_shares: dict[int, np.ndarray] = {}
        self._moved = np.zeros(len(self.links))

    # --- capacity ----------------------------------------------------------------------------------
    def fits(self, rid: int, tokens: int) -> bool:
        """Whether ``tokens`` more tokens fit (block-rounded, one partial block per request of slack)."""
        free = int(self.store.free_blocks().sum()) * self.block_tokens
        return tokens + self.block_tokens <= free

    def free_tokens(self) -> int:
        """Tokens that still fit, leaving each running request's partial block as slack."""
        return max(0, int(self.store.free_blocks().sum()) * self.block_tokens - self.block_tokens * len(self.held))

    # --- growth ------------------------------------------------------------------------------------
    def add_tokens(self, rids: np.ndarray, tokens: np.ndarray) -> None:
        """Append prompt (or recomputed) tokens, ``tokens[i]`` to request ``rids[i]``; placed by the policy."""
        self.store.append(rids, tokens)
        for r, n in zip(rids.tolist(), tokens.tolist(), strict=True):
            self.held[r] = self.held.get(r, 0) + n

    def add_decode_tokens(self, rids: np.ndarray, steps: int) -> None:
        """Append ``steps`` generated tokens to each request of the decode batch."""
        self.store.append(rids, np.full(len(rids), steps, dtype=np.int64))
        for r in rids.tolist():
            self.held[r] += steps

    def free(self, rid: int) -> None:
        """Release a finished or preempted request's blocks and its locality stream."""
        if rid in self.held:
            self.store.free([rid])
            del self.held[rid]
        self.streams.pop(rid, None)
        self._last_shares.pop(rid, None)

    # --- accesses ----------------------------------------------------------------------------------
    def _budget_blocks(self, tokens: int) -> int:
        if self.ratio <= 1:
            return math.ceil(tokens / self.block_tokens)
        chosen = min(tokens, max(math.ceil(tokens / self.ratio), self.min_selected))
        return max(1, math.ceil(chosen / self.block_tokens))

    def _selection(self, rids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Selected (request, position, score) of one step per request, from its locality stream."""
        reqs, pos, score = [], [], []
        bt = self.block_tokens
        for r in rids.tolist():
            n = self.held[r]
            nblocks = -(-n // bt)
            if self.locality is None or self.ratio <= 1:
                blocks = np.arange(nblocks)
                mass = np.full(nblocks, 1.0 / nblocks)
            else:
                stream = self.streams.get(r)
                if stream is None:
                    stream = self.locality.start(n, self.rng, block_tokens=bt)
                    self.streams[r] = stream
                mass = stream.step(n - stream.n_tokens)[0]
                mass = mass[:nblocks]
                k = min(nblocks, self._budget_blocks(n))
                blocks = np.argpartition(-mass, k - 1)[:k] if k < nblocks else np.arange(nblocks)
            # One entry per selected block: its first token carries the block's whole mass. The store's
            # block importance (the sum over its tokens) and per-token density are the same as when
            # the mass is spread over the block's tokens, at 1/16 of the cost.
            reqs.append(np.full(blocks.size, r, dtype=np.int64))
            pos.append(blocks * bt)
            score.append(mass[blocks])
        if not reqs:
            z = np.zeros(0, dtype=np.int64)
            return z, z, np.zeros(0)
        return np.concatenate(reqs), np.concatenate(pos), np.concatenate(score)

    def read_shares(self, rids: np.ndarray) -> np.ndarray:
        """Share of each request's selected tokens held by each tier, ``[len(rids), tiers]``.

        Uses the selection of the last window where there is one (the shares between windows), else
        draws one (a request that just joined the batch).
        """
        out = np.empty((len(rids), len(self.tier_names)))
        todo = []
        for i, r in enumerate(rids.tolist()):
            cached = self._last_shares.get(r)
            if cached is None:
                todo.append(i)
            else:
                out[i] = cached
        if todo:
            fresh = rids[todo]
            reqs, pos, _ = self._selection(fresh)
            out[todo] = self._shares(fresh, reqs, pos)
        return out

    def _shares(self, rids: np.ndarray, reqs: np.ndarray, pos: np.ndarray) -> np.ndarray:
        ntiers = len(self.tier_names)
        out = np.zeros((len(rids), ntiers))
        if reqs.size == 0:
            out[:, 0] = 1.0
            return out
        loc = self.store.locate(reqs, pos)
        order = np.argsort(rids, kind="stable")
        row = order[np.searchsorted(rids[order], reqs)]
        counts = np.bincount(row * ntiers + loc.tier, minlength=len(rids) * ntiers).reshape(len(rids), ntiers)
        return counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)

    def window(self) -> np.ndarray:
        """One scheduling window: observe a step's selection, run the policy's moves; bytes per link.

        The bytes include every move since the last window: the scheduler's, and the displacements
        the policy made to place new blocks.
        """
        rids = np.asarray(sorted(self.held), dtype=np.int64)
        if rids.size:
            reqs, pos, score = self._selection(rids)
            if self.frequency_blind:
                score = np.ones_like(score)
            self.store.observe(rids, reqs, pos, score)
            shares = self._shares(rids, reqs, pos)
            self._last_shares = {r: shares[i] for i, r in enumerate(rids.tolist())}
            if self.schedule:
                self.store.schedule()
        moved = np.array([t.bytes if (t := self.store.traffic.links.get(n)) else 0.0 for n in self.links])
        delta, self._moved = moved - self._moved, moved
        return delta

    def occupancy(self) -> np.ndarray:
        """Tokens held per tier."""
        return self.store.tier_tokens.copy()

    def tokens_lost(self) -> int:
        """Tokens the engine added but the store no longer holds (0 unless a bug)."""
        held = sum(self.held.values())
        return abs(held - int(self.store.tier_tokens.sum()))
