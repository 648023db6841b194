"""Run a sweep end to end: check the grid, write each point's system and run files, run the points on
an executor, and collect one table.

Output folder (``out``)::

    results.parquet, results.csv   one row per point (see pamkv.sweep.results for the columns)
    systems/pNNNN.yaml             the system variant of each point that has ``system.`` keys
    runs/pNNNN.yaml                every point as a RUN.yaml: ``pamkv simulate --config`` reruns it
    errors.log                     tracebacks of points that failed with an internal error (if any)
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from pamkv.errors import UserError
from pamkv.output import write_json
from pamkv.sweep.executors import available_cpus, require_ray, run_local, run_ray
from pamkv.sweep.grid import Point, SweepPlan, expand, load_sweep
from pamkv.sweep.results import WALL_COLUMNS, build_rows, frame, write_tables
from pamkv.sweep.variants import show, system_yaml
from pamkv.sweep.worker import Outcome, Task

FILE_FIELDS = ("system", "model", "workload")  # run fields that may name a file rather than a preset


@dataclass
class SweepResult:
    """A finished sweep."""

    plan: SweepPlan
    rows: list[dict[str, Any]]  # one per point, in point order (what --json writes)
    table: pd.DataFrame  # the same rows, typed (what results.parquet / results.csv hold)
    metrics: list[str]  # the metric columns
    failed: list[int]  # points whose run raised an error (see the 'error' column)
    internal: list[int]  # of those, the ones that failed with an internal error, not a user-level one
    missing_metrics: list[str]  # requested metrics that no successful point reported
    out_dir: Path | None
    files: list[Path]
    executor: str
    wall_s: float

    def to_dict(self) -> dict[str, Any]:
        """What ``--json`` writes: the rows, and which columns are parameters, metrics and wall times."""
        return {
            "grid": self.plan.source,
            "points": len(self.rows),
            "failed": len(self.failed),
            "parameters": self.plan.keys,
            "metrics": self.metrics,
            "wall_time_columns": [c for c in WALL_COLUMNS if self.rows and c in self.rows[0]],
            "rows": self.rows,
        }


def point_name(point: Point, count: int) -> str:
    """File stem of a point: ``p`` and its zero-padded index (``p0007``)."""
    return f"p{point.index:0{max(4, len(str(count - 1)))}d}"


def _absolute(value: str) -> str:
    """A path that names an existing file, made absolute (workers may run elsewhere); a preset name as is."""
    path = Path(value)
    return str(path.resolve()) if path.is_file() else value


def prepare(plan: SweepPlan, out_dir: Path) -> tuple[list[Task], dict[int, str]]:
    """Write every point's system variant and RUN.yaml under ``out_dir``; the tasks and variant paths.

    The variant paths (relative to ``out_dir``) go into the results; files from an earlier sweep in
    the same folder are removed first so that nothing stale sits beside the new points.
    """
    systems, runs = out_dir / "systems", out_dir / "runs"
    try:
        for folder in (systems, runs):
            folder.mkdir(parents=True, exist_ok=True)
            for old in folder.glob("p*.yaml"):
                old.unlink()
        (out_dir / "errors.log").unlink(missing_ok=True)
    except OSError as exc:
        raise UserError(f"cannot write the sweep's files in {out_dir}: {exc.strerror or exc}") from exc
    tasks: list[Task] = []
    system_files: dict[int, str] = {}
    count = len(plan.points)
    for point in plan.points:
        name = point_name(point, count)
        shown = ", ".join(f"{k}={show(v)}" for k, v in point.params.items()) or "(no varied fields)"
        run = point.run.model_dump(exclude_unset=True)
        system_file: Path | None = None
        text = None
        if point.system is not None:
            system_file = systems / f"{name}.yaml"
            text = system_yaml(point.system, f"System of point {point.index} of the sweep {plan.source}: "
                                             f"{shown}.\nDerived from '{point.run.system}'.")
            _write(system_file, text)
            system_files[point.index] = str(system_file.relative_to(out_dir))
            run["system"] = str(system_file)
        header = (f"# Point {point.index} of the sweep {plan.source}: {shown}.\n"
                  f"# Rerun it (from the folder the sweep ran in): pamkv simulate --config {runs / name}.yaml\n")
        _write(runs / f"{name}.yaml", header + yaml.safe_dump(run, sort_keys=False, allow_unicode=True))
        task_run = point.run.model_dump()
        for key in FILE_FIELDS:
            task_run[key] = _absolute(task_run[key])
        tasks.append(Task(index=point.index, run=task_run,
                          system_file=str(system_file.resolve()) if system_file else None, system_yaml=text))
    return tasks, system_files


def _write(path: Path, text: str) -> None:
    try:
        path.write_text(text)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from exc


@contextmanager
def progress_bar(total: int, label: str, enabled: bool = True) -> Iterator[Callable[[Outcome], None]]:
    """A rich progress bar on standard error; yields the callback that advances it by one finished point."""
    if not enabled:
        yield lambda outcome: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    failed = 0
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[failed]}"), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        bar = progress.add_task(label, total=total, failed="")

        def advance(outcome: Outcome) -> None:
            nonlocal failed
            failed += outcome.error is not None
            progress.update(bar, advance=1, failed=f"{failed} failed" if failed else "")

        yield advance


def run_sweep(
    grid: str | Path | SweepPlan,
    *,
    out: str | Path | None = None,
    workers: int | None = None,
    ray: str | None = None,
    seed: int | None = None,
    json_path: str | Path | None = None,
    progress: bool = False,
) -> SweepResult:
    """Run every point of ``grid`` (a GRID.yaml path or a checked plan) and collect the results.

    ``out``: folder for the results and the points' files (default: a temporary folder, removed
    after; nothing is written). ``workers``: local processes (default: the CPUs available; 1 runs in
    this process), or with ``ray`` the most points in flight. ``ray``: a Ray address, ``auto`` or
    ``local`` instead of the local pool. ``seed`` replaces the base run's seed (also of a plan). ``json_path``: also
    write the rows as JSON ('-' = standard output). A failing point is recorded in the ``error``
    column; the sweep goes on.
    """
    if isinstance(grid, SweepPlan):
        plan = grid if seed is None or seed == grid.seed else expand(grid.config, grid.source, seed=seed)
    else:
        plan = load_sweep(grid, seed=seed)
    if workers is not None and workers < 1:
        raise UserError(f"--workers must be at least 1 (got {workers})")
    if ray is not None:
        require_ray()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="pamkv-sweep-") as scratch:
        out_dir = Path(out) if out is not None else Path(scratch)
        tasks, system_files = prepare(plan, out_dir)
        if ray is not None:
            executor = f"ray ({ray})"
            with progress_bar(len(tasks), "sweep (ray)", progress) as advance:
                outcomes = run_ray(tasks, ray, workers, advance)
        else:
            n = min(workers or available_cpus(), max(len(tasks), 1))
            executor = "serial" if n == 1 else f"local, {n} workers"
            with progress_bar(len(tasks), f"sweep ({executor})", progress) as advance:
                outcomes = run_local(tasks, n, advance)
        # Without an output folder the variants' files are gone after the sweep: do not point at them.
        rows, metrics, missing = build_rows(plan, outcomes, system_files if out is not None else {})
        table = frame(rows)
        files: list[Path] = []
        if out is not None:
            files = write_tables(table, out_dir)
            crashes = [o for o in outcomes if o.traceback]
            if crashes:
                log = out_dir / "errors.log"
                _write(log, "".join(f"--- point {o.index}: {o.error}\n{o.traceback}\n" for o in crashes))
                files.append(log)
    result = SweepResult(
        plan=plan, rows=rows, table=table, metrics=metrics,
        failed=[o.index for o in outcomes if o.error is not None],
        internal=[o.index for o in outcomes if o.traceback is not None],
        missing_metrics=missing, out_dir=Path(out) if out is not None else None, files=files,
        executor=executor, wall_s=time.perf_counter() - start,
    )
    if json_path is not None:
        write_json(result.to_dict(), json_path)
    return result
