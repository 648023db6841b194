"""Online mode's headline figure: the peak throughput within a TPOT SLO, by search over batch size.

The paper reports, per SLO (100/150/200 ms per output token), the largest throughput a system
sustains while meeting it. We search the decode batch size: each probe serves two batches' worth of
the workload's requests (all queued at once, the batch kept full), and a probe meets the SLO when its
median TPOT does. The
result is the probe with the largest batch that meets it (throughput grows with batch), found by
doubling then bisection.
"""

from __future__ import annotations

from pamkv.config.runs import RunConfig
from pamkv.sim.result import Result

MAX_BATCH = 1024
"""Largest batch searched when the run gives no request count (else the count caps the batch)."""


def _probe(run: RunConfig, batch: int) -> Result:
    from pamkv.sim import run_once

    # Two batches' worth of requests per probe (at most the run's own count): enough for the batch to
    # run full, and small probes stay cheap.
    cap = run.requests or MAX_BATCH
    return run_once(run.model_copy(update={"batch": batch, "requests": min(cap, 2 * batch), "slo_tpot_ms": None}))


def _meets(result: Result, slo_s: float) -> bool:
    m = result.metrics
    tpot = m.get("tpot_s_p50")
    return not m.get("oom") and tpot is not None and tpot == tpot and tpot <= slo_s


def search_slo(run: RunConfig) -> Result:
    """The run at the largest batch whose TPOT p50 meets ``run.slo_tpot_ms`` (metrics say which batch)."""
    assert run.slo_tpot_ms is not None
    slo_s = run.slo_tpot_ms / 1e3
    lo, best = 0, None
    batch = 1
    hi = None
    probes = 0
    cap = run.requests or MAX_BATCH
    while batch <= cap:
        result = _probe(run, batch)
        probes += 1
        if _meets(result, slo_s):
            lo, best = batch, result
            if batch == cap:
                break
            batch = min(2 * batch, cap)
        else:
            hi = batch
            break
    if hi is not None:
        while hi - lo > max(1, lo // 16):  # bisect to within ~6% of the largest batch
            mid = (lo + hi) // 2
            result = _probe(run, mid)
            probes += 1
            if _meets(result, slo_s):
                lo, best = mid, result
            else:
                hi = mid
    if best is None:
        best = _probe(run, 1)
        best.metrics["slo_met"] = False
        best.metrics["max_batch_within_slo"] = 0
    else:
        best.metrics["slo_met"] = True
        best.metrics["max_batch_within_slo"] = lo
    best.metrics["slo_tpot_ms"] = run.slo_tpot_ms
    best.metrics["slo_probes"] = probes
    best.metrics["mode"] = "online-slo"
    return best
