"""Placement policies: where a new block goes and which blocks move, behind one small interface.

A policy sees the live blocks as plain arrays (:class:`PolicyView`) and answers two questions:

* ``place(view, new)`` — the tier of each new block, and which existing blocks to displace to make
  room (a :class:`Placement`);
* ``plan(view)`` — the moves to make this step (view indices and destination tiers).

The store turns the answers into a validated migration; the simulator can call the same policies on
its own arrays. Policies:

* :class:`PamPolicy` — PAM: new blocks enter high (recent tokens and the attention sink are hot),
  displacing the least important blocks; each step the online scheduler (PAPER.md §6.3) moves blocks
  toward ``IS_H : IS_D : IS_S = x : y : 1``.
* :class:`LayeredPolicy` — L-PIM: fill the tiers top-down by arrival; freed room is refilled by the
  earliest-arrived blocks from the tier below.
* :class:`StaticPolicy` — LS-PIM: placed top-down once, never moved.
* :class:`RecentWindowPolicy` — the newest blocks of every request high, older ones lower.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from pamkv.kv.errors import CapacityError
from pamkv.kv.mapping import kth_smallest


@dataclass(frozen=True)
class PolicyView:
    """The live blocks as a policy sees them; index ``i`` is one block.

    ``tier``: its tier (0 = fastest); ``importance``: the sum of its tokens' EMA importance;
    ``tokens``: tokens filled; ``birth``: allocation order (larger = newer); ``logical``: its index in
    its request; ``tail``: the index of its request's last block. ``capacity``/``used``: blocks per tier.
    """

    tier: np.ndarray
    importance: np.ndarray
    tokens: np.ndarray
    birth: np.ndarray
    logical: np.ndarray
    tail: np.ndarray
    capacity: np.ndarray
    used: np.ndarray

    @property
    def free(self) -> np.ndarray:
        """Free blocks per tier."""
        return self.capacity - self.used


@dataclass(frozen=True)
class NewBlocks:
    """Blocks about to be allocated: index in their request, the request's last index, allocation order."""

    logical: np.ndarray
    tail: np.ndarray
    birth: np.ndarray

    def __len__(self) -> int:
        return int(self.logical.size)


@dataclass(frozen=True)
class Placement:
    """Tier of every new block, and existing blocks (view indices) moved to ``moved_to`` to make room."""

    tier: np.ndarray
    moved: np.ndarray
    moved_to: np.ndarray


class PlacementPolicy(Protocol):
    """Where new blocks go, and what to move each step."""

    @property
    def name(self) -> str:
        """Short policy name ('pam', 'l-pim', ...)."""
        ...

    def place(self, view: PolicyView, new: NewBlocks) -> Placement:
        """Tiers for ``new`` and the displacement moves that make room for them."""
        ...

    def plan(self, view: PolicyView) -> tuple[np.ndarray, np.ndarray]:
        """(view indices, destination tiers) of the blocks to move this step."""
        ...


def _no_moves() -> tuple[np.ndarray, np.ndarray]:
    return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)


def fill_top_down(view: PolicyView, count: int) -> Placement:
    """New blocks into the highest tiers with free room, in order; nothing displaced."""
    free = view.free
    if count > int(free.sum()):
        raise CapacityError(f"{count} new blocks do not fit: {int(free.sum())} free in the whole store")
    before = np.cumsum(free) - free
    take = np.clip(count - before, 0, free)
    return Placement(np.repeat(np.arange(free.size), take), *_no_moves())


def cascade(view: PolicyView, key: np.ndarray | Callable[[], np.ndarray], new_key: np.ndarray,
            new_birth: np.ndarray) -> Placement:
    """New blocks enter the top tier; every tier keeps its highest-``key`` blocks and passes the rest down.

    At each tier, if the incoming blocks do not fit in its free room, the lowest-keyed of (its blocks
    and the incoming ones) drop to the next tier — incoming ones first on equal keys (a move avoided),
    then the older. Only as many blocks move as are needed. ``key``: per existing block (or a function
    returning it, called only when some tier is full); ``new_key``, ``new_birth``: per new block.
    Costs O(1) when the new blocks fit in the top tier's free room, else O(blocks) (a selection, no sort).
    """
    new_key = np.asarray(new_key, dtype=np.float64)
    count = new_key.size
    free = view.free
    if count > int(free.sum()):
        raise CapacityError(f"{count} new blocks do not fit: {int(free.sum())} free in the whole store")
    if count <= free[0]:
        return Placement(np.zeros(count, dtype=np.int64), *_no_moves())
    key = key() if callable(key) else key
    new_tier = np.full(count, -1, dtype=np.int64)
    moved: list[tuple[np.ndarray, int]] = []  # existing blocks (view indices) and the tier they land in
    # incoming: ref >= 0 is an existing block (view index), ref < 0 the new block -ref-1
    inc_ref = -np.arange(count, dtype=np.int64) - 1
    inc_key = new_key
    inc_birth = np.asarray(new_birth, dtype=np.int64)
    for t in range(free.size):
        if inc_ref.size <= free[t]:
            _land(inc_ref, t, new_tier, moved)
            break
        over = inc_ref.size - int(free[t])
        here = np.flatnonzero(view.tier == t)
        ref = np.concatenate((here, inc_ref))
        k = np.concatenate((key[here], inc_key))
        birth = np.concatenate((view.birth[here], inc_birth))
        resident = np.concatenate((np.ones(here.size, np.int64), np.zeros(inc_ref.size, np.int64)))
        leave = _smallest(over, k, resident, birth)
        stay = ~leave
        _land(ref[stay & (resident == 0)], t, new_tier, moved)
        inc_ref, inc_key, inc_birth = ref[leave], k[leave], birth[leave]
    if not moved:
        return Placement(new_tier, *_no_moves())
    items = np.concatenate([m for m, _ in moved])  # blocks only move down, each lands once
    dst = np.concatenate([np.full(m.size, t, dtype=np.int64) for m, t in moved])
    order = np.argsort(items)
    return Placement(new_tier, items[order], dst[order])


def _all_on_top(view: PolicyView, count: int) -> Placement | None:
    """What :func:`cascade` returns when ``count`` new blocks fit in the top tier's free room (all go
    there, nothing moves), computed without their keys; ``None`` when they do not fit there."""
    free = view.free
    if count <= free[0] and count <= free.sum():
        return Placement(np.zeros(count, dtype=np.int64), *_no_moves())
    return None


def _smallest(m: int, key: np.ndarray, resident: np.ndarray, birth: np.ndarray) -> np.ndarray:
    """Mask of the first ``m`` entries of ``np.lexsort((birth, resident, key))``, found by selection.

    O(entries) instead of a sort: the ``m``-th key by partition, then the entries tied with it ordered
    by ``(resident, birth, position)`` through one exact int64 key (a stable sort when that overflows).
    """
    mask = np.zeros(key.size, dtype=bool)
    if m <= 0:
        return mask
    if m >= key.size:
        mask[:] = True
        return mask
    if np.isnan(key).any():
        mask[np.lexsort((birth, resident, key))[:m]] = True
        return mask
    kth = kth_smallest(key, m - 1)
    mask[key < kth] = True
    tie = np.flatnonzero(key == kth)
    need = m - int(np.count_nonzero(mask))
    if need >= tie.size:
        mask[tie] = True
        return mask
    r, b = resident[tie], birth[tie]
    r0, b0 = int(r.min()), int(b.min())
    rspan, bspan = int(r.max()) - r0 + 1, int(b.max()) - b0 + 1
    if rspan * bspan * tie.size < 2**62:
        order = ((r - r0) * bspan + (b - b0)) * tie.size + np.arange(tie.size)
        mask[tie[np.argpartition(order, need - 1)[:need]]] = True
    else:
        mask[tie[np.lexsort((b, r))[:need]]] = True
    return mask


def _land(ref: np.ndarray, tier: int, new_tier: np.ndarray, moved: list[tuple[np.ndarray, int]]) -> None:
    new_tier[-ref[ref < 0] - 1] = tier
    if (ref >= 0).any():
        moved.append((ref[ref >= 0], tier))


def _nothing_to_move(view: PolicyView, swaps: bool = True) -> bool:
    """True when the scheduler can make no move: no tier with free room has blocks just below it and
    (with ``swaps``) no two adjacent tiers both hold blocks. Costs O(tiers), no per-block array."""
    used, cap = view.used.tolist(), view.capacity.tolist()
    return not any(used[j + 1] > 0 and (cap[j] > used[j] or (swaps and used[j] > 0)) for j in range(len(used) - 1))


def _density(view: PolicyView) -> np.ndarray:
    return view.importance / np.maximum(view.tokens, 1)


@dataclass(frozen=True)
class PamPolicy:
    """PAM: importance-driven placement and the online KV scheduler.

    ``x``, ``y``: targets ``IS_H : IS_D : IS_S = x : y : 1`` — the paper profiles them offline and
    gives no values, so they are required; :func:`pamkv.scheduling.online_kv.balanced_targets` derives
    them from tier throughput and size. ``targets`` overrides them for a store with other than three
    tiers (two tiers use ``(x, 1)``).

    A new block enters the top tier when it is its request's first block (the attention sink) or one
    of its last ``hot_new_blocks`` (the recent window; default 4 blocks = 64 tokens, which hold ~0.38
    of the attention mass and token 0 ~0.28 on SmolLM2-135M, ../shared/reference/locality.md); it
    displaces the blocks of lowest per-token importance. Other new blocks (the middle of a long
    prefill) count as importance 0: they take free room, the newest highest, and displace nothing.
    ``max_swaps``/``max_promotions``/``margin``: the scheduler's per-step budget and hysteresis.
    """

    x: float
    y: float
    targets: tuple[float, ...] | None = None
    hot_new_blocks: int = 4
    max_swaps: int | None = None
    max_promotions: int | None = None
    margin: float = 0.0
    method: Literal["vector", "heap"] = "vector"
    name: str = "pam"

    def tier_targets(self, tiers: int) -> tuple[float, ...] | None:
        """Targets for a store of ``tiers`` tiers (``None`` for one tier: nothing to balance)."""
        if self.targets is not None:
            return self.targets
        if tiers == 1:
            return None
        if tiers == 2:
            return (float(self.x), 1.0)
        if tiers == 3:
            return (float(self.x), float(self.y), 1.0)
        raise ValueError(f"PamPolicy: give targets for a {tiers}-tier store")

    def place(self, view: PolicyView, new: NewBlocks) -> Placement:
        """Hot new blocks (sink, recent window) displace the least important blocks downward."""
        if (on_top := _all_on_top(view, len(new))) is not None:
            return on_top
        hot = (new.logical == 0) | (new.tail - new.logical < self.hot_new_blocks)
        return cascade(view, lambda: _density(view), np.where(hot, math.inf, 0.0), new.birth)

    def plan(self, view: PolicyView) -> tuple[np.ndarray, np.ndarray]:
        """Algorithm 2 with promotions into free room (see :func:`pamkv.scheduling.online_kv.schedule_kv`)."""
        if view.capacity.size < 2 or _nothing_to_move(view) or view.tier.size == 0:
            return _no_moves()
        # imported here: the scheduling package may import kv at its top level (no import cycle)
        from pamkv.scheduling.online_kv import schedule_kv

        s = schedule_kv(
            view.importance, view.tier, view.capacity, self.tier_targets(view.capacity.size),
            size=view.tokens, max_swaps=self.max_swaps, max_promotions=self.max_promotions,
            margin=self.margin, method=self.method,
        )
        return s.items, s.dst


@dataclass(frozen=True)
class LayeredPolicy:
    """L-PIM: tiers filled top-down by arrival; freed room refilled by the earliest blocks below."""

    name: str = "l-pim"

    def place(self, view: PolicyView, new: NewBlocks) -> Placement:
        """Top-down into free room."""
        return fill_top_down(view, len(new))

    def plan(self, view: PolicyView) -> tuple[np.ndarray, np.ndarray]:
        """Promote the earliest-arrived blocks of each lower tier into the room above (no swaps)."""
        if view.capacity.size < 2 or _nothing_to_move(view, swaps=False) or view.tier.size == 0:
            return _no_moves()
        from pamkv.scheduling.online_kv import schedule_kv

        s = schedule_kv(-view.birth.astype(np.float64), view.tier, view.capacity, None,
                        max_swaps=0, promote_threshold=None)
        return s.items, s.dst


@dataclass(frozen=True)
class StaticPolicy:
    """LS-PIM: placed top-down when allocated (at prefill), never moved."""

    name: str = "ls-pim"

    def place(self, view: PolicyView, new: NewBlocks) -> Placement:
        """Top-down into free room."""
        return fill_top_down(view, len(new))

    def plan(self, view: PolicyView) -> tuple[np.ndarray, np.ndarray]:
        """No moves."""
        return _no_moves()


@dataclass(frozen=True)
class RecentWindowPolicy:
    """Recency only: every request's newest blocks high, older ones sink (no importance used).

    The key of a block is its distance from its request's last block; new blocks enter the top tier
    and displace the oldest-relative blocks; each step up to ``max_swaps`` swaps restore the order.
    """

    max_swaps: int | None = None
    name: str = "recent"

    def place(self, view: PolicyView, new: NewBlocks) -> Placement:
        """New blocks displace the blocks farthest from their request's end."""
        if (on_top := _all_on_top(view, len(new))) is not None:
            return on_top
        return cascade(view, lambda: (view.logical - view.tail).astype(np.float64),
                       (new.logical - new.tail).astype(np.float64), new.birth)

    def plan(self, view: PolicyView) -> tuple[np.ndarray, np.ndarray]:
        """Promote into free room and swap so that recency decreases down the tiers."""
        if view.capacity.size < 2 or _nothing_to_move(view) or view.tier.size == 0:
            return _no_moves()
        from pamkv.scheduling.online_kv import schedule_kv

        s = schedule_kv((view.logical - view.tail).astype(np.float64), view.tier, view.capacity, None,
                        max_swaps=self.max_swaps, promote_threshold=None)
        return s.items, s.dst
