"""Checked reading of tabular trace files: pandas' C parser, then one vectorised pass of validation.

A row is bad when a needed field is missing, not a number, not a whole number where a token count is
expected, below its minimum, or when the line has more fields than the header. The first bad row
raises a one-line :class:`UserError` naming the file, the line (1-based, the header is line 1) and the
column; with ``skip_bad_rows`` bad rows are dropped and counted instead, never silently. Blank lines
at the end of a file are not rows; a blank line between rows is a bad row.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from pamkv.errors import UserError

SKIP_HINT = "(use --skip-bad-rows to skip such rows)"


@dataclass(frozen=True)
class Field:
    """One column to read. ``count``: whole number >= ``minimum``; ``seconds``: number >= 0 times ``scale``
    (seconds per unit); ``datetime``: date-time text, returned as seconds since the earliest one."""

    role: str
    column: str
    kind: Literal["count", "seconds", "datetime"]
    minimum: int = 0
    scale: float = 1.0


def describe_value(raw: object) -> str:
    """How a raw cell looks in an error message."""
    if raw is None or (isinstance(raw, float) and np.isnan(raw)) or raw is pd.NA:
        return "an empty value"
    text = str(raw)
    return repr(text if len(text) <= 40 else text[:37] + "...")


def convert(field: Field, values: pd.Series) -> tuple[np.ndarray, np.ndarray, str]:
    """(converted values, bad-row mask, what a good value is) for one column."""
    if field.kind == "datetime":
        ts = pd.to_datetime(values, format="ISO8601", errors="coerce", utc=True)
        bad = ts.isna().to_numpy()
        ns = ts.to_numpy(dtype="datetime64[ns]").astype(np.int64)
        good = ns[~bad]
        origin = good.min() if good.size else 0
        secs = (ns - origin).astype(np.float64) / 1e9
        return secs, bad, "a date-time"
    num = values if pd.api.types.is_numeric_dtype(values.dtype) else pd.to_numeric(values, errors="coerce")
    x = num.to_numpy(dtype=np.float64, na_value=np.nan)
    with np.errstate(invalid="ignore"):
        if field.kind == "count":
            bad = ~np.isfinite(x) | (x != np.round(x)) | (x < field.minimum)
            return x, bad, f"a whole number >= {field.minimum}"
        bad = ~np.isfinite(x) | (x < 0)
    return x * field.scale, bad, "a number >= 0"


def _skipped_lines(caught: list[warnings.WarningMessage]) -> list[int]:
    lines: list[int] = []
    for w in caught:
        lines += [int(m) for m in re.findall(r"Skipping line (\d+)", str(w.message))]
    return sorted(lines)


def read_fields(
    path: Path, fields: list[Field], *, skip_bad_rows: bool, sep: str = ","
) -> tuple[dict[str, np.ndarray], int]:
    """Read ``fields`` from a CSV file with a header line; returns ({role: values}, rows skipped)."""
    try:
        header = list(pd.read_csv(path, nrows=0, sep=sep).columns)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read as CSV: {str(exc).splitlines()[0] if str(exc) else exc}") from exc
    for f in fields:
        if f.column not in header:
            shown = ", ".join(repr(h) for h in header[:12])
            raise UserError(f"{path}: line 1: no column '{f.column}' (the header has {shown})")
    # All columns are parsed (no usecols): with usecols the C parser accepts rows with extra fields.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            df = pd.read_csv(
                path, sep=sep, skip_blank_lines=False,
                on_bad_lines="warn" if skip_bad_rows else "error",
            )
        except pd.errors.ParserError as exc:
            m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
            if m:
                raise UserError(
                    f"{path}: line {m.group(2)}: expected {m.group(1)} fields, saw {m.group(3)} {SKIP_HINT}"
                ) from exc
            raise UserError(f"{path}: cannot parse as CSV: {str(exc).splitlines()[0]}") from exc
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise UserError(f"{path}: cannot read as CSV: {str(exc).splitlines()[0]}") from exc
    tokenizer_skipped = _skipped_lines(caught)

    # Line number of each parsed row: data starts on line 2; lines the tokenizer skipped are gaps.
    n_rows = len(df)
    lines = np.arange(2, 2 + n_rows + len(tokenizer_skipped), dtype=np.int64)
    lines = lines[~np.isin(lines, tokenizer_skipped)][:n_rows]

    # Trailing blank lines are not rows.
    empty = df.isna().all(axis=1).to_numpy()
    keep_to = n_rows
    while keep_to > 0 and empty[keep_to - 1]:
        keep_to -= 1
    if keep_to < n_rows:
        df, lines = df.iloc[:keep_to], lines[:keep_to]

    values: dict[str, np.ndarray] = {}
    bad_any = np.zeros(len(df), dtype=bool)
    first: tuple[int, Field, str] | None = None
    for f in fields:
        x, bad, want = convert(f, df[f.column])
        values[f.role] = x
        if bad.any():
            row = int(np.argmax(bad))
            if first is None or row < first[0]:
                first = (row, f, want)
            bad_any |= bad
    if first is not None and not skip_bad_rows:
        row, f, want = first
        raw = df[f.column].iloc[row]
        raise UserError(
            f"{path}: line {lines[row]}, column '{f.column}': expected {want}, got {describe_value(raw)} {SKIP_HINT}"
        )
    if bad_any.any():
        keep = ~bad_any
        values = {k: v[keep] for k, v in values.items()}
    return values, len(tokenizer_skipped) + int(bad_any.sum())
