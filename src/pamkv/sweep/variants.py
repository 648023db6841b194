"""System variants: a system preset with some of its fields replaced, validated, and written as YAML.

A sweep key ``system.tp`` or ``system.tiers.1.count`` names a path into a
:class:`~pamkv.config.systems.SystemConfig`. :func:`derive_system` applies such paths to a base system
(the same as ``model_copy(update=...)`` on the touched fields, but through the schema, so the result is
validated: ``model_copy`` alone does not check ``tp x pp = gpus`` or a value's range), and
:func:`system_yaml` renders the variant as a system file that ``pamkv simulate --system FILE`` reads.
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import ValidationError

from pamkv.config.systems import SystemConfig, TierConfig

PREFIX = "system."

KeyPath = tuple[str, ...]


class OverrideError(Exception):
    """A system override that cannot apply: ``key`` is the sweep key (``system.…``) at fault."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message


def parse_system_key(key: str) -> KeyPath:
    """The path of a ``system.`` key (``system.tiers.1.count`` -> ``('tiers', '1', 'count')``).

    Checks what can be checked without a base system: the first field is a SystemConfig field, and a
    path into ``tiers`` names a tier (index or name) and then a TierConfig field.
    """
    path = tuple(key[len(PREFIX):].split("."))
    if any(not part for part in path):
        raise OverrideError(key, f"'{key}' has an empty part")
    head = path[0]
    if head not in SystemConfig.model_fields:
        raise OverrideError(key, f"unknown system field '{head}' (known: {', '.join(SystemConfig.model_fields)})")
    if head == "tiers":
        if len(path) == 2:
            raise OverrideError(key, f"'{key}' names a whole tier: give one of its fields, "
                                     f"e.g. '{key}.count'")
        if len(path) > 2 and path[2] not in TierConfig.model_fields:
            raise OverrideError(
                key, f"unknown tier field '{path[2]}' (known: {', '.join(TierConfig.model_fields)})")
        if len(path) > 3:
            raise OverrideError(key, f"'{key}': a tier field has no parts")
    elif len(path) > 1:
        raise OverrideError(key, f"'{key}': system field '{head}' has no parts")
    return path


def _assign(data: dict[str, Any], key: str, path: KeyPath, value: Any) -> KeyPath:
    """Set ``value`` at ``path`` in the dumped system ``data``; returns the path with tier names as indices."""
    node: Any = data
    resolved: list[str] = []
    for depth, part in enumerate(path):
        last = depth == len(path) - 1
        if isinstance(node, list):
            index = _list_index(node, part, key)
            resolved.append(str(index))
            if last:
                node[index] = value
            else:
                node = node[index]
        else:
            if part not in node:
                raise OverrideError(key, f"system has no field '{part}' at '{key}'")
            resolved.append(part)
            if last:
                node[part] = value
            else:
                node = node[part]
    return tuple(resolved)


def _list_index(items: list[Any], part: str, key: str) -> int:
    """A list position from an integer (negative counts from the end) or a tier's name."""
    try:
        index = int(part)
    except ValueError:
        names = [item.get("name") if isinstance(item, dict) else None for item in items]
        if part in names:
            return names.index(part)
        raise OverrideError(key, f"no tier named '{part}' (tiers: {', '.join(map(str, names))})") from None
    if not -len(items) <= index < len(items):
        raise OverrideError(key, f"tier index {index} out of range (the system has {len(items)} tiers)")
    return index % len(items)


def show(value: Any) -> str:
    """A value as YAML writes it inline (``null``, ``true``, ``2``, ``dense``) for names and messages."""
    return str(yaml.safe_dump(value, default_flow_style=True, width=1_000_000)).removesuffix("\n...\n").strip()


def derive_system(base: SystemConfig, overrides: dict[str, Any], *, name: str | None = None) -> SystemConfig:
    """``base`` with each ``system.…`` key of ``overrides`` set to its value, validated.

    The variant is named ``name`` or ``<base>[field=value, ...]``. Raises :class:`OverrideError`
    naming the key at fault when a path does not exist or the result is not a valid system.
    """
    data = base.model_dump(mode="json")
    resolved: dict[KeyPath, str] = {}
    for key, value in overrides.items():
        resolved[_assign(data, key, parse_system_key(key), value)] = key
    label = ", ".join(f"{key[len(PREFIX):]}={show(value)}" for key, value in overrides.items())
    data["name"] = name or f"{base.name}[{label}]"
    data["description"] = f"'{base.name}' with {label}." + (f" {base.description}" if base.description else "")
    try:
        return SystemConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(str(p) for p in err["loc"])
        # The key whose path leads to the error, else (a whole-system check such as tp x pp) the first.
        key = next((k for p, k in resolved.items() if loc[: len(p)] == p), next(iter(overrides)))
        where = f" at '{'.'.join(loc)}'" if loc and resolved.get(loc) != key else ""
        message = str(err["msg"]).removeprefix("Value error, ")
        raise OverrideError(key, f"not a valid system{where}: {message}") from exc


def system_yaml(system: SystemConfig, header: str = "") -> str:
    """A system as YAML text that :class:`SystemConfig` reads back to an equal system."""
    comment = "".join(f"# {line}\n" for line in header.splitlines())
    return comment + yaml.safe_dump(system.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
