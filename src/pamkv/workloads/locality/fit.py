"""Fit the locality generator's parameters to measured figures (the reference, or a recorded trace's).

The fit is a deterministic pattern search (coordinate steps that halve when no move helps) on the
squared error between the generator's figures and the targets, with common random numbers (the same
seed for every evaluation) so that the objective does not jitter between evaluations. The default
parameters in :class:`pamkv.config.workloads.LocalityConfig` are its output on the reference figures;
``benchmarks/workloads.py --fit`` reruns it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pamkv.config.workloads import LocalityConfig
from pamkv.workloads.locality.metrics import measure
from pamkv.workloads.locality.model import LocalityModel

# Parameter -> (lower bound, upper bound, initial step).
SEARCH_SPACE: dict[str, tuple[float, float, float]] = {
    "sink_mass": (0.05, 0.6, 0.04),
    "recent_mass": (0.05, 0.6, 0.04),
    "recent_decay": (0.2, 3.0, 0.2),
    "recent_window": (16, 2048, 64),
    "recent_offset": (0.5, 64.0, 2.0),
    "tail_index": (0.3, 1.5, 0.1),
    "drift_sigma": (0.0, 3.0, 0.2),
    "drift_corr": (0.5, 0.999, 0.02),
    "jitter_sigma": (0.0, 3.0, 0.2),
    "background_mass": (0.0, 0.1, 0.005),
    "background_sigma": (0.0, 3.0, 0.25),
}

# Calibration runs: (prompt tokens, decode steps) spanning the reference's 0.75-1.6k contexts.
CALIBRATION_RUNS: tuple[tuple[int, int], ...] = ((768, 160), (1408, 160))


@dataclass(frozen=True)
class FitResult:
    """Outcome of :func:`fit_locality`: the best config, its loss and figures, and evaluations spent."""

    config: LocalityConfig
    loss: float
    figures: dict[str, float]
    evaluations: int


def figures_at(config: LocalityConfig, runs: Sequence[tuple[int, int]], heads: int, seed: int) -> dict[str, float]:
    """The generator's figures averaged over calibration runs of (prompt tokens, steps)."""
    model = LocalityModel(config)
    per = [measure(model, n, steps=s, heads=heads, seed=seed + i) for i, (n, s) in enumerate(runs)]
    return {k: sum(p[k] for p in per) / len(per) for k in per[0]}


def loss_of(figures: dict[str, float], targets: dict[str, float], weights: dict[str, float] | None = None) -> float:
    """Weighted sum of squared differences between figures and targets (names present in both)."""
    w = weights or {}
    return sum(w.get(k, 1.0) * (figures[k] - v) ** 2 for k, v in targets.items() if k in figures)


def fit_locality(
    targets: dict[str, float],
    *,
    start: LocalityConfig | None = None,
    params: Sequence[str] = tuple(SEARCH_SPACE),
    runs: Sequence[tuple[int, int]] = CALIBRATION_RUNS,
    heads: int = 6,
    seed: int = 0,
    rounds: int = 6,
    weights: dict[str, float] | None = None,
    progress: Callable[[int, float, LocalityConfig], None] | None = None,
) -> FitResult:
    """Search ``params`` of the generator to bring its figures to ``targets``; returns the best found."""
    for p in params:
        if p not in SEARCH_SPACE:
            raise ValueError(f"cannot fit '{p}' (fittable: {', '.join(SEARCH_SPACE)})")
    cfg = start or LocalityConfig()
    evals = 0

    def evaluate(c: LocalityConfig) -> tuple[float, dict[str, float]]:
        nonlocal evals
        evals += 1
        figs = figures_at(c, runs, heads, seed)
        return loss_of(figs, targets, weights), figs

    def moved(c: LocalityConfig, name: str, delta: float) -> LocalityConfig | None:
        lo, hi, _ = SEARCH_SPACE[name]
        value = min(hi, max(lo, getattr(c, name) + delta))
        if name == "recent_window":
            value = int(round(value))
        if value == getattr(c, name):
            return None
        try:
            return LocalityConfig.model_validate({**c.model_dump(), name: value})
        except ValueError:
            return None

    best_loss, best_figs = evaluate(cfg)
    steps = {p: SEARCH_SPACE[p][2] for p in params}
    for _ in range(rounds):
        improved_any = False
        for p in params:
            for sign in (1.0, -1.0):
                cand = moved(cfg, p, sign * steps[p])
                if cand is None:
                    continue
                loss, figs = evaluate(cand)
                if loss < best_loss:
                    cfg, best_loss, best_figs, improved_any = cand, loss, figs, True
                    break
            else:
                steps[p] /= 2
        if progress is not None:
            progress(evals, best_loss, cfg)
        if not improved_any and all(steps[p] < SEARCH_SPACE[p][2] / 16 for p in params):
            break
    return FitResult(config=cfg, loss=best_loss, figures=best_figs, evaluations=evals)
