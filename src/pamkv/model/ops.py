"""Operators of one transformer step, as GEMM shapes with FLOPs and bytes moved.

Shapes follow the usual M x K times K x N convention: M = tokens in the batch, K = input width,
N = output width, all on one GPU after a tensor-parallel split of ``tp`` (Megatron-style: QKV and
FFN-up split by columns, O and FFN-down by rows). Bytes are 16-bit unless a dtype is given and count
weights plus input and output activations once (what a roofline needs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pamkv.config.models import ModelConfig
from pamkv.model.size import dtype_bytes, kv_bytes_per_token_per_layer


@dataclass(frozen=True)
class Op:
    """One operator on one GPU: a GEMM (m, n, k) or attention over a KV cache."""

    name: str
    kind: Literal["gemm", "attention"]
    flops: float
    bytes: float
    m: int = 0
    n: int = 0
    k: int = 0


def _gemm(name: str, m: int, n: int, k: int, dtype: str) -> Op:
    b = dtype_bytes(dtype)
    return Op(name, "gemm", 2.0 * m * n * k, (k * n + m * k + m * n) * b, m, n, k)


def layer_linear_ops(model: ModelConfig, tokens: int, tp: int = 1, dtype: str = "fp16") -> list[Op]:
    """The four GEMMs of one layer (fused QKV, O-projection, FFN up[+gate], FFN down) for ``tokens``."""
    hd = model.head_dim
    qkv_n = (model.heads + 2 * model.kv_heads) * hd // tp
    up_n = (2 if model.gated_mlp else 1) * model.ffn_hidden // tp
    return [
        _gemm("qkv_proj", tokens, qkv_n, model.hidden, dtype),
        _gemm("o_proj", tokens, model.hidden, model.heads * hd // tp, dtype),
        _gemm("ffn_up", tokens, up_n, model.hidden, dtype),
        _gemm("ffn_down", tokens, model.hidden, model.ffn_hidden // tp, dtype),
    ]


def lm_head_op(model: ModelConfig, tokens: int, tp: int = 1, dtype: str = "fp16") -> Op:
    """The LM head GEMM for ``tokens`` sampled positions (vocabulary split over the tensor group)."""
    return _gemm("lm_head", tokens, model.vocab // tp, model.hidden, dtype)


def attention_op(
    model: ModelConfig, query_tokens: int, context_tokens: float, tp: int = 1, dtype: str = "fp16"
) -> Op:
    """Attention of one layer: ``query_tokens`` queries each over ``context_tokens`` cached tokens.

    FLOPs are QK^T plus SV (4 * q * ctx * heads * head_dim); bytes are the KV read once plus Q and O.
    For a causal prefill of n tokens pass ``context_tokens = (n + 1) / 2``, the mean span.
    """
    heads = model.heads / tp
    flops = 4.0 * query_tokens * context_tokens * heads * model.head_dim
    kv = context_tokens * kv_bytes_per_token_per_layer(model, dtype) / tp
    qo = 2 * query_tokens * heads * model.head_dim * dtype_bytes(dtype)
    return Op("attention", "attention", flops, kv + qo, query_tokens, int(context_tokens), model.head_dim)


def prefill_ops(model: ModelConfig, tokens: int, tp: int = 1, dtype: str = "fp16") -> list[Op]:
    """Operators of one layer prefilling ``tokens`` fresh tokens of one sequence (causal attention)."""
    return [*layer_linear_ops(model, tokens, tp, dtype), attention_op(model, tokens, (tokens + 1) / 2, tp, dtype)]


def decode_ops(model: ModelConfig, batch: int, tp: int = 1, dtype: str = "fp16") -> list[Op]:
    """The GPU GEMMs of one layer of one decode step of ``batch`` requests (attention priced elsewhere)."""
    return layer_linear_ops(model, batch, tp, dtype)
