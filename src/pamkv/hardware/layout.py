"""The parallel structure of one memory device as the KV mapping sees it, and the load it reports.

This is the contract between ``pamkv.kv`` (which decides where tokens go inside a device and which are
read) and ``pamkv.hardware`` (which prices the reads). ``kv`` imports it; ``hardware`` builds a
:class:`DeviceLayout` from each device preset and prices a :class:`UnitLoad`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np


@dataclass(frozen=True)
class DeviceLayout:
    """Parallel units of one device.

    DRAM/PIM: a *unit* is a bank group (all bank groups of all channels/pseudo-channels/ranks are
    numbered 0..units-1), a *bank* one bank of that group, a *row* one DRAM row of ``row_bytes``.
    SSD: a unit is a flash channel, a bank one die on it, a row one flash page of ``row_bytes``.
    """

    name: str
    kind: Literal["dram", "ssd"]
    units: int
    banks_per_unit: int
    rows_per_bank: int
    row_bytes: int

    @property
    def banks(self) -> int:
        """Banks (dies) in the whole device."""
        return self.units * self.banks_per_unit

    @property
    def capacity_bytes(self) -> int:
        """Bytes the layout addresses."""
        return self.banks * self.rows_per_bank * self.row_bytes


@dataclass(frozen=True)
class UnitLoad:
    """What one attention step reads on one device, per bank.

    ``tokens[u, b]``: selected tokens read from bank ``b`` of unit ``u``;
    ``rows[u, b]``: distinct rows (pages) those reads open. ``bytes_per_token`` is the K+V bytes of
    one token as stored on this device (one layer, the KV heads mapped here).
    """

    tokens: np.ndarray
    rows: np.ndarray
    bytes_per_token: float

    def __post_init__(self) -> None:
        if self.tokens.shape != self.rows.shape or self.tokens.ndim != 2:
            raise ValueError("tokens and rows must both be [units, banks_per_unit] arrays")
