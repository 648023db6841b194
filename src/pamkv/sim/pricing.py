"""Prices one iteration: seconds, per-resource busy time and energy, from the hardware models.

Aggregation, stated once (docs/sim.md):

* **Pipeline parallelism** — the batch runs as ``pp`` micro-batches in flight, one per stage, so a
  decode step of every request takes the time of all layers at micro-batch ``B/pp`` (a token per
  request per full pass; stages overlap across micro-batches). Each tier's devices are split evenly
  over the stages. A prefill iteration runs its prompts as up to ``pp`` micro-batches with the
  GPipe fill/drain bubble (one prompt alone gets no overlap).
* **Layers** — all layers are alike, so a step prices one layer and multiplies.
* **Devices** — a tier's selected tokens spread over its devices by the fine-grained split
  (PAMattention: request x KV head x block), so each device does ``reads / devices``; with the
  coarse per-head split (no PAMattention) the busiest device does more (see :func:`coarse_imbalance`).
* **Order inside a layer** — GPU QKV projection, then attention on every tier in parallel (the
  slowest tier decides), partials to HBM-PIM and merged there, then O-projection and FFN on the GPU.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Protocol

import numpy as np

from pamkv.config.models import ModelConfig
from pamkv.model import attention_op, kv_bytes_per_token_per_layer, layer_linear_ops, lm_head_op


class TierModel(Protocol):
    """Timing and energy of one memory tier (all its devices alike)."""

    name: str
    devices: int
    pim: bool

    def attention_seconds(self, tokens_per_device: np.ndarray, token_bytes: float, coarse: bool) -> np.ndarray:
        """Seconds for one device to attend over ``tokens_per_device`` selected tokens of one layer."""
        ...

    def fetch_seconds(self, tokens_per_device: np.ndarray, token_bytes: float) -> np.ndarray:
        """Seconds for one device to read selected tokens out to the host (no PIM), before the link."""
        ...

    def link_seconds(self, nbytes: np.ndarray) -> np.ndarray:
        """Seconds to move ``nbytes`` between this tier (all its links together) and the GPUs."""
        ...

    def energy_j(self, tokens: np.ndarray, token_bytes: float, computed: bool) -> np.ndarray:
        """Joules to read ``tokens`` (and compute attention over them in place when ``computed``)."""
        ...

    def link_energy_j(self, nbytes: np.ndarray) -> np.ndarray:
        """Joules to move ``nbytes`` over this tier's link."""
        ...


class GpuModel(Protocol):
    """Timing and energy of the host GPUs."""

    def gemm_seconds(self, m: int, n: int, k: int) -> float:
        """Seconds of one 16-bit GEMM (M x K times K x N) on one GPU."""
        ...

    def attention_seconds(self, flops: np.ndarray, nbytes: np.ndarray) -> np.ndarray:
        """Seconds of a FlashAttention/FlashDecoding kernel doing ``flops`` over ``nbytes`` of KV."""
        ...

    def allreduce_seconds(self, nbytes: float, gpus: int) -> float:
        """Seconds of a ring all-reduce of ``nbytes`` over ``gpus`` GPUs (NVLink)."""
        ...

    def energy_j(self, flops: float, nbytes: float) -> float:
        """Joules of ``flops`` 16-bit FLOPs that stream ``nbytes`` from HBM."""
        ...


@dataclass(frozen=True)
class PricerOptions:
    """What the system does, as far as pricing goes."""

    tp: int
    pp: int
    attention_on_gpu: bool
    pamattention: bool
    dtype: str = "fp16"
    reduce_seconds_per_partial: float = 0.0
    """HBM-PIM reduction-unit time per merged partial (per request x head)."""


class SystemPricer:
    """Implements the engine's ``Pricer`` protocol for one system and model."""

    def __init__(self, model: ModelConfig, gpu: GpuModel, tiers: Sequence[TierModel], opts: PricerOptions) -> None:
        self.model, self.gpu, self.tiers, self.opts = model, gpu, tiers, opts
        self.resource_names = ["gpu", *[t.name for t in tiers]]
        self.token_bytes = kv_bytes_per_token_per_layer(model, opts.dtype)
        self.devices_per_stage = np.array([max(1.0, t.devices / opts.pp) for t in tiers])
        self._gpu_layer = cache(self._gpu_layer_uncached)
        self.links = [(a, b) for a in range(len(tiers)) for b in range(len(tiers)) if a != b]
        """Tier pairs (source, destination) in the order the KV side reports migrated bytes."""

    # --- GPU parts -------------------------------------------------------------------------------
    def _gpu_layer_uncached(self, m: int) -> tuple[float, float, float]:
        """(seconds, flops, bytes) of one layer's GEMMs and TP all-reduces at ``m`` tokens, one GPU."""
        ops = layer_linear_ops(self.model, m, self.opts.tp, self.opts.dtype)
        seconds = sum(self.gpu.gemm_seconds(o.m, o.n, o.k) for o in ops)
        if self.opts.tp > 1:  # Megatron: one all-reduce after attention, one after the FFN
            seconds += 2 * self.gpu.allreduce_seconds(m * self.model.hidden * 2.0, self.opts.tp)
        return seconds, sum(o.flops for o in ops), sum(o.bytes for o in ops)

    def _lm_head(self, m: int) -> tuple[float, float, float]:
        op = lm_head_op(self.model, m, self.opts.tp, self.opts.dtype)
        return self.gpu.gemm_seconds(op.m, op.n, op.k), op.flops, op.bytes

    # --- decode --------------------------------------------------------------------------------------
    def decode(
        self, batch: int, reads: np.ndarray, context: np.ndarray, imbalance: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Seconds per step ``[k]``, busy seconds ``[k, resources]`` and joules ``[k]`` of decode steps.

        ``reads[k, tier]``: tokens read per layer over the whole batch at each step; ``context[k]``:
        tokens in the cache over the batch (only GPU attention needs it); ``imbalance[tier]``: the
        busiest bank group's load over an even spread's (from the intra-device mapping; 1 = even).
        """
        o = self.opts
        m = max(1, math.ceil(batch / o.pp))
        gpu_s, gpu_flops, gpu_bytes = self._gpu_layer(m)
        head_s, head_flops, head_bytes = self._lm_head(m)
        steps = reads.shape[0]
        per_stage = reads / o.pp  # tokens per layer, one micro-batch
        if o.attention_on_gpu:
            attn_s, tier_busy, attn_j = self._gpu_attention(m, per_stage)
        else:
            attn_s, tier_busy, attn_j = self._pim_attention(m, per_stage, imbalance)
        layers = self.model.layers
        # All layers of one micro-batch (pp stages x layers/pp each), plus the LM head once.
        step_s = layers * (gpu_s + attn_s) + head_s
        busy = np.zeros((steps, len(self.resource_names)))
        busy[:, 0] = layers * gpu_s + head_s
        busy[:, 1:] = layers * tier_busy
        # Every layer runs once per micro-batch on each of its stage's tp GPUs.
        gpu_j = o.tp * o.pp * self.gpu.energy_j(layers * gpu_flops + head_flops, layers * gpu_bytes + head_bytes)
        energy = gpu_j + o.pp * layers * attn_j
        return step_s, busy, energy

    def _pim_attention(
        self, m: int, per_stage: np.ndarray, imbalance: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per layer: seconds, per-tier busy seconds, joules of attention in place on every tier.

        A device is as slow as its busiest bank group: with an uneven intra-device spread it takes the
        time of an even spread of ``imbalance`` times its tokens.
        """
        o, model = self.opts, self.model
        steps = per_stage.shape[0]
        times = np.zeros((steps, len(self.tiers)))
        energy = np.zeros(steps)
        partial_bytes = m * model.heads * (model.head_dim + 2) * 2.0  # o (16-bit) + lse per request x head
        for t, tier in enumerate(self.tiers):
            tokens = per_stage[:, t]
            on_device = tokens / self.devices_per_stage[t]
            if imbalance is not None:
                on_device = on_device * imbalance[t]
            busy = tier.attention_seconds(on_device, self.token_bytes, coarse=not o.pamattention)
            active = tokens > 0
            if t > 0:  # partials travel to HBM-PIM (tier 0) for the reduction
                busy = busy + np.where(active, tier.link_seconds(np.full(steps, partial_bytes)), 0.0)
            times[:, t] = np.where(active, busy, 0.0)
            energy += tier.energy_j(tokens, self.token_bytes, computed=True)
            if t > 0:
                energy += np.where(active, tier.link_energy_j(np.full(steps, partial_bytes)), 0.0)
        partials = m * model.heads * (times > 0).sum(axis=1)
        if o.pamattention:
            merge = partials * o.reduce_seconds_per_partial  # in the HBM-PIM reduction units
        else:
            # Without PAMattention's hierarchical reduction, every device's partials go to the host
            # and are merged there: the host gathers them over the tier-0 link.
            gather = self.tiers[0].link_seconds(partials * (model.head_dim + 2) * 2.0 * self.devices_per_stage[0])
            merge = gather + partials * o.reduce_seconds_per_partial
        return times.max(axis=1) + merge, times, energy

    def _gpu_attention(self, m: int, per_stage: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per layer: GPU FlashDecoding over HBM-resident KV; lower tiers' KV fetched over their links."""
        o, model = self.opts, self.model
        steps = per_stage.shape[0]
        busy = np.zeros((steps, len(self.tiers)))
        energy = np.zeros(steps)
        total = per_stage.sum(axis=1)
        op = attention_op(model, 1, 1.0, o.tp, o.dtype)  # per query token and cached token, one GPU
        kernel = self.gpu.attention_seconds(total * op.flops, total * self.token_bytes / o.tp)
        fetch = np.zeros(steps)
        for t, tier in enumerate(self.tiers):
            tokens = per_stage[:, t]
            if t == 0:
                busy[:, t] = kernel
                energy += tier.energy_j(tokens, self.token_bytes, computed=False)
                continue
            on_device = tokens / self.devices_per_stage[t]
            nbytes = tokens * self.token_bytes
            read = tier.fetch_seconds(on_device, self.token_bytes)
            move = tier.link_seconds(nbytes)
            busy[:, t] = read + move
            fetch = np.maximum(fetch, read + move)
            energy += tier.energy_j(tokens, self.token_bytes, computed=False) + tier.link_energy_j(nbytes)
        energy += o.tp * self.gpu.energy_j(float(op.flops), 0.0) * total
        # DeepSpeed-style prefetch: the next layer's offloaded KV streams in while this layer computes.
        return np.maximum(kernel, fetch), busy, energy

    # --- prefill ---------------------------------------------------------------------------------
    def prefill(self, chunks: list[int], contexts: list[int]) -> tuple[float, np.ndarray, float]:
        """Seconds, busy seconds per resource and joules of prefilling ``chunks`` prompt tokens.

        ``contexts[i]``: tokens of request i in the cache after this chunk (chunked prefill attends to
        what came before). The KV written out to the tiers streams layer by layer beside the compute.
        """
        o, model = self.opts, self.model
        tokens = int(sum(chunks))
        gpu_s, gpu_flops, gpu_bytes = self._gpu_layer(tokens)
        attn_flops = sum(attention_op(model, c, ctx - c + (c + 1) / 2, o.tp, o.dtype).flops
                         for c, ctx in zip(chunks, contexts, strict=True))
        attn_bytes = sum(attention_op(model, c, ctx, o.tp, o.dtype).bytes
                         for c, ctx in zip(chunks, contexts, strict=True))
        attn_s = float(self.gpu.attention_seconds(np.array([attn_flops]), np.array([attn_bytes]))[0])
        head_s, head_flops, head_bytes = self._lm_head(len(chunks))
        layer_s = gpu_s + attn_s
        # Pipeline parallelism: the prompts go through the stages as up to pp micro-batches, GPipe
        # style — (micro-batches + pp - 1) stage slots of 1/(pp x micro-batches) of the work each.
        micro = max(1, min(o.pp, len(chunks)))
        seconds = model.layers * layer_s * (micro + o.pp - 1) / (o.pp * micro) + head_s
        busy = np.zeros(len(self.resource_names))
        busy[0] = seconds
        flops = model.layers * (gpu_flops + attn_flops) + head_flops
        energy = o.tp * self.gpu.energy_j(flops, model.layers * (gpu_bytes + attn_bytes) + head_bytes)
        return seconds, busy, energy

    # --- migration -----------------------------------------------------------------------------------
    def migration(self, link_bytes: np.ndarray) -> tuple[float, float]:
        """Seconds and joules to migrate ``link_bytes[i]`` over tier pair ``self.links[i]`` (links in parallel)."""
        links = self.links
        seconds = 0.0
        energy = 0.0
        for nbytes, (src, dst) in zip(link_bytes.tolist(), links, strict=True):
            if nbytes <= 0:
                continue
            slow = self.tiers[max(src, dst)]  # the path goes through the lower tier's link
            seconds = max(seconds, float(slow.link_seconds(np.array([nbytes]))[0]))
            tokens = nbytes / (self.token_bytes * self.model.layers)
            for t in (src, dst):
                energy += float(self.tiers[t].energy_j(np.array([tokens * self.model.layers]), self.token_bytes,
                                                       computed=False)[0])
            energy += float(slow.link_energy_j(np.array([nbytes]))[0])
        return seconds, energy
