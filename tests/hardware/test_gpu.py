"""The GPU roofline against real H100 timings (reference/gpu_h100_llama2_70b.csv) and first principles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pamkv.hardware import Gpu, load_device
from pamkv.model import layer_linear_ops, load_model


def _gpu(name: str = "h100") -> Gpu:
    dev = load_device(name)
    assert isinstance(dev, Gpu)
    return dev


def _csv_errors(shared: Path) -> tuple[np.ndarray, np.ndarray]:
    df = pd.read_csv(shared / "reference" / "gpu_h100_llama2_70b.csv")
    gpu = _gpu()
    errs, kinds = [], []
    for r in df.itertuples(index=False):
        tp, h, nh, nkv, f = r.tensor_parallel, r.n_embd, r.n_head, r.n_kv_head, r.n_expanded_embd
        hd = h // nh
        shapes = {
            "attn_pre_proj_ms_median": ((nh + 2 * nkv) * hd // tp, h),
            "attn_post_proj_ms_median": (h, nh * hd // tp),
            "mlp_up_proj_ms_median": (2 * f // tp, h),
            "mlp_down_proj_ms_median": (h, f // tp),
        }
        for col, (n, k) in shapes.items():
            got = gpu.gemm_seconds(int(r.num_tokens), int(n), int(k))
            ref = getattr(r, col) * 1e-3
            errs.append(abs(got - ref) / ref)
            kinds.append(col)
    return np.array(errs), np.array(kinds)


def test_median_error_over_the_whole_csv_is_within_fifteen_percent(shared: Path) -> None:
    errs, kinds = _csv_errors(shared)
    assert len(errs) == 4 * 1044
    assert np.median(errs) <= 0.15
    for k in np.unique(kinds):  # every GEMM of the layer, not only on average
        assert np.median(errs[kinds == k]) <= 0.15


def test_the_two_regimes() -> None:
    gpu = _gpu()
    flat = [gpu.gemm_seconds(m, 57344, 8192) for m in (1, 2, 4, 8)]
    assert max(flat) / min(flat) < 1.05  # weight streaming: flat at a few tokens
    big = gpu.gemm_seconds(4096, 57344, 8192)
    assert 2 * 4096 * 57344 * 8192 / big / gpu.cfg.peak_flops == pytest.approx(0.7, abs=0.07)


MODELS = ["llama-3.1-8b", "qwen2.5-32b", "llama-3-70b", "opt-175b", "llama-3.1-405b"]


@settings(max_examples=40, deadline=None)
@given(model=st.sampled_from(MODELS), m=st.integers(1, 8192), tp=st.sampled_from([1, 2, 4, 8]),
       name=st.sampled_from(["h100", "a100"]))
def test_other_models_never_beat_the_roofline(model: str, m: int, tp: int, name: str) -> None:
    gpu = _gpu(name)
    for op in layer_linear_ops(load_model(model), m, tp):
        t = gpu.gemm_seconds(op.m, op.n, op.k)
        floor = max(op.flops / gpu.cfg.peak_flops, 2.0 * op.k * op.n / gpu.cfg.hbm_bandwidth)
        assert t >= floor
        assert t <= 20 * floor + 1e-4  # and not absurdly slow either
        assert gpu.gemm_seconds(op.m + 64, op.n, op.k) >= t * (1 - 1e-12)  # more tokens never faster


def test_allreduce_attention_and_capacity() -> None:
    gpu = _gpu()
    assert gpu.allreduce_seconds(1e6, 1) == 0.0
    assert gpu.allreduce_seconds(1e8, 8) > gpu.allreduce_seconds(1e8, 2) > 0
    assert gpu.allreduce_seconds(1e8, 8) >= 2 * 7 / 8 * 1e8 / gpu.nvlink.cfg.bandwidth
    t = gpu.attention_seconds(np.array([0.0, 1e12]), np.array([0.0, 1e9]))
    assert t[0] == 0 and t[1] >= 1e9 / gpu.cfg.hbm_bandwidth
    model = load_model("llama-3-70b")
    assert gpu.kv_capacity_bytes(model, tp=1) < gpu.kv_capacity_bytes(model, tp=4) < 80 * 2**30
    assert gpu.kv_capacity_bytes(load_model("llama-3.1-405b"), tp=1) == 0.0  # 810 GB of weights
