"""The tiered KV store's configuration: its tiers, their devices and capacities, and block geometry.

Load one from YAML with ``pamkv.config.load(StoreSpec, "kv", path)`` (errors become one-line
``UserError``s naming file, line and field) or build it in Python.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pamkv.hardware.layout import DeviceLayout
from pamkv.kv.geometry import DeviceGeometry, build_geometry


class LayoutSpec(BaseModel):
    """The parallel units of one device (the fields of :class:`pamkv.hardware.layout.DeviceLayout`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(default="", description="Layout name (defaults to the tier's name).")
    kind: Literal["dram", "ssd"] = Field(default="dram", description="DRAM/PIM bank groups or SSD channels.")
    units: int = Field(gt=0, description="Bank groups (DRAM) or flash channels (SSD) in one device.")
    banks_per_unit: int = Field(gt=0, description="Banks per bank group (DRAM) or dies per channel (SSD).")
    rows_per_bank: int = Field(gt=0, description="Rows per bank (DRAM) or pages per die (SSD).")
    row_bytes: int = Field(gt=0, description="Bytes per row (DRAM) or per flash page (SSD).")

    def to_layout(self, default_name: str) -> DeviceLayout:
        """This spec as the hardware-layer :class:`DeviceLayout`."""
        return DeviceLayout(
            name=self.name or default_name, kind=self.kind, units=self.units,
            banks_per_unit=self.banks_per_unit, rows_per_bank=self.rows_per_bank, row_bytes=self.row_bytes,
        )


class TierSpec(BaseModel):
    """One memory tier (e.g. HBM-PIM): identical devices, each with a capacity and an internal layout."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, description="Tier name, e.g. 'hbm', 'ddr', 'ssd'; fastest tier first.")
    devices: int = Field(default=1, ge=1, description="Devices (stacks, DIMMs, SSDs) in this tier.")
    capacity_blocks: int | None = Field(default=None, ge=1, description="KV blocks one device holds.")
    capacity_bytes: float | None = Field(
        default=None, gt=0, description="Bytes of KV one device holds (converted to whole blocks)."
    )
    layout: LayoutSpec | None = Field(
        default=None, description="Bank groups/banks/rows of one device; none = one unit, one bank."
    )

    @field_validator("layout", mode="before")
    @classmethod
    def _layout_from_dataclass(cls, value: Any) -> Any:
        return asdict(value) if isinstance(value, DeviceLayout) else value

    @model_validator(mode="after")
    def _one_capacity(self) -> TierSpec:
        if self.capacity_blocks is not None and self.capacity_bytes is not None:
            raise ValueError(f"tier '{self.name}': give capacity_blocks or capacity_bytes, not both")
        if self.capacity_blocks is None and self.capacity_bytes is None and self.layout is None:
            raise ValueError(f"tier '{self.name}': give capacity_blocks, capacity_bytes or a layout")
        return self

    @property
    def kind(self) -> Literal["dram", "ssd"]:
        """'ssd' when the layout says so, else 'dram'."""
        return self.layout.kind if self.layout is not None else "dram"


class PayloadSpec(BaseModel):
    """Shape of the real K/V tensors the store keeps per token (functional path), per layer."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kv_heads: int = Field(gt=0, description="Key/value heads per layer.")
    head_dim: int = Field(gt=0, description="Width of one head.")
    dtype: Literal["float16", "float32", "float64"] = Field(
        default="float32", description="numpy dtype the K/V tensors are stored in."
    )

    @property
    def token_bytes(self) -> int:
        """K+V bytes of one token in one layer."""
        return 2 * self.kv_heads * self.head_dim * np.dtype(self.dtype).itemsize


class StoreSpec(BaseModel):
    """A tiered KV store: block size, bytes per token, tiers (fastest first) and policy knobs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tiers: list[TierSpec] = Field(min_length=1, description="Memory tiers, fastest (highest) first.")
    block_tokens: int = Field(default=16, ge=1, description="Tokens per KV block (vLLM's default is 16).")
    token_bytes: float | None = Field(
        default=None, gt=0,
        description="K+V bytes of one token in one layer as stored; defaults to the payload's size.",
    )
    layers: int = Field(default=1, ge=1, description="Transformer layers whose KV each block holds.")
    lam: float = Field(
        default=0.6, gt=0, le=1,
        description="EMA weight of the newest selection score, I = lam*S + (1-lam)*I (PAPER.md §6.3).",
    )
    window: int = Field(default=10, ge=1, description="Decode steps of per-unit activity kept (PAPER.md §6.1).")
    mapping: Literal["activity", "round-robin", "sequential"] = Field(
        default="activity",
        description="Intra-device mapping: PAM's least-active bank group (SSD: channel interleaving), "
        "frequency-blind round-robin, or fill unit 0 first.",
    )
    payload: PayloadSpec | None = Field(default=None, description="Keep real K/V tensors of this shape.")

    @model_validator(mode="after")
    def _consistent(self) -> StoreSpec:
        names = [t.name for t in self.tiers]
        if len(set(names)) != len(names):
            raise ValueError(f"tier names must be unique (got {names})")
        if self.token_bytes is None and self.payload is None:
            raise ValueError("give token_bytes (K+V bytes of one token in one layer) or a payload")
        for i, t in enumerate(self.tiers):
            try:
                self.geometry(i)
            except ValueError as exc:
                field = "capacity_blocks" if t.capacity_blocks is not None else (
                    "capacity_bytes" if t.capacity_bytes is not None else "layout")
                raise ValueError(f"tiers.{i}.{field} ('{t.name}'): {exc}") from None
        return self

    @property
    def bytes_per_token(self) -> float:
        """K+V bytes of one token over all stored layers (what a migration moves)."""
        tb = self.token_bytes if self.token_bytes is not None else self.payload.token_bytes  # type: ignore[union-attr]
        return float(tb) * self.layers

    def geometry(self, tier: int) -> DeviceGeometry:
        """Slot geometry of each device of tier ``tier`` (devices of a tier are identical)."""
        t = self.tiers[tier]
        layout = t.layout.to_layout(t.name) if t.layout is not None else None
        return build_geometry(
            layout, block_tokens=self.block_tokens, token_bytes=self.bytes_per_token / self.layers,
            layers=self.layers, capacity_blocks=t.capacity_blocks, capacity_bytes=t.capacity_bytes,
            name=t.name,
        )

    def capacity_blocks(self) -> np.ndarray:
        """Blocks each tier holds over all its devices, int64 ``[tiers]``."""
        return np.array(
            [self.geometry(i).capacity_blocks * t.devices for i, t in enumerate(self.tiers)], dtype=np.int64
        )
