"""Schema of one simulation run: which system serves which model on which workload, and how."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class RunConfig(BaseModel):
    """What ``pamkv simulate`` and :func:`pamkv.simulate` take (the same fields as a RUN.yaml)."""

    model_config = ConfigDict(extra="forbid")

    system: str = Field(default="pam", description="System preset name or YAML path (see pamkv.systems).")
    model: str = Field(default="llama-3-70b", description="Model preset name or YAML path.")
    workload: str = Field(default="azure-conv", description="Workload preset name or trace file path.")
    requests: int | None = Field(default=None, gt=0, description="Use the first N requests of the workload.")
    batch: int | None = Field(
        default=None, gt=0,
        description="Offline mode: at most this many requests decode together; the workload's requests "
        "(default 4 batches' worth) are all queued at t=0.",
    )
    slo_tpot_ms: float | None = Field(
        default=None, gt=0, description="Online mode: search the largest batch whose TPOT p50 meets this SLO."
    )
    rate_scale: float = Field(default=1.0, gt=0, description="Multiply the workload's arrival rate.")
    seed: int = Field(default=0, ge=0, description="Random seed (sampling, locality); same seed, same result.")
    block_tokens: int = Field(default=16, gt=0, description="Tokens per KV block.")
    dtype: str = Field(default="fp16", description="KV and weight dtype.")
    max_sim_s: float = Field(default=1e7, gt=0, description="Stop the clock here (simulated seconds).")
