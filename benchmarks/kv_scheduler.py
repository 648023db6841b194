"""Speed of the online KV scheduler (heap vs vectorised form) and of one decode step of the KV store.

Run: ``python benchmarks/kv_scheduler.py [--seed N] [--sizes 10000,100000,1000000] [--quick]``.
Prints swaps per second for both forms of Algorithm 2 on random three-tier problems (a "sort" case
where targets cannot be met and every useful swap is made, and a "budget" case capped at 1% of the
items), checks the two forms agree, then times append/observe/schedule/unit_loads of a store holding
256 requests x 8192 tokens, and finally runs each placement policy on contexts whose attention mass
comes from the context-locality generator (top-1/8 selection per step, Double Sparsity's ratio),
printing the share of attention mass and of reads each tier serves and how many tokens move.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from pamkv.kv import (
    LayeredPolicy,
    PamPolicy,
    PlacementPolicy,
    RecentWindowPolicy,
    StaticPolicy,
    StoreSpec,
    TieredKVStore,
    TierSpec,
)
from pamkv.scheduling.online_kv import balanced_targets, pam_targets, schedule_kv
from pamkv.workloads.locality import LocalityModel


def _problem(n: int, rng: np.random.Generator) -> dict[str, object]:
    tier = rng.choice(3, n, p=[0.1, 0.3, 0.6])
    imp = rng.exponential(1.0, n) * (rng.random(n) < 0.3)  # sparse selection: most tokens cold
    return dict(importance=imp, tier=tier, capacity=np.bincount(tier, minlength=3))


def bench_scheduler(sizes: list[int], seed: int) -> None:
    """Print swaps/s of both forms for each problem size and case."""
    rng = np.random.default_rng(seed)
    print(f"{'items':>9} {'case':>7} {'swaps':>8} {'heap s':>8} {'vector s':>9} {'heap swaps/s':>13} "
          f"{'vector swaps/s':>15} {'speed-up':>9}")
    for n in sizes:
        p = _problem(n, rng)
        for case, budget in (("sort", None), ("budget", max(1, n // 100))):
            out = {}
            for method in ("heap", "vector"):
                t0 = time.perf_counter()
                r = schedule_kv(**p, targets=pam_targets(1e6, 1e3), max_swaps=budget,  # type: ignore[arg-type]
                                method=method)  # type: ignore[arg-type]
                out[method] = (time.perf_counter() - t0, r)
            (th, rh), (tv, rv) = out["heap"], out["vector"]
            assert np.array_equal(rh.tier, rv.tier), "heap and vector forms disagree"
            print(f"{n:>9,} {case:>7} {rh.swaps:>8,} {th:>8.3f} {tv:>9.3f} {rh.swaps / th:>13,.0f} "
                  f"{rv.swaps / tv:>15,.0f} {th / tv:>8.1f}x")


def bench_store(requests: int, tokens: int, steps: int, seed: int) -> None:
    """Print the time of each phase of a decode step over a store of ``requests x tokens``."""
    layout = dict(units=256, banks_per_unit=4, rows_per_bank=16384, row_bytes=1024)  # one HBM3 stack, Table 1
    spec = StoreSpec(token_bytes=4096, layers=8, tiers=[  # type: ignore[arg-type]
        TierSpec(name="hbm", devices=8, capacity_blocks=2048, layout=layout),  # type: ignore[arg-type]
        TierSpec(name="ddr", devices=8, capacity_blocks=6144),
        TierSpec(name="ssd", devices=8, capacity_blocks=65536,
                 layout=dict(kind="ssd", units=8, banks_per_unit=4, rows_per_bank=1 << 20,  # type: ignore[arg-type]
                             row_bytes=16384)),
    ])
    store = TieredKVStore(spec, PamPolicy(x=16.0, y=4.0, max_swaps=4096))
    rng = np.random.default_rng(seed)
    reqs = np.arange(requests)
    t0 = time.perf_counter()
    store.append(reqs, tokens)
    print(f"\nstore: {requests} requests x {tokens} tokens = {requests * tokens:,} tokens, "
          f"{int(store.used.sum()):,} blocks; prefill append {time.perf_counter() - t0:.3f} s")
    keep = tokens // 8  # Double Sparsity's 1/8 (PAPER.md §6.3)
    times = np.zeros(4)
    moved = 0
    for _ in range(steps):
        t = [time.perf_counter()]
        store.append(reqs, 1)
        t.append(time.perf_counter())
        n = store.length(0)
        hot = np.arange(n - 64, n)  # recent window, plus heavy hitters drawn from a skewed distribution
        heavy = np.minimum((rng.pareto(1.2, (requests, keep)) * 50).astype(np.int64), n - 65)
        pos = np.concatenate((np.broadcast_to(hot, (requests, 64)), heavy), axis=1)
        pos = np.sort(pos, axis=1)
        uniq = np.concatenate((np.ones((requests, 1), bool), pos[:, 1:] != pos[:, :-1]), axis=1)
        rr, pp = np.repeat(reqs, pos.shape[1])[uniq.ravel()], pos[uniq]
        store.observe(reqs, rr, pp, rng.random(pp.size))
        t.append(time.perf_counter())
        moved += store.schedule().blocks
        t.append(time.perf_counter())
        store.unit_loads(rr, pp)
        t.append(time.perf_counter())
        times += np.diff(t)
    times /= steps
    print(f"per decode step (mean of {steps}): append {times[0] * 1e3:.1f} ms, observe {times[1] * 1e3:.1f} ms "
          f"({pp.size:,} reads), schedule {times[2] * 1e3:.1f} ms ({moved / steps:,.0f} blocks moved), "
          f"unit_loads {times[3] * 1e3:.1f} ms")
    store.check()


def bench_locality(requests: int, prompt: int, steps: int, seed: int) -> None:
    """Per policy: mass and reads served per tier, and migration volume, under modelled locality."""
    bt = 16
    total = requests * -(-(prompt + steps) // bt)
    hbm, ddr = total // 10, 3 * total // 10  # HBM holds ~10% of the KV, DDR ~30%, SSD the rest
    spec = StoreSpec(token_bytes=4096, tiers=[
        TierSpec(name="hbm", capacity_blocks=hbm), TierSpec(name="ddr", capacity_blocks=ddr),
        TierSpec(name="ssd", capacity_blocks=total),
    ])
    # PAPER.md Table-1 compute per device (1.6 TFLOPS, 204 GFLOPS, 18 GFLOPS) as tier throughput
    x, y, _ = balanced_targets([1600.0, 204.0, 18.0], [hbm, ddr, total - hbm - ddr])
    policies: list[tuple[str, PlacementPolicy]] = [
        ("pam", PamPolicy(x=x, y=y)), ("pam margin .002", PamPolicy(x=x, y=y, margin=0.002)),
        ("l-pim", LayeredPolicy()), ("ls-pim", StaticPolicy()), ("recent", RecentWindowPolicy()),
    ]
    print(f"\nlocality run: {requests} requests, {prompt}-token prompts, {steps} decode steps, top-1/8 "
          f"selection; tiers hold 10/30/60% of blocks; targets x={x:.0f}, y={y:.1f} (balanced_targets)")
    print(f"{'policy':>16} {'mass H/D/S':>20} {'reads H/D/S':>20} {'moved/step':>11} "
          f"{'ssd->ddr/step':>14} {'ever moved':>11}")
    for label, policy in policies:
        store = TieredKVStore(spec, policy)
        rng = np.random.default_rng(seed)
        streams = [LocalityModel().start(prompt, rng) for _ in range(requests)]
        reqs = np.arange(requests)
        store.append(reqs, prompt)
        prev_tier = np.full(0, -1, dtype=np.int64)
        ever = np.zeros(0, dtype=bool)
        moved = ssd_ddr = 0.0
        mass, reads = np.zeros(3), np.zeros(3)
        for step in range(steps):
            steady = step >= steps // 2  # migration figures over the second half (after the EMA warms up)
            before = store.traffic.tokens, store.traffic.links.get("ssd->ddr")
            sd0 = before[1].tokens if before[1] else 0
            store.append(reqs, 1)  # may displace blocks: counted in store.traffic
            m = [s.step(1)[0] for s in streams]
            n = store.length(0)
            k = n // 8
            sel = np.stack([np.argpartition(-mi, k)[:k] for mi in m])
            score = np.stack([mi[si] for mi, si in zip(m, sel, strict=True)])
            rr = np.repeat(reqs, k)
            store.observe(reqs, rr, sel.ravel(), score.ravel())
            loc = store.locate(rr, sel.ravel())
            mass += np.bincount(loc.tier, weights=score.ravel(), minlength=3) / score.sum()
            reads += np.bincount(loc.tier, minlength=3) / loc.tier.size
            store.schedule()
            if steady:
                moved += (store.traffic.tokens - before[0]) / (requests * n)
                sd = store.traffic.links.get("ssd->ddr")
                ssd_ddr += ((sd.tokens if sd else 0) - sd0) / (requests * n)
            view, live = store.view()  # blocks whose tier changed since the last step (new ones excluded)
            if live.max() >= prev_tier.size:
                grow = int(live.max()) + 1 - prev_tier.size
                prev_tier = np.concatenate((prev_tier, np.full(grow, -1, dtype=np.int64)))
                ever = np.concatenate((ever, np.zeros(grow, dtype=bool)))
            ever[live] |= (prev_tier[live] >= 0) & (prev_tier[live] != view.tier)
            prev_tier[live] = view.tier
        store.check()
        share = lambda a: "/".join(f"{v:.3f}" for v in a / steps)  # noqa: E731
        half = steps - steps // 2
        print(f"{label:>16} {share(mass):>20} {share(reads):>20} {moved / half:>11.3%} "
              f"{ssd_ddr / half:>14.3%} {int(ever.sum()) * bt / (requests * n):>11.2%}")


def main() -> None:
    """Parse arguments and run both benchmarks."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0, help="random seed (same seed, same problems)")
    ap.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated item counts")
    ap.add_argument("--quick", action="store_true", help="small sizes, small store")
    args = ap.parse_args()
    sizes = [10_000, 100_000] if args.quick else [int(s) for s in args.sizes.split(",")]
    bench_scheduler(sizes, args.seed)
    if args.quick:
        bench_store(64, 2048, 3, args.seed)
        bench_locality(8, 1024, 16, args.seed)
    else:
        bench_store(256, 8192, 5, args.seed)
        bench_locality(32, 2048, 64, args.seed)


if __name__ == "__main__":
    main()
