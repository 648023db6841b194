"""The results table: which metrics are kept, how columns are named and typed."""

from __future__ import annotations

import math

import numpy as np

from pamkv.config.sweeps import SweepConfig
from pamkv.sweep.grid import SweepPlan, expand
from pamkv.sweep.results import build_rows, frame, select_metrics
from pamkv.sweep.worker import Outcome

METRICS = {"throughput_tokens_per_s": np.float64(10.5), "requests_completed": np.int64(8), "oom": False,
           "system": "pam", "batch": 4, "device_utilization": {"gpu": 0.5, "hbm": 0.25}, "tiers": ["hbm", "ddr"]}


def test_default_keeps_scalars_only() -> None:
    kept, missing = select_metrics(METRICS, None)
    assert set(kept) == {"throughput_tokens_per_s", "requests_completed", "oom", "system", "batch"}
    assert type(kept["throughput_tokens_per_s"]) is float and type(kept["requests_completed"]) is int
    assert missing == set()


def test_named_metrics_reach_into_objects_and_report_missing() -> None:
    kept, missing = select_metrics(METRICS, ["device_utilization", "device_utilization.hbm", "tiers", "nope"])
    assert kept == {"device_utilization.gpu": 0.5, "device_utilization.hbm": 0.25, "tiers": '["hbm","ddr"]',
                    "nope": None}
    assert missing == {"nope"}


def _plan(metrics: list[str] | None = None) -> SweepPlan:
    config = SweepConfig(base={"model": "llama-2-7b", "workload": "sharegpt"},
                         grid={"batch": [4, 8], "system.tp": [4]}, metrics=metrics)
    return expand(config, "grid.yaml")


def test_columns_order_collisions_and_failed_points() -> None:
    plan = _plan()
    plan.points[0].system = None
    outcomes = [Outcome(0, dict(METRICS), None, 1.0), Outcome(1, None, "model does not fit", 0.5)]
    rows, metric_columns, missing = build_rows(plan, outcomes, {1: "systems/p0001.yaml"})
    assert list(rows[0])[:4] == ["point", "batch", "system.tp", "system_file"]
    assert list(rows[0])[-2:] == ["wall_s", "error"]
    assert "metric.batch" in metric_columns and "batch" not in metric_columns  # the echo does not clobber
    assert rows[0]["metric.batch"] == 4 and rows[1]["metric.batch"] is None
    assert rows[1]["error"] == "model does not fit" and rows[1]["throughput_tokens_per_s"] is None
    assert rows[0]["system_file"] is None and rows[1]["system_file"] == "systems/p0001.yaml"
    assert missing == []


def test_frame_types_follow_values() -> None:
    plan = _plan(["requests_completed", "throughput_tokens_per_s", "oom", "system"])
    outcomes = [Outcome(0, dict(METRICS), None, 1.0), Outcome(1, None, "boom", 0.5)]
    table = frame(build_rows(plan, outcomes, {})[0])
    assert str(table["requests_completed"].dtype) == "Int64"
    assert table["requests_completed"].isna().tolist() == [False, True]
    assert str(table["oom"].dtype) == "boolean"
    assert table["throughput_tokens_per_s"].dtype == np.float64 and math.isnan(table["throughput_tokens_per_s"][1])
    assert table["error"].tolist()[1] == "boom"


def test_mixed_kinds_become_text() -> None:
    table = frame([{"x": 1, "y": None}, {"x": "a", "y": None}])
    assert table["x"].tolist() == ["1", "a"]
    assert table["y"].isna().all()
