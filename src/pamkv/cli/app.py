"""The ``pamkv`` Typer application that every ``pamkv.cli`` module adds its commands to."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="pamkv",
    help="PAM (Processing Across Memory): tiered-PIM KV-centric LLM serving — run it, simulate it, compare it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
)

SEED_HELP = "Random seed: the same seed and inputs give the same result, bit for bit."
JSON_HELP = "Write the result as JSON to this path ('-' for standard output)."


@app.callback()
def _root() -> None:
    """PAM (Processing Across Memory): tiered-PIM KV-centric LLM serving."""
