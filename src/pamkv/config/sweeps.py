"""Schema of a design-space sweep (GRID.yaml): a base run, the fields to vary, the metrics to keep.

The schema checks the file's shape; :mod:`pamkv.sweep.grid` checks what the keys name (a
:class:`~pamkv.config.runs.RunConfig` field or a ``system.`` path into a
:class:`~pamkv.config.systems.SystemConfig`) and expands the points.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

# A sweep axis: one field name and the values it takes, in order.
Axis = dict[str, list[Any]]


class SweepConfig(BaseModel):
    """What ``pamkv sweep GRID.yaml`` reads."""

    model_config = ConfigDict(extra="forbid")

    base: dict[str, Any] = Field(
        default_factory=dict,
        description="Fields of a run (as in RUN.yaml / `pamkv simulate --config`) shared by every point.",
    )
    grid: Axis = Field(
        default_factory=dict,
        description="Field -> list of values; the points are the cartesian product of the lists. A field is "
        "a run field (system, model, workload, batch, requests, seed, ...) or a system field with a "
        "'system.' prefix (system.tp, system.target_x, system.tiers.1.count, system.tiers.ddr.count).",
    )
    zip: Axis | list[Axis] | None = Field(
        default=None,
        description="Fields that vary together: a mapping of equally long lists (one axis), or a list of "
        "such mappings (one axis each); each axis joins the cartesian product of the grid.",
    )
    metrics: list[str] | None = Field(
        default=None, min_length=1,
        description="Metrics to keep per point (a dotted name reaches into an object, e.g. "
        "'device_utilization.hbm'); default: every scalar metric the runs report.",
    )
