"""A transformers cache whose KV lives in PAM's tiered store, and PAMattention over its device parts.

:class:`PamCache` is a ``transformers.Cache`` of :class:`PamLayer` objects, one per decoder layer.
Each layer owns a :class:`~pamkv.kv.TieredKVStore` (one store per layer: every layer places its own
hot tokens) holding the real K/V of every request of the batch (request id = batch row) in blocks
spread over the tiers by the placement policy, mapped inside each device by the store's mapping.

``update`` (called by the model with post-RoPE K/V ``[batch, kv_heads, new, head_dim]``) appends the
new tokens to the store and writes their K/V. :meth:`PamLayer.attend` — which the ``pamkv`` attention
function (:mod:`pamkv.integrations.hf.attention`) calls right after — computes the layer's attention
by PAMattention: every device computes a partial ``(out, lse)`` over the tokens it holds (a decode
step: only the tokens the selector picked, per KV head) and the partials are merged exactly. A decode
step then feeds the selector's scores to the store's importance EMA (PAPER.md §6.3), and the online
scheduler migrates blocks between tiers. Prefill is computed over the parts too (causal, in chunks of
queries); the paper runs it on the GPU, which gives the same values. The last prompt token's
attention seeds the importance.

When the model's attention is not ``pamkv`` (e.g. ``sdpa``), ``update`` returns the whole K/V
gathered from the store, so the cache also works as a plain (tiered) cache.
"""

from __future__ import annotations

import contextvars
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers.cache_utils import Cache, CacheLayerMixin

from pamkv.attention import (
    LabelChannels,
    Partial,
    Selection,
    attention_probs,
    calibrate_labels,
    merge_to_partial,
    partial_attention,
    partial_attention_multi,
    select,
)
from pamkv.errors import UserError
from pamkv.integrations.hf.config import PamHFConfig, store_spec, tier_capacities, tier_targets
from pamkv.integrations.recording import AttentionRecorder
from pamkv.kv import (
    CapacityError,
    DevicePart,
    LayeredPolicy,
    MigrationReport,
    PamPolicy,
    PlacementPolicy,
    RecentWindowPolicy,
    StaticPolicy,
    TieredKVStore,
)

ATTN_NAME = "pamkv"
"""The name the PAMattention function and its mask builder are registered under."""

MergeFn = Callable[[Sequence[Partial]], Partial]

_CURRENT: contextvars.ContextVar[PamLayer | None] = contextvars.ContextVar("pamkv_current_layer", default=None)


def current_layer() -> PamLayer | None:
    """The PAM layer whose ``update`` ran last in this thread (the attention call that follows uses it)."""
    return _CURRENT.get()


@dataclass
class TierCounters:
    """What a layer's decode steps read from each tier (numpy arrays, one entry per tier).

    ``kv_reads``: K/V vectors read (one per token and KV head); ``token_reads``: tokens read by at
    least one KV head; ``mass``: attention mass the tier's partials carried (sum over steps and query
    heads of ``exp(lse_tier - lse)``; with sparse selection, a share of the selected tokens' mass).
    """

    kv_reads: np.ndarray
    token_reads: np.ndarray
    mass: np.ndarray
    head_steps: int = 0

    @classmethod
    def zeros(cls, tiers: int) -> TierCounters:
        """All counters at zero."""
        return cls(np.zeros(tiers, dtype=np.int64), np.zeros(tiers, dtype=np.int64), np.zeros(tiers))


def make_policy(cfg: PamHFConfig, capacities: list[int]) -> PlacementPolicy:
    """The placement policy ``cfg.placement`` names, with the run's IS targets for PAM."""
    if cfg.placement == "pam":
        targets = tier_targets(cfg, capacities)
        x = targets[0]
        y = targets[1] if len(targets) > 1 else 1.0
        return PamPolicy(x=x, y=y, targets=targets if len(targets) != 3 else None,
                         hot_new_blocks=cfg.hot_new_blocks, max_swaps=cfg.max_swaps, margin=cfg.margin)
    if cfg.placement == "layered":
        return LayeredPolicy()
    if cfg.placement == "static":
        return StaticPolicy()
    return RecentWindowPolicy(max_swaps=cfg.max_swaps)


def _to_torch(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x))


class PamLayer(CacheLayerMixin):
    """One decoder layer's KV in a tiered store; see the module docstring."""

    is_compileable = False
    is_sliding = False
    is_croppable = False

    def __init__(self, cache: PamCache, layer_idx: int) -> None:
        super().__init__()
        self.cache = cache
        self.layer_idx = layer_idx
        self.batch_size = cache.batch
        self.store = TieredKVStore(cache.spec, make_policy(cache.options, cache.capacities))
        self.labels: LabelChannels | None = None
        self.counters = TierCounters.zeros(len(cache.spec.tiers))
        self.decode_steps = 0
        self.score_reads = 0
        self._new: tuple[np.ndarray, int] | None = None  # first position per request and count of the last update

    # --- the CacheLayerMixin interface -------------------------------------------------------------

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        """Check the K/V shape against the store's payload (the store itself exists from the start)."""
        p = self.cache.spec.payload
        assert p is not None
        if key_states.shape[1] != p.kv_heads or key_states.shape[-1] != p.head_dim:
            raise ValueError(f"layer {self.layer_idx}: K/V of {key_states.shape[1]} heads x {key_states.shape[-1]} "
                             f"do not match the cache's {p.kv_heads} x {p.head_dim}")
        self.device = key_states.device
        self.dtype = key_states.dtype
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Append the new tokens' K/V (``[batch, kv_heads, new, head_dim]``) to the store.

        Returns the request's whole K/V gathered from the store, or — when the model's attention is
        ``pamkv``, which reads the store's device parts itself — just the new K/V.
        """
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        batch, _, new, _ = key_states.shape
        if batch != self.cache.batch:
            raise ValueError(f"PamCache was built for batch {self.cache.batch}, got {batch}")
        reqs = np.arange(batch)
        try:
            first = self.store.append(reqs, new)
        except CapacityError as exc:
            raise UserError(f"the PAM cache is full ({exc}); it was sized for {self.cache.max_tokens} tokens "
                            f"per request — build it with a larger max_tokens") from None
        k = key_states.detach().to("cpu", torch.float32).transpose(1, 2).numpy()  # [B, new, K, d]
        v = value_states.detach().to("cpu", torch.float32).transpose(1, 2).numpy()
        for b in range(batch):
            pos = int(first[b]) + np.arange(new)
            self.store.write_kv(b, pos, 0, k[b], v[b])
        self._new = (np.asarray(first, dtype=np.int64), new)
        _CURRENT.set(self)
        if self.cache.attention_is_pam():
            return key_states, value_states
        return self.gather(key_states.dtype, key_states.device)

    def get_seq_length(self) -> int:
        """Tokens held per request."""
        return self.store.length(0) if self.store.requests else 0

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        """``(kv_length, kv_offset)`` of the mask for ``query_length`` new queries: every token is kept."""
        return self.get_seq_length() + query_length, 0

    def get_max_length(self) -> int:
        """No fixed maximum in the transformers sense (the store's capacity bounds it)."""
        return -1

    def _unsupported(self, what: str) -> None:
        raise NotImplementedError(f"PamCache does not support {what} (greedy or sampled generation only)")

    def reset(self) -> None:
        """Not supported: build a new cache per generation."""
        self._unsupported("reset")

    def crop(self, tokens_to_remove: int) -> None:
        """Not supported (assisted decoding)."""
        self._unsupported("crop")

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        """Not supported (beam search)."""
        self._unsupported("beam search")

    def batch_repeat_interleave(self, repeats: int) -> None:
        """Not supported (num_return_sequences > 1)."""
        self._unsupported("num_return_sequences > 1")

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Not supported (contrastive search)."""
        self._unsupported("batch selection")

    def offload(self) -> None:
        """Nothing to do: the KV already lives in the tiered store."""

    def prefetch(self) -> None:
        """Nothing to do: the KV already lives in the tiered store."""

    @property
    def pending(self) -> bool:
        """True between an ``update`` and the attention call that consumes it."""
        return self._new is not None

    # --- reading the store -------------------------------------------------------------------------

    def gather(self, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Every request's whole K/V from the store, ``[batch, kv_heads, tokens, head_dim]``."""
        ks, vs = [], []
        for b in range(self.cache.batch):
            k, v = self._full(b)
            ks.append(k)
            vs.append(v)
        kt = _to_torch(np.stack(ks)).transpose(1, 2).to(device=device, dtype=dtype)
        vt = _to_torch(np.stack(vs)).transpose(1, 2).to(device=device, dtype=dtype)
        return kt, vt

    def _full(self, b: int) -> tuple[np.ndarray, np.ndarray]:
        """Request ``b``'s K/V in position order, ``[tokens, kv_heads, head_dim]`` (assembled from its parts)."""
        parts = self.store.read(b, layer=0)
        n = self.store.length(b)
        return self._assemble(parts, n), self._assemble(parts, n, values=True)

    def _assemble(self, parts: list[DevicePart], n: int, values: bool = False) -> np.ndarray:
        """The keys (or values) of ``parts`` in position order, ``[n, kv_heads, head_dim]``."""
        p = self.cache.spec.payload
        assert p is not None
        out = np.empty((n, p.kv_heads, p.head_dim), dtype=np.float32)
        for part in parts:
            out[part.positions] = part.v if values else part.k
        return out

    # --- PAMattention ------------------------------------------------------------------------------

    def attend(self, query: torch.Tensor, mask: torch.Tensor | None, scale: float) -> torch.Tensor:
        """This layer's attention for ``query [batch, heads, q, head_dim]`` -> ``[batch, q, heads, head_dim]``.

        ``mask``: bool ``[batch, 1, q, tokens]`` (True = visible) or None (plain causal).
        """
        if self._new is None:
            raise RuntimeError(f"layer {self.layer_idx}: attention called without a preceding cache update")
        first, new = self._new
        self._new = None
        _CURRENT.set(None)  # consumed; also lets the cache be freed once generation is over
        if query.shape[2] != new:
            raise ValueError(f"layer {self.layer_idx}: {query.shape[2]} queries for {new} new tokens")
        q = query.detach().to("cpu", torch.float32)  # the store (the devices' K/V) lives in host memory
        m = None if mask is None else mask.detach().to("cpu", torch.bool)
        decode = new == 1 and self.store.length(0) > 1
        out = self._decode(q, m, scale) if decode else self._prefill(q, m, scale, first)
        return out.to(device=query.device, dtype=query.dtype)

    def _prefill(self, q: torch.Tensor, mask: torch.Tensor | None, scale: float, first: np.ndarray) -> torch.Tensor:
        """Causal PAMattention of all new queries over every device's part (chunked over queries)."""
        batch, nq = int(q.shape[0]), int(q.shape[2])
        cfg = self.cache.options
        outs = []
        seeds_r, seeds_p, seeds_s = [], [], []
        calib_q, calib_k = [], []
        for b in range(batch):
            parts = self.store.read(b, layer=0)
            qb = q[b].transpose(0, 1).contiguous()  # [Q, H, d]
            qpos = int(first[b]) + np.arange(nq)
            tparts = [(_to_torch(part.k), _to_torch(part.v), _to_torch(part.positions))
                      for part in parts if part.k is not None and part.v is not None]
            chunks = []
            for lo in range(0, nq, cfg.prefill_chunk):
                hi = min(nq, lo + cfg.prefill_chunk)
                partials = []
                for kp, vp, pp in tparts:
                    if mask is None:
                        partials.append(partial_attention_multi(
                            qb[lo:hi], kp, vp, scale, causal=True, q_positions=_to_torch(qpos[lo:hi]),
                            k_positions=pp))
                    else:
                        partials.append(partial_attention_multi(
                            qb[lo:hi], kp, vp, scale, mask=mask[b, 0, lo:hi][:, pp]))
                chunks.append(self.cache.merge(partials).out)
            outs.append(torch.cat(chunks, 0))
            k_full, _ = self._full(b)
            kt = _to_torch(k_full)
            visible = self._visible(mask, b, nq - 1, k_full.shape[0] - 1)
            if cfg.selection.method == "double-sparsity":
                calib_q.append(qb)
                calib_k.append(kt[_to_torch(visible)])
            recorder = self.cache.recorder
            if recorder is not None and recorder.wants(self.layer_idx) and self.cache.record_prompt_from is not None:
                self._record_prompt(b, qb, kt, qpos, mask, scale)
            # the last prompt token's attention seeds the importance EMA
            probs = attention_probs(qb[-1], kt[_to_torch(visible)], scale)  # [H, n_visible]
            seeds_r.append(np.full(visible.size, b))
            seeds_p.append(visible)
            seeds_s.append(probs.mean(0).numpy().astype(np.float64))
        if calib_q:
            self.labels = calibrate_labels(torch.cat(calib_q, 0), torch.cat(calib_k, 0),
                                           cfg.selection.label_channels)
        self.store.observe(np.arange(batch), np.concatenate(seeds_r), np.concatenate(seeds_p),
                           np.maximum(np.concatenate(seeds_s), 0.0))
        self.cache.add_migration(self.store.schedule())
        return torch.stack(outs)  # [B, Q, H, d]

    @staticmethod
    def _visible(mask: torch.Tensor | None, b: int, row: int, qpos: int) -> np.ndarray:
        """Positions query ``row`` (at position ``qpos``) of request ``b`` may see: causal, or as masked."""
        if mask is None:
            return np.arange(qpos + 1)
        return np.flatnonzero(mask[b, 0, row, : qpos + 1].numpy())

    def _record_prompt(self, b: int, qb: torch.Tensor, kt: torch.Tensor, qpos: np.ndarray,
                       mask: torch.Tensor | None, scale: float) -> None:
        """Record prompt queries at positions >= ``record_prompt_from`` as teacher-forced decode steps."""
        start = self.cache.record_prompt_from
        assert start is not None
        rows = np.flatnonzero(qpos >= start)
        g = self.cache.group
        k_rep = kt.repeat_interleave(g, dim=1)  # [T, H, d]: query head h reads KV head h // g
        for lo in range(0, rows.size, 64):
            r = rows[lo:lo + 64]
            n = int(qpos[r[-1]]) + 1
            logits = torch.einsum("rhd,thd->rht", qb[_to_torch(r)], k_rep[:n]) * scale
            causal = np.arange(n)[None, :] <= qpos[r][:, None]
            vis = causal if mask is None else mask[b, 0, _to_torch(r), :n].numpy()
            logits = logits.masked_fill(~_to_torch(vis)[:, None, :], float("-inf"))
            probs = torch.softmax(logits, dim=-1).numpy()
            for i, row in enumerate(r.tolist()):
                pos = int(qpos[row])
                p = probs[i, :, : pos + 1]
                self._record(b, pos, p, np.broadcast_to(vis[i, : pos + 1], p.shape), g)

    def _record(self, b: int, pos: int, probs: np.ndarray, read: np.ndarray, group: int) -> None:
        """Hand one query's true per-query-head probabilities ``[H, T]`` and reads to the recorder."""
        recorder = self.cache.recorder
        assert recorder is not None
        if recorder.heads == "kv":
            kvh = probs.shape[0] // group
            probs = probs.reshape(kvh, group, -1).mean(1)
            read = read.reshape(kvh, group, -1)[:, 0]
        recorder.add(request=b, position=pos, layer=self.layer_idx, read=read, probs=probs)

    def _select(self, qb: torch.Tensor, k_cand: torch.Tensor, scale: float) -> Selection:
        """The configured selector over the candidate keys (Double Sparsity uses the layer's labels)."""
        cfg = self.cache.options.selection
        return select(cfg, qb, k_cand, labels=self.labels, scale=scale)

    def _decode(self, q: torch.Tensor, mask: torch.Tensor | None, scale: float) -> torch.Tensor:
        """One decode step: select, read the selected tokens per device, partials, exact merge, observe, migrate."""
        batch, heads = int(q.shape[0]), int(q.shape[1])
        group = self.cache.group
        kv_heads = heads // group
        dense = self.cache.options.selection.method == "dense"
        outs = []
        obs_r, obs_p, obs_s = [], [], []
        recorder = self.cache.recorder
        record = recorder is not None and recorder.wants(self.layer_idx)
        for b in range(batch):
            qb = q[b, :, 0, :]  # [H, d]
            all_parts = self.store.read(b, layer=0)
            k_full = self._assemble(all_parts, self.store.length(b))
            n = k_full.shape[0]
            cand = self._visible(mask, b, 0, n - 1)
            k_cand = _to_torch(k_full[cand])
            sel = self._select(qb, k_cand, scale)
            self.score_reads += int(sel.score_reads) * kv_heads
            chosen = np.zeros((kv_heads, n), dtype=bool)  # [K, T]: KV head c reads token t
            idx = sel.indices.numpy()
            chosen[np.repeat(np.arange(kv_heads), idx.shape[1]), cand[idx.reshape(-1)]] = True
            read_pos = np.flatnonzero(chosen.any(0))
            parts = all_parts if read_pos.size == n else self.store.read(b, positions=read_pos, layer=0)
            partials = [self._part_partial(qb, part, chosen, dense or sel.shared, scale) for part in parts]
            merged = self.cache.merge(partials)
            outs.append(merged.out)
            self._count(parts, partials, merged, chosen)
            token_scores = np.zeros(n)
            token_scores[cand] = sel.token_scores()
            obs_r.append(np.full(read_pos.size, b))
            obs_p.append(read_pos)
            obs_s.append(np.maximum(token_scores[read_pos], 0.0))
            if record:
                probs = np.zeros((heads, n))
                probs[:, cand] = attention_probs(qb, k_cand, scale).numpy()
                self._record(b, n - 1, probs, np.repeat(chosen, group, axis=0), group)
        self.store.observe(np.arange(batch), np.concatenate(obs_r), np.concatenate(obs_p), np.concatenate(obs_s))
        self.cache.add_migration(self.store.schedule())
        self.decode_steps += 1
        return torch.stack(outs)[:, None]  # [B, 1, H, d]

    def _part_partial(self, qb: torch.Tensor, part: DevicePart, chosen: np.ndarray, all_heads: bool,
                      scale: float) -> Partial:
        """One device's partial over the tokens of ``part`` that each KV head selected."""
        assert part.k is not None and part.v is not None
        k, v = _to_torch(part.k), _to_torch(part.v)
        if all_heads:
            return partial_attention(qb, k, v, scale)
        return partial_attention(qb, k, v, scale, kv_mask=_to_torch(chosen[:, part.positions].T))

    def _count(self, parts: list[DevicePart], partials: list[Partial], merged: Partial, chosen: np.ndarray) -> None:
        """Add one request's decode step to the per-tier counters."""
        c = self.counters
        heads = int(merged.lse.shape[0])
        for part, p in zip(parts, partials, strict=True):
            c.kv_reads[part.tier] += int(chosen[:, part.positions].sum())
            c.token_reads[part.tier] += int(part.positions.size)
            w = torch.exp(p.lse - merged.lse)
            c.mass[part.tier] += float(torch.nan_to_num(w, nan=0.0).sum())
        c.head_steps += heads


class PamCache(Cache):
    """A ``transformers.Cache`` keeping every layer's KV in a tiered PAM store (see the module docstring).

    ``model_config``: the model's config (layers, heads, KV heads, head width, attention choice);
    ``max_tokens``: tokens per request the run may reach (prompt + new tokens: it sizes the tiers);
    ``batch``: sequences generated together; ``options``: tiers, placement, selection;
    ``recorder``: an :class:`AttentionRecorder` to fill; ``record_prompt_from``: also record prompt
    positions from this one on (teacher-forced steps); ``merge``: the partial-merging function
    (exact :func:`pamkv.attention.merge_to_partial`; replaceable to show a wrong merge is caught).
    """

    def __init__(self, model_config: Any, max_tokens: int, *, batch: int = 1, options: PamHFConfig | None = None,
                 recorder: AttentionRecorder | None = None, record_prompt_from: int | None = None,
                 merge: MergeFn = merge_to_partial) -> None:
        text = model_config.get_text_config(decoder=True)
        heads = int(text.num_attention_heads)
        kv_heads = int(getattr(text, "num_key_value_heads", None) or heads)
        head_dim = int(getattr(text, "head_dim", None) or text.hidden_size // heads)
        if max_tokens < 1 or batch < 1:
            raise ValueError("max_tokens and batch must be >= 1")
        self.model_config = model_config
        self.max_tokens = int(max_tokens)
        self.batch = int(batch)
        self.options = options if options is not None else PamHFConfig()
        self.recorder = recorder
        self.record_prompt_from = record_prompt_from
        self.merge = merge
        self.migrations = MigrationReport()
        self.group = heads // kv_heads
        blocks = self.batch * math.ceil(self.max_tokens / self.options.block_tokens)
        self.capacities = tier_capacities(self.options, blocks)
        self.spec = store_spec(self.options, kv_heads=kv_heads, head_dim=head_dim, blocks_needed=blocks)
        if int(self.spec.capacity_blocks().sum()) < blocks:
            raise UserError(f"the tiers hold {int(self.spec.capacity_blocks().sum())} blocks per layer, the run "
                            f"needs {blocks}: raise a tier's share or capacity_blocks")
        super().__init__(layers=[PamLayer(self, i) for i in range(int(text.num_hidden_layers))])

    def attention_is_pam(self) -> bool:
        """Whether the model computes attention with the ``pamkv`` function (it then reads the parts)."""
        return getattr(self.model_config, "_attn_implementation", None) == ATTN_NAME

    def add_migration(self, report: MigrationReport) -> None:
        """Count one scheduling step's moves."""
        self.migrations.add(report)

    @property
    def pam_layers(self) -> list[PamLayer]:
        """The per-layer stores' owners."""
        return [layer for layer in self.layers if isinstance(layer, PamLayer)]

    def report(self) -> dict[str, Any]:
        """Per-tier placement, decode reads and attention mass; migrations; scheduling facts (JSON-ready)."""
        layers = self.pam_layers
        names = [t.name for t in self.spec.tiers]
        kv_reads = np.sum([layer.counters.kv_reads for layer in layers], axis=0)
        token_reads = np.sum([layer.counters.token_reads for layer in layers], axis=0)
        mass = np.sum([layer.counters.mass for layer in layers], axis=0)
        head_steps = sum(layer.counters.head_steps for layer in layers)
        blocks = np.sum([layer.store.used for layer in layers], axis=0)
        tokens = np.sum([layer.store.tier_tokens for layer in layers], axis=0)
        total_reads = max(1, int(np.sum(kv_reads)))
        tiers = []
        for t, name in enumerate(names):
            tiers.append({
                "tier": name,
                "capacity_blocks_per_layer": int(self.capacities[t]) * self.spec.tiers[t].devices,
                "blocks_held": int(blocks[t]),
                "tokens_held": int(tokens[t]),
                "kv_reads": int(kv_reads[t]),
                "token_reads": int(token_reads[t]),
                "read_share": float(kv_reads[t]) / total_reads,
                "attention_mass_share": float(mass[t]) / head_steps if head_steps else 0.0,
            })
        first = layers[0].store
        return {
            "layers": len(layers),
            "block_tokens": self.options.block_tokens,
            "placement": self.options.placement,
            "targets": list(tier_targets(self.options, self.capacities)) if self.options.placement == "pam" else None,
            "selection": self.options.selection.method,
            "decode_steps": layers[0].decode_steps if layers else 0,
            "score_reads": int(sum(layer.score_reads for layer in layers)),
            "tiers": tiers,
            "migrations": self.migrations.to_dict(),
            "tier_importance_score_layer0": [float(s) for s in first.tier_scores()],
        }
