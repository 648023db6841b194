"""`pamkv workload ...`: built-in workloads, trace statistics, and the context-locality generator's figures."""

from __future__ import annotations

import math
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from pamkv.cli.app import JSON_HELP, SEED_HELP, app
from pamkv.config import load, validate
from pamkv.config.workloads import ArrivalConfig, ColumnMapping, LocalityConfig, WorkloadConfig
from pamkv.errors import UserError
from pamkv.output import write_json

workload_app = typer.Typer(
    help="Workloads: built-in request traces, trace-file statistics, and context-locality figures.",
    no_args_is_help=True,
)
app.add_typer(workload_app, name="workload")

FORMAT_HELP = "Trace file format: auto, azure, mooncake, burstgpt, lengths, csv, jsonl, npz."
COLUMN_HELP = "Generic CSV/JSONL mapping ROLE=COLUMN, ROLE in input, output, arrival (repeatable)."


def _columns(items: list[str] | None, time_unit: str) -> ColumnMapping | None:
    """Parse ``--column role=name`` options into a :class:`ColumnMapping`."""
    if not items:
        return None
    roles: dict[str, str] = {}
    for item in items:
        role, sep, col = item.partition("=")
        if not sep or role not in ("input", "output", "arrival") or not col:
            raise UserError(f"--column '{item}': expected ROLE=COLUMN with ROLE one of input, output, arrival")
        roles[role] = col
    return validate(ColumnMapping, {**roles, "time_unit": time_unit}, "--column")


def _arrivals(process: str | None, rate: float | None, cv: float | None) -> ArrivalConfig | None:
    """The arrival process chosen on the command line, or None to keep the workload's."""
    if process is None and rate is None and cv is None:
        return None
    chosen = process or ("gamma" if cv is not None else "poisson")
    if chosen in ("poisson", "gamma") and rate is None:
        raise UserError(f"--arrivals {chosen} needs --rate (requests/s)")
    data: dict[str, Any] = {"process": chosen}
    if rate is not None:
        data["rate_per_s"] = rate
    if cv is not None:
        data["cv"] = cv
    return validate(ArrivalConfig, data, "--arrivals")


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "-"
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.1f}"
    return str(value)


@workload_app.command("list")
def list_cmd(json_path: Annotated[str | None, typer.Option("--json", help=JSON_HELP)] = None) -> None:
    """List the built-in workloads."""
    from pamkv.workloads import list_workloads

    rows = []
    for name in list_workloads():
        cfg = load(WorkloadConfig, "workloads", name)
        rows.append({"name": name, "mode": cfg.mode, "kind": cfg.requests.kind,
                     "arrivals": cfg.arrivals.process, "description": cfg.description, "source": cfg.source})
    if json_path:
        write_json(rows, json_path)
        if json_path == "-":
            return
    table = Table(title="Built-in workloads")
    for col in ("name", "mode", "arrivals", "description"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], r["mode"], r["arrivals"], r["description"])
    Console().print(table)


@workload_app.command("stats")
def stats_cmd(
    workload: Annotated[str, typer.Argument(help="A built-in workload name, a workload YAML, or a trace file.")],
    fmt: Annotated[str, typer.Option("--format", help=FORMAT_HELP)] = "auto",
    skip_bad_rows: Annotated[bool, typer.Option("--skip-bad-rows", help="Skip malformed rows, counting them.")] = False,
    requests: Annotated[int | None, typer.Option("--requests", help="Keep the first N requests (draw N).")] = None,
    sample: Annotated[bool, typer.Option("--sample", help="With --requests: a seeded random sample.")] = False,
    rate_scale: Annotated[float, typer.Option("--rate-scale", help="Multiply the arrival rate.")] = 1.0,
    arrivals: Annotated[str | None, typer.Option("--arrivals", help="trace, poisson, gamma or none.")] = None,
    rate: Annotated[float | None, typer.Option("--rate", help="Arrival rate, requests/s (poisson/gamma).")] = None,
    cv: Annotated[float | None, typer.Option("--cv", help="Inter-arrival coefficient of variation (gamma).")] = None,
    start_s: Annotated[float | None, typer.Option("--start-s", help="Time window start, s.")] = None,
    end_s: Annotated[float | None, typer.Option("--end-s", help="Time window end, s.")] = None,
    column: Annotated[list[str] | None, typer.Option("--column", help=COLUMN_HELP)] = None,
    time_unit: Annotated[str, typer.Option("--time-unit", help="Arrival column unit: s, ms, us, ns, datetime.")] = "s",
    seed: Annotated[int, typer.Option("--seed", help=SEED_HELP)] = 0,
    json_path: Annotated[str | None, typer.Option("--json", help=JSON_HELP)] = None,
) -> None:
    """Statistics of a workload: request count, token lengths, arrival rate and burstiness."""
    from pamkv.workloads import load_workload

    trace = load_workload(
        workload, requests=requests, sample=sample, seed=seed, format=fmt,
        columns=_columns(column, time_unit), skip_bad_rows=skip_bad_rows,
        arrivals=_arrivals(arrivals, rate, cv), rate_scale=rate_scale, start_s=start_s, end_s=end_s,
    )
    stats = trace.stats()
    if trace.skipped_rows:
        print(f"pamkv: skipped {trace.skipped_rows} bad rows", file=sys.stderr)
    if json_path:
        write_json(stats, json_path)
        if json_path == "-":
            return
    table = Table(title=f"Workload {trace.name} ({trace.arrivals})")
    table.add_column("figure")
    for col in ("mean", "p50", "p90", "p99", "min", "max"):
        table.add_column(col, justify="right")
    for label in ("input_tokens", "output_tokens", "context_tokens"):
        table.add_row(label.replace("_", " "), *(_fmt(stats[f"{label}_{c}"]) for c in
                                                   ("mean", "p50", "p90", "p99", "min", "max")))
    Console().print(table)
    facts = Table(show_header=False)
    for key in ("requests", "skipped_rows", "duration_s", "arrival_rate_per_s", "interarrival_cv",
                "max_requests_in_1s", "shared_prefix_fraction"):
        facts.add_row(key.replace("_", " "), _fmt(stats[key]))
    Console().print(facts)


@workload_app.command("locality")
def locality_cmd(
    context: Annotated[list[int] | None, typer.Option("--context", help="Context tokens (repeatable).")] = None,
    steps: Annotated[int, typer.Option("--steps", min=1, help="Decode steps (one new token each).")] = 64,
    heads: Annotated[int, typer.Option("--heads", min=1, help="Independent head streams averaged.")] = 4,
    params: Annotated[str | None, typer.Option("--params", help="YAML file of locality parameters.")] = None,
    trace: Annotated[str | None, typer.Option("--trace", help="A recorded attention trace (.npz) to measure.")] = None,
    seed: Annotated[int, typer.Option("--seed", help=SEED_HELP)] = 0,
    json_path: Annotated[str | None, typer.Option("--json", help=JSON_HELP)] = None,
) -> None:
    """The locality generator's own figures (as in ../shared/reference/locality.md) for a context of N tokens."""
    from pamkv.workloads.locality import CITED_RANGES, REFERENCE, LocalityModel, RecordedLocality, measure
    from pamkv.workloads.locality.model import LocalitySource

    contexts = context or [1024]
    for n in contexts:
        if n < 1:
            raise UserError(f"--context must be >= 1 token, got {n}")
    source: LocalitySource
    if trace is not None:
        if params is not None:
            raise UserError("--trace and --params exclude each other")
        source = RecordedLocality.from_file(trace)
    else:
        cfg = load(LocalityConfig, "locality", params) if params else LocalityConfig()
        source = LocalityModel(cfg)
    results = []
    for n in contexts:
        figs = measure(source, n, steps=steps, heads=heads, seed=seed)
        results.append({"context_tokens": n, "seed": seed, **figs, "steps": steps, "heads": heads})
    if json_path:
        write_json(results[0] if len(results) == 1 else {"contexts": results}, json_path)
        if json_path == "-":
            return
    table = Table(title="Context locality: generator figures vs the SmolLM2-135M reference at 0.5-2k context")
    table.add_column("figure")
    for r in results:
        table.add_column(f"{r['context_tokens']:,} tok", justify="right")
    for col in ("T2k", "G1", "cited range"):
        table.add_column(col, justify="right")
    for name in (k for k in results[0] if k not in ("context_tokens", "seed", "steps", "heads")):
        band = CITED_RANGES.get(name)
        table.add_row(
            name, *(_fmt(r[name]) for r in results),
            _fmt(REFERENCE["T2k"].get(name)), _fmt(REFERENCE["G1"].get(name)),
            f"{band[0]:.3f}-{band[1]:.3f}" if band else "-",
        )
    Console().print(table)
