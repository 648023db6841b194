"""Simulator speed: requests simulated per wall-second, linearity in requests, and long contexts.

    python benchmarks/sim.py [--requests 10000] [--quick]

Prints, for `pam` serving `llama-3-70b`: `mooncake-conv` (contexts up to 126K tokens) at two sizes
with the process's peak memory after each (run first, so the figures are theirs: it should not grow
with the number of requests), then azure-conv at 1/4, 1/2 and all of ``--requests`` (wall time
should grow at most linearly), each with requests simulated per wall-second.
Goal (issue 5): 10,000 azure-conv requests in under 5 s, never above 30 s.
"""

from __future__ import annotations

import argparse
import resource
import time

from pamkv.config.runs import RunConfig
from pamkv.sim import simulate


def timed(run: RunConfig) -> tuple[float, dict[str, object]]:
    """Wall seconds and metrics of one simulation."""
    t0 = time.perf_counter()
    result = simulate(run)
    return time.perf_counter() - t0, result.metrics


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="1,000 requests instead")
    args = parser.parse_args()
    n = 1_000 if args.quick else args.requests
    print(f"{'workload':<16}{'requests':>10}{'wall s':>10}{'req/s':>10}{'steps':>10}{'tokens_lost':>12}")
    for count in (max(25, n // 100), max(50, n // 50)):
        wall, m = timed(RunConfig(system="pam", model="llama-3-70b", workload="mooncake-conv", requests=count))
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{'mooncake-conv':<16}{count:>10,}{wall:>10.2f}{count / wall:>10.0f}{m['decode_steps']:>10,}"
              f"{m['tokens_lost']:>12}   peak RSS {peak_mb:,.0f} MB")
    for count in (n // 4, n // 2, n):
        wall, m = timed(RunConfig(system="pam", model="llama-3-70b", workload="azure-conv", requests=count))
        print(f"{'azure-conv':<16}{count:>10,}{wall:>10.2f}{count / wall:>10.0f}{m['decode_steps']:>10,}"
              f"{m['tokens_lost']:>12}")

if __name__ == "__main__":
    main()
