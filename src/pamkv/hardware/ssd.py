"""SSD-PIM: flash page reads, channel transfers and PUs in the SSD controller (PAM Table 1, §5.2).

Per die, a page read senses a whole page (``page_bytes``) into the page register in ``tR`` — even
when one token of it is wanted — and dies of a channel read in parallel (``planes_per_die`` pages at
once with multi-plane reads). The channel then moves only the wanted part of each sensed page, in
ECC codewords (``transfer_chunk_bytes``), at ``channel_mtps``. A channel's time is the larger of
its busiest die's sensing and its bus transfers, plus the pipeline fill (one sensing before the
first transfer, one transfer after the last sensing). The controller's PUs then compute attention
over what arrived, and its RUs merge partials. Small scattered reads therefore pay ``tR`` per token,
large scans amortise it over a page — they price very differently, as on real flash.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from pamkv.config.devices import SsdDeviceConfig
from pamkv.errors import UserError
from pamkv.hardware.layout import DeviceLayout, UnitLoad
from pamkv.hardware.pim import StepCost


class SsdDevice:
    """One SSD with PIM in its controller."""

    def __init__(self, cfg: SsdDeviceConfig) -> None:
        self.cfg = cfg
        self.name = cfg.name
        pages_per_die = int(cfg.channel_gb * 1e9 / cfg.dies_per_channel / cfg.page_bytes)
        self.layout = DeviceLayout(
            name=cfg.name, kind="ssd", units=cfg.channels, banks_per_unit=cfg.dies_per_channel,
            rows_per_bank=pages_per_die, row_bytes=cfg.page_bytes,
        )
        self.tR = cfg.tR_us * 1e-6 + cfg.command_us * 1e-6
        self.channel_bw = cfg.channel_mtps * 1e6 * cfg.channel_bytes_per_transfer

    # --- headline figures ---------------------------------------------------------------------------
    @property
    def dies(self) -> int:
        """Flash dies in the SSD."""
        return self.layout.banks

    @property
    def capacity_bytes(self) -> float:
        """Bytes behind all channels."""
        return self.cfg.channels * self.cfg.channel_gb * 1e9

    @property
    def cost_usd(self) -> float:
        """Estimated price of the SSD (cost per GB x capacity in decimal GB)."""
        return self.cfg.cost.usd_per_gb * self.capacity_bytes / 1e9

    def sense_bandwidth(self) -> float:
        """Bytes/s all dies sense when every page read is used whole."""
        return self.dies * self.cfg.planes_per_die * self.cfg.page_bytes / self.tR

    def internal_bandwidth(self) -> float:
        """Bytes/s reaching the controller on a full scan: the slower of sensing and the channels."""
        return min(self.sense_bandwidth(), self.cfg.channels * self.channel_bw)

    def pu_peak_flops(self) -> float:
        """FLOP/s of the controller PUs (two FLOPs per multiply-add)."""
        c = self.cfg
        return c.pu_count * c.pu_lanes * 2 * c.pu_clock_mhz * 1e6

    def peak_flops(self, power_limit: bool = False) -> float:
        """Attention FLOP/s: PU peak, capped by the data reaching them (1 FLOP/B) and the power limit."""
        f = min(self.pu_peak_flops(), self.internal_bandwidth())
        if power_limit and self.cfg.power_limited_flops is not None:
            f = min(f, self.cfg.power_limited_flops)
        return f

    # --- the channel pipeline ------------------------------------------------------------------------
    def _channel_seconds(
        self, pages_die_max: np.ndarray, xfer_bytes: np.ndarray, chunk_bytes: np.ndarray
    ) -> np.ndarray:
        """Seconds of one channel: busiest die's sensing vs bus transfers, plus the pipeline fill."""
        sense = np.ceil(pages_die_max / self.cfg.planes_per_die) * self.tR
        bus = xfer_bytes / self.channel_bw
        first_xfer = chunk_bytes / self.channel_bw
        t = np.maximum(sense + first_xfer, bus + self.tR)
        return np.where(xfer_bytes > 0, t, 0.0)

    def _compute_seconds(self, nbytes: np.ndarray, group: int, power_limit: bool) -> np.ndarray:
        """PU time for attention over ``nbytes`` of K/V (``group`` MACs per element)."""
        c = self.cfg
        macs = nbytes / 2.0 * group
        t = macs / (c.pu_count * c.pu_lanes * c.pu_clock_mhz * 1e6)
        if power_limit and c.power_limited_flops is not None:
            t = np.maximum(t, 2.0 * macs / c.power_limited_flops)
        return t

    def _reduce_seconds(self, queries: np.ndarray, dies: np.ndarray, head_dim: int) -> np.ndarray:
        """RU time to merge the per-die partials into ``queries`` results."""
        c = self.cfg
        ops = (np.asarray(queries, dtype=float) + dies) * (head_dim + 2) * 3
        return ops / (max(1, c.ru_count) * c.ru_lanes * c.pu_clock_mhz * 1e6)

    def price(self, load: UnitLoad, power_limit: bool = False) -> StepCost:
        """Time and energy of one attention step: ``tokens[channel, die]``, ``rows`` = pages to sense."""
        lay, c = self.layout, self.cfg
        if load.tokens.shape != (lay.units, lay.banks_per_unit):
            raise UserError(
                f"{self.name}: load has shape {load.tokens.shape}, device has {lay.units} channels x "
                f"{lay.banks_per_unit} dies"
            )
        tokens = np.asarray(load.tokens, dtype=float)
        pages = np.asarray(load.rows, dtype=float)
        want = tokens * load.bytes_per_token
        # Each sensed page sends at least one codeword; wanted bytes go in whole codewords.
        chunks = np.maximum(np.ceil(want / c.transfer_chunk_bytes), pages)
        xfer = chunks * c.transfer_chunk_bytes
        chunk = np.full(lay.units, c.transfer_chunk_bytes)
        per_channel = self._channel_seconds(pages.max(axis=1), xfer.sum(axis=1), chunk)
        flash = float(per_channel.max())
        nbytes = float(want.sum())
        compute = float(self._compute_seconds(np.asarray(nbytes), load.group, power_limit))
        dies = float((tokens > 0).sum())
        red = float(self._reduce_seconds(np.asarray(float(load.queries)), np.asarray(dies), load.head_dim))
        # The PUs work as data arrives; only their last chunk's work is exposed unless they are slower.
        tail = compute / max(1.0, float(chunks.sum()))
        total = max(flash, compute) + tail + red
        energy = float(self.energy_raw(float(pages.sum()), float(xfer.sum()), nbytes * load.group))
        neck = "flash" if flash >= compute else "pu"
        return StepCost(total if nbytes > 0 else 0.0, max(flash, compute), red, 0.0, float(xfer.sum()),
                        float(pages.sum()), energy, neck)

    # --- vectorised prices ---------------------------------------------------------------------------------
    def pages_for(self, tokens: np.ndarray, token_bytes: float, selected_fraction: float = 1.0) -> np.ndarray:
        """Expected pages sensed to read ``tokens`` selected tokens stored ``page_bytes / token_bytes``
        to a page, when they are a ``selected_fraction`` of the tokens stored around them (1 = a
        contiguous scan)."""
        per_page = self.cfg.page_bytes / token_bytes
        n = np.asarray(tokens, dtype=float)
        if per_page <= 1.0:  # a token spans pages
            return n * math.ceil(token_bytes / self.cfg.page_bytes)
        f = min(max(selected_fraction, 1e-9), 1.0)
        touched = 1.0 - (1.0 - f) ** per_page  # chance a stored page holds at least one selected token
        return n / f / per_page * touched

    def attention_seconds(
        self,
        tokens: np.ndarray | float,
        token_bytes: float,
        coarse: bool = False,
        queries: np.ndarray | float | None = None,
        group: int = 1,
        head_dim: int = 128,
        power_limit: bool = False,
        selected_fraction: float = 1.0,
    ) -> np.ndarray:
        """Seconds of one step over ``tokens`` selected tokens spread evenly over all dies (vectorised).

        ``selected_fraction``: the share of stored tokens selected (Double Sparsity at 8x: 1/8), which
        sets how many pages must be sensed; ``coarse`` spreads whole 512-token tiles over dies.
        """
        c = self.cfg
        n = np.maximum(np.asarray(tokens, dtype=float), 0.0)
        dies = self.dies
        if coarse:
            tiles = np.ceil(n / 512.0)
            per_die = np.minimum(np.ceil(tiles / dies) * 512.0, n)
            active = np.minimum(tiles, dies)
        else:
            per_die = n / dies
            active = np.minimum(n, dies)
        pages_die = np.ceil(self.pages_for(per_die, token_bytes, selected_fraction))
        want = per_die * token_bytes
        chunks = np.maximum(np.ceil(want / c.transfer_chunk_bytes), pages_die)
        xfer_channel = chunks * c.transfer_chunk_bytes * c.dies_per_channel
        flash = self._channel_seconds(pages_die, xfer_channel, np.full_like(n, c.transfer_chunk_bytes))
        compute = self._compute_seconds(n * token_bytes, group, power_limit)
        q = np.zeros_like(n) if queries is None else np.asarray(queries, dtype=float)
        red = self._reduce_seconds(q, active, head_dim)
        total = np.maximum(flash, compute) + compute / np.maximum(chunks * dies, 1.0) + red
        return np.where(n > 0, total, 0.0)

    def stream_seconds(self, nbytes: np.ndarray | float, power_limit: bool = False) -> np.ndarray:
        """Seconds to scan ``nbytes`` of KV in place (whole pages, all dies, PUs computing)."""
        b = np.maximum(np.asarray(nbytes, dtype=float), 0.0)
        tokens = b / self.cfg.page_bytes
        return self.attention_seconds(tokens, float(self.cfg.page_bytes), power_limit=power_limit)

    def fetch_seconds(
        self, tokens: np.ndarray | float, token_bytes: float, selected_fraction: float = 1.0
    ) -> np.ndarray:
        """Seconds to read ``tokens`` out of flash to the controller for the host (no PIM compute)."""
        c = self.cfg
        n = np.maximum(np.asarray(tokens, dtype=float), 0.0)
        per_die = n / self.dies
        pages_die = np.ceil(self.pages_for(per_die, token_bytes, selected_fraction))
        chunks = np.maximum(np.ceil(per_die * token_bytes / c.transfer_chunk_bytes), pages_die)
        xfer = chunks * c.transfer_chunk_bytes * c.dies_per_channel
        t = self._channel_seconds(pages_die, xfer, np.full_like(n, c.transfer_chunk_bytes))
        return np.where(n > 0, t, 0.0)

    # --- the same prices on Python floats, one count at a time -------------------------------------------------
    # For the simulator's per-step loop: the vectorised formulas above, operation for operation on Python
    # floats (the same IEEE operations in the same order: the same results, element by element).
    def _pages_fn(self, token_bytes: float, selected_fraction: float) -> Callable[[float], float]:
        """``x -> pages_for(array([x]), ...)[0]``: expected pages sensed for ``x`` selected tokens."""
        per_page = self.cfg.page_bytes / token_bytes
        if per_page <= 1.0:
            spans = math.ceil(token_bytes / self.cfg.page_bytes)
            return lambda x: x * spans
        f = min(max(selected_fraction, 1e-9), 1.0)
        touched = 1.0 - (1.0 - f) ** per_page
        return lambda x: x / f / per_page * touched

    def _flash_fn(self, token_bytes: float, selected_fraction: float) -> Callable[[float], tuple[float, float]]:
        """``per_die -> (channel seconds, codewords per die)`` of reading ``per_die`` tokens from every die."""
        c = self.cfg
        pages = self._pages_fn(token_bytes, selected_fraction)
        chunk, dies_per_channel, planes = c.transfer_chunk_bytes, c.dies_per_channel, c.planes_per_die
        t_r, bw = self.tR, self.channel_bw
        first = chunk / bw

        def flash(per_die: float) -> tuple[float, float]:
            pages_die = float(math.ceil(pages(per_die)))
            chunks = float(math.ceil(per_die * token_bytes / chunk))
            chunks = chunks if chunks > pages_die else pages_die
            xfer = chunks * chunk * dies_per_channel
            if not xfer > 0:
                return 0.0, chunks
            sense = float(math.ceil(pages_die / planes)) * t_r + first
            bus = xfer / bw + t_r
            return (sense if sense > bus else bus), chunks

        return flash

    def attention_seconds_fn(
        self, token_bytes: float, coarse: bool = False, group: int = 1, head_dim: int = 128,
        power_limit: bool = False, selected_fraction: float = 1.0,
    ) -> Callable[[float], float]:
        """``x -> attention_seconds(array([x]), ...)[0]``, seconds for ``x`` tokens, no extra queries."""
        c = self.cfg
        dies = float(self.dies)
        flash = self._flash_fn(token_bytes, selected_fraction)
        pu_rate = c.pu_count * c.pu_lanes * c.pu_clock_mhz * 1e6
        capped = c.power_limited_flops if power_limit else None
        ru_rate = max(1, c.ru_count) * c.ru_lanes * c.pu_clock_mhz * 1e6

        def seconds(x: float) -> float:
            n = x if x > 0.0 else 0.0
            if not n > 0.0:
                return 0.0
            if coarse:
                tiles = float(math.ceil(n / 512.0))
                per_die = min(float(math.ceil(tiles / dies)) * 512.0, n)
                active = tiles if tiles < dies else dies
            else:
                per_die = n / dies
                active = n if n < dies else dies
            read, chunks = flash(per_die)
            macs = n * token_bytes / 2.0 * group
            compute = macs / pu_rate
            if capped is not None:
                limited = 2.0 * macs / capped
                compute = compute if compute > limited else limited
            spread = chunks * dies
            red = (0.0 + active) * (head_dim + 2) * 3 / ru_rate
            return (read if read > compute else compute) + compute / (spread if spread > 1.0 else 1.0) + red

        return seconds

    def fetch_seconds_fn(self, token_bytes: float, selected_fraction: float = 1.0) -> Callable[[float], float]:
        """``x -> fetch_seconds(array([x]), ...)[0]``: seconds to read ``x`` tokens out to the controller."""
        dies = float(self.dies)
        flash = self._flash_fn(token_bytes, selected_fraction)

        def fetch(x: float) -> float:
            return flash(x / dies)[0] if x > 0.0 else 0.0

        return fetch

    def energy_fn(self, token_bytes: float, computed: bool = True,
                  selected_fraction: float = 1.0) -> Callable[[float], float]:
        """``x -> energy_j(array([x]), ...)[0]``: joules to read (and compute over) ``x`` tokens."""
        e = self.cfg.energy
        pages = self._pages_fn(token_bytes, selected_fraction)
        chunk, sense, channel, op = self.cfg.transfer_chunk_bytes, e.page_read_uj, e.channel_pj_per_bit, e.pu_pj_per_op

        def energy(x: float) -> float:
            p = pages(x)
            nbytes = x * token_bytes
            sent = p * chunk
            moved = nbytes if nbytes > sent else sent
            mac = nbytes if computed else 0.0
            return p * sense * 1e-6 + moved * 8 * channel * 1e-12 + mac / 2.0 * 2 * op * 1e-12

        return energy

    # --- energy ------------------------------------------------------------------------------------------------
    def energy_raw(
        self, pages: float | np.ndarray, xfer_bytes: float | np.ndarray, mac_bytes: float | np.ndarray
    ) -> np.ndarray:
        """Joules of sensing ``pages``, moving ``xfer_bytes`` over the channels and ``mac_bytes`` of PU work."""
        e = self.cfg.energy
        return (
            np.asarray(pages, dtype=float) * e.page_read_uj * 1e-6
            + np.asarray(xfer_bytes, dtype=float) * 8 * e.channel_pj_per_bit * 1e-12
            + np.asarray(mac_bytes, dtype=float) / 2.0 * 2 * e.pu_pj_per_op * 1e-12
        )

    def energy_j(self, tokens: np.ndarray | float, token_bytes: float, computed: bool = True,
                 selected_fraction: float = 1.0) -> np.ndarray:
        """Joules to read ``tokens`` (and compute over them in the controller when ``computed``)."""
        n = np.asarray(tokens, dtype=float)
        pages = self.pages_for(n, token_bytes, selected_fraction)
        nbytes = n * token_bytes
        moved = np.maximum(nbytes, pages * self.cfg.transfer_chunk_bytes)
        return self.energy_raw(pages, moved, nbytes if computed else 0.0)

    def pj_per_bit(self) -> float:
        """Energy per bit of a full-page scan to the controller (sensing + channel), pJ."""
        e = self.cfg.energy
        return e.page_read_uj * 1e6 / (self.cfg.page_bytes * 8) + e.channel_pj_per_bit

    def summary(self) -> dict[str, object]:
        """Headline figures of the device."""
        return {
            "capacity_gb": self.capacity_bytes / 1e9,
            "peak_external_bandwidth_gbps": None,
            "peak_internal_bandwidth_gbps": self.internal_bandwidth() / 1e9,
            "sense_bandwidth_gbps": self.sense_bandwidth() / 1e9,
            "channel_bandwidth_gbps": self.cfg.channels * self.channel_bw / 1e9,
            "peak_flops": self.peak_flops(False),
            "peak_flops_power_limited": self.peak_flops(True),
            "pu_peak_flops": self.pu_peak_flops(),
            "paper_power_limited_flops": self.cfg.power_limited_flops,
            "dies": self.dies,
            "energy_pj_per_bit_in_place": self.pj_per_bit(),
        }
