"""How a real model's KV is spread over the tiers: the PAM run configuration and the per-layer store spec.

:class:`PamHFConfig` is a pydantic schema (``extra="forbid"``; load a YAML file with
``pamkv.config.load(PamHFConfig, "hf", path)``). A functional run holds one request's KV of a small
model, far less than a real HBM-PIM stack, so tier capacities are given as *shares* of the run's KV
(or as absolute blocks): the split between the tiers is what the paper's system is about, and the
defaults follow the capacity ratio of the paper's Table 1 — 40 x 16 GB HBM3 : 40 x 32 GB DDR4 :
8 TB SSD = 640 GB : 1280 GB : 8 TB, i.e. about 1/16 : 1/8 : the rest. The last tier holds all of the
run's KV by default so a run never runs out of room.

Device layouts (bank groups, banks, rows) follow Table 1 as well: one HBM3 channel (2 pseudo-channels
x 2 ranks x 4 bank groups = 16 bank groups of 4 banks; 1 KB rows, JESD238 HBM3 page size), one DDR4
DIMM (2 ranks x 8 chips x 2 bank groups = 32 bank groups of 4 banks; 1 KB rows, the x8 DDR4 page,
JESD79-4), and one SSD (8 channels of 4 dies, 16 KB pages).
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pamkv.attention.selection import SelectionConfig
from pamkv.kv.spec import LayoutSpec, PayloadSpec, StoreSpec, TierSpec

HBM3_CHANNEL = LayoutSpec(name="hbm3-channel", kind="dram", units=16, banks_per_unit=4, rows_per_bank=16384,
                          row_bytes=1024)
"""One HBM3 channel (PAPER.md Table 1: 16 GB stack / 16 channels = 1 GB = 64 banks x 16384 rows x 1 KB)."""

DDR4_DIMM = LayoutSpec(name="ddr4-dimm", kind="dram", units=32, banks_per_unit=4, rows_per_bank=262144,
                       row_bytes=1024)
"""One DDR4 DIMM (PAPER.md Table 1: 32 GB = 128 banks x 262144 rows x 1 KB)."""

SSD_PIM = LayoutSpec(name="ssd", kind="ssd", units=8, banks_per_unit=4, rows_per_bank=4_194_304,
                     row_bytes=16384)
"""One SSD (PAPER.md Table 1: 8 channels x 4 dies; 256 GB per channel = 4 dies x 4 Mi pages x 16 KB)."""


class HFTier(BaseModel):
    """One tier of a functional run: its capacity (a share of the run's KV, or blocks) and layout."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, description="Tier name ('hbm', 'ddr', 'ssd'); fastest first.")
    share: float | None = Field(
        default=None, gt=0, description="Capacity as a share of the run's KV blocks per layer (1 = all of it)."
    )
    capacity_blocks: int | None = Field(default=None, ge=1, description="Capacity in KV blocks per layer per device.")
    devices: int = Field(default=1, ge=1, description="Devices in the tier (each computes its own partial).")
    layout: LayoutSpec | None = Field(default=None, description="Bank groups/banks/rows of one device.")
    throughput_gflops: float = Field(
        gt=0, description="Attention compute of the whole tier, GFLOP/s: sets the balanced IS targets."
    )

    @model_validator(mode="after")
    def _one_capacity(self) -> HFTier:
        if (self.share is None) == (self.capacity_blocks is None):
            raise ValueError(f"tier '{self.name}': give exactly one of share or capacity_blocks")
        return self


def default_tiers() -> list[HFTier]:
    """HBM-PIM, DDR-PIM, SSD-PIM with Table 1's capacity ratio and §5.2's compute (see module docs).

    Compute per device under peak power (PAPER.md §5.2): 1.6 TFLOPS HBM-PIM, 204 GFLOPS DDR-PIM,
    18 GFLOPS SSD-PIM; tiers of 40 stacks, 40 DIMMs and 8 SSDs (Table 1).
    """
    return [
        HFTier(name="hbm", share=1 / 16, layout=HBM3_CHANNEL, throughput_gflops=40 * 1600.0),
        HFTier(name="ddr", share=1 / 8, layout=DDR4_DIMM, throughput_gflops=40 * 204.0),
        HFTier(name="ssd", share=1.0, layout=SSD_PIM, throughput_gflops=8 * 18.0),
    ]


class PamHFConfig(BaseModel):
    """PAM under a real model: tiers, block size, placement and scheduling, and sparse selection."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tiers: list[HFTier] = Field(default_factory=default_tiers, min_length=1,
                                description="Memory tiers, fastest first.")
    block_tokens: int = Field(default=16, ge=1, description="Tokens per KV block (vLLM's 16).")
    kv_bytes: int = Field(
        default=2, ge=1, le=8,
        description="Bytes per K/V element for traffic and layout accounting (PAPER.md §4: everything 16-bit); "
        "the values themselves are kept in float32 so attention stays exact.",
    )
    placement: Literal["pam", "layered", "static", "recent"] = Field(
        default="pam", description="Placement policy: PAM's importance-driven one, L-PIM, LS-PIM, recency."
    )
    targets: list[float] | None = Field(
        default=None, description="IS_0 : IS_1 : ... targets (e.g. x, y, 1); none = balanced from throughput."
    )
    hot_new_blocks: int = Field(default=4, ge=0, description="Newest blocks of a request that enter the top tier.")
    max_swaps: int | None = Field(default=None, ge=0, description="Scheduler swaps per step (none = unbounded).")
    margin: float = Field(
        default=0.0, ge=0,
        description="Scheduler hysteresis: a swap needs the lower block's per-token importance to exceed the "
        "upper one's by more than this (0 = the paper's rule).",
    )
    lam: float = Field(default=0.6, gt=0, le=1, description="Importance EMA weight (PAPER.md §6.3: 0.6).")
    window: int = Field(default=10, ge=1, description="Decode steps of bank-group activity (PAPER.md §6.1: 10).")
    mapping: Literal["activity", "round-robin", "sequential"] = Field(
        default="activity", description="Intra-device mapping (PAPER.md §6.1: least-active bank group)."
    )
    selection: SelectionConfig = Field(
        default_factory=lambda: SelectionConfig(method="dense"),
        description="Which tokens a decode step reads (dense, oracle, double-sparsity, quest).",
    )
    prefill_chunk: int = Field(default=256, ge=1, description="Prompt queries per PAMattention call in prefill.")

    @model_validator(mode="after")
    def _check(self) -> PamHFConfig:
        names = [t.name for t in self.tiers]
        if len(set(names)) != len(names):
            raise ValueError(f"tier names must be unique (got {names})")
        if self.targets is not None and len(self.targets) != len(self.tiers):
            raise ValueError(f"targets needs one ratio per tier ({len(self.tiers)}), got {len(self.targets)}")
        if self.targets is not None and any(not (t > 0 and math.isfinite(t)) for t in self.targets):
            raise ValueError("targets must be positive finite ratios")
        return self


def tier_capacities(cfg: PamHFConfig, blocks_needed: int) -> list[int]:
    """Blocks per device of each tier for a run needing ``blocks_needed`` blocks per layer."""
    caps = []
    for t in cfg.tiers:
        if t.capacity_blocks is not None:
            caps.append(int(t.capacity_blocks))
        else:
            total = max(1, math.ceil((t.share or 0.0) * blocks_needed - 1e-9))
            caps.append(max(1, -(-total // t.devices)))
    return caps


def store_spec(cfg: PamHFConfig, *, kv_heads: int, head_dim: int, blocks_needed: int) -> StoreSpec:
    """The per-layer :class:`StoreSpec`: float32 K/V payload, tiers sized for ``blocks_needed`` blocks."""
    caps = tier_capacities(cfg, blocks_needed)
    tiers = [TierSpec(name=t.name, devices=t.devices, capacity_blocks=c, layout=t.layout)
             for t, c in zip(cfg.tiers, caps, strict=True)]
    return StoreSpec(
        tiers=tiers, block_tokens=cfg.block_tokens, token_bytes=float(2 * kv_heads * head_dim * cfg.kv_bytes),
        layers=1, lam=cfg.lam, window=cfg.window, mapping=cfg.mapping,
        payload=PayloadSpec(kv_heads=kv_heads, head_dim=head_dim, dtype="float32"),
    )


def tier_targets(cfg: PamHFConfig, capacities: list[int]) -> tuple[float, ...]:
    """IS targets: the configured ones, else those that let every tier finish a step together.

    Balanced (``pamkv.scheduling.balanced_targets``): ``IS_t`` proportional to the tier's compute over
    the tokens it can hold.
    """
    if cfg.targets is not None:
        return tuple(float(t) for t in cfg.targets)
    from pamkv.scheduling.online_kv import balanced_targets

    thr = [t.throughput_gflops for t in cfg.tiers]
    held = [c * t.devices * cfg.block_tokens for c, t in zip(capacities, cfg.tiers, strict=True)]
    return balanced_targets(thr, held)
