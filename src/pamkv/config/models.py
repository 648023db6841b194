"""Schema of an LLM's architecture, as its published config gives it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ModelConfig(BaseModel):
    """A decoder-only transformer's shape. Every preset cites its published config in ``source``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Preset name, e.g. 'llama-3-70b'.")
    family: Literal["llama", "qwen2", "opt", "gpt3", "mistral"] = Field(description="Architecture family.")
    layers: int = Field(gt=0, description="Decoder layers.")
    hidden: int = Field(gt=0, description="Model (embedding) width d_model.")
    heads: int = Field(gt=0, description="Query heads per layer.")
    kv_heads: int = Field(gt=0, description="Key/value heads per layer (== heads without GQA).")
    head_dim: int = Field(gt=0, description="Width of one attention head.")
    ffn_hidden: int = Field(gt=0, description="FFN intermediate width.")
    gated_mlp: bool = Field(description="SwiGLU-style gated MLP (three matrices) instead of two.")
    vocab: int = Field(gt=0, description="Vocabulary size (embedding and LM-head rows).")
    max_context: int = Field(gt=0, description="Longest context the published model supports, tokens.")
    tied_embeddings: bool = Field(default=False, description="LM head shares the embedding matrix.")
    qkv_bias: bool = Field(default=False, description="Q/K/V projections carry a bias.")
    source: str = Field(min_length=1, description="Where the numbers come from (config file, paper table).")

    @model_validator(mode="after")
    def _heads_divide(self) -> ModelConfig:
        if self.heads % self.kv_heads:
            raise ValueError(f"heads ({self.heads}) must be a multiple of kv_heads ({self.kv_heads})")
        return self
