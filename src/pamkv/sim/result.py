"""The result of one simulated serving run: flat metrics, per-request table, per-iteration timeline."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pamkv.errors import UserError
from pamkv.output import to_json_text, write_json

# Metric names are a contract (DESIGN.md): extend, do not rename.
CONTRACT_METRICS = (
    "throughput_tokens_per_s",
    "requests_per_s",
    "ttft_s_p50",
    "ttft_s_p99",
    "tpot_s_p50",
    "tpot_s_p99",
    "e2e_s_p50",
    "e2e_s_p99",
    "energy_j_per_token",
    "migrated_bytes",
    "device_utilization",
    "tokens_lost",
    "requests_completed",
    "sim_wall_s",
)


@dataclass
class Result:
    """One run: ``metrics`` (flat dict, JSON names of DESIGN.md), ``requests`` and ``timeline`` tables."""

    metrics: dict[str, Any]
    requests: pd.DataFrame = field(default_factory=pd.DataFrame)
    timeline: pd.DataFrame = field(default_factory=pd.DataFrame)
    trace_events: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self, path: str | Path | None = None) -> str:
        """The metrics as JSON text; also written to ``path`` when given ('-' = stdout)."""
        if path is not None:
            write_json(self.metrics, path)
        return to_json_text(self.metrics)

    def write_requests_csv(self, path: str | Path) -> None:
        """Per-request table (arrival, TTFT, TPOT, e2e, preemptions, bytes migrated) as CSV."""
        _write(lambda p: self.requests.to_csv(p, index=False), path)

    def write_timeline(self, path: str | Path) -> None:
        """Per-iteration timeline (time, kind, batch, per-device busy seconds, tier occupancy) as CSV/Parquet."""
        if str(path).endswith(".parquet"):
            _write(lambda p: self.timeline.to_parquet(p, index=False), path)
        else:
            _write(lambda p: self.timeline.to_csv(p, index=False), path)

    def write_chrome_trace(self, path: str | Path) -> None:
        """The iterations as a Chrome trace (open in chrome://tracing or Perfetto)."""
        _write(lambda p: Path(p).write_text(json.dumps({"traceEvents": self.trace_events})), path)


def _write(writer: Any, path: str | Path) -> None:
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        writer(target)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from exc


def percentile(values: np.ndarray, q: float) -> float:
    """The q-th percentile (0–100) of the finite values; NaN when there are none."""
    finite = values[np.isfinite(values)]
    return float(np.percentile(finite, q)) if finite.size else float("nan")
