"""One sweep point, run wherever an executor sends it: in this process, a local worker process, or a Ray task.

:func:`run_task` never raises: a user-level failure (a model that does not fit the system, a request
that can never fit) comes back as its one-line message, anything else as ``Type: message`` with the
traceback beside it, so one bad point never stops a sweep.
"""

from __future__ import annotations

import os
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Imported here, with the parts pamkv.sim imports lazily, so that a forkserver which preloads this
# module forks workers with the whole simulator already imported.
import pamkv.sim.build  # noqa: F401
import pamkv.sim.slo  # noqa: F401
from pamkv.errors import UserError
from pamkv.sim import simulate


@dataclass(frozen=True)
class Task:
    """What a worker needs to run one point."""

    index: int
    run: dict[str, Any]  # RunConfig fields; files as absolute paths
    system_file: str | None = None  # the point's system variant, written by the driver
    system_yaml: str | None = None  # the same file's text, for a worker that cannot see it (another node)


@dataclass
class Outcome:
    """What came back from one point: its metrics, or its error."""

    index: int
    metrics: dict[str, Any] | None
    error: str | None
    wall_s: float
    traceback: str | None = None  # for a failure that is not a user error (a bug worth reporting)


def run_task(task: Task) -> Outcome:
    """Simulate ``task``'s run and time it (wall seconds); failures are returned, not raised."""
    start = time.perf_counter()
    try:
        run = dict(task.run)
        if task.system_file is not None:
            run["system"] = _system_path(task)
        metrics = simulate(run).metrics
        return Outcome(task.index, metrics, None, time.perf_counter() - start)
    except UserError as exc:
        return Outcome(task.index, None, str(exc), time.perf_counter() - start)
    except Exception as exc:  # noqa: BLE001 - a crashing point is recorded, the sweep goes on
        message = " ".join(f"{type(exc).__name__}: {exc}".split())
        return Outcome(task.index, None, message, time.perf_counter() - start, traceback.format_exc())


def _system_path(task: Task) -> str:
    """The variant's file, or a copy of its text in a temporary folder when this node does not see that file."""
    assert task.system_file is not None
    path = Path(task.system_file)
    if task.system_yaml is None or (path.is_file() and path.read_text() == task.system_yaml):
        return task.system_file
    folder = Path(tempfile.gettempdir()) / f"pamkv-sweep-{os.getpid()}"
    folder.mkdir(parents=True, exist_ok=True)
    copy = folder / Path(task.system_file).name
    copy.write_text(task.system_yaml)
    return str(copy)
