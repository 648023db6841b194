"""`pamkv demo`: PAM for real on tensors, then PAM against every baseline in simulation."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from pamkv.cli.app import JSON_HELP, SEED_HELP, app
from pamkv.output import write_json


def print_functional(seed: int, console: Console) -> dict[str, object]:
    """Run the functional demo and print its per-step table and summary; returns the summary."""
    from pamkv.report.functional import FunctionalConfig, run_functional_demo

    rep = run_functional_demo(FunctionalConfig(seed=seed))
    table = Table(title="Functional PAM: random-weights decode over a 3-tier store (Double Sparsity 8x)")
    table.add_column("step", justify="right")
    for name in rep.tier_names:
        table.add_column(f"{name} tokens", justify="right")
        table.add_column(f"{name} reads", justify="right")
    table.add_column("moved tokens", justify="right")
    for row in rep.rows:
        cells = [str(int(row["step"]))]
        for name in rep.tier_names:
            cells += [f"{int(row[f'{name}_tokens']):,}", f"{int(row[f'{name}_reads']):,}"]
        cells.append(f"{int(row['moved_tokens']):,}")
        table.add_row(*cells)
    console.print(table)
    share = rep.accesses / max(rep.accesses.sum(), 1)
    tokens = [rep.rows[-1][f"{n}_tokens"] for n in rep.tier_names]
    summary: dict[str, object] = {
        "max_abs_error_pamattention_vs_dense_same_tokens": rep.max_merge_error,
        "max_abs_error_sparse_vs_dense_all_tokens": rep.max_sparse_error,
        "mean_rel_l2_error_sparse_vs_dense": rep.mean_sparse_rel_error,
        "tokens_moved": rep.tokens_moved,
        "tier_tokens": dict(zip(rep.tier_names, tokens, strict=True)),
        "tier_read_share": dict(zip(rep.tier_names, share.tolist(), strict=True)),
        "store_invariants_hold": rep.invariants_ok,
    }
    console.print(
        f"PAMattention vs dense over the same tokens: max |error| = {rep.max_merge_error:.2e}  (exact up to fp32)\n"
        f"8x sparse vs dense over all tokens: mean relative L2 error = {rep.mean_sparse_rel_error:.3f}, "
        f"max |error| = {rep.max_sparse_error:.3f}\n"
        f"reads by tier: " + ", ".join(f"{n} {s:.0%}" for n, s in zip(rep.tier_names, share, strict=True))
        + " | tokens held: " + ", ".join(f"{n} {t:,}" for n, t in zip(rep.tier_names, tokens, strict=True))
        + f" | tokens moved: {rep.tokens_moved:,} | store invariants: {'hold' if rep.invariants_ok else 'BROKEN'}"
    )
    return summary


@app.command()
def demo(
    quick: Annotated[bool, typer.Option("--quick", help="A smaller run (under a minute).")] = False,
    out: Annotated[Path, typer.Option("--out", help="Folder for report.html and its figures.")] = Path("out/demo"),
    seed: Annotated[int, typer.Option("--seed", help=SEED_HELP)] = 0,
    json_path: Annotated[str | None, typer.Option("--json", help=JSON_HELP)] = None,
) -> None:
    """The main job: PAM on real tensors, then PAM against every baseline on the paper's workloads."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from pamkv.report.demo import DemoPlan, headline_rows, run_all, runs_in, verdict, write_report

    console = Console()
    functional = print_functional(seed, console)
    plan = DemoPlan.make(quick, seed)
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=console, transient=True) as progress:
        task = progress.add_task("simulating", total=runs_in(plan))
        results = run_all(plan, lambda label: progress.update(task, advance=1, description=f"simulated {label}"))
    rows = headline_rows(results.main)
    table = Table(title=f"llama-3-70b on arxiv-sum, offline batch {plan.batch} (decode throughput, PAM = 1)")
    for col in ("system", "decode tok/s", "TPOT p50 ms", "J/token", "tok/s/$k", "PAM x"):
        table.add_column(col, justify="left" if col == "system" else "right")
    for r in rows:
        if r["oom"]:
            table.add_row(r["system"], "OOM", "—", "—", "—", "—")
            continue
        table.add_row(r["system"], f"{r['decode_tokens_per_s']:,.0f}", f"{r['tpot_ms_p50']:.1f}",
                      f"{r['energy_j_per_token']:.3f}", f"{r['tokens_per_s_per_kusd']:.2f}", f"{r['pam_speedup']:.2f}")
    console.print(table)
    for line in verdict(rows, results.sweep, plan.batch):
        console.print("• " + line)
    spill = headline_rows(results.spill)
    table = Table(title=f"opt-175b on arxiv-sum, batch {plan.spill_batch}: KV spills out of HBM")
    for col in ("system", "decode tok/s", "TPOT p50 ms", "J/token", "migrated GB", "PAM x"):
        table.add_column(col, justify="left" if col == "system" else "right")
    for r in spill:
        table.add_row(r["system"], f"{r['decode_tokens_per_s']:,.1f}", f"{r['tpot_ms_p50']:.1f}",
                      f"{r['energy_j_per_token']:.3f}", f"{r['migrated_gb']:.1f}", f"{r['pam_speedup']:.2f}")
    console.print(table)
    path = write_report(out, plan, results, functional)
    console.print(f"report: {path}")
    if json_path:
        sweep = {f"{s}@{b}": r.metrics for (s, b), r in results.sweep.items()}
        write_json({"functional": functional, "offline": {r["system"]: r for r in rows}, "sweep": sweep,
                    "spill": {r["system"]: r for r in spill}}, json_path)
