"""Shared strategies and an independent slow reference for the attention tests."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from hypothesis import strategies as st

from pamkv.attention import Partial, merge_to_partial, merge_two


def assert_exact(actual: object, desired: object) -> None:
    """Equal up to float64 rounding (-inf matches -inf)."""
    np.testing.assert_allclose(np.asarray(actual), np.asarray(desired), rtol=1e-9, atol=1e-11)


def naive_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, visible: np.ndarray | None = None,
                    scale: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-head loop in float64 written from the textbook formula (no shared code with the package).

    ``q [H, d]``; ``visible [T]`` bool. Returns ``out [H, e]``, ``lse [H]`` (zeros / -inf when empty).
    """
    heads, d = q.shape
    tokens, kv_heads, e = v.shape
    group = heads // kv_heads
    s = 1 / math.sqrt(d) if scale is None else scale
    out = np.zeros((heads, e))
    lse = np.full(heads, -np.inf)
    keep = np.ones(tokens, bool) if visible is None else visible
    for h in range(heads):
        c = h // group
        logits = np.array([s * float(np.dot(q[h].astype(np.float64), k[t, c].astype(np.float64)))
                           for t in range(tokens) if keep[t]])
        vals = np.array([v[t, c].astype(np.float64) for t in range(tokens) if keep[t]]).reshape(-1, e)
        if logits.size == 0:
            continue
        m = logits.max()
        w = np.exp(logits - m)
        out[h] = (w[:, None] * vals).sum(0) / w.sum()
        lse[h] = m + math.log(w.sum())
    return out, lse


@st.composite
def problems(draw: st.DrawFn, max_tokens: int = 40, min_tokens: int = 0,
             magnitudes: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0)) -> dict[str, object]:
    """A random GQA decode problem in float64: q [H, d], k [T, K, d], v [T, K, e]."""
    kv_heads = draw(st.integers(1, 3))
    group = draw(st.integers(1, 3))
    d = draw(st.sampled_from([1, 2, 4, 8]))
    e = draw(st.sampled_from([1, 3, 8]))
    tokens = draw(st.integers(min_tokens, max_tokens))
    mag = draw(st.sampled_from(magnitudes))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    heads = kv_heads * group
    return {
        "q": rng.standard_normal((heads, d)) * mag,
        "k": rng.standard_normal((tokens, kv_heads, d)),
        "v": rng.standard_normal((tokens, kv_heads, e)),
        "rng": rng,
    }


@st.composite
def partitions(draw: st.DrawFn, tokens: int, max_parts: int = 6) -> list[np.ndarray]:
    """Any partition of ``range(tokens)`` into 1..max_parts parts, some possibly empty."""
    n_parts = draw(st.integers(1, max_parts))
    labels = np.array(draw(st.lists(st.integers(0, n_parts - 1), min_size=tokens, max_size=tokens)),
                      dtype=np.int64)
    return [np.flatnonzero(labels == p) for p in range(n_parts)]


def merge_in_random_tree(draw: Callable[..., Any], parts: list[Partial]) -> Partial:
    """Reduce ``parts`` in a random tree: random pairs (merge_two) or random groups (merge_to_partial)."""
    pool = list(parts)
    while len(pool) > 1:
        if draw(st.booleans()):
            i = draw(st.integers(0, len(pool) - 1))
            a = pool.pop(i)
            j = draw(st.integers(0, len(pool) - 1))
            b = pool.pop(j)
            pool.append(merge_two(a, b) if draw(st.booleans()) else merge_two(b, a))
        else:
            size = draw(st.integers(1, len(pool)))
            picked = sorted(draw(st.lists(st.integers(0, len(pool) - 1), min_size=size, max_size=size,
                                          unique=True)), reverse=True)
            group = [pool.pop(i) for i in picked]
            pool.append(merge_to_partial(group))
    return pool[0]
