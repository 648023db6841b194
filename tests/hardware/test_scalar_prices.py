"""The float closures the simulator prices steps with equal the vectorised device methods bit for bit.

Each ``*_fn`` repeats a vectorised formula on Python floats; any drift (a reordered product, a missed
branch such as PIM's few-tokens path) shows here as an inexact result.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pamkv.hardware import load_device
from pamkv.hardware.catalog import load_gpu
from pamkv.hardware.pim import PimDevice
from pamkv.hardware.registry import load_link
from pamkv.hardware.ssd import SsdDevice
from pamkv.hardware.tier import DeviceTier

counts = st.lists(
    st.one_of(st.just(0.0), st.floats(-10.0, 0.0), st.floats(1e-6, 2.0), st.floats(2.0, 5000.0),
              st.integers(0, 100_000).map(float), st.floats(1e5, 1e13)),
    min_size=1, max_size=40,
)
token_bytes = st.sampled_from([64.0, 512.0, 4096.0, 16384.0, 49152.0])


@cache
def pim(name: str) -> PimDevice:
    dev = load_device(name)
    assert isinstance(dev, PimDevice)
    return dev


@cache
def ssd() -> SsdDevice:
    dev = load_device("ssd-pim")
    assert isinstance(dev, SsdDevice)
    return dev


def same(fn: Callable[[float], float], xs: list[float], want: np.ndarray) -> None:
    """``fn`` at every ``xs`` equals ``want`` exactly."""
    got = np.array([fn(x) for x in xs])
    assert got.shape == want.shape
    assert np.array_equal(got, want), (np.asarray(xs)[got != want][:5], got[got != want][:5], want[got != want][:5])


@pytest.mark.parametrize("name", ["hbm3-pim", "ddr4-pim"])
@settings(max_examples=60, deadline=None)
@given(xs=counts, tb=token_bytes, coarse=st.booleans(), group=st.sampled_from([1, 4, 8]),
       head_dim=st.sampled_from([64, 128]), power_limit=st.booleans())
def test_pim_attention(name: str, xs: list[float], tb: float, coarse: bool, group: int, head_dim: int,
                       power_limit: bool) -> None:
    dev = pim(name)
    want = dev.attention_seconds(np.array(xs), tb, coarse, group=group, head_dim=head_dim, power_limit=power_limit)
    same(dev.attention_seconds_fn(tb, coarse, group, head_dim, power_limit), xs, want)


@pytest.mark.parametrize("name", ["hbm3-pim", "ddr4-pim"])
@settings(max_examples=40, deadline=None)
@given(xs=counts, tb=token_bytes)
def test_pim_fetch_and_energy(name: str, xs: list[float], tb: float) -> None:
    dev = pim(name)
    same(dev.fetch_seconds_fn(tb), xs, dev.fetch_seconds(np.array(xs), tb))
    same(dev.energy_fn(tb, True), xs, dev.energy_j(np.array(xs), tb, True))
    same(dev.energy_fn(tb, False), xs, dev.energy_j(np.array(xs), tb, False))


@settings(max_examples=60, deadline=None)
@given(xs=counts, tb=token_bytes, coarse=st.booleans(), group=st.sampled_from([1, 8]),
       power_limit=st.booleans(), fraction=st.sampled_from([1.0, 1 / 8, 1 / 64]))
def test_ssd_attention(xs: list[float], tb: float, coarse: bool, group: int, power_limit: bool,
                       fraction: float) -> None:
    dev = ssd()
    want = dev.attention_seconds(np.array(xs), tb, coarse, group=group, power_limit=power_limit,
                                 selected_fraction=fraction)
    same(dev.attention_seconds_fn(tb, coarse, group, 128, power_limit, fraction), xs, want)


@settings(max_examples=40, deadline=None)
@given(xs=counts, tb=token_bytes, fraction=st.sampled_from([1.0, 1 / 8, 1 / 64]))
def test_ssd_fetch_and_energy(xs: list[float], tb: float, fraction: float) -> None:
    dev = ssd()
    same(dev.fetch_seconds_fn(tb, fraction), xs, dev.fetch_seconds(np.array(xs), tb, fraction))
    same(dev.energy_fn(tb, True, fraction), xs, dev.energy_j(np.array(xs), tb, True, fraction))
    same(dev.energy_fn(tb, False, fraction), xs, dev.energy_j(np.array(xs), tb, False, fraction))


@pytest.mark.parametrize("name", ["nvlink4", "pcie5-x16", "cxl2-x16"])
@settings(max_examples=30, deadline=None)
@given(nbytes=counts, lanes=st.integers(1, 8))
def test_link(name: str, nbytes: list[float], lanes: int) -> None:
    link = load_link(name, lanes)
    same(link.transfer_seconds_fn(), nbytes, link.transfer_seconds(np.array(nbytes)))
    same(link.energy_fn(), nbytes, link.energy_j(np.array(nbytes)))


@pytest.mark.parametrize("device", ["hbm3-pim", "ddr4-pim", "ssd-pim"])
def test_a_tier_bundles_the_device_and_link_prices(device: str) -> None:
    tier = DeviceTier.from_presets("t", device, 4, "pcie5-x16", group=8, power_limit=True, selected_fraction=1 / 8)
    prices = tier.scalar_prices(4096.0, coarse=False)
    assert prices is not None
    xs = [0.0, 3.0, 700.0, 4096.0, 1e7]
    same(prices.attention, xs, tier.attention_seconds(np.array(xs), 4096.0, False))
    same(prices.fetch, xs, tier.fetch_seconds(np.array(xs), 4096.0))
    same(prices.energy, xs, tier.energy_j(np.array(xs), 4096.0, True))
    same(prices.read_energy, xs, tier.energy_j(np.array(xs), 4096.0, False))
    same(prices.link, xs, tier.link_seconds(np.array(xs)))
    same(prices.link_energy, xs, tier.link_energy_j(np.array(xs)))


def test_plain_dram_has_no_float_prices() -> None:
    tier = DeviceTier.from_presets("t", "ddr5-4800", 4, "pcie5-x16", pim=False)
    assert tier.scalar_prices(4096.0, coarse=False) is None


@pytest.mark.parametrize("name", ["h100", "a100"])
@settings(max_examples=100, deadline=None)
@given(m=st.integers(0, 300_000), n=st.integers(0, 100_000), k=st.integers(0, 100_000))
def test_gemm_seconds_is_the_vectorised_price(name: str, m: int, n: int, k: int) -> None:
    gpu = load_gpu(name)
    assert gpu.gemm_seconds(m, n, k) == float(gpu.gemm_seconds_v(np.asarray(m), np.asarray(n), np.asarray(k)))


@pytest.mark.parametrize("name", ["h100", "a100"])
@settings(max_examples=60, deadline=None)
@given(flops=st.one_of(st.just(0.0), st.floats(1.0, 1e16)), nbytes=st.one_of(st.just(0.0), st.floats(1.0, 1e12)))
def test_gpu_attention_seconds_fn(name: str, flops: float, nbytes: float) -> None:
    gpu = load_gpu(name)
    assert gpu.attention_seconds_fn()(flops, nbytes) == float(gpu.attention_seconds(flops, nbytes))
