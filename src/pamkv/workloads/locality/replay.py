"""Recorded attention traces: the file format, a recorder, and a replay that stands in for the generator.

A recording (e.g. from the Hugging Face integration) is a compressed ``.npz`` with one *record* per
(request, decode step, layer, kv-head):

| key | dtype, shape | meaning |
|---|---|---|
| ``format`` | str | ``"pamkv-locality"`` |
| ``version`` | int | 1 |
| ``block_tokens`` | int | tokens per block id (1 = token ids) |
| ``request``, ``step``, ``layer``, ``kv_head`` | int32 [R] | which record |
| ``n_tokens`` | int64 [R] | context length (tokens) at that step |
| ``offsets`` | int64 [R + 1] | record ``r`` owns entries ``offsets[r]:offsets[r + 1]`` |
| ``block_ids`` | int32 [E] | blocks read at that step (``0 <= id < ceil(n_tokens / block_tokens)``) |
| ``mass`` | float32 [E] | their attention mass (a share of the full softmax; a record sums to <= 1) |

Blocks a record does not list share its remaining mass (1 - sum) evenly: a recording of only the
selected blocks keeps the unselected ones faintly warm rather than dead.

Replay (:class:`RecordedLocality`) implements :class:`LocalitySource`: each head stream follows one
recorded (request, layer, kv-head) series chosen with the caller's generator, step by step, cycling
back to its first step when the recording runs out. When the simulated context length or unit size
differs from the recording's, mass is moved by relative position: the recorded cumulative mass over
[0, 1] of the context is re-read at the new unit boundaries, which keeps a sink at the start and the
recent window at the end.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pamkv.errors import UserError
from pamkv.workloads.locality.model import unit_token_counts, units_for

FORMAT = "pamkv-locality"
VERSION = 1


@dataclass(frozen=True, eq=False)
class LocalityTrace:
    """A recorded attention trace held in memory (the arrays of the file format)."""

    block_tokens: int
    request: np.ndarray
    step: np.ndarray
    layer: np.ndarray
    kv_head: np.ndarray
    n_tokens: np.ndarray
    offsets: np.ndarray
    block_ids: np.ndarray
    mass: np.ndarray

    def __len__(self) -> int:
        return int(self.step.size)

    def series(self) -> list[np.ndarray]:
        """Record indices of each (request, layer, kv_head) series, ordered by step."""
        keys = np.stack([self.request, self.layer, self.kv_head], axis=1)
        _, group = np.unique(keys, axis=0, return_inverse=True)
        order = np.lexsort((self.step, group.ravel()))
        g = group.ravel()[order]
        cuts = np.flatnonzero(np.diff(g)) + 1
        return list(np.split(order, cuts))

    def dense(self, record: int) -> np.ndarray:
        """Mass over all blocks of one record (float64, sums to 1; unlisted blocks share the rest)."""
        n_blocks = units_for(int(self.n_tokens[record]), self.block_tokens)
        lo, hi = int(self.offsets[record]), int(self.offsets[record + 1])
        out = np.zeros(n_blocks)
        np.add.at(out, self.block_ids[lo:hi], self.mass[lo:hi].astype(np.float64))
        rest = 1.0 - out.sum()
        unlisted = n_blocks - np.unique(self.block_ids[lo:hi]).size
        if rest > 1e-9 and unlisted > 0:
            listed = np.zeros(n_blocks, dtype=bool)
            listed[self.block_ids[lo:hi]] = True
            out[~listed] += rest / unlisted
        return out / out.sum()


def _concat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)


@dataclass
class LocalityRecorder:
    """Collects records (``add``) and writes them in the recorded-trace format (``save``)."""

    block_tokens: int = 1
    _rows: list[tuple[int, int, int, int, int]] = field(default_factory=list)
    _ids: list[np.ndarray] = field(default_factory=list)
    _mass: list[np.ndarray] = field(default_factory=list)

    def add(
        self, *, step: int, layer: int, kv_head: int, n_tokens: int, block_ids: np.ndarray, mass: np.ndarray,
        request: int = 0,
    ) -> None:
        """Record the blocks one (request, step, layer, kv-head) read and their attention mass."""
        ids = np.asarray(block_ids, dtype=np.int32).ravel()
        m = np.asarray(mass, dtype=np.float32).ravel()
        if ids.shape != m.shape:
            raise ValueError("block_ids and mass must have the same length")
        if ids.size and (ids.min() < 0 or ids.max() >= units_for(n_tokens, self.block_tokens)):
            raise ValueError("block id outside the context")
        self._rows.append((request, step, layer, kv_head, n_tokens))
        self._ids.append(ids)
        self._mass.append(m)

    def trace(self) -> LocalityTrace:
        """The records so far as a :class:`LocalityTrace`."""
        rows = np.array(self._rows, dtype=np.int64).reshape(-1, 5)
        lens = np.array([a.size for a in self._ids], dtype=np.int64)
        offs = np.zeros(lens.size + 1, dtype=np.int64)
        np.cumsum(lens, out=offs[1:])
        return LocalityTrace(
            block_tokens=self.block_tokens, request=rows[:, 0].astype(np.int32), step=rows[:, 1].astype(np.int32),
            layer=rows[:, 2].astype(np.int32), kv_head=rows[:, 3].astype(np.int32), n_tokens=rows[:, 4],
            offsets=offs, block_ids=_concat(self._ids, np.int32), mass=_concat(self._mass, np.float32),
        )

    def save(self, path: str | Path) -> None:
        """Write the records to ``path`` (compressed ``.npz``)."""
        save_locality_trace(self.trace(), path)


def save_locality_trace(trace: LocalityTrace, path: str | Path) -> None:
    """Write a :class:`LocalityTrace` as a compressed ``.npz`` recorded-trace file."""
    try:
        with Path(path).open("wb") as handle:
            np.savez_compressed(
                handle, format=np.array(FORMAT), version=np.array(VERSION), block_tokens=np.array(trace.block_tokens),
                request=trace.request, step=trace.step, layer=trace.layer, kv_head=trace.kv_head,
                n_tokens=trace.n_tokens, offsets=trace.offsets, block_ids=trace.block_ids, mass=trace.mass,
            )
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from exc


def load_locality_trace(path: str | Path) -> LocalityTrace:
    """Read and check a recorded-trace file; any defect is a one-line UserError naming the key."""
    p = Path(path)
    try:
        data = np.load(p, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise UserError(f"{p}: not a readable .npz file: {exc}") from exc
    with data:
        if "format" not in data.files or str(data["format"]) != FORMAT:
            raise UserError(f"{p}: not a pamkv locality trace (key 'format' must be '{FORMAT}')")
        if int(data["version"]) != VERSION:
            raise UserError(f"{p}: key 'version': unsupported version {int(data['version'])} (need {VERSION})")
        need = ("block_tokens", "request", "step", "layer", "kv_head", "n_tokens", "offsets", "block_ids", "mass")
        for key in need:
            if key not in data.files:
                raise UserError(f"{p}: missing key '{key}'")
        t = LocalityTrace(
            block_tokens=int(data["block_tokens"]), request=data["request"].astype(np.int32),
            step=data["step"].astype(np.int32), layer=data["layer"].astype(np.int32),
            kv_head=data["kv_head"].astype(np.int32), n_tokens=data["n_tokens"].astype(np.int64),
            offsets=data["offsets"].astype(np.int64), block_ids=data["block_ids"].astype(np.int32),
            mass=data["mass"].astype(np.float32),
        )
    r = len(t)
    if t.block_tokens < 1:
        raise UserError(f"{p}: key 'block_tokens' must be >= 1")
    for key in ("request", "layer", "kv_head", "n_tokens"):
        if getattr(t, key).shape != (r,):
            raise UserError(f"{p}: key '{key}' must have one entry per record ({r})")
    if r == 0:
        raise UserError(f"{p}: the trace has no records")
    if t.offsets.shape != (r + 1,) or t.offsets[0] != 0 or t.offsets[-1] != t.block_ids.size or np.any(
        np.diff(t.offsets) < 0
    ):
        raise UserError(f"{p}: key 'offsets' does not index 'block_ids'")
    if t.mass.shape != t.block_ids.shape:
        raise UserError(f"{p}: keys 'mass' and 'block_ids' differ in length")
    if np.any(t.n_tokens < 1):
        raise UserError(f"{p}: key 'n_tokens', record {int(np.argmax(t.n_tokens < 1))}: must be >= 1")
    row = np.repeat(np.arange(r), np.diff(t.offsets))
    limit = -(-t.n_tokens[row] // t.block_tokens)
    bad = (t.block_ids < 0) | (t.block_ids >= limit) | ~np.isfinite(t.mass) | (t.mass < 0)
    if bad.any():
        rec = int(row[np.argmax(bad)])
        raise UserError(f"{p}: record {rec}: a block id outside its context or a negative/non-finite mass")
    sums = np.bincount(row, weights=t.mass.astype(np.float64), minlength=r)
    if np.any(sums > 1.0 + 1e-3):
        raise UserError(f"{p}: record {int(np.argmax(sums > 1.0 + 1e-3))}: mass sums to more than 1")
    return t


def remap(mass: np.ndarray, from_tokens: int, from_block: int, to_tokens: int, to_block: int) -> np.ndarray:
    """Move a mass array over ``from_tokens`` (units of ``from_block``) onto ``to_tokens`` (units of
    ``to_block``) by relative position: re-read its cumulative mass at the new unit boundaries."""
    if from_tokens == to_tokens and from_block == to_block:
        return mass
    src_edges = np.concatenate([[0], np.cumsum(unit_token_counts(from_tokens, from_block))]) / from_tokens
    dst_edges = np.concatenate([[0], np.cumsum(unit_token_counts(to_tokens, to_block))]) / to_tokens
    cum = np.concatenate([[0.0], np.cumsum(mass)])
    out = np.diff(np.interp(dst_edges, src_edges, cum))
    out = np.maximum(out, 0.0)
    return out / out.sum()


@dataclass
class ReplayStream:
    """Head streams replaying recorded series (see module docs)."""

    trace: LocalityTrace
    chosen: list[np.ndarray]
    n_tokens: int
    block_tokens: int
    position: int = 0

    @property
    def heads(self) -> int:
        """Head streams replayed."""
        return len(self.chosen)

    def step(self, new_tokens: int = 1) -> np.ndarray:
        """Append ``new_tokens`` tokens, return the next recorded step of every head, remapped (heads, units)."""
        if new_tokens < 0:
            raise ValueError(f"new_tokens must be >= 0, got {new_tokens}")
        self.n_tokens += new_tokens
        units = units_for(self.n_tokens, self.block_tokens)
        out = np.empty((self.heads, units))
        for h, series in enumerate(self.chosen):
            rec = int(series[self.position % series.size])
            dense = self.trace.dense(rec)
            out[h] = remap(dense, int(self.trace.n_tokens[rec]), self.trace.block_tokens, self.n_tokens,
                           self.block_tokens)
        self.position += 1
        return out


@dataclass(frozen=True)
class RecordedLocality:
    """A :class:`LocalitySource` replaying a recorded attention trace instead of the generator."""

    trace: LocalityTrace

    @classmethod
    def from_file(cls, path: str | Path) -> RecordedLocality:
        """Load a recorded-trace file (see module docs)."""
        return cls(load_locality_trace(path))

    def start(
        self, n_tokens: int, rng: np.random.Generator, *, heads: int = 1, block_tokens: int = 1
    ) -> ReplayStream:
        """Begin replay for an ``n_tokens`` context: each head follows a recorded series drawn by ``rng``."""
        if n_tokens < 1 or heads < 1 or block_tokens < 1:
            raise ValueError("n_tokens, heads and block_tokens must be >= 1")
        series = self.trace.series()
        pick = rng.choice(len(series), size=heads, replace=heads > len(series))
        return ReplayStream(self.trace, [series[int(i)] for i in pick], n_tokens, block_tokens)
