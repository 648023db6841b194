"""`pamkv sweep GRID.yaml`: run a design-space sweep and write one table of results."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from pamkv.cli.app import JSON_HELP, SEED_HELP, app

if TYPE_CHECKING:
    from pamkv.sweep import SweepResult

# Short table headers (and the scale to show) for common metrics; the default table shows HEADLINE.
LABELS = {
    "throughput_tokens_per_s": ("tok/s", 1.0),
    "decode_throughput_tokens_per_s": ("decode tok/s", 1.0),
    "requests_per_s": ("req/s", 1.0),
    "tpot_s_p50": ("TPOT p50 ms", 1e3),
    "tpot_s_p99": ("TPOT p99 ms", 1e3),
    "ttft_s_p50": ("TTFT p50 ms", 1e3),
    "ttft_s_p99": ("TTFT p99 ms", 1e3),
    "e2e_s_p50": ("e2e p50 s", 1.0),
    "energy_j_per_token": ("J/tok", 1.0),
    "tokens_per_s_per_kusd": ("tok/s per $k", 1.0),
    "oom": ("OOM", 1.0),
}
HEADLINE = ("throughput_tokens_per_s", "tpot_s_p50", "ttft_s_p50", "energy_j_per_token", "oom")
MAX_SHOWN = 40  # points in the table
MAX_METRICS = 4  # requested metrics in the table (all are in the files)
MAX_ERRORS = 10  # failed points listed below the table


@app.command()
def sweep(
    grid: Annotated[Path, typer.Argument(help="GRID.yaml: base run fields, grid/zip of values, metrics to keep.")],
    out: Annotated[Path | None, typer.Option(
        "--out", help="Folder for results.parquet, results.csv and each point's system and run files "
        "(default: out/sweep-<GRID name>).")] = None,
    workers: Annotated[int | None, typer.Option(
        "--workers", help="Local worker processes (default: the CPUs available; 1 = serial in this process). "
        "With --ray: the most points in flight.")] = None,
    ray: Annotated[str | None, typer.Option(
        "--ray", help="Run on Ray instead: a cluster address, 'auto' (this machine's cluster) or 'local' "
        "(start Ray here). Needs pip install \"pamkv\\[ray]\".")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help=SEED_HELP + " Replaces the base run's seed.")] = None,
    json_path: Annotated[str | None, typer.Option("--json", help=JSON_HELP)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar and no table.")] = False,
) -> None:
    """Simulate every point of a grid (cartesian product of run and system fields) and tabulate them."""
    from pamkv.sweep import run_sweep

    folder = out if out is not None else Path("out") / f"sweep-{grid.stem}"
    result = run_sweep(grid, out=folder, workers=workers, ray=ray, seed=seed, json_path=json_path,
                       progress=not quiet)
    if not quiet and json_path != "-":
        print_summary(result)


def _fmt(value: Any, scale: float = 1.0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, int | float):
        value = value * scale
        return f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    return str(value)


def print_summary(result: SweepResult) -> None:
    """The points (parameters, a few metrics, errors) as a table, then where the files are and what failed."""
    console = Console()
    keys = result.plan.keys
    if result.plan.metrics is None:
        names = [m for m in HEADLINE if m in result.metrics]
    else:
        names = [m for m in result.metrics if m != "oom"][:MAX_METRICS] + ["oom"] * ("oom" in result.metrics)
    # The OOM column only when some point ran out of memory.
    names = [m for m in names if m != "oom" or any(row.get(m) is True for row in result.rows)]
    shown = {m: LABELS.get(m, (m, 1.0)) for m in names}
    table = Table(title=f"sweep {result.plan.source}: {len(result.rows)} points ({result.executor})")
    table.add_column("point", justify="right")
    for key in keys:
        table.add_column(key)
    for header, _ in shown.values():
        table.add_column(header, justify="right")
    if result.failed:
        table.add_column("failed")
    for row in result.rows[:MAX_SHOWN]:
        cells = [_fmt(row["point"]), *(_fmt(row.get(k)) for k in keys)]
        cells += [_fmt(row.get(m), scale) for m, (_, scale) in shown.items()]
        if result.failed:
            cells.append("yes" if row["error"] else "")
        table.add_row(*cells)
    console.print(table)
    if len(result.rows) > MAX_SHOWN:
        console.print(f"(first {MAX_SHOWN} of {len(result.rows)} points; all are in the files)")
    notes = [f"{len(result.rows)} points in {result.wall_s:.1f} s"]
    if result.failed:
        notes.append(f"{len(result.failed)} failed (their one-line error is in the 'error' column)")
    if result.internal:
        notes.append(f"{len(result.internal)} of them with an internal error (tracebacks in errors.log)")
    oom = sum(1 for row in result.rows if row.get("oom") is True)
    if oom:
        notes.append(f"{oom} out of KV memory (oom = true, no throughput)")
    console.print("; ".join(notes) + ".")
    for row in [r for r in result.rows if r["error"]][:MAX_ERRORS]:
        console.print(f"  point {row['point']}: {row['error']}", markup=False, highlight=False)
    if result.missing_metrics:
        console.print(f"[yellow]warning:[/] no point reported the metric(s) {', '.join(result.missing_metrics)}: "
                      "their columns are empty.")
    if result.files:
        console.print("results: " + ", ".join(str(p) for p in result.files))
