"""The ``pamkv`` command. Each module below adds its own commands to :data:`pamkv.cli.app.app`."""

from __future__ import annotations

import sys

import typer

from pamkv.cli.app import app
from pamkv.errors import UserError

# Importing a command module registers its commands.
from pamkv.cli import models as _models  # noqa: F401, E402  isort: skip
from pamkv.cli import hw as _hw  # noqa: F401, E402  isort: skip
from pamkv.cli import workload as _workload  # noqa: F401, E402  isort: skip
from pamkv.cli import demo as _demo  # noqa: F401, E402  isort: skip
from pamkv.cli import simulate as _simulate  # noqa: F401, E402  isort: skip
from pamkv.cli import hf as _hf  # noqa: F401, E402  isort: skip
from pamkv.cli import reproduce as _reproduce  # noqa: F401, E402  isort: skip
from pamkv.cli import sweep as _sweep  # noqa: F401, E402  isort: skip


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; a user mistake prints one line on stderr and exits with code 2."""
    try:
        code = app(args=argv, prog_name="pamkv", standalone_mode=False)
    except UserError as exc:
        print(f"pamkv: error: {exc}", file=sys.stderr)
        sys.exit(UserError.exit_code)
    except typer.Abort:
        print("pamkv: aborted", file=sys.stderr)
        sys.exit(130)
    except typer.TyperException as exc:  # usage errors: bad option, missing argument, unknown command
        ctx = getattr(exc, "ctx", None)
        where = f"{ctx.command_path}: " if ctx is not None else ""
        text = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        print(f"pamkv: error: {where}{text}", file=sys.stderr)
        sys.exit(getattr(exc, "exit_code", 2))
    sys.exit(code if isinstance(code, int) else 0)


__all__ = ["app", "main"]
