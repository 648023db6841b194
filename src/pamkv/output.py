"""Writing results: JSON to a path or standard output, failing loudly on a bad path."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from pamkv.errors import UserError


def _plain(value: Any) -> Any:
    """Turn numpy scalars/arrays and non-finite floats into JSON-safe Python values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating | float):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def to_json_text(obj: Any) -> str:
    """Serialise ``obj`` as indented JSON with sorted keys (stable bytes for a stable input)."""
    return json.dumps(_plain(obj), indent=2, sort_keys=True) + "\n"


def write_json(obj: Any, path: str | Path) -> None:
    """Write ``obj`` as JSON to ``path``; ``-`` means standard output. A failed write is a UserError."""
    text = to_json_text(obj)
    if str(path) == "-":
        sys.stdout.write(text)
        return
    target = Path(path)
    try:
        if target.parent and not target.parent.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from exc
