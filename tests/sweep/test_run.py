"""Running sweeps: serial and parallel give the same table; overrides really change the system; a
failing point is recorded, not fatal; a dead worker is recorded, not a hang."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pamkv.errors import UserError
from pamkv.sweep import SweepResult, executors, run_sweep
from pamkv.sweep.executors import DIED
from pamkv.sweep.results import WALL_COLUMNS
from pamkv.sweep.worker import Outcome, Task

# A 2x2 grid of tiny runs (a 7B model, 8 HumanEval requests): batch x (tp, pp).
GRID = """\
base: {model: llama-2-7b, workload: humaneval, requests: 8, seed: 3}
grid:
  batch: [4, 8]
zip:
  system.tp: [8, 4]
  system.pp: [1, 2]
"""


@pytest.fixture(scope="module")
def serial(tmp_path_factory: pytest.TempPathFactory) -> SweepResult:
    folder = tmp_path_factory.mktemp("sweep")
    grid = folder / "grid.yaml"
    grid.write_text(GRID)
    return run_sweep(grid, out=folder / "serial", workers=1, json_path=folder / "serial.json")


def _without_wall(table: pd.DataFrame) -> pd.DataFrame:
    return table.drop(columns=[c for c in WALL_COLUMNS if c in table])


def test_two_workers_give_the_serial_table(serial: SweepResult, tmp_path: Path) -> None:
    assert serial.executor == "serial" and not serial.failed
    parallel = run_sweep(serial.plan, out=tmp_path / "par", workers=2)
    assert parallel.executor == "local, 2 workers"
    assert serial.out_dir is not None
    for name in ("results.parquet", "results.csv"):
        reader = pd.read_parquet if name.endswith("parquet") else pd.read_csv
        a, b = reader(serial.out_dir / name), reader(tmp_path / "par" / name)
        pd.testing.assert_frame_equal(_without_wall(a), _without_wall(b))
    for point in ("p0000", "p0003"):
        assert (serial.out_dir / "systems" / f"{point}.yaml").read_text() == (
            tmp_path / "par" / "systems" / f"{point}.yaml").read_text()


def test_rows_hold_parameters_metrics_and_wall_time(serial: SweepResult) -> None:
    table = serial.table
    assert len(table) == 4
    assert table["point"].tolist() == [0, 1, 2, 3]
    assert table[["batch", "system.tp", "system.pp"]].values.tolist() == [[4, 8, 1], [4, 4, 2], [8, 8, 1],
                                                                          [8, 4, 2]]
    assert (table["requests_completed"] == 8).all() and (table["tokens_lost"] == 0).all()
    assert (table["throughput_tokens_per_s"] > 0).all() and (table["wall_s"] > 0).all()
    assert table["error"].isna().all()
    assert "device_utilization" not in table  # an object, not a scalar: only kept when asked for
    data = json.loads((serial.out_dir.parent / "serial.json").read_text())  # type: ignore[union-attr]
    assert data["points"] == 4 and data["failed"] == 0 and data["parameters"] == ["batch", "system.tp", "system.pp"]
    assert [r["throughput_tokens_per_s"] for r in data["rows"]] == table["throughput_tokens_per_s"].tolist()


def test_system_override_really_changes_the_system(serial: SweepResult) -> None:
    assert serial.out_dir is not None
    rows = serial.rows
    for row in rows:
        written = yaml.safe_load((serial.out_dir / row["system_file"]).read_text())
        assert (written["tp"], written["pp"]) == (row["system.tp"], row["system.pp"])
        assert row["system"] == f"pam[tp={row['system.tp']}, pp={row['system.pp']}]"  # the run used the variant
    # Same batch, different parallelism: the simulated step time differs (tp=8 x pp=1 vs tp=4 x pp=2).
    assert rows[0]["tpot_s_p50"] != rows[1]["tpot_s_p50"]
    assert rows[0]["kv_capacity_tokens"] != rows[1]["kv_capacity_tokens"]


def test_point_run_files_rerun_the_point(serial: SweepResult) -> None:
    from pamkv.sim import simulate

    assert serial.out_dir is not None
    run = yaml.safe_load((serial.out_dir / "runs" / "p0002.yaml").read_text())
    assert run["batch"] == 8 and run["seed"] == 3 and run["system"].endswith("p0002.yaml")
    metrics = simulate(run).metrics
    assert metrics["throughput_tokens_per_s"] == serial.rows[2]["throughput_tokens_per_s"]


def test_failing_point_is_recorded(write_grid: Callable[[str], Path], tmp_path: Path) -> None:
    # 1 GB of HBM cannot hold the weights it is told to hold: this point fails before simulating.
    grid = write_grid("base: {model: llama-2-7b, workload: sharegpt, requests: 8}\n"
                      "grid:\n  system.tiers.hbm.capacity_gb: [1]\n  seed: [0, 1]\n"
                      "metrics: [throughput_tokens_per_s, device_utilization]\n")
    result = run_sweep(grid, out=tmp_path / "out", workers=1)
    assert result.failed == [0, 1] and result.internal == []
    assert all("does not fit" in row["error"] and "\n" not in row["error"] for row in result.rows)
    assert pd.read_csv(tmp_path / "out" / "results.csv")["error"].str.contains("does not fit").all()
    assert result.metrics == ["throughput_tokens_per_s", "device_utilization"]  # nothing reported it
    assert result.missing_metrics == []  # unknown, not missing: no point succeeded


def _die_on_odd(task: Task) -> Outcome:
    if task.index % 2:
        os._exit(1)  # the worker process dies (as when the kernel kills it for memory)
    return Outcome(task.index, {"ok": 1}, None, 0.0)


def test_dead_worker_is_recorded_not_a_hang(monkeypatch: pytest.MonkeyPatch) -> None:
    # Fork, so the workers know this test module's function (a forkserver would have to import it).
    monkeypatch.setattr(executors, "_pool_context", lambda: mp.get_context("fork"))
    done: list[int] = []
    tasks = [Task(index=i, run={}) for i in range(4)]
    outcomes = executors.run_local(tasks, 2, lambda o: done.append(o.index), fn=_die_on_odd)
    assert [o.index for o in outcomes] == [0, 1, 2, 3] and sorted(done) == [0, 1, 2, 3]
    assert [o.error for o in outcomes] == [None, DIED, None, DIED]
    assert outcomes[0].metrics == {"ok": 1} and outcomes[2].metrics == {"ok": 1}


def _always_die(task: Task) -> Outcome:
    os._exit(1)


def test_workers_that_cannot_run_at_all_are_one_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executors, "_pool_context", lambda: mp.get_context("fork"))
    with pytest.raises(UserError, match="worker processes die before finishing any point"):
        executors.run_local([Task(index=i, run={}) for i in range(3)], 2, fn=_always_die)
