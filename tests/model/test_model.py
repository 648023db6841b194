"""Model presets: published shapes, parameter counts, KV bytes and operator FLOPs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pamkv.config import list_presets
from pamkv.model import (
    attention_op,
    kv_bytes_per_token,
    layer_linear_ops,
    load_model,
    param_count,
    weight_bytes,
)

REQUIRED = [
    "qwen2.5-32b", "llama-3-70b", "opt-175b", "llama-2-7b", "llama-2-13b",
    "llama-2-70b", "llama-3.1-8b", "llama-3.1-405b", "gpt-3-175b",
]


def test_required_presets_exist() -> None:
    assert set(REQUIRED) <= set(list_presets("models"))


@pytest.mark.parametrize(
    ("name", "billions"),
    # Published parameter counts (model cards / papers); our count from the shapes within 2%.
    [("llama-2-7b", 6.74), ("llama-2-13b", 13.0), ("llama-2-70b", 69.0), ("llama-3-70b", 70.6),
     ("llama-3.1-8b", 8.03), ("llama-3.1-405b", 405.9), ("qwen2.5-32b", 32.8), ("opt-175b", 175.0),
     ("gpt-3-175b", 175.0), ("smollm2-135m", 0.135)],
)
def test_param_count_matches_published(name: str, billions: float) -> None:
    assert param_count(load_model(name)) / 1e9 == pytest.approx(billions, rel=0.02)


@pytest.mark.parametrize(
    ("name", "kv_bytes"),
    # 2 (K,V) x layers x kv_heads x head_dim x 2 bytes.
    [("llama-3-70b", 2 * 80 * 8 * 128 * 2), ("opt-175b", 2 * 96 * 96 * 128 * 2),
     ("qwen2.5-32b", 2 * 64 * 8 * 128 * 2), ("llama-2-7b", 2 * 32 * 32 * 128 * 2)],
)
def test_kv_bytes_per_token(name: str, kv_bytes: int) -> None:
    assert kv_bytes_per_token(load_model(name)) == kv_bytes


def test_paper_capacity_example() -> None:
    # PAPER.md §1: 256 OPT-175B requests x 2048 tokens need about 2.3 TB of KV (decimal TB).
    total = 256 * 2048 * kv_bytes_per_token(load_model("opt-175b"))
    assert total / 1e12 == pytest.approx(2.47, rel=0.1)


def test_fp8_halves_kv() -> None:
    m = load_model("llama-3-70b")
    assert kv_bytes_per_token(m, "fp8") * 2 == kv_bytes_per_token(m, "fp16")


@given(tp=st.sampled_from([1, 2, 4, 8]), pp=st.sampled_from([1, 2, 4]))
def test_weights_split_over_parallel_groups(tp: int, pp: int) -> None:
    m = load_model("llama-3-70b")
    full = weight_bytes(m)
    split = weight_bytes(m, tp=tp, pp=pp)
    assert split <= full / tp + 1
    assert split * tp * pp >= full * 0.99  # nothing lost, embeddings may repeat per stage


@given(tokens=st.integers(1, 4096), tp=st.sampled_from([1, 2, 4, 8]))
def test_linear_flops_scale(tokens: int, tp: int) -> None:
    m = load_model("llama-2-70b")
    ops = {o.name: o for o in layer_linear_ops(m, tokens, tp)}
    # FLOPs = 2 x tokens x layer weights / tp (no biases in LLaMA).
    layer_weights = (m.hidden * (m.heads + 2 * m.kv_heads) * m.head_dim + m.heads * m.head_dim * m.hidden
                     + 3 * m.hidden * m.ffn_hidden)
    assert sum(o.flops for o in ops.values()) == pytest.approx(2 * tokens * layer_weights / tp)
    # The reference GPU table's fused QKV width for LLaMA-2-70B at TP 1 is (64 + 16) x 128.
    assert ops["qkv_proj"].n * tp == (64 + 2 * 8) * 128


def test_attention_op_reads_kv_once() -> None:
    m = load_model("llama-3-70b")
    op = attention_op(m, 1, 4096)
    assert op.flops == 4 * 4096 * 64 * 128
    assert op.bytes >= 4096 * 2 * 8 * 128 * 2
