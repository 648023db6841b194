"""Intra-device KV mapping (PAPER.md §6.1): which bank group (unit) a new or moved block goes to.

Three modes, all deterministic:

* ``activity`` (PAM): each unit's activity is the number of selected tokens read from it over the last
  ``window`` decode steps; a block goes to the least-active unit with a free slot. Placing many blocks
  at once is a greedy water-fill: each placed block raises its unit's level by the expected window
  activity of one block (the tier's window activity per resident token times the block size, at least
  1), so a batch spreads instead of piling onto one unit. Ties go to the unit with fewer resident
  blocks, then the lower index. SSD tiers use channel interleaving instead, as the paper does.
* ``round-robin``: frequency-blind interleaving over the tier's units (the paper's "w/o KV mapping"
  ablation: load-balanced by count, blind to heat).
* ``sequential``: fill the lowest unit first (a naive contiguous mapping).

Inside a unit a block takes the lowest free slot, which keeps rows dense; see :mod:`pamkv.kv.geometry`
for how a slot's tokens spread over the unit's banks.
"""

from __future__ import annotations

import heapq

import numpy as np

from pamkv.hardware.layout import UnitLoad
from pamkv.kv.errors import CapacityError
from pamkv.kv.geometry import DeviceGeometry


class ActivityWindow:
    """Per-unit counts of tokens read over the last ``window`` steps (a ring buffer of steps).

    ``counts[step % window]`` holds one step's reads per unit; the window's per-unit totals are kept up
    to date as steps are recorded (exact integer updates, O(units read) per step).
    """

    def __init__(self, units: int, window: int) -> None:
        self.counts = np.zeros((window, units), dtype=np.int64)
        self.step = 0
        self._totals = np.zeros(units, dtype=np.int64)
        self._read: list[np.ndarray] = [np.zeros(0, dtype=np.int64)] * window  # units read per step

    def record(self, units: np.ndarray) -> None:
        """Add one step: ``units`` lists the (global) unit of every token read this step."""
        units = np.asarray(units, dtype=np.int64)
        if units.size and units.min() < 0:
            raise ValueError("unit indices must be non-negative")
        self.shift(units[units < self.counts.shape[1]])

    def shift(self, units: np.ndarray) -> np.ndarray:
        """:meth:`record` for ``units`` already known to be valid unit indices (int64, unchecked, kept).

        Returns the units of the step that left the window (one entry per token read then): their
        totals dropped by one each, as those of ``units`` rose.
        """
        row = self.step % self.counts.shape[0]
        old = self._read[row]
        counts = self.counts[row]
        np.subtract.at(self._totals, old, 1)
        counts[old] = 0
        np.add.at(counts, units, 1)
        np.add.at(self._totals, units, 1)
        self._read[row] = units
        self.step += 1
        return old

    def totals(self, lo: int = 0, hi: int | None = None) -> np.ndarray:
        """Tokens read per unit over the window, int64 ``[units]`` (a copy; units ``lo..hi-1`` if given)."""
        return self._totals[lo:hi].copy()

    def at(self, units: np.ndarray) -> np.ndarray:
        """Tokens read over the window by each of ``units`` (int64 indices), a new array."""
        return self._totals[units]


def waterfill(n: int, base: np.ndarray, free: np.ndarray, delta: int, tie: np.ndarray,
              tie_bound: int | None = None) -> np.ndarray:
    """Units for ``n`` items by greedy least-level-first, each placed item raising its unit by ``delta``.

    ``base[u]``: starting level (integer); ``free[u]``: items unit ``u`` can still take; ``tie[u]``:
    secondary key (then unit index). Returns the unit of each item in greedy order, int64 ``[n]``.
    ``tie_bound``: optional promise that ``base >= 0`` and ``0 <= tie < tie_bound`` (integers), which
    lets the candidates be picked with one combined key (fewer passes; same result).
    Equivalent to popping the lowest ``(level, tie, unit)`` ``n`` times (done so with a heap for a few
    items), found by bisection on the final level for many (vectorised). Only the ``n`` lowest units by
    ``(base, tie, unit)`` can receive an item (a unit gets its first item only after every lower one
    has one), so a few items among many units cost O(units) to pick those candidates plus O(n log n).
    """
    base = np.asarray(base, dtype=np.int64)
    free = np.asarray(free, dtype=np.int64)
    tie = np.asarray(tie)
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    if n > int(free.sum()):
        raise CapacityError(f"{n} blocks do not fit in {int(free.sum())} free slots")
    delta = max(1, int(delta))
    live = free > 0
    nlive = int(np.count_nonzero(live))
    if 4 * n < nlive:
        if tie_bound is not None and (int(base.max()) + 2) * tie_bound < 2**62:
            key = base * tie_bound + tie  # orders units as (base, tie) does
            if nlive < free.size:
                key[~live] = 2**62
            sub = _smallest(n, key)
        elif nlive == free.size:
            sub = _lowest(n, base, tie)
        else:
            units = np.flatnonzero(live)
            sub = units[_lowest(n, base[units], tie[units])]
        return sub[_greedy(n, base[sub], free[sub], delta, tie[sub])]
    if nlive < free.size:  # the greedy over the units with room only
        units = np.flatnonzero(live)
        return units[_greedy(n, base[units], free[units], delta, tie[units])]
    return _greedy(n, base, free, delta, tie)


def waterfill_candidates(n: int, base: np.ndarray, free: np.ndarray, delta: int, tie: np.ndarray) -> np.ndarray:
    """:func:`waterfill` for ``n`` items over its candidates only: the ``n`` units lowest by ``(base, tie,
    unit)`` among those with room (``free > 0``), given in ascending unit order. Returns positions in
    the given units, int64 ``[n]`` (what ``waterfill`` picks among many units, once the caller has found
    its candidates by other means)."""
    return _greedy(n, np.asarray(base, dtype=np.int64), np.asarray(free, dtype=np.int64), max(1, int(delta)),
                   np.asarray(tie))


_HEAP_ITEMS = 64  # up to this many items a heap beats the vectorised bisection (per-call overhead)


def _smallest(n: int, key: np.ndarray) -> np.ndarray:
    """Indices of the ``n`` smallest entries of ``key`` (ties: lower index first), ascending."""
    kk = kth_smallest(key, n - 1)
    below = np.flatnonzero(key < kk)
    return np.sort(np.concatenate((below, np.flatnonzero(key == kk)[: n - below.size])))


def kth_smallest(values: np.ndarray, k: int) -> int | float:
    """The ``k``-th smallest (0-based) of a non-empty ``values`` (no NaN), as ``np.partition`` gives it.

    ``np.partition`` is slow when many values are equal (often: blocks never read, units never read),
    so the few smallest distinct values are tried first, then integers are counted.
    """
    lo = values.min()
    seen = int(np.count_nonzero(values == lo))
    for _ in range(3):
        if seen > k:
            return lo.item()
        lo = values[values > lo].min()
        seen += int(np.count_nonzero(values == lo))
    if seen > k:
        return lo.item()
    lo = values.min()
    if np.issubdtype(values.dtype, np.integer):
        hi = int(values.max())
        if hi - int(lo) <= 4 * values.size + 1024:
            return int(lo) + int(np.searchsorted(np.cumsum(np.bincount(values - lo)), k + 1))
    return np.partition(values, k)[k].item()


def _lowest(n: int, base: np.ndarray, tie: np.ndarray) -> np.ndarray:
    """Indices of the ``n`` entries with the smallest ``(base, tie, index)``, ascending, in O(entries).

    All of them have ``base`` at most the ``n``-th smallest base ``kb``: those below ``kb`` are taken,
    the rest are the lowest ``(tie, index)`` among those at ``kb`` (often most units: no reads yet).
    """
    kb = kth_smallest(base, n - 1)
    below = base < kb
    need = n - int(np.count_nonzero(below))
    at = base == kb
    if int(np.count_nonzero(at)) <= 8 * need + 64 or not np.issubdtype(tie.dtype, np.integer):
        cand = np.flatnonzero(at)
        level = cand[np.lexsort((cand, tie[cand]))[:need]]
    else:
        t = np.where(at, tie, int(tie.max()) + 1)  # ties outside the level rank last
        kt = kth_smallest(t, need - 1)
        below |= t < kt
        level = np.flatnonzero(t == kt)[: n - int(np.count_nonzero(below))]  # ascending index
    return np.sort(np.concatenate((np.flatnonzero(below), level)))


def _greedy(n: int, base: np.ndarray, free: np.ndarray, delta: int, tie: np.ndarray) -> np.ndarray:
    """:func:`waterfill` over all given units (inputs already checked): a heap for few items, else bisection."""
    if n == base.size and (free > 0).all() and int(base.max()) - int(base.min()) < delta:
        # one item per unit: every unit's first level lies below every second one
        return np.lexsort((np.arange(n), tie, base))
    if n > _HEAP_ITEMS:
        return _bisect(n, base, free, delta, tie)
    left = free.tolist()
    heap = [(b, t, u) for u, (b, t, f) in enumerate(zip(base.tolist(), tie.tolist(), left, strict=True)) if f > 0]
    heapq.heapify(heap)
    out = []
    for _ in range(n):
        level, t, u = heap[0]
        out.append(u)
        left[u] -= 1
        if left[u]:
            heapq.heapreplace(heap, (level + delta, t, u))
        else:
            heapq.heappop(heap)
    return np.array(out, dtype=np.int64)


def _bisect(n: int, base: np.ndarray, free: np.ndarray, delta: int, tie: np.ndarray) -> np.ndarray:
    """:func:`waterfill` by bisection on the final level."""
    live = free > 0

    def below(level: int) -> np.ndarray:  # items each unit places at levels < level
        return np.minimum(np.maximum((level - 1 - base) // delta + 1, 0), free)

    # at level hi + 1 every unit takes all it can: hi = max(base + delta * (free - 1)) bounds the answer
    lo = int(base[live].min())
    hi = min(int(base[live].max()) + delta * n, int((base[live] + delta * (free[live] - 1)).max()))
    while lo < hi:  # smallest level L with sum(below(L + 1)) >= n
        mid = (lo + hi) // 2
        if int(below(mid + 1).sum()) >= n:
            hi = mid
        else:
            lo = mid + 1
    take = below(lo)
    rest = n - int(take.sum())
    at = live & (lo >= base) & ((lo - base) % delta == 0) & (take < free)
    cand = np.flatnonzero(at)
    cand = cand[np.lexsort((cand, tie[cand]))][:rest]
    take[cand] += 1
    units = np.repeat(np.arange(base.size), take)
    starts = np.cumsum(take) - take
    level = base[units] + delta * (np.arange(n) - np.repeat(starts, take))
    return units[np.lexsort((units, tie[units], level))]


def round_robin(n: int, free: np.ndarray, start: int) -> np.ndarray:
    """Units for ``n`` items interleaved one per unit in turn from unit ``start``, skipping full units."""
    units = free.size
    pos = (np.arange(units) - start) % units
    return waterfill(n, np.zeros(units, dtype=np.int64), free, 1, pos)


def sequential(n: int, free: np.ndarray) -> np.ndarray:
    """Units for ``n`` items filling the lowest-numbered unit first."""
    free = np.asarray(free, dtype=np.int64)
    if n > int(free.sum()):
        raise CapacityError(f"{n} blocks do not fit in {int(free.sum())} free slots")
    before = np.cumsum(free) - free
    take = np.clip(n - before, 0, free)
    return np.repeat(np.arange(free.size), take)


def unit_load(geom: DeviceGeometry, unit: np.ndarray, slot: np.ndarray, offset: np.ndarray,
              token_bytes: float) -> UnitLoad:
    """Per-bank tokens read and distinct rows opened on one device for one layer's attention step.

    ``unit``/``slot``/``offset``: the unit, block slot and in-block offset of every selected token on
    this device. Rows are counted per bank as the union of the rows each token's bytes span.
    """
    layout = geom.layout
    nb = layout.banks_per_unit
    shape = (layout.units, nb)
    unit = np.asarray(unit, dtype=np.int64)
    bank, r0, r1 = geom.token_position(slot, offset)
    group = unit * nb + bank
    tokens = np.bincount(group, minlength=layout.units * nb).reshape(shape)
    rows = np.zeros(layout.units * nb, dtype=np.int64)
    if group.size:
        span = int(r1.max()) + 2
        order = np.argsort(group * span + r0)  # by bank, then first row (the order of equal starts is immaterial)
        g, a, b = group[order], r0[order], r1[order]
        run = np.maximum.accumulate(g * span + b)
        prev = np.full(g.size, -1, dtype=np.int64)
        prev[1:] = np.maximum(run[:-1] - g[1:] * span, -1)
        fresh = np.clip(b - np.maximum(a, prev + 1) + 1, 0, None)
        rows = np.bincount(g, weights=fresh, minlength=layout.units * nb).astype(np.int64)
    return UnitLoad(tokens=tokens, rows=rows.reshape(shape), bytes_per_token=float(token_bytes))
