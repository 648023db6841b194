"""`pamkv sweep` as a user runs it: JSON on standard output, one-line errors with exit code 2, Ray."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

TINY = "base: {model: llama-2-7b, workload: humaneval, requests: 8, batch: 8}\n"
RunCli = Callable[..., tuple[int, str, str]]


def _one_line(code: int, err: str) -> str:
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("pamkv: error: ")
    return lines[0]


def test_bad_grid_field_is_exit_2_one_line(write_grid: Callable[[str], Path], run_cli: RunCli,
                                           tmp_path: Path) -> None:
    grid = write_grid(TINY + "grid:\n  seed: [1, 2]\n  system.tpp: [2]\n")
    line = _one_line(*run_cli("sweep", str(grid), "--out", str(tmp_path / "o"))[::2])
    assert f"{grid}: line 4: unknown system field 'tpp'" in line
    assert not (tmp_path / "o").exists()  # nothing ran, nothing was written


def test_missing_grid_file_and_bad_workers(run_cli: RunCli, write_grid: Callable[[str], Path]) -> None:
    assert "cannot read" in _one_line(*run_cli("sweep", "no-such-grid.yaml")[::2])
    grid = write_grid(TINY)
    assert "--workers must be at least 1" in _one_line(*run_cli("sweep", str(grid), "--workers", "0")[::2])


def test_json_to_stdout_is_only_json(write_grid: Callable[[str], Path], run_cli: RunCli, tmp_path: Path) -> None:
    grid = write_grid(TINY + "grid:\n  seed: [1]\nmetrics: [throughput_tokens_per_s, requests_completed]\n")
    code, out, err = run_cli("sweep", str(grid), "--out", str(tmp_path / "o"), "--workers", "1", "--json", "-")
    assert code == 0, err
    data = json.loads(out)
    assert data["parameters"] == ["seed"] and data["metrics"] == ["throughput_tokens_per_s", "requests_completed"]
    (row,) = data["rows"]
    assert row["seed"] == 1 and row["requests_completed"] == 8 and row["error"] is None
    table = pd.read_parquet(tmp_path / "o" / "results.parquet")
    assert list(table.columns) == ["point", "seed", "throughput_tokens_per_s", "requests_completed", "wall_s",
                                   "error"]


def test_seed_flag_replaces_base_seed(write_grid: Callable[[str], Path], run_cli: RunCli, tmp_path: Path) -> None:
    grid = write_grid(TINY + "metrics: [seed]\n")
    code, out, err = run_cli("sweep", str(grid), "--out", str(tmp_path / "o"), "--workers", "1", "--seed", "5",
                             "--quiet", "--json", "-")
    assert code == 0, err
    assert json.loads(out)["rows"][0]["seed"] == 5


@pytest.mark.skipif(importlib.util.find_spec("ray") is not None, reason="Ray is installed")
def test_ray_missing_is_one_line_with_install_hint(write_grid: Callable[[str], Path], run_cli: RunCli,
                                                   tmp_path: Path) -> None:
    line = _one_line(*run_cli("sweep", str(write_grid(TINY)), "--out", str(tmp_path / "o"), "--ray", "auto")[::2])
    assert 'pip install "pamkv[ray]"' in line


def test_ray_local_matches_serial(write_grid: Callable[[str], Path], tmp_path: Path) -> None:
    pytest.importorskip("ray")
    from pamkv.sweep import run_sweep
    from pamkv.sweep.results import WALL_COLUMNS

    grid = write_grid(TINY + "grid:\n  seed: [1, 2]\nzip:\n  system.tp: [8, 4]\n  system.pp: [1, 2]\n")
    serial = run_sweep(grid, out=tmp_path / "serial", workers=1)
    on_ray = run_sweep(grid, out=tmp_path / "ray", ray="local", workers=2)
    assert on_ray.executor == "ray (local)" and not on_ray.failed
    pd.testing.assert_frame_equal(serial.table.drop(columns=list(WALL_COLUMNS)),
                                  on_ray.table.drop(columns=list(WALL_COLUMNS)))
