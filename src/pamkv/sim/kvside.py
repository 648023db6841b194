"""The simulator's KV side: the real tiered store, fed by the locality model, run at block level.

Blocks (16 tokens of one request, all layers and KV heads together) live in
:class:`pamkv.kv.TieredKVStore` under the system's placement policy — the same store, policies and
online scheduler the functional path runs. What is aggregated (docs/sim.md shows aggregated vs
per-step runs agree):

* one importance per token for all layers and heads (the real system keeps one selection per layer
  and KV head; reference/locality.md: one set per layer keeps 0.913 of the mass vs 0.940 per head);
* accesses are drawn from the locality model at each *window* of ``schedule_every`` decode steps:
  each running request's attention mass per block, top blocks up to the step's budget selected
  (oracle selection by mass — Double Sparsity approximates it), EMA importance updated, the online
  scheduler run, and each request's share of selected tokens per tier refreshed from a draw after
  the moves. Between windows a step reads ``budget x share`` tokens per tier;
* tokens are placed, and finished requests released, at windows (counted against capacity at once).
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

OBSERVED_STEPS = 3
"""While blocks sit below the top tier, a window observes the selections of its last this-many steps
(one draw each), as a per-step importance EMA would have: with lam = 0.6 they carry 1 - 0.4^3 = 0.936
of its weight. One observation per window lets the scheduler trail a drifting hot set (docs/sim.md)."""


@dataclass(frozen=True)
class TierPlan:
    """One tier as the store needs it: devices, KV bytes each device holds, its internal layout."""

    name: str
    devices: int
    capacity_bytes: float
    layout: LayoutSpec


def top_blocks(mass: np.ndarray, nblocks: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Flat indices of each segment's ``k[i]`` largest entries of ``mass``, segment by segment, largest
    first (segment ``i`` holds the next ``nblocks[i]`` entries; masses of a segment lie in [0, 1]).

    One sort of segment index minus half the mass: segments never interleave.
    """
    offsets = np.zeros(nblocks.size + 1, dtype=np.int64)
    np.cumsum(nblocks, out=offsets[1:])
    seg = np.repeat(np.arange(nblocks.size), nblocks)
    order = np.argsort(seg - 0.5 * mass)
    rank = np.arange(seg.size) - offsets[seg[order]]
    return order[rank < k[seg[order]]]


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
    """Implements the engine's ``KVState`` protocol over a :class:`TieredKVStore`.

    Per-request state lives in arrays indexed by request id (grown on demand), so a decode segment
    costs a few array operations whatever the batch. Generated tokens (and prompts, while the top
    tier has room and nothing lies below it) are *placed* in the store at the next scheduling window,
    in one append for all requests, and finished requests are released there: until then they count
    against (or for) capacity in ``fits`` and ``free_tokens``, and reads use the request's current
    shares, which only change at windows anyway.
    """

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
        requests: int = 0,
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
        self.batch = open_batch(locality, self.rng, block_tokens=block_tokens) if locality is not None else None
        ntiers = len(tiers)
        self.held = np.zeros(requests, dtype=np.int64)
        """Tokens the engine added per request (placed or pending)."""
        self.pending = np.zeros(requests, dtype=np.int64)
        """Tokens not yet placed in the store (placed at the next window or placement)."""
        self._pending_blocks = 0
        self._freeing: list[np.ndarray] = []  # finished requests' ids, released from the store at the next flush
        self._unstream: list[int] = []  # their locality streams, closed then too
        self._freeing_blocks = 0
        self._freeing_tokens = 0
        self._drawn = np.zeros(requests, dtype=np.int64)  # tokens the locality batch holds (0: not in it)
        self._shares = np.zeros((requests, ntiers))
        self._has_shares = np.zeros(requests, dtype=bool)
        self._next: tuple[np.ndarray, ...] | None = None  # the next step's selection, drawn at the last window
        self._moved = np.zeros(len(self.links))
        self.imbalance = np.ones(ntiers)
        """Per tier: the busiest bank group's share of a step's reads over an even spread's (>= 1)."""
        unit_off = self.store.unit_off
        first_dev = np.concatenate(([0], np.cumsum([t.devices for t in tiers])))
        width = max(t.devices for t in tiers)
        self._unit_base = np.zeros((ntiers, width), dtype=np.int64)
        for t, plan in enumerate(tiers):
            self._unit_base[t, : plan.devices] = unit_off[first_dev[t] : first_dev[t] + plan.devices]
        self._tier_unit_first = unit_off[first_dev[:-1]]
        self._tier_units = unit_off[first_dev[1:]] - unit_off[first_dev[:-1]]

    def _grow(self, rid_max: int) -> None:
        """Make the per-request arrays hold ids up to ``rid_max``."""
        n = self.held.size
        if rid_max < n:
            return
        size = max(rid_max + 1, 2 * n, 64)
        for name in ("held", "pending", "_drawn", "_has_shares"):
            old = getattr(self, name)
            new = np.zeros(size, dtype=old.dtype)
            new[:n] = old
            setattr(self, name, new)
        shares = np.zeros((size, self._shares.shape[1]))
        shares[:n] = self._shares
        self._shares = shares

    @property
    def live(self) -> np.ndarray:
        """Per request id: whether it holds KV (placed or pending)."""
        return self.held > 0

    # --- capacity ----------------------------------------------------------------------------------
    def _free_blocks(self) -> int:
        """Blocks not taken by placed tokens of live requests nor promised to pending ones."""
        return int(self.store.free_blocks().sum()) + self._freeing_blocks - self._pending_blocks

    def fits(self, rid: int, tokens: int) -> bool:
        """Whether ``tokens`` more tokens fit (block-rounded, one partial block per request of slack)."""
        return tokens + self.block_tokens <= self._free_blocks() * self.block_tokens

    def free_tokens(self) -> int:
        """Tokens that still fit, leaving each running request's partial block as slack."""
        nlive = int(np.count_nonzero(self.held))
        return max(0, self._free_blocks() * self.block_tokens - self.block_tokens * nlive)

    # --- growth ------------------------------------------------------------------------------------
    def add_tokens(self, rids: np.ndarray, tokens: np.ndarray) -> None:
        """Add prompt (or recomputed) tokens, ``tokens[i]`` to request ``rids[i]``, placed by the policy.

        While nothing sits below the top tier and it has room for them, every policy would put them
        there and nothing can move, so they wait for the window's single append like generated tokens.
        """
        if rids.size:
            self._grow(int(rids.max()))
        bt = self.block_tokens
        held = self.held[rids]
        blocks = int((-(-(held + tokens) // bt) + held // -bt).sum())
        if not self.below_top() and int(self.store.free_blocks()[0]) - self._pending_blocks >= blocks:
            self._pending_blocks += blocks
            self.held[rids] = held + tokens
            self.pending[rids] += tokens
            return
        self._flush()
        self.store.append(rids, tokens)
        self.held[rids] = held + tokens

    def add_decode_tokens(self, rids: np.ndarray, steps: np.ndarray | int) -> None:
        """Count ``steps`` (per request, or one number) generated tokens for each request of the decode
        batch; they are placed at the next window."""
        bt = self.block_tokens
        held = self.held[rids]
        self._pending_blocks += int((-(-(held + steps) // bt) + held // -bt).sum())
        self.held[rids] = held + steps
        self.pending[rids] += steps

    def _flush(self) -> None:
        """Release what finished requests held, then place every pending token (one store call each)."""
        if self._freeing or self._unstream:
            if self._freeing:
                self.store.free(np.concatenate(self._freeing))
            if self.batch is not None:
                for r in self._unstream:
                    self.batch.remove(r)
            self._freeing, self._unstream = [], []
            self._freeing_blocks = self._freeing_tokens = 0
        rids = np.flatnonzero(self.pending)
        if rids.size:
            self.store.append(rids, self.pending[rids])
            self.pending[rids] = 0
        self._pending_blocks = 0

    def free(self, rids: np.ndarray | int) -> None:
        """Release finished or preempted requests' blocks (pending tokens too) and their locality streams.

        Their room counts as free at once; the store lets the blocks go at the next placement or window
        (one call for all): only the timeline's occupancy sees the difference.
        """
        ids = np.atleast_1d(np.asarray(rids, dtype=np.int64))
        ids = ids[ids < self.held.size]
        ids = ids[self.held[ids] > 0]
        if ids.size == 0:
            return
        bt = self.block_tokens
        held, pend = self.held[ids], self.pending[ids]
        placed = held - pend
        self._pending_blocks -= int((-(-held // bt) + placed // -bt).sum())
        if (placed > 0).any():  # a request whose tokens all wait for placement is not in the store yet
            self._freeing.append(ids[placed > 0])
            self._freeing_blocks += int((-(-placed // bt)).sum())
            self._freeing_tokens += int(placed.sum())
        self._unstream += ids[self._drawn[ids] > 0].tolist()
        self.held[ids] = 0
        self.pending[ids] = 0
        self._drawn[ids] = 0
        self._has_shares[ids] = False

    # --- accesses ----------------------------------------------------------------------------------
    def _budget_blocks(self, tokens: np.ndarray) -> np.ndarray:
        """Blocks a step reads of requests holding ``tokens``: ceil(n / ratio) tokens, at least
        ``min_selected`` (sinks and the recent window), at most all of them."""
        if self.ratio <= 1:
            return -(-tokens // self.block_tokens)
        chosen = np.minimum(tokens, np.maximum(np.ceil(tokens / self.ratio), self.min_selected))
        return np.maximum(1, np.ceil(chosen / self.block_tokens)).astype(np.int64)

    def _selection(self, rids: np.ndarray, steps: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Selected (index into ``rids``, first position of each selected block, block mass) of one step.

        One entry per selected block: its first token carries the block's whole mass, so the store's
        block importance (the sum over its tokens) and per-token density are the same as when the mass
        is spread over the block's tokens, at 1/16 of the cost. All requests at once: the locality
        batch steps every context in one call, and the per-request top-k is one segmented sort. Only
        placed tokens are drawn (the window places pending ones first).
        """
        bt = self.block_tokens
        n = self.held[rids] - self.pending[rids]
        nblocks = -(-n // bt)
        seg = np.repeat(np.arange(rids.size), nblocks)
        offsets = np.zeros(rids.size + 1, dtype=np.int64)
        np.cumsum(nblocks, out=offsets[1:])
        if self.batch is None or self.ratio <= 1:
            mass = 1.0 / nblocks[seg]
            chosen = np.arange(seg.size)
        else:
            drawn = self._drawn[rids]
            for i in np.flatnonzero(drawn == 0).tolist():
                self.batch.add(int(rids[i]), int(n[i]))
            grow = np.where(drawn > 0, n - drawn, 0)
            if grow.any():
                self.batch.append(rids[grow > 0], grow[grow > 0])
            self._drawn[rids] = n
            mass = self.batch.step(rids, steps=steps)[0][0]
            chosen = top_blocks(mass, nblocks, self._budget_blocks(n))
        owner = seg[chosen]
        return owner, (chosen - offsets[owner]) * bt, mass[chosen]

    def read_shares(self, rids: np.ndarray) -> np.ndarray:
        """Share of each request's selected tokens held by each tier, ``[len(rids), tiers]``.

        Uses the selection of the last window where there is one (the shares between windows). A
        request that just joined the batch gets a fresh draw, unless all its blocks sit in one tier:
        then that tier serves all its reads whatever is selected (and a draw here would feed nothing
        else: only windows update importance).
        """
        todo = ~self._has_shares[rids]
        if todo.any():
            fresh = rids[todo]
            if self.below_top():
                self._flush()  # a request must be placed before its blocks can be located
            tier = self._sole_tier(fresh)
            one = tier >= 0
            shares = np.zeros((fresh.size, len(self.tier_names)))
            shares[np.flatnonzero(one), tier[one]] = 1.0
            if not one.all():
                mixed = fresh[~one]
                owner, pos, _ = self._selection(mixed)
                shares[~one] = self._tier_shares(mixed, owner, pos)
            self._shares[fresh] = shares
            self._has_shares[fresh] = True
        return self._shares[rids]

    def _sole_tier(self, rids: np.ndarray) -> np.ndarray:
        """Per request, the tier holding all its placed blocks, or -1 if they span tiers."""
        if not self.below_top():
            return np.zeros(rids.size, dtype=np.int64)
        bt = self.block_tokens
        nblocks = -(-(self.held[rids] - self.pending[rids]) // bt)
        offsets = np.zeros(rids.size + 1, dtype=np.int64)
        np.cumsum(nblocks, out=offsets[1:])
        seg = np.repeat(np.arange(rids.size), nblocks)
        tier = self.store.locate(rids[seg], (np.arange(seg.size) - offsets[seg]) * bt).tier
        lo = np.minimum.reduceat(tier, offsets[:-1])
        hi = np.maximum.reduceat(tier, offsets[:-1])
        return np.where(lo == hi, lo, -1)

    def _tier_shares(self, rids: np.ndarray, owner: np.ndarray, pos: np.ndarray,
                     whole_batch: bool = False) -> np.ndarray:
        """Per request (``rids``), the share of its selected tokens (``rids[owner[i]]``, ``pos[i]``) per tier."""
        ntiers = len(self.tier_names)
        if owner.size == 0:
            out = np.zeros((len(rids), ntiers))
            out[:, 0] = 1.0
            return out
        loc = self.store.locate(rids[owner], pos)
        if whole_batch:  # a subset's reads say little about how the whole step spreads
            self._measure_imbalance(loc.tier, loc.device, loc.unit)
        counts = np.bincount(owner * ntiers + loc.tier, minlength=len(rids) * ntiers).reshape(len(rids), ntiers)
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

    def below_top(self) -> bool:
        """Whether any placed block sits below the top tier."""
        return bool(self.store.used[1:].any())

    def window(self, steps: int = 1) -> np.ndarray:
        """One scheduling window ``steps`` decode steps after the last; bytes moved per link since then.

        Places pending tokens; observes the selection of the step just taken (the store's importance
        EMA); runs the policy's moves; then, if any block sits below the top tier, draws the next
        step's selection and prices the coming steps with its shares *after* the moves — as a real
        step reads from where the previous step's scheduling left the blocks. (With every block in the
        top tier, that tier serves all reads whatever is selected.) The bytes include the scheduler's
        moves and the displacements the policy made to place new blocks.
        """
        self._flush()
        rids = np.flatnonzero(self.held)
        if rids.size:
            steps = max(1, steps)
            ahead = self._next if self._next is not None and np.array_equal(self._next[0], rids) else None
            if ahead is not None and steps == 1:  # the step just taken is the one drawn last window
                draws = [ahead[1:]]
            else:
                lag = max(1, steps - (self._next is not None))
                seen = min(lag, OBSERVED_STEPS if self.below_top() else 1)
                draws = [self._selection(rids, lag - seen + 1)]
                draws += [self._selection(rids, 1) for _ in range(seen - 1)]
            self._next = None
            for owner, pos, score in draws:
                self.store.observe(rids, rids[owner], pos, np.ones_like(score) if self.frequency_blind else score)
            if self.schedule:
                self.store.schedule()
            owner, pos, score = draws[-1]  # all on top: the step just observed stands for the next ones
            if self.below_top():
                owner, pos, score = self._selection(rids, 1)
                self._next = (rids, owner, pos, score)
            self._shares[rids] = self._tier_shares(rids, owner, pos, whole_batch=True)
            self._has_shares[rids] = True
        moved = np.array([t.bytes if (t := self.store.traffic.links.get(n)) else 0.0 for n in self.links])
        delta, self._moved = moved - self._moved, moved
        return delta

    def occupancy(self) -> np.ndarray:
        """Tokens in the store per tier: tokens count from the window that places them, and finished
        requests' until the window that releases them."""
        return self.store.tier_tokens.copy()

    def tokens_lost(self) -> int:
        """Tokens the engine added but the store neither holds nor has pending (0 unless a bug)."""
        held = int(self.held.sum()) - int(self.pending.sum())
        return abs(held - int(self.store.tier_tokens.sum()) + self._freeing_tokens)
