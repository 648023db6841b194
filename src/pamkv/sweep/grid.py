"""Read a GRID.yaml and expand it into the sweep's points, checking everything before anything runs.

Every mistake a user can make in the file — an unknown field, a value of the wrong type or out of
range, an unknown preset, a system variant that is not a valid system (``tp x pp != gpus``), zip
lists of different lengths — is one :class:`~pamkv.errors.UserError` naming the file, the line and
the key, raised before the first simulation starts. What can only fail while running (a model that
does not fit the system, a request that never fits) is recorded per point by the executor instead.

Point order: the grid's keys in the file's order, then the zip groups, with the last axis varying
fastest (``itertools.product``).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from pamkv.config import line_of, load, read_yaml, validate
from pamkv.config.runs import RunConfig
from pamkv.config.sweeps import SweepConfig
from pamkv.config.systems import SystemConfig
from pamkv.errors import UserError
from pamkv.sweep.variants import PREFIX, OverrideError, derive_system, parse_system_key, show

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Axis:
    """One dimension of the product: a grid key, or a zip group of keys that step together."""

    keys: tuple[str, ...]
    steps: list[tuple[Any, ...]]  # one tuple of values (one per key) per step
    locs: tuple[Loc, ...]  # where each key's list sits in the YAML file


@dataclass
class Point:
    """One run of the sweep."""

    index: int
    params: dict[str, Any]  # sweep key -> value as written in the grid, in column order
    run: RunConfig  # the run; when ``system`` is set, ``run.system`` is the system it derives from
    system: SystemConfig | None = None  # the variant derived by the point's 'system.…' keys, if any


@dataclass
class SweepPlan:
    """A GRID.yaml, checked and expanded."""

    source: str
    config: SweepConfig
    keys: list[str]  # the varied keys (the parameter columns), in order
    points: list[Point]
    seed: int | None  # the --seed that replaced base.seed, if any

    @property
    def metrics(self) -> list[str] | None:
        """The metrics the grid keeps (None = every scalar metric)."""
        return self.config.metrics


def load_sweep(path: str | Path, *, seed: int | None = None) -> SweepPlan:
    """Read, check and expand the sweep file at ``path``; ``seed`` (the CLI's ``--seed``) replaces base.seed."""
    source = str(path)
    data, node = read_yaml(Path(path))
    if data is None:
        data = {}
    config = validate(SweepConfig, data, source, node)
    return expand(config, source, node, seed=seed)


def expand(config: SweepConfig, source: str, node: yaml.Node | None = None, *, seed: int | None = None) -> SweepPlan:
    """The points of ``config`` (read from ``source``, whose YAML ``node`` gives line numbers)."""

    def fail(loc: Loc, message: str) -> UserError:
        line = line_of(node, loc)
        return UserError(f"{source}: line {line}: {message}" if line else f"{source}: {message}")

    axes = _axes(config, fail)
    keys = [k for axis in axes for k in axis.keys]
    key_loc = {k: loc for axis in axes for k, loc in zip(axis.keys, axis.locs, strict=True)}
    for key in keys:
        if key.startswith(PREFIX):
            try:
                parse_system_key(key)
            except OverrideError as exc:
                raise fail(key_loc[key], exc.message) from None
        elif key not in RunConfig.model_fields:
            raise fail(key_loc[key], f"unknown sweep field '{key}': give a run field "
                                     f"({', '.join(RunConfig.model_fields)}) or 'system.<system field>'")
        if key in config.base:
            raise fail(("base", key), f"'{key}' is both in base and varied by the sweep: keep it in one place")
    base = dict(config.base)
    if seed is not None:
        if "seed" in keys:
            raise fail(key_loc["seed"], "the sweep varies 'seed', so --seed does not apply: drop one of them")
        base["seed"] = seed
    validate(RunConfig, base, source, _child(node, "base"))
    if config.metrics is not None:
        dup = sorted({m for m in config.metrics if config.metrics.count(m) > 1})
        if dup:
            raise fail(("metrics",), f"metric(s) listed twice: {', '.join(dup)}")
        if any(not m.strip() for m in config.metrics):
            raise fail(("metrics",), "a metric name is empty")

    checks = _Checks(fail)
    points: list[Point] = []
    for index, combo in enumerate(itertools.product(*(range(len(a.steps)) for a in axes))):
        params: dict[str, Any] = {}
        value_loc: dict[str, Loc] = {}
        for axis, step in zip(axes, combo, strict=True):
            for key, loc, value in zip(axis.keys, axis.locs, axis.steps[step], strict=True):
                params[key] = value
                value_loc[key] = (*loc, step)
        run_fields = {k: v for k, v in params.items() if not k.startswith(PREFIX)}
        overrides = {k: v for k, v in params.items() if k.startswith(PREFIX)}
        try:
            run = RunConfig.model_validate({**base, **run_fields})
        except ValidationError as exc:
            err = exc.errors()[0]
            key = str(err["loc"][0]) if err["loc"] else next(iter(run_fields))
            raise fail(value_loc.get(key, ("base", key)),
                       f"'{key}' = {params.get(key)!r} (point {index}): {err['msg']}") from None
        where = {k: value_loc.get(k, ("base", k)) for k in ("system", "model", "workload")}
        checks.model(run.model, where["model"])
        checks.workload(run.workload, where["workload"])
        base_system = checks.system(run.system, where["system"])
        variant = None
        if overrides:
            try:
                variant = checks.variant(run.system, base_system, overrides)
            except OverrideError as exc:
                shown = ", ".join(f"{k}={show(v)}" for k, v in params.items())
                raise fail(value_loc[exc.key], f"'{exc.key}' = {overrides[exc.key]!r} (point {index}: {shown}): "
                                               f"{exc.message}") from None
        points.append(Point(index=index, params=params, run=run, system=variant))
    return SweepPlan(source=source, config=config, keys=keys, points=points, seed=seed)


def _child(node: yaml.Node | None, key: str) -> yaml.Node | None:
    """The value node of ``key`` in a mapping node (None if absent)."""
    if not isinstance(node, yaml.MappingNode):
        return None
    return next((v for k, v in node.value if getattr(k, "value", None) == key), None)


def _axes(config: SweepConfig, fail: Callable[[Loc, str], UserError]) -> list[Axis]:
    """The grid's keys (one axis each) and the zip groups (one axis per group), in the file's order."""
    axes: list[Axis] = []
    for key, values in config.grid.items():
        if not values:
            raise fail(("grid", key), f"grid '{key}' has no values")
        axes.append(Axis(keys=(key,), steps=[(v,) for v in values], locs=(("grid", key),)))
    groups: list[tuple[Loc, dict[str, list[Any]]]] = []
    if isinstance(config.zip, dict):
        groups.append((("zip",), config.zip))
    elif isinstance(config.zip, list):
        groups.extend((("zip", i), group) for i, group in enumerate(config.zip))
    for loc, group in groups:
        if not group:
            raise fail(loc, "a zip group needs at least one field")
        lengths = {k: len(v) for k, v in group.items()}
        if len(set(lengths.values())) != 1:
            shown = ", ".join(f"{k}: {n}" for k, n in lengths.items())
            raise fail(loc, f"zip lists must have the same length ({shown})")
        if not next(iter(lengths.values())):
            raise fail(loc, "zip lists have no values")
        steps = list(zip(*group.values(), strict=True))
        axes.append(Axis(keys=tuple(group), steps=steps, locs=tuple((*loc, k) for k in group)))
    seen: dict[str, int] = {}
    for axis in axes:
        for key, loc in zip(axis.keys, axis.locs, strict=True):
            if key in seen:
                raise fail(loc, f"'{key}' is varied twice (grid and zip, or two zip groups)")
            seen[key] = 1
    return axes


class _Checks:
    """Presets resolved once per distinct name; a failure names the line of the value that named it."""

    def __init__(self, fail: Callable[[Loc, str], UserError]) -> None:
        self.fail = fail
        self.models: set[str] = set()
        self.workloads: set[str] = set()
        self.systems: dict[str, SystemConfig] = {}
        self.variants: dict[tuple[str, str], SystemConfig] = {}

    def model(self, name: str, loc: Loc) -> None:
        if name not in self.models:
            from pamkv.model import load_model

            self._guard(lambda: load_model(name), loc, "model", name)
            self.models.add(name)

    def workload(self, name: str, loc: Loc) -> None:
        if name not in self.workloads:
            from pamkv.workloads import workload_config

            self._guard(lambda: workload_config(name), loc, "workload", name)
            self.workloads.add(name)

    def system(self, name: str, loc: Loc) -> SystemConfig:
        if name not in self.systems:
            self.systems[name] = self._guard(lambda: load(SystemConfig, "systems", name), loc, "system", name)
        return self.systems[name]

    def variant(self, name: str, base: SystemConfig, overrides: dict[str, Any]) -> SystemConfig:
        cache_key = (name, json.dumps(overrides, sort_keys=True, default=str))
        if cache_key not in self.variants:
            self.variants[cache_key] = derive_system(base, overrides)
        return self.variants[cache_key]

    def _guard(self, fn: Callable[[], Any], loc: Loc, kind: str, name: str) -> Any:
        try:
            return fn()
        except UserError as exc:
            raise self.fail(loc, f"{kind} '{name}': {exc}") from None
