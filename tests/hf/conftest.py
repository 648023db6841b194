"""Fixtures of the Hugging Face integration tests: one torch thread, the test helpers importable."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> None:
    """Pin torch to one thread: these tests share a small machine, and one thread is also deterministic."""
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(1)
