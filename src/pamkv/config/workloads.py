"""Schemas of a workload preset (requests, lengths, arrivals) and of the context-locality model.

A workload preset is ``src/pamkv/presets/workloads/<name>.yaml`` (or a user's YAML file): where its
requests come from (a packaged trace, a packaged length table, a trace file, or length
distributions), how they arrive, and, optionally, its context-locality parameters.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class LengthDist(BaseModel):
    """A distribution of token counts (prompt or output lengths), drawn as integers in [min, max].

    ``lognormal``: fitted so that the clipped, rounded distribution has exactly ``mean`` and, before
    clipping, coefficient of variation ``cv``. ``uniform``: integers uniform in [min, max].
    ``constant``: always ``mean``. ``table``: resample one column of a packaged length table.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    dist: Literal["lognormal", "uniform", "constant", "table"] = Field(description="Distribution family.")
    mean: float | None = Field(default=None, gt=0, description="Mean tokens (lognormal, constant).")
    cv: float | None = Field(
        default=None, gt=0, description="Coefficient of variation std/mean before clipping (lognormal)."
    )
    min: int = Field(default=1, ge=0, description="Smallest length drawn, tokens.")
    max: int = Field(default=131072, ge=1, description="Largest length drawn, tokens.")
    table: str | None = Field(default=None, description="Packaged length table to resample (table).")
    column: Literal["input", "output"] | None = Field(
        default=None, description="Column of the table to resample (table)."
    )

    @model_validator(mode="after")
    def _complete(self) -> LengthDist:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) must not exceed max ({self.max})")
        if self.dist == "lognormal" and (self.mean is None or self.cv is None):
            raise ValueError("a lognormal length needs 'mean' and 'cv'")
        if self.dist == "constant" and self.mean is None:
            raise ValueError("a constant length needs 'mean'")
        if self.dist in ("lognormal", "constant") and self.mean is not None and not (
            self.min <= self.mean <= self.max
        ):
            raise ValueError(f"mean ({self.mean}) must lie in [min, max] = [{self.min}, {self.max}]")
        if self.dist == "table" and (self.table is None or self.column is None):
            raise ValueError("a table length needs 'table' and 'column'")
        return self


class ArrivalConfig(BaseModel):
    """How requests arrive.

    ``trace``: the trace's own timestamps (only for a trace source). ``poisson``: exponential gaps at
    ``rate_per_s``. ``gamma``: Gamma gaps at ``rate_per_s`` with coefficient of variation ``cv``
    (cv = 1 is Poisson, > 1 burstier). ``none``: every request present at t = 0 (offline batch).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    process: Literal["trace", "poisson", "gamma", "none"] = Field(description="Arrival process.")
    rate_per_s: float | None = Field(default=None, gt=0, description="Mean arrival rate, requests/s.")
    cv: float = Field(default=1.0, gt=0, description="Inter-arrival coefficient of variation (gamma).")

    @model_validator(mode="after")
    def _rate_given(self) -> ArrivalConfig:
        if self.process in ("poisson", "gamma") and self.rate_per_s is None:
            raise ValueError(f"a {self.process} arrival process needs 'rate_per_s'")
        return self


class ColumnMapping(BaseModel):
    """Which columns (CSV) or keys (JSONL) of a generic trace file hold each request field."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: str = Field(description="Column with the prompt (input) length in tokens.")
    output: str = Field(description="Column with the output (generated) length in tokens.")
    arrival: str | None = Field(default=None, description="Column with the arrival time; none = no arrivals.")
    time_unit: Literal["s", "ms", "us", "ns", "datetime"] = Field(
        default="s", description="Unit of the arrival column ('datetime' parses date-time text)."
    )


class TraceSource(BaseModel):
    """Requests read from a trace: a packaged one by name or a file by path."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["trace"] = Field(description="Requests come from a trace.")
    packaged: str | None = Field(default=None, description="Name of a trace packaged in pamkv/data.")
    path: str | None = Field(default=None, description="Trace file path (relative to the YAML file).")
    format: Literal["auto", "azure", "mooncake", "burstgpt", "lengths", "csv", "jsonl", "npz"] = Field(
        default="auto", description="File format; 'auto' recognises it from its header."
    )
    columns: ColumnMapping | None = Field(default=None, description="Column mapping for csv/jsonl.")

    @model_validator(mode="after")
    def _one_origin(self) -> TraceSource:
        if (self.packaged is None) == (self.path is None):
            raise ValueError("give exactly one of 'packaged' or 'path'")
        return self


class SyntheticSource(BaseModel):
    """Requests drawn from length distributions (independent input and output lengths)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["synthetic"] = Field(description="Requests are drawn from length distributions.")
    input: LengthDist = Field(description="Prompt length distribution.")
    output: LengthDist = Field(description="Output length distribution.")

    @model_validator(mode="after")
    def _prompt_not_empty(self) -> SyntheticSource:
        if self.input.min < 1:
            raise ValueError("input lengths need min >= 1 (a request has at least one prompt token)")
        return self


class LocalityConfig(BaseModel):
    """Parameters of the context-locality generator (:mod:`pamkv.workloads.locality.model`).

    Per decode step and head, attention mass = ``sink_mass`` on the sink tokens + ``recent_mass`` over
    the recent window, decaying as (``recent_offset`` + distance)^-``recent_decay`` + ``background_mass``
    spread with fresh lognormal(``background_sigma``) weights + the rest over all tokens in proportion
    to a static Pareto(``tail_index``) weight (heavy hitters), the recent and heavy-hitter parts
    modulated by exp(``drift_sigma`` * AR(1) drift + ``jitter_sigma`` * white noise). Defaults are fitted
    to the SmolLM2-135M measurements at 1-2k context (../shared/reference/locality.md; docs/workloads.md).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    sink_tokens: int = Field(default=1, ge=0, description="Attention-sink tokens at the start of the context.")
    sink_mass: float = Field(default=0.285, ge=0, lt=1, description="Base mass on the sink tokens together.")
    recent_mass: float = Field(default=0.438, ge=0, lt=1, description="Base mass on the recent window.")
    recent_window: int = Field(default=276, ge=1, description="Recent-window length, tokens.")
    recent_decay: float = Field(
        default=1.52, ge=0, description="Power-law exponent of the recent mass over distance from the newest token."
    )
    recent_offset: float = Field(
        default=5.2, gt=0,
        description="Distance offset d0 of the recent profile (d0 + d)^-decay; larger = flatter peak.",
    )
    tail_index: float = Field(
        default=0.624, gt=0, le=2,
        description="Pareto tail index of the static token weights (< 1: one token can dominate).",
    )
    drift_sigma: float = Field(default=1.30, ge=0, description="Std of the slow log-importance drift.")
    drift_corr: float = Field(
        default=0.87, ge=0, lt=1, description="Per-step autocorrelation of the slow drift (hot-set drift speed)."
    )
    jitter_sigma: float = Field(default=0.91, ge=0, description="Std of the per-step white log-noise (fast churn).")
    background_mass: float = Field(
        default=0.0062, ge=0, lt=1,
        description="Mass of the diffuse part, spread over all tokens with fresh random weights each step.",
    )
    background_sigma: float = Field(
        default=1.04, ge=0, description="Log-std of the diffuse part's per-token, per-step random weights."
    )
    ema_weight: float = Field(
        default=0.6, gt=0, le=1,
        description="Weight of this step's score in the importance EMA I = w*S + (1-w)*I_prev (PAM paper §6.3: 0.6).",
    )
    block_tokens: int = Field(default=16, ge=1, description="Tokens per KV block at block granularity.")

    @model_validator(mode="after")
    def _masses(self) -> LocalityConfig:
        fixed = self.sink_mass + self.recent_mass + self.background_mass
        if fixed >= 1:
            raise ValueError(f"sink_mass + recent_mass + background_mass ({fixed:g}) must be below 1")
        if self.sink_tokens == 0 and self.sink_mass > 0:
            raise ValueError("sink_mass > 0 needs sink_tokens >= 1")
        return self


class WorkloadConfig(BaseModel):
    """A named workload: where its requests come from, how they arrive, and how attention behaves."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, description="Workload name, e.g. 'sharegpt'.")
    description: str = Field(min_length=1, description="One line saying what the workload is.")
    source: str = Field(min_length=1, description="Where the data or statistics come from (citation).")
    mode: Literal["online", "offline"] = Field(
        description="How the PAM paper serves it: online (arrivals, SLO) or offline (fixed batches)."
    )
    requests: TraceSource | SyntheticSource = Field(discriminator="kind", description="Where requests come from.")
    arrivals: ArrivalConfig = Field(description="Arrival process.")
    count: int | None = Field(
        default=None, gt=0, description="Requests to draw (synthetic/length tables) or keep; none = all / 1000."
    )
    locality: LocalityConfig = Field(default_factory=LocalityConfig, description="Context-locality parameters.")
