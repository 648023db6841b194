"""LLM specs: shapes, bytes and FLOPs of a decoder-only transformer, with TP/PP splits."""

from pamkv.config.models import ModelConfig
from pamkv.model.ops import Op, attention_op, decode_ops, layer_linear_ops, lm_head_op, prefill_ops
from pamkv.model.size import (
    DTYPE_BYTES,
    dtype_bytes,
    kv_bytes_per_token,
    kv_bytes_per_token_per_layer,
    load_model,
    param_count,
    weight_bytes,
)

__all__ = [
    "DTYPE_BYTES",
    "ModelConfig",
    "Op",
    "attention_op",
    "decode_ops",
    "dtype_bytes",
    "kv_bytes_per_token",
    "kv_bytes_per_token_per_layer",
    "layer_linear_ops",
    "lm_head_op",
    "load_model",
    "param_count",
    "prefill_ops",
    "weight_bytes",
]
