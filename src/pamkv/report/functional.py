"""The functional demo: a random-weights decode over a three-tier store, with real tensors.

Every step, for every request and layer: the query and the new token's K/V are made, the token is
appended to the tiered store (placement by PAM's policy), Double Sparsity (label channels calibrated
on the prompt) selects 1/8 of the tokens per KV head, each device computes a partial attention over
the selected tokens it holds, the partials are merged (PAMattention), and the result is checked
against dense attention over the same tokens and over all tokens. The selection scores feed the
store's importance EMA; the online scheduler then migrates blocks between tiers.

The "model" is random, but its keys carry structure real attention has (reference/locality.md): an
attention sink and a few heavy-hitter tokens that align with the queries, so that selection and
placement have something to find; the newest tokens are always read (Double Sparsity's recent window).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pamkv.attention import (
    calibrate_labels,
    dense_attention,
    merge_partials,
    partial_attention,
    select_double_sparsity,
)
from pamkv.kv import LayoutSpec, PamPolicy, PayloadSpec, StoreSpec, TieredKVStore, TierSpec
from pamkv.scheduling.online_kv import balanced_targets


@dataclass(frozen=True)
class FunctionalConfig:
    """Sizes of the functional demo (small enough for seconds on a laptop CPU)."""

    requests: int = 4
    prompt: int = 384
    steps: int = 24
    layers: int = 2
    heads: int = 8
    kv_heads: int = 2
    head_dim: int = 64
    ratio: float = 1 / 8
    block_tokens: int = 16
    seed: int = 0


@dataclass
class FunctionalReport:
    """What the demo measured, per step and in total."""

    tier_names: list[str]
    rows: list[dict[str, float]] = field(default_factory=list)
    max_merge_error: float = 0.0
    max_sparse_error: float = 0.0
    mean_sparse_rel_error: float = 0.0
    accesses: np.ndarray = field(default_factory=lambda: np.zeros(3))
    tokens_moved: int = 0
    invariants_ok: bool = False


def _store(cfg: FunctionalConfig) -> TieredKVStore:
    total_blocks = cfg.requests * -(-(cfg.prompt + cfg.steps) // cfg.block_tokens)
    hbm, ddr = max(2, total_blocks // 10), max(2, total_blocks * 3 // 10)  # HBM 10%, DDR 30%, SSD the rest
    layout = LayoutSpec(units=4, banks_per_unit=4, rows_per_bank=4096, row_bytes=1024)
    ssd_layout = LayoutSpec(kind="ssd", units=8, banks_per_unit=4, rows_per_bank=4096, row_bytes=16384)
    spec = StoreSpec(
        tiers=[
            TierSpec(name="hbm", devices=2, capacity_blocks=-(-hbm // 2), layout=layout),
            TierSpec(name="ddr", devices=2, capacity_blocks=-(-ddr // 2), layout=layout),
            TierSpec(name="ssd", devices=1, capacity_blocks=total_blocks, layout=ssd_layout),
        ],
        block_tokens=cfg.block_tokens,
        layers=cfg.layers,
        payload=PayloadSpec(kv_heads=cfg.kv_heads, head_dim=cfg.head_dim, dtype="float32"),
    )
    # Targets from relative tier speeds (HBM-PIM : DDR-PIM : SSD-PIM internal bandwidth, roughly 100:10:1)
    # and capacities, so that the tiers would finish a step together.
    caps = spec.capacity_blocks().astype(float).tolist()
    return TieredKVStore(spec, PamPolicy(x=0, y=0, targets=balanced_targets([100.0, 10.0, 1.0], caps)))


def run_functional_demo(cfg: FunctionalConfig | None = None) -> FunctionalReport:
    """Run the demo; returns per-step figures (tokens per tier, accesses, moves, errors)."""
    cfg = cfg or FunctionalConfig()
    rng = np.random.default_rng(cfg.seed)
    store = _store(cfg)
    report = FunctionalReport(tier_names=list(store.tier_names), accesses=np.zeros(len(store.tier_names)))
    d, kvh, heads = cfg.head_dim, cfg.kv_heads, cfg.heads
    total = cfg.prompt + cfg.steps
    # Per request and layer: the full K/V sequence (ground truth) and a query direction.
    k_all = rng.standard_normal((cfg.requests, cfg.layers, total, kvh, d)).astype(np.float32)
    v_all = rng.standard_normal((cfg.requests, cfg.layers, total, kvh, d)).astype(np.float32)
    topic = rng.standard_normal((cfg.requests, cfg.layers, kvh, d)).astype(np.float32)
    heavy = rng.choice(np.arange(1, cfg.prompt - 64), size=(cfg.requests, max(4, cfg.prompt // 32)), replace=True)
    for r in range(cfg.requests):
        k_all[r, :, 0] += 3.0 * topic[r]  # attention sink
        k_all[r][:, heavy[r]] += 2.0 * topic[r][:, None]  # heavy hitters
    scale = 1.0 / np.sqrt(d)

    for r in range(cfg.requests):
        store.append(r, cfg.prompt)
        for layer in range(cfg.layers):
            prompt = slice(0, cfg.prompt)
            store.write_kv(r, np.arange(cfg.prompt), layer, k_all[r, layer, prompt], v_all[r, layer, prompt])
    labels = [
        [calibrate_labels(_queries(topic[r, layer], heads, rng, 16), k_all[r, layer, : cfg.prompt]) for layer in
         range(cfg.layers)]
        for r in range(cfg.requests)
    ]
    rel_errors = []
    for step in range(cfg.steps):
        n = cfg.prompt + step + 1
        reads_req, reads_pos, reads_score = [], [], []
        for r in range(cfg.requests):
            store.append(r, 1)
            per_token_score = np.zeros(n)
            for layer in range(cfg.layers):
                store.write_kv(r, [n - 1], layer, k_all[r, layer, n - 1 : n], v_all[r, layer, n - 1 : n])
                q = _queries(topic[r, layer], heads, rng, 1)[0]
                sel = select_double_sparsity(q, k_all[r, layer, :n], labels[r][layer], ratio=cfg.ratio,
                                             sinks=1, recent=16, shared=True, scale=scale)
                idx = np.asarray(sel.indices[0])
                parts = [partial_attention(q, p.k, p.v, scale) for p in store.read(r, idx, layer=layer)]
                pam = np.asarray(merge_partials(parts))
                same_tokens = np.asarray(dense_attention(q, k_all[r, layer, idx], v_all[r, layer, idx], scale))
                full = np.asarray(dense_attention(q, k_all[r, layer, :n], v_all[r, layer, :n], scale))
                report.max_merge_error = max(report.max_merge_error, float(np.abs(pam - same_tokens).max()))
                report.max_sparse_error = max(report.max_sparse_error, float(np.abs(pam - full).max()))
                rel_errors.append(float(np.linalg.norm(pam - full) / np.linalg.norm(full)))
                per_token_score[idx] += np.asarray(sel.scores)[0, idx] / cfg.layers
                if layer == 0:
                    loc = store.locate(r, idx)
                    report.accesses += np.bincount(loc.tier, minlength=len(store.tier_names))
            chosen = np.flatnonzero(per_token_score > 0)
            reads_req.append(np.full(chosen.size, r))
            reads_pos.append(chosen)
            reads_score.append(per_token_score[chosen])
        store.observe(list(range(cfg.requests)), np.concatenate(reads_req), np.concatenate(reads_pos),
                      np.concatenate(reads_score))
        moved = store.schedule()
        report.tokens_moved += moved.tokens
        row: dict[str, float] = {"step": step, "moved_tokens": moved.tokens, "moved_bytes": moved.bytes}
        for t, name in enumerate(store.tier_names):
            row[f"{name}_tokens"] = int(store.tier_tokens[t])
            row[f"{name}_reads"] = int(store.last_reads[t])
        report.rows.append(row)
    store.check()
    report.invariants_ok = True
    report.mean_sparse_rel_error = float(np.mean(rel_errors))
    return report


def _queries(topic: np.ndarray, heads: int, rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` queries ``[n, heads, d]`` that lean towards each KV head's topic direction."""
    kvh, d = topic.shape
    group = heads // kvh
    base = np.repeat(topic, group, axis=0)  # [heads, d]
    return (0.5 * base[None] + rng.standard_normal((n, heads, d))).astype(np.float32)
