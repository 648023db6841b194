"""The sweep's table: one row per point with its parameters, kept metrics, wall time and error.

Columns, in order: ``point`` (its index), the varied keys as written in the grid (``batch``,
``system.tp``, ...), ``system_file`` (the point's system variant, relative to the output folder; only
when the grid has ``system.`` keys), the metrics, ``wall_s`` (wall seconds of the point) and
``error`` (empty unless the point failed). A metric whose name is already a column (``system``,
``batch``, ... echo the run) is kept as ``metric.<name>``. Column types come from the values, not
from pandas' guesses, so a sweep's files have the same schema whichever points fail.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pamkv.errors import UserError
from pamkv.sweep.grid import SweepPlan
from pamkv.sweep.worker import Outcome

RESERVED = ("point", "system_file", "wall_s", "error")
# Columns that hold wall-clock seconds: they differ from run to run; everything else is reproducible.
WALL_COLUMNS = ("wall_s", "sim_wall_s")
_MISSING = object()


def plain(value: Any) -> Any:
    """A numpy scalar as the Python value it holds; anything else unchanged."""
    return value.item() if isinstance(value, np.generic) else value


def is_scalar(value: Any) -> bool:
    """True for the values a table cell holds as is: None, bool, int, float, str (numpy scalars too)."""
    return value is None or isinstance(plain(value), bool | int | float | str)


def _cell(value: Any) -> Any:
    """A table cell: a scalar as is, anything else (a list, a mapping) as compact JSON text."""
    value = plain(value)
    if is_scalar(value):
        return value
    return json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))


def _lookup(metrics: dict[str, Any], name: str) -> Any:
    """``metrics[name]``, where a dotted name reaches into nested objects; ``_MISSING`` when absent."""
    if name in metrics:
        return metrics[name]
    node: Any = metrics
    for part in name.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _flatten(name: str, value: Any, into: dict[str, Any]) -> None:
    """Put ``value`` under ``name``; a mapping becomes one column per entry (``name.key``)."""
    if isinstance(value, dict):
        for key, sub in value.items():
            _flatten(f"{name}.{key}", sub, into)
    else:
        into[name] = _cell(value)


def select_metrics(metrics: dict[str, Any], names: Sequence[str] | None) -> tuple[dict[str, Any], set[str]]:
    """The kept metrics of one point, and the requested names it did not report.

    ``names=None`` keeps every scalar metric (objects such as ``device_utilization`` and lists are
    left out; name them, or one of their entries, to keep them).
    """
    if names is None:
        return {k: _cell(v) for k, v in metrics.items() if is_scalar(v)}, set()
    kept: dict[str, Any] = {}
    missing: set[str] = set()
    for name in names:
        value = _lookup(metrics, name)
        if value is _MISSING:
            missing.add(name)
            kept[name] = None
        else:
            _flatten(name, value, kept)
    return kept, missing


def build_rows(plan: SweepPlan, outcomes: Sequence[Outcome],
               system_files: dict[int, str]) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """The rows (in point order), the metric column names, and requested metrics no point reported."""
    kept: list[dict[str, Any]] = []
    seen: dict[str, None] = {}  # ordered set: first appearance over the points in order
    never: set[str] | None = None
    for outcome in outcomes:
        values: dict[str, Any] = {}
        if outcome.metrics is not None:
            values, missing = select_metrics(outcome.metrics, plan.metrics)
            never = missing if never is None else never & missing
        kept.append(values)
        seen.update(dict.fromkeys(values))
    metric_names = list(seen)
    if plan.metrics is not None:
        # In the order asked for; a requested object expands to its entries in its place.
        metric_names = []
        for name in plan.metrics:
            entries = [m for m in seen if m.startswith(f"{name}.")]
            for column in ([name] if name in seen or not entries else []) + entries:
                if column not in metric_names:
                    metric_names.append(column)
    taken = set(RESERVED) | set(plan.keys)
    column_of = {m: (f"metric.{m}" if m in taken else m) for m in metric_names}
    rows = []
    for point, outcome, values in zip(plan.points, outcomes, kept, strict=True):
        row: dict[str, Any] = {"point": point.index}
        row.update({k: _cell(v) for k, v in point.params.items()})
        if system_files:
            row["system_file"] = system_files.get(point.index)
        for name, column in column_of.items():
            row[column] = values.get(name)
        row["wall_s"] = outcome.wall_s
        row["error"] = outcome.error
        rows.append(row)
    return rows, list(column_of.values()), sorted(never or ())


def frame(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """The rows as a DataFrame whose column types follow the values (nullable ints and bools)."""
    if not rows:
        return pd.DataFrame()
    columns = list(rows[0])
    data = {}
    for column in columns:
        values = [row.get(column) for row in rows]
        data[column] = pd.Series(_typed(values), dtype=_dtype(values), name=column)
    return pd.DataFrame(data, columns=columns)


def _dtype(values: Sequence[Any]) -> str:
    """The column type for these cells: bool, int, float, or object (text, mixed)."""
    kinds = {type(v) for v in values if v is not None}
    if not kinds:
        return "object"
    if kinds == {bool}:
        return "boolean"
    if kinds == {int}:
        return "Int64"
    if kinds <= {int, float}:
        return "float64"
    return "object"


def _typed(values: Sequence[Any]) -> list[Any]:
    """Cells ready for their column type: None -> NaN in float columns; mixed kinds as text."""
    dtype = _dtype(values)
    if dtype == "float64":
        return [math.nan if v is None else float(v) for v in values]
    if dtype == "object" and len({type(v) for v in values if v is not None}) > 1:
        return [None if v is None else str(v) for v in values]
    return list(values)


def write_tables(table: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Write ``results.parquet`` and ``results.csv`` into ``out_dir``; returns their paths."""
    paths = [out_dir / "results.parquet", out_dir / "results.csv"]
    try:
        table.to_parquet(paths[0], index=False)
        table.to_csv(paths[1], index=False)
    except OSError as exc:
        raise UserError(f"cannot write the results in {out_dir}: {exc.strerror or exc}") from exc
    return paths
