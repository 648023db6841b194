"""Schema of a serving system: host GPUs, the memory tiers, and the policies that run on them.

A system preset (``presets/systems/<name>.yaml``) is one assembly of hardware and policies: PAM, its
ablations, and the paper's baselines are all instances of :class:`SystemConfig`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class TierConfig(BaseModel):
    """One memory tier of the node: a device preset times a count, and where its attention runs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Tier label used in reports, e.g. 'hbm', 'ddr', 'ssd'.")
    device: str = Field(description="Device preset (see `pamkv hw`), e.g. 'hbm3-pim', 'ddr4-pim', 'ssd-pim'.")
    count: int = Field(gt=0, description="Devices of this preset in the node.")
    capacity_gb: float | None = Field(
        default=None, gt=0, description="Capacity of the whole tier in GB; default: count x the device's capacity."
    )
    link: str = Field(description="Link preset between this tier and the GPUs (partials, migrations, fetches).")
    links: int = Field(default=1, gt=0, description="Such links in parallel (the tier's whole path to the GPUs).")
    pim: bool = Field(default=True, description="Attention runs in this tier's devices (False: KV is fetched).")
    holds_weights: bool = Field(
        default=False, description="The GPUs' model weights live here too (HBM): KV gets what is left."
    )


class SystemConfig(BaseModel):
    """A serving system: GPUs with tensor/pipeline parallelism, KV tiers, and its KV policies."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Preset name.")
    description: str = Field(default="", description="One paragraph on what this system is and its source.")
    gpu: str = Field(default="h100", description="GPU preset running projections, FFN, prefill and sampling.")
    gpus: int = Field(default=8, gt=0, description="GPUs in the node.")
    tp: int = Field(default=4, gt=0, description="Tensor-parallel degree.")
    pp: int = Field(default=2, gt=0, description="Pipeline-parallel degree (tp x pp = gpus).")
    gpu_kv: bool = Field(
        default=False, description="KV may also live in the GPUs' own HBM (vLLM, AttAcc's non-PIM memory)."
    )
    tiers: list[TierConfig] = Field(min_length=1, description="Memory tiers, fastest first.")
    attention: Literal["pim", "gpu"] = Field(
        default="pim", description="'pim': every tier attends in place; 'gpu': KV is fetched to the GPU."
    )
    pamattention: bool = Field(
        default=True,
        description="Fine-grained split over all banks with hierarchical reduction (False: fixed "
        "FlashDecoding-style split per head, partials gathered by the host).",
    )
    placement: Literal["pam", "top-down", "static", "recent", "balanced"] = Field(
        default="pam",
        description="Where KV goes: 'pam' by importance, 'top-down' fill fastest first (L-PIM), "
        "'static' fixed at prefill (LS-PIM), 'recent' newest tokens high, 'balanced' load-balanced "
        "but blind to access frequency (the no-mapping ablation).",
    )
    power_limit: bool = Field(
        default=True,
        description="PIM column commands spaced for the peak-power limit (AttAcc's 6 instead of 4 cycles; "
        "the paper quotes its PIM compute under such limits, §5.2).",
    )
    mapping: Literal["pam", "naive"] = Field(
        default="pam", description="Intra-device mapping: least-active bank group (PAM) or naive fill."
    )
    scheduling: bool = Field(default=True, description="Run the online KV scheduler (migrations).")
    sparsity: Literal["dense", "double-sparsity", "oracle-topk", "quest"] = Field(
        default="double-sparsity", description="Which tokens a decode step reads."
    )
    sparsity_ratio: float = Field(default=8.0, ge=1.0, description="Keep 1/ratio of the tokens (8 = the paper's).")
    target_x: float | None = Field(
        default=None, gt=0,
        description="Importance target IS_H / IS_S (x of x:y:1); none = derived from tier bandwidths and "
        "occupancy so that every tier finishes together (the paper profiles it offline and gives no value).",
    )
    target_y: float | None = Field(default=None, gt=0, description="Importance target IS_D / IS_S (y of x:y:1).")
    schedule_every: int = Field(default=8, gt=0, description="Decode steps between online KV scheduler runs.")
    idle_window_factor: int = Field(
        default=4, gt=0,
        description="While every block sits in the top tier (nothing can migrate), scheduler windows come "
        "this many times less often; 1 = always every schedule_every steps (docs/sim.md).",
    )
    max_batch: int = Field(default=1024, gt=0, description="Most requests decoding at once.")
    max_tokens_per_iter: int = Field(default=8192, gt=0, description="Token budget per iteration (prefill).")
    chunked_prefill: bool = Field(default=False, description="Split long prefills over iterations.")
    cost_usd: float | None = Field(default=None, ge=0, description="Hardware cost; default: priced from presets.")

    @model_validator(mode="after")
    def _parallelism(self) -> SystemConfig:
        if self.tp * self.pp != self.gpus:
            raise ValueError(f"tp x pp must equal gpus ({self.tp} x {self.pp} != {self.gpus})")
        names = [t.name for t in self.tiers]
        if len(set(names)) != len(names):
            raise ValueError(f"tier names must be unique (got {names})")
        return self
