"""Token-length distributions for workloads known only by their published statistics.

A ``lognormal`` length is fitted to a published mean and a spread (coefficient of variation): with
``sigma^2 = ln(1 + cv^2)``, the location ``mu`` is solved (bisection on the closed-form mean of a
clipped lognormal) so that lengths clipped to [min, max] have exactly the published mean; draws are
rounded to integers. ``uniform`` draws integers uniformly in [min, max] (a published range and nothing
more). ``table`` resamples a column of a packaged length table. All draws use the caller's generator.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from pamkv.config.workloads import LengthDist
from pamkv.errors import UserError


def _phi(x: float) -> float:
    """Standard normal CDF."""
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def clipped_lognormal_mean(mu: float, sigma: float, lo: float, hi: float) -> float:
    """Mean of min(max(X, lo), hi) for X = exp(N(mu, sigma^2)), lo > 0."""
    a, b = math.log(lo), math.log(hi)
    below = _phi((a - mu) / sigma)
    above = 1.0 - _phi((b - mu) / sigma)
    inside = math.exp(mu + sigma * sigma / 2) * (
        _phi((b - mu - sigma * sigma) / sigma) - _phi((a - mu - sigma * sigma) / sigma)
    )
    return lo * below + hi * above + inside


def fit_lognormal(mean: float, cv: float, lo: float, hi: float) -> tuple[float, float]:
    """(mu, sigma) of a lognormal with shape ``cv`` whose values clipped to [lo, hi] average ``mean``."""
    if not lo < mean < hi:
        raise UserError(f"a lognormal mean ({mean}) must lie strictly inside [min, max] = [{lo}, {hi}]")
    sigma = math.sqrt(math.log1p(cv * cv))
    left, right = math.log(lo) - 10 * sigma, math.log(hi) + 10 * sigma
    for _ in range(200):  # the clipped mean increases with mu: plain bisection
        mid = 0.5 * (left + right)
        if clipped_lognormal_mean(mid, sigma, lo, hi) < mean:
            left = mid
        else:
            right = mid
    return 0.5 * (left + right), sigma


def draw_lengths(
    dist: LengthDist,
    n: int,
    rng: np.random.Generator,
    table: Callable[[str, str], np.ndarray] | None = None,
) -> np.ndarray:
    """``n`` integer token lengths from ``dist``; ``table(name, column)`` supplies packaged length tables."""
    lo, hi = dist.min, dist.max
    if dist.dist == "constant":
        assert dist.mean is not None
        return np.full(n, int(round(dist.mean)), dtype=np.int64)
    if dist.dist == "uniform":
        return rng.integers(lo, hi, size=n, endpoint=True, dtype=np.int64)
    if dist.dist == "lognormal":
        assert dist.mean is not None and dist.cv is not None
        # Rounding to integers below keeps the mean (rounding errors are symmetric around .5).
        mu, sigma = fit_lognormal(dist.mean, dist.cv, max(lo, 0.5), hi)
        x = np.exp(rng.normal(mu, sigma, size=n))
        return np.clip(np.rint(x), lo, hi).astype(np.int64)
    if table is None or dist.table is None or dist.column is None:
        raise UserError("a 'table' length needs a packaged table and column")
    values = table(dist.table, dist.column)
    values = values[(values >= lo) & (values <= hi)]
    if values.size == 0:
        raise UserError(f"table '{dist.table}' has no {dist.column} lengths in [{lo}, {hi}]")
    return values[rng.integers(0, values.size, size=n)].astype(np.int64)
