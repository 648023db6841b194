"""Bank-level DRAM model: organisation, timing, and the closed-form price of a stream of reads.

Everything here is in closed form or vectorised counts — no object per request — because the
simulator asks for prices at every iteration. A device is a :class:`DramSpec` (built from a
``DramDeviceConfig`` preset). The effects modelled, and why each costs time (docs/hardware.md):

* **Burst / data bus** — one column read moves ``burst_bytes`` in ``nBL`` cycles on its
  (pseudo-)channel: the peak bandwidth.
* **Bank-group column spacing** — reads to the same bank group are ``nCCD_L`` apart (the group's
  shared I/O gating recovers), to different groups ``nCCD_S``; a sequential stream whose mapping
  keeps consecutive bursts in one group runs at ``nBL/nCCD_L`` of peak. Reads to another stack
  ID/rank are ``nCCD_R`` apart (the shared data path turns around).
* **Activation rate** — at most four activates per ``nFAW`` per rank (charge-pump / power delivery
  limit), ``nRRD_S/L`` apart, a bank again only after ``nRC``: random and bank-sweeping reads are
  bounded by it, whatever the speed grade.
* **Row hits / misses** — a read to an open row costs ``nCL + nBL``; to another row also ``nRP``
  (precharge) and ``nRCD`` (activate).
* **Command bus** — each command occupies the command bus (HBM has separate row and column buses).
* **Refresh** — an all-bank refresh every ``nREFI`` blocks the rank for ``nRFC``, after the open
  rows are precharged and before they are re-opened.
* **Scheduler window** — an FR-FCFS controller sees at most ``queue_depth`` reads per channel, so
  only the bank-group and bank parallelism inside that window can be used.
* **In-order requester** — a requester that issues reads in order stalls on a full channel queue;
  with random channels the other queues run low (head-of-line blocking).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import cache
from typing import Literal

import numpy as np

from pamkv.config.devices import DramDeviceConfig
from pamkv.errors import UserError
from pamkv.hardware.layout import DeviceLayout
from pamkv.hardware.mapping import MAPPINGS, map_addresses

Pattern = Literal["seq", "rand", "bankrow", "unloaded", "stream-peak"]
PATTERNS: tuple[str, ...] = ("seq", "rand", "bankrow", "unloaded", "stream-peak")


@dataclass(frozen=True)
class DramSpec:
    """Organisation, timing (cycles of ``tck_ns``) and controller of one DRAM device."""

    name: str
    tck_ns: float
    channels: int
    pch: int
    ranks: int
    bank_groups: int
    banks_per_group: int
    rows: int
    row_bytes: int
    burst_bytes: int
    bus_bits: int
    data_rate_mtps: float
    chips_per_rank: int
    nBL: int
    nCL: int
    nRCD: int
    nRP: int
    nRAS: int
    nRC: int
    nRTP: int
    nCCD_S: int
    nCCD_L: int
    nCCD_R: int
    nRRD_S: int
    nRRD_L: int
    nFAW: int
    nRFC: int
    nREFI: int
    queue_depth: int
    dual_bus: bool
    act_cycles: float
    rd_cycles: float
    pre_cycles: float
    faw_per_pch: bool
    """True when the four-activate window and nRRD count per pseudo-channel (HBM), else per rank."""

    @classmethod
    def from_config(cls, cfg: DramDeviceConfig) -> DramSpec:
        """The spec of a DRAM device preset."""
        o, t, c = cfg.org, cfg.timing, cfg.controller
        return cls(
            name=cfg.name, tck_ns=t.tck_ns, channels=o.channels, pch=o.pseudo_channels, ranks=o.ranks,
            bank_groups=o.bank_groups, banks_per_group=o.banks_per_group, rows=o.rows, row_bytes=o.row_bytes,
            burst_bytes=o.burst_bytes, bus_bits=o.bus_bits, data_rate_mtps=o.data_rate_mtps,
            chips_per_rank=o.chips_per_rank, nBL=t.nBL, nCL=t.nCL, nRCD=t.nRCD, nRP=t.nRP, nRAS=t.nRAS,
            nRC=t.nRC, nRTP=t.nRTP, nCCD_S=t.nCCD_S, nCCD_L=t.nCCD_L, nCCD_R=t.nCCD_R or t.nCCD_S,
            nRRD_S=t.nRRD_S, nRRD_L=t.nRRD_L, nFAW=t.nFAW, nRFC=t.nRFC, nREFI=t.nREFI,
            queue_depth=c.queue_depth, dual_bus=c.command_bus == "dual", act_cycles=c.act_cycles,
            rd_cycles=c.rd_cycles, pre_cycles=c.pre_cycles, faw_per_pch=c.refresh_scope == "pseudo_channel",
        )

    def with_channels(self, channels: int) -> DramSpec:
        """The same device with ``channels`` channels (the reference's single-channel runs)."""
        if channels < 1:
            raise UserError(f"channels must be >= 1 (got {channels})")
        return replace(self, channels=channels)

    # --- sizes ---------------------------------------------------------------------------------
    @property
    def banks_per_rank(self) -> int:
        """Banks in one rank (all its bank groups)."""
        return self.bank_groups * self.banks_per_group

    @property
    def banks_per_channel(self) -> int:
        """Banks behind one channel controller."""
        return self.pch * self.ranks * self.banks_per_rank

    @property
    def banks(self) -> int:
        """Banks of the whole device as the controllers see them (chips of a rank act as one)."""
        return self.channels * self.banks_per_channel

    @property
    def columns(self) -> int:
        """Column reads (bursts) in one row."""
        return self.row_bytes // self.burst_bytes

    @property
    def capacity_bytes(self) -> int:
        """Bytes the device stores."""
        return self.banks * self.rows * self.row_bytes

    @property
    def peak_bandwidth(self) -> float:
        """Peak external bandwidth: every (pseudo-)channel bursting back to back, bytes/s."""
        return self.channels * self.pch * self.burst_bytes / (self.nBL * self.tck_ns * 1e-9)

    @property
    def pin_bandwidth(self) -> float:
        """Peak bandwidth from pins x data rate, bytes/s (equals :attr:`peak_bandwidth` when consistent)."""
        return self.channels * self.pch * self.bus_bits / 8 * self.data_rate_mtps * 1e6

    def layout(self) -> DeviceLayout:
        """The :class:`DeviceLayout` of this device: a unit is a bank group (of one chip for DIMMs)."""
        units = self.channels * self.pch * self.ranks * self.bank_groups * self.chips_per_rank
        return DeviceLayout(
            name=self.name, kind="dram", units=units, banks_per_unit=self.banks_per_group,
            rows_per_bank=self.rows, row_bytes=self.row_bytes // self.chips_per_rank,
        )


@dataclass(frozen=True)
class PatternResult:
    """Modelled figures of one access pattern."""

    pattern: str
    mapping: str | None
    channels: int
    bandwidth_gbps: float
    latency_ns: float
    row_hit_rate: float
    peak_gbps: float
    refresh: bool

    def as_dict(self) -> dict[str, object]:
        """Plain dict for JSON output."""
        return {
            "pattern": self.pattern, "mapping": self.mapping, "channels": self.channels,
            "bandwidth_gbps": self.bandwidth_gbps, "latency_ns": self.latency_ns,
            "row_hit_rate": self.row_hit_rate, "peak_gbps": self.peak_gbps,
            "percent_of_peak": 100.0 * self.bandwidth_gbps / self.peak_gbps if self.peak_gbps else 0.0,
            "refresh": self.refresh,
        }


# --- the individual effects ----------------------------------------------------------------------
def refresh_efficiency(spec: DramSpec, refresh: bool = True) -> float:
    """Fraction of time a rank is not refreshing: ``1 - (nRFC + nRP + nRCD) / nREFI``.

    Before an all-bank refresh the open rows are precharged (nRP), during it the rank is blocked
    (nRFC), after it the rows in use are re-activated (nRCD).
    """
    if not refresh:
        return 1.0
    return 1.0 - (spec.nRFC + spec.nRP + spec.nRCD) / spec.nREFI


def unloaded_latency_cycles(spec: DramSpec, row_state: Literal["conflict", "closed", "hit"] = "conflict") -> float:
    """Cycles from a lone read's arrival to its last data beat.

    ``conflict`` (open-page controller, another row open — the usual case for a random read):
    ``nRP + nRCD + nCL + nBL``; ``closed``: ``nRCD + nCL + nBL``; ``hit``: ``nCL + nBL``.
    """
    base = spec.nCL + spec.nBL
    if row_state == "hit":
        return float(base)
    if row_state == "closed":
        return float(spec.nRCD + base)
    return float(spec.nRP + spec.nRCD + base)


def activate_interval(spec: DramSpec, same_group_fraction: float) -> float:
    """Cycles between activates in one activate-window scope (rank, or HBM pseudo-channel).

    The larger of ``nFAW/4`` and the mean of ``nRRD_S``/``nRRD_L`` weighted by how often two
    consecutive activates hit the same bank group.
    """
    rrd = spec.nRRD_S + same_group_fraction * (spec.nRRD_L - spec.nRRD_S)
    return max(rrd, spec.nFAW / 4.0)


def activate_scopes_per_channel(spec: DramSpec) -> int:
    """Independent four-activate windows behind one channel controller."""
    return spec.pch if spec.faw_per_pch else spec.pch * spec.ranks


def random_access_command_cycles(spec: DramSpec) -> float:
    """Command-bus cycles one row-missing read needs on the busiest bus of its channel."""
    if spec.dual_bus:  # precharge and activate on the row bus; the read on the column bus
        return max(spec.act_cycles + spec.pre_cycles, spec.rd_cycles)
    return spec.act_cycles + spec.pre_cycles + spec.rd_cycles


@cache
def requester_stall(
    channels: int, servers: int, depth: int, services: int = 24000, seed: int = 1
) -> tuple[float, float]:
    """Idle fraction of the servers and mean queue occupancy per channel for an in-order requester.

    The requester sends reads in order, each to a uniformly random channel and server (activate
    scope) and stalls whenever the next read's channel queue (``depth`` entries) is full; every
    server takes one read per period from its channel's queue. This counts queue occupancies only
    (``channels x servers`` integers advanced service by service, fixed seed) — the single place
    the DRAM model iterates, cached per organisation. Returns ``(idle fraction, occupancy)``.
    """
    if channels * servers == 1:
        return 0.0, float(depth)
    rng = np.random.default_rng(seed)
    occ = np.zeros((channels, servers), dtype=np.int64)
    per_channel = np.zeros(channels, dtype=np.int64)
    nxt = rng.random((channels, servers))  # next service instant of each server (period 1)
    draws = rng.integers(0, channels * servers, size=services * 4 + 1024)
    k = 0
    target = int(draws[k])
    served = idle = 0
    occ_area = 0.0
    last = 0.0
    flat_next = nxt.reshape(-1)
    flat_occ = occ.reshape(-1)
    while served + idle < services:
        while per_channel[target // servers] < depth:
            flat_occ[target] += 1
            per_channel[target // servers] += 1
            k += 1
            if k >= len(draws):
                draws = rng.integers(0, channels * servers, size=len(draws))
                k = 0
            target = int(draws[k])
        s = int(np.argmin(flat_next))
        t = flat_next[s]
        occ_area += per_channel.sum() * (t - last)
        last = t
        if flat_occ[s] > 0:
            flat_occ[s] -= 1
            per_channel[s // servers] -= 1
            served += 1
        else:
            idle += 1
        flat_next[s] += 1.0
    return idle / (served + idle), occ_area / last / channels


# --- sequential streams: structure of the mapped address sequence ------------------------------------
@dataclass(frozen=True)
class StreamShape:
    """What one channel's controller sees of a sequential stream under an address mapping."""

    reads: int
    activates_per_read: float
    open_rows: float
    """Banks in the middle of a row at a random instant (rows a refresh closes that are needed again)."""
    mean_run: float
    """Mean length of runs of consecutive reads to one bank and row."""
    next_run_other_pch: float
    """Fraction of consecutive runs whose successor is on another pseudo-channel."""
    next_run_other_rank: float
    """Fraction of consecutive runs whose successor is in another rank/stack ID of the same pseudo-channel."""
    window_cycles_per_read: float
    """Column-bound cycles per read when the controller sees ``queue_depth`` consecutive reads."""


def _window_cycles(spec: DramSpec, pch: np.ndarray, rank: np.ndarray, unit: np.ndarray) -> float:
    """Mean column-bound cycles per read over sliding windows of ``queue_depth`` consecutive reads.

    Inside one window every constraint is a count: per pseudo-channel ``reads x max(nBL, nCCD_S)``
    plus one ``nCCD_R - nCCD_S`` turnaround per rank it must visit; per bank group ``reads x nCCD_L``;
    per channel command bus ``reads x rd_cycles``. The window costs the largest of them.
    """
    q = spec.queue_depth
    n = len(pch)
    if n < q:
        q = n
    starts = np.arange(0, n - q + 1, max(1, (n - q + 1) // 512))

    def counts(keys: np.ndarray, nkeys: int) -> np.ndarray:
        onehot = np.zeros((n + 1, nkeys), dtype=np.int32)
        np.add.at(onehot, (np.arange(1, n + 1), keys), 1)
        cum = np.cumsum(onehot, axis=0)
        return cum[starts + q] - cum[starts]  # [windows, nkeys]

    n_pch = counts(pch, spec.pch)
    n_unit = counts(unit, spec.pch * spec.ranks * spec.bank_groups)
    n_rank = counts(pch * spec.ranks + rank, spec.pch * spec.ranks)
    ranks_visited = (n_rank > 0).reshape(len(starts), spec.pch, spec.ranks).sum(axis=2)
    turnaround = np.where(ranks_visited > 1, ranks_visited, 0) * (spec.nCCD_R - spec.nCCD_S)
    per_pch = n_pch * max(spec.nBL, spec.nCCD_S) + turnaround
    per_group = n_unit * spec.nCCD_L
    bus = q * spec.rd_cycles
    window = np.maximum(np.maximum(per_pch.max(axis=1), per_group.max(axis=1)), bus)
    return float(window.mean() / q)


def stream_shape(spec: DramSpec, mapping: str) -> StreamShape:
    """Map a sequential stream with ``mapping`` and describe channel 0's share of it (vectorised)."""
    sample = max(4 * spec.queue_depth, 2 * spec.columns * spec.banks_per_channel)
    addr = np.arange(sample * spec.channels, dtype=np.int64) * spec.burst_bytes
    f = map_addresses(spec, addr, mapping)
    mine = f["channel"] == 0
    pch, rank, bg, bank, row = (f[k][mine] for k in ("pch", "rank", "bg", "bank", "row"))
    n = len(pch)
    bank_id = ((pch * spec.ranks + rank) * spec.bank_groups + bg) * spec.banks_per_group + bank
    # Activates: a read whose bank's previous read (in stream order) was to another row, or the first.
    order = np.lexsort((np.arange(n), bank_id))
    b_sorted, r_sorted = bank_id[order], row[order]
    new_row = np.ones(n, dtype=bool)
    new_row[1:] = (b_sorted[1:] != b_sorted[:-1]) | (r_sorted[1:] != r_sorted[:-1])
    acts = int(new_row.sum())
    # Open rows at a random instant: each (bank, row) segment is open from its first to its last read.
    seg_id = np.cumsum(new_row) - 1
    positions = order  # stream position of each read, in (bank, stream order) order
    first = np.full(acts, n, dtype=np.int64)
    last = np.zeros(acts, dtype=np.int64)
    np.minimum.at(first, seg_id, positions)
    np.maximum.at(last, seg_id, positions)
    open_rows = float((last - first).sum() / n)
    # Runs of consecutive reads (stream order) to one bank and row.
    change = np.ones(n, dtype=bool)
    change[1:] = (bank_id[1:] != bank_id[:-1]) | (row[1:] != row[:-1])
    run_starts = np.flatnonzero(change)
    mean_run = n / len(run_starts)
    nxt = run_starts[1:]
    prv = run_starts[:-1]
    other_pch = float(np.mean(pch[nxt] != pch[prv])) if len(nxt) else 0.0
    same_pch = pch[nxt] == pch[prv]
    other_rank = float(np.mean(same_pch & (rank[nxt] != rank[prv]))) if len(nxt) else 0.0
    unit = (pch * spec.ranks + rank) * spec.bank_groups + bg
    window = _window_cycles(spec, pch, rank, unit)
    return StreamShape(n, acts / n, open_rows, mean_run, other_pch, other_rank, window)


def sequential_cycles_per_read(spec: DramSpec, shape: StreamShape) -> float:
    """Channel cycles per read of a sequential stream, refresh aside.

    Long runs (one bank, one row, at least half the queue): the controller overlaps the tail of
    one run with the head of the next (FR-FCFS), so reads are served one run at a time (one bank
    group: ``nCCD_L`` apart) except while two runs overlap. In steady state the overlap covers
    ``2 (Q - 1 - d)`` reads of every run, ``d`` being the reads served while the next run's row
    is activated. Short runs: the bank groups inside the queue window set the rate
    (:func:`_window_cycles`).
    """
    q = spec.queue_depth
    if shape.mean_run * 2 < q:
        return shape.window_cycles_per_read
    r = shape.mean_run
    one = max(spec.nBL, spec.nCCD_L, spec.rd_cycles)
    pair_same_pch = max(spec.nBL, spec.nCCD_S, spec.nCCD_L / 2.0)
    pair_other_rank = max(spec.nBL, spec.nCCD_R, spec.nCCD_L / 2.0)
    pair_other_pch = max(one / 2.0, spec.rd_cycles)
    p_pch, p_rank = shape.next_run_other_pch, shape.next_run_other_rank
    two = p_pch * pair_other_pch + p_rank * pair_other_rank + (1.0 - p_pch - p_rank) * pair_same_pch
    d = math.ceil((spec.nRCD + spec.act_cycles) / one)
    single = min(1.0, max(0.0, (r - 2.0 * (q - 1 - d)) / r))
    return single * one + (1.0 - single) * two


# --- the reference access patterns ----------------------------------------------------------------------
def pattern(
    spec: DramSpec, name: str, mapping: str | None = None, channels: int | None = None, refresh: bool = True,
    seed: int = 1,
) -> PatternResult:
    """Modelled bandwidth, loaded latency and row-hit rate of one access pattern (reference/dram.md).

    ``seq``: a long sequential read stream under ``mapping`` (default ``robaracoch``);
    ``rand``: uniformly random reads from an in-order requester; ``bankrow``: every read to the next
    bank, rows changing after each sweep; ``unloaded``: one isolated read; ``stream-peak``: one
    channel streaming while rotating bank groups. Latency of a loaded pattern is Little's law over
    the controller queue plus the read's own activate and CAS path. ``seed`` seeds the in-order
    requester's random channel choices (``rand``).
    """
    if name not in PATTERNS:
        raise UserError(f"unknown pattern '{name}' (known: {', '.join(PATTERNS)})")
    if mapping is not None and mapping not in MAPPINGS:
        raise UserError(f"unknown mapping '{mapping}' (known: {', '.join(MAPPINGS)})")
    if name == "stream-peak" and channels is None:
        channels = 1
    if name == "unloaded" and channels is None:
        channels = 1
    s = spec.with_channels(channels) if channels is not None else spec
    ref = refresh_efficiency(s, refresh)
    peak = s.peak_bandwidth
    tck = s.tck_ns
    cas = s.nCL + s.nBL
    act_path = s.nRCD + s.act_cycles
    if name == "unloaded":
        lat = unloaded_latency_cycles(s) * tck
        return PatternResult(name, None, s.channels, 0.0, lat, 0.0, peak / 1e9, refresh)
    if name == "stream-peak":
        per_read = max(s.nBL, s.nCCD_S, s.nCCD_L / s.bank_groups) / s.pch
        per_read = max(per_read, s.rd_cycles)
        bw = s.channels * s.burst_bytes / (per_read * tck * 1e-9) * ref
        lat = s.queue_depth * per_read / ref + cas
        hit = 1.0 - 1.0 / s.columns
        return PatternResult(name, mapping, s.channels, bw / 1e9, lat * tck, hit, peak / 1e9, refresh)
    if name == "seq":
        m = mapping or "robaracoch"
        shape = stream_shape(s, m)
        per_read = sequential_cycles_per_read(s, shape)
        reads_per_refi = s.nREFI / per_read
        misses = shape.activates_per_read + (shape.open_rows / reads_per_refi if refresh else 0.0)
        bw = s.channels * s.burst_bytes / (per_read * tck * 1e-9) * ref
        lat = s.queue_depth * per_read / ref + misses * act_path + cas
        return PatternResult(name, m, s.channels, bw / 1e9, lat * tck, max(0.0, 1.0 - misses), peak / 1e9, refresh)
    # Every read activates a row: the activate rate bounds the stream.
    scopes = activate_scopes_per_channel(s)
    if name == "bankrow":
        same_group = 0.0  # consecutive activates of a sweep go to different bank groups
        idle, occupancy = 0.0, float(s.queue_depth)
        path = act_path + cas  # the precharge of a swept bank is issued while the read waits
    else:
        same_group = 1.0 / (s.ranks * s.bank_groups) if s.faw_per_pch else 1.0 / s.bank_groups
        idle, occupancy = requester_stall(s.channels, scopes, s.queue_depth, seed=seed)
        path = s.nRP + act_path + cas  # the read's bank has another row open: precharge first
    per_read = max(
        activate_interval(s, same_group) / scopes,  # activate rate
        random_access_command_cycles(s),  # command bus
        s.nBL / s.pch,  # data bus
    )
    eff = ref * (1.0 - idle)
    bw = s.channels * s.burst_bytes / (per_read * tck * 1e-9) * eff
    lat = occupancy * per_read / eff + path
    return PatternResult(name, mapping, s.channels, bw / 1e9, lat * tck, 0.0, peak / 1e9, refresh)


def stream_seconds(spec: DramSpec, nbytes: np.ndarray | float, mapping: str = "mop4clxor") -> np.ndarray:
    """Seconds to read ``nbytes`` out of the device as one sequential stream (vectorised over sizes)."""
    bw = pattern(spec, "seq", mapping).bandwidth_gbps * 1e9
    first = unloaded_latency_cycles(spec, "closed") * spec.tck_ns * 1e-9
    return np.asarray(nbytes, dtype=float) / bw + first


class DramDevice:
    """A plain DRAM device (no PIM): access patterns, streaming, and read energy."""

    def __init__(self, cfg: DramDeviceConfig) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.spec = DramSpec.from_config(cfg)
        self.layout = self.spec.layout()

    @property
    def capacity_bytes(self) -> float:
        """Bytes the device stores."""
        return float(self.spec.capacity_bytes)

    @property
    def cost_usd(self) -> float:
        """Estimated price of the device (cost per GB x capacity in vendor GB, 2^30 bytes)."""
        return self.cfg.cost.usd_per_gb * self.capacity_bytes / 2**30

    def attention_seconds(self, tokens: np.ndarray | float, token_bytes: float, coarse: bool = False,
                          **_: object) -> np.ndarray:
        """Plain DRAM cannot attend in place: the time to read the tokens out for the host."""
        del coarse
        return self.fetch_seconds(tokens, token_bytes)

    def pattern(self, name: str, mapping: str | None = None, channels: int | None = None,
                refresh: bool = True, seed: int = 1) -> PatternResult:
        """See :func:`pattern`."""
        return pattern(self.spec, name, mapping, channels, refresh, seed)

    def stream_seconds(self, nbytes: np.ndarray | float) -> np.ndarray:
        """Seconds to stream ``nbytes`` out of the device (best mapping)."""
        b = np.asarray(nbytes, dtype=float)
        return np.where(b > 0, stream_seconds(self.spec, b), 0.0)

    def fetch_seconds(self, tokens: np.ndarray | float, token_bytes: float) -> np.ndarray:
        """Seconds to read ``tokens`` tokens of ``token_bytes`` out to the host."""
        return self.stream_seconds(np.asarray(tokens, dtype=float) * token_bytes)

    def external_pj_per_bit(self) -> float:
        """Energy of reading one bit out of the device, pJ."""
        e = self.cfg.energy
        return e.act_pj_per_bit + e.cell_read_pj_per_bit + e.bank_to_io_pj_per_bit + e.io_pj_per_bit

    def energy_j(self, tokens: np.ndarray | float, token_bytes: float, computed: bool = False) -> np.ndarray:
        """Joules to read ``tokens`` out of the device (plain DRAM cannot compute in place)."""
        del computed
        return np.asarray(tokens, dtype=float) * token_bytes * 8 * self.external_pj_per_bit() * 1e-12

    def summary(self) -> dict[str, object]:
        """Headline figures."""
        s = self.spec
        return {
            "capacity_gb": s.capacity_bytes / 2**30,
            "peak_external_bandwidth_gbps": s.peak_bandwidth / 1e9,
            "peak_internal_bandwidth_gbps": s.banks * s.burst_bytes / (s.nCCD_L * s.tck_ns * 1e-9) / 1e9,
            "peak_flops": 0.0,
            "energy_pj_per_bit_external": self.external_pj_per_bit(),
            "energy_pj_per_bit_in_place": None,
        }
