"""The tiered KV store: blocks of requests spread over the devices of several memory tiers.

Pure bookkeeping in the spirit of vLLM's block manager, held as numpy struct-of-arrays (one entry per
block, never one Python object per token):

* a request's KV is a list of blocks of ``block_tokens`` tokens; every block sits on exactly one device
  of one tier, in one slot of one unit (bank group / SSD channel), which fixes its start bank, row and
  column (:mod:`pamkv.kv.geometry`);
* per token an importance ``I = lam*S + (1-lam)*I`` from the step's selection scores (§6.3), per unit
  the tokens read over the last ``window`` steps (§6.1);
* a placement policy (:mod:`pamkv.kv.policies`) decides where new blocks go and what moves; moves are
  validated as a whole and applied atomically, and bytes are counted per link (tier pair);
* optionally the real K/V tensors per block and layer (the functional path); the simulator runs the
  same code without them.

Every refused operation (a full store, an impossible plan) raises a :class:`~pamkv.kv.errors.KVStoreError`
and leaves the store unchanged. ``check()`` verifies every invariant.

Costs (the simulator calls the store with ~10^5 live blocks): each block's importance (the sum over its
tokens) is kept up to date by the operations that change it, never summed again for a query; a policy
sees a view whose per-block arrays are gathered only when it reads them; appending a few blocks costs
O(new blocks + units of a tier) for placement and mapping (free block ids, free slots and activity
totals are kept, not searched for). The results are exactly those of recomputing everything.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from pamkv.hardware.layout import UnitLoad
from pamkv.kv.errors import CapacityError, InvariantError, KVStoreError, PlanError
from pamkv.kv.mapping import ActivityWindow, round_robin, sequential, unit_load, waterfill, waterfill_candidates
from pamkv.kv.migration import LinkTraffic, MigrationPlan, MigrationReport, link_name
from pamkv.kv.policies import LayeredPolicy, NewBlocks, PlacementPolicy, PolicyView
from pamkv.kv.spec import StoreSpec

_I64 = np.int64
_FULL = 2**62  # added to the rank key of a unit with no free slot: it ranks after every unit with room


@dataclass(frozen=True)
class DevicePart:
    """The tokens of one request (or a selection of them) that one device holds.

    ``positions``: token indices in the request, ascending; ``k``/``v``: their K/V for the layer asked
    (``[tokens, kv_heads, head_dim]``) when the store keeps payload and a layer was given.
    """

    tier: int
    tier_name: str
    device: int
    positions: np.ndarray
    k: np.ndarray | None = None
    v: np.ndarray | None = None


@dataclass(frozen=True)
class TokenLocation:
    """Where tokens are: block id, offset in block, tier, device (in its tier), unit, bank (int64 arrays)."""

    block: np.ndarray
    offset: np.ndarray
    tier: np.ndarray
    device: np.ndarray
    unit: np.ndarray
    bank: np.ndarray


def _like(requests: np.ndarray | Sequence[int] | int, positions: np.ndarray) -> np.ndarray:
    """Request ids as int64 with the shape of ``positions`` (one id broadcast to all)."""
    reqs = np.asarray(requests, dtype=_I64)
    return reqs if reqs.shape == positions.shape else np.broadcast_to(reqs, positions.shape)


def _ceil_div(a: np.ndarray, b: int) -> np.ndarray:
    """``ceil(a / b)`` for integers ``a`` and ``b > 0`` (a shift when ``b`` is a power of two)."""
    if b & (b - 1) == 0:
        return (a + (b - 1)) >> (b.bit_length() - 1)
    return -(-a // b)


def _split(pos: np.ndarray, b: int) -> tuple[np.ndarray, np.ndarray]:
    """``divmod(pos, b)`` for non-negative ``pos`` (a shift and a mask when ``b`` is a power of two)."""
    if b & (b - 1) == 0:
        return pos >> (b.bit_length() - 1), pos & (b - 1)
    return np.divmod(pos, b)


def _outside(pos: np.ndarray, length: np.ndarray) -> bool:
    """Whether some ``pos[i]`` lies outside ``0 .. length[i] - 1`` (``length >= 0``): as unsigned, a negative
    position is huge, so one comparison checks both ends."""
    return bool(np.count_nonzero(pos.view(np.uint64) >= length.view(np.uint64)))


def _sorted_unique(a: np.ndarray) -> np.ndarray:
    s = np.sort(a)
    return s[np.concatenate(([True], s[1:] != s[:-1]))] if s.size else s


def _has_duplicates(a: np.ndarray) -> bool:
    s = np.sort(a)
    return bool((s[1:] == s[:-1]).any())


def _runs(sorted_values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values, start index, length) of the runs of equal values in a sorted array."""
    if sorted_values.size == 0:
        return sorted_values, np.zeros(0, dtype=_I64), np.zeros(0, dtype=_I64)
    starts = np.flatnonzero(np.concatenate(([True], sorted_values[1:] != sorted_values[:-1])))
    return sorted_values[starts], starts, np.diff(np.append(starts, sorted_values.size))


def _present(values: np.ndarray) -> list[int]:
    """The distinct small non-negative ints in ``values`` (device ids), ascending."""
    return np.flatnonzero(np.bincount(values)).tolist() if values.size else []


def _merge_sorted(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The union of two ascending arrays of distinct values (none in both), ascending, in O(len(a) + len(b))."""
    if b.size == 0:
        return a
    if a.size == 0:
        return b.copy()
    if a[-1] < b[0]:
        return np.concatenate((a, b))
    if a.size < 4096:
        return np.sort(np.concatenate((a, b)))
    out = np.empty(a.size + b.size, dtype=a.dtype)
    at = np.searchsorted(a, b) + np.arange(b.size)
    rest = np.ones(out.size, dtype=bool)
    rest[at] = False
    out[at] = b
    out[rest] = a
    return out


def _ranges(starts: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(owner index, value) pairs for the concatenated ranges ``starts[i] .. starts[i]+counts[i]-1``."""
    if counts.size == 1:  # one request (a prefill)
        first, count = int(starts[0]), int(counts[0])
        return np.zeros(count, dtype=_I64), np.arange(first, first + count, dtype=_I64)
    if counts.size and counts.max() <= 1:  # ranges of at most one value (a decode step)
        owner = np.flatnonzero(counts)
        return owner, starts[owner]
    owner = np.repeat(np.arange(counts.size), counts)
    first = np.cumsum(counts) - counts
    return owner, np.repeat(starts, counts) + (np.arange(int(counts.sum())) - np.repeat(first, counts))


_VIEW_FIELDS = frozenset(("tier", "importance", "tokens", "birth", "logical", "tail"))


class _DeferredView(PolicyView):
    """A :class:`PolicyView` whose per-block arrays are gathered from the store when first read.

    A policy that only needs ``capacity``/``used`` (new blocks that fit in free room) then costs
    O(tiers), not O(blocks). The store builds one inside a call and drops it before changing anything.
    """

    _load: Callable[[str], np.ndarray]

    def __init__(self, load: Callable[[str], np.ndarray], capacity: np.ndarray, used: np.ndarray) -> None:
        object.__setattr__(self, "_load", load)
        object.__setattr__(self, "capacity", capacity)
        object.__setattr__(self, "used", used)

    def __getattr__(self, name: str) -> np.ndarray:
        if name not in _VIEW_FIELDS:
            raise AttributeError(name)
        value = self._load(name)
        object.__setattr__(self, name, value)
        return value


class TieredKVStore:
    """Blocks of requests over tiered devices; see the module docstring.

    ``policy`` defaults to :class:`~pamkv.kv.policies.LayeredPolicy` (fill top-down).
    """

    def __init__(self, spec: StoreSpec, policy: PlacementPolicy | None = None) -> None:
        self.spec = spec
        self.policy: PlacementPolicy = policy if policy is not None else LayeredPolicy()
        self.block_tokens = spec.block_tokens
        self.bytes_per_token = spec.bytes_per_token
        self.tier_names = [t.name for t in spec.tiers]
        self.geometry = [spec.geometry(i) for i in range(len(spec.tiers))]
        self.capacity = spec.capacity_blocks()
        self._capacity_total = int(self.capacity.sum())
        ntiers = len(spec.tiers)

        dev_tier, dev_local, dev_units = [], [], []
        for t, ts in enumerate(spec.tiers):
            for d in range(ts.devices):
                dev_tier.append(t)
                dev_local.append(d)
                dev_units.append(self.geometry[t].layout.units)
        self.dev_tier = np.array(dev_tier, dtype=_I64)
        self.dev_local = np.array(dev_local, dtype=_I64)
        self.unit_off = np.concatenate(([0], np.cumsum(dev_units))).astype(_I64)
        self.unit_dev = np.repeat(np.arange(len(dev_units)), dev_units).astype(_I64)
        first_dev = np.concatenate(([0], np.cumsum([t.devices for t in spec.tiers]))).astype(_I64)
        self._tier_devs = [(int(first_dev[t]), int(first_dev[t + 1])) for t in range(ntiers)]
        self.unit_cap = np.concatenate(
            [self.geometry[t].unit_slots for t in self.dev_tier.tolist()]
        ).astype(_I64)
        self.unit_used = np.zeros_like(self.unit_cap)
        self._unit_hw = np.zeros_like(self.unit_cap)  # 1 + highest slot ever used: free slots lie below it or after
        self._unit_lo = np.zeros_like(self.unit_cap)  # every slot below it is taken
        # the block in each slot (-1 free, -2 not a slot): one flat array, unit u's slots from _unit_base[u]
        width = np.array([self.geometry[t].max_unit_slots for t in self.dev_tier.tolist()], dtype=_I64)
        self._unit_width = np.repeat(width, dev_units)
        self._unit_base = np.concatenate(([0], np.cumsum(self._unit_width)[:-1])).astype(_I64)
        self._own = np.full(int(self._unit_width.sum()), -1, dtype=_I64)
        self._owner: list[np.ndarray] = []  # per device: a [units, slots] view of self._own
        for g, t in enumerate(self.dev_tier.tolist()):
            geo = self.geometry[t]
            start = int(self._unit_base[self.unit_off[g]])
            own = self._own[start: start + geo.layout.units * geo.max_unit_slots].reshape(geo.layout.units, -1)
            own[np.arange(geo.max_unit_slots)[None, :] >= geo.unit_slots[:, None]] = -2
            self._owner.append(own)
        self.activity = ActivityWindow(int(self.unit_off[-1]), spec.window)
        self._init_rank_keys(first_dev)
        self._tier_banks = np.array([g.layout.banks_per_unit for g in self.geometry], dtype=_I64)
        self._banks = int(self._tier_banks[0]) if (self._tier_banks == self._tier_banks[0]).all() else 0  # 0: per tier
        self._rr = [0] * ntiers

        self.used = np.zeros(ntiers, dtype=_I64)
        self.tier_tokens = np.zeros(ntiers, dtype=_I64)
        self.last_reads = np.zeros(ntiers, dtype=_I64)
        self.traffic = MigrationReport()
        self.steps = 0
        self._birth = 0

        self._bcap = 0
        self._b: dict[str, np.ndarray] = {}
        self._imp = np.zeros((0, self.block_tokens))  # per token
        self._bimp = np.zeros(0)  # per block: exactly self._imp[block].sum(), kept up to date
        # block ids in use, ascending: kept up to date while few, else rebuilt when next needed (None)
        self._live_ids: np.ndarray | None = np.zeros(0, dtype=_I64)
        self._nlive = 0
        self._free_lo = 0  # every block id below it is in use
        self._k: np.ndarray | None = None
        self._v: np.ndarray | None = None
        self._rslot: dict[int, int] = {}
        self._index: tuple[np.ndarray, np.ndarray] | None = None  # sorted ids -> rows, rebuilt lazily
        self._by_id: np.ndarray | None = np.zeros(0, dtype=_I64)  # row of each request id (-1: none) while
        # the ids are small non-negative integers (None: use the sorted index)
        self._rcap = 0
        self._free_rows: list[int] = []  # heap of the block-table rows no request holds
        self._r_id = np.zeros(0, dtype=_I64)
        self._r_len = np.zeros(0, dtype=_I64)
        self._r_nb = np.zeros(0, dtype=_I64)
        self._r_table = np.full((0, 1), -1, dtype=_I64)
        self._grow_blocks(64)
        self._grow_requests(8, 1)

    def _init_rank_keys(self, first_dev: np.ndarray) -> None:
        """Per unit, the key the activity mapping ranks it by, kept up to date (see :meth:`_least_active`).

        ``(window reads, blocks held, index in its tier)`` packed into one int64 — reads times
        ``bound * span``, blocks times ``span``, plus the index, where ``span`` is the tier's unit count and
        ``bound`` exceeds any unit's slots — plus :data:`_FULL` when the unit has no free slot. Kept by
        exact integer updates (wrapping, so exact modulo 2**64); a tier's keys are used only while its
        window reads bound every key below 2**62.
        """
        ntiers = len(self.geometry)
        tier_u0 = self.unit_off[first_dev]
        self._tier_units = [(int(tier_u0[t]), int(tier_u0[t + 1])) for t in range(ntiers)]
        unit_tier = self.dev_tier[self.unit_dev]
        span = np.diff(tier_u0)[unit_tier]
        bound = np.array([g.max_unit_slots + 1 for g in self.geometry], dtype=_I64)[unit_tier]
        self._key_used = span
        self._key_read = bound * span
        self._key_index = np.arange(unit_tier.size, dtype=_I64) - tier_u0[unit_tier]
        self._unit_in_dev = np.arange(unit_tier.size, dtype=_I64) - self.unit_off[self.unit_dev]
        self._ukey = self._fresh_keys(np.arange(unit_tier.size, dtype=_I64))
        self._tier_bound = [g.max_unit_slots + 1 for g in self.geometry]
        # per tier: (start bank, row, column) of every slot of a unit, when units are small enough to tabulate
        self._slot_table = [g.slot_position(np.arange(g.max_unit_slots)) if g.max_unit_slots <= 1 << 16 else None
                            for g in self.geometry]
        self._guess = [-1] * ntiers  # per tier: a key value with somewhat more than the next call's units below it
        # SSD tiers interleave channels even under the activity mapping (PAPER.md §6.1)
        mapping = self.spec.mapping
        self._tier_mapping = ["round-robin" if mapping == "activity" and t.kind == "ssd" else mapping
                              for t in self.spec.tiers]

    def _fresh_keys(self, units: np.ndarray) -> np.ndarray:
        """The rank keys of ``units`` computed from scratch (what :attr:`_ukey` keeps)."""
        used = self.unit_used[units]
        key = self.activity.at(units) * self._key_read[units] + used * self._key_used[units] + self._key_index[units]
        return key + np.where(used >= self.unit_cap[units], _FULL, 0)

    # --- sizes and growth --------------------------------------------------------------------------

    # nz: tokens of the block whose importance may be non-zero (an upper bound); nzoff: the offset of
    # that token when nz == 1 — then the block's importance is that one token's, decayed in place.
    _BLOCK_FIELDS = ("rslot", "logical", "fill", "tier", "dev", "unit", "slot", "bank", "row", "col", "birth",
                     "nz", "nzoff")

    def _grow_blocks(self, need: int) -> None:
        if need <= self._bcap:
            return
        cap = max(need, 2 * self._bcap)
        old = self._bcap
        for f in self._BLOCK_FIELDS:
            arr = np.full(cap, -1 if f == "rslot" else 0, dtype=_I64)
            if old:
                arr[:old] = self._b[f]
            self._b[f] = arr
        imp = np.zeros((cap, self.block_tokens))
        imp[:old] = self._imp
        self._imp = imp
        bimp = np.zeros(cap)
        bimp[:old] = self._bimp
        self._bimp = bimp
        p = self.spec.payload
        if p is not None:
            shape = (self.spec.layers, cap, self.block_tokens, p.kv_heads, p.head_dim)
            for name in ("_k", "_v"):
                arr = np.zeros(shape, dtype=p.dtype)
                prev = getattr(self, name)
                if prev is not None:
                    arr[:, :old] = prev
                setattr(self, name, arr)
        self._bcap = cap

    def _grow_requests(self, rows: int, cols: int) -> None:
        r, c = self._r_table.shape
        if rows <= self._rcap and cols <= c:
            return
        nr = self._rcap if rows <= self._rcap else max(rows, 2 * self._rcap)
        nc = c if cols <= c else max(cols, 2 * c)
        table = np.full((nr, nc), -1, dtype=_I64)
        table[:r, :c] = self._r_table
        self._r_table = table
        if nr > self._rcap:
            pad = nr - self._rcap
            self._r_id = np.concatenate((self._r_id, np.full(pad, -1, dtype=_I64)))
            self._r_len = np.concatenate((self._r_len, np.zeros(pad, dtype=_I64)))
            self._r_nb = np.concatenate((self._r_nb, np.zeros(pad, dtype=_I64)))
            for row in range(self._rcap, nr):  # ascending: a valid heap extended
                heapq.heappush(self._free_rows, row)
            self._rcap = nr

    # --- queries ----------------------------------------------------------------------------------

    @property
    def requests(self) -> list[int]:
        """Ids of the requests held, ascending."""
        return sorted(self._rslot)

    def length(self, request: int) -> int:
        """Tokens held for ``request`` (0 if unknown)."""
        slot = self._rslot.get(int(request))
        return 0 if slot is None else int(self._r_len[slot])

    def free_blocks(self) -> np.ndarray:
        """Free blocks per tier, int64 ``[tiers]``."""
        return self.capacity - self.used

    def blocks_needed(self, requests: Sequence[int] | np.ndarray, counts: Sequence[int] | np.ndarray) -> int:
        """New blocks that appending ``counts`` tokens to ``requests`` would allocate."""
        reqs, cnt = self._batch(requests, counts)
        rows = self._rows_of(reqs)
        cur = np.where(rows >= 0, self._r_len[np.maximum(rows, 0)], 0)
        bt = self.block_tokens
        return int((_ceil_div(cur + cnt, bt) - _ceil_div(cur, bt)).sum())

    def _slot(self, request: int) -> int:
        try:
            return self._rslot[int(request)]
        except KeyError:
            raise KVStoreError(f"unknown request {request}") from None

    def _live(self) -> np.ndarray:
        """Block ids in use, ascending (do not modify)."""
        if self._live_ids is None:
            self._live_ids = np.flatnonzero(self._b["rslot"][: self._bcap] >= 0)
        return self._live_ids

    def _keep_live(self) -> bool:
        """Whether to update the live id list in place (few live blocks) rather than rebuild it later."""
        return self._live_ids is not None and 16 * self._nlive < self._bcap

    def _dense(self) -> int | None:
        """The live block count when the live ids are exactly ``0..count-1`` (no freed gaps), else ``None``."""
        live = self._live()
        n = live.size
        return n if n == 0 or live[-1] == n - 1 else None

    def _view_field(self, name: str, blocks_per_request: np.ndarray | Callable[[], np.ndarray],
                    copy: bool) -> np.ndarray:
        """One per-block array of the view: a read-only slice when the live ids have no gaps, else a gather."""
        n = self._dense()
        sel = slice(0, n) if n is not None else self._live()
        b = self._b
        if name == "tail":
            nb = blocks_per_request() if callable(blocks_per_request) else blocks_per_request
            return nb[b["rslot"][sel]] - 1
        arr = self._bimp[sel] if name == "importance" else b["fill" if name == "tokens" else name][sel]
        if n is None or copy:
            return arr.copy() if n is not None else arr
        arr.flags.writeable = False
        return arr

    def view(self, blocks_per_request: np.ndarray | None = None) -> tuple[PolicyView, np.ndarray]:
        """What a policy sees (the live blocks as arrays) and the block id of each view index.

        ``blocks_per_request`` (per block-table row) overrides the request lengths used for ``tail``
        — during an append, the lengths after it.
        """
        live = self._live().copy()
        nb = self._r_nb if blocks_per_request is None else blocks_per_request
        fields = {name: self._view_field(name, nb, copy=True) for name in sorted(_VIEW_FIELDS)}
        return PolicyView(capacity=self.capacity.copy(), used=self.used.copy(), **fields), live

    def _deferred_view(self, blocks_per_request: np.ndarray | Callable[[], np.ndarray]) -> PolicyView:
        """:meth:`view` with its per-block arrays gathered on first use (valid until the store changes)."""
        return _DeferredView(lambda name: self._view_field(name, blocks_per_request, copy=False),
                             self.capacity.copy(), self.used.copy())

    def locate(self, requests: np.ndarray | Sequence[int] | int,
               positions: np.ndarray | Sequence[int]) -> TokenLocation:
        """Where each token ``(requests[i], positions[i])`` is; ``requests`` may be one id for all."""
        pos = np.asarray(positions, dtype=_I64).ravel()
        reqs = _like(requests, pos)
        slots = self._slots_of(reqs)
        if _outside(pos, self._r_len[slots]):
            raise KVStoreError("a token position is outside its request")
        logical, off = _split(pos, self.block_tokens)
        blk = self._r_table[slots, logical]
        b = self._b
        tier = b["tier"][blk]
        banks = self._banks if self._banks else self._tier_banks[tier]
        bank = (b["slot"][blk] + off) % banks
        return TokenLocation(blk, off, tier, self.dev_local[b["dev"][blk]], b["unit"][blk], bank)

    def _rows_of(self, reqs: np.ndarray) -> np.ndarray:
        """Block-table rows of request ids, -1 for an unknown id (a table indexed by id when the ids are
        small non-negative integers, else a search in the sorted id list)."""
        reqs = np.asarray(reqs, dtype=_I64)
        by_id = self._by_id
        # as unsigned, a negative id is huge: one maximum checks 0 <= id < size
        if by_id is not None and reqs.size and reqs.view(np.uint64).max() < by_id.size:
            return by_id[reqs]
        if self._index is None:
            ids = np.array(sorted(self._rslot), dtype=_I64)
            self._index = (ids, np.array([self._rslot[r] for r in ids.tolist()], dtype=_I64))
        ids, rows = self._index
        if ids.size == 0:
            return np.full(reqs.shape, -1, dtype=_I64)
        at = np.minimum(np.searchsorted(ids, reqs), ids.size - 1)
        return np.where(ids[at] == reqs, rows[at], -1)

    def _set_row(self, request: int, row: int) -> None:
        """Record ``request``'s block-table row (-1: gone) in the id table, or give the table up."""
        by_id = self._by_id
        if by_id is None:
            return
        if 0 <= request < by_id.size:
            by_id[request] = row
        elif 0 <= request < 4 * len(self._rslot) + 4096:
            grown = np.full(max(request + 1, 2 * by_id.size), -1, dtype=_I64)
            grown[: by_id.size] = by_id
            grown[request] = row
            self._by_id = grown
        else:
            self._by_id = None

    def _slots_of(self, reqs: np.ndarray) -> np.ndarray:
        """Block-table rows of request ids; raises :class:`KVStoreError` for an unknown id."""
        reqs = np.asarray(reqs, dtype=_I64)
        rows = self._rows_of(reqs)
        if np.count_nonzero(rows < 0):
            raise KVStoreError(f"unknown request {int(reqs[rows < 0].flat[0])}")
        return rows

    def block_table(self, request: int) -> dict[str, np.ndarray]:
        """The request's block table: per logical block its id, tier, device, unit, bank, row, col, fill."""
        slot = self._slot(request)
        ids = self._r_table[slot, : self._r_nb[slot]]
        b = self._b
        return {
            "block": ids.copy(), "tier": b["tier"][ids], "device": self.dev_local[b["dev"][ids]],
            "unit": b["unit"][ids], "bank": b["bank"][ids], "row": b["row"][ids], "col": b["col"][ids],
            "tokens": b["fill"][ids],
        }

    def read(self, request: int, positions: np.ndarray | Sequence[int] | None = None,
             layer: int | None = None) -> list[DevicePart]:
        """The request's tokens (all, or ``positions``) split by the device holding them.

        Parts come in (tier, device) order; with ``layer`` and payload each part carries its K/V.
        """
        slot = self._slot(request)
        n = int(self._r_len[slot])
        pos = np.arange(n, dtype=_I64) if positions is None else _sorted_unique(np.asarray(positions, dtype=_I64))
        if pos.size and (pos[0] < 0 or pos[-1] >= n):
            raise KVStoreError(f"request {request}: positions must lie in 0..{n - 1}")
        if layer is not None and (self._k is None or not 0 <= layer < self.spec.layers):
            raise KVStoreError(f"no K/V payload for layer {layer}")
        blk = self._r_table[slot, pos // self.block_tokens]
        off = pos % self.block_tokens
        dev = self._b["dev"][blk]
        order = np.argsort(dev, kind="stable")
        devs, starts, lengths = _runs(dev[order])
        parts = []
        for d, lo, m in zip(devs.tolist(), starts.tolist(), lengths.tolist(), strict=True):
            sel = order[lo: lo + m]
            k = v = None
            if layer is not None and self._k is not None and self._v is not None:
                k = self._k[layer, blk[sel], off[sel]]
                v = self._v[layer, blk[sel], off[sel]]
            t = int(self.dev_tier[d])
            parts.append(DevicePart(t, self.tier_names[t], int(self.dev_local[d]), pos[sel], k, v))
        return parts

    def tier_scores(self) -> np.ndarray:
        """PAPER.md Eq. 8 per tier: summed token importance over tokens held (0 for an empty tier)."""
        live = self._live()
        s = np.bincount(self._b["tier"][live], weights=self._bimp[live], minlength=len(self.tier_names))
        out = np.zeros(len(self.tier_names))
        np.divide(s, self.tier_tokens, out=out, where=self.tier_tokens > 0)
        return out

    def unit_loads(self, requests: np.ndarray | Sequence[int],
                   positions: np.ndarray | Sequence[int]) -> list[list[UnitLoad]]:
        """Per tier, per device: the :class:`UnitLoad` of reading tokens ``(requests[i], positions[i])``."""
        loc = self.locate(requests, positions)
        dev = self._b["dev"][loc.block]
        order = np.argsort(dev, kind="stable")
        bounds = np.searchsorted(dev[order], np.arange(self.dev_tier.size + 1))
        per_layer = self.bytes_per_token / self.spec.layers
        out: list[list[UnitLoad]] = [[] for _ in self.tier_names]
        for g, t in enumerate(self.dev_tier.tolist()):
            sel = order[bounds[g]: bounds[g + 1]]
            out[t].append(unit_load(self.geometry[t], loc.unit[sel], self._b["slot"][loc.block[sel]],
                                    loc.offset[sel], per_layer))
        return out

    # --- appending, payload, freeing ----------------------------------------------------------------

    def _batch(self, requests: Sequence[int] | np.ndarray | int,
               counts: Sequence[int] | np.ndarray | int) -> tuple[np.ndarray, np.ndarray]:
        reqs = np.asarray(requests, dtype=_I64)
        if reqs.ndim == 0:
            reqs = reqs.reshape(1)
        cnt = np.asarray(counts, dtype=_I64)
        if cnt.shape != reqs.shape:
            cnt = np.broadcast_to(cnt, reqs.shape).copy()
        if reqs.ndim != 1 or (reqs.size > 1 and np.count_nonzero(reqs[1:] <= reqs[:-1]) and _has_duplicates(reqs)):
            raise KVStoreError("requests of one batch must be distinct ids")
        if cnt.size and cnt.min() < 0:
            raise KVStoreError("token counts must be non-negative")
        return reqs, cnt

    def append(self, requests: Sequence[int] | np.ndarray | int,
               counts: Sequence[int] | np.ndarray | int = 1) -> np.ndarray:
        """Add ``counts`` tokens to each request (new ids start a request); returns their first positions.

        New blocks are placed by the policy (which may first displace blocks — a real, counted migration)
        and mapped inside devices by the store's mapping. Raises :class:`CapacityError` if they do not fit.
        """
        reqs, cnt = self._batch(requests, counts)
        bt = self.block_tokens
        known = self._rows_of(reqs)
        unknown = np.count_nonzero(known < 0) > 0
        cur = self._r_len[known]
        if unknown:
            cur[known < 0] = 0
        new = cur + cnt
        nb0, nb1 = _ceil_div(cur, bt), _ceil_div(new, bt)
        need = nb1 - nb0
        k = int(need.sum())
        if k:
            owner, logical = _ranges(nb0, need)
            births = np.arange(self._birth, self._birth + k, dtype=_I64)
            new_tier, one_tier, moves = self._placement(known, nb1, owner, logical, births)
        if unknown:
            self._add_rows(reqs, known)
        b = self._b
        if k:
            if moves[0].size:
                self._apply(*moves)
            ids = self._alloc_ids(k)
            b["rslot"][ids] = known[owner]
            b["logical"][ids] = logical
            b["birth"][ids] = births
            # filled before placing: placement counts their tokens in the tier (after choosing units)
            b["fill"][ids] = np.minimum(bt, new[owner] - logical * bt)
            b["nz"][ids] = 0
            self._imp[ids] = 0.0
            self._bimp[ids] = 0.0
            if one_tier >= 0:
                self._place(ids, one_tier)
            else:
                for t in range(self.capacity.size):
                    self._place(ids[new_tier == t], t)
            if int(nb1.max()) > self._r_table.shape[1]:
                self._grow_requests(self._rcap, int(nb1.max()))
            self._r_table[known[owner], logical] = ids
        # the old partly filled last blocks the new tokens reach
        part = ((cur & (bt - 1) if bt & (bt - 1) == 0 else cur % bt) != 0).nonzero()[0]
        if part.size:
            part = part[cnt[part] > 0]
            blk = self._r_table[known[part], nb0[part] - 1]
            fill = np.minimum(bt, new[part] - (nb0[part] - 1) * bt)
            np.add.at(self.tier_tokens, b["tier"][blk], fill - b["fill"][blk])
            b["fill"][blk] = fill
        self._r_len[known] = new
        self._r_nb[known] = nb1
        self._birth += k
        return cur

    def _placement(self, known: np.ndarray, nb1: np.ndarray, owner: np.ndarray, logical: np.ndarray,
                   births: np.ndarray) -> tuple[np.ndarray, int, tuple[np.ndarray, np.ndarray]]:
        """The policy's tiers for new blocks (request rows ``known[owner]``, indices ``logical``, allocation
        order ``births``; requests then hold ``nb1`` blocks), the one tier they all go to (-1: several),
        and the validated moves that make room. Changes nothing; raises :class:`CapacityError` or
        :class:`PlanError`."""
        k = owner.size
        ntiers = self.capacity.size
        free = int(self._capacity_total) - int(self.used.sum())
        if k > free:
            raise CapacityError(f"{k} new blocks do not fit: {free} free")

        def lengths() -> np.ndarray:  # blocks per block-table row after this append (the view's tail)
            after = self._r_nb.copy()
            after[known[known >= 0]] = nb1[known >= 0]
            return after

        placed = self.policy.place(self._deferred_view(lengths), NewBlocks(logical, nb1[owner] - 1, births))
        new_tier = np.asarray(placed.tier, dtype=_I64)
        if new_tier.shape != (k,):
            raise PlanError(f"policy '{self.policy.name}' returned bad tiers for {k} new blocks")
        if np.count_nonzero(new_tier.view(np.uint64) >= ntiers):  # as unsigned, a negative tier is huge
            raise PlanError(f"policy '{self.policy.name}' returned bad tiers for {k} new blocks")
        first = int(new_tier[0])
        one = first if np.count_nonzero(new_tier != first) == 0 else -1
        moved = np.asarray(placed.moved, dtype=_I64)
        moved_to = np.asarray(placed.moved_to, dtype=_I64)
        if moved.size or moved_to.size:
            return new_tier, one, self._validate(self._live()[moved] if moved.size else moved, None, moved_to,
                                                 extra=new_tier)
        if one < 0:
            self._check_room(self.used + np.bincount(new_tier, minlength=ntiers))
        elif int(self.used[one]) + k > int(self.capacity[one]):
            after = self.used.copy()
            after[one] += k
            self._check_room(after)
        return new_tier, one, (moved, moved_to)

    def _add_rows(self, reqs: np.ndarray, known: np.ndarray) -> None:
        """Give each new request (``known < 0``) the lowest free block-table row; ``known`` gets the rows."""
        for i in np.flatnonzero(known < 0).tolist():
            if not self._free_rows:
                self._grow_requests(self._rcap + 1, 1)
            row = heapq.heappop(self._free_rows)
            r = int(reqs[i])
            known[i] = row
            self._rslot[r] = row
            self._index = None
            self._set_row(r, row)
            self._r_id[row] = r
            self._r_len[row] = 0
            self._r_nb[row] = 0

    def _alloc_ids(self, k: int) -> np.ndarray:
        """The ``k`` lowest free block ids (growing the arrays if needed), now counted as live."""
        if k == 0:
            return np.zeros(0, dtype=_I64)
        nfree = self._bcap - self._nlive
        if nfree < k:
            self._grow_blocks(self._bcap + k - nfree)
        rslot = self._b["rslot"]
        found, lo, chunk = [], self._free_lo, max(4 * k, 256)
        while k:  # scan up from the lowest possibly free id, in growing chunks
            hi = min(self._bcap, lo + chunk)
            got = (rslot[lo:hi] < 0).nonzero()[0][:k] + lo
            found.append(got)
            k -= got.size
            lo = int(got[-1]) + 1 if k == 0 else hi
            chunk *= 2
        self._free_lo = lo
        ids = np.concatenate(found) if len(found) > 1 else found[0]
        self._nlive += ids.size
        live = self._live_ids
        self._live_ids = _merge_sorted(live, ids) if live is not None and self._keep_live() else None
        return ids

    def write_kv(self, request: int, positions: np.ndarray | Sequence[int], layer: int,
                 k: np.ndarray, v: np.ndarray) -> None:
        """Store the real K/V (``[tokens, kv_heads, head_dim]``) of ``positions`` for one layer."""
        if self._k is None or self._v is None:
            raise KVStoreError("this store keeps no K/V payload (StoreSpec.payload is not set)")
        if not 0 <= layer < self.spec.layers:
            raise KVStoreError(f"layer {layer} out of range 0..{self.spec.layers - 1}")
        loc = self.locate(request, positions)
        self._k[layer, loc.block, loc.offset] = k
        self._v[layer, loc.block, loc.offset] = v

    def free(self, requests: Sequence[int] | np.ndarray | int) -> None:
        """Drop requests and release all their blocks."""
        reqs = np.atleast_1d(np.asarray(requests, dtype=_I64))
        slots = np.array([self._slot(r) for r in reqs.tolist()], dtype=_I64)
        if slots.size > 1 and _has_duplicates(slots):
            raise KVStoreError("requests to free must be distinct")
        if slots.size == 1:  # a request's blocks are the first entries of its row
            ids = self._r_table[slots[0], : self._r_nb[slots[0]]].copy()
        else:
            table = self._r_table[slots]
            ids = table[table >= 0]
        self._release(ids)
        self._b["rslot"][ids] = -1
        self._b["fill"][ids] = 0
        self._b["nz"][ids] = 0
        self._free_lo = min(self._free_lo, int(ids.min())) if ids.size else self._free_lo
        if self._keep_live() and self._live_ids is not None:
            keep = np.ones(self._live_ids.size, dtype=bool)
            keep[np.searchsorted(self._live_ids, ids)] = False
            self._live_ids = self._live_ids[keep]
        else:
            self._live_ids = None
        self._nlive -= ids.size
        self._r_table[slots] = -1
        self._r_id[slots] = -1
        self._r_len[slots] = 0
        self._r_nb[slots] = 0
        for r in reqs.tolist():
            del self._rslot[r]
            self._set_row(r, -1)
        for row in slots.tolist():
            heapq.heappush(self._free_rows, row)
        self._index = None

    # --- importance and activity --------------------------------------------------------------------

    def observe(self, batch: Sequence[int] | np.ndarray, requests: Sequence[int] | np.ndarray | None = None,
                positions: Sequence[int] | np.ndarray | None = None,
                scores: Sequence[float] | np.ndarray | None = None) -> None:
        """Record one decode step: the requests in ``batch`` took it and read tokens ``(requests[i], positions[i])``.

        Every token of the batch decays (``I *= 1 - lam``) and each read token gains ``lam * scores[i]``
        (default score 1; scores must be finite and non-negative, 0 for a token not selected); the reads
        count toward their units' activity. Requests not in ``batch`` keep their importance.

        Cost: O(read tokens + blocks of the batch), with the per-token work only where it can change
        anything — a block whose tokens are all 0 stays 0, a block with one non-zero token decays that
        token and its sum (both exactly), other blocks and the blocks read are re-summed.
        """
        lam = self.spec.lam
        bt = self.block_tokens
        bslots = self._slots_of(np.asarray(batch, dtype=_I64).ravel())
        in_batch = np.zeros(self._rcap, dtype=bool)
        in_batch[bslots] = True
        if np.count_nonzero(in_batch) != bslots.size:
            raise KVStoreError("a request appears twice in one batch")
        key = read_blocks = s = None
        if positions is not None and requests is not None:  # validate everything before changing anything
            pos = np.asarray(positions, dtype=_I64).ravel()
            rows = self._slots_of(_like(requests, pos))
            if np.count_nonzero(in_batch[rows]) != rows.size:
                raise KVStoreError("every read token must belong to a request of the batch")
            s = np.ones(pos.size) if scores is None else np.asarray(scores, dtype=np.float64).ravel()
            # a NaN makes the minimum NaN, which fails the first test
            if s.shape != pos.shape or (s.size and not (s.min() >= 0 and s.max() < np.inf)):
                raise ValueError("scores must be finite, non-negative, one per read token")
            if _outside(pos, self._r_len[rows]):
                raise KVStoreError("a token position is outside its request")
            logical, off = _split(pos, bt)
            key = self._r_table[rows, logical] * bt + off  # flat index of the token in self._imp
            skey = np.sort(key)
            if np.count_nonzero(skey[1:] == skey[:-1]):
                raise KVStoreError("a token is listed twice in one step")
            sblk = _split(skey, bt)[0]
            twice = np.count_nonzero(sblk[1:] == sblk[:-1]) > 0  # some block has two tokens read
            read_blocks = _sorted_unique(sblk) if twice else sblk
        b = self._b
        if bslots.size == len(self._rslot) and 2 * self._nlive >= self._bcap:
            # every request (the simulator's case) and most ids live: scan them all (0 when unused)
            nz = b["nz"][: self._bcap]
            one, many = (nz == 1).nonzero()[0], (nz > 1).nonzero()[0]
        elif bslots.size == len(self._rslot):  # every request: every live block
            ids = self._live()
            nz = b["nz"][ids]
            one, many = ids[nz == 1], ids[nz > 1]
        else:
            table = self._r_table[bslots]
            ids = table[table >= 0]
            nz = b["nz"][ids]
            one, many = ids[nz == 1], ids[nz > 1]
        flat = self._imp.reshape(-1)
        decayed = self._bimp[one] * (1.0 - lam)  # a one-token block's importance is that token's
        self._bimp[one] = decayed
        flat[one * bt + b["nzoff"][one]] = decayed  # its other tokens are 0 and stay 0
        if many.size:
            rows = self._imp[many] * (1.0 - lam)
            self._imp[many] = rows
            self._bimp[many] = rows.sum(axis=1)
        reads = np.zeros(0, dtype=_I64)
        self.last_reads = np.zeros(self.capacity.size, dtype=_I64)
        if key is not None and read_blocks is not None and s is not None:
            old = flat[key]
            new = old + lam * s
            flat[key] = new
            nonzero = new != 0
            fresh = (old == 0) & nonzero  # a token becomes non-zero only here
            blk, off = _split(key, bt)
            fresh_blk = blk[fresh]
            if twice:
                np.add.at(b["nz"], fresh_blk, 1)
            else:
                b["nz"][fresh_blk] += 1
            b["nzoff"][fresh_blk] = off[fresh]
            if twice:  # re-sum the blocks with several non-zero tokens; the others hold one (or none)
                nzr = b["nz"][read_blocks]
                single = read_blocks[nzr <= 1]
                self._bimp[single] = flat[single * bt + b["nzoff"][single]]
                multi = read_blocks[nzr > 1]
            else:  # one token read per block: if it is the block's only non-zero token, it is the sum;
                # if it stays 0 the block's sum was decayed above
                alone = b["nz"][blk] <= 1
                sel = alone & nonzero
                self._bimp[blk[sel]] = new[sel]
                multi = blk[~alone]
            if multi.size:
                self._bimp[multi] = self._imp[multi].sum(axis=1)
            reads = self.unit_off[b["dev"][blk]] + b["unit"][blk]
            self.last_reads = np.bincount(b["tier"][blk], minlength=self.capacity.size).astype(_I64, copy=False)
        self._record_reads(reads)
        self.steps += 1

    def _record_reads(self, reads: np.ndarray) -> None:
        """Add one step of reads (global unit of every token read; ``last_reads`` set) to the activity window."""
        gone = self.activity.shift(reads)
        np.subtract.at(self._ukey, gone, self._key_read[gone])
        np.add.at(self._ukey, reads, self._key_read[reads])

    # --- migration ---------------------------------------------------------------------------------

    def plan(self) -> MigrationPlan:
        """The policy's moves for this step, as a plan of block ids (not yet applied)."""
        view = self._deferred_view(self._r_nb)
        items, dst = self.policy.plan(view)
        items = np.asarray(items, dtype=_I64)
        if items.size == 0:
            return MigrationPlan(items, items.copy(), np.asarray(dst, dtype=_I64))
        return MigrationPlan(self._live()[items], view.tier[items], np.asarray(dst, dtype=_I64))

    def migrate(self, plan: MigrationPlan) -> MigrationReport:
        """Apply a plan atomically (all moves, or none and an exception); returns bytes per link."""
        moves = self._validate(np.asarray(plan.blocks, dtype=_I64), np.asarray(plan.src, dtype=_I64),
                               np.asarray(plan.dst, dtype=_I64))
        return self._apply(*moves)

    def schedule(self) -> MigrationReport:
        """Plan and apply this step's moves."""
        plan = self.plan()
        if plan.blocks.size == 0 and plan.src.size == 0 and plan.dst.size == 0:
            return MigrationReport()  # what applying an empty plan reports
        return self.migrate(plan)

    def _validate(self, blocks: np.ndarray, src: np.ndarray | None, dst: np.ndarray,
                  extra: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        ntiers = self.capacity.size
        if blocks.ndim != 1 or dst.shape != blocks.shape or (src is not None and src.shape != blocks.shape):
            raise PlanError("a plan needs blocks, src and dst of the same length")
        if blocks.size:
            bad = (blocks < 0) | (blocks >= self._bcap)
            bad[~bad] = self._b["rslot"][blocks[~bad]] < 0
            if bad.any():
                raise PlanError(f"unknown block {int(blocks[bad][0])}")
            if _has_duplicates(blocks):
                raise PlanError("a block appears twice in one plan")
            if dst.min() < 0 or dst.max() >= ntiers:
                raise PlanError(f"destination tiers must lie in 0..{ntiers - 1}")
        cur = self._b["tier"][blocks]
        if src is not None and (src != cur).any():
            i = int(np.flatnonzero(src != cur)[0])
            raise PlanError(f"block {int(blocks[i])} is in tier '{self.tier_names[cur[i]]}', "
                            f"not '{self.tier_names[int(src[i])] if 0 <= src[i] < ntiers else src[i]}'")
        if (cur == dst).any():
            raise PlanError(f"block {int(blocks[cur == dst][0])} would move to the tier it is in")
        if blocks.size == 0 and extra is None:
            return blocks, dst
        after = (self.used - np.bincount(cur, minlength=ntiers) + np.bincount(dst, minlength=ntiers)
                 + (np.bincount(extra, minlength=ntiers) if extra is not None else 0))
        self._check_room(after)
        return blocks, dst

    def _check_room(self, after: np.ndarray) -> None:
        """Raise :class:`CapacityError` if ``after`` (blocks per tier) exceeds a tier's capacity."""
        if (after > self.capacity).any():
            t = int(np.flatnonzero(after > self.capacity)[0])
            raise CapacityError(f"tier '{self.tier_names[t]}' would hold {int(after[t])} blocks "
                                f"(capacity {int(self.capacity[t])})")

    def _apply(self, blocks: np.ndarray, dst: np.ndarray) -> MigrationReport:
        if blocks.size == 0:
            return MigrationReport()
        src = self._b["tier"][blocks].copy()
        fill = self._b["fill"][blocks]
        self._release(blocks)
        for t in range(self.capacity.size):
            self._place(blocks[dst == t], t)
        report = MigrationReport()
        ntiers = self.capacity.size
        pair = src * ntiers + dst
        nblk = np.bincount(pair, minlength=ntiers * ntiers)
        ntok = np.bincount(pair, weights=fill, minlength=ntiers * ntiers)
        for p in np.flatnonzero(nblk).tolist():
            s, d = divmod(p, ntiers)
            report.links[link_name(self.tier_names[s], self.tier_names[d])] = LinkTraffic(
                int(nblk[p]), int(ntok[p]), float(ntok[p]) * self.bytes_per_token)
        self.traffic.add(report)
        return report

    # --- slots -------------------------------------------------------------------------------------

    def _release(self, blocks: np.ndarray) -> None:
        if blocks.size == 0:
            return
        b = self._b
        gu = self.unit_off[b["dev"][blocks]] + b["unit"][blocks]
        slot = b["slot"][blocks]
        self._own[self._unit_base[gu] + slot] = -1
        was_full = self.unit_used[gu] >= self.unit_cap[gu]
        np.add.at(self.unit_used, gu, -1)
        np.subtract.at(self._ukey, gu, self._key_used[gu])
        if np.count_nonzero(was_full):  # they have room now; a unit listed twice is still changed once
            self._ukey[gu[was_full]] -= _FULL
        np.minimum.at(self._unit_lo, gu, slot)
        tiers = b["tier"][blocks]
        np.subtract.at(self.used, tiers, 1)
        np.subtract.at(self.tier_tokens, tiers, b["fill"][blocks])

    def _choose_units(self, n: int, t: int) -> np.ndarray:
        """Global units for ``n`` new blocks of tier ``t`` by the tier's mapping, in the mapping's order."""
        mode = self._tier_mapping[t]
        if mode == "activity" and (units := self._least_active(n, t)) is not None:
            return units
        u0, u1 = self._tier_units[t]
        free = self.unit_cap[u0:u1] - self.unit_used[u0:u1]
        if mode == "activity":
            act = self.activity.totals(u0, u1)
            delta = max(1, round(int(act.sum()) * self.block_tokens / max(1, int(self.tier_tokens[t]))))
            units = waterfill(n, act, free, delta, self.unit_used[u0:u1],
                              tie_bound=self.geometry[t].max_unit_slots + 1)
        elif mode == "round-robin":
            units = round_robin(n, free, self._rr[t])
            self._rr[t] = (int(units[-1]) + 1) % (u1 - u0)
        else:
            units = sequential(n, free)
        return units + u0

    def _least_active(self, n: int, t: int) -> np.ndarray | None:
        """The activity mapping's units (global indices, in greedy order) for ``n`` blocks of tier ``t``,
        from the kept rank keys; ``None`` when :func:`waterfill` must decide (the keys could overflow, or
        ``n`` is not small next to the units with room).

        The same choice as :func:`waterfill`: its candidates are the ``n`` lowest units by (reads, blocks
        held, index) among those with room — the ``n`` lowest keys. They are looked for among the keys up
        to the last call's guess (one pass, then a small selection); when that holds fewer than ``n``
        keys or far too many, a partition of all keys finds them and a new guess.
        """
        u0, u1 = self._tier_units[t]
        span = u1 - u0
        bound = self._tier_bound[t]
        reads = int(self.activity.totals(u0, u1).sum())
        if (reads + 1) * bound * span > _FULL:
            return None
        # units with room are at least the free slots over the slots of the largest unit
        if 4 * n >= -(-int(self.capacity[t] - self.used[t]) // (bound - 1)):
            return None
        keys = self._ukey[u0:u1]
        low = keys[keys <= self._guess[t]]
        if n <= low.size <= 16 * n + 256:
            low = np.sort(low)[:n]
        else:  # the n lowest, and as the next guess the key that has about 4n more keys below it
            m = min(span, 4 * n + 64)
            part = np.partition(keys, (n - 1, m - 1))
            low = np.sort(part[:n])
            self._guess[t] = int(part[m - 1])
        delta = max(1, round(reads * self.block_tokens / max(1, int(self.tier_tokens[t]))))
        if int(low[-1]) // (bound * span) - int(low[0]) // (bound * span) < delta:
            # the candidates' reads differ by less than one block's: each takes one block, in key order
            return low % span + u0
        units = np.sort(low % span) + u0
        used = self.unit_used[units]
        return units[waterfill_candidates(n, self.activity.at(units), self.unit_cap[units] - used, delta, used)]

    def _place(self, blocks: np.ndarray, t: int) -> None:
        """Map ``blocks`` (ids, not yet placed) into tier ``t``: units by the mapping, then their lowest free slots."""
        n = blocks.size
        if n == 0:
            return
        gu = self._choose_units(n, t)
        counts: int | np.ndarray
        if n <= 64 and len(set(gu.tolist())) == n:  # one block per unit (the usual case)
            slots = self._first_free_slots(gu, t)
            last = slots + 1
            uniq, counts = gu, 1
        else:
            slots, uniq, counts, last = self._free_slots(gu, t)
        b = self._b
        b["tier"][blocks] = t
        b["dev"][blocks] = self.unit_dev[gu]
        b["unit"][blocks] = self._unit_in_dev[gu]
        b["slot"][blocks] = slots
        table = self._slot_table[t]
        bank, row, col = self.geometry[t].slot_position(slots) if table is None else (a[slots] for a in table)
        b["bank"][blocks], b["row"][blocks], b["col"][blocks] = bank, row, col
        self._own[self._unit_base[gu] + slots] = blocks
        self.unit_used[uniq] += counts
        self._ukey[uniq] += counts * self._key_used[uniq]
        full = self.unit_used[uniq] >= self.unit_cap[uniq]
        if np.count_nonzero(full):  # they had room before
            self._ukey[uniq[full]] += _FULL
        self._unit_lo[uniq] = last
        self._unit_hw[uniq] = np.maximum(self._unit_hw[uniq], last)
        self.used[t] += n
        self.tier_tokens[t] += int(b["fill"][blocks].sum())

    def _first_free_slots(self, units: np.ndarray, t: int) -> np.ndarray:
        """The lowest free slot of each of ``units`` (distinct global units of tier ``t``, each with room).

        It lies in ``[lo, hw]``: every slot below ``lo`` is taken, every slot from ``hw`` on is free (if
        the unit has it), so when ``hw`` is past the unit's last slot a free one lies below it.
        """
        lo = self._unit_lo[units]
        base = self._unit_base[units]
        if np.count_nonzero(self._own[base + lo] == -1) == units.size:  # often the slot at lo is free
            return lo
        width = self._tier_bound[t] - 1
        cols = lo[:, None] + np.arange(int((self._unit_hw[units] - lo).max()) + 1)
        # past the row's end a column reads the row's last slot again (found earlier if it is free)
        own = self._own[base[:, None] + np.minimum(cols, width - 1)]
        return lo + np.argmax(own == -1, axis=1)

    def _free_slots(self, gu: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Slots for blocks going to units ``gu`` (global, repeats allowed): each unit's lowest free slots,
        given in ``gu``'s order. Also returns the distinct units, blocks per unit, and per unit the slot
        after its last new block (every slot below it is then taken)."""
        n = gu.size
        if n <= 16:  # a few blocks (a decode step): group them by unit in Python
            units = gu.tolist()
            rank = sorted(range(n), key=units.__getitem__)
            groups = [(u, len(list(g))) for u, g in itertools.groupby(units[i] for i in rank)]
            order = np.array(rank, dtype=_I64)
            uniq = np.array([u for u, _ in groups], dtype=_I64)
            counts = np.array([c for _, c in groups], dtype=_I64)
        else:
            order = np.argsort(gu, kind="stable")
            uniq, _, counts = _runs(gu[order])
        # the lowest free slots of a unit lie in [lo, hw + count): below lo all are taken, from hw on all free
        lo = self._unit_lo[uniq]
        hi = self._unit_hw[uniq] + counts
        width = self.geometry[t].max_unit_slots
        cols = lo[:, None] + np.arange(int((hi - lo).max()))[None, :]
        free = (cols < hi[:, None]) & (cols < width)
        free &= self._own[self._unit_base[uniq][:, None] + np.minimum(cols, width - 1)] == -1
        pick = free & (np.cumsum(free, axis=1) <= counts[:, None])
        ranked = cols[pick]  # row-major: unit by unit, lowest slots first
        last = ranked[np.cumsum(counts) - 1] + 1
        slots = np.empty(n, dtype=_I64)
        slots[order] = ranked
        return slots, uniq, counts, last

    # --- invariants --------------------------------------------------------------------------------

    def check(self) -> None:
        """Verify every invariant; raises :class:`InvariantError` naming the first one broken.

        Each live block is owned by exactly one slot of one device of its tier and vice versa; per-unit,
        per-tier block and token counts match; no unit or tier is over capacity; every request's table
        lists live blocks of that request in order, all full but the last, holding exactly its tokens.
        """
        b = self._b
        live = np.flatnonzero(b["rslot"][: self._bcap] >= 0)
        owners = []
        for g, own in enumerate(self._owner):
            u, s = np.nonzero(own >= 0)
            owners.append(np.stack([own[u, s], np.full(u.size, g), u, s]))
        allown = np.concatenate(owners, axis=1) if owners else np.zeros((4, 0), dtype=_I64)
        allown = allown[:, np.argsort(allown[0], kind="stable")]
        if not np.array_equal(allown[0], live):
            raise InvariantError("slot owners and live blocks differ (a block lost, duplicated or leaked)")
        if not (np.array_equal(allown[1], b["dev"][live]) and np.array_equal(allown[2], b["unit"][live])
                and np.array_equal(allown[3], b["slot"][live])):
            raise InvariantError("a block's recorded device/unit/slot is not the slot that owns it")
        if not np.array_equal(self.dev_tier[b["dev"][live]], b["tier"][live]):
            raise InvariantError("a block's tier is not its device's tier")
        for t, geom in enumerate(self.geometry):
            sel = live[b["tier"][live] == t]
            bank, row, col = geom.slot_position(b["slot"][sel])
            if not (np.array_equal(bank, b["bank"][sel]) and np.array_equal(row, b["row"][sel])
                    and np.array_equal(col, b["col"][sel])):
                raise InvariantError(f"tier '{self.tier_names[t]}': bank/row/col disagree with the slot")
        gu = self.unit_off[b["dev"][live]] + b["unit"][live]
        if not np.array_equal(np.bincount(gu, minlength=self.unit_used.size), self.unit_used):
            raise InvariantError("per-unit block counts are wrong")
        if (self.unit_used > self.unit_cap).any():
            raise InvariantError("a unit holds more blocks than it has slots")
        ntiers = self.capacity.size
        if not np.array_equal(np.bincount(b["tier"][live], minlength=ntiers), self.used):
            raise InvariantError("per-tier block counts are wrong")
        if (self.used > self.capacity).any():
            raise InvariantError("a tier is over capacity")
        tok = np.bincount(b["tier"][live], weights=b["fill"][live], minlength=ntiers).astype(_I64)
        if not np.array_equal(tok, self.tier_tokens):
            raise InvariantError("per-tier token counts are wrong")
        bt = self.block_tokens
        listed = 0
        for r, slot in self._rslot.items():
            nb, n = int(self._r_nb[slot]), int(self._r_len[slot])
            ids = self._r_table[slot, :nb]
            if nb != -(-n // bt) or (self._r_table[slot, nb:] != -1).any() or self._r_id[slot] != r:
                raise InvariantError(f"request {r}: block table length disagrees with its {n} tokens")
            if (ids < 0).any() or (b["rslot"][ids] != slot).any() or (b["logical"][ids] != np.arange(nb)).any():
                raise InvariantError(f"request {r}: block table lists a block of another request or order")
            want = np.minimum(bt, n - np.arange(nb) * bt)
            if not np.array_equal(b["fill"][ids], want):
                raise InvariantError(f"request {r}: blocks are not full-but-the-last for {n} tokens")
            listed += nb
        if listed != live.size:
            raise InvariantError("live blocks that no request lists (leaked)")
        mask = np.arange(bt)[None, :] >= b["fill"][live][:, None]
        if (self._imp[live][mask] != 0).any():
            raise InvariantError("importance recorded for a token slot that holds no token")
        self._check_kept(live)

    def _check_kept(self, live: np.ndarray) -> None:
        """The bookkeeping kept for speed equals what recomputing it from scratch gives."""
        b = self._b
        imp = self._imp[live]
        if not np.array_equal(self._bimp[live], imp.sum(axis=1)):
            raise InvariantError("a block's kept importance is not the sum over its tokens")
        nonzero = imp != 0
        if (nonzero.sum(axis=1) > b["nz"][live]).any():
            raise InvariantError("a block has more non-zero tokens than its count allows")
        one = b["nz"][live] == 1
        if nonzero[one].sum() != nonzero[one, b["nzoff"][live[one]]].sum():
            raise InvariantError("a one-token block's non-zero importance is not at its recorded offset")
        if (b["rslot"][: self._free_lo] < 0).any():
            raise InvariantError("a block id below the lowest-free mark is unused")
        if b["nz"][b["rslot"][: self._bcap] < 0].any():
            raise InvariantError("an unused block counts non-zero tokens")
        if not np.array_equal(self._live(), live) or self._nlive != live.size:
            raise InvariantError("the kept live block list is stale")
        if not np.array_equal(self.activity.totals(), self.activity.counts.sum(axis=0)):
            raise InvariantError("kept activity totals differ from the window's sum")
        if not np.array_equal(self._ukey, self._fresh_keys(np.arange(self._ukey.size))):
            raise InvariantError("a unit's kept rank key differs from its reads and blocks held")
        for g, own in enumerate(self._owner):
            u0 = int(self.unit_off[g])
            lo = self._unit_lo[u0: u0 + own.shape[0]]
            hw = self._unit_hw[u0: u0 + own.shape[0]]
            below = np.arange(own.shape[1])[None, :] < lo[:, None]
            if (own[below] == -1).any() or ((np.arange(own.shape[1])[None, :] >= hw[:, None]) & (own >= 0)).any():
                raise InvariantError("a unit's free-slot bounds are wrong")
