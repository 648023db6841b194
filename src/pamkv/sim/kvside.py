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
from pamkv.workloads.locality import open_batch
from pamkv.workloads.locality.model import LocalitySource


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
        window_steps: int = 1,
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
        self.window_steps = window_steps
        self.capacity_tokens = int(self.store.capacity.sum()) * block_tokens
        self.rng = np.random.default_rng(seed)
        self.batch = open_batch(locality, self.rng, block_tokens=block_tokens) if locality is not None else None
        self._in_batch: set[int] = set()
        self.held: dict[int, int] = {}
        self._last_shares: dict[int, np.ndarray] = {}
        self._moved = np.zeros(len(self.links))
        self.imbalance = np.ones(len(tiers))
        """Per tier: the busiest bank group's share of a step's reads over an even spread's (>= 1)."""
        unit_off = self.store.unit_off
        first_dev = np.concatenate(([0], np.cumsum([t.devices for t in tiers])))
        width = max(t.devices for t in tiers)
        self._unit_base = np.zeros((len(tiers), width), dtype=np.int64)
        for t, plan in enumerate(tiers):
            self._unit_base[t, : plan.devices] = unit_off[first_dev[t] : first_dev[t] + plan.devices]
        self._tier_unit_first = unit_off[first_dev[:-1]]
        self._tier_units = unit_off[first_dev[1:]] - unit_off[first_dev[:-1]]

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
        if rid in self._in_batch and self.batch is not None:
            self.batch.remove(rid)
            self._in_batch.discard(rid)
        self._last_shares.pop(rid, None)

    # --- accesses ----------------------------------------------------------------------------------
    def _budget_blocks(self, tokens: np.ndarray) -> np.ndarray:
        """Blocks a step reads of requests holding ``tokens``: ceil(n / ratio) tokens, at least
        ``min_selected`` (sinks and the recent window), at most all of them."""
        if self.ratio <= 1:
            return -(-tokens // self.block_tokens)
        chosen = np.minimum(tokens, np.maximum(np.ceil(tokens / self.ratio), self.min_selected))
        return np.maximum(1, np.ceil(chosen / self.block_tokens)).astype(np.int64)

    def _selection(self, rids: np.ndarray, steps: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Selected (request, first position of each selected block, block mass) of one step per request.

        One entry per selected block: its first token carries the block's whole mass, so the store's
        block importance (the sum over its tokens) and per-token density are the same as when the mass
        is spread over the block's tokens, at 1/16 of the cost. All requests at once: the locality
        batch steps every context in one call, and the per-request top-k is one segmented sort.
        """
        bt = self.block_tokens
        n = np.fromiter((self.held[r] for r in rids.tolist()), dtype=np.int64, count=rids.size)
        nblocks = -(-n // bt)
        seg = np.repeat(np.arange(rids.size), nblocks)
        offsets = np.concatenate(([0], np.cumsum(nblocks)))
        if self.batch is None or self.ratio <= 1:
            mass = 1.0 / nblocks[seg]
            chosen = np.arange(seg.size)
        else:
            for r, tokens in zip(rids.tolist(), n.tolist(), strict=True):
                if r not in self._in_batch:
                    self.batch.add(r, tokens)
                    self._in_batch.add(r)
            grow = n - self.batch.tokens(rids)
            if (grow > 0).any():
                self.batch.append(rids[grow > 0], grow[grow > 0])
            mass = self.batch.step(rids, steps=steps)[0][0]
            order = np.lexsort((-mass, seg))  # by request, most mass first
            rank = np.arange(seg.size) - offsets[seg[order]]
            chosen = order[rank < self._budget_blocks(n)[seg[order]]]
        owner = seg[chosen]
        return rids[owner], (chosen - offsets[owner]) * bt, mass[chosen]

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

    def _shares(self, rids: np.ndarray, reqs: np.ndarray, pos: np.ndarray, whole_batch: bool = False) -> np.ndarray:
        ntiers = len(self.tier_names)
        out = np.zeros((len(rids), ntiers))
        if reqs.size == 0:
            out[:, 0] = 1.0
            return out
        loc = self.store.locate(reqs, pos)
        if whole_batch:  # a subset's reads say little about how the whole step spreads
            self._measure_imbalance(loc.tier, loc.device, loc.unit)
        order = np.argsort(rids, kind="stable")
        row = order[np.searchsorted(rids[order], reqs)]
        counts = np.bincount(row * ntiers + loc.tier, minlength=len(rids) * ntiers).reshape(len(rids), ntiers)
        return counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)

    def _measure_imbalance(self, tier: np.ndarray, device: np.ndarray, unit: np.ndarray) -> None:
        """Per tier: selected blocks on its busiest bank group (SSD channel) over an even spread's.

        The device models price an even spread over every bank group; the intra-device mapping
        decides how close the real spread comes. PAM's least-active mapping keeps this near 1, a
        naive fill-unit-0-first mapping piles a step's reads onto few groups.
        """
        gu = self._unit_base[tier, device] + unit
        for t in range(len(self.tier_names)):
            on = gu[tier == t]
            if on.size == 0:
                self.imbalance[t] = 1.0
                continue
            busiest = np.bincount(on - self._tier_unit_first[t]).max()
            ideal = -(-on.size // self._tier_units[t])
            self.imbalance[t] = busiest / ideal

    def window(self) -> np.ndarray:
        """One scheduling window: observe a step's selection, run the policy's moves; bytes per link.

        The bytes include every move since the last window: the scheduler's, and the displacements
        the policy made to place new blocks.
        """
        rids = np.asarray(sorted(self.held), dtype=np.int64)
        if rids.size:
            reqs, pos, score = self._selection(rids, self.window_steps)
            if self.frequency_blind:
                score = np.ones_like(score)
            self.store.observe(rids, reqs, pos, score)
            shares = self._shares(rids, reqs, pos, whole_batch=True)
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
