"""PAMattention's hierarchical form: PU tiles -> bank-group/device reduction -> reduction across devices.

The paper (§5) computes attention where the KV lives: every processing unit (PU) attends over a tile
of the tokens it holds, reduction units merge the tiles of a bank group and of a device, and the
device partials are merged in HBM-PIM. Here the hierarchy is a *nested partition* of token indices,
for example ``devices -> bank groups -> tiles``::

    partition = [                                  # root: the whole request
        [[np.array([0, 1, 2]), np.array([3])],     # device 0: bank group 0 has two tiles ...
         [np.array([4, 5])]],                      #           bank group 1 has one
        [[np.array([], dtype=int)]],               # device 1 holds nothing this step
    ]

A node is either a *leaf* — a 1-D integer array (or a list/range of ints) of token indices — or a
list of nodes. Depths may differ between branches. Leaves must not share tokens; tokens in no leaf
are not attended (the partition can cover a sparse selection). :func:`hierarchical_attention`
computes every leaf's partial in one vectorised pass (tiles padded to the longest one) and then
merges the tree bottom-up, one vectorised segmented merge per level.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pamkv.attention._backend import Array, Ops, backend, is_torch, to_compute
from pamkv.attention.core import (
    Partial,
    attend,
    check_shapes,
    default_scale,
    expand_query_mask,
    group_queries,
    ungroup,
    visibility,
)
from pamkv.attention.merge import merge_segments

Partition = Any
"""A nested partition: a leaf (1-D int array, range or list of ints) or a sequence of partitions."""


@dataclass(frozen=True)
class Tree:
    """A nested partition flattened to arrays. Node 0 is the root.

    ``parent[n]`` (-1 for the root), ``depth[n]``; ``leaf_nodes[i]`` is the node of leaf ``i`` and
    ``leaves[i]`` its token indices.
    """

    parent: np.ndarray
    depth: np.ndarray
    leaf_nodes: np.ndarray
    leaves: list[np.ndarray]

    @property
    def n_nodes(self) -> int:
        """Nodes in the tree (internal nodes and leaves)."""
        return int(self.parent.shape[0])


def _is_leaf(node: Partition) -> bool:
    if isinstance(node, np.ndarray) or is_torch(node):
        return True
    if isinstance(node, range):
        return True
    if isinstance(node, Sequence) and not isinstance(node, str | bytes):
        # a non-empty list of plain ints is a leaf; an empty list is an empty internal node
        return len(node) > 0 and all(isinstance(x, int | np.integer) for x in node)
    raise TypeError(f"partition nodes must be index arrays or lists of nodes, got {type(node).__name__}")


def flatten_partition(partition: Partition, n_tokens: int) -> Tree:
    """Walk a nested partition (one Python step per node, never per token) into a :class:`Tree`.

    Raises ``ValueError`` if an index is out of ``[0, n_tokens)`` or a token is in two leaves.
    """
    parent: list[int] = []
    depth: list[int] = []
    leaf_nodes: list[int] = []
    leaves: list[np.ndarray] = []
    stack: list[tuple[Partition, int, int]] = [(partition, -1, 0)]
    while stack:
        node, par, dep = stack.pop()
        nid = len(parent)
        parent.append(par)
        depth.append(dep)
        if _is_leaf(node):
            arr = node.detach().cpu().numpy() if is_torch(node) else np.asarray(node)
            if arr.ndim != 1 or not (arr.size == 0 or np.issubdtype(arr.dtype, np.integer)):
                raise ValueError(f"a partition leaf must be a 1-D integer array, got shape {arr.shape}")
            leaf_nodes.append(nid)
            leaves.append(arr.astype(np.int64, copy=False))
        else:
            stack.extend((child, nid, dep + 1) for child in reversed(list(node)))
    all_tokens = np.concatenate(leaves) if leaves else np.zeros(0, dtype=np.int64)
    if all_tokens.size and (all_tokens.min() < 0 or all_tokens.max() >= n_tokens):
        raise ValueError(f"partition token indices must lie in [0, {n_tokens})")
    if np.unique(all_tokens).size != all_tokens.size:
        raise ValueError("partition leaves overlap: a token may be in one leaf only")
    return Tree(np.array(parent, dtype=np.int64), np.array(depth, dtype=np.int64),
                np.array(leaf_nodes, dtype=np.int64), leaves)


def padded_tiles(leaves: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Leaves as a padded index matrix: ``idx [S, L]`` (pad = 0) and ``valid [S, L]`` bool."""
    lengths = np.array([len(x) for x in leaves], dtype=np.int64)
    width = int(lengths.max()) if lengths.size else 0
    idx = np.zeros((len(leaves), width), dtype=np.int64)
    valid = np.arange(width)[None, :] < lengths[:, None]
    if lengths.sum():
        idx[valid] = np.concatenate(leaves)
    return idx, valid


def tile_partials(
    q: Array,
    k: Array,
    v: Array,
    leaves: Sequence[Array],
    scale: float | None = None,
    *,
    causal: bool = False,
    q_positions: Array | None = None,
    valid_lengths: Array | None = None,
    kv_mask: Array | None = None,
) -> Partial:
    """Partials of many token tiles in one vectorised pass: what all PUs compute in parallel.

    ``leaves``: S index arrays into ``k, v`` (disjointness not required here). ``q [H, d]`` gives
    ``Partial(out [S, H, e], lse [S, H])``; ``q [Q, H, d]`` gives ``[S, Q, H, e]``, ``[S, Q, H]``
    with the multi-query visibility options of
    :func:`~pamkv.attention.core.partial_attention_multi` (token positions are the indices; default
    ``q_positions`` are the last Q positions of ``k``). ``kv_mask [T, K]`` (True = attend) gives
    per-KV-head token sets. Tiles are padded to the longest, so cost is ``S * max_len``: keep tiles
    of similar size (PU tiles are).
    """
    ops = backend(q, k, v)
    q, k, v = to_compute(ops, q, k, v)
    multi = q.ndim == 3
    heads, kv_heads, group = check_shapes(q, k, v, 3 if multi else 2)
    s = default_scale(q.shape[-1], scale)
    np_leaves = [x.detach().cpu().numpy() if is_torch(x) else np.asarray(x, dtype=np.int64) for x in leaves]
    idx_np, valid_np = padded_tiles(np_leaves)
    idx = ops.as_index(idx_np, q)
    valid = ops.as_bool(valid_np, q)
    kg = ops.permute(k[idx], (0, 2, 1, 3))  # [S, K, L, d]
    vg = ops.permute(v[idx], (0, 2, 1, 3))  # [S, K, L, e]
    tile_mask = valid[:, None, None, :]  # [S, 1, 1, L]
    if kv_mask is not None:
        km = ops.as_bool(kv_mask, q)
        if tuple(km.shape) != (k.shape[0], kv_heads):
            raise ValueError(f"kv_mask must have shape ({k.shape[0]}, {kv_heads}), got {tuple(km.shape)}")
        tile_mask = tile_mask & ops.permute(km[idx], (0, 2, 1))[:, :, None, :]  # [S, K, 1, L]
    if not multi:
        qg = q.reshape(kv_heads, group, q.shape[-1]) * s
        out, lse = attend(ops, qg, kg, vg, tile_mask)
        return Partial(out.reshape(len(np_leaves), heads, v.shape[-1]), lse.reshape(len(np_leaves), heads))
    nq = q.shape[0]
    qg = group_queries(q, kv_heads, group, ops) * s
    if causal and q_positions is None:
        q_positions = ops.arange(nq, q) + (k.shape[0] - nq)
    vis = visibility(ops, q, nq, idx, causal=causal, q_positions=q_positions, valid_lengths=valid_lengths)
    full = tile_mask if vis is None else expand_query_mask(ops, vis, group) & tile_mask  # [S, K|1, QG, L]
    out, lse = attend(ops, qg, kg, vg, full)
    return ungroup(ops, out, lse, nq, kv_heads, group)


def reduce_tree(ops: Ops, tree: Tree, leaf_parts: Partial) -> Partial:
    """Merge leaf partials up the tree, one segmented merge per depth; return the root's partial."""
    n = tree.n_nodes
    like = leaf_parts.lse
    out = ops.zeros((n, *leaf_parts.out.shape[1:]), like)
    lse = ops.full((n, *leaf_parts.lse.shape[1:]), -math.inf, like)
    leaf_idx = ops.as_index(tree.leaf_nodes, like)
    if tree.leaf_nodes.size:
        out[leaf_idx] = leaf_parts.out
        lse[leaf_idx] = leaf_parts.lse
    for level in range(int(tree.depth.max()), 0, -1):
        children = np.flatnonzero(tree.depth == level)
        parents, slot = np.unique(tree.parent[children], return_inverse=True)
        cidx = ops.as_index(children, like)
        merged = merge_segments(Partial(out[cidx], lse[cidx]), slot, len(parents))
        pidx = ops.as_index(parents, like)
        out[pidx] = merged.out
        lse[pidx] = merged.lse
    return Partial(out[0], lse[0])


def hierarchical_attention(
    q: Array,
    k: Array,
    v: Array,
    partition: Partition,
    scale: float | None = None,
    *,
    causal: bool = False,
    q_positions: Array | None = None,
    valid_lengths: Array | None = None,
    kv_mask: Array | None = None,
) -> Partial:
    """PAMattention over a nested partition of the tokens, computed bottom-up (tiles first).

    ``q [H, d]`` (decode) or ``[Q, H, d]`` (multi-query, with ``causal``/``q_positions``/
    ``valid_lengths`` as in :func:`~pamkv.attention.core.partial_attention_multi`); ``k [T, K, d]``,
    ``v [T, K, e]``; ``partition`` nests token indices (see the module docstring); ``kv_mask
    [T, K]`` optionally restricts each KV head to some tokens (a per-head sparse selection).
    Returns the root's ``Partial`` — equal to dense attention over the union of the leaves (per
    KV head: intersected with ``kv_mask``), whatever the tree.
    """
    ops = backend(q, k, v)
    tree = flatten_partition(partition, int(k.shape[0]))
    leaf_parts = tile_partials(q, k, v, tree.leaves, scale, causal=causal, q_positions=q_positions,
                               valid_lengths=valid_lengths, kv_mask=kv_mask)
    return reduce_tree(ops, tree, leaf_parts)


def partition_from_assignment(
    device_of_token: np.ndarray,
    unit_of_token: np.ndarray | None = None,
    tile_tokens: int = 16,
    tokens: np.ndarray | None = None,
) -> list[list[list[np.ndarray]]]:
    """Build ``devices -> units (bank groups / SSD channels) -> tiles`` from per-token placement.

    ``device_of_token[i]`` / ``unit_of_token[i]``: where token ``tokens[i]`` (default ``i``) sits.
    Inside a unit, tokens (in index order) are cut into tiles of ``tile_tokens`` — one PU's share.
    Devices ``0..max`` and, per device, units ``0..max`` all appear (empty ones as empty lists), so
    the tree mirrors the hardware even where nothing is stored.
    """
    dev = np.asarray(device_of_token, dtype=np.int64)
    unit = np.zeros_like(dev) if unit_of_token is None else np.asarray(unit_of_token, dtype=np.int64)
    tok = np.arange(dev.size, dtype=np.int64) if tokens is None else np.asarray(tokens, dtype=np.int64)
    if not (dev.shape == unit.shape == tok.shape) or dev.ndim != 1:
        raise ValueError("device_of_token, unit_of_token and tokens must be 1-D arrays of one length")
    if tile_tokens <= 0:
        raise ValueError(f"tile_tokens must be positive, got {tile_tokens}")
    if dev.size and (dev.min() < 0 or unit.min() < 0):
        raise ValueError("device and unit ids must be non-negative")
    order = np.lexsort((tok, unit, dev))
    dev, unit, tok = dev[order], unit[order], tok[order]
    n_dev = int(dev.max()) + 1 if dev.size else 0
    n_unit = int(unit.max()) + 1 if unit.size else 0
    # group boundaries in the sorted order, one (device, unit) cell at a time
    cell = dev * n_unit + unit
    starts = np.searchsorted(cell, np.arange(n_dev * n_unit), side="left")
    ends = np.searchsorted(cell, np.arange(n_dev * n_unit), side="right")
    result: list[list[list[np.ndarray]]] = []
    for d in range(n_dev):
        units: list[list[np.ndarray]] = []
        for u in range(n_unit):
            c = d * n_unit + u
            members = tok[starts[c]:ends[c]]
            units.append(np.split(members, np.arange(tile_tokens, members.size, tile_tokens)))
        result.append(units)
    return result
