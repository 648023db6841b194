"""Arrival processes: when each request of a workload reaches the server.

All processes start the first request at t = 0. Gaps are independent: exponential at rate ``r``
(Poisson), or Gamma with shape ``1/cv^2`` and mean ``1/r`` (cv = 1 is Poisson; cv > 1 burstier, as the
Azure code trace with cv 13; cv < 1 more regular). ``none`` puts every request at t = 0: an offline
batch, the PAM paper's offline mode.
"""

from __future__ import annotations

import numpy as np

from pamkv.config.workloads import ArrivalConfig
from pamkv.errors import UserError
from pamkv.workloads.trace import Trace


def poisson_arrivals(n: int, rate_per_s: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` arrival times (s) of a Poisson process at ``rate_per_s``, the first at 0."""
    return gamma_arrivals(n, rate_per_s, 1.0, rng)


def gamma_arrivals(n: int, rate_per_s: float, cv: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` arrival times (s) with i.i.d. Gamma gaps of mean 1/``rate_per_s`` and coefficient of variation ``cv``."""
    if not rate_per_s > 0:
        raise UserError(f"arrival rate must be > 0 requests/s, got {rate_per_s}")
    if not cv > 0:
        raise UserError(f"arrival cv must be > 0, got {cv}")
    if n <= 0:
        return np.zeros(0)
    shape = 1.0 / (cv * cv)
    gaps = rng.gamma(shape, 1.0 / (rate_per_s * shape), size=n - 1)
    out = np.zeros(n)
    np.cumsum(gaps, out=out[1:])
    return out


def arrival_label(cfg: ArrivalConfig) -> str:
    """Short text naming an arrival process, e.g. ``poisson(5.5/s)`` or ``gamma(2/s,cv=3)``."""
    if cfg.process == "poisson":
        return f"poisson({cfg.rate_per_s:g}/s)"
    if cfg.process == "gamma":
        return f"gamma({cfg.rate_per_s:g}/s,cv={cfg.cv:g})"
    return cfg.process


def apply_arrivals(trace: Trace, cfg: ArrivalConfig, rng: np.random.Generator) -> Trace:
    """``trace`` with arrival times from ``cfg`` (``trace`` keeps its own; it must have some)."""
    if cfg.process == "trace":
        if trace.offline:
            raise UserError(
                f"workload '{trace.name}' has no arrival times; choose an arrival process "
                "(poisson, gamma or none)"
            )
        return trace
    n = len(trace)
    if cfg.process == "none":
        return trace.with_arrivals(np.zeros(n), "none")
    assert cfg.rate_per_s is not None  # enforced by ArrivalConfig
    cv = 1.0 if cfg.process == "poisson" else cfg.cv
    return trace.with_arrivals(gamma_arrivals(n, cfg.rate_per_s, cv, rng), arrival_label(cfg))
