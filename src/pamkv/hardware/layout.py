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
    one token as stored on this device (one layer, the KV heads mapped here). The optional
    ``queries``, ``group`` and ``head_dim`` (added for the reduction and GQA cost; defaults keep the
    original meaning) say how many partial results leave the device and how much compute a read feeds.
    """

    tokens: np.ndarray
    rows: np.ndarray
    bytes_per_token: float
    queries: int = 1
    """Partial results (request x query head) this device computes and returns; 1 if unknown."""
    group: int = 1
    """Query heads sharing each KV head (GQA): dot products per K/V element read."""
    head_dim: int = 128
    """Width of one head (sets the size of a partial result)."""

    def __post_init__(self) -> None:
        if self.tokens.shape != self.rows.shape or self.tokens.ndim != 2:
            raise ValueError("tokens and rows must both be [units, banks_per_unit] arrays")
        if self.queries < 0 or self.group < 1 or self.head_dim < 1:
            raise ValueError("queries must be >= 0, group and head_dim >= 1")
