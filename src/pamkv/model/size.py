"""Sizes of a model: parameters, weight bytes and KV-cache bytes per token."""

from __future__ import annotations

from pathlib import Path

from pamkv.config import load
from pamkv.config.models import ModelConfig
from pamkv.errors import UserError

DTYPE_BYTES: dict[str, float] = {
    "fp32": 4,
    "float32": 4,
    "fp16": 2,
    "float16": 2,
    "bf16": 2,
    "bfloat16": 2,
    "fp8": 1,
    "int8": 1,
    "int4": 0.5,
}


def dtype_bytes(dtype: str) -> float:
    """Bytes per element of a dtype name ('fp16', 'bf16', 'fp8', 'int4', ...)."""
    try:
        return DTYPE_BYTES[dtype.lower()]
    except KeyError:
        raise UserError(f"unknown dtype '{dtype}' (known: {', '.join(DTYPE_BYTES)})") from None


def load_model(name_or_path: str | Path) -> ModelConfig:
    """A model preset by name (``pamkv models`` lists them) or a model YAML file by path."""
    return load(ModelConfig, "models", name_or_path)


def kv_bytes_per_token_per_layer(model: ModelConfig, dtype: str = "fp16") -> float:
    """Bytes of K and V that one token adds to one layer's cache."""
    return 2 * model.kv_heads * model.head_dim * dtype_bytes(dtype)


def kv_bytes_per_token(model: ModelConfig, dtype: str = "fp16") -> float:
    """Bytes of K and V that one token adds to the cache over all layers."""
    return model.layers * kv_bytes_per_token_per_layer(model, dtype)


def _layer_params(model: ModelConfig) -> int:
    q = model.hidden * model.heads * model.head_dim
    kv = 2 * model.hidden * model.kv_heads * model.head_dim
    o = model.heads * model.head_dim * model.hidden
    bias = (model.heads + 2 * model.kv_heads) * model.head_dim if model.qkv_bias else 0
    ffn = (3 if model.gated_mlp else 2) * model.hidden * model.ffn_hidden
    norms = 2 * model.hidden
    return q + kv + o + bias + ffn + norms


def param_count(model: ModelConfig) -> int:
    """Parameters of the model: layers, embedding, LM head (unless tied) and final norm."""
    embed = model.vocab * model.hidden
    head = 0 if model.tied_embeddings else model.vocab * model.hidden
    return model.layers * _layer_params(model) + embed + head + model.hidden


def weight_bytes(model: ModelConfig, dtype: str = "fp16", tp: int = 1, pp: int = 1) -> float:
    """Weight bytes held by one GPU under tensor parallelism ``tp`` and pipeline parallelism ``pp``.

    Layers are split evenly over pipeline stages (rounded up), each layer's matrices over the tensor
    group; the embedding and LM head are counted on every stage, an upper bound of their placement.
    """
    if tp < 1 or pp < 1:
        raise UserError(f"tp and pp must be >= 1 (got tp={tp}, pp={pp})")
    layers_here = -(-model.layers // pp)
    embed = model.vocab * model.hidden * (1 if model.tied_embeddings else 2)
    return (layers_here * _layer_params(model) + embed) / tp * dtype_bytes(dtype)
