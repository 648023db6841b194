"""DRAM-PIM devices (HBM3-PIM, DDR4-PIM): one step of local attention priced from the banks up.

A PIM column command (AttAcc's all-bank MAC) makes every bank of a channel hand one column
(``pu_read_bytes``) to its PU; commands are ``mac_spacing`` cycles apart (``mac_spacing_power_limited``
under the peak-power limit, AttAcc's model). Banks of a channel therefore move in lockstep: a
channel takes as many commands as its busiest bank needs, plus one row switch (read-to-precharge,
precharge, activate) per row its busiest bank opens, and the device as long as its slowest channel —
PAM's "device time = max over bank groups" (§6.1). On top of that:

* the PU must keep up: one column feeds ``pu_read_bytes/2 x group`` MACs on ``pu_lanes`` lanes at the
  PU clock, and one exp per token and query head; a query block larger than the PU buffer needs
  several passes over the same columns;
* partial results ``(o, m, l)`` of every bank are merged by the bank-group RUs, moved over the
  channel's data path to the central RUs (logic die / DIMM buffer) and merged there — pipelined
  with the MACs, only the last query's trip is exposed;
* all-bank refresh stalls every PIM command for ``nRFC`` each ``nREFI`` (its expected share).

``pam`` mapping: a head's tokens are spread over every bank group of the device. ``attacc`` mapping:
AttAcc's layout (reference/attacc.md) — one head per channel, 16 heads in flight, rounds beyond.
All functions are closed form and vectorise over token counts.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from pamkv.config.devices import DramDeviceConfig, PimUnits
from pamkv.errors import UserError
from pamkv.hardware.dram import DramSpec, PatternResult, pattern, stream_seconds, unloaded_latency_cycles
from pamkv.hardware.layout import DeviceLayout, UnitLoad

COARSE_BLOCK_TOKENS = 512
"""Tokens per fixed tile without PAMattention: vLLM paged_attention_v2's PARTITION_SIZE (FlashDecoding split)."""

Mapping = Literal["pam", "attacc"]


@dataclass(frozen=True)
class StepCost:
    """Time and energy of one attention step on one device."""

    seconds: float
    mac_seconds: float
    reduce_seconds: float
    refresh_seconds: float
    bytes_read: float
    activations: float
    energy_j: float
    bottleneck: str

    def as_dict(self) -> dict[str, object]:
        """Plain dict for JSON output."""
        return dict(self.__dict__)


class PimDevice:
    """A DRAM device with a PU per bank and reduction units (a ``kind: dram`` preset with ``pim``)."""

    def __init__(self, cfg: DramDeviceConfig) -> None:
        if cfg.pim is None:
            raise UserError(f"device '{cfg.name}' has no PIM units")
        self.cfg = cfg
        self.name = cfg.name
        self.spec = DramSpec.from_config(cfg)
        self.pim: PimUnits = cfg.pim
        self.layout: DeviceLayout = self.spec.layout()
        self.tck = self.spec.tck_ns * 1e-9
        self.units_per_channel = self.layout.units // self.spec.channels
        self.pu_row_bytes = self.layout.row_bytes
        self._memo: dict[tuple[float, int, int, bool], tuple[float, ...]] = {}
        self._red_memo: dict[int, tuple[float, float, float]] = {}

    # --- rates ---------------------------------------------------------------------------------
    @property
    def capacity_bytes(self) -> float:
        """Bytes the device stores."""
        return float(self.spec.capacity_bytes)

    @property
    def cost_usd(self) -> float:
        """Estimated price of the device (cost per GB of the preset x capacity in vendor GB, 2^30 bytes)."""
        return self.cfg.cost.usd_per_gb * self.capacity_bytes / 2**30

    @property
    def pim_banks(self) -> int:
        """Banks with a PU."""
        return self.layout.banks

    def spacing(self, power_limit: bool) -> int:
        """Cycles between PIM column commands."""
        return self.pim.mac_spacing_power_limited if power_limit else self.pim.mac_spacing

    def internal_bandwidth(self, power_limit: bool = False) -> float:
        """Bytes/s all PUs together read in place."""
        return self.pim_banks * self.pim.pu_read_bytes / (self.spacing(power_limit) * self.tck)

    def pu_peak_flops(self) -> float:
        """FLOP/s of all PUs (two FLOPs per multiply-add)."""
        return self.pim_banks * self.pim.pu_lanes * 2 * self.pim.pu_clock_mhz * 1e6

    def peak_flops(self, power_limit: bool = False) -> float:
        """Attention FLOP/s the PUs can sustain: PU peak, capped by the columns they are fed (1 FLOP/B)."""
        return min(self.pu_peak_flops(), self.internal_bandwidth(power_limit))

    def row_switch_seconds(self, power_limit: bool = False) -> float:
        """Extra time to move every bank to its next row: read-to-precharge, precharge, activate."""
        s = self.spec
        gap = s.nRTP + s.nRP + s.nRCD + s.act_cycles
        return max(0.0, gap - self.spacing(power_limit)) * self.tck

    def refresh_fraction(self) -> float:
        """Share of time all-bank refresh blocks PIM commands."""
        return self.spec.nRFC / self.spec.nREFI

    def _column_seconds(self, group: int, head_dim: int, power_limit: bool) -> tuple[float, int]:
        """(seconds per column command, passes over the columns) for ``group`` query heads per KV head."""
        p = self.pim
        # Query heads whose 16-bit query fits the PU buffer at once; a longer query is held in pieces
        # (each piece matches the key columns it covers), so it costs reloads but no extra reads.
        heads_fit = max(1, p.pu_buffer_bytes // (head_dim * 2))
        passes = math.ceil(group / heads_fit)
        heads_per_pass = min(group, heads_fit)
        mac_cycles = math.ceil(p.pu_read_bytes / 2 * heads_per_pass / p.pu_lanes)
        return max(self.spacing(power_limit) * self.tck, mac_cycles / (p.pu_clock_mhz * 1e6)), passes

    # --- reduction --------------------------------------------------------------------------------
    def _reduce_constants(self, head_dim: int) -> tuple[float, float, float]:
        """Seconds per partial of the three reduction stages (bank group, channel path, central RUs)."""
        hit = self._red_memo.get(head_dim)
        if hit is None:
            hit = self._red_memo[head_dim] = self._reduce_constants_uncached(head_dim)
        return hit

    def _reduce_constants_uncached(self, head_dim: int) -> tuple[float, float, float]:
        p, s = self.pim, self.spec
        part = (head_dim + 2) * 2.0
        merge = math.ceil((head_dim + 2) * 3 / p.ru_lanes) / (p.ru_clock_mhz * 1e6)  # rescale, accumulate, max
        k1 = 0.0
        if p.ru_per_bank_group:
            k1 = part / p.pu_read_bytes * s.nCCD_L * self.tck + merge / p.ru_per_bank_group
        k2 = part / (s.pch * s.burst_bytes / (s.nBL * self.tck))
        k3 = merge / max(1, p.ru_central)
        return k1, k2, k3

    def reduce_seconds(self, queries: Any, banks: Any, units: Any, channels: Any, head_dim: int) -> tuple[Any, Any]:
        """(throughput time, exposed tail) of merging partials inside the device (floats or arrays).

        Tokens of one query sit packed in consecutive banks, so the banks emit ``queries + banks``
        partials of ``(head_dim + 2) x 2`` bytes; bank-group RUs merge them (reading over the group's
        local path, one column per ``nCCD_L``), the groups' ``queries + units`` partials cross each
        channel's data path to the central RUs, which merge them into ``queries`` results. Pipelined
        over queries: the stages run at the pace of the slowest, and one query's trip is exposed.
        """
        k1, k2, k3 = self._reduce_constants(head_dim)
        vmax = max if isinstance(queries + banks + units + channels, int | float) else np.maximum
        units = vmax(units, 1.0)
        channels = vmax(channels, 1.0)
        s1 = (queries + banks) / units * k1
        unit_parts = queries + (units if k1 else banks)
        s2 = unit_parts / channels * k2
        s3 = unit_parts * k3
        return vmax(vmax(s1, s2), s3), (s1 + s2 + s3) / vmax(queries, 1.0)

    # --- one step from a UnitLoad ----------------------------------------------------------------------
    def price(self, load: UnitLoad, power_limit: bool = False) -> StepCost:
        """Time and energy of one attention step given where its tokens sit (``pam`` mapping)."""
        lay = self.layout
        if load.tokens.shape != (lay.units, lay.banks_per_unit):
            raise UserError(
                f"{self.name}: load has shape {load.tokens.shape}, device has {lay.units} units x "
                f"{lay.banks_per_unit} banks"
            )
        t_col, passes = self._column_seconds(load.group, load.head_dim, power_limit)
        per_ch = (self.spec.channels, self.units_per_channel * lay.banks_per_unit)
        tokens = load.tokens.reshape(per_ch)
        tok_ch = tokens.max(axis=1)  # columns grow with tokens: the busiest bank has the most
        rows_ch = load.rows.reshape(per_ch).max(axis=1)
        col_s = passes * t_col * np.ceil(tok_ch * load.bytes_per_token / self.pim.pu_read_bytes)
        exp_s = tok_ch * load.group / (self.pim.pu_clock_mhz * 1e6)
        mac = float((np.maximum(col_s, exp_s) + rows_ch * passes * self.row_switch_seconds(power_limit)).max())
        busy_banks = tokens > 0
        active_banks = float(busy_banks.sum())
        active_units = float(load.tokens.any(axis=1).sum())
        active_ch = float((tok_ch > 0).sum())
        queries = min(float(load.queries), float(load.tokens.sum()))
        red_t, red_tail = self.reduce_seconds(queries, active_banks, active_units, active_ch, load.head_dim)
        if active_banks == 0 and load.queries == 0:
            red_t = red_tail = 0.0
        busy = max(mac, red_t) + red_tail
        refresh = busy * self.refresh_fraction() / (1.0 - self.refresh_fraction())
        nbytes = float(np.ceil(load.tokens * (load.bytes_per_token / self.pim.pu_read_bytes)).sum())
        nbytes *= self.pim.pu_read_bytes * passes
        acts = float(load.rows.sum()) * passes
        energy = float(self.compute_energy_j(nbytes, acts, load.queries, active_banks, load.head_dim, load.group))
        neck = "reduction"
        if mac >= red_t:
            neck = "pu" if t_col > self.spacing(power_limit) * self.tck else "columns"
        return StepCost(busy + refresh, mac, red_t + red_tail, refresh, nbytes, acts, energy, neck)

    def even_load(
        self, tokens: int, bytes_per_token: float, queries: int = 1, group: int = 1, head_dim: int = 128
    ) -> UnitLoad:
        """A :class:`UnitLoad` with ``tokens`` packed evenly over every bank (PAM's mapping)."""
        lay = self.layout
        base, extra = divmod(int(tokens), lay.banks)
        per_bank = np.full(lay.banks, base, dtype=np.int64)
        per_bank[:extra] += 1
        # Spread the remainder over bank groups first so no group gets two before all have one.
        order = np.arange(lay.banks).reshape(lay.banks_per_unit, lay.units).T.reshape(-1)
        flat = np.empty(lay.banks, dtype=np.int64)
        flat[order] = per_bank
        t = flat.reshape(lay.units, lay.banks_per_unit)
        r = np.ceil(t * bytes_per_token / self.pu_row_bytes).astype(np.int64)
        return UnitLoad(t, r, float(bytes_per_token), queries=queries, group=group, head_dim=head_dim)

    # --- vectorised prices for the simulator ----------------------------------------------------------
    def _constants(self, token_bytes: float, group: int, head_dim: int, power_limit: bool) -> tuple[float, ...]:
        """Per-configuration constants of :meth:`attention_seconds` (so a call is a few array ops)."""
        key = (token_bytes, group, head_dim, power_limit)
        hit = self._memo.get(key)
        if hit is None:
            hit = self._memo[key] = self._constants_uncached(*key)
        return hit

    def _constants_uncached(
        self, token_bytes: float, group: int, head_dim: int, power_limit: bool
    ) -> tuple[float, ...]:
        p = self.pim
        t_col, passes = self._column_seconds(group, head_dim, power_limit)
        per_token = max(passes * t_col / p.pu_read_bytes * token_bytes, group / (p.pu_clock_mhz * 1e6))
        rows = passes * self.row_switch_seconds(power_limit) * token_bytes / self.pu_row_bytes
        return per_token + rows, 1.0 / (1.0 - self.refresh_fraction())

    def attention_seconds(
        self,
        tokens: np.ndarray | float,
        token_bytes: float,
        coarse: bool = False,
        queries: np.ndarray | float | None = None,
        group: int = 1,
        head_dim: int = 128,
        power_limit: bool = False,
        _general: bool = False,
    ) -> np.ndarray:
        """Seconds of one step over ``tokens`` selected tokens of ``token_bytes`` each (vectorised).

        Tokens are spread evenly over every bank (PAMattention's fine-grained split), or with
        ``coarse`` in fixed FlashDecoding-style tiles of :data:`COARSE_BLOCK_TOKENS` tokens of one
        head, one tile per bank group (no PAMattention). ``queries``: partial results returned
        (default none beyond the banks' own). Column and row counts are taken as continuous
        (``tokens / banks``), which is exact on average over many steps.
        """
        lay = self.layout
        per_token, ref = self._constants(float(token_bytes), group, head_dim, power_limit)
        scalar = isinstance(tokens, int | float) and (queries is None or isinstance(queries, int | float))
        n: Any
        q: Any
        if scalar:  # the same formula on Python floats: a few microseconds
            n = max(float(tokens), 0.0)
            q = 0.0 if queries is None else float(queries)
        else:
            n = np.maximum(np.asarray(tokens, dtype=float), 0.0)
            q = 0.0 if queries is None else np.asarray(queries, dtype=float)
        vmin: Any = min if scalar else np.minimum
        if not scalar and not coarse and not _general and np.ndim(q) == 0:
            # Every bank busy (the usual case): the reduction is the same for every entry.
            through, tail = self.reduce_seconds(float(q), float(lay.banks), float(lay.units),
                                                float(self.spec.channels), head_dim)
            busy = np.maximum(n * (per_token / lay.banks), through) + tail
            few = n < max(lay.banks, float(q))
            if few.any():
                busy[few] = self.attention_seconds(n[few], token_bytes, False, None if queries is None else q,
                                                   group, head_dim, power_limit, _general=True) / ref
            return np.where(n > 0, busy * ref, 0.0)
        q = vmin(q, n)  # a query with no token here leaves no partial here
        if coarse:
            heads = max(1.0, token_bytes / (4.0 * head_dim))  # KV heads in one token's bytes
            blocks = np.ceil(n * heads / COARSE_BLOCK_TOKENS)
            units = vmin(blocks, lay.units)
            per_bank = vmin(np.ceil(blocks / lay.units) * COARSE_BLOCK_TOKENS / heads, n) / lay.banks_per_unit
            banks = units * lay.banks_per_unit
        else:
            per_bank = n / lay.banks
            banks = vmin(n, lay.banks)
            units = vmin(n / lay.banks_per_unit, lay.units)
        channels = vmin(units / self.units_per_channel, self.spec.channels)
        through, tail = self.reduce_seconds(q, banks, units, channels, head_dim)
        vmax: Any = max if scalar else np.maximum
        busy = (vmax(per_bank * per_token, through) + tail) * ref
        if scalar:
            return np.asarray(busy if n > 0 else 0.0)
        return np.where(n > 0, busy, 0.0)

    def stream_seconds(self, nbytes: np.ndarray | float, power_limit: bool = False) -> np.ndarray:
        """Seconds to scan ``nbytes`` of KV in place with all PUs (PIM column commands, vectorised)."""
        b = np.maximum(np.asarray(nbytes, dtype=float), 0.0)
        per_bank = np.ceil(b / self.pim_banks)
        cols = np.ceil(per_bank / self.pim.pu_read_bytes)
        rows = np.ceil(per_bank / self.pu_row_bytes)
        t = cols * self.spacing(power_limit) * self.tck + rows * self.row_switch_seconds(power_limit)
        return np.where(b > 0, t / (1.0 - self.refresh_fraction()), 0.0)

    def fetch_seconds(self, tokens: np.ndarray | float, token_bytes: float) -> np.ndarray:
        """Seconds to read ``tokens`` out to the host as plain DRAM (no PIM), before the link."""
        n = np.asarray(tokens, dtype=float)
        return np.where(n > 0, stream_seconds(self.spec, n * token_bytes), 0.0)

    # --- the same prices on Python floats, one count at a time ---------------------------------------------
    # The simulator prices a few steps per call; numpy costs microseconds per operation on such small arrays,
    # so these closures repeat the vectorised formulas above operation for operation on Python floats (the
    # same IEEE operations in the same order: the same results, element by element).
    def attention_seconds_fn(
        self, token_bytes: float, coarse: bool = False, group: int = 1, head_dim: int = 128, power_limit: bool = False
    ) -> Callable[[float], float]:
        """``x -> attention_seconds(array([x]), ...)[0]``, seconds for ``x`` tokens, no extra queries."""
        lay = self.layout
        per_token, ref = self._constants(float(token_bytes), group, head_dim, power_limit)
        k1, k2, k3 = self._reduce_constants(head_dim)
        banks, bpu, units = float(lay.banks), float(lay.banks_per_unit), float(lay.units)
        upc, channels = float(self.units_per_channel), float(self.spec.channels)

        def spread(per_bank: float, b: float, u: float, c: float) -> float:
            """Seconds with ``per_bank`` tokens on the busiest bank, partials of ``b`` banks, ``u`` units, ``c``
            channels merged (:meth:`reduce_seconds` with no extra queries), refresh included."""
            u = u if u > 1.0 else 1.0
            c = c if c > 1.0 else 1.0
            s1 = b / u * k1
            parts = u if k1 else b
            s2 = parts / c * k2
            s3 = parts * k3
            through = s1 if s1 > s2 else s2
            through = through if through > s3 else s3
            mac = per_bank * per_token
            return ((mac if mac > through else through) + (s1 + s2 + s3)) * ref

        if coarse:
            heads = max(1.0, token_bytes / (4.0 * head_dim))

            def tiles(x: float) -> float:
                n = x if x > 0.0 else 0.0
                if not n > 0.0:
                    return 0.0
                blocks = float(math.ceil(n * heads / COARSE_BLOCK_TOKENS))
                u = blocks if blocks < units else units
                per_bank = min(float(math.ceil(blocks / units)) * COARSE_BLOCK_TOKENS / heads, n) / bpu
                c = u / upc
                return spread(per_bank, u * bpu, u, c if c < channels else channels)

            return tiles

        rate = per_token / lay.banks
        through_all, tail_all = self.reduce_seconds(0.0, banks, units, channels, head_dim)

        def fine(x: float) -> float:
            n = x if x > 0.0 else 0.0
            if n >= banks:  # every bank busy
                busy = n * rate
                return ((busy if busy > through_all else through_all) + tail_all) * ref
            if not n > 0.0:
                return 0.0
            u = n / bpu
            u = u if u < units else units
            c = u / upc
            return spread(n / banks, n, u, c if c < channels else channels) / ref * ref

        return fine

    def fetch_seconds_fn(self, token_bytes: float) -> Callable[[float], float]:
        """``x -> fetch_seconds(array([x]), token_bytes)[0]``: seconds to read ``x`` tokens out to the host."""
        # :func:`stream_seconds`'s sequential stream: its bandwidth and first-access latency.
        bw = pattern(self.spec, "seq", "mop4clxor").bandwidth_gbps * 1e9
        first = unloaded_latency_cycles(self.spec, "closed") * self.spec.tck_ns * 1e-9

        def fetch(x: float) -> float:
            return x * token_bytes / bw + first if x > 0 else 0.0

        return fetch

    def energy_fn(self, token_bytes: float, computed: bool = True) -> Callable[[float], float]:
        """``x -> energy_j(array([x]), token_bytes, computed)[0]``: joules to read (and process) ``x`` tokens."""
        e = self.cfg.energy
        array = e.act_pj_per_bit + e.cell_read_pj_per_bit
        factor, banks, head_dim = e.pu_op_factor, float(self.pim_banks), 128  # compute_energy_j's defaults
        move, ru = e.bank_to_io_pj_per_bit, e.ru_pj_per_op
        external = self.external_pj_per_bit()

        def inplace(x: float) -> float:
            bits = x * token_bytes * 8.0
            parts = 0.0 + (x if x < banks else banks)  # no queries; the banks that hold a token
            return (bits * array + bits * 1 * factor * array + parts * (head_dim + 2) * 2 * 8 * move
                    + parts * (head_dim + 2) * 3 * ru) * 1e-12

        def read(x: float) -> float:
            return x * token_bytes * 8 * external * 1e-12

        return inplace if computed else read

    # --- energy --------------------------------------------------------------------------------------------
    def compute_energy_j(
        self, nbytes: np.ndarray | float, activations: np.ndarray | float, queries: np.ndarray | float,
        banks: np.ndarray | float, head_dim: int = 128, group: int = 1,
    ) -> np.ndarray:
        """Joules of attention in place: array reads into the PUs, PU work (3x a read), RU merges."""
        e = self.cfg.energy
        bits = np.asarray(nbytes, dtype=float) * 8.0
        read = bits * (e.act_pj_per_bit + e.cell_read_pj_per_bit)
        pu = bits * group * e.pu_op_factor * (e.act_pj_per_bit + e.cell_read_pj_per_bit)
        parts = np.asarray(queries, dtype=float) + np.asarray(banks, dtype=float)
        move = parts * (head_dim + 2) * 2 * 8 * e.bank_to_io_pj_per_bit
        ru = parts * (head_dim + 2) * 3 * e.ru_pj_per_op
        del activations  # the FGDRAM activation figure is already per bit read
        return (read + pu + move + ru) * 1e-12

    def energy_j(self, tokens: np.ndarray | float, token_bytes: float, computed: bool = True) -> np.ndarray:
        """Joules to read ``tokens`` (in place with PU work when ``computed``, else out to the host)."""
        nbytes = np.asarray(tokens, dtype=float) * token_bytes
        if computed:
            banks = np.minimum(np.asarray(tokens, dtype=float), self.pim_banks)
            return self.compute_energy_j(nbytes, 0.0, 0.0, banks)
        return nbytes * 8 * self.external_pj_per_bit() * 1e-12

    def external_pj_per_bit(self) -> float:
        """Energy of reading one bit out of the device, pJ."""
        e = self.cfg.energy
        return e.act_pj_per_bit + e.cell_read_pj_per_bit + e.bank_to_io_pj_per_bit + e.io_pj_per_bit

    def inplace_pj_per_bit(self) -> float:
        """Energy of processing one bit in place (array read + PU at ``pu_op_factor`` x a read), pJ."""
        e = self.cfg.energy
        return (e.act_pj_per_bit + e.cell_read_pj_per_bit) * (1.0 + e.pu_op_factor)

    # --- the CLI's attention step -------------------------------------------------------------------------------
    def attention_step(
        self, context: int, heads: int, head_dim: int = 128, mapping: Mapping = "pam", power_limit: bool = False
    ) -> StepCost:
        """One decode step's attention of ``heads`` heads over ``context`` tokens each (16-bit K and V)."""
        if context < 1 or heads < 1 or head_dim < 1:
            raise UserError("context, heads and head_dim must be >= 1")
        if mapping == "attacc":
            return self._attacc_step(context, heads, head_dim, power_limit)
        if mapping != "pam":
            raise UserError(f"unknown PIM mapping '{mapping}' (known: pam, attacc)")
        load = self.even_load(context * heads, 2 * head_dim * 2, queries=heads, head_dim=head_dim)
        return self.price(load, power_limit)

    def attacc_cycles(self, context: int, heads: int, head_dim: int = 128, power_limit: bool = False) -> float:
        """Cycles of AttAcc's bank-level layout (reference/attacc.md), from its command counts.

        Per channel and head: tokens over the channel's ``pch x ranks x bank groups`` units, the
        head dimension over the 4 banks of a group (adder-tree mode); score then context, each
        ``ceil(L/units) x ceil(d/(banks x 16))`` all-bank MACs ``mac_spacing`` apart, a row switch
        every 32 MACs; the query written to the banks' buffers (one column per ``nCCD_L``), scores
        and outputs moved to the buffer die after the last MAC group, probabilities moved back
        (``max(nBL, nCCD_S)`` apart, interleaved over bank groups). Heads beyond one per channel run
        in further rounds; consecutive rounds overlap one's softmax moves with the other's MACs.
        """
        s, p = self.spec, self.pim
        units = s.pch * s.ranks * s.bank_groups
        banks = s.banks_per_group
        lanes = p.pu_read_bytes // 2
        sp = self.spacing(power_limit)
        per_unit = math.ceil(context / units)
        dim_cols = math.ceil(head_dim / (banks * lanes))
        macs = per_unit * dim_cols  # score; context has the same count
        rows = math.ceil(macs / s.columns)
        switch = max(0.0, s.nRTP + s.nRP + s.nRCD + s.act_cycles - sp)
        phase = macs * sp + (rows - 1) * switch
        wrgb = banks * dim_cols * s.nCCD_L
        move_gap = max(s.nBL, s.nCCD_S)
        mvsb_tail = s.ranks * s.bank_groups * move_gap
        mvgb = s.ranks * s.bank_groups * math.ceil(context / (units * lanes)) * move_gap
        single = wrgb + phase + mvsb_tail + mvgb + switch + phase + mvsb_tail
        rounds = math.ceil(heads / s.channels)
        pairs, odd = divmod(rounds, 2)
        pair = wrgb + 2 * (phase + switch + phase) + 4 * mvsb_tail
        return pairs * pair + odd * single

    def _attacc_step(self, context: int, heads: int, head_dim: int, power_limit: bool) -> StepCost:
        cycles = self.attacc_cycles(context, heads, head_dim, power_limit)
        busy = cycles * self.tck
        refresh = busy * self.refresh_fraction() / (1.0 - self.refresh_fraction())
        nbytes = 2.0 * context * head_dim * 2 * heads
        energy = float(self.compute_energy_j(nbytes, 0.0, heads, 0.0, head_dim))
        return StepCost(busy + refresh, busy, 0.0, refresh, nbytes, 0.0, energy, "columns")

    def pattern(self, name: str, mapping: str | None = None, channels: int | None = None,
                refresh: bool = True, seed: int = 1) -> PatternResult:
        """Plain-DRAM access pattern of this device (see :func:`pamkv.hardware.dram.pattern`)."""
        return pattern(self.spec, name, mapping, channels, refresh, seed)

    def summary(self) -> dict[str, object]:
        """Headline figures of the device."""
        s = self.spec
        return {
            "capacity_gb": s.capacity_bytes / 2**30,
            "peak_external_bandwidth_gbps": s.peak_bandwidth / 1e9,
            "peak_internal_bandwidth_gbps": self.internal_bandwidth(False) / 1e9,
            "peak_internal_bandwidth_power_limited_gbps": self.internal_bandwidth(True) / 1e9,
            "peak_flops": self.peak_flops(False),
            "peak_flops_power_limited": self.peak_flops(True),
            "pu_peak_flops": self.pu_peak_flops(),
            "paper_power_limited_flops": self.pim.paper_power_limited_flops,
            "pim_banks": self.pim_banks,
            "energy_pj_per_bit_external": self.external_pj_per_bit(),
            "energy_pj_per_bit_in_place": self.inplace_pj_per_bit(),
        }
