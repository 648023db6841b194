"""PAM's inter-device online KV scheduler (PAPER.md §6.3, Algorithm 2), on plain numpy arrays.

Items are whatever the caller schedules — tokens, 16-token blocks of the KV store, or the simulator's
aggregated groups — each with an importance (the sum of its tokens' EMA importance ``I``), a size in
tokens, and a tier (0 = fastest). A tier's importance score is PAPER.md Eq. 8,
``IS_t = sum of I over its tokens / #tokens``. With three tiers and targets ``IS_H : IS_D : IS_S =
x : y : 1`` Algorithm 2 is

1. while ``x* + y* < x + y``: swap the least important DDR item with the most important SSD item;
2. then while ``x*/y* < x/y``: swap the least important HBM item with the most important DDR item,

where ``x* = IS_H/IS_S`` and ``y* = IS_D/IS_S``. For ``T`` tiers with targets ``r_0..r_{T-1}`` the same
rule runs over the boundaries from the bottom up: at boundary ``j`` (tiers ``j`` and ``j+1``) it swaps
while ``(IS_0+..+IS_j)/IS_{j+1} < (r_0+..+r_j)/r_{j+1}``; for ``T = 3`` these are exactly steps 1 and 2.

The paper's loops have no stop rule. Ours stops a phase as soon as the target is met, one side is
empty, the candidate from below is not more important (per token) than the one from above by more
than ``margin``, the swap would not raise the phase's ratio, or the per-call swap budget is spent.
Importance is compared per token (``importance / size``), so partly filled blocks rank fairly.

Before swapping, free room is used (non-swap moves): top-down, each tier with free capacity takes
the most important items of the tier just below it (only items above ``promote_threshold``).

Two implementations give identical results: ``method="heap"`` (binary heaps, O(log n) per swap after
an O(n) heapify) and ``method="vector"`` (numpy: partial sort of the candidates, cumulative sums of
the swap deltas, first failing stop condition) — the same floating-point operations in the same order.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from pamkv.kv.mapping import kth_smallest


class ScheduleError(ValueError):
    """The scheduler's input is impossible (shapes, tiers out of range, a tier over its capacity)."""


@dataclass(frozen=True)
class KVSchedule:
    """Result of one scheduling call.

    ``tier``: every item's tier afterwards; ``items``/``src``/``dst``: the items that moved (net, one
    entry each, ascending) with their tier before and after; ``swaps``/``promotions``: moves made by
    each rule; ``scores_before``/``scores_after``: Eq. 8 per tier.
    """

    tier: np.ndarray
    items: np.ndarray
    src: np.ndarray
    dst: np.ndarray
    swaps: int
    promotions: int
    scores_before: np.ndarray
    scores_after: np.ndarray


def pam_targets(x: float, y: float) -> tuple[float, float, float]:
    """The paper's three-tier targets ``IS_H : IS_D : IS_S = x : y : 1``."""
    return (float(x), float(y), 1.0)


def balanced_targets(throughput: Sequence[float], tokens: Sequence[float]) -> tuple[float, ...]:
    """Targets that make every tier finish an attention step at the same time.

    A tier holding ``n_t`` tokens of mean importance ``IS_t`` reads about ``n_t * IS_t`` tokens a step
    (importance ~ the chance of being selected); at ``throughput_t`` tokens/s it is done in
    ``n_t * IS_t / throughput_t``. Equal times need ``IS_t ∝ throughput_t / n_t``; returned relative to
    the last tier. ``throughput`` in tokens/s per tier (any common unit), ``tokens`` held per tier.
    """
    thr = np.asarray(throughput, dtype=np.float64)
    n = np.asarray(tokens, dtype=np.float64)
    if thr.shape != n.shape or thr.ndim != 1 or (thr <= 0).any() or (n <= 0).any():
        raise ScheduleError("throughput and tokens must be positive, one value per tier")
    per = thr / n
    return tuple(float(v) for v in per / per[-1])


def tier_scores(importance: np.ndarray, size: np.ndarray, tier: np.ndarray, tiers: int) -> np.ndarray:
    """PAPER.md Eq. 8 per tier: summed importance over summed size (0 for an empty tier)."""
    s = np.bincount(tier, weights=importance, minlength=tiers)
    n = np.bincount(tier, weights=size, minlength=tiers)
    out = np.zeros(tiers, dtype=np.float64)
    np.divide(s, n, out=out, where=n > 0)
    return out


def _ratio(num: float, den: float) -> float:
    if den > 0:
        return num / den
    return math.inf if num > 0 else 0.0


def _ratios(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.where(num > 0, np.inf, 0.0)
    with np.errstate(over="ignore"):  # a vanishing denominator gives inf, as _ratio does
        np.divide(num, den, out=out, where=den > 0)
    return out


def _first_k(key: np.ndarray, items: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` items with the smallest ``key``, ties by item index, in that order."""
    if k <= 0 or items.size == 0:
        return items[:0]
    if 4 * k < items.size:  # select first (only the ones below the k-th key are sorted)
        kth = kth_smallest(key, k - 1)
        below = key < kth
        low_items, low_key = items[below], key[below]
        low = low_items[np.lexsort((low_items, low_key))]
        tied = items[key == kth]
        if tied.size > 1 and not (tied[1:] > tied[:-1]).all():
            tied = np.sort(tied)
        return np.concatenate((low, tied[: k - low.size]))
    return items[np.lexsort((items, key))[:k]]


@dataclass
class _State:
    """Running per-tier sums shared by both implementations."""

    imp: np.ndarray
    size: np.ndarray
    tier: np.ndarray
    cap: np.ndarray
    sums: list[float]
    ntok: list[int]
    count: list[int]
    _dens: np.ndarray | None = None

    @property
    def dens(self) -> np.ndarray:
        """Per-token importance of every item (computed on first use: a call that moves nothing skips it)."""
        if self._dens is None:
            self._dens = self.imp / self.size
        return self._dens

    def move(self, items: np.ndarray, src: int, dst: int) -> None:
        if items.size == 0:
            return
        self.tier[items] = dst
        moved = float(np.sum(self.imp[items]))
        tokens = int(np.sum(self.size[items]))
        self.sums[src] -= moved
        self.sums[dst] += moved
        self.ntok[src] -= tokens
        self.ntok[dst] += tokens
        self.count[src] -= items.size
        self.count[dst] += items.size

    def score(self, t: int) -> float:
        return self.sums[t] / self.ntok[t] if self.ntok[t] > 0 else 0.0


def _validate(
    importance: np.ndarray, tier: np.ndarray, capacity: np.ndarray, size: np.ndarray,
    targets: Sequence[float] | None,
) -> np.ndarray:
    """Check the input; returns the items per tier."""
    n = importance.shape[0]
    if importance.ndim != 1 or tier.shape != (n,) or size.shape != (n,):
        raise ScheduleError("importance, tier and size must be 1-D arrays of the same length")
    if capacity.ndim != 1 or capacity.size < 1 or (capacity < 0).any():
        raise ScheduleError("capacity must hold one non-negative value per tier")
    lowest = float(importance.min()) if n else 0.0  # NaN anywhere makes min and max NaN
    if n and not (math.isfinite(lowest) and math.isfinite(float(importance.max()))):
        raise ScheduleError("importance must be finite")
    if (size <= 0).any():
        raise ScheduleError("every item must have a positive size")
    if n and (tier.min() < 0 or tier.max() >= capacity.size):
        raise ScheduleError(f"tier indices must lie in 0..{capacity.size - 1}")
    count = np.bincount(tier, minlength=capacity.size)
    over = count > capacity
    if over.any():
        raise ScheduleError(f"tier {int(np.flatnonzero(over)[0])} already holds more items than its capacity")
    if targets is not None:
        if len(targets) != capacity.size or any(not (t > 0 and math.isfinite(t)) for t in targets):
            raise ScheduleError(f"targets must be {capacity.size} positive finite ratios (e.g. x, y, 1)")
        if lowest < 0:
            raise ScheduleError("importance must be non-negative when scheduling toward targets")
    return count


def schedule_kv(
    importance: np.ndarray | Sequence[float],
    tier: np.ndarray | Sequence[int],
    capacity: np.ndarray | Sequence[int],
    targets: Sequence[float] | None,
    *,
    size: np.ndarray | Sequence[float] | None = None,
    max_swaps: int | None = None,
    max_promotions: int | None = None,
    margin: float = 0.0,
    promote: bool = True,
    promote_threshold: float | None = 0.0,
    method: Literal["vector", "heap"] = "vector",
) -> KVSchedule:
    """One online scheduling step: promotions into free room, then Algorithm 2's swaps.

    ``importance[n]``: each item's importance (sum over its tokens); ``tier[n]``: its tier, 0 = fastest;
    ``capacity[T]``: items each tier can hold; ``targets``: ``T`` positive ratios ``IS_0 : .. : IS_{T-1}``
    (``pam_targets(x, y)`` for the paper's x:y:1), or ``None`` to swap purely by importance (sort the
    tiers; no ratio target); ``size[n]``: tokens per item (default 1). ``max_swaps``/``max_promotions``
    bound the moves per call (``None`` = unbounded); a swap needs the lower item's per-token importance
    to exceed the upper one's by more than ``margin``. Promotion takes only items whose per-token
    importance exceeds ``promote_threshold`` (``None``: any). Raises :class:`ScheduleError` on
    impossible input. Both ``method`` values return identical results.
    """
    imp = np.ascontiguousarray(importance, dtype=np.float64)
    tr = np.ascontiguousarray(tier, dtype=np.int64)
    cap = np.ascontiguousarray(capacity, dtype=np.int64)
    sz = np.ones_like(imp) if size is None else np.asarray(size)
    if sz.dtype.kind != "i":  # signed integer sizes (token counts) are used as they are: the same results
        sz = np.ascontiguousarray(sz, dtype=np.float64)
    count = _validate(imp, tr, cap, sz, targets)
    if method not in ("vector", "heap"):
        raise ScheduleError(f"unknown method '{method}' (vector, heap)")
    T = cap.size
    sums = np.bincount(tr, weights=imp, minlength=T)
    ntok = np.bincount(tr, weights=sz, minlength=T)
    before = np.zeros(T, dtype=np.float64)  # tier_scores(imp, sz, tr, T) from the sums at hand
    np.divide(sums, ntok, out=before, where=ntok > 0)
    st = _State(
        imp=imp, size=sz, tier=tr.copy(), cap=cap, sums=[float(v) for v in sums],
        ntok=[int(v) for v in ntok], count=[int(v) for v in count],
    )
    promote_fn = _promote_heap if method == "heap" else _promote_vector
    swap_fn = _swap_heap if method == "heap" else _swap_vector
    promotions = 0
    if promote:
        budget = math.inf if max_promotions is None else max_promotions
        for j in range(T - 1):
            free = int(cap[j]) - st.count[j]
            k = int(min(free, budget))
            if k > 0 and st.count[j + 1] > 0:  # an empty tier below has nothing to promote
                done = promote_fn(st, j, k, promote_threshold)
                promotions += done
                budget -= done
    swaps = 0
    sbudget = math.inf if max_swaps is None else max_swaps
    for j in range(T - 2, -1, -1):
        if sbudget <= 0:
            break
        if st.count[j] == 0 or st.count[j + 1] == 0:  # nothing to swap across this boundary
            continue
        target = None if targets is None else sum(targets[: j + 1]) / targets[j + 1]
        done = swap_fn(st, j, sbudget, target, margin)
        swaps += done
        sbudget -= done
    if swaps == 0 and promotions == 0:
        moved = np.zeros(0, dtype=np.int64)
        return KVSchedule(tier=st.tier, items=moved, src=moved, dst=moved.copy(), swaps=0, promotions=0,
                          scores_before=before, scores_after=before.copy())
    moved = np.flatnonzero(st.tier != tr)
    return KVSchedule(
        tier=st.tier, items=moved, src=tr[moved], dst=st.tier[moved], swaps=swaps, promotions=promotions,
        scores_before=before, scores_after=tier_scores(imp, sz, st.tier, T),
    )


# --- promotions into free room -------------------------------------------------------------------


def _promote_vector(st: _State, j: int, k: int, threshold: float | None) -> int:
    lower = np.flatnonzero(st.tier == j + 1)
    if threshold is not None:
        lower = lower[st.dens[lower] > threshold]
    chosen = _first_k(-st.dens[lower], lower, k)
    st.move(chosen, j + 1, j)
    return int(chosen.size)


def _promote_heap(st: _State, j: int, k: int, threshold: float | None) -> int:
    dens = st.dens
    heap = [(-dens[i], i) for i in np.flatnonzero(st.tier == j + 1).tolist()]
    heapq.heapify(heap)
    chosen: list[int] = []
    while heap and len(chosen) < k:
        nd, i = heapq.heappop(heap)
        if threshold is not None and not -nd > threshold:
            break
        chosen.append(i)
    st.move(np.array(chosen, dtype=np.int64), j + 1, j)
    return len(chosen)


# --- Algorithm 2's swaps at one tier boundary ----------------------------------------------------


def _swap_vector(st: _State, j: int, budget: float, target: float | None, margin: float) -> int:
    upper = np.flatnonzero(st.tier == j)
    lower = np.flatnonzero(st.tier == j + 1)
    k = int(min(upper.size, lower.size, budget))
    if k <= 0:
        return 0
    a = _first_k(st.dens[upper], upper, k)
    b = _first_k(-st.dens[lower], lower, k)
    ok = st.dens[b] > st.dens[a] + margin
    if target is not None:
        c = np.concatenate(([0.0], np.cumsum(st.imp[b] - st.imp[a])))
        dn = np.concatenate(([0.0], np.cumsum(st.size[b] - st.size[a])))
        fixed = sum(st.score(t) for t in range(j))
        su, sl = st.sums[j] + c, st.sums[j + 1] - c
        nu, nl = st.ntok[j] + dn, st.ntok[j + 1] - dn
        ratio = _ratios(fixed + su / nu, np.divide(sl, nl, out=np.zeros_like(sl), where=nl > 0))
        ok &= (ratio[:-1] < target) & (ratio[1:] > ratio[:-1])
    m = k if ok.all() else int(np.argmin(ok))
    st.move(a[:m], j, j + 1)
    st.move(b[:m], j + 1, j)
    return m


def _swap_heap(st: _State, j: int, budget: float, target: float | None, margin: float) -> int:
    dens, imp, size = st.dens, st.imp, st.size
    up = [(dens[i], i) for i in np.flatnonzero(st.tier == j).tolist()]
    lo = [(-dens[i], i) for i in np.flatnonzero(st.tier == j + 1).tolist()]
    heapq.heapify(up)
    heapq.heapify(lo)
    fixed = sum(st.score(t) for t in range(j))
    su, sl, nu, nl = st.sums[j], st.sums[j + 1], st.ntok[j], st.ntok[j + 1]
    c, dn = 0.0, 0.0
    a_out: list[int] = []
    b_out: list[int] = []
    while up and lo and len(a_out) < budget:
        da, a = up[0]
        db, b = -lo[0][0], lo[0][1]
        if not db > da + margin:
            break
        if target is not None:
            now = _ratio(fixed + (su + c) / (nu + dn), _score(sl - c, nl - dn))
            c2 = c + (imp[b] - imp[a])
            dn2 = dn + (size[b] - size[a])
            new = _ratio(fixed + (su + c2) / (nu + dn2), _score(sl - c2, nl - dn2))
            if not (now < target and new > now):
                break
            c, dn = c2, dn2
        heapq.heappop(up)
        heapq.heappop(lo)
        a_out.append(a)
        b_out.append(b)
    st.move(np.array(a_out, dtype=np.int64), j, j + 1)
    st.move(np.array(b_out, dtype=np.int64), j + 1, j)
    return len(a_out)


def _score(s: float, n: float) -> float:
    return s / n if n > 0 else 0.0
