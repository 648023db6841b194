"""Sparse selection: dense, oracle top-k, Double Sparsity, Quest, and the sparse-vs-dense report."""

from __future__ import annotations

import math

import numpy as np
import pytest
from attention_helpers import naive_attention, problems
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from pamkv.attention import (
    LabelChannels,
    Selection,
    SelectionConfig,
    attention_probs,
    calibrate_labels,
    captured_mass,
    hierarchical_attention,
    merge_to_partial,
    page_bounds,
    page_upper_bounds,
    partial_attention,
    partial_attention_multi,
    partition_from_assignment,
    resolve_budget,
    select,
    select_dense,
    select_double_sparsity,
    select_oracle_topk,
    select_quest,
    sparse_attention,
    sparse_report,
)

FAST = settings(max_examples=30, deadline=None)


def check_well_formed(sel: Selection, tokens: int, kv_heads: int) -> None:
    idx = sel.indices
    assert idx.shape[0] == kv_heads and idx.dtype == np.int64
    assert np.all(np.diff(idx, axis=1) > 0), "indices must be strictly ascending per KV head"
    assert idx.size == 0 or (idx.min() >= 0 and idx.max() < tokens)
    assert sel.scores.shape == (kv_heads, tokens) and np.all(sel.scores >= 0)
    if tokens:
        np.testing.assert_allclose(sel.scores.sum(axis=1), 1.0, rtol=1e-9)
    if sel.shared:
        assert np.all(idx == idx[:1])
    assert sel.mask().sum(axis=1).tolist() == [sel.n_selected] * kv_heads
    assert sel.reads_per_token().sum() == idx.size


@FAST
@given(problems(min_tokens=1, max_tokens=40))
def test_oracle_at_full_budget_is_dense(p: dict) -> None:
    q, k, v = p["q"], p["k"], p["v"]
    tokens = k.shape[0]
    dense = select_dense(q, k)
    oracle = select_oracle_topk(q, k, budget=tokens)
    assert np.array_equal(oracle.indices, dense.indices)
    np.testing.assert_allclose(oracle.scores, dense.scores)
    rep = sparse_report(q, k, v, oracle)
    assert rep.max_abs_error < 1e-12 and rep.mass_captured == pytest.approx(1.0)
    np.testing.assert_allclose(sparse_attention(q, k, v, oracle).out, naive_attention(q, k, v)[0],
                               rtol=1e-9, atol=1e-11)


@FAST
@given(problems(min_tokens=1, max_tokens=60), st.integers(0, 70), st.booleans(), st.integers(0, 3),
       st.integers(0, 5))
def test_counts_equal_the_budget_and_forced_tokens_are_kept(p: dict, budget: int, shared: bool,
                                                            sinks: int, recent: int) -> None:
    q, k = p["q"], p["k"]
    tokens, kv_heads = k.shape[:2]
    labels = calibrate_labels(q[None], k)
    forced = np.zeros(tokens, bool)
    forced[:sinks] = True
    if recent:
        forced[-recent:] = True
    for sel in (
        select_oracle_topk(q, k, budget, shared=shared, sinks=sinks, recent=recent),
        select_double_sparsity(q, k, labels, budget, shared=shared, sinks=sinks, recent=recent),
    ):
        check_well_formed(sel, tokens, kv_heads)
        assert sel.n_selected == max(min(budget, tokens), int(forced.sum()))
        assert np.all(sel.mask()[:, forced])


def test_default_budget_is_one_eighth() -> None:
    assert resolve_budget(1024) == 128
    assert resolve_budget(9) == 2 and resolve_budget(8) == 1 and resolve_budget(0) == 0
    assert resolve_budget(100, budget=500) == 100
    rng = np.random.default_rng(0)
    q, k = rng.standard_normal((4, 8)), rng.standard_normal((800, 2, 8))
    assert select_oracle_topk(q, k).n_selected == 100


@FAST
@given(problems(min_tokens=1, max_tokens=50), st.integers(1, 50), st.booleans())
def test_double_sparsity_with_all_channels_is_the_oracle(p: dict, budget: int, shared: bool) -> None:
    q, k = p["q"], p["k"]
    labels = LabelChannels.all_channels(k.shape[1], k.shape[2])
    ds = select_double_sparsity(q, k, labels, budget, shared=shared)
    oracle = select_oracle_topk(q, k, budget, shared=shared)
    assert np.array_equal(ds.indices, oracle.indices)
    np.testing.assert_array_equal(ds.scores, oracle.scores)
    # and calibration with n_labels = d picks every channel
    assert np.array_equal(calibrate_labels(q[None], k, n_labels=k.shape[2]).channels, labels.channels)


def test_calibration_picks_the_channels_that_carry_q_dot_k() -> None:
    rng = np.random.default_rng(5)
    n, heads, kv_heads, d = 200, 4, 2, 32
    q = rng.standard_normal((n, heads, d)) * 0.1
    k = rng.standard_normal((n, kv_heads, d)) * 0.1
    planted = {0: [3, 17, 30, 8], 1: [1, 2, 25, 9]}
    for c, chans in planted.items():
        q[:, c * 2:(c + 1) * 2, chans] *= 40
        k[:, c, chans] *= 40
    labels = calibrate_labels(q, k, n_labels=4)
    for c, chans in planted.items():
        assert labels.channels[c].tolist() == sorted(chans)
    assert calibrate_labels(q, k).n_labels == d // 8
    # on outlier-dominated keys the label scores find nearly all of the oracle's mass
    qs, ks = q[0], rng.standard_normal((512, kv_heads, d)) * 0.1
    ks[:, 0, planted[0]] *= 40
    ks[:, 1, planted[1]] *= 40
    v = rng.standard_normal((512, kv_heads, 8))
    ds = sparse_report(qs, ks, v, select_double_sparsity(qs, ks, labels))
    oracle = sparse_report(qs, ks, v, select_oracle_topk(qs, ks))
    assert ds.mass_captured > 0.9 * oracle.mass_captured


@FAST
@given(problems(min_tokens=1, max_tokens=70), st.sampled_from([1, 4, 16]))
def test_quest_bounds_are_upper_bounds_of_page_max_logits(p: dict, page: int) -> None:
    q, k = p["q"], p["k"]
    tokens, kv_heads, d = k.shape
    heads = q.shape[0]
    bounds = page_bounds(k, page)
    assert bounds.n_pages == math.ceil(tokens / page)
    ub = page_upper_bounds(q, bounds)
    logits = np.einsum("hd,thd->ht", q, np.repeat(k, heads // kv_heads, axis=1)) / math.sqrt(d)
    for pg in range(bounds.n_pages):
        true_max = logits[:, pg * page:(pg + 1) * page].max(axis=1)
        assert np.all(ub[:, pg] >= true_max - 1e-9 * (1 + np.abs(true_max)))
    if page == 1:  # a one-token page's bound is its logit
        np.testing.assert_allclose(ub, logits, rtol=1e-9, atol=1e-9)


@FAST
@given(problems(min_tokens=1, max_tokens=90), st.integers(0, 100), st.booleans(), st.integers(0, 20),
       st.integers(0, 20))
def test_quest_reads_whole_pages_within_the_budget(p: dict, budget: int, shared: bool, sinks: int,
                                                   recent: int) -> None:
    q, k = p["q"], p["k"]
    tokens, kv_heads, _ = k.shape
    page = 16
    sel = select_quest(q, k, budget, shared=shared, sinks=sinks, recent=recent)
    check_well_formed(sel, tokens, kv_heads)
    pages_read = np.unique(sel.indices // page)
    for c in range(kv_heads):
        per_page = np.bincount(sel.indices[c] // page, minlength=math.ceil(tokens / page))
        lengths = np.minimum(page, tokens - np.arange(per_page.size) * page)
        assert np.all((per_page == 0) | (per_page == lengths)), "pages are read whole"
    forced = np.zeros(tokens, bool)
    forced[:sinks] = True
    if recent:
        forced[-recent:] = True
    if tokens % page:
        forced[-(tokens % page):] = True
    assert np.all(sel.mask()[:, forced])
    forced_pages = np.unique(np.flatnonzero(forced) // page)
    forced_tokens = sum(min(page, tokens - pg * page) for pg in forced_pages)
    if forced_tokens <= min(budget, tokens):
        assert sel.n_selected <= min(budget, tokens)
        assert sel.n_selected > min(budget, tokens) - page
    else:
        assert set(pages_read.tolist()) == set(forced_pages.tolist())


@FAST
@given(problems(min_tokens=2, max_tokens=60), st.integers(1, 30))
def test_oracle_captures_the_most_mass_for_its_size(p: dict, budget: int) -> None:
    """Oracle top-k maximises the group-mean mass per KV head; every other selector of equal size is <=."""
    q, k = p["q"], p["k"]
    probs = attention_probs(q, k)
    oracle = select_oracle_topk(q, k, budget)
    best = captured_mass(probs, oracle).mean()
    others = [
        select_double_sparsity(q, k, calibrate_labels(q[None], k, n_labels=1), budget),
        select_oracle_topk(q, k, budget, shared=True),
    ]
    quest = select_quest(q, k, budget)
    others.append(select_oracle_topk(q, k, quest.n_selected))  # same size as quest, for the next line
    for sel in others[:2]:
        assert captured_mass(probs, sel).mean() <= best + 1e-12
    assert captured_mass(probs, quest).mean() <= captured_mass(probs, others[2]).mean() + 1e-12


def test_sparse_attention_is_dense_attention_with_the_rest_masked() -> None:
    rng = np.random.default_rng(11)
    q, k, v = rng.standard_normal((6, 8)) * 2, rng.standard_normal((40, 3, 8)), rng.standard_normal((40, 3, 5))
    sel = select_oracle_topk(q, k, 10)
    got = sparse_attention(q, k, v, sel).out
    for h in range(6):
        c = h // 2
        vis = sel.mask()[c]
        want, _ = naive_attention(q[h:h + 1], k[:, c:c + 1], v[:, c:c + 1], vis)
        np.testing.assert_allclose(got[h], want[0], rtol=1e-9, atol=1e-11)
    rep = sparse_report(q, k, v, sel)
    assert set(rep.to_dict()) >= {"max_abs_error", "rel_l2_error", "mass_captured", "fraction_read"}
    assert 0 < rep.mass_captured < 1 and rep.fraction_read == 0.25 and rep.rel_l2_error > 0


def test_select_dispatches_on_the_config() -> None:
    rng = np.random.default_rng(2)
    q, k = rng.standard_normal((4, 16)), rng.standard_normal((160, 2, 16))
    assert select(SelectionConfig(method="dense"), q, k).n_selected == 160
    assert select(SelectionConfig(method="oracle", budget=7), q, k).n_selected == 7
    assert select(SelectionConfig(), q, k).n_selected == 20  # double sparsity at 1/8
    quest = select(SelectionConfig(method="quest", ratio=0.25, page_tokens=8), q, k)
    assert quest.n_selected == 40 and quest.method == "quest"
    assert select(SelectionConfig(method="oracle", shared=True, sinks=2, budget=5), q, k).indices[0, :2].tolist() \
        == [0, 1]
    with pytest.raises(ValidationError):
        SelectionConfig(method="h2o")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        SelectionConfig(ratio=0)


def test_score_reads_count_the_scoring_traffic() -> None:
    rng = np.random.default_rng(4)
    q, k = rng.standard_normal((4, 64)), rng.standard_normal((100, 2, 64))
    assert select_dense(q, k).score_reads == 0
    assert select_oracle_topk(q, k).score_reads == 100 * 64
    assert select_double_sparsity(q, k, calibrate_labels(q[None], k)).score_reads == 100 * 8
    assert select_quest(q, k).score_reads == 2 * 7 * 64


def test_empty_context_selects_nothing() -> None:
    q, k = np.ones((2, 4)), np.zeros((0, 1, 4))
    for sel in (select_dense(q, k), select_oracle_topk(q, k), select_quest(q, k)):
        assert sel.n_selected == 0 and sel.indices.shape == (1, 0)


@FAST
@given(problems(min_tokens=1, max_tokens=60), st.integers(1, 30), st.integers(1, 4))
def test_devices_compute_a_per_head_selection_exactly(p: dict, budget: int, n_dev: int) -> None:
    """Each device attends its share of every KV head's selected tokens; the merge is sparse attention."""
    q, k, v, rng = p["q"], p["k"], p["v"], p["rng"]
    tokens = k.shape[0]
    sel = select_oracle_topk(q, k, budget)
    want = sparse_attention(q, k, v, sel)
    device = rng.integers(0, n_dev, tokens)
    kv_mask = sel.mask().T  # [T, K]
    parts = []
    for dev in range(n_dev):
        on = np.flatnonzero(device == dev)
        parts.append(partial_attention(q, k[on], v[on], kv_mask=kv_mask[on]))
    got = merge_to_partial(parts)
    np.testing.assert_allclose(got.out, want.out, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(got.lse, want.lse, rtol=1e-9, atol=1e-11)
    tree = partition_from_assignment(device, rng.integers(0, 3, tokens), tile_tokens=4)
    hier = hierarchical_attention(q, k, v, tree, kv_mask=kv_mask)
    np.testing.assert_allclose(hier.out, want.out, rtol=1e-9, atol=1e-11)
    # the multi-query form with one query and kv_mask is the same thing
    multi = partial_attention_multi(q[None], k, v, kv_mask=kv_mask)
    np.testing.assert_allclose(multi.out[0], want.out, rtol=1e-9, atol=1e-11)
    hm = hierarchical_attention(q[None], k, v, tree, kv_mask=kv_mask, causal=True,
                                q_positions=np.array([tokens - 1]))
    np.testing.assert_allclose(hm.out[0], want.out, rtol=1e-9, atol=1e-11)
