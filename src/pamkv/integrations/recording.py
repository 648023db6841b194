"""Attention recordings of real runs, and the context-locality figures measured from one.

A recording is the recorded-trace file of :mod:`pamkv.workloads.locality.replay` (a compressed
``.npz``; one record per request, step, layer and head stream: which blocks were read and their
attention mass), so the simulator's locality model can replay it (``RecordedLocality``) or be fitted
to the figures measured here. This module adds a few optional keys the replay ignores:

- ``head_kind``: ``"kv"`` — one record per KV head (mass = mean over its group's query heads, what
  the KV head's reads serve); ``"query"`` — one per query head (``kv_head`` then holds the query-head
  index);
- ``heads_per_kv``: query heads per KV head of the recorded model;
- ``min_mass``: entries below this mass were left out (0 = complete; the reader spreads the rest evenly);
- ``source``: free text, the model and how it was run.

``step`` is the position of the query token in its sequence (so prompt positions recorded
teacher-forced and generated tokens share one clock), and ``n_tokens = step + 1``. With
``block_tokens = 1`` the ids are token positions; with larger blocks, a block's mass is the total
attention mass of its tokens (its share of the full softmax), listed if any of its tokens was read.

:func:`measure_recording` computes the figures of ``../shared/reference/locality.md`` (top-k mass,
tokens for 90%/99% of the mass, sink and last-64 mass, Jaccard of top-10% sets at lags 1/8/32, the
previous step's top-10% retained, and the mass captured at a 10% budget by placement policies) per
head stream and averages them over streams, exactly as
:class:`pamkv.workloads.locality.FigureAccumulator` defines them.
"""

from __future__ import annotations

import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from pamkv.errors import UserError
from pamkv.workloads.locality.metrics import FIGURE_NAMES, FigureAccumulator, combine
from pamkv.workloads.locality.replay import (
    FORMAT,
    VERSION,
    LocalityRecorder,
    LocalityTrace,
    load_locality_trace,
)

HeadKind = Literal["kv", "query"]


@dataclass
class AttentionRecorder:
    """Collects what each decode step read and the attention mass of it, per layer and head stream.

    ``block_tokens``: granularity of the ids (1 = tokens, as ``reference/locality.md`` measures);
    ``heads``: one stream per KV head or per query head; ``min_mass``: leave out entries with less
    mass (0 keeps everything; the file grows with steps x layers x heads x context);
    ``layers``: ``(first, stop)`` layer range to record (``None`` = all).
    """

    block_tokens: int = 1
    heads: HeadKind = "kv"
    min_mass: float = 0.0
    layers: tuple[int, int] | None = None
    heads_per_kv: int = 1
    source: str = ""
    _rec: LocalityRecorder = field(init=False)
    _count: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        if self.block_tokens < 1:
            raise ValueError(f"block_tokens must be >= 1, got {self.block_tokens}")
        if self.heads not in ("kv", "query"):
            raise ValueError(f"heads must be 'kv' or 'query', got {self.heads!r}")
        if not (self.min_mass >= 0 and np.isfinite(self.min_mass)):
            raise ValueError(f"min_mass must be a finite number >= 0, got {self.min_mass}")
        self._rec = LocalityRecorder(block_tokens=self.block_tokens)

    def __len__(self) -> int:
        return self._count

    def wants(self, layer: int) -> bool:
        """Whether ``layer`` is recorded."""
        return self.layers is None or self.layers[0] <= layer < self.layers[1]

    def add(self, *, request: int, position: int, layer: int, read: np.ndarray, probs: np.ndarray) -> None:
        """Record one query token at ``position`` of one layer.

        ``probs [S, T]``: the true attention probability of every one of the ``T = position + 1``
        context tokens for each of the ``S`` head streams (rows sum to 1, float); ``read [S, T]``
        bool: which tokens each stream read this step (all of them in dense attention).
        """
        if not self.wants(layer):
            return
        p = np.asarray(probs, dtype=np.float64)
        r = np.asarray(read, dtype=bool)
        n_tokens = int(p.shape[1])
        if r.shape != p.shape:
            raise ValueError(f"read {r.shape} and probs {p.shape} must have the same shape")
        if self.block_tokens > 1:
            starts = np.arange(0, n_tokens, self.block_tokens)
            p = np.add.reduceat(p, starts, axis=1)
            r = np.logical_or.reduceat(r, starts, axis=1)
        keep = r & (p >= self.min_mass) if self.min_mass > 0 else r
        for s in range(p.shape[0]):
            ids = np.flatnonzero(keep[s])
            self._rec.add(step=position, layer=layer, kv_head=s, n_tokens=n_tokens, block_ids=ids,
                          mass=p[s, ids], request=request)
        self._count += p.shape[0]

    def trace(self) -> LocalityTrace:
        """The records so far."""
        return self._rec.trace()

    def save(self, path: str | Path) -> None:
        """Write the recording (recorded-trace format plus this module's keys) to ``path``."""
        if len(self) == 0:
            raise UserError(f"cannot write {path}: nothing was recorded (no decode step ran on a recorded layer)")
        save_recording(self.trace(), path, head_kind=self.heads, heads_per_kv=self.heads_per_kv,
                       min_mass=self.min_mass, source=self.source)


def save_recording(trace: LocalityTrace, path: str | Path, *, head_kind: HeadKind = "kv", heads_per_kv: int = 1,
                   min_mass: float = 0.0, source: str = "") -> None:
    """Write ``trace`` as a compressed ``.npz`` readable by ``load_locality_trace``, plus the run keys."""
    arrays = {
        "format": np.array(FORMAT), "version": np.array(VERSION), "block_tokens": np.array(trace.block_tokens),
        "request": trace.request, "step": trace.step, "layer": trace.layer, "kv_head": trace.kv_head,
        "n_tokens": trace.n_tokens, "offsets": trace.offsets, "block_ids": trace.block_ids, "mass": trace.mass,
        "head_kind": np.array(head_kind), "heads_per_kv": np.array(heads_per_kv),
        "min_mass": np.array(min_mass), "source": np.array(source),
    }
    try:
        target = Path(path)
        if not target.parent.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("wb") as handle:
            np.savez_compressed(handle, **arrays)  # type: ignore[arg-type]
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from exc


def recording_facts(path: str | Path) -> dict[str, object]:
    """The optional run keys of a recording (defaults when a plain recorded trace lacks them)."""
    facts: dict[str, object] = {"head_kind": "kv", "heads_per_kv": 1, "min_mass": 0.0, "source": ""}
    try:
        with np.load(Path(path), allow_pickle=False) as data:
            for key, cast in (("head_kind", str), ("heads_per_kv", int), ("min_mass", float), ("source", str)):
                if key in data.files:
                    facts[key] = cast(data[key])
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise UserError(f"{path}: not a readable .npz file: {exc}") from exc
    return facts


def parse_layer_range(text: str | None) -> tuple[int | None, int | None]:
    """``'2:30'``, ``'2:'``, ``':10'`` or ``'5'`` -> ``(first, stop)``; None or '' -> all layers."""
    if text is None or text.strip() in ("", ":"):
        return None, None
    t = text.strip()
    try:
        if ":" not in t:
            i = int(t)
            return i, i + 1
        lo, hi = t.split(":", 1)
        first = int(lo) if lo.strip() else None
        stop = int(hi) if hi.strip() else None
    except ValueError:
        raise UserError(f"--layers: expected FIRST:STOP (e.g. 2:30 or 2:), got '{text}'") from None
    if (first is not None and first < 0) or (stop is not None and first is not None and stop <= first):
        raise UserError(f"--layers: '{text}' selects no layer")
    return first, stop


def measure_trace(trace: LocalityTrace, layers: tuple[int | None, int | None] = (None, None)) -> dict[str, float]:
    """The reference locality figures of a recording: mean over its head streams of the per-step means.

    Each (request, layer, head) series is one head stream, its records taken in step order. ``layers``
    keeps series of layers ``first <= layer < stop``. Adds ``series``, ``records`` and ``layers_used``.
    """
    first, stop = layers
    accs: list[FigureAccumulator] = []
    records = 0
    used: set[int] = set()
    for series in trace.series():
        layer = int(trace.layer[series[0]])
        if (first is not None and layer < first) or (stop is not None and layer >= stop):
            continue
        acc = FigureAccumulator()
        for rec in series.tolist():
            acc.add(trace.dense(rec))
        accs.append(acc)
        records += series.size
        used.add(layer)
    if not accs:
        have = sorted(set(trace.layer.tolist()))
        raise UserError(f"no recorded layer lies in the range asked for (the recording has layers "
                        f"{have[0]}..{have[-1]})")
    out = combine(accs)
    out["series"] = float(len(accs))
    out["records"] = float(records)
    out["layers_used"] = float(len(used))
    return out


def fit_targets(figures: dict[str, float]) -> dict[str, float]:
    """The locality figures of ``figures`` that ``pamkv.workloads.locality.fit_locality`` can fit to.

    Drops run facts (steps, streams, context) and figures a recording did not have (NaN).
    """
    return {k: float(figures[k]) for k in FIGURE_NAMES if k in figures and math.isfinite(figures[k])}


def measure_recording(path: str | Path, layers: tuple[int | None, int | None] = (None, None)) -> dict[str, object]:
    """Load a recording and measure it (:func:`measure_trace`), with the recording's facts beside."""
    trace = load_locality_trace(path)
    facts = recording_facts(path)
    figures = measure_trace(trace, layers)
    recorded = sorted(set(trace.layer.tolist()))
    return {
        "path": str(path), "block_tokens": trace.block_tokens, **facts,
        "layers": [layers[0] if layers[0] is not None else recorded[0],
                   layers[1] if layers[1] is not None else recorded[-1] + 1],
        "figures": figures,
    }
