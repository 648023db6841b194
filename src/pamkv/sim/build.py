"""Assemble a run: resolve the run's system, model and workload and wire the engine's parts.

The KV side is :class:`pamkv.sim.kvside.SimKV` (the real store and policies), the pricer is
:class:`pamkv.sim.pricing.SystemPricer` over the hardware models, the clock is
:class:`pamkv.sim.engine.Engine`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pamkv.config import load
from pamkv.config.models import ModelConfig
from pamkv.config.runs import RunConfig
from pamkv.config.systems import SystemConfig, TierConfig
from pamkv.errors import UserError
from pamkv.hardware.catalog import TierDevice, load_gpu
from pamkv.hardware.layout import DeviceLayout
from pamkv.hardware.tier import DeviceTier
from pamkv.kv import LayoutSpec
from pamkv.model import kv_bytes_per_token, kv_bytes_per_token_per_layer, load_model, weight_bytes
from pamkv.scheduling.online_kv import balanced_targets
from pamkv.scheduling.requests import BatchLimits
from pamkv.sim.engine import Engine, EngineOptions, Requests
from pamkv.sim.kvside import SimKV, TierPlan, make_policy
from pamkv.sim.pricing import PricerOptions, SystemPricer
from pamkv.workloads import Trace, load_workload, workload_config
from pamkv.workloads.locality import LocalityModel


@dataclass
class Assembly:
    """Everything a run needs, resolved."""

    run: RunConfig
    system: SystemConfig
    model: ModelConfig
    trace: Trace
    engine: Engine
    kv: SimKV
    pricer: SystemPricer
    cost_usd: float
    oom: bool


def load_system(name_or_path: str) -> SystemConfig:
    """A system preset by name or a system YAML file."""
    return load(SystemConfig, "systems", name_or_path)


def store_layout(lay: DeviceLayout, block_tokens: int, token_bytes: float, layers: int) -> LayoutSpec:
    """The device layout the store maps blocks onto, with units merged until one block's share fits.

    The store gives each layer its own region of every bank and puts a block's tokens on the banks of
    one unit (bank group). For models with wide KV (OPT-175B: 48 KiB per token and layer) a 16-token
    block's share of a 4-bank group can exceed a bank's per-layer region; then neighbouring units are
    merged (a block spreads over more banks) until it fits — the device's banks and bytes unchanged.
    """
    units, per_unit = lay.units, lay.banks_per_unit
    region = (lay.rows_per_bank // layers) * lay.row_bytes
    while -(-block_tokens // per_unit) * token_bytes > region and units % 2 == 0 and per_unit < block_tokens:
        units //= 2
        per_unit *= 2
    return LayoutSpec(name=lay.name, kind=lay.kind, units=units, banks_per_unit=per_unit,
                      rows_per_bank=lay.rows_per_bank, row_bytes=lay.row_bytes)


def _tier_capacity_bytes(system: SystemConfig, tier: TierConfig, device: TierDevice, model: ModelConfig,
                         dtype: str) -> float:
    """KV bytes one device of ``tier`` holds: its capacity, less the weights it carries (HBM)."""
    per_device = device.capacity_bytes if tier.capacity_gb is None else tier.capacity_gb * 1e9 / tier.count
    if tier.holds_weights:
        per_gpu = weight_bytes(model, dtype, tp=system.tp, pp=system.pp)
        per_device -= per_gpu * system.gpus / tier.count
        per_device *= 1.0 - load_gpu(system.gpu).memory_reserve  # activations and workspace (vLLM keeps 10%)
    if per_device <= 0:
        raise UserError(
            f"system '{system.name}': model '{model.name}' does not fit: its weights exceed tier '{tier.name}'"
        )
    return per_device


def assemble(run: RunConfig) -> Assembly:
    """Resolve ``run`` into an engine ready to :meth:`~pamkv.sim.engine.Engine.run`."""
    system = load_system(run.system)
    model = load_model(run.model)
    wcfg, _ = workload_config(run.workload)
    if run.batch is not None:
        count = run.requests or OFFLINE_WAVES * run.batch
        trace = _offline(load_workload(run.workload, requests=count, seed=run.seed), count)
    else:
        trace = load_workload(run.workload, requests=run.requests, seed=run.seed, rate_scale=run.rate_scale)
    token_bytes = kv_bytes_per_token_per_layer(model, run.dtype)
    group = model.heads // model.kv_heads

    ratio = system.sparsity_ratio if system.sparsity != "dense" else 1.0
    tiers: list[DeviceTier] = []
    plans: list[TierPlan] = []
    for t in system.tiers:
        tier = DeviceTier.from_presets(
            t.name, t.device, t.count, t.link, pim=t.pim and system.attention == "pim", links=t.links, group=group,
            head_dim=model.head_dim, power_limit=system.power_limit, selected_fraction=1.0 / ratio)
        tiers.append(tier)
        cap = _tier_capacity_bytes(system, t, tier.device, model, run.dtype)
        plans.append(TierPlan(t.name, t.count, cap,
                              store_layout(tier.device.layout, run.block_tokens, token_bytes, model.layers)))
    gpu = load_gpu(system.gpu)
    # PAM's targets: what makes the tiers finish together, from their aggregate attention throughput and
    # capacity (the paper profiles x and y offline and does not publish them).
    throughput = [t.devices / float(t.attention_seconds(np.array([4096.0]), token_bytes, False)[0]) for t in tiers]
    capacity_tokens = [p.devices * p.capacity_bytes / (token_bytes * model.layers) for p in plans]
    auto = balanced_targets(throughput, capacity_tokens) if len(tiers) > 1 else None
    x = system.target_x if system.target_x is not None else (auto[0] if auto else 1.0)
    y = system.target_y if system.target_y is not None else (auto[1] if auto and len(auto) > 2 else 1.0)
    targets = auto if system.target_x is None and auto is not None and len(auto) != 3 else None
    policy = make_policy(system.placement, x, y, targets if system.placement != "balanced" else auto)
    kv = SimKV(plans, token_bytes, model.layers, run.block_tokens, policy, system.mapping,
               LocalityModel(wcfg.locality), ratio, min_selected=64,
               frequency_blind=system.placement == "balanced", schedule=system.scheduling, seed=run.seed,
               requests=len(trace.input_tokens))
    pricer = SystemPricer(model, gpu, tiers, PricerOptions(
        tp=system.tp, pp=system.pp, attention_on_gpu=system.attention == "gpu",
        pamattention=system.pamattention, dtype=run.dtype))
    needs = trace.input_tokens.max(initial=0) + trace.output_tokens.max(initial=0)
    if needs > kv.capacity_tokens:
        raise UserError(
            f"a request of {int(needs):,} tokens can never fit in system '{system.name}' "
            f"({kv.capacity_tokens:,} tokens of KV for {model.name})"
        )
    # Offline: the system must hold a full batch of average requests at once, or it is out of memory.
    mean_tokens = float((trace.input_tokens + trace.output_tokens).mean()) if len(trace.input_tokens) else 0.0
    oom = run.batch is not None and run.batch * mean_tokens > kv.capacity_tokens
    limits = BatchLimits(max_batch=run.batch or system.max_batch,
                         max_tokens_per_iter=max(system.max_tokens_per_iter, int(trace.input_tokens.max(initial=1))),
                         chunked_prefill=system.chunked_prefill)
    requests = Requests(np.asarray(trace.arrival_s, dtype=float), np.asarray(trace.input_tokens, dtype=np.int64),
                        np.maximum(np.asarray(trace.output_tokens, dtype=np.int64), 1))
    engine = Engine(requests, kv, pricer, EngineOptions(
        limits=limits, sparsity_ratio=ratio, schedule_every=system.schedule_every,
        idle_window_factor=system.idle_window_factor,
        migration_overlapped=system.pamattention, max_sim_s=run.max_sim_s))
    cost = system.cost_usd if system.cost_usd is not None else hardware_cost_usd(system, tiers)
    return Assembly(run, system, model, trace, engine, kv, pricer, cost, oom)


OFFLINE_WAVES = 4
"""Offline mode serves this many batches' worth of requests (unless ``requests`` is given)."""


def _offline(trace: Trace, count: int) -> Trace:
    """The paper's offline mode: ``count`` requests all queued at t = 0 (repeated if the workload has fewer).

    With the batch capped at ``batch``, a finished request's place is taken by the next one, so the
    batch stays full until the queue drains (vLLM's offline throughput benchmark).
    """
    n = len(trace.input_tokens)
    idx = np.arange(count) % n
    return Trace.from_arrays(np.zeros(count), trace.input_tokens[idx], trace.output_tokens[idx],
                             name=trace.name, source=trace.source, arrivals="none")


def hardware_cost_usd(system: SystemConfig, tiers: list[DeviceTier]) -> float:
    """Hardware price of the node: GPUs plus every tier's devices (presets' cost estimates)."""
    gpu = load_gpu(system.gpu)
    return system.gpus * gpu.cost_usd + sum(t.devices * t.device.cost_usd for t in tiers)


def describe(a: Assembly) -> dict[str, Any]:
    """Static facts of an assembled run, merged into its metrics."""
    return {
        "system": a.system.name,
        "model": a.model.name,
        "workload": a.run.workload,
        "kv_capacity_tokens": a.kv.capacity_tokens,
        "kv_bytes_per_token": kv_bytes_per_token(a.model, a.run.dtype),
        "hardware_cost_usd": a.cost_usd,
        "tiers": [t.name for t in a.system.tiers],
        "seed": a.run.seed,
        "mode": "offline" if a.run.batch else "online",
        "batch": a.run.batch,
        "oom": a.oom,
    }
