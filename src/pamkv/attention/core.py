"""Partial softmax attention over the tokens one device (or tile) holds, and the dense reference.

A *partial* is ``(out, lse)`` per query head: ``out`` is the attention output over this part's tokens,
normalised locally (a convex combination of this part's values), and ``lse`` is the log-sum-exp of
this part's scaled logits. Partials of disjoint parts merge exactly into the attention over their
union (:mod:`pamkv.attention.merge`). A part with no (visible) tokens has ``lse = -inf`` and
``out = 0``.

Shapes (``H`` query heads, ``K`` KV heads, ``G = H // K`` query heads per KV head, ``d`` key width,
``e`` value width, ``T`` tokens, ``Q`` queries):

- decode: ``q [H, d]``, ``k [T, K, d]``, ``v [T, K, e]`` -> ``out [H, e]``, ``lse [H]``;
- multi-query (chunked prefill): ``q [Q, H, d]`` -> ``out [Q, H, e]``, ``lse [Q, H]``.

GQA: query head ``h`` attends with KV head ``h // G``. Logits are ``scale * q . k`` with
``scale = 1/sqrt(d)`` unless given. Everything is computed in float32 at least (see ``_backend``).
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple, overload

import numpy as np

from pamkv.attention._backend import Array, Ops, backend, to_compute


class Partial(NamedTuple):
    """Attention over one part of the tokens: locally normalised output and its log-sum-exp.

    ``out``: ``[..., H, e]``; ``lse``: ``[..., H]`` (natural log, of the *scaled* logits). Empty
    part: ``out = 0``, ``lse = -inf``.
    """

    out: Array
    lse: Array


def default_scale(d: int, scale: float | None) -> float:
    """The logit scale: ``scale`` if given, else ``1/sqrt(d)``; must be positive and finite."""
    s = 1.0 / math.sqrt(d) if scale is None else float(scale)
    if not (s > 0 and math.isfinite(s)):
        raise ValueError(f"attention scale must be positive and finite, got {scale!r}")
    return s


def check_shapes(q: Array, k: Array, v: Array, q_ndim: int) -> tuple[int, int, int]:
    """Validate ``q [.., H, d]``, ``k [T, K, d]``, ``v [T, K, e]``; return ``(H, K, G)``."""
    if q.ndim != q_ndim or k.ndim != 3 or v.ndim != 3:
        want = "[heads, d]" if q_ndim == 2 else "[queries, heads, d]"
        raise ValueError(
            f"expected q {want}, k [tokens, kv_heads, d], v [tokens, kv_heads, e]; "
            f"got q{tuple(q.shape)}, k{tuple(k.shape)}, v{tuple(v.shape)}"
        )
    heads, d = q.shape[-2], q.shape[-1]
    tokens, kv_heads = k.shape[0], k.shape[1]
    if k.shape[2] != d:
        raise ValueError(f"key width {k.shape[2]} != query width {d}")
    if tuple(v.shape[:2]) != (tokens, kv_heads):
        raise ValueError(f"v{tuple(v.shape)} does not match k{tuple(k.shape)} in tokens and kv_heads")
    if kv_heads == 0 or heads % kv_heads:
        raise ValueError(f"query heads ({heads}) must be a positive multiple of kv_heads ({kv_heads})")
    return heads, kv_heads, heads // kv_heads


def attend(ops: Ops, qg: Array, kg: Array, vg: Array, mask: Array | None) -> tuple[Array, Array]:
    """The kernel every partial uses: masked, max-shifted softmax attention with its log-sum-exp.

    ``qg [..., K, M, d]`` (already scaled), ``kg [..., K, L, d]``, ``vg [..., K, L, e]``; ``mask``
    (True = visible) broadcastable to ``[..., K, M, L]`` or None. Returns ``out [..., K, M, e]`` and
    ``lse [..., K, M]``. Rows with no visible token give ``out = 0``, ``lse = -inf`` (no NaN): the
    shift uses 0 in place of a -inf row max, so ``exp`` sees -inf and yields 0.
    """
    if kg.shape[-2] == 0:
        lead = (*np.broadcast_shapes(tuple(qg.shape[:-2]), tuple(kg.shape[:-2])), qg.shape[-2])
        return ops.zeros((*lead, vg.shape[-1]), qg), ops.full(lead, -math.inf, qg)
    s = qg @ kg.mT
    if mask is not None:
        s = ops.where(mask, s, -math.inf)
    m = ops.amax(s, -1, keepdims=True)
    m = ops.where(ops.isfinite(m), m, 0.0)
    p = ops.exp(s - m)
    denom = ops.sum(p, -1)
    out = (p @ vg) / ops.where(denom > 0, denom, 1.0)[..., None]
    return out, m[..., 0] + ops.log(denom)


def kv_visibility(ops: Ops, kv_mask: Array | None, like: Array, tokens: int, kv_heads: int) -> Array | None:
    """``kv_mask [T, K]`` (True = KV head ``c`` attends token ``t``) -> ``[K, 1, T]`` for the kernel."""
    if kv_mask is None:
        return None
    km = ops.as_bool(kv_mask, like)
    if tuple(km.shape) != (tokens, kv_heads):
        raise ValueError(f"kv_mask must have shape ({tokens}, {kv_heads}), got {tuple(km.shape)}")
    return ops.permute(km, (1, 0))[:, None, :]


def partial_attention(
    q: Array, k: Array, v: Array, scale: float | None = None, *, kv_mask: Array | None = None
) -> Partial:
    """Softmax attention of one decode query per head over the tokens ``k, v`` hold, as a partial.

    ``q [H, d]``, ``k [T, K, d]``, ``v [T, K, e]`` (numpy or torch; same kind out). Returns
    ``Partial(out [H, e], lse [H])`` in float32 (float64 if any input is float64); ``T = 0`` gives
    ``out = 0``, ``lse = -inf``. ``scale`` multiplies the logits (default ``1/sqrt(d)``).
    ``kv_mask [T, K]`` (optional, True = attend): per-KV-head token sets, e.g. one device's share
    of a per-head sparse selection (``Selection.mask().T[tokens_on_device]``).
    """
    ops = backend(q, k, v)
    q, k, v = to_compute(ops, q, k, v)
    heads, kv_heads, group = check_shapes(q, k, v, 2)
    s = default_scale(q.shape[-1], scale)
    qg = q.reshape(kv_heads, group, q.shape[-1]) * s
    kg = ops.permute(k, (1, 0, 2))
    vg = ops.permute(v, (1, 0, 2))
    out, lse = attend(ops, qg, kg, vg, kv_visibility(ops, kv_mask, q, k.shape[0], kv_heads))
    return Partial(out.reshape(heads, v.shape[-1]), lse.reshape(heads))


def visibility(
    ops: Ops,
    like: Array,
    n_queries: int,
    k_positions: Array,
    *,
    causal: bool,
    q_positions: Array | None,
    valid_lengths: Array | None,
) -> Array | None:
    """Which (query, token) pairs may attend, from positions: ``[..., Q, L]`` bool or None (all).

    ``k_positions [..., L]``: each token's position in the sequence. ``causal``: token visible to
    query i iff its position <= ``q_positions[i]``. ``valid_lengths [Q]``: token visible iff its
    position < ``valid_lengths[i]``. Both may be combined.
    """
    vis = None
    kp = k_positions[..., None, :]
    if causal:
        if q_positions is None:
            raise ValueError("causal attention needs q_positions (each query's position)")
        qp = ops.as_index(q_positions, like)
        if tuple(qp.shape) != (n_queries,):
            raise ValueError(f"q_positions must have shape ({n_queries},), got {tuple(qp.shape)}")
        vis = kp <= qp[:, None]
    if valid_lengths is not None:
        vl = ops.as_index(valid_lengths, like)
        if tuple(vl.shape) != (n_queries,):
            raise ValueError(f"valid_lengths must have shape ({n_queries},), got {tuple(vl.shape)}")
        within = kp < vl[:, None]
        vis = within if vis is None else vis & within
    return vis


def expand_query_mask(ops: Ops, vis: Array, group: int) -> Array:
    """``[..., Q, L]`` per-query visibility -> ``[..., 1, Q*G, L]`` for the grouped kernel layout."""
    *lead, nq, length = vis.shape
    full = ops.broadcast_to(vis[..., :, None, :], (*lead, nq, group, length))
    return full.reshape(*lead, 1, nq * group, length)


def group_queries(q: Array, kv_heads: int, group: int, ops: Ops) -> Array:
    """``q [Q, H, d]`` -> ``[K, Q*G, d]`` (row ``i*G + g`` of KV head ``c`` is query ``i``, head ``c*G+g``)."""
    nq, _, d = q.shape
    return ops.permute(q.reshape(nq, kv_heads, group, d), (1, 0, 2, 3)).reshape(kv_heads, nq * group, d)


def ungroup(ops: Ops, out: Array, lse: Array, nq: int, kv_heads: int, group: int) -> Partial:
    """Inverse of :func:`group_queries` on the kernel's ``out [..., K, Q*G, e]``, ``lse [..., K, Q*G]``."""
    *lead, _, _, e = out.shape
    nl = len(lead)
    o = out.reshape(*lead, kv_heads, nq, group, e)
    o = ops.permute(o, (*range(nl), nl + 1, nl, nl + 2, nl + 3)).reshape(*lead, nq, kv_heads * group, e)
    s = lse.reshape(*lead, kv_heads, nq, group)
    s = ops.permute(s, (*range(nl), nl + 1, nl, nl + 2)).reshape(*lead, nq, kv_heads * group)
    return Partial(o, s)


def partial_attention_multi(
    q: Array,
    k: Array,
    v: Array,
    scale: float | None = None,
    *,
    mask: Array | None = None,
    causal: bool = False,
    q_positions: Array | None = None,
    k_positions: Array | None = None,
    valid_lengths: Array | None = None,
    kv_mask: Array | None = None,
) -> Partial:
    """Partial attention of several queries per head (chunked prefill, speculative decode).

    ``q [Q, H, d]``, ``k [T, K, d]``, ``v [T, K, e]`` -> ``Partial(out [Q, H, e], lse [Q, H])``.
    Which tokens each query sees (all combined with AND):

    - ``mask [Q, T]`` bool, True = visible;
    - ``causal=True``: token visible iff its position <= the query's position;
    - ``valid_lengths [Q]``: token visible iff its position < ``valid_lengths[i]``.

    Positions: ``k_positions [T]`` are the tokens' positions in the sequence (default ``0..T-1``;
    pass them when ``k, v`` hold only some of the sequence, e.g. one device's part);
    ``q_positions [Q]`` default to the last ``Q`` positions ``T-Q..T-1`` of a whole-sequence ``k``.
    ``kv_mask [T, K]`` restricts each KV head to some tokens (as in :func:`partial_attention`).
    A query that sees no token gets ``out = 0``, ``lse = -inf``.
    """
    ops = backend(q, k, v)
    q, k, v = to_compute(ops, q, k, v)
    heads, kv_heads, group = check_shapes(q, k, v, 3)
    nq, tokens = q.shape[0], k.shape[0]
    s = default_scale(q.shape[-1], scale)
    qg = group_queries(q, kv_heads, group, ops) * s
    kg = ops.permute(k, (1, 0, 2))
    vg = ops.permute(v, (1, 0, 2))
    kpos = ops.arange(tokens, q) if k_positions is None else ops.as_index(k_positions, q)
    if tuple(kpos.shape) != (tokens,):
        raise ValueError(f"k_positions must have shape ({tokens},), got {tuple(kpos.shape)}")
    if causal and q_positions is None:
        q_positions = ops.arange(nq, q) + (tokens - nq)
    vis = visibility(
        ops, q, nq, kpos, causal=causal, q_positions=q_positions, valid_lengths=valid_lengths
    )
    if mask is not None:
        mk = ops.as_bool(mask, q)
        if tuple(mk.shape) != (nq, tokens):
            raise ValueError(f"mask must have shape ({nq}, {tokens}), got {tuple(mk.shape)}")
        vis = mk if vis is None else vis & mk
    full_mask = None if vis is None else expand_query_mask(ops, vis, group)[0]
    per_head = kv_visibility(ops, kv_mask, q, tokens, kv_heads)
    if per_head is not None:
        full_mask = per_head if full_mask is None else full_mask & per_head
    out, lse = attend(ops, qg, kg, vg, full_mask)
    return ungroup(ops, out, lse, nq, kv_heads, group)


@overload
def dense_attention(
    q: Array, k: Array, v: Array, scale: float | None = None, *, mask: Array | None = None,
    return_lse: Literal[False] = False,
) -> Array: ...


@overload
def dense_attention(
    q: Array, k: Array, v: Array, scale: float | None = None, *, mask: Array | None = None,
    return_lse: Literal[True],
) -> tuple[Array, Array]: ...


def dense_attention(
    q: Array,
    k: Array,
    v: Array,
    scale: float | None = None,
    *,
    mask: Array | None = None,
    return_lse: bool = False,
) -> Array | tuple[Array, Array]:
    """Plain softmax attention over all tokens at once — the reference PAMattention must match.

    ``q [H, d]`` or ``[Q, H, d]``; ``k [T, K, d]``; ``v [T, K, e]``; ``mask`` (True = visible)
    ``[T]`` or ``[Q, T]``. KV heads are repeated to the query heads and the softmax is taken over
    the whole token axis in one go (written independently of the partial/merge path). Returns
    ``out`` shaped like ``q`` with width ``e`` (and ``lse`` if asked). Rows with no visible token
    give zeros and ``lse = -inf``.
    """
    ops = backend(q, k, v)
    q, k, v = to_compute(ops, q, k, v)
    single = q.ndim == 2
    q3 = q[None] if single else q
    _, kv_heads, group = check_shapes(q3, k, v, 3)
    s = default_scale(q.shape[-1], scale)
    kr = ops.repeat(k, group, axis=1)
    vr = ops.repeat(v, group, axis=1)
    logits = ops.einsum("qhd,thd->qht", q3, kr) * s
    if mask is not None:
        mk = ops.as_bool(mask, q)
        mk = mk[None, None, :] if mk.ndim == 1 else mk[:, None, :]
        logits = ops.where(mk, logits, -math.inf)
    if k.shape[0] == 0:
        out = ops.zeros((*q3.shape[:2], v.shape[-1]), q3)
        lse = ops.full(q3.shape[:2], -math.inf, q3)
    else:
        row_max = ops.amax(logits, -1, keepdims=True)
        row_max = ops.where(ops.isfinite(row_max), row_max, 0.0)
        w = ops.exp(logits - row_max)
        total = ops.sum(w, -1, keepdims=True)
        probs = w / ops.where(total > 0, total, 1.0)
        out = ops.einsum("qht,thd->qhd", probs, vr)
        lse = row_max[..., 0] + ops.log(total[..., 0])
    if single:
        out, lse = out[0], lse[0]
    return (out, lse) if return_lse else out
