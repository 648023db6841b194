"""Trace readers for the public LLM-serving trace formats, with format recognition.

| format     | file                                   | arrival            | input             | output             |
|------------|----------------------------------------|--------------------|-------------------|--------------------|
| ``azure``  | Azure LLM inference trace 2023 / 2024  | ``TIMESTAMP`` text | ``ContextTokens`` | ``GeneratedTokens``|
| ``mooncake`` | Mooncake JSONL (FAST'25)             | ``timestamp`` ms   | ``input_length``  | ``output_length``  |
| ``burstgpt`` | BurstGPT CSV (arXiv 2401.17644)      | ``Timestamp`` s    | ``Request tokens``| ``Response tokens``|
| ``lengths``| ShareGPT / arXiv length tables | none | ``num_prefill_tokens`` | ``num_decode_tokens`` |
| ``csv`` / ``jsonl`` | any, with a :class:`ColumnMapping` | mapped        | mapped            | mapped             |
| ``npz``    | pamkv's own (:mod:`pamkv.workloads.native`) | ``arrival_s`` | ``input_tokens`` | ``output_tokens`` |

Mooncake's ``hash_ids`` (one id per 512-token prefix block) are kept. BurstGPT's failed requests
(``Response tokens`` = 0) are kept as requests with no output: the trace records them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pamkv.config.workloads import ColumnMapping
from pamkv.errors import UserError
from pamkv.workloads.jsonl import read_jsonl_fields
from pamkv.workloads.native import read_npz
from pamkv.workloads.tabular import Field, read_fields
from pamkv.workloads.trace import Trace

FORMATS = ("auto", "azure", "mooncake", "burstgpt", "lengths", "csv", "jsonl", "npz")

_TIME_SCALE = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}

_CSV_SIGNATURES: tuple[tuple[str, frozenset[str]], ...] = (
    ("azure", frozenset({"TIMESTAMP", "ContextTokens", "GeneratedTokens"})),
    ("burstgpt", frozenset({"Timestamp", "Request tokens", "Response tokens"})),
    ("lengths", frozenset({"num_prefill_tokens", "num_decode_tokens"})),
)
_JSONL_EXT = (".jsonl", ".json", ".ndjson")


def _first_line(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            for raw in handle:
                if raw.strip():
                    return raw.decode("utf-8", errors="replace").strip()
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    return ""


def detect_format(path: Path, columns: ColumnMapping | None = None) -> str:
    """Recognise a trace file's format from its extension and first line."""
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return "npz"
    line = _first_line(path)
    if suffix in _JSONL_EXT or line.startswith("{"):
        try:
            keys = set(json.loads(line)) if line else set()
        except (json.JSONDecodeError, TypeError):
            keys = set()
        if {"timestamp", "input_length", "output_length"} <= keys and columns is None:
            return "mooncake"
        if columns is not None:
            return "jsonl"
        raise UserError(
            f"{path}: line 1: cannot recognise this JSON-lines trace (keys {sorted(keys)[:8]}); "
            "give --format jsonl with --column input=KEY --column output=KEY [--column arrival=KEY]"
        )
    header = {h.strip().strip('"') for h in line.split(",")}
    if columns is not None:
        return "csv"
    for fmt, needed in _CSV_SIGNATURES:
        if needed <= header:
            return fmt
    raise UserError(
        f"{path}: line 1: cannot recognise this trace's header ({line[:80]!r}); give --format "
        "(azure, mooncake, burstgpt, lengths) or a column mapping (--column input=COL --column output=COL)"
    )


def _mapped_fields(m: ColumnMapping) -> list[Field]:
    fields = [Field("input", m.input, "count", minimum=1), Field("output", m.output, "count", minimum=0)]
    if m.arrival is not None:
        if m.time_unit == "datetime":
            fields.insert(0, Field("arrival", m.arrival, "datetime"))
        else:
            fields.insert(0, Field("arrival", m.arrival, "seconds", scale=_TIME_SCALE[m.time_unit]))
    return fields


def read_trace(
    path: str | Path,
    *,
    format: str = "auto",
    skip_bad_rows: bool = False,
    columns: ColumnMapping | None = None,
    name: str | None = None,
) -> Trace:
    """Read a trace file of any supported format (see module docs) into a :class:`Trace`.

    A malformed row raises a one-line :class:`UserError` naming file, line and column; with
    ``skip_bad_rows`` bad rows are dropped and their number is kept in ``Trace.skipped_rows``.
    """
    p = Path(path)
    if format not in FORMATS:
        raise UserError(f"unknown trace format '{format}' (known: {', '.join(FORMATS)})")
    if not p.is_file():
        raise UserError(f"{p}: no such trace file")
    fmt = detect_format(p, columns) if format == "auto" else format
    label = name or p.stem
    if fmt == "npz":
        return read_npz(p, name=label)
    if fmt in ("csv", "jsonl") and columns is None:
        raise UserError(f"format '{fmt}' needs a column mapping (--column input=COL --column output=COL)")

    csr = None
    if fmt == "mooncake":
        fields = [
            Field("arrival", "timestamp", "seconds", scale=1e-3),
            Field("input", "input_length", "count", minimum=1),
            Field("output", "output_length", "count", minimum=0),
        ]
        values, csr, skipped = read_jsonl_fields(p, fields, ragged="hash_ids", skip_bad_rows=skip_bad_rows)
    elif fmt == "jsonl":
        assert columns is not None
        values, _, skipped = read_jsonl_fields(p, _mapped_fields(columns), skip_bad_rows=skip_bad_rows)
    else:
        if fmt == "azure":
            fields = [
                Field("arrival", "TIMESTAMP", "datetime"),
                Field("input", "ContextTokens", "count", minimum=1),
                Field("output", "GeneratedTokens", "count", minimum=0),
            ]
        elif fmt == "burstgpt":
            fields = [
                Field("arrival", "Timestamp", "seconds"),
                Field("input", "Request tokens", "count", minimum=1),
                Field("output", "Response tokens", "count", minimum=0),
            ]
        elif fmt == "lengths":
            fields = [
                Field("input", "num_prefill_tokens", "count", minimum=1),
                Field("output", "num_decode_tokens", "count", minimum=0),
            ]
        else:
            assert columns is not None
            fields = _mapped_fields(columns)
        values, skipped = read_fields(p, fields, skip_bad_rows=skip_bad_rows)

    arrival = values.get("arrival")
    return Trace.from_arrays(
        arrival,
        values["input"].astype(np.int64),
        values["output"].astype(np.int64),
        name=label,
        source=str(p),
        arrivals="trace" if arrival is not None else "none",
        hash_offsets=None if csr is None else csr[0],
        hash_ids=None if csr is None else csr[1],
        skipped_rows=skipped,
        meta={"format": fmt},
    )
