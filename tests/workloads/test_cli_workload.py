"""`pamkv workload stats|locality|list` as a user runs them: JSON contracts, errors, exit codes.

Most cases run the CLI in-process (fast); one runs it as a subprocess, exactly as a user would.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from pamkv.cli import main


@dataclass
class Done:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    """``run(*args)``: ``pamkv ARGS`` in this process, returning its exit code and output."""

    def _run(*args: str) -> Done:
        capsys.readouterr()
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        out = capsys.readouterr()
        return Done(code, out.out, out.err)

    return _run

STATS_KEYS = {
    "requests", "input_tokens_mean", "input_tokens_p50", "input_tokens_p99", "output_tokens_mean",
    "output_tokens_p50", "output_tokens_p99", "arrival_rate_per_s", "duration_s", "context_tokens_mean",
}
LOCALITY_KEYS = {
    "top1_mass", "top5_mass", "top10_mass", "top20_mass", "sink_mass", "last64_mass", "jaccard_top10_lag1",
    "jaccard_top10_lag8", "jaccard_top10_lag32", "retained_top10", "prev_step_capture_10",
}


def _one_line_error(proc) -> str:  # type: ignore[no-untyped-def]
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_stats_of_a_builtin(tmp_path: Path, run) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "s.json"
    proc = run("workload", "stats", "mooncake-conv", "--requests", "2000", "--rate-scale", "2", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    s = json.loads(out.read_text())
    assert set(s) >= STATS_KEYS and s["requests"] == 2000 and s["arrival_rate_per_s"] > 0
    assert 0 < s["shared_prefix_fraction"] < 1


def test_stats_of_a_file_with_a_broken_row(tmp_path: Path, cli, run) -> None:  # type: ignore[no-untyped-def]
    trace = tmp_path / "azure.csv"
    trace.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2023-11-16 18:15:46.6805900,374,44\n"
        "2023-11-16 18:15:47.6805900,12x,44\n"
        "2023-11-16 18:15:48.6805900,500,\n"
        "2023-11-16 18:15:49.6805900,600,20\n"
    )
    line = _one_line_error(cli("workload", "stats", str(trace)))
    assert "azure.csv" in line and "line 3" in line and "ContextTokens" in line
    out = tmp_path / "s.json"
    proc = run("workload", "stats", str(trace), "--skip-bad-rows", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "skipped 2 bad rows" in proc.stderr
    s = json.loads(out.read_text())
    assert s["requests"] == 2 and s["skipped_rows"] == 2 and set(s) >= STATS_KEYS


def test_stats_user_mistakes(tmp_path: Path, run) -> None:  # type: ignore[no-untyped-def]
    assert "no-such" in _one_line_error(run("workload", "stats", "no-such"))
    assert "--column" in _one_line_error(run("workload", "stats", "azure-conv", "--column", "bogus"))
    plain = tmp_path / "p.csv"
    plain.write_text("a,b\n1,2\n")
    line = _one_line_error(run("workload", "stats", str(plain)))
    assert "p.csv" in line and "line 1" in line


def test_locality_json(tmp_path: Path, run) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "l.json"
    proc = run("workload", "locality", "--context", "1024", "--steps", "40", "--seed", "3", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    figs = json.loads(out.read_text())
    assert set(figs) >= LOCALITY_KEYS and figs["context_tokens"] == 1024
    assert 0.5 < figs["top10_mass"] <= 1.0
    assert "-3" in _one_line_error(run("workload", "locality", "--context", "-3"))
    listed = run("workload", "list", "--json", "-")
    assert listed.returncode == 0 and {"sharegpt", "mooncake-conv"} <= {r["name"] for r in json.loads(listed.stdout)}
