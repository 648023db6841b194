"""Shared test fixtures: where the shared reference data lives, and a CLI runner."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def shared() -> Path:
    """The shared folder beside the checkout (reference figures and real traces)."""
    if not SHARED.is_dir():
        pytest.skip("the shared reference folder is not beside this checkout")
    return SHARED


@pytest.fixture(scope="session")
def cli():  # type: ignore[no-untyped-def]
    """``cli(*args)`` runs ``pamkv ARGS`` in a subprocess and returns the completed process."""
    return run_cli


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``pamkv ARGS`` in a subprocess, as a user would, and capture its output."""
    return subprocess.run(
        [sys.executable, "-c", "from pamkv.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
