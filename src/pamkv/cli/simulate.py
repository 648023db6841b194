"""`pamkv simulate` and `pamkv compare`: serve a workload on one or several systems."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from pamkv.cli.app import JSON_HELP, SEED_HELP, app
from pamkv.config import read_yaml, validate
from pamkv.config.runs import RunConfig
from pamkv.errors import UserError
from pamkv.output import write_json

SystemOpt = Annotated[str | None, typer.Option("--system", help="System preset or YAML (pamkv.systems).")]
ModelOpt = Annotated[str | None, typer.Option("--model", help="Model preset or YAML (`pamkv models`).")]
WorkloadOpt = Annotated[str | None, typer.Option("--workload", help="Workload preset or trace file.")]
RequestsOpt = Annotated[int | None, typer.Option("--requests", help="Use the first N requests.")]
BatchOpt = Annotated[int | None, typer.Option("--batch", help="Offline mode: fixed batch, maximum throughput.")]
SloOpt = Annotated[float | None, typer.Option("--slo-tpot-ms", help="Online: peak throughput within this TPOT SLO.")]
SeedOpt = Annotated[int | None, typer.Option("--seed", help=SEED_HELP)]
JsonOpt = Annotated[str | None, typer.Option("--json", help=JSON_HELP)]


def run_config(config: Path | None, **overrides: Any) -> RunConfig:
    """A RunConfig from an optional RUN.yaml, with the non-None command-line values on top."""
    data: dict[str, Any] = {}
    node = None
    source = "command line"
    if config is not None:
        raw, node = read_yaml(config)
        if not isinstance(raw, dict):
            raise UserError(f"{config}: expected a mapping of run fields")
        data, source = raw, str(config)
    data.update({k: v for k, v in overrides.items() if v is not None})
    return validate(RunConfig, data, source, node)


@app.command()
def simulate(
    config: Annotated[
        Path | None, typer.Option("--config", help="RUN.yaml with the same fields; flags override.")
    ] = None,
    system: SystemOpt = None,
    model: ModelOpt = None,
    workload: WorkloadOpt = None,
    requests: RequestsOpt = None,
    batch: BatchOpt = None,
    slo_tpot_ms: SloOpt = None,
    rate_scale: Annotated[float | None, typer.Option("--rate-scale", help="Multiply the arrival rate.")] = None,
    seed: SeedOpt = None,
    json_path: JsonOpt = None,
    requests_csv: Annotated[Path | None, typer.Option("--requests-csv", help="Write per-request CSV here.")] = None,
    timeline: Annotated[
        Path | None, typer.Option("--timeline", help="Write the iteration timeline (.csv/.parquet).")
    ] = None,
    chrome_trace: Annotated[Path | None, typer.Option("--chrome-trace", help="Write a Chrome trace JSON here.")] = None,
) -> None:
    """Simulate one system serving one workload; print the metrics and write them as JSON."""
    from pamkv.sim import simulate as run

    cfg = run_config(config, system=system, model=model, workload=workload, requests=requests, batch=batch,
                     slo_tpot_ms=slo_tpot_ms, rate_scale=rate_scale, seed=seed)
    result = run(cfg)
    if json_path:
        result.to_json(json_path)
    if requests_csv:
        result.write_requests_csv(requests_csv)
    if timeline:
        result.write_timeline(timeline)
    if chrome_trace:
        result.write_chrome_trace(chrome_trace)
    if json_path != "-":
        print_table({cfg.system: result.metrics}, title=f"{cfg.model} on {cfg.workload}")


@app.command()
def compare(
    systems: Annotated[str, typer.Option("--systems", help="Comma-separated system presets.")] = (
        "pam,vllm-offload,attacc,l-pim,ls-pim"
    ),
    model: ModelOpt = None,
    workload: WorkloadOpt = None,
    requests: RequestsOpt = None,
    batch: BatchOpt = None,
    slo_tpot_ms: SloOpt = None,
    seed: SeedOpt = None,
    json_path: JsonOpt = None,
) -> None:
    """Run the same workload on several systems and print them side by side."""
    from pamkv.sim import simulate as run

    names = [s.strip() for s in systems.split(",") if s.strip()]
    if not names:
        raise UserError("--systems: give at least one system name")
    results = {}
    for name in names:
        cfg = run_config(None, system=name, model=model, workload=workload, requests=requests, batch=batch,
                         slo_tpot_ms=slo_tpot_ms, seed=seed)
        results[name] = run(cfg).metrics
    if json_path:
        write_json({"results": results}, json_path)
    if json_path != "-":
        print_table(results, title="comparison")


def _fmt(value: Any, scale: float = 1.0, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "—"
    return f"{value * scale:,.{digits}f}"


def print_table(results: dict[str, dict[str, Any]], title: str) -> None:
    """A rich table of the headline metrics, one row per system."""
    table = Table(title=title)
    cols = [
        ("system", None), ("tokens/s", ("throughput_tokens_per_s", 1, 1)),
        ("TTFT p50 ms", ("ttft_s_p50", 1e3, 1)), ("TTFT p99 ms", ("ttft_s_p99", 1e3, 1)),
        ("TPOT p50 ms", ("tpot_s_p50", 1e3, 2)), ("TPOT p99 ms", ("tpot_s_p99", 1e3, 2)),
        ("J/token", ("energy_j_per_token", 1, 3)), ("tokens/s per $k", ("tokens_per_s_per_kusd", 1, 3)),
        ("max batch", ("max_batch_within_slo", 1, 0)), ("OOM", None),
    ]
    for name, _ in cols:
        table.add_column(name, justify="left" if name == "system" else "right")
    for system, m in results.items():
        cells = [system]
        for _name, spec in cols[1:]:
            if spec is None:
                cells.append("OOM" if m.get("oom") else "")
            else:
                key, scale, digits = spec
                cells.append(_fmt(m.get(key), scale, digits))
        table.add_row(*cells)
    Console().print(table)
