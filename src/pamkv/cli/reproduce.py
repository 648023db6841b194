"""`pamkv reproduce`: the paper's Figs 9-13 re-run on the simulator, with the paper's numbers beside ours."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from pamkv.cli.app import JSON_HELP, SEED_HELP, app
from pamkv.errors import UserError
from pamkv.output import write_json


class _Bars:
    """One rich progress bar per figure (implements pamkv.report.reproduce.Progress)."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task: TaskID | None = None

    def begin(self, figure: str, total: int) -> None:
        self.task = self.progress.add_task(figure, total=total, detail="")

    def step(self, label: str) -> None:
        if self.task is not None:
            self.progress.update(self.task, advance=1, detail=label)


FIGURES_HELP = "fig9 (online), fig10 (offline), fig11 (energy), fig12 (ablation), fig13 (scaling); all by default."
QUICK_HELP = "Fewer points and requests: minutes instead of hours."
OUT_HELP = "Folder for reproduce.html, reproduce.json and one PNG per figure."


@app.command()
def reproduce(
    figures: Annotated[list[str] | None, typer.Argument(help=FIGURES_HELP)] = None,
    quick: Annotated[bool, typer.Option("--quick", help=QUICK_HELP)] = False,
    out: Annotated[Path, typer.Option("--out", help=OUT_HELP)] = Path("out/reproduce"),
    seed: Annotated[int, typer.Option("--seed", help=SEED_HELP)] = 0,
    json_path: Annotated[str | None, typer.Option("--json", help=JSON_HELP)] = None,
) -> None:
    """The paper's evaluation (online, offline, energy, ablation, scaling) with its numbers beside ours."""
    from pamkv.report.reproduce import Runner, check_figures, make_plan, rich_tables, to_json, write_outputs
    from pamkv.report.reproduce import reproduce as run_figures

    names = check_figures(figures or [])
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a folder")
    plan = make_plan(quick=quick, seed=seed)
    quiet = json_path == "-"
    console = Console(stderr=quiet)
    runner = Runner(plan)
    try:
        columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TextColumn("{task.fields[detail]}"))
        with Progress(*columns, console=console, transient=False) as progress:
            results = run_figures(names, plan, _Bars(progress), runner)
        data = to_json(results, plan, runner)
    finally:
        runner.close()
    html = write_outputs(results, plan, out, data)
    if json_path:
        write_json(data, json_path)
    if not quiet:
        for fig in results.values():
            for part in rich_tables(fig):
                console.print(part)
        console.print(f"wrote {html} (with {', '.join(f'{n}.png' for n in results)} and reproduce.json)")
