"""Checked reading of JSON-lines traces (one JSON object per line), e.g. Mooncake's.

The fast path is pyarrow's C++ JSON reader. If it refuses the file, or any needed value is missing or
invalid, the file is read again line by line in Python to name the first bad line (1-based) and key,
or, with ``skip_bad_rows``, to drop and count the bad lines. Blank lines are not rows.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.json as pj

from pamkv.errors import UserError
from pamkv.workloads.tabular import SKIP_HINT, Field, convert, describe_value


def _check(field: Field, value: object) -> float | None:
    """The value as a float if valid for ``field`` (date-times: epoch seconds), else None."""
    if field.kind == "datetime":
        if not isinstance(value, str):
            return None
        ts = pd.to_datetime(value, format="ISO8601", errors="coerce", utc=True)
        return None if pd.isna(ts) else ts.value / 1e9
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    x = float(value)
    if not math.isfinite(x):
        return None
    if field.kind == "count":
        return x if x == round(x) and x >= field.minimum else None
    return x * field.scale if x >= 0 else None


def _want(field: Field) -> str:
    if field.kind == "datetime":
        return "a date-time text"
    return f"a whole number >= {field.minimum}" if field.kind == "count" else "a number >= 0"


def _read_slow(
    path: Path, fields: list[Field], ragged: str | None, skip_bad_rows: bool
) -> tuple[dict[str, np.ndarray], tuple[np.ndarray, np.ndarray] | None, int]:
    cols: dict[str, list[float]] = {f.role: [] for f in fields}
    lengths: list[int] = []
    values: list[int] = []
    skipped = 0
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    with handle:
        for lineno, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            problem: str | None = None
            row: dict[str, float] = {}
            try:
                obj = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                problem = f"line {lineno}: not valid JSON ({getattr(exc, 'msg', 'undecodable text')})"
                obj = None
            if problem is None and not isinstance(obj, dict):
                problem = f"line {lineno}: expected a JSON object, got {type(obj).__name__}"
            if problem is None:
                assert isinstance(obj, dict)
                for f in fields:
                    got = obj.get(f.column)
                    if f.column not in obj:
                        problem = f"line {lineno}, key '{f.column}': missing"
                        break
                    x = _check(f, got)
                    if x is None:
                        problem = f"line {lineno}, key '{f.column}': expected {_want(f)}, got {describe_value(got)}"
                        break
                    row[f.role] = x
            ids: list[int] = []
            if problem is None and ragged is not None:
                assert isinstance(obj, dict)
                got = obj.get(ragged, [])
                if not isinstance(got, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in got):
                    problem = f"line {lineno}, key '{ragged}': expected a list of whole numbers"
                else:
                    ids = got
            if problem is not None:
                if not skip_bad_rows:
                    raise UserError(f"{path}: {problem} {SKIP_HINT}")
                skipped += 1
                continue
            for f in fields:
                cols[f.role].append(row[f.role])
            if ragged is not None:
                lengths.append(len(ids))
                values.extend(ids)
    out = {k: np.asarray(v, dtype=np.float64) for k, v in cols.items()}
    csr = None
    if ragged is not None:
        offs = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offs[1:])
        csr = (offs, np.asarray(values, dtype=np.int64))
    return out, csr, skipped


def _read_fast(
    path: Path, fields: list[Field], ragged: str | None
) -> tuple[dict[str, np.ndarray], tuple[np.ndarray, np.ndarray] | None] | None:
    """The pyarrow path; None when the file needs the line-by-line reader (errors or unusual types)."""
    try:
        table = pj.read_json(path)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError):
        return None
    out: dict[str, np.ndarray] = {}
    for f in fields:
        if f.column not in table.column_names:
            return None
        col = table[f.column]
        if f.kind == "datetime":
            if col.null_count:
                return None
            secs, bad, _ = convert(f, pd.Series(col.to_pandas()).astype(str))
            if bad.any():
                return None
            out[f.role] = secs
            continue
        if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)) or col.null_count:
            return None
        x = col.to_numpy().astype(np.float64)
        ok = np.isfinite(x) & (x >= (f.minimum if f.kind == "count" else 0))
        if f.kind == "count":
            ok &= x == np.round(x)
        if not ok.all():
            return None
        out[f.role] = x * (f.scale if f.kind == "seconds" else 1.0)
    csr = None
    if ragged is not None:
        if ragged not in table.column_names:
            offs = np.zeros(table.num_rows + 1, dtype=np.int64)
            return out, (offs, np.zeros(0, dtype=np.int64))
        col = table[ragged]
        if not pa.types.is_list(col.type) or not pa.types.is_integer(col.type.value_type) or col.null_count:
            return None
        arr = col.combine_chunks()
        offs = arr.offsets.to_numpy().astype(np.int64)
        vals = arr.values.to_numpy().astype(np.int64)
        csr = (offs - offs[0], vals[offs[0] : offs[-1]])
    return out, csr


def read_jsonl_fields(
    path: Path, fields: list[Field], *, ragged: str | None = None, skip_bad_rows: bool = False
) -> tuple[dict[str, np.ndarray], tuple[np.ndarray, np.ndarray] | None, int]:
    """Read ``fields`` (and an optional list-of-int key ``ragged`` as CSR) from a JSON-lines file.

    Returns ({role: values}, (offsets, ids) or None, rows skipped).
    """
    fast = _read_fast(path, fields, ragged)
    if fast is not None:
        return fast[0], fast[1], 0
    return _read_slow(path, fields, ragged, skip_bad_rows)
