"""Physical address -> (channel, pseudo-channel, rank, bank group, bank, row, column), vectorised.

The two mappings of reference/dram.md, as Ramulator 2.1 applies them:

* the channel is chosen first by burst interleaving (consecutive bursts go to consecutive channels),
  and the rest of the address is mapped inside the channel;
* ``robaracoch`` — from least to most significant: column, pseudo-channel, rank, bank group, bank,
  row (a sequential stream reads a whole row of one bank before moving on);
* ``mop4clxor`` — two column bits (four bursts of a row together), then pseudo-channel, rank, bank
  group, bank, the remaining column bits and the row; each of those fields is XORed with the
  column bits (the row with what is left of them), spreading consecutive bursts over bank groups.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from pamkv.errors import UserError

if TYPE_CHECKING:
    from pamkv.hardware.dram import DramSpec

MAPPINGS: tuple[str, ...] = ("robaracoch", "mop4clxor")
FIELDS: tuple[str, ...] = ("channel", "pch", "rank", "bg", "bank", "row", "col")


def _bits(count: int, what: str) -> int:
    if count & (count - 1):
        raise UserError(f"address mapping needs a power-of-two {what} (got {count})")
    return count.bit_length() - 1


def map_addresses(spec: DramSpec, addr: np.ndarray, mapping: str) -> dict[str, np.ndarray]:
    """Decompose byte addresses ``addr`` into DRAM coordinates under ``mapping`` (arrays by field)."""
    if mapping not in MAPPINGS:
        raise UserError(f"unknown mapping '{mapping}' (known: {', '.join(MAPPINGS)})")
    tx = np.asarray(addr, dtype=np.int64) // spec.burst_bytes
    channel = tx % spec.channels
    a = tx // spec.channels
    widths = {
        "pch": _bits(spec.pch, "pseudo-channel count"),
        "rank": _bits(spec.ranks, "rank count"),
        "bg": _bits(spec.bank_groups, "bank-group count"),
        "bank": _bits(spec.banks_per_group, "bank count"),
    }
    col_bits = _bits(spec.columns, "column count")
    out: dict[str, np.ndarray] = {"channel": channel}

    def take(width: int) -> np.ndarray:
        nonlocal a
        v = a & ((1 << width) - 1)
        a = a >> width
        return v

    if mapping == "robaracoch":
        out["col"] = take(col_bits)
        for f in ("pch", "rank", "bg", "bank"):
            out[f] = take(widths[f])
        out["row"] = a % spec.rows
        return out
    if col_bits < 2:
        raise UserError("mop4clxor needs at least four bursts per row")
    col = take(2)
    for f in ("pch", "rank", "bg", "bank"):
        out[f] = take(widths[f])
    col = col + (take(col_bits - 2) << 2)
    row = a
    shift = 0
    for f in ("pch", "rank", "bg", "bank"):
        w = widths[f]
        if w:
            out[f] = out[f] ^ ((col >> shift) & ((1 << w) - 1))
            shift += w
    row = row ^ (col >> shift)
    out["row"] = row % spec.rows
    out["col"] = col
    return out
