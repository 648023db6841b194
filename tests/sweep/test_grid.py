"""Expanding a GRID.yaml into points, and every mistake in it as one line naming file, line and key."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pamkv.config.sweeps import SweepConfig
from pamkv.errors import UserError
from pamkv.sweep import load_sweep
from pamkv.sweep.grid import expand

TINY_BASE = "base: {model: llama-2-7b, workload: sharegpt, requests: 8}\n"


def test_cartesian_product_in_file_order_last_axis_fastest(write_grid: Callable[[str], Path]) -> None:
    plan = load_sweep(write_grid(TINY_BASE + "grid:\n  batch: [4, 8]\n  seed: [1, 2, 3]\n"))
    assert plan.keys == ["batch", "seed"]
    assert [(p.params["batch"], p.params["seed"]) for p in plan.points] == list(
        itertools.product([4, 8], [1, 2, 3]))
    assert [p.index for p in plan.points] == list(range(6))
    assert all(p.run.model == "llama-2-7b" and p.run.requests == 8 for p in plan.points)
    assert [p.run.seed for p in plan.points] == [1, 2, 3, 1, 2, 3]


def test_zip_fields_vary_together(write_grid: Callable[[str], Path]) -> None:
    plan = load_sweep(write_grid(TINY_BASE + "grid:\n  batch: [4, 8]\n"
                                 "zip:\n  system.tp: [8, 4, 2]\n  system.pp: [1, 2, 4]\n"))
    assert plan.keys == ["batch", "system.tp", "system.pp"]
    assert len(plan.points) == 6
    for point in plan.points:
        assert point.system is not None
        assert point.system.tp == point.params["system.tp"] and point.system.pp == point.params["system.pp"]
        assert point.system.tp * point.system.pp == 8
        assert point.run.system == "pam"  # the run still names the system the variant derives from


def test_several_zip_groups_are_separate_axes(write_grid: Callable[[str], Path]) -> None:
    plan = load_sweep(write_grid(TINY_BASE + "zip:\n  - {batch: [4, 8], seed: [1, 2]}\n"
                                 "  - {system.tp: [8, 4], system.pp: [1, 2]}\n"))
    assert len(plan.points) == 4
    assert {(p.params["batch"], p.params["seed"]) for p in plan.points} == {(4, 1), (8, 2)}


def test_no_grid_is_one_point_and_seed_flag_replaces_base_seed(write_grid: Callable[[str], Path]) -> None:
    plan = load_sweep(write_grid(TINY_BASE), seed=11)
    assert len(plan.points) == 1 and plan.keys == [] and plan.points[0].run.seed == 11


def test_presets_are_shared_but_variants_are_per_override(write_grid: Callable[[str], Path]) -> None:
    plan = load_sweep(write_grid(TINY_BASE + "grid:\n  system: [pam, l-pim]\n  system.sparsity_ratio: [4, 16]\n"))
    names = [p.system.name for p in plan.points if p.system]
    assert names == ["pam[sparsity_ratio=4]", "pam[sparsity_ratio=16]", "l-pim[sparsity_ratio=4]",
                     "l-pim[sparsity_ratio=16]"]
    assert plan.points[2].system is not None and plan.points[2].system.placement == "top-down"  # l-pim's own


@settings(max_examples=25, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 4), min_size=0, max_size=3),
    zip_length=st.one_of(st.none(), st.integers(1, 3)),
)
def test_point_count_is_the_product_and_points_are_distinct(lengths: list[int], zip_length: int | None) -> None:
    keys = ["seed", "batch", "requests"]
    grid = {key: list(range(1, n + 1)) for key, n in zip(keys, lengths, strict=False)}
    zipped = None if zip_length is None else {"rate_scale": [float(i + 1) for i in range(zip_length)],
                                              "max_sim_s": [100.0 * (i + 1) for i in range(zip_length)]}
    config = SweepConfig(base={"model": "llama-2-7b", "workload": "sharegpt"}, grid=grid, zip=zipped)
    plan = expand(config, "grid.yaml")
    expected = 1
    for n in lengths:
        expected *= n
    expected *= zip_length or 1
    assert len(plan.points) == expected
    combos = [tuple(p.params.values()) for p in plan.points]
    assert len(set(combos)) == len(combos)
    if zipped:
        assert all(p.run.max_sim_s == 100.0 * p.run.rate_scale for p in plan.points)


@pytest.mark.parametrize(("text", "line", "words"), [
    ("grid:\n  batchh: [4]\n", 2, ["unknown sweep field 'batchh'"]),
    ("grid:\n  batch: [4]\n  system.tpp: [1]\n", 3, ["unknown system field 'tpp'"]),
    ("grid:\n  system.tiers.0.cnt: [1]\n", 2, ["unknown tier field 'cnt'"]),
    ("grid:\n  system.tiers.5.count: [1]\n", 2, ["tier index 5 out of range"]),
    ("grid:\n  system.tiers.dram.count: [1]\n", 2, ["no tier named 'dram'"]),
    ("grid:\n  batch: [4,\n    0]\n", 3, ["'batch' = 0", "greater than 0"]),
    ("grid:\n  batch: 4\n", 2, ["grid.batch", "valid list"]),
    ("grid:\n  model: [llama-2-7b,\n    llama-9]\n", 3, ["model 'llama-9'", "unknown model preset"]),
    ("grid:\n  system: [pam, nope]\n", 2, ["system 'nope'"]),
    ("grid:\n  workload: [no-such-trace.csv]\n", 2, ["workload 'no-such-trace.csv'"]),
    ("grid:\n  system.tp: [4]\n  system.pp: [1]\n", 2, ["tp x pp must equal gpus (4 x 1 != 8)"]),
    ("grid:\n  system.sparsity: [dense,\n    sparse]\n", 3, ["'system.sparsity' = 'sparse'"]),
    ("zip:\n  batch: [4, 8]\n  seed: [1]\n", 2, ["same length", "batch: 2, seed: 1"]),
    ("base: {batch: 4}\ngrid:\n  batch: [8]\n", 1, ["both in base and varied"]),
    ("grid:\n  batch: [4]\nzip:\n  batch: [8]\n", 4, ["varied twice"]),
    ("base: {modle: x}\n", 1, ["field 'modle'"]),
    ("metrics: [a, a]\n", 1, ["listed twice: a"]),
    ("grid:\n  batch: [4\n", 3, ["malformed YAML"]),
])
def test_mistakes_are_one_line_with_file_and_line(write_grid: Callable[[str], Path], text: str, line: int,
                                                  words: list[str]) -> None:
    path = write_grid(text)
    with pytest.raises(UserError) as info:
        load_sweep(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: line {line}: "), message
    for word in words:
        assert word in message, message


def test_seed_flag_and_seed_axis_conflict(write_grid: Callable[[str], Path]) -> None:
    path = write_grid("grid:\n  seed: [1, 2]\n")
    with pytest.raises(UserError, match="varies 'seed'"):
        load_sweep(path, seed=3)
