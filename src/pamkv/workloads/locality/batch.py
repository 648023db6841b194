"""The context-locality generator over many contexts at once: the one implementation of its formula.

Per decode step and head, the attention mass over the ``n`` tokens of a context is a mixture of four
parts, each normalised on its own so that its share is exactly its parameter:

- **sinks** — ``sink_mass`` spread over the first ``sink_tokens`` tokens (attention sinks,
  StreamingLLM arXiv 2309.17453; ../shared/reference/locality.md: token 0 holds 0.28-0.29);
- **recent window** — ``recent_mass`` over the last ``recent_window`` tokens with weights
  ``(recent_offset + d)^-recent_decay`` (``d`` = 0 for the newest token) times the modulation below
  ("important tokens cluster near the current token", PAM §3.2);
- **heavy hitters** — ``1 - sink_mass - recent_mass - background_mass`` over all tokens in proportion
  to ``p_i * modulation_i``, where ``p_i`` is a static Pareto(``tail_index``) weight drawn when the
  token enters the context (a power-law mass over ranks, H2O arXiv 2306.14048);
- **diffuse background** — ``background_mass`` over all tokens with lognormal(``background_sigma``)
  weights driven by the same log-modulation as the token's heavy-hitter weight (one attention logit):
  the flat tail, whose order churns from step to step but keeps the drift's memory.

The modulation of unit ``i`` is ``exp(drift_sigma * u_i(t) + jitter_sigma * e_i(t))``: ``u`` a
stationary AR(1) series with correlation ``drift_corr`` per step (the drift of the hot set, which is
what makes an importance EMA and migration meaningful) and ``e`` white noise (fast churn). Advancing
``k`` steps at once is exact in distribution: ``u <- rho^k u + sqrt(1 - rho^(2k)) N(0, 1)``.

Context-length law. Sinks and the recent window keep a constant mass in a constant number of tokens
(DuoAttention arXiv 2410.10819: many heads stay "streaming" heads at any length). The normalised
Pareto weights of ``n`` tokens concentrate as ``n`` grows when ``tail_index`` < 1: the heavy-hitter
mass outside its top ``k`` tokens falls like ``k^(1 - 1/tail_index)``. The background keeps a floor:
the mass outside any top fraction ``f`` never falls below about ``background_mass * (1 - f)``.

At block granularity (``block_tokens`` > 1) a unit's static weight and recent weight are the exact
sums over its tokens; the modulation is drawn per block (approximating the modulation of its dominant
token) and the background per block as one lognormal with the moments of the sum of its tokens'
(Fenton-Wilkinson). A step costs O(blocks), not O(tokens).

Storage. :class:`LocalityBatch` keeps every context's units in flat arrays (``heads`` rows): per unit
the sum of its tokens' Pareto weights and its drift; per context its tokens, units, and the offset and
capacity of its slot in the flat arrays. A context that outgrows its slot moves to the end with 1.5x
the room (amortised O(1) per token); removals and moves leave holes that a compaction packs away once
they outweigh the live slots. A step gathers the listed contexts' units into one ragged array and
computes every part with segment operations (``np.add.reduceat``, ``np.maximum.reduceat``) — no
Python loop over contexts. Per-call costs are dominated by the number of array operations, not their
size, so the usual calls take short cuts with the same results: ids found through a dense id -> slot
table, factors that depend only on the tokens in a context's last unit tabulated once, one head's
arrays handled as 1-D rows, and one context handled with slices.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np

from pamkv.config.workloads import LocalityConfig

if TYPE_CHECKING:
    from pamkv.workloads.locality.model import LocalitySource, LocalityStream

_GROWTH = 1.5  # slot and storage growth factor (amortised O(1) appends, <= 1.5x slack)
_MIN_SLOT = 4  # units reserved for the smallest slot
_COMPACT_MIN_UNITS = 1024  # holes smaller than this are never worth a compaction
_TABLE_IDS = 1 << 22  # ids in [0, this) are found through a dense id -> slot table (<= 32 MiB)


def units_for(n_tokens: int, block_tokens: int) -> int:
    """Units (blocks of ``block_tokens`` tokens, the last possibly partial) covering ``n_tokens`` tokens."""
    return -(-n_tokens // block_tokens)


def unit_token_counts(n_tokens: int, block_tokens: int) -> np.ndarray:
    """Tokens held by each unit (all ``block_tokens`` except a partial last one), int64."""
    units = units_for(n_tokens, block_tokens)
    counts = np.full(units, block_tokens, dtype=np.int64)
    if units:
        counts[-1] = n_tokens - block_tokens * (units - 1)
    return counts


def pareto_weights(rng: np.random.Generator, shape: tuple[int, ...], tail_index: float) -> np.ndarray:
    """Pareto(tail_index) draws with minimum 1: P(X > x) = x^-tail_index."""
    # 1 - random() lies in (0, 1], so the power is finite.
    return (1.0 - rng.random(shape)) ** (-1.0 / tail_index)


def recent_profile(n_tokens: int, config: LocalityConfig) -> np.ndarray:
    """Recent-window weights of the last min(window, n) tokens, oldest first, summing to 1."""
    width = min(config.recent_window, n_tokens)
    dist = np.arange(width - 1, -1, -1, dtype=np.float64)  # distance from the newest token
    w = (config.recent_offset + dist) ** (-config.recent_decay)
    return w / w.sum()


def ragged_arange(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For segments of ``counts[i]`` items: each item's segment and its index within it (int64 arrays)."""
    counts = np.asarray(counts, dtype=np.int64)
    if counts.size == 1:
        total = int(counts[0])
        return np.zeros(total, dtype=np.int64), np.arange(total, dtype=np.int64)
    total = int(counts.sum())
    seg = np.repeat(np.arange(counts.size, dtype=np.int64), counts)
    first = np.zeros(counts.size, dtype=np.int64)
    np.cumsum(counts[:-1], out=first[1:])
    return seg, np.arange(total, dtype=np.int64) - np.repeat(first, counts)


def _ragged(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For segments of ``counts[i]`` (>= 0; at least one segment) items: each item's index within its
    segment, and each segment's first item (int64 arrays)."""
    starts = np.zeros(counts.size, dtype=np.int64)
    np.add.accumulate(counts[:-1], out=starts[1:])
    total = int(starts[-1]) + int(counts[-1])
    return np.arange(total, dtype=np.int64) - np.repeat(starts, counts), starts


# The helpers below take arrays with items on the last axis: (heads, items), or (items,) for one head.
def _segment_sum(x: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Sums of ``x`` over the segments of its last axis starting at ``starts`` (non-empty); for one
    segment a column per row, or a scalar for a 1-D ``x`` (cheaper to compute with)."""
    if starts.size > 1:
        return np.add.reduceat(x, starts, axis=-1)
    return np.add.reduce(x, axis=-1, keepdims=True) if x.ndim > 1 else np.add.reduce(x)


def _take(x: np.ndarray, idx: np.ndarray | slice) -> np.ndarray:
    """``x[..., idx]``: a view for a slice; for an index array a copy (``np.take`` for several rows,
    several times faster than two-dimensional fancy indexing)."""
    if isinstance(idx, slice):
        return x[..., idx]
    return x[idx] if x.ndim == 1 else np.take(x, idx, axis=1)


def _put(x: np.ndarray, idx: np.ndarray, values: np.ndarray) -> None:
    """``x[..., idx] = values``, one row at a time (one-dimensional fancy assignment is the fast one)."""
    if x.ndim == 1:
        x[idx] = values
    else:
        for h in range(x.shape[0]):
            x[h][idx] = values[h]


def _add(x: np.ndarray, idx: np.ndarray, values: np.ndarray | float) -> None:
    """``x[..., idx] += values`` for distinct ``idx``, one row at a time."""
    if x.ndim == 1:
        x[idx] += values
    elif isinstance(values, np.ndarray):
        for h in range(x.shape[0]):
            x[h][idx] += values[h]
    else:
        for row in x:
            row[idx] += values


def _as_counts(values: int | Sequence[int] | np.ndarray, size: int, name: str) -> np.ndarray:
    """One whole number per context (a scalar is repeated), int64."""
    if isinstance(values, (int, np.integer)) and not isinstance(values, bool):
        return np.full(size, int(values), dtype=np.int64)
    arr = np.asarray(values)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must be whole numbers")
    arr = np.full(size, int(arr), dtype=np.int64) if arr.ndim == 0 else arr.astype(np.int64, copy=False).ravel()
    if arr.size != size:
        raise ValueError(f"{name} must be one number or one per context ({size}), got {arr.size}")
    return arr


class LocalityBatch:
    """Many contexts of the generator (see module docs), stepped together.

    ``add(id, n_tokens)`` opens a context holding its prompt; ``append(ids, new_tokens)`` adds tokens;
    ``step(ids, steps)`` advances the listed contexts' drift by ``steps`` decode steps and returns their
    mass per unit as one ragged array; ``remove(id)`` drops a context. Every context has ``heads``
    independent head streams (rows of the mass arrays) and units of ``block_tokens`` tokens. Same
    ``rng`` seed and the same call sequence give identical arrays.
    """

    def __init__(
        self,
        config: LocalityConfig | None,
        rng: np.random.Generator | int,
        *,
        heads: int = 1,
        block_tokens: int = 1,
    ) -> None:
        if heads < 1 or block_tokens < 1:
            raise ValueError("heads and block_tokens must be >= 1")
        self.config = config if config is not None else LocalityConfig()
        self.rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        self.heads = heads
        self.block_tokens = block_tokens
        cfg = self.config
        # Cumulative recent-window weight over distances 0..d-1 from the newest token (index d).
        dist = np.arange(cfg.recent_window, dtype=np.float64)
        self._recent_cum = np.concatenate([[0.0], np.cumsum((cfg.recent_offset + dist) ** (-cfg.recent_decay))])
        # Flat unit storage: [heads, allocated]; slots live in [0, _end).
        self._pareto = np.zeros((heads, 0))
        self._drift = np.zeros((heads, 0))
        self._end = 0
        self._live_cap = 0
        # Per-context arrays, indexed by slot number.
        self._start = np.zeros(0, dtype=np.int64)
        self._cap = np.zeros(0, dtype=np.int64)
        self._units = np.zeros(0, dtype=np.int64)
        self._tokens = np.zeros(0, dtype=np.int64)
        self._slot_of: dict[int, int] = {}
        self._slot_count = 0  # slot numbers handed out so far (freed ones are reused first)
        self._free_slots: list[int] = []
        self._table = np.full(0, -1, dtype=np.int64)  # slot of each id below _TABLE_IDS held, else -1
        # The last listing checked (ids as bytes, their slots), valid until a context is added or removed.
        self._listed: tuple[bytes, np.ndarray] = (b"", np.zeros(0, dtype=np.int64))
        self._tabulate()

    def _tabulate(self) -> None:
        """Constants of a step, and per-unit factors that depend only on the tokens ``L`` (1..b) in a
        context's last unit, indexed by ``L % b`` (0 for a full unit): the recent-window weights and the
        background's partial-block factors.

        A context's window units and their weights depend on ``L`` alone once its window is full; a
        shorter context's window is all of it, its first ``units`` entries of the same row (no unit
        reaches past the window). Tabulated values are the per-call ones: the same elementwise
        operations on the same values (a ufunc's result per element does not depend on the array).
        """
        cfg = self.config
        b = self.block_tokens
        last = np.arange(b, dtype=np.int64)
        last[0] = b
        # Units touching the window of a context with a full window (at least one).
        self._recent_count = 1 - (last - cfg.recent_window) // b
        columns = int(self._recent_count.max())
        j = np.arange(columns, dtype=np.int64)
        weights = self._recent_weights(last[:, np.newaxis], cfg.recent_window, j[np.newaxis, :])
        self._recent_table = weights.ravel()  # row L % b, column j (j = 0: the last unit)
        self._recent_row = np.int64(columns)
        sigma = cfg.background_sigma
        scale = math.hypot(cfg.drift_sigma, cfg.jitter_sigma)
        # z * z_scale is the standardised log-modulation z (scale 0: z is drawn afresh).
        self._z_scale = 1.0 / scale if scale > 0 else 1.0
        self._s2b = math.log1p(math.expm1(sigma * sigma) / b)  # sigma^2 of a full block's lognormal
        k = last.astype(np.float64)
        s2 = np.log1p(np.expm1(sigma * sigma) / k)
        # Gain k / b, slope sqrt(s2) * z_scale on the raw log-modulation, shift s2 / 2.
        self._block_gain = k / b
        self._block_slope = np.sqrt(s2) * self._z_scale
        self._block_shift = s2 / 2

    # --- bookkeeping --------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._slot_of)

    def __contains__(self, context_id: object) -> bool:
        return context_id in self._slot_of

    def context_ids(self) -> list[int]:
        """Ids of the contexts held, in the order they were added."""
        return list(self._slot_of)

    @property
    def allocated_units(self) -> int:
        """Units of flat storage in use by slots and holes (live units <= this <= ~3x live)."""
        return self._end

    def _slots(self, context_ids: Iterable[int] | np.ndarray, *, unique: bool) -> np.ndarray:
        """Slot numbers of the listed contexts (KeyError for an unknown one, ValueError for a repeat)."""
        if isinstance(context_ids, (list, tuple)) and len(context_ids) == 1:
            return self._slot_array(int(context_ids[0]))
        ids = np.asarray(context_ids if isinstance(context_ids, np.ndarray) else list(context_ids))
        if ids.size and ids.dtype.kind not in "iu":
            raise ValueError("context ids must be integers")
        if ids.size == 1:
            return self._slot_array(int(ids.flat[0]))
        ids = ids.astype(np.int64, copy=False).ravel()
        if ids.size == 0:
            return np.zeros(0, dtype=np.int64)
        key = ids.tobytes()
        if key == self._listed[0]:  # e.g. a step listing the contexts just appended to
            return self._listed[1]
        # Increasing ids (the usual listing) are distinct, and bounded by the first and the last.
        increasing = not np.count_nonzero(ids[1:] <= ids[:-1])
        if increasing:
            lo, hi = int(ids[0]), int(ids[-1])
        else:
            lo, hi = int(np.minimum.reduce(ids)), int(np.maximum.reduce(ids))
        if lo >= 0 and hi < self._table.size:
            slots = self._table[ids]
            if np.count_nonzero(slots < 0):
                raise KeyError(f"unknown context {int(ids[np.argmax(slots < 0)])}")
        else:
            slots = self._dict_lookup(ids)
        if unique:
            if not increasing:
                ordered = np.sort(slots)
                if (ordered[1:] == ordered[:-1]).any():
                    raise ValueError("a context is listed twice")
            slots.flags.writeable = False
            self._listed = (key, slots)
        return slots

    def _slot_array(self, context_id: int) -> np.ndarray:
        """The slot of one context, as a one-element array (KeyError if unknown)."""
        slot = self._slot_of.get(context_id)
        if slot is None:
            raise KeyError(f"unknown context {context_id}")
        return np.array([slot], dtype=np.int64)

    def _dict_lookup(self, ids: np.ndarray) -> np.ndarray:
        """Slots of ``ids`` outside the dense table's range, one by one (KeyError for an unknown one)."""
        try:
            return np.array([self._slot_of[i] for i in ids.tolist()], dtype=np.int64)
        except KeyError as missing:
            raise KeyError(f"unknown context {missing.args[0]}") from None

    def tokens(self, context_ids: Iterable[int] | np.ndarray) -> np.ndarray:
        """Tokens now in each listed context (int64)."""
        return self._tokens[self._slots(context_ids, unique=False)].copy()

    def units(self, context_ids: Iterable[int] | np.ndarray) -> np.ndarray:
        """Units (tokens or blocks) now in each listed context (int64)."""
        return self._units[self._slots(context_ids, unique=False)].copy()

    def unit_state(self, context_id: int) -> tuple[np.ndarray, np.ndarray]:
        """Copies of one context's per-unit static weights (sum of its tokens' Pareto weights) and
        drift, each ``(heads, units)``."""
        slot = int(self._slots([context_id], unique=False)[0])
        lo, hi = int(self._start[slot]), int(self._start[slot] + self._units[slot])
        return self._pareto[:, lo:hi].copy(), self._drift[:, lo:hi].copy()

    # --- storage ------------------------------------------------------------------------------------
    def _reserve(self, units: int) -> None:
        """Make the flat arrays hold at least ``units`` units, keeping [0, _end)."""
        have = self._pareto.shape[1]
        if units <= have:
            return
        size = max(units, int(have * _GROWTH) + 1, 64)
        for name in ("_pareto", "_drift"):
            old = getattr(self, name)
            grown = np.zeros((self.heads, size))
            grown[:, : self._end] = old[:, : self._end]
            setattr(self, name, grown)

    def _alloc(self, caps: np.ndarray) -> np.ndarray:
        """Slots of ``caps`` units at the end of storage; returns their starts."""
        starts = np.full(caps.size, self._end, dtype=np.int64)
        np.add.accumulate(caps[:-1], out=starts[1:])
        starts[1:] += self._end
        total = int(starts[-1] + caps[-1]) - self._end
        self._reserve(self._end + total)
        self._end += total
        self._live_cap += total
        return starts

    def _alloc_one(self, cap: int) -> int:
        """``_alloc`` for one slot of ``cap`` units; returns its start."""
        start = self._end
        self._reserve(start + cap)
        self._end += cap
        self._live_cap += cap
        return start

    def _move(self, src: np.ndarray, dst: np.ndarray, counts: np.ndarray) -> None:
        """Copy ``counts[i]`` units from ``src[i]`` to ``dst[i]`` (ranges do not overlap)."""
        within, _ = _ragged(counts)
        s, d = np.repeat(src, counts) + within, np.repeat(dst, counts) + within
        _put(self._pareto, d, _take(self._pareto, s))
        _put(self._drift, d, _take(self._drift, s))

    def _relocate(self, slots: np.ndarray, need: np.ndarray) -> None:
        """Move contexts that outgrew their slots to new slots at the end with room to grow."""
        if slots.size == 1:  # the usual case: plain numbers and slices
            slot, old = int(slots[0]), int(self._cap[slots[0]])
            cap = max(int(need[0]), int(old * _GROWTH) + 1, _MIN_SLOT)
            lo, to, units = int(self._start[slot]), self._alloc_one(cap), int(self._units[slot])
            for x in (self._pareto, self._drift):
                x[:, to : to + units] = x[:, lo : lo + units]
            self._live_cap -= old
            self._start[slot] = to
            self._cap[slot] = cap
            self._maybe_compact()
            return
        old_cap = self._cap[slots]
        caps = np.maximum(need, np.maximum((old_cap * _GROWTH).astype(np.int64) + 1, _MIN_SLOT))
        src = self._start[slots].copy()
        dst = self._alloc(caps)
        self._move(src, dst, self._units[slots])
        self._live_cap -= int(old_cap.sum())
        self._start[slots] = dst
        self._cap[slots] = caps
        self._maybe_compact()

    def _maybe_compact(self) -> None:
        if self._end - self._live_cap > max(self._live_cap, _COMPACT_MIN_UNITS):
            self.compact()

    def compact(self) -> None:
        """Pack the live slots to the front of fresh flat arrays, in storage order (holes dropped)."""
        slots = np.fromiter(self._slot_of.values(), dtype=np.int64, count=len(self._slot_of))
        slots = slots[np.argsort(self._start[slots], kind="stable")]
        caps = self._cap[slots]
        dst = np.concatenate([[0], np.cumsum(caps)[:-1]]).astype(np.int64)
        total = int(caps.sum())
        old_p, old_d = self._pareto, self._drift
        size = max(int(total * _GROWTH) + 1, 64)
        self._pareto, self._drift = np.zeros((self.heads, size)), np.zeros((self.heads, size))
        seg, within = ragged_arange(self._units[slots])
        s, d = self._start[slots][seg] + within, dst[seg] + within
        _put(self._pareto, d, np.take(old_p, s, axis=1))
        _put(self._drift, d, np.take(old_d, s, axis=1))
        self._start[slots] = dst
        self._end = self._live_cap = total

    # --- contexts -----------------------------------------------------------------------------------
    def add(self, context_id: int, n_tokens: int) -> None:
        """Open context ``context_id`` holding ``n_tokens`` (>= 1) prompt tokens; its first ``step`` is
        its first decode step."""
        cid = int(context_id)
        if cid in self._slot_of:
            raise ValueError(f"context {cid} is already open")
        if int(n_tokens) < 1:
            raise ValueError(f"n_tokens must be >= 1, got {n_tokens}")
        if self._free_slots:
            slot = self._free_slots.pop()
        else:
            slot = self._slot_count
            self._slot_count += 1
            if slot == self._start.size:
                grow = max(2 * slot, 8)
                for name in ("_start", "_cap", "_units", "_tokens"):
                    arr = np.zeros(grow, dtype=np.int64)
                    arr[:slot] = getattr(self, name)
                    setattr(self, name, arr)
        self._slot_of[cid] = slot
        self._listed = (b"", self._listed[1])
        if 0 <= cid < _TABLE_IDS:
            if cid >= self._table.size:
                table = np.full(min(max(2 * self._table.size, cid + 1, 64), _TABLE_IDS), -1, dtype=np.int64)
                table[: self._table.size] = self._table
                self._table = table
            self._table[cid] = slot
        units = units_for(int(n_tokens), self.block_tokens)
        cap = max(units + units // 8, _MIN_SLOT)
        self._start[slot] = self._alloc_one(cap)
        self._cap[slot] = cap
        self._units[slot] = 0
        self._tokens[slot] = 0
        self._append_one(slot, int(n_tokens))

    def remove(self, context_id: int) -> None:
        """Drop context ``context_id`` and free its storage."""
        cid = int(context_id)
        if cid not in self._slot_of:
            raise KeyError(f"unknown context {cid}")
        slot = self._slot_of.pop(cid)
        self._listed = (b"", self._listed[1])
        if 0 <= cid < _TABLE_IDS:
            self._table[cid] = -1
        cap = int(self._cap[slot])
        self._live_cap -= cap
        if int(self._start[slot]) + cap == self._end:
            self._end -= cap
        self._units[slot] = self._tokens[slot] = self._cap[slot] = 0
        self._free_slots.append(slot)
        if not self._slot_of:
            self._end = self._live_cap = 0
        self._maybe_compact()

    def append(self, context_ids: Iterable[int] | np.ndarray, new_tokens: int | Sequence[int] | np.ndarray) -> None:
        """Add ``new_tokens`` (one number, or one per context, >= 0) tokens to each listed context: draw
        their static weights, and a stationary drift for each new unit."""
        slots = self._slots(context_ids, unique=True)
        new = _as_counts(new_tokens, slots.size, "new_tokens")
        if np.count_nonzero(new < 0):
            raise ValueError("new_tokens must be >= 0")
        self._append_slots(slots, new)

    def _append_slots(self, slots: np.ndarray, new: np.ndarray) -> None:
        """``append`` for checked slot numbers and per-context token counts (>= 0)."""
        if slots.size == 1:
            self._append_one(int(slots[0]), int(new[0]))
            return
        if np.count_nonzero(new) < new.size:
            keep = new > 0
            slots, new = slots[keep], new[keep]
            if slots.size == 0:
                return
        b = self.block_tokens
        n0 = self._tokens[slots]
        u0 = self._units[slots]
        n1 = n0 + new
        u1 = (n1 + (b - 1)) // b
        outgrown = u1 > self._cap[slots]
        if np.count_nonzero(outgrown):
            self._relocate(slots[outgrown], u1[outgrown])
        pstarts = np.zeros(new.size, dtype=np.int64)  # each context's first token in the draws
        np.add.accumulate(new[:-1], out=pstarts[1:])
        p = pareto_weights(self.rng, (self.heads, int(pstarts[-1]) + int(new[-1])), self.config.tail_index)
        # The units receiving tokens, context by context in order: ``first + j`` for j < ``count``, the
        # first one partial (it already holds ``held`` > 0 tokens) or fresh, the others fresh.
        first, held = np.divmod(n0, b)
        count = u1 - first
        j, tstarts = _ragged(count)
        target = np.repeat(self._start[slots] + first, count) + j
        fresh = target[j >= np.repeat(u0 - first, count)]  # past a partial first unit
        pareto = self._rows(self._pareto)
        if b == 1:
            _put(pareto, target, self._rows(p))
        else:
            # Unit ``first + j`` takes the context's tokens from max(j * b - held, 0) on: one run of p each.
            runs = np.repeat(pstarts - held, count) + j * b
            runs[tstarts] = pstarts
            pareto[..., fresh] = 0.0
            _add(pareto, target, np.add.reduceat(self._rows(p), runs, axis=-1))
        if fresh.size:
            _put(self._rows(self._drift), fresh, self._rows(self.rng.standard_normal((self.heads, fresh.size))))
        self._tokens[slots] = n1
        self._units[slots] = u1

    def _append_one(self, slot: int, new: int) -> None:
        """``_append_slots`` for one context: scalar bookkeeping, slices of the flat arrays."""
        if new == 0:
            return
        b = self.block_tokens
        n0, u0 = int(self._tokens[slot]), int(self._units[slot])
        u1 = -(-(n0 + new) // b)
        if u1 > self._cap[slot]:
            self._relocate(np.array([slot], dtype=np.int64), np.array([u1], dtype=np.int64))
        start = int(self._start[slot])
        p = pareto_weights(self.rng, (self.heads, new), self.config.tail_index)
        first = n0 // b
        held = n0 - first * b
        lo, hi = start + first, start + u1
        if b == 1:
            self._pareto[:, lo:hi] = p
        else:
            runs = np.arange(u1 - first, dtype=np.int64) * b - held
            runs[0] = 0
            sums = np.add.reduceat(p, runs, axis=1)
            if held:
                sums[:, 0] += self._pareto[:, lo]
            self._pareto[:, lo:hi] = sums
        if u1 > u0:
            self._drift[:, start + u0 : hi] = self.rng.standard_normal((self.heads, u1 - u0))
        self._tokens[slot] = n0 + new
        self._units[slot] = u1

    # --- steps --------------------------------------------------------------------------------------
    def _gather_index(self, slots: np.ndarray) -> tuple[np.ndarray | slice, np.ndarray, np.ndarray]:
        """Storage index of the listed contexts' units (a slice for one context), their unit counts
        and the ragged offsets."""
        units = self._units[slots]
        if slots.size == 1:
            lo, u = int(self._start[slots[0]]), int(units[0])
            return slice(lo, lo + u), units, np.array((0, u), dtype=np.int64)
        offsets = np.zeros(slots.size + 1, dtype=np.int64)
        np.add.accumulate(units, out=offsets[1:])
        idx = np.repeat(self._start[slots] - offsets[:-1], units)
        idx += np.arange(idx.size, dtype=np.int64)
        return idx, units, offsets

    def step(
        self, context_ids: Iterable[int] | np.ndarray, steps: int | Sequence[int] | np.ndarray = 1
    ) -> tuple[np.ndarray, np.ndarray]:
        """Advance each listed context's drift by ``steps`` decode steps (one number or one per context,
        >= 1; exact in distribution), draw this step's jitter and background, and return
        ``(mass, offsets)``: ``mass[:, offsets[i]:offsets[i + 1]]`` is context ``i``'s mass per unit,
        shape ``(heads, units_i)``, each row summing to 1."""
        slots = self._slots(context_ids, unique=True)
        if isinstance(steps, (int, np.integer)) and not isinstance(steps, bool):
            if steps < 1:
                raise ValueError("steps must be >= 1")
            return self._step_slots(slots, int(steps))
        k = _as_counts(steps, slots.size, "steps")
        if (k < 1).any():
            raise ValueError("steps must be >= 1")
        return self._step_slots(slots, k)

    def _step_slots(self, slots: np.ndarray, k: int | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``step`` for checked slot numbers and step counts (one for all, or one per context)."""
        if slots.size == 0:
            return np.zeros((self.heads, 0)), np.zeros(1, dtype=np.int64)
        cfg = self.config
        idx, units, offsets = self._gather_index(slots)
        drift = _take(self._rows(self._drift), idx)  # a view for one context, a copy otherwise
        shape = drift.shape
        if isinstance(k, np.ndarray) and (k.size == 1 or not np.count_nonzero(k != k[0])):
            k = int(k[0])
        if isinstance(k, int):
            a = cfg.drift_corr**k
            drift *= a
            drift += math.sqrt(1.0 - a * a) * self.rng.standard_normal(shape)
        else:
            a_unit = np.repeat(cfg.drift_corr ** k.astype(np.float64), units)
            drift *= a_unit
            drift += np.sqrt(1.0 - a_unit * a_unit) * self.rng.standard_normal(shape)
        if not isinstance(idx, slice):
            _put(self._rows(self._drift), idx, drift)
        if cfg.jitter_sigma > 0:
            log_mod = self.rng.standard_normal(shape)
            log_mod *= cfg.jitter_sigma
            log_mod += cfg.drift_sigma * drift
        else:
            log_mod = cfg.drift_sigma * drift
        return self._mass(slots, idx, units, offsets, log_mod), offsets

    def _rows(self, x: np.ndarray) -> np.ndarray:
        """``x`` (heads, n) as the step computes on it: its one row, 1-D, when there is one head (fewer
        and cheaper array operations; the same values, unit by unit and context by context)."""
        return x[0] if self.heads == 1 else x

    def mass_of(self, context_ids: Iterable[int] | np.ndarray, log_mod: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mass per unit for a given log-modulation (the ragged ``(heads, units)`` layout of ``step``),
        without advancing anything but the background's random draw when there is no modulation."""
        slots = self._slots(context_ids, unique=True)
        idx, units, offsets = self._gather_index(slots)
        log_mod = np.asarray(log_mod, dtype=np.float64)
        if log_mod.shape != (self.heads, int(offsets[-1])):
            raise ValueError(f"log_mod must have shape {(self.heads, int(offsets[-1]))}, got {log_mod.shape}")
        return self._mass(slots, idx, units, offsets, self._rows(log_mod)), offsets

    def _mass(
        self,
        slots: np.ndarray,
        idx: np.ndarray | slice,
        units: np.ndarray,
        offsets: np.ndarray,
        log_mod: np.ndarray,
    ) -> np.ndarray:
        """The mixture of the module docs for the gathered units, ``(heads, units)``; each context's rows
        sum to 1. ``log_mod`` has the units on its last axis (see ``_rows``)."""
        cfg = self.config
        b = self.block_tokens
        starts = offsets[:-1]
        one = units.size == 1

        def spread(per_context: np.ndarray) -> np.ndarray:  # per context -> broadcastable to units
            return per_context if one else per_context.repeat(units, axis=-1)

        if not one:
            seg_max = np.maximum.reduceat(log_mod, starts, axis=-1)
        elif log_mod.ndim > 1:
            seg_max = np.maximum.reduce(log_mod, axis=-1, keepdims=True)
        else:
            seg_max = np.maximum.reduce(log_mod)
        modulation = np.exp(log_mod - spread(seg_max))
        content_share = 1.0 - cfg.sink_mass - cfg.recent_mass - cfg.background_mass
        out = _take(self._rows(self._pareto), idx) * modulation
        out *= spread(content_share / _segment_sum(out, starts))

        n = self._tokens[slots]
        tail = n % b  # the key of the tables (tokens in the last unit, 0 for a full one)
        last = offsets[1:] - 1  # each context's last unit
        if cfg.recent_mass > 0:
            # Each context's window: its last ``count`` units, weights tabulated by ``tail``, j = 0 for
            # the last unit.
            row = self._recent_row
            if one:
                u, key = int(units[0]), int(tail[0])
                c = min(int(self._recent_count[key]), u)
                rw = self._recent_table[key * row : key * row + c][::-1] * modulation[..., u - c :]
                out[..., u - c :] += rw * (cfg.recent_mass / _segment_sum(rw, starts))
            else:
                count = np.minimum(self._recent_count[tail], units)
                j, rstarts = _ragged(count)
                local = np.repeat(last, count) - j
                rw = self._recent_table[np.repeat(tail * row, count) + j] * _take(modulation, local)
                rw *= (cfg.recent_mass / _segment_sum(rw, rstarts)).repeat(count, axis=-1)
                _add(out, local, rw)
        if cfg.sink_tokens and cfg.sink_mass > 0:
            if cfg.sink_tokens <= b:  # every context's sinks lie in its first unit
                if one:
                    out[..., :1] += cfg.sink_mass
                else:
                    _add(out, starts, cfg.sink_mass)
            else:
                sinks = np.minimum(cfg.sink_tokens, n)
                sseg, kk = ragged_arange(-(-sinks // b))
                held = np.minimum(b, sinks[sseg] - kk * b)  # sink tokens in each sink unit
                out[..., starts[sseg] + kk] += cfg.sink_mass * held / sinks[sseg]
        if cfg.background_mass > 0:
            out += self._background(log_mod, tail, starts, last, spread)
        return out if out.ndim == 2 else out[np.newaxis]

    def _recent_weights(self, last_tokens: np.ndarray, width: np.ndarray | int, j: np.ndarray) -> np.ndarray:
        """Recent-window weight (unnormalised) of the unit ``j`` units before a context's last one, whose
        last unit holds ``last_tokens`` tokens and whose window spans the newest ``width`` tokens: the
        sum of ``(recent_offset + d)^-recent_decay`` over the unit's tokens at distances ``d < width``."""
        b = self.block_tokens
        hi = last_tokens + j * b  # the unit's tokens lie at distances [lo, hi) from the newest token
        lo = np.maximum(hi - b, 0)
        cum = self._recent_cum
        return cum[np.minimum(hi, width)] - cum[np.minimum(lo, width)]

    def _background(
        self,
        log_mod: np.ndarray,
        tail: np.ndarray,
        starts: np.ndarray,
        last: np.ndarray,
        spread: Callable[[np.ndarray], np.ndarray],
    ) -> np.ndarray:
        """This step's diffuse mass per unit (the layout of ``log_mod``), each context's rows summing to
        ``background_mass``.

        A token's weight is exp(background_sigma * z), with ``z`` its standardised log-modulation (the
        same slow drift and fresh noise that move its heavy-hitter weight: one attention logit), or
        fresh normals when there is no modulation. A block's weight stands for the sum over its tokens:
        one lognormal with the same mean and variance (Fenton-Wilkinson moment matching),
        ``k * exp(sqrt(s2) z - s2 / 2)`` with ``s2 = log(1 + (exp(sigma^2) - 1) / k)`` for ``k`` tokens.
        ``tail``: each context's tokens in its last unit modulo ``block_tokens``; ``starts``, ``last``:
        each context's first and last unit.
        """
        cfg = self.config
        # z * z_scale is the standardised log-modulation (the scale is folded into one multiply).
        z = log_mod if math.hypot(cfg.drift_sigma, cfg.jitter_sigma) > 0 else self.rng.standard_normal(log_mod.shape)
        s2b = self._s2b
        w = np.exp(z * (math.sqrt(s2b) * self._z_scale))
        if self.block_tokens > 1:
            # Full blocks share k = b, so their common factor b * exp(-s2/2) is dropped (it cancels
            # in the normalisation); a partial last block (k tokens) is rescaled relative to it:
            # (k / b) * exp(sqrt(s2) * z_scale * z - s2 / 2 + s2b / 2), factors tabulated.
            slope, shift = self._block_slope[tail], self._block_shift[tail]
            _put(w, last, self._block_gain[tail] * np.exp(slope * _take(z, last) - shift + s2b / 2))
        w *= spread(cfg.background_mass / _segment_sum(w, starts))
        return w


class ContextBatch(Protocol):
    """The batch interface the simulator drives: the generator's :class:`LocalityBatch`, or a
    :class:`StreamBatch` over any other :class:`LocalitySource`."""

    def add(self, context_id: int, n_tokens: int) -> None:
        """Open a context holding ``n_tokens`` prompt tokens."""
        ...

    def remove(self, context_id: int) -> None:
        """Drop a context."""
        ...

    def append(self, context_ids: Iterable[int] | np.ndarray, new_tokens: int | Sequence[int] | np.ndarray) -> None:
        """Add tokens to each listed context."""
        ...

    def tokens(self, context_ids: Iterable[int] | np.ndarray) -> np.ndarray:
        """Tokens now in each listed context."""
        ...

    def step(
        self, context_ids: Iterable[int] | np.ndarray, steps: int | Sequence[int] | np.ndarray = 1
    ) -> tuple[np.ndarray, np.ndarray]:
        """Advance the listed contexts ``steps`` decode steps; ragged ``(mass, offsets)``."""
        ...

    def __contains__(self, context_id: object) -> bool: ...

    def __len__(self) -> int: ...


class StreamBatch:
    """:class:`ContextBatch` over one stream per context of any :class:`LocalitySource` (e.g. a recorded
    trace's replay), stepped one by one: the fallback for sources with no vectorised form.

    ``steps`` > 1 reads ``steps - 1`` steps that are thrown away before the one returned, so a replay
    advances through its recording as many steps as the simulator did.
    """

    def __init__(
        self, source: LocalitySource, rng: np.random.Generator, *, heads: int = 1, block_tokens: int = 1
    ) -> None:
        self.source = source
        self.rng = rng
        self.heads = heads
        self.block_tokens = block_tokens
        self._streams: dict[int, LocalityStream] = {}
        self._pending: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._streams)

    def __contains__(self, context_id: object) -> bool:
        return context_id in self._streams

    def add(self, context_id: int, n_tokens: int) -> None:
        """Open a context holding ``n_tokens`` prompt tokens (a new stream of the source)."""
        cid = int(context_id)
        if cid in self._streams:
            raise ValueError(f"context {cid} is already open")
        self._streams[cid] = self.source.start(int(n_tokens), self.rng, heads=self.heads,
                                               block_tokens=self.block_tokens)
        self._pending[cid] = 0

    def remove(self, context_id: int) -> None:
        """Drop a context."""
        cid = int(context_id)
        del self._streams[cid]
        del self._pending[cid]

    def _ids(self, context_ids: Iterable[int] | np.ndarray) -> list[int]:
        ids = [int(c) for c in (context_ids.tolist() if isinstance(context_ids, np.ndarray) else context_ids)]
        for c in ids:
            if c not in self._streams:
                raise KeyError(f"unknown context {c}")
        if len(set(ids)) != len(ids):
            raise ValueError("a context is listed twice")
        return ids

    def append(self, context_ids: Iterable[int] | np.ndarray, new_tokens: int | Sequence[int] | np.ndarray) -> None:
        """Add tokens to each listed context (applied at its next step)."""
        ids = self._ids(context_ids)
        new = _as_counts(new_tokens, len(ids), "new_tokens")
        if np.any(new < 0):
            raise ValueError("new_tokens must be >= 0")
        for c, m in zip(ids, new.tolist(), strict=True):
            self._pending[c] += m

    def tokens(self, context_ids: Iterable[int] | np.ndarray) -> np.ndarray:
        """Tokens now in each listed context."""
        ids = self._ids(context_ids)
        return np.array([self._streams[c].n_tokens + self._pending[c] for c in ids], dtype=np.int64)

    def step(
        self, context_ids: Iterable[int] | np.ndarray, steps: int | Sequence[int] | np.ndarray = 1
    ) -> tuple[np.ndarray, np.ndarray]:
        """Step each listed stream ``steps`` times (the pending tokens appended first); ragged result."""
        ids = self._ids(context_ids)
        k = _as_counts(steps, len(ids), "steps")
        if np.any(k < 1):
            raise ValueError("steps must be >= 1")
        parts = []
        for c, kc in zip(ids, k.tolist(), strict=True):
            stream = self._streams[c]
            mass = stream.step(self._pending[c])
            self._pending[c] = 0
            for _ in range(kc - 1):
                mass = stream.step(0)
            parts.append(mass)
        offsets = np.zeros(len(parts) + 1, dtype=np.int64)
        np.cumsum([p.shape[1] for p in parts], out=offsets[1:])
        return (np.concatenate(parts, axis=1) if parts else np.zeros((self.heads, 0))), offsets


def open_batch(
    source: LocalitySource, rng: np.random.Generator, *, heads: int = 1, block_tokens: int = 1
) -> ContextBatch:
    """A :class:`ContextBatch` for ``source``: the vectorised :class:`LocalityBatch` for the generator,
    else a :class:`StreamBatch` of its streams."""
    from pamkv.workloads.locality.model import LocalityModel

    if isinstance(source, LocalityModel):
        return LocalityBatch(source.config, rng, heads=heads, block_tokens=block_tokens)
    return StreamBatch(source, rng, heads=heads, block_tokens=block_tokens)
