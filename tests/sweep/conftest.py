"""Fixtures of the sweep tests: writing a GRID.yaml, and running the CLI in this process."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from pamkv.cli import main


@pytest.fixture
def write_grid(tmp_path: Path) -> Callable[[str], Path]:
    """``write_grid(text)`` writes a GRID.yaml into the test's folder and returns its path."""

    def write(text: str, name: str = "grid.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """``run_cli(*args)`` runs ``pamkv ARGS`` in this process: (exit code, stdout, stderr)."""

    def run(*args: str) -> tuple[int, str, str]:
        with pytest.raises(SystemExit) as exit_info:
            main(list(args))
        out, err = capsys.readouterr()
        return int(exit_info.value.code or 0), out, err

    return run
