"""Sparse selection: which KV tokens a decode step reads, and a per-token importance score.

PAM (§3.2, §7) runs on *retrieval-based* KV sparsity: the whole KV cache is kept, and each decode
step reads only a selected subset of it. The paper's evaluation uses Double Sparsity at 8x (keep 1/8
of the tokens). What a step reads decides the device accesses, and the per-token score is the
importance signal ``S`` of the KV store's EMA ``I = lam*S + (1-lam)*I_prev`` (§6.3).

Methods (all vectorised; numpy or torch in, same kind out):

- ``dense``: every token.
- ``oracle``: top-k tokens by their true attention probability (needs all of K: an upper bound
  on what any selector achieves).
- ``double-sparsity`` (Yang et al. 2024, arXiv 2408.07092): approximate logits from a few "label"
  channels per KV head, chosen offline from calibration data (:func:`calibrate_labels`);
  Double Sparsity uses 16 of 128 channels, hence the default ``d // 8``.
- ``quest`` (Tang et al. 2024, arXiv 2406.10774): per page of 16 tokens the element-wise min and
  max of K; a page's score is the upper bound ``sum_i max(q_i*min_i, q_i*max_i)`` of any of its
  logits; top pages within a token budget.

Selection is **per KV head** by default: every KV head keeps its own ``n`` tokens, shared by the
query heads of its group (a KV head's K/V are read once for the whole group), ranked by the group's
mean attention probability. Per-head sets keep more attention mass than one set per layer (0.928 vs
0.913 of it at a 10% budget on SmolLM2-135M, ``../shared/reference/locality.md``), and each KV
head's vectors are separate reads. ``shared=True`` selects one token set for all KV heads (ranked by
the mean over heads) for a store that places whole tokens (all heads of a layer together).

Scores (``Selection.scores [K, T]``) are estimated attention probabilities: each row is
non-negative and sums to 1 (mean over the group's query heads of a softmax over tokens). They are
comparable across steps, which an EMA needs. ``dense`` and ``oracle`` give the true probabilities.

Always-kept tokens: ``sinks`` first tokens and ``recent`` last tokens are selected before any
other (they count toward the budget; if they alone exceed it, all of them and nothing else are kept).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from pamkv.attention._backend import Array, Ops, backend, is_torch, to_compute
from pamkv.attention.core import default_scale

DEFAULT_RATIO = 1 / 8
"""Double Sparsity at 8x, as in the paper's evaluation (§7: keep N/8 tokens)."""

QUEST_PAGE_TOKENS = 16
"""Quest's page size (Tang et al. 2024 use 16-token pages); also our KV block size."""


@dataclass(frozen=True)
class Selection:
    """The tokens one decode step reads, per KV head, and the score behind the choice.

    ``indices [K, n]``: int64 token indices, ascending in each row; the same ``n`` for every KV
    head (rows are identical when ``shared``). ``scores [K, T]``: estimated attention probability
    of every token (rows sum to 1; usable as the importance ``S``). ``score_reads``: K elements read
    per KV head to compute the scores (0 dense, ``T*d`` oracle, ``T*r`` Double Sparsity, ``2*P*d``
    Quest), for access accounting.
    """

    method: str
    indices: Array
    scores: Array
    n_tokens: int
    shared: bool
    score_reads: int

    @property
    def n_selected(self) -> int:
        """Tokens read per KV head."""
        return int(self.indices.shape[-1])

    @property
    def kv_heads(self) -> int:
        """KV heads the selection covers."""
        return int(self.indices.shape[0])

    def mask(self) -> Array:
        """``[K, T]`` bool: True where KV head ``h`` reads token ``t``."""
        return backend(self.indices).mask_from_indices(self.indices, self.n_tokens)

    def reads_per_token(self) -> np.ndarray:
        """``[T]`` int: how many KV heads read each token this step (0..K); numpy."""
        idx = backend(self.indices).to_numpy(self.indices).reshape(-1)
        return np.bincount(idx, minlength=self.n_tokens).astype(np.int64)

    def token_mask(self) -> np.ndarray:
        """``[T]`` bool: token read by at least one KV head; numpy."""
        return self.reads_per_token() > 0

    def token_scores(self) -> np.ndarray:
        """``[T]`` float: the tokens' scores averaged over KV heads (one importance per token); numpy."""
        return backend(self.scores).to_numpy(self.scores).mean(axis=0)


class SelectionConfig(BaseModel):
    """How a decode step picks the KV tokens it reads."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: Literal["dense", "oracle", "double-sparsity", "quest"] = Field(
        default="double-sparsity",
        description="Selector: all tokens, true top-k, Double-Sparsity label channels, or Quest page bounds.",
    )
    ratio: float = Field(
        default=DEFAULT_RATIO, gt=0, le=1,
        description="Fraction of the context to read (1/8 = the paper's 8x sparsity); ignored if budget is set.",
    )
    budget: int | None = Field(
        default=None, ge=1, description="Tokens to read per KV head per step (overrides ratio)."
    )
    sinks: int = Field(default=0, ge=0, description="First tokens always read (attention sinks).")
    recent: int = Field(default=0, ge=0, description="Last tokens always read (recent window).")
    shared: bool = Field(default=False, description="One token set for all KV heads instead of one per head.")
    page_tokens: int = Field(default=QUEST_PAGE_TOKENS, ge=1, description="Quest page size, tokens.")
    label_channels: int | None = Field(
        default=None, ge=1, description="Double-Sparsity label channels per KV head (default head_dim // 8)."
    )


def resolve_budget(n_tokens: int, budget: int | None = None, ratio: float = DEFAULT_RATIO) -> int:
    """Tokens to keep: ``budget`` if given, else ``ceil(ratio * n_tokens)``; capped at ``n_tokens``."""
    if budget is not None:
        if budget < 0:
            raise ValueError(f"budget must be >= 0, got {budget}")
        return min(int(budget), n_tokens)
    if not 0 < ratio <= 1:
        raise ValueError(f"ratio must be in (0, 1], got {ratio}")
    return min(math.ceil(ratio * n_tokens - 1e-9), n_tokens)


def _grouped(ops: Ops, q: Array, k: Array, scale: float | None) -> tuple[Array, Array, int]:
    """``q [H, d]``, ``k [T, K, d]`` -> scaled ``qg [K, G, d]``, contiguous ``kg [K, T, d]``, scale."""
    if q.ndim != 2 or k.ndim != 3 or q.shape[-1] != k.shape[-1]:
        raise ValueError(f"expected q [heads, d] and k [tokens, kv_heads, d]; got q{tuple(q.shape)}, "
                         f"k{tuple(k.shape)}")
    heads, d = q.shape
    kv_heads = k.shape[1]
    if kv_heads == 0 or heads % kv_heads:
        raise ValueError(f"query heads ({heads}) must be a positive multiple of kv_heads ({kv_heads})")
    s = default_scale(d, scale)
    return q.reshape(kv_heads, heads // kv_heads, d) * s, ops.contiguous(ops.permute(k, (1, 0, 2))), heads


def softmax_last(ops: Ops, x: Array) -> Array:
    """Softmax over the last axis with the max shift (all -inf rows give zeros)."""
    if x.shape[-1] == 0:
        return x
    m = ops.amax(x, -1, keepdims=True)
    m = ops.where(ops.isfinite(m), m, 0.0)
    e = ops.exp(x - m)
    z = ops.sum(e, -1, keepdims=True)
    return e / ops.where(z > 0, z, 1.0)


def group_probs(ops: Ops, logits: Array) -> Array:
    """``[K, G, T]`` logits -> ``[K, T]`` mean over the group of each head's softmax over tokens."""
    return ops.mean(softmax_last(ops, logits), 1)


def _forced(n_tokens: int, sinks: int, recent: int) -> np.ndarray:
    f = np.zeros(n_tokens, dtype=bool)
    f[: min(sinks, n_tokens)] = True
    if recent > 0:
        f[max(n_tokens - recent, 0):] = True
    return f


def topk_rows(ops: Ops, rank: Array, k: int, rows: int) -> Array:
    """Per row the ``k`` highest-ranked columns, ascending: ``[R, C]`` -> ``[rows, k]`` int64.

    ``R`` is ``rows`` or 1 (one ranking shared by all rows, broadcast to ``rows``).
    """
    empty = np.zeros((rank.shape[0], 0))
    idx = ops.sort(ops.topk_indices(rank, k), -1) if k > 0 else ops.as_index(empty, rank)
    if idx.shape[0] != rows:
        idx = ops.contiguous(ops.broadcast_to(idx, (rows, k)))
    return idx


def _select_by_scores(
    ops: Ops, method: str, scores: Array, budget: int, sinks: int, recent: int, shared: bool,
    score_reads: int,
) -> Selection:
    """Top ``budget`` tokens per KV head by ``scores [K, T]`` (by their head mean if ``shared``)."""
    kv_heads, n_tokens = int(scores.shape[0]), int(scores.shape[-1])
    forced = _forced(n_tokens, sinks, recent)
    k = max(budget, int(forced.sum()))
    rank = ops.mean(scores, 0, keepdims=True) if shared else scores
    if forced.any():
        rank = ops.where(ops.as_bool(forced, scores)[None, :], math.inf, rank)
    return Selection(method, topk_rows(ops, rank, k, kv_heads), scores, n_tokens, shared, score_reads)


def true_logits(q: Array, k: Array, scale: float | None = None) -> Array:
    """Scaled logits ``[K, G, T]`` of every query head (grouped by KV head) against every token."""
    ops = backend(q, k)
    q, k = to_compute(ops, q, k)
    qg, kg, _ = _grouped(ops, q, k, scale)
    return qg @ kg.mT


def attention_probs(q: Array, k: Array, scale: float | None = None) -> Array:
    """True attention probabilities ``[H, T]`` of decode query ``q [H, d]`` over ``k [T, K, d]``."""
    ops = backend(q, k)
    logits = true_logits(q, k, scale)
    return softmax_last(ops, logits).reshape(q.shape[0], k.shape[0])


def select_dense(q: Array, k: Array, *, scale: float | None = None) -> Selection:
    """Read every token; scores are the true attention probabilities (what dense attention computes)."""
    ops = backend(q, k)
    scores = group_probs(ops, true_logits(q, k, scale))
    n_tokens, kv_heads = int(k.shape[0]), int(k.shape[1])
    idx = ops.contiguous(ops.broadcast_to(ops.arange(n_tokens, scores)[None, :], (kv_heads, n_tokens)))
    return Selection("dense", idx, scores, n_tokens, False, 0)


def select_oracle_topk(
    q: Array, k: Array, budget: int | None = None, *, ratio: float = DEFAULT_RATIO, sinks: int = 0,
    recent: int = 0, shared: bool = False, scale: float | None = None,
) -> Selection:
    """Top-k tokens by true attention probability (mean over each KV head's query heads).

    Reads all of K to score (``score_reads = T*d``): a bound on what a real selector can do.
    """
    ops = backend(q, k)
    scores = group_probs(ops, true_logits(q, k, scale))
    n_tokens = int(k.shape[0])
    b = resolve_budget(n_tokens, budget, ratio)
    return _select_by_scores(ops, "oracle", scores, b, sinks, recent, shared, n_tokens * int(k.shape[-1]))


@dataclass(frozen=True)
class LabelChannels:
    """Double Sparsity's offline choice: ``channels [K, r]`` (ascending) of each KV head's keys."""

    channels: np.ndarray
    head_dim: int

    @property
    def n_labels(self) -> int:
        """Label channels per KV head (``r``)."""
        return int(self.channels.shape[1])

    @classmethod
    def all_channels(cls, kv_heads: int, head_dim: int) -> LabelChannels:
        """Every channel as a label: Double Sparsity then ranks exactly like the oracle."""
        return cls(np.tile(np.arange(head_dim, dtype=np.int64), (kv_heads, 1)), head_dim)


def calibrate_labels(q_calib: Array, k_calib: Array, n_labels: int | None = None) -> LabelChannels:
    """Choose each KV head's label channels from calibration queries and keys.

    ``q_calib [N, H, d]``, ``k_calib [M, K, d]`` (e.g. the queries and keys of a calibration text).
    A channel's importance is its mean ``|q_i * k_i|`` over all (query of the group, key) pairs,
    which factorises exactly into ``mean|q_i| * mean|k_i|``; the ``n_labels`` (default ``d // 8``,
    Double Sparsity's 16 of 128) largest are kept.
    """
    ops = backend(q_calib, k_calib)
    qn = ops.to_numpy(ops.cast(q_calib, ops.compute_dtype(q_calib))).astype(np.float64)
    kn = ops.to_numpy(ops.cast(k_calib, ops.compute_dtype(k_calib))).astype(np.float64)
    if qn.ndim != 3 or kn.ndim != 3 or qn.shape[-1] != kn.shape[-1]:
        raise ValueError(f"expected q_calib [N, heads, d] and k_calib [M, kv_heads, d]; got "
                         f"{qn.shape}, {kn.shape}")
    _, heads, d = qn.shape
    kv_heads = kn.shape[1]
    if kv_heads == 0 or heads % kv_heads or qn.shape[0] == 0 or kn.shape[0] == 0:
        raise ValueError("calibration needs some queries and keys, with heads a multiple of kv_heads")
    r = max(1, d // 8) if n_labels is None else int(n_labels)
    if not 1 <= r <= d:
        raise ValueError(f"n_labels must be in [1, {d}], got {n_labels}")
    q_mag = np.abs(qn).reshape(qn.shape[0], kv_heads, heads // kv_heads, d).mean(axis=(0, 2))  # [K, d]
    k_mag = np.abs(kn).mean(axis=0)  # [K, d]
    importance = q_mag * k_mag
    # stable ranking: larger importance first, lower channel index on ties
    order = np.argsort(-importance, axis=1, kind="stable")[:, :r]
    return LabelChannels(np.sort(order, axis=1), d)


def select_double_sparsity(
    q: Array, k: Array, labels: LabelChannels, budget: int | None = None, *,
    ratio: float = DEFAULT_RATIO, sinks: int = 0, recent: int = 0, shared: bool = False,
    scale: float | None = None,
) -> Selection:
    """Double-Sparsity-style selection: approximate logits from the label channels, keep the top-k.

    Approximate logit of head ``h`` (KV head ``c``) and token ``t``:
    ``scale * sum_{i in labels[c]} q[h, i] * k[t, c, i]`` with the full-width ``scale`` (default
    ``1/sqrt(d)``), so with all channels as labels it equals the true logit. Scores are the group
    mean of the softmax of these logits. ``score_reads = T*r``.
    """
    ops = backend(q, k)
    q, k = to_compute(ops, q, k)
    qg, kg, _ = _grouped(ops, q, k, scale)
    kv_heads, d = int(k.shape[1]), int(k.shape[2])
    if labels.channels.shape[0] != kv_heads or labels.head_dim != d:
        raise ValueError(f"labels are for {labels.channels.shape[0]} KV heads of width {labels.head_dim}; "
                         f"k has {kv_heads} of width {d}")
    ch = ops.as_index(labels.channels, q)[:, None, :]  # [K, 1, r]
    if labels.n_labels == d and bool((labels.channels == np.arange(d)).all()):
        q_lab, k_lab = qg, kg  # the same arithmetic as the oracle, bit for bit
    else:
        q_lab = ops.take_along(qg, ch, 2)  # [K, G, r]
        k_lab = ops.take_along(kg, ch, 2)  # [K, T, r]  (Double Sparsity's "label cache")
    scores = group_probs(ops, q_lab @ k_lab.mT)
    n_tokens = int(k.shape[0])
    b = resolve_budget(n_tokens, budget, ratio)
    return _select_by_scores(ops, "double-sparsity", scores, b, sinks, recent, shared,
                             n_tokens * labels.n_labels)


@dataclass(frozen=True)
class PageBounds:
    """Quest's per-page summary of K: ``kmin, kmax [P, K, d]`` over pages of ``page_tokens``.

    The last page may be partial (``n_tokens % page_tokens`` tokens).
    """

    kmin: Array
    kmax: Array
    page_tokens: int
    n_tokens: int

    @property
    def n_pages(self) -> int:
        """Pages, the last possibly partial."""
        return int(self.kmin.shape[0])


def page_bounds(k: Array, page_tokens: int = QUEST_PAGE_TOKENS) -> PageBounds:
    """Element-wise min and max of K over each page of ``page_tokens`` consecutive tokens."""
    ops = backend(k)
    (k,) = to_compute(ops, k)
    if k.ndim != 3:
        raise ValueError(f"expected k [tokens, kv_heads, d], got {tuple(k.shape)}")
    if page_tokens < 1:
        raise ValueError(f"page_tokens must be >= 1, got {page_tokens}")
    n_tokens = int(k.shape[0])
    n_pages = -(-n_tokens // page_tokens)
    pad = n_pages * page_tokens - n_tokens
    # pad the last page by repeating its last token: min/max are unchanged by duplicates
    src = ops.as_index(np.minimum(np.arange(n_pages * page_tokens), max(n_tokens - 1, 0)), k)
    kp = k[src] if pad else k
    kp = kp.reshape(n_pages, page_tokens, *k.shape[1:])
    if n_pages == 0:
        empty = ops.zeros((0, *k.shape[1:]), k)
        return PageBounds(empty, empty, page_tokens, 0)
    return PageBounds(-ops.amax(-kp, 1), ops.amax(kp, 1), page_tokens, n_tokens)


def page_upper_bounds(q: Array, bounds: PageBounds, scale: float | None = None) -> Array:
    """Quest's bound ``[H, P]``: ``scale * sum_i max(q_i*kmin_i, q_i*kmax_i)`` per head and page.

    It is >= the scaled logit of every token of the page (for positive ``scale``). Computed as
    ``q+ . kmax + q- . kmin`` (``q+ = max(q, 0)``, ``q- = min(q, 0)``): two matrix products.
    """
    ops = backend(q, bounds.kmin)
    q, kmin, kmax = to_compute(ops, q, bounds.kmin, bounds.kmax)
    heads, d = q.shape
    kv_heads = kmin.shape[1]
    s = default_scale(d, scale)
    qg = q.reshape(kv_heads, heads // kv_heads, d)
    qpos = ops.clip_min(qg, 0.0)
    qneg = ops.clip_max(qg, 0.0)
    ub = qpos @ ops.permute(kmax, (1, 2, 0)) + qneg @ ops.permute(kmin, (1, 2, 0))  # [K, G, P]
    return (ub * s).reshape(heads, bounds.n_pages)


def select_quest(
    q: Array, k: Array, budget: int | None = None, *, ratio: float = DEFAULT_RATIO,
    page_tokens: int = QUEST_PAGE_TOKENS, sinks: int = 0, recent: int = 0, shared: bool = False,
    scale: float | None = None, bounds: PageBounds | None = None,
) -> Selection:
    """Quest-style selection: rank pages by their logit upper bound, keep whole pages within the budget.

    Pages holding a sink or recent token, and a partial last page (the page being filled), are
    always kept; then the top full pages while the budget lasts. So every KV head reads the same
    number ``n <= budget`` of tokens (more only if the always-kept pages exceed the budget). Page
    scores are the group mean of a softmax over pages of the bounds; a token's score is its page's
    score divided by the page's length. ``score_reads = 2*P*d`` (min and max vectors).
    ``bounds`` lets a caller pass summaries it maintains incrementally.
    """
    ops = backend(q, k)
    q, k = to_compute(ops, q, k)
    if bounds is None:
        bounds = page_bounds(k, page_tokens)
    page_tokens = bounds.page_tokens
    n_tokens, kv_heads, d = int(k.shape[0]), int(k.shape[1]), int(k.shape[2])
    if bounds.n_tokens != n_tokens:
        raise ValueError(f"page bounds cover {bounds.n_tokens} tokens, k has {n_tokens}")
    n_pages = bounds.n_pages
    ub = page_upper_bounds(q, bounds, scale).reshape(kv_heads, q.shape[0] // kv_heads, n_pages)
    page_scores = group_probs(ops, ub)  # [K, P]
    page_len = np.full(n_pages, page_tokens, dtype=np.int64)
    if n_pages and n_tokens % page_tokens:
        page_len[-1] = n_tokens % page_tokens
    token_page = np.arange(n_tokens) // page_tokens
    forced_tok = _forced(n_tokens, sinks, recent)
    forced_page = np.zeros(n_pages, dtype=bool)
    forced_page[np.unique(token_page[forced_tok])] = True
    if n_pages and page_len[-1] < page_tokens:
        forced_page[-1] = True
    b = resolve_budget(n_tokens, budget, ratio)
    forced_tokens = int(page_len[forced_page].sum())
    n_keep = int(forced_page.sum()) + max(0, b - forced_tokens) // page_tokens
    n_keep = min(n_keep, n_pages)
    rank = ops.where(ops.as_bool(forced_page, page_scores)[None, :], math.inf,
                     ops.mean(page_scores, 0, keepdims=True) if shared else page_scores)
    pages = topk_rows(ops, rank, n_keep, kv_heads)  # [K, n_keep], ascending
    tok = (pages[:, :, None] * page_tokens + ops.arange(page_tokens, pages)[None, None, :]).reshape(kv_heads, -1)
    n_sel = int(page_len[forced_page].sum()) + (n_keep - int(forced_page.sum())) * page_tokens
    tok = tok[:, :n_sel]  # a partial last page is the highest page, so its padding sits at the end
    scores = page_scores[:, ops.as_index(token_page, page_scores)] / ops.cast(
        ops.as_index(page_len[token_page], page_scores), page_scores.dtype)[None, :]
    return Selection("quest", tok, scores, n_tokens, shared, 2 * n_pages * d)


def select(config: SelectionConfig, q: Array, k: Array, *, labels: LabelChannels | None = None,
           scale: float | None = None) -> Selection:
    """Run the selector ``config`` names on decode query ``q [H, d]`` and keys ``k [T, K, d]``.

    Double Sparsity needs calibrated ``labels``; without them it calibrates on ``q`` and ``k``
    themselves (only sensible for tests and demos — real runs calibrate offline).
    """
    common = {"sinks": config.sinks, "recent": config.recent, "shared": config.shared, "scale": scale}
    if config.method == "dense":
        return select_dense(q, k, scale=scale)
    if config.method == "oracle":
        return select_oracle_topk(q, k, config.budget, ratio=config.ratio, **common)  # type: ignore[arg-type]
    if config.method == "quest":
        return select_quest(q, k, config.budget, ratio=config.ratio, page_tokens=config.page_tokens,
                            **common)  # type: ignore[arg-type]
    if labels is None:
        labels = calibrate_labels(q[None] if not is_torch(q) else q.unsqueeze(0), k, config.label_channels)
    return select_double_sparsity(q, k, labels, config.budget, ratio=config.ratio, **common)  # type: ignore[arg-type]
