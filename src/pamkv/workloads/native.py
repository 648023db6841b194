"""pamkv's own compact trace file: a compressed numpy ``.npz`` (also the format of the packaged traces).

Keys: ``format`` = "pamkv-trace", ``version`` = 1, ``arrival_s`` (float64, seconds from the first
request), ``input_tokens`` and ``output_tokens`` (integers), ``arrivals`` (text: "trace", "none", ...),
``name`` and ``source`` (text), and optionally ``hash_offsets`` (int64, requests + 1) with ``hash_ids``
(int64) and ``hash_block_tokens``: prefix-block ids per request, compressed-sparse-row style.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from pamkv.errors import UserError
from pamkv.workloads.trace import Trace

FORMAT = "pamkv-trace"
VERSION = 1


def _small_int(x: np.ndarray) -> np.ndarray:
    """The narrowest of int16/int32/int64 that holds ``x`` exactly (smaller files)."""
    for dt in (np.int16, np.int32):
        info = np.iinfo(dt)
        if x.size == 0 or (x.min() >= info.min and x.max() <= info.max):
            return x.astype(dt)
    return x.astype(np.int64)


def save_trace(trace: Trace, path: str | Path) -> None:
    """Write ``trace`` as a compressed ``.npz`` pamkv trace file."""
    arrays: dict[str, np.ndarray] = {
        "format": np.array(FORMAT),
        "version": np.array(VERSION),
        "arrival_s": trace.arrival_s,
        "input_tokens": _small_int(trace.input_tokens),
        "output_tokens": _small_int(trace.output_tokens),
        "arrivals": np.array(trace.arrivals),
        "name": np.array(trace.name),
        "source": np.array(trace.source),
    }
    if trace.hash_offsets is not None and trace.hash_ids is not None:
        # Mostly increasing ids: their differences compress far better.
        arrays["hash_offsets"] = trace.hash_offsets
        arrays["hash_id_deltas"] = _small_int(np.diff(trace.hash_ids, prepend=0))
        arrays["hash_block_tokens"] = np.array(trace.hash_block_tokens)
    try:
        with Path(path).open("wb") as handle:
            np.savez_compressed(handle, **arrays)  # type: ignore[arg-type]
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from exc


def read_npz(path: Path, *, name: str | None = None) -> Trace:
    """Read a pamkv ``.npz`` trace file; a missing or malformed key is a UserError naming it."""
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise UserError(f"{path}: not a readable .npz file: {exc}") from exc
    with data:
        keys = set(data.files)
        if "format" not in keys or str(data["format"]) != FORMAT:
            raise UserError(f"{path}: not a pamkv trace file (key 'format' must be '{FORMAT}')")
        if int(data["version"]) != VERSION:
            raise UserError(f"{path}: key 'version': unsupported version {int(data['version'])} (need {VERSION})")
        for key in ("arrival_s", "input_tokens", "output_tokens"):
            if key not in keys:
                raise UserError(f"{path}: missing key '{key}'")
        arr = data["arrival_s"].astype(np.float64)
        inp = data["input_tokens"].astype(np.int64)
        out = data["output_tokens"].astype(np.int64)
        if not (arr.ndim == inp.ndim == out.ndim == 1 and arr.size == inp.size == out.size):
            raise UserError(f"{path}: arrival_s, input_tokens and output_tokens must be 1-D of equal length")
        for key, x, low in (("input_tokens", inp, 1), ("output_tokens", out, 0)):
            if x.size and x.min() < low:
                row = int(np.argmax(x < low))
                raise UserError(f"{path}: key '{key}', request {row}: expected >= {low}, got {int(x[row])}")
        if arr.size and not np.all(np.isfinite(arr)):
            raise UserError(f"{path}: key 'arrival_s', request {int(np.argmax(~np.isfinite(arr)))}: not finite")
        offs = ids = None
        block = 512
        if "hash_offsets" in keys:
            offs = data["hash_offsets"].astype(np.int64)
            ids = np.cumsum(data["hash_id_deltas"].astype(np.int64))
            block = int(data["hash_block_tokens"]) if "hash_block_tokens" in keys else 512
            if offs.shape != (inp.size + 1,) or offs[0] != 0 or offs[-1] != ids.size or np.any(np.diff(offs) < 0):
                raise UserError(f"{path}: key 'hash_offsets' does not index 'hash_id_deltas'")
        arrivals = str(data["arrivals"]) if "arrivals" in keys else "trace"
        trace = Trace.from_arrays(
            None if arrivals == "none" else arr, inp, out,
            name=name or (str(data["name"]) if "name" in keys else path.stem),
            source=str(data["source"]) if "source" in keys else str(path),
            arrivals=arrivals, hash_offsets=offs, hash_ids=ids, hash_block_tokens=block,
        )
    return trace
