"""Exact merging of attention partials: any number, in any tree, with empty parts allowed.

Two partials ``(o_a, lse_a)`` and ``(o_b, lse_b)`` over disjoint token sets merge into the
attention over their union::

    lse = log(exp(lse_a) + exp(lse_b))          computed as m + log(exp(lse_a - m) + exp(lse_b - m)),
    o   = exp(lse_a - lse) * o_a + exp(lse_b - lse) * o_b      with m = max(lse_a, lse_b).

The operation is associative and commutative (up to float rounding), so partials can be reduced in
any order or tree — PU tiles, then bank groups, then devices. An empty part has ``lse = -inf`` and
weight 0; if *every* part is empty the merged partial is ``out = 0``, ``lse = -inf`` (never NaN):
the shift ``m`` is replaced by 0 when it is -inf and a zero total weight divides by 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pamkv.attention._backend import Array, Ops, backend
from pamkv.attention.core import Partial


def _merge_stacked(ops: Ops, out: Array, lse: Array) -> Partial:
    """Merge along axis 0: ``out [P, ..., e]``, ``lse [P, ...]`` -> one partial ``[..., e]``, ``[...]``."""
    m = ops.amax(lse, 0)
    m = ops.where(ops.isfinite(m), m, 0.0)
    w = ops.exp(lse - m)
    total = ops.sum(w, 0)
    merged = ops.sum(w[..., None] * out, 0) / ops.where(total > 0, total, 1.0)[..., None]
    return Partial(merged, m + ops.log(total))


def _check_parts(parts: Sequence[Partial]) -> Ops:
    if len(parts) == 0:
        raise ValueError("cannot merge an empty list of partials (give at least one, possibly empty, part)")
    shapes = {(tuple(p.out.shape), tuple(p.lse.shape)) for p in parts}
    if len(shapes) != 1:
        raise ValueError(f"partials to merge must share shapes; got {sorted(shapes)}")
    out_shape, lse_shape = shapes.pop()
    if out_shape[:-1] != lse_shape:
        raise ValueError(f"partial out{out_shape} does not match lse{lse_shape}")
    return backend(*(p.out for p in parts), *(p.lse for p in parts))


def merge_to_partial(parts: Sequence[Partial]) -> Partial:
    """Merge partials of disjoint token sets into one partial of their union (vectorised over parts).

    All parts share shapes (``out [..., H, e]``, ``lse [..., H]``); the result has the same shapes,
    so it can be merged again (any merge tree gives the same answer).
    """
    ops = _check_parts(parts)
    dtype = ops.compute_dtype(*(p.out for p in parts), *(p.lse for p in parts))
    out = ops.stack([ops.cast(p.out, dtype) for p in parts])
    lse = ops.stack([ops.cast(p.lse, dtype) for p in parts])
    return _merge_stacked(ops, out, lse)


def merge_two(a: Partial, b: Partial) -> Partial:
    """Merge two partials of disjoint token sets (the binary step of any reduction tree)."""
    return merge_to_partial([a, b])


def merge_partials(parts: Sequence[Partial]) -> Array:
    """The attention output ``[..., H, e]`` over the union of the parts' tokens (DESIGN.md contract)."""
    return merge_to_partial(parts).out


def merge_segments(stacked: Partial, parent: Array, n_parents: int) -> Partial:
    """Merge many partials into groups at once: row ``i`` of ``stacked`` goes into group ``parent[i]``.

    ``stacked.out [C, ..., e]``, ``stacked.lse [C, ...]``, ``parent [C]`` ints in ``[0, n_parents)``.
    Returns ``Partial(out [n_parents, ..., e], lse [n_parents, ...])``; a group with no member (or
    only empty members) gets ``out = 0``, ``lse = -inf``. One vectorised pass per tree level.
    """
    ops = backend(stacked.out, stacked.lse)
    idx = ops.as_index(parent, stacked.lse)
    if tuple(idx.shape) != (stacked.lse.shape[0],):
        raise ValueError(f"parent must have one entry per partial ({stacked.lse.shape[0]}), got {tuple(idx.shape)}")
    m = ops.segment_max(idx, stacked.lse, n_parents)
    m = ops.where(ops.isfinite(m), m, 0.0)
    w = ops.exp(stacked.lse - m[idx])
    total = ops.segment_sum(idx, w, n_parents)
    acc = ops.segment_sum(idx, w[..., None] * stacked.out, n_parents)
    out = acc / ops.where(total > 0, total, 1.0)[..., None]
    return Partial(out, m + ops.log(total))


def empty_partial(like: Partial) -> Partial:
    """A partial of no tokens shaped like ``like``: ``out = 0``, ``lse = -inf``."""
    ops = backend(like.out)
    return Partial(ops.zeros(like.out.shape, like.out), ops.full(like.lse.shape, -math.inf, like.lse))
