"""A request trace as a struct of numpy arrays, with the helpers a serving study needs.

One request = one row: arrival time (seconds from the first request), prompt length and output length
in tokens, and optionally its prefix-block hash ids (Mooncake: one id per 512-token block, equal ids =
shared prefix), stored compressed-sparse-row style (``hash_offsets``, ``hash_ids``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from pamkv.errors import UserError


@dataclass(frozen=True, eq=False)
class Trace:
    """Requests of one workload, sorted by arrival. Arrays are read-only views; helpers return new traces."""

    arrival_s: np.ndarray  # float64 seconds from the first arrival, non-decreasing
    input_tokens: np.ndarray  # int64 prompt tokens, >= 1
    output_tokens: np.ndarray  # int64 generated tokens, >= 0
    name: str = "trace"
    source: str = ""
    arrivals: str = "trace"  # what made the arrival times: trace, poisson(...), gamma(...), none
    hash_offsets: np.ndarray | None = None  # int64 [n + 1] into hash_ids
    hash_ids: np.ndarray | None = None  # int64 prefix-block ids
    hash_block_tokens: int = 512
    skipped_rows: int = 0
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.arrival_s.shape[0]
        if self.input_tokens.shape != (n,) or self.output_tokens.shape != (n,):
            raise ValueError("arrival_s, input_tokens and output_tokens must be 1-D of equal length")
        if (self.hash_offsets is None) != (self.hash_ids is None):
            raise ValueError("hash_offsets and hash_ids go together")
        if self.hash_offsets is not None and self.hash_offsets.shape != (n + 1,):
            raise ValueError("hash_offsets must have one entry more than there are requests")
        for arr in (self.arrival_s, self.input_tokens, self.output_tokens, self.hash_offsets, self.hash_ids):
            if arr is not None:
                arr.setflags(write=False)

    # --- construction -------------------------------------------------------------------------
    @classmethod
    def from_arrays(
        cls,
        arrival_s: np.ndarray | None,
        input_tokens: np.ndarray,
        output_tokens: np.ndarray,
        *,
        name: str = "trace",
        source: str = "",
        arrivals: str = "trace",
        hash_offsets: np.ndarray | None = None,
        hash_ids: np.ndarray | None = None,
        hash_block_tokens: int = 512,
        skipped_rows: int = 0,
        meta: dict[str, Any] | None = None,
    ) -> Trace:
        """Build a trace: arrivals (None = all at 0) are shifted to start at 0 and rows stably sorted by them."""
        inp = np.array(input_tokens, dtype=np.int64)  # copies: the trace's arrays become read-only
        out = np.array(output_tokens, dtype=np.int64)
        if arrival_s is None:
            arr = np.zeros(inp.shape[0])
            arrivals = "none"
        else:
            arr = np.array(arrival_s, dtype=np.float64)
            if arr.size:
                arr -= arr.min()
        offs = None if hash_offsets is None else np.array(hash_offsets, dtype=np.int64)
        ids = None if hash_ids is None else np.array(hash_ids, dtype=np.int64)
        if not np.all(np.isfinite(arr)):
            raise ValueError("arrival times must be finite")
        if inp.size and (inp.min() < 1 or out.min() < 0):
            raise ValueError("input_tokens must be >= 1 and output_tokens >= 0")
        if arr.size > 1 and np.any(np.diff(arr) < 0):
            order = np.argsort(arr, kind="stable")
            arr, inp, out = arr[order], inp[order], out[order]
            if offs is not None and ids is not None:
                offs, ids = _take_ragged(offs, ids, order)
        return cls(arr, inp, out, name=name, source=source, arrivals=arrivals, hash_offsets=offs,
                   hash_ids=ids, hash_block_tokens=hash_block_tokens, skipped_rows=skipped_rows,
                   meta=dict(meta or {}))

    # --- size and selection -------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.arrival_s.shape[0])

    @property
    def offline(self) -> bool:
        """True when the requests carry no arrival times (all present at t = 0: a batch)."""
        return self.arrivals == "none"

    def take(self, index: np.ndarray) -> Trace:
        """The requests at ``index`` (positions, kept in the order given)."""
        idx = np.asarray(index, dtype=np.int64)
        offs, ids = self.hash_offsets, self.hash_ids
        if offs is not None and ids is not None:
            offs, ids = _take_ragged(offs, ids, idx)
        return replace(self, arrival_s=self.arrival_s[idx], input_tokens=self.input_tokens[idx],
                       output_tokens=self.output_tokens[idx], hash_offsets=offs, hash_ids=ids)

    def head(self, n: int) -> Trace:
        """The first ``n`` requests by arrival."""
        if n < 0:
            raise UserError(f"requests must be >= 0, got {n}")
        return self.take(np.arange(min(n, len(self))))

    def window(self, start_s: float, end_s: float | None = None, *, rebase: bool = True) -> Trace:
        """Requests arriving in [start_s, end_s); with ``rebase`` their times restart at 0."""
        end = math.inf if end_s is None else end_s
        if end <= start_s:
            raise UserError(f"time window end ({end_s}) must be after its start ({start_s})")
        lo, hi = np.searchsorted(self.arrival_s, [start_s, end], side="left")
        cut = self.take(np.arange(lo, hi))
        if rebase and len(cut):
            return replace(cut, arrival_s=cut.arrival_s - cut.arrival_s[0])
        return cut

    def scale_rate(self, factor: float) -> Trace:
        """The same requests arriving ``factor`` times as fast (inter-arrival gaps divided by ``factor``)."""
        if not factor > 0 or not math.isfinite(factor):
            raise UserError(f"rate scale must be a positive number, got {factor}")
        if factor == 1.0:
            return self
        return replace(self, arrival_s=self.arrival_s / factor)

    def sample(self, n: int, seed: int, *, replace_draws: bool = False) -> Trace:
        """``n`` requests drawn at random (seeded), kept in arrival order; with ``replace_draws`` rows may repeat."""
        if n < 0:
            raise UserError(f"sample size must be >= 0, got {n}")
        if not replace_draws and n > len(self):
            raise UserError(f"cannot sample {n} requests without replacement from a trace of {len(self)}")
        if len(self) == 0 and n:
            raise UserError("cannot sample from an empty trace")
        rng = np.random.default_rng(seed)
        idx = rng.choice(len(self), size=n, replace=replace_draws)
        return self.take(np.sort(idx))

    def with_arrivals(self, arrival_s: np.ndarray, label: str) -> Trace:
        """The same requests with new arrival times (non-decreasing, length = requests); ``label`` names them."""
        arr = np.array(arrival_s, dtype=np.float64)
        if arr.shape != self.arrival_s.shape:
            raise ValueError("one arrival time per request is needed")
        return replace(self, arrival_s=arr, arrivals=label)

    # --- derived ------------------------------------------------------------------------------
    def shared_prefix_tokens(self) -> np.ndarray | None:
        """Per request, prompt tokens in prefix blocks already seen in an earlier request (None without hash ids).

        A block's tokens are ``hash_block_tokens`` except the request's last block, which holds the rest
        of its prompt.
        """
        if self.hash_offsets is None or self.hash_ids is None:
            return None
        offs, ids = self.hash_offsets, self.hash_ids
        n = len(self)
        if ids.size == 0:
            return np.zeros(n, dtype=np.int64)
        row = np.repeat(np.arange(n), np.diff(offs))
        _, first_pos, inverse = np.unique(ids, return_index=True, return_inverse=True)
        seen_before = row[first_pos][inverse] < row
        blocks = np.diff(offs)
        pos_in_row = np.arange(ids.size) - offs[row]
        last = pos_in_row == blocks[row] - 1
        size = np.where(last, self.input_tokens[row] - self.hash_block_tokens * (blocks[row] - 1),
                        self.hash_block_tokens)
        size = np.clip(size, 0, self.hash_block_tokens)
        return np.bincount(row, weights=np.where(seen_before, size, 0), minlength=n).astype(np.int64)

    def stats(self) -> dict[str, Any]:
        """Summary figures: counts, arrival rate and burstiness, and token-length percentiles (JSON-ready)."""
        return trace_stats(self)


def _take_ragged(offs: np.ndarray, ids: np.ndarray, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``index`` of a CSR ragged array (offsets, values)."""
    lens = np.diff(offs)[index]
    new_offs = np.zeros(index.size + 1, dtype=np.int64)
    np.cumsum(lens, out=new_offs[1:])
    if new_offs[-1] == 0:
        return new_offs, ids[:0].copy()
    starts = np.repeat(offs[:-1][index] - new_offs[:-1], lens)
    return new_offs, ids[np.arange(new_offs[-1]) + starts]


def _pct(x: np.ndarray, q: float) -> float | None:
    return float(np.percentile(x, q)) if x.size else None


def _mean(x: np.ndarray) -> float | None:
    return float(x.mean()) if x.size else None


def trace_stats(trace: Trace) -> dict[str, Any]:
    """Statistics of a trace (see :meth:`Trace.stats`). Percentiles use linear interpolation.

    ``arrival_rate_per_s`` = requests / (last - first arrival); ``interarrival_cv`` = std/mean of the
    gaps; ``max_requests_in_1s`` = most arrivals in one 1-second bin. For an offline trace (no arrival
    times) these are null.
    """
    n = len(trace)
    inp, out = trace.input_tokens, trace.output_tokens
    ctx = inp + out
    s: dict[str, Any] = {"name": trace.name, "source": trace.source, "arrivals": trace.arrivals,
                         "requests": n, "skipped_rows": trace.skipped_rows, "offline": trace.offline}
    arr = trace.arrival_s
    duration = float(arr[-1] - arr[0]) if n else 0.0
    timed = not trace.offline and n > 1 and duration > 0
    s["duration_s"] = duration if not trace.offline else None
    s["arrival_rate_per_s"] = n / duration if timed else None
    gaps = np.diff(arr)
    s["interarrival_cv"] = float(gaps.std() / gaps.mean()) if timed and gaps.mean() > 0 else None
    s["max_requests_in_1s"] = int(np.bincount(np.floor(arr - arr[0]).astype(np.int64)).max()) if timed else None
    for label, x in (("input_tokens", inp), ("output_tokens", out), ("context_tokens", ctx)):
        s[f"{label}_mean"] = _mean(x)
        s[f"{label}_p50"] = _pct(x, 50)
        s[f"{label}_p90"] = _pct(x, 90)
        s[f"{label}_p99"] = _pct(x, 99)
        s[f"{label}_min"] = int(x.min()) if n else None
        s[f"{label}_max"] = int(x.max()) if n else None
    s["input_tokens_total"] = int(inp.sum())
    s["output_tokens_total"] = int(out.sum())
    shared = trace.shared_prefix_tokens()
    s["shared_prefix_fraction"] = (float(shared.sum() / max(1, inp.sum()))) if shared is not None else None
    return s
