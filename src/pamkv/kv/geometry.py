"""Where a block's tokens sit inside one device: bank group (unit), bank, row and column.

The layout of PAPER.md §6.1: a block lives in one unit (a DRAM bank group, or an SSD channel); its
tokens are spread evenly over the unit's banks (SSD: the dies on the channel), token ``j`` of a block
in slot ``s`` going to bank ``(s + j) % banks`` at in-bank index ``j // banks`` — so the banks of the
group hold the block at the same row and column ("banks of a group open the same row together"), and
rotating the start bank by slot spreads partly filled blocks too.

Each bank's address space is split into ``layers`` equal regions, one per transformer layer, each
laid out identically: a token's K/V for layer ``l`` sits at the same offset of region ``l``. Rows and
columns reported here are those of layer 0's region; a one-layer attention step opens the same number
of rows in every region. A slot (one block's share of one bank, one layer) never straddles a row when it
fits in one; when it is larger than a row it starts on a row boundary. Bytes are whole bytes (a token's
bytes are rounded up).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pamkv.hardware.layout import DeviceLayout


def _fit_slots_per_unit(layout: DeviceLayout, slot_bytes: int, layers: int) -> int:
    """Block slots one unit holds when every bank keeps ``layers`` regions of ``slot_bytes`` slots."""
    region_rows = layout.rows_per_bank // layers
    if slot_bytes <= layout.row_bytes:
        return region_rows * (layout.row_bytes // slot_bytes)
    return region_rows // math.ceil(slot_bytes / layout.row_bytes)


@dataclass(frozen=True)
class DeviceGeometry:
    """Slot geometry of one device: how many block slots each unit has and where slot ``s`` is.

    ``capacity_blocks`` slots are split over the units as evenly as possible (the first
    ``capacity_blocks % units`` units get one more).
    """

    layout: DeviceLayout
    block_tokens: int
    token_bytes: int
    layers: int
    capacity_blocks: int

    def __post_init__(self) -> None:
        fit = _fit_slots_per_unit(self.layout, self.slot_bytes, self.layers) * self.layout.units
        if self.capacity_blocks > fit:
            raise ValueError(
                f"{self.capacity_blocks} blocks of {self.block_tokens} tokens x {self.token_bytes} B x "
                f"{self.layers} layers do not fit layout '{self.layout.name}' (room for {fit} blocks)"
            )

    @property
    def tokens_per_bank(self) -> int:
        """Tokens of one full block that land in each bank of its unit."""
        return -(-self.block_tokens // self.layout.banks_per_unit)

    @property
    def slot_bytes(self) -> int:
        """Bytes one block takes in one bank for one layer."""
        return self.tokens_per_bank * self.token_bytes

    @property
    def slots_per_row(self) -> int:
        """Block slots per row (0 when one slot needs more than a row)."""
        return self.layout.row_bytes // self.slot_bytes

    @property
    def rows_per_slot(self) -> int:
        """Rows one slot spans (1 when several slots share a row)."""
        return max(1, math.ceil(self.slot_bytes / self.layout.row_bytes))

    @property
    def unit_slots(self) -> np.ndarray:
        """Slots per unit, int64 ``[units]``."""
        units = self.layout.units
        base, extra = divmod(self.capacity_blocks, units)
        return base + (np.arange(units) < extra).astype(np.int64)

    @property
    def max_unit_slots(self) -> int:
        """Slots of the largest unit."""
        return -(-self.capacity_blocks // self.layout.units)

    def slot_position(self, slot: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(start bank, row, column in bytes) of block slots ``slot`` inside their unit (layer 0)."""
        slot = np.asarray(slot, dtype=np.int64)
        bank = slot % self.layout.banks_per_unit
        spr = self.slots_per_row
        if spr:
            return bank, slot // spr, (slot % spr) * self.slot_bytes
        return bank, slot * self.rows_per_slot, np.zeros_like(slot)

    def token_position(self, slot: np.ndarray, offset: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(bank, first row, last row) of token ``offset`` of the blocks in ``slot`` (layer 0 region)."""
        slot = np.asarray(slot, dtype=np.int64)
        offset = np.asarray(offset, dtype=np.int64)
        banks = self.layout.banks_per_unit
        _, row, col = self.slot_position(slot)
        bank = (slot + offset) % banks
        addr = row * self.layout.row_bytes + col + (offset // banks) * self.token_bytes
        return bank, addr // self.layout.row_bytes, (addr + self.token_bytes - 1) // self.layout.row_bytes


def build_geometry(
    layout: DeviceLayout | None,
    *,
    block_tokens: int,
    token_bytes: float,
    layers: int,
    capacity_blocks: int | None = None,
    capacity_bytes: float | None = None,
    name: str = "device",
) -> DeviceGeometry:
    """The geometry of one device from its layout and capacity (blocks, or bytes, or what the layout holds).

    ``name`` names the default layout. ``capacity_bytes`` becomes the whole blocks it holds, capped at
    what the layout can address once slots are row-aligned (the alignment loss is real: a mapping
    cannot use part of a row twice).
    Without a layout the device is one unit of one bank (pure bookkeeping). Raises ``ValueError`` when the
    capacity is missing, zero, or larger than the layout.
    """
    tb = math.ceil(token_bytes)
    block_bytes = block_tokens * token_bytes * layers
    if capacity_blocks is None and capacity_bytes is not None:
        capacity_blocks = int(capacity_bytes // block_bytes)
        if capacity_blocks < 1:
            raise ValueError(f"capacity_bytes {capacity_bytes:g} holds no block of {block_bytes:g} B")
        if layout is not None:
            fit = _fit_slots_per_unit(layout, -(-block_tokens // layout.banks_per_unit) * tb, layers)
            capacity_blocks = min(capacity_blocks, fit * layout.units)
    if layout is None:
        if capacity_blocks is None:
            raise ValueError("give capacity_blocks, capacity_bytes or a layout")
        layout = DeviceLayout(
            name=name, kind="dram", units=1, banks_per_unit=1, rows_per_bank=capacity_blocks * layers,
            row_bytes=block_tokens * tb,
        )
    if capacity_blocks is None:
        capacity_blocks = _fit_slots_per_unit(layout, -(-block_tokens // layout.banks_per_unit) * tb, layers)
        capacity_blocks *= layout.units
        if capacity_blocks < 1:
            raise ValueError(f"layout '{layout.name}' holds no block of {block_tokens} tokens")
    return DeviceGeometry(layout, block_tokens, tb, layers, capacity_blocks)
