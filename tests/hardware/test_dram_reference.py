"""The DRAM model against Ramulator 2.1's figures in ../shared/reference/dram.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from pamkv.hardware import load_device
from pamkv.hardware.dram import DramDevice

# (device, pattern, mapping, channels, refresh) -> (GB/s, ns) as listed in reference/dram.md.
BANDWIDTH = {
    ("hbm3-6400", "seq", "robaracoch", None, True): 345.6,
    ("hbm3-6400", "seq", "mop4clxor", None, True): 672.9,
    ("hbm3-6400", "rand", None, None, True): 219.5,
    ("hbm3-6400", "bankrow", None, None, True): 247.5,
    ("hbm3-6400", "stream-peak", None, 1, True): 46.77,
    ("hbm3-6400", "stream-peak", None, 1, False): 51.07,
    ("ddr5-4800", "seq", "robaracoch", None, True): 33.61,
    ("ddr5-4800", "seq", "mop4clxor", None, True): 35.10,
    ("ddr5-4800", "rand", None, None, True): 23.04,
    ("ddr5-4800", "bankrow", None, None, True): 23.45,
    ("ddr5-4800", "stream-peak", None, 1, True): 17.60,
    ("ddr5-4800", "stream-peak", None, 1, False): 19.23,
}
LOADED_LATENCY = {
    ("hbm3-6400", "seq", "robaracoch"): 61.7,
    ("hbm3-6400", "seq", "mop4clxor"): 39.0,
    ("hbm3-6400", "rand", None): 84.0,
    ("hbm3-6400", "bankrow", None): 99.6,
    ("ddr5-4800", "seq", "robaracoch"): 139.6,
    ("ddr5-4800", "rand", None): 168.4,
    ("ddr5-4800", "bankrow", None): 206.3,
}
ROW_HITS = {
    ("hbm3-6400", "robaracoch"): 0.968,
    ("hbm3-6400", "mop4clxor"): 0.958,
    ("ddr5-4800", "robaracoch"): 0.983,
    ("ddr5-4800", "mop4clxor"): 0.942,
}


def _dev(name: str) -> DramDevice:
    dev = load_device(name)
    assert isinstance(dev, DramDevice)
    return dev


@pytest.mark.parametrize("key", sorted(BANDWIDTH, key=str))
def test_bandwidth_within_ten_percent(key: tuple) -> None:
    name, pat, mapping, channels, refresh = key
    got = _dev(name).pattern(pat, mapping, channels, refresh).bandwidth_gbps
    assert got == pytest.approx(BANDWIDTH[key], rel=0.10)


@pytest.mark.parametrize(("name", "reference"), [("hbm3-6400", 49.7), ("hbm3-6400", 46.6), ("ddr5-4800", 45.7)])
def test_unloaded_latency_within_fifteen_percent(name: str, reference: float) -> None:
    assert _dev(name).pattern("unloaded").latency_ns == pytest.approx(reference, rel=0.15)


@pytest.mark.parametrize("key", sorted(LOADED_LATENCY, key=str))
def test_loaded_latency_within_fifteen_percent(key: tuple) -> None:
    name, pat, mapping = key
    assert _dev(name).pattern(pat, mapping).latency_ns == pytest.approx(LOADED_LATENCY[key], rel=0.15)


def test_ddr5_mop4clxor_loaded_latency_is_the_documented_deviation() -> None:
    # Little's law over a full 32-entry queue gives ~134 ns; Ramulator reports 110.1 ns (docs/hardware.md).
    got = _dev("ddr5-4800").pattern("seq", "mop4clxor").latency_ns
    assert got == pytest.approx(110.1, rel=0.25)


@pytest.mark.parametrize("key", sorted(ROW_HITS, key=str))
def test_row_hit_rates(key: tuple) -> None:
    name, mapping = key
    assert _dev(name).pattern("seq", mapping).row_hit_rate == pytest.approx(ROW_HITS[key], abs=0.02)


def test_bank_group_mapping_doubles_an_hbm3_stream() -> None:
    dev = _dev("hbm3-6400")
    ratio = dev.pattern("seq", "mop4clxor").bandwidth_gbps / dev.pattern("seq", "robaracoch").bandwidth_gbps
    assert 1.6 < ratio < 2.2  # tCCD_L / tCCD_S = 2 on HBM3


def test_ddr5_random_is_activation_bound_at_any_speed_grade() -> None:
    slow = _dev("ddr5-4800").pattern("rand").bandwidth_gbps
    fast = _dev("ddr5-5600").pattern("rand").bandwidth_gbps
    assert fast == pytest.approx(slow, rel=0.05)


def test_the_figures_are_the_reference_files(shared: Path) -> None:
    text = (shared / "reference" / "dram.md").read_text()
    for value in [*BANDWIDTH.values(), *LOADED_LATENCY.values(), 49.7, 46.6, 45.7]:
        assert f"{value:g}" in text or f"{value:.2f}" in text, value
