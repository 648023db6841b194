"""Speed of the online KV scheduler (heap vs vectorised form) and of one decode step of the KV store.

Run: ``python benchmarks/kv_scheduler.py [--seed N] [--sizes 10000,100000,1000000] [--quick]``.
Prints swaps per second for both forms of Algorithm 2 on random three-tier problems (a "sort" case
where targets cannot be met and every useful swap is made, and a "budget" case capped at 1% of the
items), checks the two forms agree, then times append/observe/schedule/unit_loads of a store holding
256 requests x 8192 tokens, and finally runs each placement policy on contexts whose attention mass
comes from the context-locality generator (top-1/8 selection per step, Double Sparsity's ratio),
printing the share of attention mass and of reads each tier serves and how many tokens move.

``--sim-pattern`` instead times the store as the simulator drives it (bookkeeping only, no payload):
the simulator's three tiers (40 HBM-PIM stacks of 256 bank groups, 40 DDR-PIM DIMMs, 8 SSD-PIM), whole
prompts appended at prefill, one append per decode segment for the whole batch, and per scheduling
window one ``observe`` with one position per selected block (1/8 of the blocks), ``schedule`` and
``locate``; finished requests are freed and replaced (continuous batching). It prints the mean time of
each kind of call.

``--record-sim PATH`` runs one simulation (``--system/--model/--workload/--batch``) and saves every
store call it makes; ``--replay PATH`` replays such a file on a fresh store and prints the CPU time per
kind of call and a digest of every result (block tables, moves, locations): replaying one file under
two versions of the package compares their speed and checks they give the same results.
"""

from __future__ import annotations

import argparse
import hashlib
import pickle
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

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
from pamkv.kv.spec import LayoutSpec
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
                                method=method)
                out[method] = (time.perf_counter() - t0, r)
            (th, rh), (tv, rv) = out["heap"], out["vector"]
            assert np.array_equal(rh.tier, rv.tier), "heap and vector forms disagree"
            print(f"{n:>9,} {case:>7} {rh.swaps:>8,} {th:>8.3f} {tv:>9.3f} {rh.swaps / th:>13,.0f} "
                  f"{rv.swaps / tv:>15,.0f} {th / tv:>8.1f}x")


def bench_store(requests: int, tokens: int, steps: int, seed: int) -> None:
    """Print the time of each phase of a decode step over a store of ``requests x tokens``."""
    layout = dict(units=256, banks_per_unit=4, rows_per_bank=16384, row_bytes=1024)  # one HBM3 stack, Table 1
    spec = StoreSpec(token_bytes=4096, layers=8, tiers=[
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


def sim_spec(hbm_bytes: float = 12192405258.24) -> StoreSpec:
    """The store the simulator builds for the ``pam`` system and llama-3-70b (fp16 KV, 80 layers).

    Layouts: the hbm3-pim, ddr4-pim and ssd-pim device presets (PAPER.md Table 1); capacities per device:
    a 16 GB stack less its share of the weights, a 32 GiB DIMM, a 2 TB SSD (as ``pamkv.sim`` derives them).
    ``hbm_bytes``: KV bytes per HBM stack (smaller: the KV spills into DDR and SSD).
    """
    def tier(name: str, devices: int, cap: float, kind: str, units: int, rows: int, row: int) -> TierSpec:
        return TierSpec(name=name, devices=devices, capacity_bytes=cap, layout=LayoutSpec(
            name=name, kind=kind, units=units, banks_per_unit=4, rows_per_bank=rows, row_bytes=row))  # type: ignore[arg-type]

    return StoreSpec(block_tokens=16, token_bytes=4096.0, layers=80, tiers=[
        tier("hbm", 40, hbm_bytes, "dram", 256, 16384, 1024),
        tier("ddr", 40, 34359738368.0, "dram", 32, 262144, 1024),
        tier("ssd", 8, 2.048e12, "ssd", 8, 3906250, 16384),
    ])


def bench_sim_pattern(requests: int, prompt: int, windows: int, seed: int, steps: int = 8,
                      spill: bool = False) -> None:
    """Mean time per store call when driven like the simulator (see the module docstring).

    ``spill``: HBM holds a quarter of its KV bytes, so the batch overflows into DDR — every hot new
    block displaces one downward and the scheduler moves blocks each window.
    """
    # x, y: what balanced_targets gives the simulator for these tiers (pamkv.sim.build)
    spec = sim_spec(12192405258.24 / 4) if spill else sim_spec()
    store = TieredKVStore(spec, PamPolicy(x=16523.3, y=77.06))
    rng = np.random.default_rng(seed)
    bt = store.block_tokens
    times: dict[str, list[float]] = defaultdict(list)

    def timed(kind: str, fn: Any, *args: Any) -> Any:  # CPU time: other work on the machine does not count
        t0 = time.process_time()
        out = fn(*args)
        times[kind].append(time.process_time() - t0)
        return out

    lengths = {}
    for r in range(requests):
        n = int(rng.integers(prompt // 2, prompt + 1))
        timed("append (prefill)", store.append, [r], [n])
        lengths[r] = n
    next_id = requests
    for _ in range(windows):
        rids = np.array(sorted(lengths), dtype=np.int64)
        timed("append (decode)", store.append, rids, np.full(rids.size, steps))
        for r in rids.tolist():
            lengths[r] += steps
        reqs, pos, score = [], [], []
        for r in rids.tolist():  # 1/8 of the blocks: the sink, the recent window, skewed heavy hitters
            nb = -(-lengths[r] // bt)
            k = max(1, nb // 8)
            heavy = np.minimum((rng.pareto(1.2, 2 * k) * 8).astype(np.int64), nb - 1)
            blocks = np.unique(np.concatenate(([0], np.arange(max(0, nb - 4), nb), heavy)))[:k]
            reqs.append(np.full(blocks.size, r))
            pos.append(blocks * bt)
            score.append(rng.exponential(1.0, blocks.size))
        rr, pp, ss = np.concatenate(reqs), np.concatenate(pos), np.concatenate(score)
        timed("observe", store.observe, rids, rr, pp, ss)
        timed("schedule", store.schedule)
        timed("locate", store.locate, rr, pp)
        for r in rng.choice(rids, max(1, requests // 64), replace=False).tolist():  # continuous batching
            timed("free", store.free, [r])
            del lengths[r]
            n = int(rng.integers(prompt // 2, prompt + 1))
            timed("append (prefill)", store.append, [next_id], [n])
            lengths[next_id] = n
            next_id += 1
    store.check()
    print(f"\nsimulator pattern: {requests} requests, prompts up to {prompt} tokens, {windows} windows of "
          f"{steps} decode steps; blocks per tier at the end {store.used.tolist()} of {store.capacity.tolist()}; "
          f"{store.traffic.blocks:,} blocks moved")
    total = 0.0
    for kind, ts in times.items():
        total += sum(ts)
        print(f"{kind:>17}: {len(ts):5d} calls, mean {np.mean(ts) * 1e3:7.3f} ms, max {np.max(ts) * 1e3:7.2f} ms")
    print(f"{'all calls':>17}: {total:.2f} s")


def record_sim(path: Path, system: str, model: str, workload: str, batch: int | None,
               requests: int | None = None) -> None:
    """Run one simulation and pickle every call it makes to its store (with copies of the arguments).

    ``batch``: offline batch (``None``: online serving at the workload's arrival rate); ``requests``: the
    first N requests of the workload (``None``: the run's default).
    """
    from pamkv.config.runs import RunConfig
    from pamkv.kv import store as kv_store
    from pamkv.sim import simulate

    cls = kv_store.TieredKVStore
    calls: list[tuple[Any, ...]] = []
    specs: list[tuple[Any, Any]] = []
    orig = {n: getattr(cls, n) for n in ("__init__", "append", "observe", "schedule", "free", "locate")}

    def copy(a: Any) -> Any:
        return None if a is None else np.array(a, copy=True)

    def wrap(name: str) -> Any:
        def method(self: Any, *args: Any) -> Any:
            if name == "__init__":
                specs.append(args)
            else:
                calls.append((name, *(copy(a) for a in args)))
            return orig[name](self, *args)
        return method

    for name in orig:
        setattr(cls, name, wrap(name))
    try:
        simulate(RunConfig(system=system, model=model, workload=workload, batch=batch, requests=requests))
    finally:
        for name, fn in orig.items():
            setattr(cls, name, fn)
    if len(specs) != 1:
        raise SystemExit(f"expected one store in the run, found {len(specs)}")
    path.write_bytes(pickle.dumps({"spec": specs[0][0], "policy": specs[0][1], "calls": calls}))
    counts: dict[str, int] = defaultdict(int)
    for c in calls:
        counts[c[0]] += 1
    print(f"recorded {len(calls)} store calls to {path}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))


def replay(path: Path, repeat: int) -> None:
    """Replay recorded store calls ``repeat`` times; CPU time per kind of call (least over the repeats)."""
    data = pickle.loads(path.read_bytes())
    best: dict[str, float] = {}
    digest = ""
    for _ in range(repeat):
        store = TieredKVStore(data["spec"], data["policy"])
        spent: dict[str, float] = defaultdict(float)
        h = hashlib.sha256()
        for name, *args in data["calls"]:
            t0 = time.process_time()
            out = getattr(store, name)(*args)
            spent[name] += time.process_time() - t0
            if name == "schedule":
                h.update(repr(out.to_dict()).encode())
            elif name == "locate":
                for a in (out.block, out.tier, out.device, out.unit, out.bank):
                    h.update(np.ascontiguousarray(a).tobytes())
            elif out is not None:
                h.update(np.ascontiguousarray(out).tobytes())
        for r in store.requests:
            for a in store.block_table(r).values():
                h.update(np.ascontiguousarray(a).tobytes())
        h.update(store.tier_scores().tobytes())
        store.check()
        digest = h.hexdigest()[:16]
        best = {k: min(v, best.get(k, v)) for k, v in spent.items()}
    counts: dict[str, int] = defaultdict(int)
    for c in data["calls"]:
        counts[c[0]] += 1
    print(f"replay of {path.name} (CPU s, least of {repeat}):")
    for k in sorted(best):
        print(f"  {k:>9}: {counts[k]:5d} calls, {best[k]:7.3f} s, {best[k] / counts[k] * 1e3:7.3f} ms/call")
    print(f"  {'all':>9}: {sum(best.values()):7.3f} s; result digest {digest}")


def main() -> None:
    """Parse arguments and run the benchmarks asked for."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0, help="random seed (same seed, same problems)")
    ap.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated item counts")
    ap.add_argument("--quick", action="store_true", help="small sizes, small store")
    ap.add_argument("--sim-pattern", action="store_true", help="only the simulator-pattern store benchmark")
    ap.add_argument("--spill", action="store_true", help="simulator pattern with a KV that overflows HBM")
    ap.add_argument("--record-sim", type=Path, metavar="PATH", help="record one simulation's store calls")
    ap.add_argument("--replay", type=Path, metavar="PATH", help="replay recorded store calls, timed")
    ap.add_argument("--repeat", type=int, default=3, help="replays to take the least time of")
    ap.add_argument("--system", default="pam", help="system of the recorded simulation")
    ap.add_argument("--model", default="llama-3-70b", help="model of the recorded simulation")
    ap.add_argument("--workload", default="arxiv-sum", help="workload of the recorded simulation")
    ap.add_argument("--batch", type=int, default=256,
                    help="offline batch of the recorded simulation (0: online serving)")
    ap.add_argument("--requests", type=int, default=None, help="first N requests of the recorded simulation")
    args = ap.parse_args()
    if args.record_sim:
        record_sim(args.record_sim, args.system, args.model, args.workload, args.batch or None, args.requests)
        return
    if args.replay:
        replay(args.replay, args.repeat)
        return
    if args.sim_pattern:
        if args.quick:
            bench_sim_pattern(64, 2000, 12, args.seed, spill=args.spill)
        else:
            bench_sim_pattern(256, 5000, 48, args.seed, spill=args.spill)
        return
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
