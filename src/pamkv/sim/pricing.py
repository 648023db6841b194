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

A call prices a few steps, so where the tiers offer their prices on Python floats
(:class:`ScalarTierPrices`) the pricer evaluates them step by step; numpy's per-call overhead would cost
more than the arithmetic. The numpy path (one call per tier over all steps) gives the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Protocol

import numpy as np

from pamkv.config.models import ModelConfig
from pamkv.model import attention_op, kv_bytes_per_token_per_layer, layer_linear_ops, lm_head_op

FLOAT_STEPS_PIM = 96
"""Busy (step, tier) entries up to which a decode call is priced on floats, step by step; beyond, one set of
numpy calls per tier is cheaper (same results). Attention in place."""
FLOAT_STEPS_GPU = 768
"""The same with attention on the GPUs (whose numpy path is slower: a DRAM stream model per call)."""


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


class ScalarTierPrices(Protocol):
    """A tier's prices on Python floats, one count at a time, each equal to its :class:`TierModel` method.

    A tier may offer them (``scalar_prices(token_bytes, coarse)``); the pricer then prices a few steps
    in a Python loop instead of a dozen numpy calls per tier, with the same results.
    """

    @property
    def attention(self) -> Callable[[float], float]:
        """Tokens per device -> seconds of attention in place (``attention_seconds``)."""
        ...

    @property
    def fetch(self) -> Callable[[float], float]:
        """Tokens per device -> seconds to read them out, before the link (``fetch_seconds``)."""
        ...

    @property
    def energy(self) -> Callable[[float], float]:
        """Tokens -> joules to read and attend over them in place (``energy_j``, computed)."""
        ...

    @property
    def read_energy(self) -> Callable[[float], float]:
        """Tokens -> joules to read them out (``energy_j``, not computed)."""
        ...

    @property
    def link(self) -> Callable[[float], float]:
        """Bytes -> seconds over this tier's links (``link_seconds``)."""
        ...

    @property
    def link_energy(self) -> Callable[[float], float]:
        """Bytes -> joules over this tier's links (``link_energy_j``)."""
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
class MicroBatchCosts:
    """What a decode step at one micro-batch size costs whatever its reads (see :meth:`SystemPricer.decode`)."""

    gpu_s: float
    """Seconds of one layer's GEMMs and all-reduces."""
    head_s: float
    """Seconds of the LM head."""
    gpu_j: float
    """Joules of all GEMMs of a step on every GPU."""
    partial_s: tuple[float, ...]
    """Per tier: seconds to send its partials to HBM-PIM (0 for HBM-PIM itself)."""
    partial_j: tuple[float, ...]
    """Per tier: joules of that transfer."""
    merge_s: tuple[float, ...]
    """Seconds to merge the partials of a layer, by the number of tiers that attended."""


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
        self._lm_head = cache(self._lm_head_uncached)
        self._micro = cache(self._micro_uncached)
        self.links = [(a, b) for a in range(len(tiers)) for b in range(len(tiers)) if a != b]
        """Tier pairs (source, destination) in the order the KV side reports migrated bytes."""
        self._dps: list[float] = self.devices_per_stage.tolist()
        self._prices = self._scalar_prices()
        # Attention is linear in its queries and cached tokens: FLOPs per query x cached token, bytes per
        # cached token, bytes per query (one GPU).
        self._attention_unit = (attention_op(model, 1, 1.0, opts.tp, opts.dtype).flops,
                                attention_op(model, 0, 1.0, opts.tp, opts.dtype).bytes,
                                attention_op(model, 1, 0.0, opts.tp, opts.dtype).bytes)
        maker = getattr(gpu, "attention_seconds_fn", None)
        self._gpu_attention_fn: Callable[[float, float], float] | None = maker() if callable(maker) else None

    def _scalar_prices(self) -> list[ScalarTierPrices] | None:
        """Every tier's prices on Python floats, or None if a tier has none (then numpy prices every step)."""
        prices = []
        for tier in self.tiers:
            maker = getattr(tier, "scalar_prices", None)
            found = maker(self.token_bytes, not self.opts.pamattention) if callable(maker) else None
            if found is None:
                return None
            prices.append(found)
        return prices

    # --- GPU parts -------------------------------------------------------------------------------
    def _gpu_layer_uncached(self, m: int) -> tuple[float, float, float]:
        """(seconds, flops, bytes) of one layer's GEMMs and TP all-reduces at ``m`` tokens, one GPU."""
        ops = layer_linear_ops(self.model, m, self.opts.tp, self.opts.dtype)
        seconds = sum(self.gpu.gemm_seconds(o.m, o.n, o.k) for o in ops)
        if self.opts.tp > 1:  # Megatron: one all-reduce after attention, one after the FFN
            seconds += 2 * self.gpu.allreduce_seconds(m * self.model.hidden * 2.0, self.opts.tp)
        return seconds, sum(o.flops for o in ops), sum(o.bytes for o in ops)

    def _lm_head_uncached(self, m: int) -> tuple[float, float, float]:
        """(seconds, flops, bytes) of the LM head for ``m`` sampled tokens, one GPU."""
        op = lm_head_op(self.model, m, self.opts.tp, self.opts.dtype)
        return self.gpu.gemm_seconds(op.m, op.n, op.k), op.flops, op.bytes

    # --- decode --------------------------------------------------------------------------------------
    def decode(
        self, batch: int | np.ndarray, reads: np.ndarray, context: np.ndarray, imbalance: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Seconds per step ``[k]``, busy seconds ``[k, resources]`` and joules ``[k]`` of decode steps.

        ``batch``: requests decoding (one number, or one per step ``[k]``); ``reads[k, tier]``: tokens
        read per layer over the whole batch at each step; ``context[k]``: tokens in the cache over the
        batch; ``imbalance[tier]``: the busiest bank group's load over an even spread's (from the
        intra-device mapping; 1 = even).
        """
        pp = self.opts.pp
        steps = reads.shape[0]
        if np.ndim(batch) == 0:
            micro = [max(1, math.ceil(float(batch) / pp))] * steps
        else:
            micro = [max(1, math.ceil(b / pp)) for b in np.asarray(batch).tolist()]
        if self._prices is not None and np.count_nonzero(reads) <= (
                FLOAT_STEPS_GPU if self.opts.attention_on_gpu else FLOAT_STEPS_PIM):
            return self._decode_scalar(micro, reads, imbalance, self._prices)
        if len(set(micro)) <= 1:
            return self._decode_arrays(micro[0] if micro else 1, reads, imbalance)
        seconds, busy, energy = np.zeros(steps), np.zeros((steps, len(self.resource_names))), np.zeros(steps)
        for m in set(micro):  # the steps at each micro-batch size together
            rows = np.flatnonzero(np.array(micro) == m)
            seconds[rows], busy[rows], energy[rows] = self._decode_arrays(m, reads[rows], imbalance)
        return seconds, busy, energy

    def _decode_arrays(
        self, m: int, reads: np.ndarray, imbalance: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`decode` at micro-batch ``m``, every tier priced by its vectorised methods."""
        o = self.opts
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

    # --- decode on Python floats: the same expressions, a step at a time ---------------------------------------
    def _micro_uncached(self, m: int) -> MicroBatchCosts:
        """The read-independent parts of a decode step at micro-batch ``m``, as the array path computes them."""
        o, model = self.opts, self.model
        layers = model.layers
        gpu_s, gpu_flops, gpu_bytes = self._gpu_layer(m)
        head_s, head_flops, head_bytes = self._lm_head(m)
        gpu_j = o.tp * o.pp * self.gpu.energy_j(layers * gpu_flops + head_flops, layers * gpu_bytes + head_bytes)
        partial = np.full(1, m * model.heads * (model.head_dim + 2) * 2.0)  # o (16-bit) + lse per request x head
        partial_s = [0.0] + [float(t.link_seconds(partial)[0]) for t in self.tiers[1:]]
        partial_j = [0.0] + [float(t.link_energy_j(partial)[0]) for t in self.tiers[1:]]
        partials = m * model.heads * np.arange(len(self.tiers) + 1)
        merge = partials * o.reduce_seconds_per_partial
        if not o.pamattention:  # the host gathers every device's partials over the tier-0 link
            gather = self.tiers[0].link_seconds(partials * (model.head_dim + 2) * 2.0 * self.devices_per_stage[0])
            merge = gather + merge
        return MicroBatchCosts(gpu_s, head_s, gpu_j, tuple(partial_s), tuple(partial_j), tuple(merge.tolist()))

    def _decode_scalar(
        self, micro: list[int], reads: np.ndarray, imbalance: np.ndarray | None, prices: list[ScalarTierPrices]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`decode` with every tier priced on Python floats (the same results); ``micro[k]``: each
        step's micro-batch size."""
        o, layers = self.opts, self.model.layers
        costs = [self._micro(m) for m in micro]
        per_stage = reads / o.pp
        if o.attention_on_gpu:
            attn, columns, joules = self._gpu_layers(per_stage, prices)
        else:
            imb = None if imbalance is None else np.asarray(imbalance, dtype=float).tolist()
            attn, columns, joules = self._pim_layers(per_stage, costs, imb, prices)
        scale = o.pp * layers
        seconds = np.array([layers * (c.gpu_s + a) + c.head_s for c, a in zip(costs, attn, strict=True)], dtype=float)
        busy = np.empty((len(costs), len(self.resource_names)))
        busy[:, 0] = [layers * c.gpu_s + c.head_s for c in costs]
        busy[:, 1:] = layers * np.array(columns, dtype=float).reshape(len(self.tiers), len(costs)).T
        energy = np.array([c.gpu_j + scale * j for c, j in zip(costs, joules, strict=True)], dtype=float)
        return seconds, busy, energy

    def _pim_layers(
        self, per_stage: np.ndarray, costs: list[MicroBatchCosts], imbalance: list[float] | None,
        prices: list[ScalarTierPrices],
    ) -> tuple[list[float], list[list[float]], list[float]]:
        """One layer of every step, attention in place, tier by tier on floats (as :meth:`_pim_attention`):
        seconds ``[k]``, busy seconds ``[tier][k]``, joules ``[k]``."""
        steps = len(costs)
        joules, worst, attended = [0.0] * steps, [0.0] * steps, [0] * steps
        columns = []
        for t, column in enumerate(per_stage.T.tolist()):
            attend, energy, devices = prices[t].attention, prices[t].energy, self._dps[t]
            spread = None if imbalance is None else imbalance[t]
            times = [0.0] * steps
            for i, tokens in enumerate(column):
                if tokens == 0.0:  # no time, no energy
                    continue
                joules[i] += energy(tokens)
                if not tokens > 0:
                    continue
                on_device = tokens / devices
                if spread is not None:
                    on_device = on_device * spread
                busy = attend(on_device)
                if t > 0:  # partials travel to HBM-PIM (tier 0) for the reduction
                    busy += costs[i].partial_s[t]
                    joules[i] += costs[i].partial_j[t]
                times[i] = busy
                if busy > 0:
                    attended[i] += 1
                    worst[i] = busy if busy > worst[i] else worst[i]
            columns.append(times)
        return [w + c.merge_s[a] for w, c, a in zip(worst, costs, attended, strict=True)], columns, joules

    def _gpu_layers(
        self, per_stage: np.ndarray, prices: list[ScalarTierPrices]
    ) -> tuple[list[float], list[list[float]], list[float]]:
        """One layer of every step, attention on the GPU, tier by tier on floats (as :meth:`_gpu_attention`):
        seconds ``[k]``, busy seconds ``[tier][k]``, joules ``[k]``."""
        total = per_stage.sum(axis=1).tolist()
        kernels = self._decode_kernels(total)
        token_bytes, steps = self.token_bytes, len(total)
        hbm, *lower = per_stage.T.tolist()
        joules = [prices[0].read_energy(x) for x in hbm]
        slowest = [0.0] * steps
        columns = [kernels]
        for t, column in enumerate(lower, start=1):
            p, devices = prices[t], self._dps[t]
            fetch, link, read_energy, link_energy = p.fetch, p.link, p.read_energy, p.link_energy
            times = [0.0] * steps
            for i, tokens in enumerate(column):
                if tokens == 0.0:  # nothing fetched
                    continue
                nbytes = tokens * token_bytes
                busy = times[i] = fetch(tokens / devices) + link(nbytes)
                slowest[i] = busy if busy > slowest[i] else slowest[i]
                joules[i] += read_energy(tokens) + link_energy(nbytes)
            columns.append(times)
        flop_j = self.opts.tp * self.gpu.energy_j(float(self._attention_unit[0]), 0.0)
        joules = [j + flop_j * n for j, n in zip(joules, total, strict=True)]
        # DeepSpeed-style prefetch: the next layer's offloaded KV streams in while this layer computes.
        return [k if k > f else f for k, f in zip(kernels, slowest, strict=True)], columns, joules

    def _decode_kernels(self, total: list[float]) -> list[float]:
        """Seconds of the GPU FlashDecoding kernel of one layer per step, ``total``: tokens read per step."""
        flops, token_bytes, tp = self._attention_unit[0], self.token_bytes, self.opts.tp
        fn = self._gpu_attention_fn
        if fn is not None:
            return [fn(n * flops, n * token_bytes / tp) for n in total]
        n = np.array(total, dtype=float)
        return self.gpu.attention_seconds(n * flops, n * token_bytes / tp).tolist()

    # --- prefill ---------------------------------------------------------------------------------
    def prefill(self, chunks: list[int], contexts: list[int]) -> tuple[float, np.ndarray, float]:
        """Seconds, busy seconds per resource and joules of prefilling ``chunks`` prompt tokens.

        ``contexts[i]``: tokens of request i in the cache after this chunk (chunked prefill attends to
        what came before). The KV written out to the tiers streams layer by layer beside the compute.
        """
        o, model = self.opts, self.model
        tokens = int(sum(chunks))
        gpu_s, gpu_flops, gpu_bytes = self._gpu_layer(tokens)
        per_pair, per_cached, per_query = self._attention_unit
        # Causal: a chunk's c queries see ctx - c earlier tokens and, on average, (c + 1) / 2 of their own.
        attn_flops = sum(c * (ctx - c + (c + 1) / 2) * per_pair for c, ctx in zip(chunks, contexts, strict=True))
        attn_bytes = sum(ctx * per_cached + c * per_query for c, ctx in zip(chunks, contexts, strict=True))
        if self._gpu_attention_fn is not None:
            attn_s = self._gpu_attention_fn(attn_flops, attn_bytes)
        else:
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
        if self._prices is not None:
            return self._migration_scalar(link_bytes, self._prices)
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

    def _migration_scalar(self, link_bytes: np.ndarray, prices: list[ScalarTierPrices]) -> tuple[float, float]:
        """:meth:`migration` on Python floats (the same results)."""
        layers = self.model.layers
        seconds = energy = 0.0
        for nbytes, (src, dst) in zip(link_bytes.tolist(), self.links, strict=True):
            if nbytes <= 0:
                continue
            slow = prices[max(src, dst)]  # the path goes through the lower tier's link
            seconds = max(seconds, slow.link(nbytes))
            tokens = nbytes / (self.token_bytes * layers)
            for t in (src, dst):
                energy += prices[t].read_energy(tokens * layers)
            energy += slow.link_energy(nbytes)
        return seconds, energy
