"""The pricer's step-by-step float path against the plain per-tier numpy loop it replaced.

``reference_*`` below are the pricer's decode, prefill and migration as they were written before the
fast path (one numpy call per tier and step block, GEMMs through ``gemm_seconds_v``); the pricers the
simulator builds must give the same numbers to 1e-12 relative (most are bit-identical), for every
system preset the paper compares, over random reads, batch sizes and imbalances.
"""

from __future__ import annotations

import math
from dataclasses import replace
from functools import cache
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pamkv.model import attention_op, layer_linear_ops, lm_head_op
from pamkv.sim import RunConfig
from pamkv.sim.build import assemble
from pamkv.sim.pricing import SystemPricer

SYSTEMS = ["pam", "pam-no-pamattention", "vllm-offload", "attacc", "l-pim", "ls-pim"]
RTOL = 1e-12


@cache
def built(system: str) -> SystemPricer:
    """The pricer the simulator builds for ``system`` and Llama-3-70B."""
    return assemble(RunConfig(system=system, model="llama-3-70b", workload="azure-conv", requests=20)).pricer


@cache
def variant(system: str, pp: int, reduce_s: float) -> SystemPricer:
    """``system``'s pricer with another pipeline depth and HBM-PIM merge time per partial."""
    p = built(system)
    return SystemPricer(p.model, p.gpu, p.tiers, replace(p.opts, pp=pp, reduce_seconds_per_partial=reduce_s))


class PlainTier:
    """A tier with only the vectorised methods (no float prices): the pricer must take its numpy path."""

    def __init__(self, tier: Any) -> None:
        self.tier = tier
        self.name, self.devices, self.pim = tier.name, tier.devices, tier.pim

    def attention_seconds(self, tokens: np.ndarray, token_bytes: float, coarse: bool) -> np.ndarray:
        return self.tier.attention_seconds(tokens, token_bytes, coarse)

    def fetch_seconds(self, tokens: np.ndarray, token_bytes: float) -> np.ndarray:
        return self.tier.fetch_seconds(tokens, token_bytes)

    def link_seconds(self, nbytes: np.ndarray) -> np.ndarray:
        return self.tier.link_seconds(nbytes)

    def energy_j(self, tokens: np.ndarray, token_bytes: float, computed: bool) -> np.ndarray:
        return self.tier.energy_j(tokens, token_bytes, computed)

    def link_energy_j(self, nbytes: np.ndarray) -> np.ndarray:
        return self.tier.link_energy_j(nbytes)


class PlainGpu:
    """The GPU without its float attention price."""

    def __init__(self, gpu: Any) -> None:
        self.gpu = gpu

    def gemm_seconds(self, m: int, n: int, k: int) -> float:
        return self.gpu.gemm_seconds(m, n, k)

    def attention_seconds(self, flops: np.ndarray, nbytes: np.ndarray) -> np.ndarray:
        return self.gpu.attention_seconds(flops, nbytes)

    def allreduce_seconds(self, nbytes: float, gpus: int) -> float:
        return self.gpu.allreduce_seconds(nbytes, gpus)

    def energy_j(self, flops: float, nbytes: float) -> float:
        return self.gpu.energy_j(flops, nbytes)


@cache
def plain(system: str) -> SystemPricer:
    """``system``'s pricer over tiers and a GPU that offer no float prices."""
    p = built(system)
    return SystemPricer(p.model, PlainGpu(p.gpu), [PlainTier(t) for t in p.tiers], p.opts)


# --- the reference: the pricer as it was ---------------------------------------------------------------
def _gemm(p: SystemPricer, m: int, n: int, k: int) -> float:
    gpu: Any = p.gpu
    return float(gpu.gemm_seconds_v(np.asarray(m), np.asarray(n), np.asarray(k)))


def _gpu_layer(p: SystemPricer, m: int) -> tuple[float, float, float]:
    ops = layer_linear_ops(p.model, m, p.opts.tp, p.opts.dtype)
    seconds = sum(_gemm(p, o.m, o.n, o.k) for o in ops)
    if p.opts.tp > 1:
        seconds += 2 * p.gpu.allreduce_seconds(m * p.model.hidden * 2.0, p.opts.tp)
    return seconds, sum(o.flops for o in ops), sum(o.bytes for o in ops)


def _lm_head(p: SystemPricer, m: int) -> tuple[float, float, float]:
    op = lm_head_op(p.model, m, p.opts.tp, p.opts.dtype)
    return _gemm(p, op.m, op.n, op.k), op.flops, op.bytes


def _pim_attention(
    p: SystemPricer, m: int, per_stage: np.ndarray, imbalance: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    o, model = p.opts, p.model
    steps = per_stage.shape[0]
    times = np.zeros((steps, len(p.tiers)))
    energy = np.zeros(steps)
    partial_bytes = m * model.heads * (model.head_dim + 2) * 2.0
    for t, tier in enumerate(p.tiers):
        tokens = per_stage[:, t]
        on_device = tokens / p.devices_per_stage[t]
        if imbalance is not None:
            on_device = on_device * imbalance[t]
        busy = tier.attention_seconds(on_device, p.token_bytes, coarse=not o.pamattention)
        active = tokens > 0
        if t > 0:
            busy = busy + np.where(active, tier.link_seconds(np.full(steps, partial_bytes)), 0.0)
        times[:, t] = np.where(active, busy, 0.0)
        energy += tier.energy_j(tokens, p.token_bytes, computed=True)
        if t > 0:
            energy += np.where(active, tier.link_energy_j(np.full(steps, partial_bytes)), 0.0)
    partials = m * model.heads * (times > 0).sum(axis=1)
    if o.pamattention:
        merge = partials * o.reduce_seconds_per_partial
    else:
        gather = p.tiers[0].link_seconds(partials * (model.head_dim + 2) * 2.0 * p.devices_per_stage[0])
        merge = gather + partials * o.reduce_seconds_per_partial
    return times.max(axis=1) + merge, times, energy


def _gpu_attention(p: SystemPricer, per_stage: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    o, model = p.opts, p.model
    steps = per_stage.shape[0]
    busy = np.zeros((steps, len(p.tiers)))
    energy = np.zeros(steps)
    total = per_stage.sum(axis=1)
    op = attention_op(model, 1, 1.0, o.tp, o.dtype)
    kernel = p.gpu.attention_seconds(total * op.flops, total * p.token_bytes / o.tp)
    fetch = np.zeros(steps)
    for t, tier in enumerate(p.tiers):
        tokens = per_stage[:, t]
        if t == 0:
            busy[:, t] = kernel
            energy += tier.energy_j(tokens, p.token_bytes, computed=False)
            continue
        on_device = tokens / p.devices_per_stage[t]
        nbytes = tokens * p.token_bytes
        read = tier.fetch_seconds(on_device, p.token_bytes)
        move = tier.link_seconds(nbytes)
        busy[:, t] = read + move
        fetch = np.maximum(fetch, read + move)
        energy += tier.energy_j(tokens, p.token_bytes, computed=False) + tier.link_energy_j(nbytes)
    energy += o.tp * p.gpu.energy_j(float(op.flops), 0.0) * total
    return np.maximum(kernel, fetch), busy, energy


def reference_decode(
    p: SystemPricer, batch: int, reads: np.ndarray, imbalance: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode steps of one batch size, priced tier by tier with numpy."""
    o = p.opts
    m = max(1, math.ceil(batch / o.pp))
    gpu_s, gpu_flops, gpu_bytes = _gpu_layer(p, m)
    head_s, head_flops, head_bytes = _lm_head(p, m)
    steps = reads.shape[0]
    per_stage = reads / o.pp
    if o.attention_on_gpu:
        attn_s, tier_busy, attn_j = _gpu_attention(p, per_stage)
    else:
        attn_s, tier_busy, attn_j = _pim_attention(p, m, per_stage, imbalance)
    layers = p.model.layers
    step_s = layers * (gpu_s + attn_s) + head_s
    busy = np.zeros((steps, len(p.resource_names)))
    busy[:, 0] = layers * gpu_s + head_s
    busy[:, 1:] = layers * tier_busy
    gpu_j = o.tp * o.pp * p.gpu.energy_j(layers * gpu_flops + head_flops, layers * gpu_bytes + head_bytes)
    return step_s, busy, gpu_j + o.pp * layers * attn_j


def reference_prefill(p: SystemPricer, chunks: list[int], contexts: list[int]) -> tuple[float, np.ndarray, float]:
    """A prefill iteration, attention FLOPs and bytes summed operator by operator."""
    o, model = p.opts, p.model
    gpu_s, gpu_flops, gpu_bytes = _gpu_layer(p, int(sum(chunks)))
    attn_flops = sum(attention_op(model, c, ctx - c + (c + 1) / 2, o.tp, o.dtype).flops
                     for c, ctx in zip(chunks, contexts, strict=True))
    attn_bytes = sum(attention_op(model, c, ctx, o.tp, o.dtype).bytes for c, ctx in zip(chunks, contexts, strict=True))
    attn_s = float(p.gpu.attention_seconds(np.array([attn_flops]), np.array([attn_bytes]))[0])
    head_s, head_flops, head_bytes = _lm_head(p, len(chunks))
    micro = max(1, min(o.pp, len(chunks)))
    seconds = model.layers * (gpu_s + attn_s) * (micro + o.pp - 1) / (o.pp * micro) + head_s
    busy = np.zeros(len(p.resource_names))
    busy[0] = seconds
    flops = model.layers * (gpu_flops + attn_flops) + head_flops
    energy = o.tp * p.gpu.energy_j(flops, model.layers * (gpu_bytes + attn_bytes) + head_bytes)
    return seconds, busy, energy


def reference_migration(p: SystemPricer, link_bytes: np.ndarray) -> tuple[float, float]:
    """Seconds and joules of a migration, link by link with numpy."""
    seconds = energy = 0.0
    for nbytes, (src, dst) in zip(link_bytes.tolist(), p.links, strict=True):
        if nbytes <= 0:
            continue
        slow = p.tiers[max(src, dst)]
        seconds = max(seconds, float(slow.link_seconds(np.array([nbytes]))[0]))
        tokens = nbytes / (p.token_bytes * p.model.layers)
        for t in (src, dst):
            energy += float(p.tiers[t].energy_j(np.array([tokens * p.model.layers]), p.token_bytes,
                                                computed=False)[0])
        energy += float(slow.link_energy_j(np.array([nbytes]))[0])
    return seconds, energy


def close(got: Any, want: Any) -> None:
    """Equal to 1e-12 relative (zeros exactly), shapes included."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=0.0)


# --- strategies ---------------------------------------------------------------------------------------
token_counts = st.one_of(
    st.just(0.0),
    st.floats(1e-6, 1.0),  # a fraction of a token per device
    st.floats(1.0, 2e4),  # below and around every device's bank count x devices x pp
    st.integers(0, 200_000).map(float),
    st.floats(1e6, 1e12),  # far beyond any step
)


@st.composite
def decode_inputs(draw: st.DrawFn, tiers: int) -> tuple[np.ndarray, np.ndarray | None]:
    """``reads[k, tiers]`` for 1-16 steps (some tiers idle throughout) and an imbalance or none."""
    k = draw(st.integers(1, 16))
    idle = draw(st.lists(st.booleans(), min_size=tiers, max_size=tiers))
    reads = np.array([[0.0 if idle[t] else draw(token_counts) for t in range(tiers)] for _ in range(k)])
    imbalance = draw(st.one_of(st.none(), st.lists(st.floats(0.5, 8.0), min_size=tiers, max_size=tiers)))
    return reads, None if imbalance is None else np.array(imbalance)


def tiers_of(system: str) -> int:
    return len(built(system).tiers)


# --- decode -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("system", SYSTEMS)
@settings(max_examples=60, deadline=None)
@given(data=st.data(), batch=st.integers(1, 1024))
def test_decode_equals_the_per_tier_loop(system: str, data: st.DataObject, batch: int) -> None:
    p = built(system)
    reads, imbalance = data.draw(decode_inputs(tiers_of(system)))
    want = reference_decode(p, batch, reads, imbalance)
    got = p.decode(batch, reads, reads.sum(axis=1), imbalance)
    for g, w in zip(got, want, strict=True):
        close(g, w)


@pytest.mark.parametrize("system", SYSTEMS)
@settings(max_examples=25, deadline=None)
@given(data=st.data(), pp=st.integers(1, 4), reduce_s=st.sampled_from([0.0, 3e-9]))
def test_decode_equals_the_loop_at_other_pipeline_depths_and_merge_costs(
    system: str, data: st.DataObject, pp: int, reduce_s: float
) -> None:
    p = variant(system, pp, reduce_s)
    reads, imbalance = data.draw(decode_inputs(tiers_of(system)))
    batch = data.draw(st.integers(1, 512))
    got = p.decode(batch, reads, reads.sum(axis=1), imbalance)
    for g, w in zip(got, reference_decode(p, batch, reads, imbalance), strict=True):
        close(g, w)


@pytest.mark.parametrize("system", SYSTEMS)
@pytest.mark.parametrize("float_prices", [True, False])
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_a_batch_per_step_prices_each_step_at_its_own_batch(
    system: str, float_prices: bool, data: st.DataObject
) -> None:
    p = built(system) if float_prices else plain(system)
    reads, imbalance = data.draw(decode_inputs(tiers_of(system)))
    batch = np.array(data.draw(st.lists(st.integers(0, 300), min_size=len(reads), max_size=len(reads))))
    seconds, busy, energy = p.decode(batch, reads, reads.sum(axis=1), imbalance)
    for i in range(len(reads)):
        want = reference_decode(built(system), int(batch[i]), reads[i : i + 1], imbalance)
        close(seconds[i : i + 1], want[0])
        close(busy[i : i + 1], want[1])
        close(energy[i : i + 1], want[2])


@pytest.mark.parametrize("system", SYSTEMS)
@settings(max_examples=25, deadline=None)
@given(data=st.data(), batch=st.integers(1, 1024))
def test_tiers_without_float_prices_take_the_numpy_path(system: str, data: st.DataObject, batch: int) -> None:
    p = plain(system)
    assert p._prices is None and p._gpu_attention_fn is None
    reads, imbalance = data.draw(decode_inputs(tiers_of(system)))
    got = p.decode(batch, reads, reads.sum(axis=1), imbalance)
    for g, w in zip(got, reference_decode(built(system), batch, reads, imbalance), strict=True):
        close(g, w)


@pytest.mark.parametrize("system", SYSTEMS)
@settings(max_examples=10, deadline=None)
@given(data=st.data(), steps=st.integers(30, 300))
def test_long_blocks_of_steps_price_the_same_as_short_ones(system: str, data: st.DataObject, steps: int) -> None:
    """Past a few dozen busy steps the pricer switches to numpy; a long block equals its steps priced in short
    blocks (and the reference)."""
    p = built(system)
    rows = st.lists(st.floats(1.0, 1e6), min_size=tiers_of(system), max_size=tiers_of(system))
    reads = np.array(data.draw(st.lists(rows, min_size=steps, max_size=steps)))
    imbalance = np.full(tiers_of(system), 1.25)
    batch = data.draw(st.integers(1, 1024))
    whole = p.decode(batch, reads, reads.sum(axis=1), imbalance)
    parts = [p.decode(batch, reads[i : i + 8], reads[i : i + 8].sum(axis=1), imbalance) for i in range(0, steps, 8)]
    for j, w in enumerate(reference_decode(p, batch, reads, imbalance)):
        close(whole[j], w)
        close(np.concatenate([part[j] for part in parts]), w)


@pytest.mark.parametrize("system", SYSTEMS)
def test_the_built_pricers_take_the_float_path(system: str) -> None:
    p = built(system)
    assert p._prices is not None and p._gpu_attention_fn is not None


def test_decode_of_no_steps_has_the_right_shapes() -> None:
    p = built("pam")
    seconds, busy, energy = p.decode(8, np.zeros((0, 3)), np.zeros(0), np.ones(3))
    assert seconds.shape == (0,) and busy.shape == (0, 4) and energy.shape == (0,)


def test_decode_on_a_captured_step_is_bit_identical() -> None:
    """A realistic step (KV all in HBM, fewer tokens per device than banks) matches exactly, not just closely."""
    p = built("pam")
    reads = np.array([[3051.0, 0.0, 0.0], [3093.0, 0.0, 0.0], [3135.0, 0.0, 0.0]])
    got = p.decode(12, reads, reads.sum(axis=1), np.ones(3))
    for g, w in zip(got, reference_decode(p, 12, reads, np.ones(3)), strict=True):
        assert np.array_equal(g, w)


# --- prefill and migration ------------------------------------------------------------------------------
@st.composite
def prefill_inputs(draw: st.DrawFn) -> tuple[list[int], list[int]]:
    """1-4 prompt chunks and each request's tokens in cache after its chunk."""
    chunks = draw(st.lists(st.integers(1, 16_384), min_size=1, max_size=4))
    before = draw(st.lists(st.integers(0, 100_000), min_size=len(chunks), max_size=len(chunks)))
    return chunks, [c + b for c, b in zip(chunks, before, strict=True)]


@pytest.mark.parametrize("system", SYSTEMS)
@pytest.mark.parametrize("float_prices", [True, False])
@settings(max_examples=40, deadline=None)
@given(inputs=prefill_inputs())
def test_prefill_equals_the_operator_sum(system: str, float_prices: bool, inputs: tuple[list[int], list[int]]) -> None:
    p = built(system) if float_prices else plain(system)
    chunks, contexts = inputs
    seconds, busy, energy = p.prefill(chunks, contexts)
    want = reference_prefill(built(system), chunks, contexts)
    close(seconds, want[0])
    close(busy, want[1])
    close(energy, want[2])


@pytest.mark.parametrize("system", SYSTEMS)
@pytest.mark.parametrize("float_prices", [True, False])
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_migration_equals_the_per_link_loop(system: str, float_prices: bool, data: st.DataObject) -> None:
    p = built(system) if float_prices else plain(system)
    sizes = st.one_of(st.just(0.0), st.floats(1.0, 1e12), st.integers(0, 10**9).map(float))
    link_bytes = np.array(data.draw(st.lists(sizes, min_size=len(p.links), max_size=len(p.links))))
    seconds, energy = p.migration(link_bytes)
    want = reference_migration(built(system), link_bytes)
    close(seconds, want[0])
    close(energy, want[1])
