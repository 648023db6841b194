"""The torch path agrees with the numpy path; bf16/fp16 accumulate in float32; numpy works without torch."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from attention_helpers import assert_exact, partitions, problems
from hypothesis import given, settings
from hypothesis import strategies as st

from pamkv.attention import (
    LabelChannels,
    calibrate_labels,
    dense_attention,
    hierarchical_attention,
    merge_partials,
    merge_to_partial,
    partial_attention,
    partial_attention_multi,
    partition_from_assignment,
    select_dense,
    select_double_sparsity,
    select_oracle_topk,
    select_quest,
    sparse_report,
)

torch = pytest.importorskip("torch")


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Tiny tensors: intra-op threads only add overhead on a shared machine (restored afterwards)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


FAST = settings(max_examples=20, deadline=None)


def t(x: np.ndarray) -> Any:
    return torch.from_numpy(np.ascontiguousarray(x))


@FAST
@given(st.data(), problems())
def test_partials_and_merge_agree_with_numpy(data: st.DataObject, p: dict) -> None:
    q, k, v = p["q"], p["k"], p["v"]
    parts_idx = data.draw(partitions(k.shape[0]))
    np_parts = [partial_attention(q, k[i], v[i]) for i in parts_idx]
    th_parts = [partial_attention(t(q), t(k[i]), t(v[i])) for i in parts_idx]
    assert all(isinstance(x.out, torch.Tensor) and isinstance(x.lse, torch.Tensor) for x in th_parts)
    np_m, th_m = merge_to_partial(np_parts), merge_to_partial(th_parts)
    assert_exact(th_m.out.numpy(), np_m.out)
    assert_exact(th_m.lse.numpy(), np_m.lse)
    assert_exact(merge_partials(th_parts).numpy(), dense_attention(q, k, v))
    assert_exact(dense_attention(t(q), t(k), t(v)).numpy(), dense_attention(q, k, v))


@FAST
@given(problems(max_tokens=30), st.integers(1, 4), st.integers(1, 3))
def test_multi_query_and_hierarchy_agree_with_numpy(p: dict, n_q: int, n_dev: int) -> None:
    q, k, v, rng = p["q"], p["k"], p["v"], p["rng"]
    qm = rng.standard_normal((n_q, *q.shape))
    a = partial_attention_multi(qm, k, v, causal=True)
    b = partial_attention_multi(t(qm), t(k), t(v), causal=True)
    assert_exact(b.out.numpy(), a.out)
    assert_exact(b.lse.numpy(), a.lse)
    part = partition_from_assignment(rng.integers(0, n_dev, k.shape[0]), rng.integers(0, 2, k.shape[0]), 4)
    h_np = hierarchical_attention(qm, k, v, part, causal=True)
    h_th = hierarchical_attention(t(qm), t(k), t(v), part, causal=True)
    assert_exact(h_th.out.numpy(), h_np.out)
    assert_exact(h_th.out.numpy(), a.out)
    h1 = hierarchical_attention(t(q), t(k), t(v), part)
    assert_exact(h1.out.numpy(), dense_attention(q, k, v))


@FAST
@given(problems(min_tokens=1, max_tokens=60), st.integers(1, 40), st.booleans())
def test_selections_agree_with_numpy(p: dict, budget: int, shared: bool) -> None:
    q, k, v = p["q"], p["k"], p["v"]
    labels = calibrate_labels(q[None], k)
    assert np.array_equal(calibrate_labels(t(q[None]), t(k)).channels, labels.channels)
    pairs = [
        (select_dense(q, k), select_dense(t(q), t(k))),
        (select_oracle_topk(q, k, budget, shared=shared), select_oracle_topk(t(q), t(k), budget, shared=shared)),
        (select_double_sparsity(q, k, labels, budget, shared=shared, sinks=1),
         select_double_sparsity(t(q), t(k), labels, budget, shared=shared, sinks=1)),
        (select_quest(q, k, budget, shared=shared, recent=3), select_quest(t(q), t(k), budget, shared=shared,
                                                                           recent=3)),
    ]
    for a, b in pairs:
        assert isinstance(b.indices, torch.Tensor) and b.indices.dtype == torch.int64
        np.testing.assert_allclose(b.scores.numpy(), a.scores, rtol=1e-9, atol=1e-12)
        # continuous random data has no ties, so the chosen sets agree
        assert np.array_equal(b.indices.numpy(), a.indices), a.method
        assert np.array_equal(b.mask().numpy(), a.mask())
        ra, rb = sparse_report(q, k, v, a), sparse_report(t(q), t(k), t(v), b)
        assert rb.mass_captured == pytest.approx(ra.mass_captured, rel=1e-9)
        assert rb.max_abs_error == pytest.approx(ra.max_abs_error, rel=1e-6, abs=1e-12)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_low_precision_tensors_accumulate_in_float32(dtype: str) -> None:
    rng = np.random.default_rng(9)
    q, k, v = rng.standard_normal((8, 64)) * 4, rng.standard_normal((300, 2, 64)), rng.standard_normal((300, 2, 64))
    tq, tk, tv = (t(x).to(getattr(torch, dtype)) for x in (q, k, v))
    parts = [partial_attention(tq, tk[i::3], tv[i::3]) for i in range(3)]
    assert parts[0].out.dtype == torch.float32 and parts[0].lse.dtype == torch.float32
    got = merge_partials(parts)
    # reference: the same rounded inputs, in float64
    ref = dense_attention(tq.double().numpy(), tk.double().numpy(), tv.double().numpy())
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-4, atol=1e-5)
    # accumulating in the low precision itself would be far worse than float32 accumulation
    assert float(np.abs(got.numpy() - ref).max()) < 1e-4


def test_all_channel_labels_equal_oracle_in_torch() -> None:
    rng = np.random.default_rng(8)
    q, k = t(rng.standard_normal((6, 16))), t(rng.standard_normal((90, 3, 16)))
    ds = select_double_sparsity(q, k, LabelChannels.all_channels(3, 16), 11)
    assert torch.equal(ds.indices, select_oracle_topk(q, k, 11).indices)


def test_mixing_numpy_and_torch_is_refused() -> None:
    with pytest.raises(TypeError, match="mix"):
        partial_attention(np.ones((2, 4)), t(np.ones((3, 1, 4))), np.ones((3, 1, 4)))


def test_numpy_path_needs_no_torch() -> None:
    """With torch unimportable, the package imports and computes on numpy arrays."""
    code = textwrap.dedent(
        """
        import sys
        sys.modules["torch"] = None  # any 'import torch' now raises ImportError
        import numpy as np
        from pamkv.attention import (partial_attention, merge_partials, dense_attention,
                                     hierarchical_attention, select_quest, sparse_report)
        rng = np.random.default_rng(0)
        q, k, v = rng.standard_normal((4, 8)), rng.standard_normal((40, 2, 8)), rng.standard_normal((40, 2, 8))
        parts = [partial_attention(q, k[:17], v[:17]), partial_attention(q, k[17:], v[17:])]
        assert np.allclose(merge_partials(parts), dense_attention(q, k, v))
        assert np.allclose(hierarchical_attention(q, k, v, [[np.arange(9)], [np.arange(9, 40)]]).out,
                           dense_attention(q, k, v))
        sparse_report(q, k, v, select_quest(q, k, 16))
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_per_head_kv_mask_agrees_with_numpy() -> None:
    rng = np.random.default_rng(12)
    q, k, v = rng.standard_normal((6, 8)), rng.standard_normal((50, 2, 8)), rng.standard_normal((50, 2, 8))
    kv_mask = rng.random((50, 2)) < 0.4
    part = partition_from_assignment(rng.integers(0, 3, 50), rng.integers(0, 2, 50), 4)
    a = hierarchical_attention(q, k, v, part, kv_mask=kv_mask)
    b = hierarchical_attention(t(q), t(k), t(v), part, kv_mask=t(kv_mask))
    assert_exact(b.out.numpy(), a.out)
    c = partial_attention(t(q), t(k), t(v), kv_mask=t(kv_mask))
    assert_exact(c.out.numpy(), a.out)
