"""Aggregate locality curves, so a simulator can price many requests without stepping a generator each.

For a context of ``n`` tokens, measured on the generator (or any :class:`LocalitySource`) over a short
seeded run and cached:

- ``oracle_mass(f)``: attention mass held by this step's heaviest fraction ``f`` of the units;
- ``ema_mass(f)``: mass held by the fraction ``f`` of units ranked by the importance EMA
  ``I = w * S + (1 - w) * I_prev`` (PAM §6.3, w = ``ema_weight``, S = this step's mass): what a tier
  holding the hottest ``f`` of the context by EMA importance serves;
- ``selection_share(s, f)``: expected share of this step's top-``s`` selection (e.g. Double Sparsity's
  1/8) that lies in the EMA top-``f`` set — the share of the selected work that lands on that tier.

The EMA set is the one known before the step (last step's EMA); units new this step rank first in it,
since a new token's KV is written to the top tier.

Curves are tabulated on a fixed grid of fractions and interpolated linearly between grid points; across
context lengths, :meth:`LocalityCurveBank.at` interpolates in log2(n) between cached contexts
(powers of two). The figures are means over ``heads`` head streams and the measured steps after a
warm-up that lets the EMA settle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from pamkv.config.workloads import LocalityConfig
from pamkv.workloads.locality.model import LocalityModel, LocalitySource

FRACTIONS = np.array(
    [0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.125, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0]
)


def _interp(grid: np.ndarray, values: np.ndarray, f: float | np.ndarray) -> np.ndarray:
    x = np.clip(np.asarray(f, dtype=np.float64), 0.0, 1.0)
    g = np.concatenate([[0.0], grid])
    v = np.concatenate([[0.0], values])
    return np.interp(x, g, v)


@dataclass(frozen=True)
class LocalityCurves:
    """Aggregate curves for one context length and unit size (see module docs)."""

    n_tokens: int
    block_tokens: int
    fractions: np.ndarray
    oracle: np.ndarray  # [len(fractions)]
    ema: np.ndarray  # [len(fractions)]
    selection: np.ndarray  # [select fraction, set fraction]

    def oracle_mass(self, f: float | np.ndarray) -> np.ndarray:
        """Mass held by this step's heaviest fraction ``f`` of the units."""
        return _interp(self.fractions, self.oracle, f)

    def ema_mass(self, f: float | np.ndarray) -> np.ndarray:
        """Mass held by the fraction ``f`` of units with the highest importance EMA."""
        return _interp(self.fractions, self.ema, f)

    def selection_share(self, select_fraction: float, set_fraction: float | np.ndarray) -> np.ndarray:
        """Expected share of this step's top-``select_fraction`` selection inside the EMA top-``set_fraction`` set."""
        s = float(np.clip(select_fraction, self.fractions[0], 1.0))
        col = np.array([np.interp(s, self.fractions, self.selection[:, j]) for j in range(self.fractions.size)])
        return _interp(self.fractions, col, set_fraction)


def measure_curves(
    source: LocalitySource,
    n_tokens: int,
    *,
    block_tokens: int = 1,
    heads: int = 2,
    warmup: int = 8,
    steps: int = 16,
    ema_weight: float = 0.6,
    seed: int = 0,
) -> LocalityCurves:
    """Tabulate the curves of ``source`` at ``n_tokens`` context over ``steps`` steps after ``warmup``."""
    rng = np.random.default_rng(seed)
    stream = source.start(n_tokens, rng, heads=heads, block_tokens=block_tokens)
    nf = FRACTIONS.size
    oracle = np.zeros(nf)
    ema_sum = np.zeros(nf)
    sel = np.zeros((nf, nf))
    importance: np.ndarray | None = None
    count = 0
    for t in range(warmup + steps):
        mass = stream.step(1)
        units = mass.shape[1]
        if importance is not None and t >= warmup:
            ks = np.maximum(1, np.ceil(FRACTIONS * units - 1e-9).astype(np.int64))
            prior = np.full(mass.shape, np.inf)  # units new this step rank first: new KV enters the top tier
            prior[:, : importance.shape[1]] = importance
            for h in range(mass.shape[0]):
                m = mass[h]
                order = np.argsort(-m)
                oracle += np.cumsum(m[order])[ks - 1]
                ema_rank = np.empty(units, dtype=np.int64)
                ema_rank[np.argsort(-prior[h])] = np.arange(units)
                ema_sorted_mass = np.zeros(units)
                ema_sorted_mass[ema_rank] = m
                ema_sum += np.cumsum(ema_sorted_mass)[ks - 1]
                # Count units by (this step's rank bin, EMA rank bin); cumulative sums over both give
                # |top-k_i by mass  intersect  top-k_j by EMA| for every pair of grid fractions.
                mass_bin = np.searchsorted(ks, np.arange(units), side="right")
                ema_bin = np.searchsorted(ks, ema_rank[order], side="right")
                grid = np.bincount(mass_bin * (nf + 1) + ema_bin, minlength=(nf + 1) ** 2)
                both = grid.reshape(nf + 1, nf + 1).cumsum(axis=0).cumsum(axis=1)[:nf, :nf]
                sel += both / ks[:, None]
                count += 1
        if importance is None:
            importance = mass.copy()
        else:
            grown = np.zeros_like(mass)
            grown[:, : importance.shape[1]] = importance
            importance = ema_weight * mass + (1.0 - ema_weight) * grown
    return LocalityCurves(
        n_tokens=n_tokens, block_tokens=block_tokens, fractions=FRACTIONS.copy(),
        oracle=oracle / count, ema=ema_sum / count, selection=sel / count,
    )


@dataclass
class LocalityCurveBank:
    """Curves for any context length, from cached measurements at powers of two (interpolated in log2 n)."""

    config: LocalityConfig = field(default_factory=LocalityConfig)
    block_tokens: int = 1
    seed: int = 0
    _cache: dict[int, LocalityCurves] = field(default_factory=dict)

    def _at_exact(self, n: int) -> LocalityCurves:
        if n not in self._cache:
            self._cache[n] = measure_curves(
                LocalityModel(self.config), n, block_tokens=self.block_tokens,
                ema_weight=self.config.ema_weight, seed=self.seed,
            )
        return self._cache[n]

    def at(self, n_tokens: int) -> LocalityCurves:
        """Curves for an ``n_tokens`` context (>= 1)."""
        if n_tokens < 1:
            raise ValueError(f"n_tokens must be >= 1, got {n_tokens}")
        lo_exp = max(4, int(math.floor(math.log2(n_tokens))))
        lo, hi = 2**lo_exp, 2 ** (lo_exp + 1)
        if n_tokens <= lo:
            return self._at_exact(lo)
        a, b = self._at_exact(lo), self._at_exact(hi)
        t = (math.log2(n_tokens) - lo_exp) / 1.0
        mix = lambda x, y: (1 - t) * x + t * y  # noqa: E731
        return LocalityCurves(
            n_tokens=n_tokens, block_tokens=self.block_tokens, fractions=a.fractions,
            oracle=mix(a.oracle, b.oracle), ema=mix(a.ema, b.ema), selection=mix(a.selection, b.selection),
        )
