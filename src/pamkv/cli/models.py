"""`pamkv models`: the model presets with their sizes."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from pamkv.cli.app import JSON_HELP, app
from pamkv.config import list_presets
from pamkv.model import kv_bytes_per_token, load_model, param_count
from pamkv.output import write_json


def model_rows(names: list[str]) -> list[dict[str, object]]:
    """One dict per model: its shape, parameters, and 16-bit KV bytes per token over all layers."""
    rows = []
    for name in names:
        m = load_model(name)
        rows.append(
            {
                "name": m.name,
                "family": m.family,
                "layers": m.layers,
                "hidden": m.hidden,
                "heads": m.heads,
                "kv_heads": m.kv_heads,
                "head_dim": m.head_dim,
                "ffn_hidden": m.ffn_hidden,
                "params_b": round(param_count(m) / 1e9, 3),
                "kv_bytes_per_token": int(kv_bytes_per_token(m, "fp16")),
                "max_context": m.max_context,
                "source": m.source,
            }
        )
    return rows


@app.command()
def models(
    name: Annotated[str | None, typer.Argument(help="A preset name or a model YAML file.")] = None,
    json_path: Annotated[str | None, typer.Option("--json", help=JSON_HELP)] = None,
) -> None:
    """List model presets with their shapes and KV bytes per token (16-bit, all layers)."""
    rows = model_rows([name] if name else list_presets("models"))
    if json_path:
        write_json(rows, json_path)
        if json_path == "-":
            return
    table = Table(title="Model presets (KV: 16-bit, all layers)")
    for col in ("name", "layers", "heads", "kv_heads", "head_dim", "params_b", "kv_bytes_per_token"):
        table.add_column(col.replace("_", " "), justify="left" if col == "name" else "right")
    for r in rows:
        table.add_row(*(f"{r[c]:,}" if isinstance(r[c], int) else str(r[c]) for c in
                        ("name", "layers", "heads", "kv_heads", "head_dim", "params_b", "kv_bytes_per_token")))
    Console().print(table)
