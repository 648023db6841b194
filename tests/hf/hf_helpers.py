"""A tiny randomly initialised LLaMA and tier settings that force every tier to hold part of the KV."""

from __future__ import annotations

from typing import Any

import torch

from pamkv.integrations.hf.config import HFTier, PamHFConfig


def tiny_llama(layers: int = 2, seed: int = 0) -> Any:
    """A seeded LLaMA: hidden 64, 4 heads / 2 KV heads (head dim 16), vocab 256, eval mode, float32.

    ``initializer_range`` 0.1 (transformers' default is 0.02) spreads the logits so greedy choices are
    not near-ties that float rounding could flip (the smallest top-1 margin over the test is ~1e-3,
    against ~1e-6 of rounding difference between PAMattention and sdpa).
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                      initializer_range=0.1, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg).eval()
    model.generation_config.pad_token_id = 0
    return model


def prompt(n: int = 300, seed: int = 1, batch: int = 1) -> torch.Tensor:
    """Random token ids ``[batch, n]`` (ids 3..255: no special tokens)."""
    return torch.randint(3, 256, (batch, n), generator=torch.Generator().manual_seed(seed))


def small_tiers(**extra: Any) -> PamHFConfig:
    """Three tiers of 3, 5 and enough blocks per layer: a 364-token request spreads over all three."""
    return PamHFConfig(
        tiers=[HFTier(name="hbm", capacity_blocks=3, throughput_gflops=64000.0),
               HFTier(name="ddr", capacity_blocks=5, throughput_gflops=8160.0),
               HFTier(name="ssd", share=1.0, throughput_gflops=144.0)],
        **extra,
    )
