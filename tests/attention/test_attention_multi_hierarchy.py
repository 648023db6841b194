"""Multi-query (chunked prefill) partials and the hierarchical tiles -> bank groups -> devices form."""

from __future__ import annotations

import numpy as np
import pytest
from attention_helpers import assert_exact, naive_attention, partitions, problems
from hypothesis import given, settings
from hypothesis import strategies as st

from pamkv.attention import (
    dense_attention,
    flatten_partition,
    hierarchical_attention,
    merge_to_partial,
    partial_attention,
    partial_attention_multi,
    partition_from_assignment,
    tile_partials,
)

FAST = settings(max_examples=30, deadline=None)


def multi_queries(p: dict, n: int) -> np.ndarray:
    heads, d = p["q"].shape
    return p["rng"].standard_normal((n, heads, d)) * 3


def per_query_reference(qm: np.ndarray, k: np.ndarray, v: np.ndarray, visible: np.ndarray) -> tuple:
    outs, lses = zip(*(naive_attention(qm[i], k, v, visible[i]) for i in range(qm.shape[0])), strict=True)
    return np.stack(outs), np.stack(lses)


@FAST
@given(problems(max_tokens=20), st.integers(1, 5), st.booleans(), st.booleans())
def test_multi_query_matches_dense_per_query(p: dict, n_q: int, causal: bool, use_lengths: bool) -> None:
    k, v = p["k"], p["v"]
    tokens = k.shape[0]
    qm = multi_queries(p, n_q)
    visible = np.ones((n_q, tokens), dtype=bool)
    kwargs: dict = {}
    if causal:
        qpos = np.arange(tokens - n_q, tokens)
        visible &= np.arange(tokens)[None, :] <= qpos[:, None]
        kwargs["causal"] = True
    if use_lengths:
        lengths = p["rng"].integers(0, tokens + 1, n_q)
        visible &= np.arange(tokens)[None, :] < lengths[:, None]
        kwargs["valid_lengths"] = lengths
    part = partial_attention_multi(qm, k, v, **kwargs)
    ref_out, ref_lse = per_query_reference(qm, k, v, visible)
    assert part.out.shape == (n_q, *p["q"].shape[:1], v.shape[-1]) and part.lse.shape == (n_q, qm.shape[1])
    assert_exact(part.out, ref_out)
    assert_exact(part.lse, ref_lse)
    # the explicit-mask form and dense_attention agree
    by_mask = partial_attention_multi(qm, k, v, mask=visible)
    assert_exact(by_mask.out, ref_out)
    assert_exact(dense_attention(qm, k, v, mask=visible), ref_out)


@FAST
@given(st.data(), problems(max_tokens=24), st.integers(1, 4))
def test_multi_query_partials_over_a_split_merge_exactly(data: st.DataObject, p: dict, n_q: int) -> None:
    """Each device holds some tokens; it passes their positions and the causal mask still holds."""
    k, v = p["k"], p["v"]
    tokens = k.shape[0]
    qm = multi_queries(p, n_q)
    qpos = np.array(sorted(data.draw(st.lists(st.integers(0, max(tokens - 1, 0)), min_size=n_q,
                                              max_size=n_q))))
    parts = [
        partial_attention_multi(qm, k[i], v[i], causal=True, q_positions=qpos, k_positions=i)
        for i in data.draw(partitions(tokens))
    ]
    merged = merge_to_partial(parts)
    visible = np.arange(tokens)[None, :] <= qpos[:, None]
    ref_out, ref_lse = per_query_reference(qm, k, v, visible)
    assert_exact(merged.out, ref_out)
    assert_exact(merged.lse, ref_lse)


@st.composite
def nested(draw: st.DrawFn, leaves: list[np.ndarray], depth: int = 0) -> object:
    """Group a list of leaves into a random tree of uneven depth (lists of lists of ... leaves)."""
    if len(leaves) <= 1 and draw(st.booleans()):
        return leaves[0] if leaves else []
    if depth >= 3 or len(leaves) <= 1:
        return list(leaves)
    cut = sorted(set(draw(st.lists(st.integers(1, len(leaves) - 1), max_size=3))))
    groups = np.split(np.arange(len(leaves)), cut)
    return [draw(nested([leaves[i] for i in g], depth + 1)) for g in groups]


@FAST
@given(st.data(), problems(max_tokens=30))
def test_hierarchical_any_tree_equals_dense_over_the_union(data: st.DataObject, p: dict) -> None:
    q, k, v = p["q"], p["k"], p["v"]
    tokens = k.shape[0]
    leaves = data.draw(partitions(tokens, max_parts=8))
    # drop some tokens: the partition may cover only a (sparse) subset
    keep = np.array(data.draw(st.lists(st.booleans(), min_size=tokens, max_size=tokens)), dtype=bool)
    leaves = [x[keep[x]] for x in leaves]
    tree = data.draw(nested(leaves))
    got = hierarchical_attention(q, k, v, tree)
    ref_out, ref_lse = naive_attention(q, k, v, keep)
    assert_exact(got.out, ref_out)
    assert_exact(got.lse, ref_lse)


@FAST
@given(problems(max_tokens=40), st.integers(1, 3), st.integers(1, 4), st.sampled_from([1, 3, 16]),
       st.integers(1, 3))
def test_devices_units_tiles_from_placement(p: dict, n_dev: int, n_unit: int, tile: int, n_q: int) -> None:
    q, k, v, rng = p["q"], p["k"], p["v"], p["rng"]
    tokens = k.shape[0]
    dev, unit = rng.integers(0, n_dev, tokens), rng.integers(0, n_unit, tokens)
    part = partition_from_assignment(dev, unit, tile_tokens=tile)
    tree = flatten_partition(part, tokens)
    covered = np.concatenate(tree.leaves) if tree.leaves else np.zeros(0, int)
    assert np.array_equal(np.sort(covered), np.arange(tokens))
    assert all(len(x) <= tile for x in tree.leaves)
    for d_i, units in enumerate(part):
        for u_i, tiles in enumerate(units):
            for t in tiles:
                assert np.all(dev[t] == d_i) and np.all(unit[t] == u_i)
    assert_exact(hierarchical_attention(q, k, v, part).out, dense_attention(q, k, v))
    qm = multi_queries(p, n_q)
    got = hierarchical_attention(qm, k, v, part, causal=True)
    want = partial_attention_multi(qm, k, v, causal=True)
    assert_exact(got.out, want.out)
    assert_exact(got.lse, want.lse)


def test_tile_partials_are_the_per_tile_partials() -> None:
    rng = np.random.default_rng(3)
    q, k, v = rng.standard_normal((6, 8)), rng.standard_normal((20, 3, 8)), rng.standard_normal((20, 3, 4))
    leaves = [np.array([0, 5, 7]), np.array([], dtype=int), np.arange(8, 20), np.array([1])]
    tiles = tile_partials(q, k, v, leaves)
    assert tiles.out.shape == (4, 6, 4) and tiles.lse.shape == (4, 6)
    for i, leaf in enumerate(leaves):
        one = partial_attention(q, k[leaf], v[leaf])
        assert_exact(tiles.out[i], one.out)
        assert_exact(tiles.lse[i], one.lse)


def test_bad_partitions_are_refused() -> None:
    rng = np.random.default_rng(0)
    q, k, v = rng.standard_normal((2, 4)), rng.standard_normal((5, 1, 4)), rng.standard_normal((5, 1, 4))
    with pytest.raises(ValueError, match="overlap"):
        hierarchical_attention(q, k, v, [[0, 1], [1, 2]])
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        hierarchical_attention(q, k, v, [np.array([4, 5])])
    with pytest.raises(TypeError):
        hierarchical_attention(q, k, v, [[0, 1], "2"])
    empty = hierarchical_attention(q, k, v, [[], [np.array([], dtype=int)]])
    assert np.all(empty.out == 0) and np.all(np.isneginf(empty.lse))


def test_a_leaf_root_is_plain_partial_attention() -> None:
    rng = np.random.default_rng(1)
    q, k, v = rng.standard_normal((4, 4)), rng.standard_normal((9, 2, 4)), rng.standard_normal((9, 2, 4))
    got = hierarchical_attention(q, k, v, np.array([8, 2, 3]))
    want = partial_attention(q, k[[2, 3, 8]], v[[2, 3, 8]])
    assert_exact(got.out, want.out)
