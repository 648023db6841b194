"""The context-locality figures of ../shared/reference/locality.md, computed for any stream of attention masses.

Per step and head stream, from the mass array ``m`` over the ``n`` tokens of the context (sum 1), with
``k(f) = ceil(f * n)`` tokens in a top-``f`` set:

- ``top{1,5,10,20}_mass``: mass of the ``k(f)`` heaviest tokens;
- ``share_for_90_mass`` / ``share_for_99_mass``: smallest share of tokens holding 90% / 99% of the mass;
- ``sink_mass``: mass of token 0; ``last64_mass``: mass of the last 64 tokens;
- ``jaccard_top10_lag{1,8,32}``: Jaccard index of this step's top-10% set with the one ``lag`` steps ago;
- ``retained_top10``: share of the previous step's top-10% set still in this step's;
- capture at a 10% budget (mass of this step held by a set of ``k(0.1)`` tokens chosen by a policy):
  ``oracle_capture_10`` (this step's own top set), ``prev_step_capture_10`` (last step's top set),
  ``h2o_capture_10`` (H2O arXiv 2306.14048: half the budget the newest tokens, half the highest
  attention accumulated over earlier steps), ``page16_oracle_capture_10`` (best 16-token pages,
  Quest arXiv 2406.10774 granularity), ``streaming_capture_10`` (StreamingLLM arXiv 2309.17453:
  4 sinks + newest tokens);
- ``persistence_top10_32``: share of this step's top-10% set that was in a top-10% set during the
  previous 32 steps (Scissorhands arXiv 2305.17118 "persistence of importance");
- ``below_1pct_of_max``: share of tokens whose mass is below 1% of the step's largest (H2O Fig. 2).

Figures are means over steps (lagged ones over the steps that have that lag) and head streams.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from pamkv.workloads.locality.model import LocalitySource

TOP_FRACTIONS = {"top1_mass": 0.01, "top5_mass": 0.05, "top10_mass": 0.10, "top20_mass": 0.20}
JACCARD_LAGS = (1, 8, 32)
PERSISTENCE_WINDOW = 32
H2O_RECENT_SHARE = 0.5
STREAMING_SINKS = 4
PAGE_TOKENS = 16

FIGURE_NAMES = (
    *TOP_FRACTIONS,
    "share_for_90_mass",
    "share_for_99_mass",
    "sink_mass",
    "last64_mass",
    *(f"jaccard_top10_lag{lag}" for lag in JACCARD_LAGS),
    "retained_top10",
    "oracle_capture_10",
    "prev_step_capture_10",
    "h2o_capture_10",
    "page16_oracle_capture_10",
    "streaming_capture_10",
    "persistence_top10_32",
    "below_1pct_of_max",
)


def top_count(fraction: float, n: int) -> int:
    """Tokens in a top-``fraction`` set of ``n`` tokens: ceil(fraction * n), at least 1."""
    return max(1, math.ceil(fraction * n - 1e-9))


@dataclass
class FigureAccumulator:
    """Accumulates the figures of one head stream, one step at a time (``add``), then ``means``."""

    sums: dict[str, float] = field(default_factory=lambda: dict.fromkeys(FIGURE_NAMES, 0.0))
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FIGURE_NAMES, 0))
    _history: deque[np.ndarray] = field(default_factory=lambda: deque(maxlen=max(JACCARD_LAGS)))
    _accumulated: np.ndarray = field(default_factory=lambda: np.zeros(0))
    context_sum: float = 0.0
    steps: int = 0

    def _put(self, name: str, value: float) -> None:
        self.sums[name] += value
        self.counts[name] += 1

    def add(self, mass: np.ndarray) -> None:
        """Add one step's token masses (1-D, summing to 1; the context may have grown since the last step)."""
        m = np.asarray(mass, dtype=np.float64)
        n = m.size
        order = np.argsort(-m)
        cum = np.cumsum(m[order])
        total = cum[-1]
        for name, frac in TOP_FRACTIONS.items():
            self._put(name, cum[top_count(frac, n) - 1] / total)
        for name, level in (("share_for_90_mass", 0.9), ("share_for_99_mass", 0.99)):
            self._put(name, (int(np.searchsorted(cum, level * total - 1e-12)) + 1) / n)
        self._put("sink_mass", m[0] / total)
        self._put("last64_mass", m[-64:].sum() / total)
        self._put("below_1pct_of_max", float(np.mean(m < 0.01 * m.max())))

        k = top_count(0.10, n)
        top = order[:k]
        self._put("oracle_capture_10", cum[k - 1] / total)
        in_top = np.zeros(n, dtype=bool)
        in_top[top] = True
        hist = self._history
        for lag in JACCARD_LAGS:
            if len(hist) >= lag:
                prev = hist[-lag]
                inter = int(in_top[prev].sum())
                self._put(f"jaccard_top10_lag{lag}", inter / (k + prev.size - inter))
                if lag == 1:
                    self._put("retained_top10", inter / prev.size)
                    self._put("prev_step_capture_10", m[prev].sum() / total)
        if len(hist) >= PERSISTENCE_WINDOW:
            seen = np.zeros(n, dtype=bool)
            for prev in hist:
                seen[prev] = True
            self._put("persistence_top10_32", float(seen[top].mean()))

        if self._accumulated.size:
            acc = np.zeros(n)
            acc[: self._accumulated.size] = self._accumulated
            recent = min(n, int(round(H2O_RECENT_SHARE * k)))
            heavy = k - recent
            chosen = m[n - recent :].sum()
            if heavy > 0:
                older = acc[: n - recent]
                pick = np.argpartition(-older, heavy - 1)[:heavy] if heavy < older.size else np.arange(older.size)
                chosen += m[pick].sum()
            self._put("h2o_capture_10", chosen / total)
            acc += m
            self._accumulated = acc
        else:
            self._accumulated = m.copy()

        pages = np.add.reduceat(m, np.arange(0, n, PAGE_TOKENS))
        n_pages = max(1, round(k / PAGE_TOKENS))
        self._put("page16_oracle_capture_10", np.sort(pages)[::-1][:n_pages].sum() / total)

        sinks = min(STREAMING_SINKS, n, k)
        window = max(0, min(k - sinks, n - sinks))
        self._put("streaming_capture_10", (m[:sinks].sum() + (m[n - window :].sum() if window else 0.0)) / total)

        hist.append(top)
        self.context_sum += n
        self.steps += 1

    def means(self) -> dict[str, float]:
        """Mean of each figure over the steps that had it (NaN when none did)."""
        return {k: (self.sums[k] / self.counts[k] if self.counts[k] else float("nan")) for k in FIGURE_NAMES}


def combine(accumulators: list[FigureAccumulator]) -> dict[str, float]:
    """Mean figures over several head streams (each stream weighted equally), plus run facts."""
    per = [a.means() for a in accumulators]
    out = {k: float(np.nanmean([p[k] for p in per])) if any(not math.isnan(p[k]) for p in per)
           else float("nan") for k in FIGURE_NAMES}
    steps = sum(a.steps for a in accumulators)
    out["context_tokens_mean"] = sum(a.context_sum for a in accumulators) / max(1, steps)
    out["steps"] = float(accumulators[0].steps if accumulators else 0)
    out["heads"] = float(len(accumulators))
    return out


def measure(
    source: LocalitySource,
    n_tokens: int,
    *,
    steps: int = 128,
    heads: int = 8,
    seed: int = 0,
) -> dict[str, float]:
    """Run ``steps`` decode steps (one new token each) from an ``n_tokens`` context at token granularity
    and return the reference figures, averaged over steps and ``heads`` head streams."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    rng = np.random.default_rng(seed)
    stream = source.start(n_tokens, rng, heads=heads, block_tokens=1)
    accs = [FigureAccumulator() for _ in range(heads)]
    for _ in range(steps):
        mass = stream.step(1)
        for h in range(heads):
            accs[h].add(mass[h])
    return combine(accs)
