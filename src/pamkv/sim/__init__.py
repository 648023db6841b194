"""The serving simulator: requests in, tokens out, time, energy and capacity on modelled hardware.

:func:`simulate` runs one :class:`~pamkv.config.runs.RunConfig` (offline with ``batch``, online from
the workload's arrivals, or an SLO search with ``slo_tpot_ms``) and returns a :class:`Result`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from pamkv.config import read_yaml, validate
from pamkv.config.runs import RunConfig
from pamkv.sim.result import CONTRACT_METRICS, Result

__all__ = ["CONTRACT_METRICS", "Result", "RunConfig", "as_run_config", "simulate"]


def as_run_config(config: RunConfig | dict[str, Any] | str | Path) -> RunConfig:
    """A RunConfig from itself, a dict of its fields, or a RUN.yaml path."""
    if isinstance(config, RunConfig):
        return config
    if isinstance(config, dict):
        return validate(RunConfig, config, "run config")
    data, node = read_yaml(Path(config))
    return validate(RunConfig, data, str(config), node)


def simulate(config: RunConfig | dict[str, Any] | str | Path) -> Result:
    """Simulate one run and return its metrics (DESIGN.md names), per-request table and timeline."""
    run = as_run_config(config)
    if run.slo_tpot_ms is not None:
        from pamkv.sim.slo import search_slo

        return search_slo(run)
    return run_once(run)


def run_once(run: RunConfig) -> Result:
    """One simulation of ``run`` as given (no SLO search)."""
    from pamkv.sim.build import assemble, describe

    wall0 = time.perf_counter()
    a = assemble(run)
    result = Result(metrics=oom_metrics()) if a.oom else a.engine.run()
    m = result.metrics
    m.update(describe(a))
    throughput = m.get("throughput_tokens_per_s") or 0.0
    m["tokens_per_s_per_kusd"] = throughput / (a.cost_usd / 1e3) if a.cost_usd > 0 else float("nan")
    m["sim_wall_s"] = time.perf_counter() - wall0
    return result


def oom_metrics() -> dict[str, Any]:
    """Metrics of a run that cannot hold its batch's KV: no throughput, flagged (as the paper reports)."""
    nan = float("nan")
    metrics: dict[str, Any] = {name: nan for name in CONTRACT_METRICS}
    metrics.update(throughput_tokens_per_s=0.0, requests_per_s=0.0, migrated_bytes=0.0, device_utilization={},
                   tokens_lost=0, requests_completed=0, oom=True)
    return metrics
