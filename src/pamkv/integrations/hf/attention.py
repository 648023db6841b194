"""The ``pamkv`` attention function for transformers' attention interface, and its registration.

transformers' decoder layers call ``attention_interface(module, query, key, value, attention_mask,
scaling=..., dropout=..., **kwargs)`` with ``query [batch, heads, q, head_dim]`` right after the
cache's ``update``. :func:`pam_attention` hands the call to the :class:`~pamkv.integrations.hf.cache.PamLayer`
whose ``update`` just ran (same layer index), which computes PAMattention over the tiered store's
device parts. Without a PAM cache it computes PAMattention over the ``key``/``value`` it was given as
one part — still exact attention, just without tiers.

The mask builder registered beside it is transformers' boolean ``sdpa_mask`` (``[batch, 1, q, kv]``,
True = visible, or None for a plain causal mask), so padding and sliding windows reach the function.
"""

from __future__ import annotations

from typing import Any

import torch

from pamkv.attention import partial_attention_multi
from pamkv.integrations.hf.cache import ATTN_NAME, current_layer


def pam_attention(module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                  attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
                  **kwargs: Any) -> tuple[torch.Tensor, None]:
    """PAMattention in a transformers forward pass: ``[batch, q, heads, head_dim]`` and no weights."""
    if dropout:
        raise ValueError("pamkv attention does not implement attention dropout (use eval mode)")
    scale = float(scaling) if scaling is not None else query.shape[-1] ** -0.5
    if attention_mask is not None and attention_mask.dtype != torch.bool:
        raise ValueError("pamkv attention needs a boolean mask; register it with pamkv.integrations.hf.register()")
    layer = current_layer()
    if layer is not None and layer.pending:
        if layer.layer_idx != getattr(module, "layer_idx", None):
            raise RuntimeError(f"pamkv attention of layer {getattr(module, 'layer_idx', None)} follows the cache "
                               f"update of layer {layer.layer_idx}; the model calls them out of order")
        return layer.attend(query, attention_mask, scale), None
    return _single_part(query, key, value, attention_mask, scale), None


def _single_part(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None,
                 scale: float) -> torch.Tensor:
    """PAMattention with all of ``key``/``value`` as one part (no PAM cache behind the call)."""
    batch, _, nq, _ = query.shape
    tokens = key.shape[2]
    outs = []
    for b in range(batch):
        q = query[b].transpose(0, 1)
        k = key[b].transpose(0, 1)
        v = value[b].transpose(0, 1)
        if mask is None:
            p = partial_attention_multi(q, k, v, scale, causal=True)
        else:
            p = partial_attention_multi(q, k, v, scale, mask=mask[b, 0, :, :tokens])
        outs.append(p.out)
    return torch.stack(outs).to(query.dtype)


def register() -> str:
    """Register the ``pamkv`` attention function and its mask builder with transformers; returns the name.

    Use it with ``from_pretrained(..., attn_implementation="pamkv")`` or
    ``model.set_attn_implementation("pamkv")``. Idempotent.
    """
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTN_NAME, pam_attention)
    AttentionMaskInterface.register(ATTN_NAME, sdpa_mask)
    return ATTN_NAME
