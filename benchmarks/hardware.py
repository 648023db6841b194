"""Speed and reference figures of pamkv.hardware.

Run: ``python benchmarks/hardware.py [--seed N] [--quick]``.

1. Pricing calls per second (what the simulator pays per iteration): PIM attention over a vector
   of token counts and over one scalar, a ``UnitLoad`` step, SSD-PIM attention, a GPU GEMM, a link
   transfer.
2. The DRAM model beside Ramulator 2.1's figures (``../shared/reference/dram.md``).
3. The ``attacc`` mapping beside AttAcc's simulator (``reference/attacc.md``), and ``pam`` on the same step.
4. The GPU model over the real H100 CSV (``reference/gpu_h100_llama2_70b.csv``, skipped when absent):
   median and 90th-percentile error per GEMM.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pamkv.hardware import Gpu, PimDevice, SsdDevice, load_device, load_link
from pamkv.hardware.dram import DramDevice

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def _rate(fn: Callable[[], object], seconds: float) -> tuple[float, float]:
    """(calls per second, microseconds per call) of ``fn`` over about ``seconds`` of wall time."""
    fn()
    n, start = 0, time.perf_counter()
    while True:
        for _ in range(50):
            fn()
        n += 50
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return n / elapsed, elapsed / n * 1e6


def bench_calls(seconds: float, seed: int) -> None:
    """Print calls per second of each pricing entry point."""
    rng = np.random.default_rng(seed)
    hbm = load_device("hbm3-pim")
    ssd = load_device("ssd-pim")
    gpu = load_device("h100")
    assert isinstance(hbm, PimDevice) and isinstance(ssd, SsdDevice) and isinstance(gpu, Gpu)
    link = load_link("pcie5-x16")
    tokens = rng.integers(1_000, 2_000_000, size=64).astype(float)
    load = hbm.even_load(500_000, 4096.0, queries=256, group=8)
    cases: list[tuple[str, Callable[[], object]]] = [
        ("hbm3-pim attention_seconds, 64 token counts", lambda: hbm.attention_seconds(tokens, 4096.0, group=8)),
        ("hbm3-pim attention_seconds, one scalar", lambda: hbm.attention_seconds(250_000.0, 4096.0, group=8)),
        ("hbm3-pim price(UnitLoad 256x4 banks)", lambda: hbm.price(load)),
        ("ssd-pim attention_seconds, 64 token counts",
         lambda: ssd.attention_seconds(tokens, 4096.0, group=8, selected_fraction=0.125)),
        ("h100 gemm_seconds (memoised shape)", lambda: gpu.gemm_seconds(64, 10240, 8192)),
        ("h100 gemm_seconds_v, 64 shapes", lambda: gpu.gemm_seconds_v(tokens, 10240, 8192)),
        ("pcie5-x16 transfer_seconds, 64 sizes", lambda: link.transfer_seconds(tokens * 4096.0)),
    ]
    print("1. pricing calls")
    for label, fn in cases:
        rate, us = _rate(fn, seconds)
        print(f"   {label:48s} {rate:12,.0f} calls/s  {us:8.1f} us/call")


DRAM_REF = [
    ("hbm3-6400", "seq", "robaracoch", None, 345.6, 61.7),
    ("hbm3-6400", "seq", "mop4clxor", None, 672.9, 39.0),
    ("hbm3-6400", "rand", None, None, 219.5, 84.0),
    ("hbm3-6400", "bankrow", None, None, 247.5, 99.6),
    ("hbm3-6400", "unloaded", None, 1, None, 49.7),
    ("hbm3-6400", "stream-peak", None, 1, 46.77, None),
    ("ddr5-4800", "seq", "robaracoch", None, 33.61, 139.6),
    ("ddr5-4800", "seq", "mop4clxor", None, 35.10, 110.1),
    ("ddr5-4800", "rand", None, None, 23.04, 168.4),
    ("ddr5-4800", "bankrow", None, None, 23.45, 206.3),
    ("ddr5-4800", "unloaded", None, 1, None, 45.7),
    ("ddr5-4800", "stream-peak", None, 1, 17.60, None),
]


def bench_dram(seed: int) -> None:
    """Print the model beside each Ramulator figure."""
    print("2. DRAM model vs Ramulator 2.1 (reference/dram.md)")
    print(f"   {'device':10s} {'pattern':11s} {'mapping':10s} {'GB/s':>8s} {'ref':>8s} {'err':>6s}"
          f" {'ns':>7s} {'ref':>7s} {'err':>6s}")
    for name, pat, mapping, ch, bw_ref, lat_ref in DRAM_REF:
        dev = load_device(name)
        assert isinstance(dev, DramDevice)
        r = dev.pattern(pat, mapping, ch, seed=seed)
        bw = f"{r.bandwidth_gbps:8.2f} {bw_ref:8.2f} {100 * (r.bandwidth_gbps / bw_ref - 1):+5.1f}%" if bw_ref \
            else f"{'':8s} {'':8s} {'':6s}"
        lat = f"{r.latency_ns:7.1f} {lat_ref:7.1f} {100 * (r.latency_ns / lat_ref - 1):+5.1f}%" if lat_ref else ""
        print(f"   {name:10s} {pat:11s} {mapping or '-':10s} {bw} {lat}")


def bench_attacc() -> None:
    """Print the attacc and pam mappings on AttAcc's reference step."""
    dev = load_device("hbm3-pim")
    assert isinstance(dev, PimDevice)
    print("3. HBM3-PIM attention, L=2049, 3 heads, d=128 (reference/attacc.md)")
    for pl, ref in ((True, 3930), (False, 2934)):
        cyc = dev.attacc_cycles(2049, 3, 128, pl)
        step = dev.attention_step(2049, 3, 128, "attacc", pl)
        pam = dev.attention_step(2049, 3, 128, "pam", pl)
        print(f"   power limit {pl!s:5s}: attacc {cyc:6.0f} cycles (AttAcc {ref}, {100 * (cyc / ref - 1):+.1f}%),"
              f" {step.seconds * 1e6:.2f} us with expected refresh (AttAcc {ref * 0.769e-3:.2f});"
              f" pam {pam.seconds * 1e6:.2f} us")


def bench_gpu() -> None:
    """Print the GPU model's error over the real H100 CSV."""
    path = SHARED / "reference" / "gpu_h100_llama2_70b.csv"
    if not path.is_file():
        print("4. GPU: reference CSV not found beside the checkout; skipped")
        return
    import pandas as pd

    gpu = load_device("h100")
    assert isinstance(gpu, Gpu)
    df = pd.read_csv(path)
    hd = df.n_embd // df.n_head
    shapes = {
        "attn_pre_proj": ((df.n_head + 2 * df.n_kv_head) * hd // df.tensor_parallel, df.n_embd),
        "attn_post_proj": (df.n_embd, df.n_head * hd // df.tensor_parallel),
        "mlp_up_proj": (2 * df.n_expanded_embd // df.tensor_parallel, df.n_embd),
        "mlp_down_proj": (df.n_embd, df.n_expanded_embd // df.tensor_parallel),
    }
    print("4. H100 GEMMs vs real timings (reference/gpu_h100_llama2_70b.csv)")
    every = []
    for col, (n, k) in shapes.items():
        got = gpu.gemm_seconds_v(df.num_tokens.to_numpy(), n.to_numpy(), k.to_numpy())
        err = np.abs(got / (df[f"{col}_ms_median"].to_numpy() * 1e-3) - 1)
        every.append(err)
        print(f"   {col:15s} median {100 * np.median(err):5.1f}%  p90 {100 * np.percentile(err, 90):5.1f}%")
    allerr = np.concatenate(every)
    print(f"   {'all':15s} median {100 * np.median(allerr):5.1f}%  p90 {100 * np.percentile(allerr, 90):5.1f}%"
          f"  ({len(allerr)} GEMMs)")


def main() -> None:
    """Run the benchmark."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=1, help="Seed of the random inputs and the DRAM requester model.")
    ap.add_argument("--quick", action="store_true", help="Shorter timing loops.")
    args = ap.parse_args()
    bench_calls(0.2 if args.quick else 1.0, args.seed)
    bench_dram(args.seed)
    bench_attacc()
    bench_gpu()


if __name__ == "__main__":
    main()
