"""Load pydantic configs from packaged YAML presets or a user's YAML file.

A preset is ``src/pamkv/presets/<kind>/<name>.yaml``. Any error — a file that is not there, YAML
that does not parse, a field that is missing, unknown, of the wrong type or out of range — becomes a
one-line :class:`~pamkv.errors.UserError` naming the file, the line and the field.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from pamkv.errors import UserError

M = TypeVar("M", bound=BaseModel)


def preset_dir(kind: str) -> Path:
    """The folder holding the packaged presets of one kind (``models``, ``devices``, ...)."""
    return Path(str(resources.files("pamkv") / "presets" / kind))


def list_presets(kind: str) -> list[str]:
    """Names of the packaged presets of one kind, sorted."""
    folder = preset_dir(kind)
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def line_of(node: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """1-based line of the YAML node at ``loc``, or of its deepest parent that exists."""
    if node is None:
        return None
    for key in loc:
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            child = next((v for k, v in node.value if getattr(k, "value", None) == key), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            child = node.value[key]
        if child is None:
            break
        node = child
    return node.start_mark.line + 1


def read_yaml(path: Path) -> tuple[Any, yaml.Node | None]:
    """Parse a YAML file, returning its data and its node tree (for line numbers)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "?"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"{path}: {where}: malformed YAML: {problem}") from exc
    return data, node


def validate(cls: type[M], data: Any, source: str, node: yaml.Node | None = None) -> M:
    """Validate ``data`` as ``cls``; the first error becomes one line naming source, line and field."""
    if not isinstance(data, dict):
        raise UserError(f"{source}: expected a mapping of fields for {cls.__name__}, got {type(data).__name__}")
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        # An unknown field usually explains the "missing" one next to it (a typo): report it first.
        errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
        err = errors[0]
        loc = tuple(err["loc"])
        field = ".".join(str(p) for p in loc) or "(top level)"
        line = line_of(node, loc)
        where = f"{source}: line {line}" if line else source
        got = err.get("input")
        shown = "" if isinstance(got, dict) or err["type"] == "missing" else f" (got {got!r})"
        raise UserError(f"{where}: field '{field}': {err['msg']}{shown}") from exc


@cache
def _load_preset_cached(cls: type[BaseModel], kind: str, name: str) -> BaseModel:
    path = preset_dir(kind) / f"{name}.yaml"
    data, node = read_yaml(path)
    return validate(cls, data, str(path.name), node)


def load(cls: type[M], kind: str, name_or_path: str | Path) -> M:
    """Load a ``cls`` config: a packaged preset by name, or a YAML file by path.

    Raises :class:`UserError` for an unknown name, a missing file or an invalid field.
    """
    text = str(name_or_path)
    path = Path(text)
    if text.endswith((".yaml", ".yml")) or path.is_file():
        data, node = read_yaml(path)
        return validate(cls, data, str(path), node)
    if text not in list_presets(kind):
        known = ", ".join(list_presets(kind)) or "none"
        raise UserError(f"unknown {kind[:-1] if kind.endswith('s') else kind} preset '{text}' (known: {known})")
    return _load_preset_cached(cls, kind, text)  # type: ignore[return-value]
