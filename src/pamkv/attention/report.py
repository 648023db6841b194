"""Attention over a sparse selection, and how far it is from dense attention.

:func:`sparse_attention` attends each KV head over its selected tokens only (what the devices
compute on a sparse step). :func:`sparse_report` compares it with dense attention over all tokens:
the output error (max abs, relative L2) and the attention mass the selection captures (the share of
the true softmax probability that falls on the selected tokens, 1.0 for dense).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from pamkv.attention._backend import Array, backend, to_compute
from pamkv.attention.core import Partial, dense_attention, partial_attention
from pamkv.attention.selection import Selection, attention_probs


def gather_selected(k: Array, selection: Selection) -> Array:
    """``k [T, K, d]`` -> ``[n, K, d]``: row ``j`` of KV head ``c`` is token ``indices[c, j]``."""
    ops = backend(k, selection.indices)
    if int(k.shape[0]) != selection.n_tokens or int(k.shape[1]) != selection.kv_heads:
        raise ValueError(f"selection is for {selection.n_tokens} tokens x {selection.kv_heads} KV heads, "
                         f"got k{tuple(k.shape)}")
    heads = ops.arange(selection.kv_heads, selection.indices)[None, :]
    return k[selection.indices.mT, heads]


def sparse_attention(q: Array, k: Array, v: Array, selection: Selection, scale: float | None = None) -> Partial:
    """Partial attention of ``q [H, d]`` over the selected tokens of each KV head only.

    Equivalent to dense attention with every unselected token masked out (per KV head).
    """
    return partial_attention(q, gather_selected(k, selection), gather_selected(v, selection), scale)


def captured_mass(probs: Array, selection: Selection) -> np.ndarray:
    """Per query head, the true attention probability on the selected tokens: ``[H]`` numpy.

    ``probs [H, T]`` from :func:`~pamkv.attention.selection.attention_probs`.
    """
    ops = backend(probs, selection.indices)
    heads, n_tokens = probs.shape
    kv_heads = selection.kv_heads
    grouped = probs.reshape(kv_heads, heads // kv_heads, n_tokens)
    picked = ops.take_along(grouped, selection.indices[:, None, :], 2)
    return ops.to_numpy(ops.sum(picked, -1)).reshape(heads).astype(np.float64)


@dataclass(frozen=True)
class SparseReport:
    """Sparse versus dense attention for one decode step (errors over all heads and channels)."""

    method: str
    n_tokens: int
    n_selected: int
    fraction_read: float
    max_abs_error: float
    rel_l2_error: float
    mass_captured: float
    mass_captured_min: float

    def to_dict(self) -> dict[str, object]:
        """Plain dict for JSON output."""
        return asdict(self)


def sparse_report(q: Array, k: Array, v: Array, selection: Selection, scale: float | None = None) -> SparseReport:
    """Output error of sparse attention over ``selection`` against dense attention, and mass captured.

    ``max_abs_error = max |o_sparse - o_dense|``; ``rel_l2_error = ||o_sparse - o_dense|| /
    ||o_dense||`` (Frobenius over heads and channels; 0 when both are 0); ``mass_captured``: mean
    over query heads of the true probability on the selected tokens, ``mass_captured_min`` the
    worst head.
    """
    ops = backend(q, k, v)
    q, k, v = to_compute(ops, q, k, v)
    sparse = ops.to_numpy(sparse_attention(q, k, v, selection, scale).out).astype(np.float64)
    dense = ops.to_numpy(dense_attention(q, k, v, scale)).astype(np.float64)
    diff = sparse - dense
    norm = float(np.linalg.norm(dense))
    err = float(np.linalg.norm(diff))
    mass = captured_mass(attention_probs(q, k, scale), selection) if selection.n_tokens else np.ones(1)
    return SparseReport(
        method=selection.method,
        n_tokens=selection.n_tokens,
        n_selected=selection.n_selected,
        fraction_read=selection.n_selected / selection.n_tokens if selection.n_tokens else 1.0,
        max_abs_error=float(np.abs(diff).max()) if diff.size else 0.0,
        rel_l2_error=err / norm if norm > 0 else (0.0 if err == 0 else float("inf")),
        mass_captured=float(mass.mean()),
        mass_captured_min=float(mass.min()),
    )
