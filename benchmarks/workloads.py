"""Speed and figures of pamkv.workloads: trace reading, built-ins, and the context-locality generator.

Run: ``python benchmarks/workloads.py [--seed N] [--quick] [--fit]``.

1. Reading each shared real trace (``../shared/data`` beside the checkout, skipped when absent) and
   each packaged built-in: wall time and requests.
2. The locality generator: cost of one decode step at token and 16-token-block granularity from 1k to
   128k context (the simulator's per-step price), and its reference figures across context lengths
   (the concentration law), beside the SmolLM2 reference at 1-2k.
3. Aggregate curves (``LocalityCurveBank``): time to tabulate one context length.
3b. The batched generator (``LocalityBatch``): one ``append`` + ``step`` call over 256 contexts of 2k
   tokens and 32 of 100k at 16-token blocks (the simulator's per-window price), beside stepping the
   same contexts one stream at a time.
4. ``--fit``: rerun the calibration of the generator's defaults against ../shared/reference/locality.md and print
   the fitted parameters and figures (minutes).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from pamkv.config.workloads import LocalityConfig
from pamkv.workloads import list_workloads, load_workload, read_trace
from pamkv.workloads.locality import (
    REFERENCE,
    LocalityCurveBank,
    LocalityModel,
    fit_locality,
    measure,
    out_of_range,
    reference_mean,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SHOWN = ("top1_mass", "top10_mass", "share_for_90_mass", "share_for_99_mass", "sink_mass", "last64_mass",
         "jaccard_top10_lag1", "retained_top10", "prev_step_capture_10", "page16_oracle_capture_10")


def _timed(fn, repeat: int = 3):  # type: ignore[no-untyped-def]
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def bench_readers() -> None:
    """Read every shared trace and load every built-in; print best-of-3 wall time."""
    print("== trace reading (best of 3)")
    if SHARED.is_dir():
        for f in sorted(SHARED.glob("*.*")):
            if f.suffix not in (".csv", ".jsonl"):
                continue
            dt, t = _timed(lambda f=f: read_trace(f))
            print(f"  {f.name:52s} {len(t):>7,} requests  {dt * 1e3:7.1f} ms")
    else:
        print(f"  (no {SHARED}; skipped)")
    for name in list_workloads():
        dt, t = _timed(lambda name=name: load_workload(name))
        print(f"  built-in {name:43s} {len(t):>7,} requests  {dt * 1e3:7.1f} ms")


def bench_step(seed: int, quick: bool) -> None:
    """Cost of one generator step per head at token and block granularity."""
    print("== locality generator: one decode step, one head (best of 3 x 8 steps)")
    model = LocalityModel()
    contexts = (1024, 8192, 32768) if quick else (1024, 8192, 32768, 131072)
    for n in contexts:
        row = []
        for block in (1, 16):
            state = model.start(n, np.random.default_rng(seed), block_tokens=block)
            dt, _ = _timed(lambda state=state: [state.step(1) for _ in range(8)])
            row.append(f"block={block:>2}: {dt / 8 * 1e6:9.0f} us")
        print(f"  context {n:>7,}  " + "   ".join(row))


def bench_figures(seed: int, quick: bool) -> None:
    """The generator's reference figures across context lengths (token granularity)."""
    print("== locality figures vs context (token granularity; reference = SmolLM2-135M at 0.5-2k)")
    contexts = (1024, 4096, 16384) if quick else (1024, 2048, 4096, 16384, 65536, 131072)
    results = {}
    for n in contexts:
        steps, heads = (64, 4) if n <= 16384 else (34, 2)
        t = time.perf_counter()
        results[n] = measure(LocalityModel(), n, steps=steps, heads=heads, seed=seed)
        results[n]["_wall_s"] = time.perf_counter() - t
    head = f"  {'figure':26s}" + "".join(f"{n:>10,}" for n in contexts) + f"{'T2k':>8}{'G1':>8}"
    print(head)
    for key in SHOWN:
        vals = "".join(f"{results[n][key]:10.3f}" for n in contexts)
        print(f"  {key:26s}{vals}{REFERENCE['T2k'][key]:8.3f}{REFERENCE['G1'][key]:8.3f}")
    print(f"  {'wall s':26s}" + "".join(f"{results[n]['_wall_s']:10.2f}" for n in contexts))


def bench_curves(seed: int, quick: bool) -> None:
    """Time to tabulate aggregate curves at one context length, and a few of their values."""
    print("== aggregate curves (EMA top-f set; Double Sparsity selection of 1/8)")
    for block in (16, 1):
        bank = LocalityCurveBank(block_tokens=block, seed=seed)
        for n in (4096, 32768) if quick else (4096, 32768, 131072):
            dt, c = _timed(lambda bank=bank, n=n: bank.at(n), repeat=1)
            sel10, sel30 = float(c.selection_share(0.125, 0.1)), float(c.selection_share(0.125, 0.3))
            print(f"  block={block:>2} context {n:>7,}: {dt:6.2f} s  oracle(10%)={float(c.oracle_mass(0.1)):.3f}"
                  f"  ema(10%)={float(c.ema_mass(0.1)):.3f}  sel(1/8 in ema 10%)={sel10:.3f}"
                  f"  sel(1/8 in ema 30%)={sel30:.3f}")


def bench_batch(seed: int, quick: bool) -> None:
    """Cost of one batched append + step over many contexts, and of the same work one stream at a time."""
    print("== batched locality generator: append(1) + step over all contexts (best of 3 x 5 calls)")
    model = LocalityModel()
    cases = ((256, 2048, 16), (32, 100_000, 16)) if quick else ((256, 2048, 16), (32, 100_000, 16), (256, 2048, 1))
    for contexts, tokens, block in cases:
        batch = model.batch(seed, block_tokens=block)
        for c in range(contexts):
            batch.add(c, tokens)
        ids = np.arange(contexts)

        def call(batch=batch, ids=ids) -> None:  # type: ignore[no-untyped-def]
            for _ in range(5):
                batch.append(ids, 1)
                batch.step(ids)

        dt, _ = _timed(call)
        streams = [model.start(tokens, np.random.default_rng(seed + c), block_tokens=block) for c in range(16)]
        one, _ = _timed(lambda streams=streams: [s.step(1) for s in streams])
        units = int(batch.units(ids).sum())
        print(f"  {contexts:>3} x {tokens:>7,} tokens, block={block:>2} ({units:>7,} units): {dt / 5 * 1e3:7.2f} ms"
              f" per call ({dt / 5 / units * 1e9:5.0f} ns/unit); one stream at a time "
              f"{one / 16 * contexts * 1e3:7.2f} ms")


def run_fit(seed: int) -> None:
    """Refit the generator's defaults to the reference figures and print the outcome."""
    print("== calibration fit (pattern search; minutes)")
    t = time.time()

    def progress(evals: int, loss: float, cfg: LocalityConfig) -> None:
        print(f"  {evals:4d} evals  loss {loss:.5f}  {time.time() - t:6.0f} s", flush=True)

    res = fit_locality(reference_mean(), seed=seed, progress=progress)
    print("  fitted:", {k: round(v, 4) if isinstance(v, float) else v for k, v in res.config.model_dump().items()})
    target = reference_mean()
    for k in target:
        print(f"  {k:26s} {res.figures[k]:.3f}  (reference {target[k]:.3f})")
    print("  outside cited ranges:", out_of_range(res.figures) or "none")


def main() -> None:
    """Run the benchmarks chosen on the command line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="smaller contexts only")
    ap.add_argument("--fit", action="store_true", help="also rerun the calibration fit")
    args = ap.parse_args()
    bench_readers()
    bench_step(args.seed, args.quick)
    bench_figures(args.seed, args.quick)
    bench_curves(args.seed, args.quick)
    bench_batch(args.seed, args.quick)
    if args.fit:
        run_fit(args.seed)


if __name__ == "__main__":
    main()
