"""Partial attention + merge is exact to dense attention for any split and any merge tree."""

from __future__ import annotations

import math

import numpy as np
import pytest
from attention_helpers import assert_exact, merge_in_random_tree, naive_attention, partitions, problems
from hypothesis import given, settings
from hypothesis import strategies as st

from pamkv.attention import (
    Partial,
    dense_attention,
    empty_partial,
    merge_partials,
    merge_segments,
    merge_to_partial,
    merge_two,
    partial_attention,
)

FAST = settings(max_examples=40, deadline=None)


@FAST
@given(problems(max_tokens=12))
def test_dense_reference_matches_textbook_loop(p: dict) -> None:
    """The reference itself: dense_attention equals a per-head loop in float64 (GQA included)."""
    out, lse = dense_attention(p["q"], p["k"], p["v"], return_lse=True)
    ref_out, ref_lse = naive_attention(p["q"], p["k"], p["v"])
    assert_exact(out, ref_out)
    np.testing.assert_array_equal(np.isneginf(lse), np.isneginf(ref_lse))
    assert_exact(lse[np.isfinite(lse)], ref_lse[np.isfinite(ref_lse)])


@FAST
@given(st.data(), problems())
def test_any_partition_any_tree_is_exact(data: st.DataObject, p: dict) -> None:
    tokens = p["k"].shape[0]
    parts_idx = data.draw(partitions(tokens))
    parts = [partial_attention(p["q"], p["k"][i], p["v"][i]) for i in parts_idx]
    merged = merge_in_random_tree(data.draw, parts)
    out, lse = dense_attention(p["q"], p["k"], p["v"], return_lse=True)
    assert_exact(merged.out, out)
    assert_exact(merged.lse, lse)  # -inf == -inf when tokens == 0
    assert_exact(merge_partials(parts), out)


@FAST
@given(problems(min_tokens=1))
def test_single_part_is_dense_and_lse_is_logsumexp(p: dict) -> None:
    part = partial_attention(p["q"], p["k"], p["v"])
    ref_out, ref_lse = naive_attention(p["q"], p["k"], p["v"])
    assert_exact(part.out, ref_out)
    assert_exact(part.lse, ref_lse)
    assert_exact(merge_partials([part]), ref_out)


def test_empty_parts_contribute_nothing_and_all_empty_gives_zeros() -> None:
    rng = np.random.default_rng(0)
    q, k, v = rng.standard_normal((4, 8)), rng.standard_normal((0, 2, 8)), rng.standard_normal((0, 2, 5))
    empty = partial_attention(q, k, v)
    assert empty.out.shape == (4, 5) and empty.lse.shape == (4,)
    assert np.all(empty.out == 0) and np.all(np.isneginf(empty.lse))
    for merged in (merge_two(empty, empty), merge_to_partial([empty] * 5)):
        assert not np.isnan(merged.out).any() and not np.isnan(merged.lse).any()
        assert np.all(merged.out == 0) and np.all(np.isneginf(merged.lse))
    k1, v1 = rng.standard_normal((3, 2, 8)), rng.standard_normal((3, 2, 5))
    full = partial_attention(q, k1, v1)
    np.testing.assert_array_equal(merge_two(empty, full).out, full.out)
    np.testing.assert_array_equal(merge_two(full, empty_partial(full)).lse, full.lse)


def test_merge_rejects_nothing_and_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="empty list"):
        merge_to_partial([])
    a = Partial(np.zeros((2, 3)), np.zeros(2))
    b = Partial(np.zeros((3, 3)), np.zeros(3))
    with pytest.raises(ValueError, match="share shapes"):
        merge_two(a, b)


@FAST
@given(problems(magnitudes=(1.0,)), st.sampled_from([1e4, -1e4, 3e4]))
def test_logits_of_magnitude_1e4_do_not_overflow(p: dict, target: float) -> None:
    q, k, v = p["q"], p["k"], p["v"]
    if k.shape[0] == 0:
        return
    # scale q so that the largest |logit| is ~|target|
    biggest = np.abs(dense_logits(q, k)).max()
    q = q * (abs(target) / max(biggest, 1e-12)) * np.sign(target)
    halves = [np.arange(0, k.shape[0], 2), np.arange(1, k.shape[0], 2)]
    merged = merge_to_partial([partial_attention(q, k[i], v[i]) for i in halves])
    out, lse = dense_attention(q, k, v, return_lse=True)
    assert np.isfinite(merged.out).all() and np.isfinite(merged.lse).all()
    np.testing.assert_allclose(merged.out, out, rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(merged.lse, lse, rtol=1e-12)
    # in float32 the result stays finite and within float32 logit rounding of the float64 answer
    p32 = [partial_attention(q.astype(np.float32), k[i].astype(np.float32), v[i].astype(np.float32))
           for i in halves]
    m32 = merge_to_partial(p32)
    assert m32.out.dtype == np.float32 and np.isfinite(m32.out).all()
    ref32 = dense_attention(q.astype(np.float32).astype(np.float64), k.astype(np.float32).astype(np.float64),
                            v.astype(np.float32).astype(np.float64))
    np.testing.assert_allclose(m32.out, ref32, atol=5e-2 * max(1.0, float(np.abs(v).max())))


def dense_logits(q: np.ndarray, k: np.ndarray) -> np.ndarray:
    group = q.shape[0] // k.shape[1]
    return np.einsum("hd,thd->ht", q, np.repeat(k, group, axis=1)) / math.sqrt(q.shape[1])


@FAST
@given(problems(max_tokens=30, min_tokens=1))
def test_float16_inputs_accumulate_in_float32(p: dict) -> None:
    q, k, v = (x.astype(np.float16) for x in (p["q"], p["k"], p["v"]))
    part = partial_attention(q, k, v)
    assert part.out.dtype == np.float32 and part.lse.dtype == np.float32
    ref = dense_attention(q.astype(np.float64), k.astype(np.float64), v.astype(np.float64))
    np.testing.assert_allclose(part.out, ref, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(ref).max())))


@FAST
@given(st.data(), problems())
def test_merge_segments_equals_per_group_merge(data: st.DataObject, p: dict) -> None:
    tokens = p["k"].shape[0]
    parts_idx = data.draw(partitions(tokens, max_parts=8))
    parts = [partial_attention(p["q"], p["k"][i], p["v"][i]) for i in parts_idx]
    n_groups = data.draw(st.integers(1, 4))
    parent = np.array(data.draw(st.lists(st.integers(0, n_groups - 1), min_size=len(parts),
                                         max_size=len(parts))))
    stacked = Partial(np.stack([x.out for x in parts]), np.stack([x.lse for x in parts]))
    seg = merge_segments(stacked, parent, n_groups)
    for g in range(n_groups):
        members = [parts[i] for i in np.flatnonzero(parent == g)]
        if not members:
            assert np.all(seg.out[g] == 0) and np.all(np.isneginf(seg.lse[g]))
            continue
        want = merge_to_partial(members)
        assert_exact(seg.out[g], want.out)
        assert_exact(seg.lse[g], want.lse)


# --- the exactness check can fail: two wrong merges it must catch -------------------------------------


def merge_without_max_shift(parts: list[Partial]) -> np.ndarray:
    """Wrong: weights exp(lse_i) without subtracting the max (overflows for large logits)."""
    with np.errstate(over="ignore", invalid="ignore"):
        w = np.stack([np.exp(x.lse) for x in parts])
        return (w[..., None] * np.stack([x.out for x in parts])).sum(0) / w.sum(0)[..., None]


def merge_as_printed_algorithm1(parts: list[Partial]) -> np.ndarray:
    """Wrong like the printed Algorithm 1: the reduction's log-sum-exp used as a plain sum of weights."""
    lse = np.stack([x.lse for x in parts])
    m = lse.max(0)
    total_lse = m + np.log(np.exp(lse - m).sum(0))  # what Reduction returns
    unnormalised = (np.exp(lse - m)[..., None] * np.stack([x.out for x in parts])).sum(0)
    return unnormalised / total_lse[..., None]  # the caller divides by it as if it were sum(l)


def test_exactness_check_detects_wrong_merges() -> None:
    rng = np.random.default_rng(7)
    q, k, v = rng.standard_normal((4, 8)), rng.standard_normal((64, 2, 8)), rng.standard_normal((64, 2, 8))
    parts_idx = [np.arange(0, 20), np.arange(20, 41), np.arange(41, 64)]
    ref = dense_attention(q, k, v)

    def merged_ok(out: np.ndarray) -> bool:
        return bool(np.isfinite(out).all() and np.allclose(out, ref, rtol=1e-9, atol=1e-11))

    parts = [partial_attention(q, k[i], v[i]) for i in parts_idx]
    assert merged_ok(merge_partials(parts))
    assert not merged_ok(merge_as_printed_algorithm1(parts))
    big = q * 1e4
    ref = dense_attention(big, k, v)
    parts_big = [partial_attention(big, k[i], v[i]) for i in parts_idx]
    assert merged_ok(merge_partials(parts_big))
    assert not merged_ok(merge_without_max_shift(parts_big))
