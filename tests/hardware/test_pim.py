"""DRAM-PIM attention: AttAcc's reference runs, and first principles as properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pamkv.errors import UserError
from pamkv.hardware import UnitLoad, load_device
from pamkv.hardware.pim import PimDevice


def _pim(name: str = "hbm3-pim") -> PimDevice:
    dev = load_device(name)
    assert isinstance(dev, PimDevice)
    return dev


@pytest.mark.parametrize(("power_limit", "cycles"), [(True, 3930), (False, 2934)])
def test_attacc_mapping_within_fifteen_percent_of_attacc(power_limit: bool, cycles: int) -> None:
    dev = _pim()
    step = dev.attention_step(2049, 3, 128, "attacc", power_limit)
    assert step.seconds == pytest.approx(cycles * 0.769e-9, rel=0.15)
    assert dev.attacc_cycles(2049, 3, 128, power_limit) == pytest.approx(cycles, rel=0.15)


def test_attacc_rounds_and_power_limit() -> None:
    dev = _pim()
    one = dev.attacc_cycles(2049, 16)
    assert dev.attacc_cycles(2049, 3) == one  # one round: one head per channel, 16 in flight
    assert dev.attacc_cycles(2049, 17) > one
    assert dev.attacc_cycles(2049, 32, power_limit=True) > dev.attacc_cycles(2049, 32)


def test_pam_spreads_a_head_over_the_stack_and_beats_attacc_for_few_heads() -> None:
    dev = _pim()
    assert dev.attention_step(2049, 3, mapping="pam").seconds < dev.attention_step(2049, 3, mapping="attacc").seconds


@settings(max_examples=30, deadline=None)
@given(tokens=st.floats(1, 2e6), extra=st.floats(0, 1e6), name=st.sampled_from(["hbm3-pim", "ddr4-pim"]),
       group=st.sampled_from([1, 4, 8]), coarse=st.booleans())
def test_more_tokens_never_faster(tokens: float, extra: float, name: str, group: int, coarse: bool) -> None:
    dev = _pim(name)
    a, b = dev.attention_seconds(np.array([tokens, tokens + extra]), 4096.0, coarse=coarse, group=group)
    assert b >= a * (1 - 1e-12)


@settings(max_examples=30, deadline=None)
@given(tokens=st.integers(1, 3_000_000), name=st.sampled_from(["hbm3-pim", "ddr4-pim"]),
       power_limit=st.booleans())
def test_never_faster_than_bytes_over_internal_bandwidth(tokens: int, name: str, power_limit: bool) -> None:
    dev = _pim(name)
    t = float(dev.attention_seconds(float(tokens), 512.0, power_limit=power_limit))
    assert t >= tokens * 512.0 / dev.internal_bandwidth(power_limit) * (1 - 1e-9)
    step = dev.price(dev.even_load(tokens, 512.0), power_limit)
    assert step.seconds >= tokens * 512.0 / dev.internal_bandwidth(power_limit) * (1 - 1e-9)


@settings(max_examples=20, deadline=None)
@given(tokens=st.integers(10_000, 400_000), share=st.integers(1, 8))
def test_more_banks_never_slower(tokens: int, share: int) -> None:
    """The same tokens on fewer bank groups (a load concentrated on 1/share of them) take longer."""
    dev = _pim()
    lay = dev.layout
    spread = dev.even_load(tokens, 512.0)
    active = lay.units // share
    t = np.zeros((lay.units, lay.banks_per_unit), dtype=np.int64)
    per = tokens // (active * lay.banks_per_unit)
    t[:active] = per
    t[0, 0] += tokens - per * active * lay.banks_per_unit
    rows = np.ceil(t * 512.0 / dev.pu_row_bytes).astype(np.int64)
    packed = UnitLoad(t, rows, 512.0)
    assert dev.price(packed).seconds >= dev.price(spread).seconds * (1 - 1e-9)


def test_unitload_and_even_formula_agree() -> None:
    dev = _pim()
    for tokens in (10_000, 250_000, 2_000_000):
        a = dev.price(dev.even_load(tokens, 4096.0, queries=64, group=8)).seconds
        b = float(dev.attention_seconds(float(tokens), 4096.0, queries=64, group=8))
        assert a == pytest.approx(b, rel=0.1)


def test_gqa_and_power_limit_cost_time() -> None:
    dev = _pim()
    base = float(dev.attention_seconds(1e5, 512.0))
    assert float(dev.attention_seconds(1e5, 512.0, group=8)) > base
    assert float(dev.attention_seconds(1e5, 512.0, power_limit=True)) > base


def test_stream_seconds_in_place_beats_the_external_bus() -> None:
    dev = _pim()
    t = float(dev.stream_seconds(1e9))
    assert 1e9 / t > dev.spec.peak_bandwidth  # in-place bandwidth exceeds the pins
    assert 1e9 / t <= dev.internal_bandwidth()
    assert float(dev.stream_seconds(0.0)) == 0.0


def test_wrong_load_shape_is_a_user_error() -> None:
    dev = _pim()
    with pytest.raises(UserError, match="load has shape"):
        dev.price(UnitLoad(np.zeros((3, 4)), np.zeros((3, 4)), 512.0))


def test_energy_in_place_below_reading_out() -> None:
    dev = _pim()
    assert float(dev.energy_j(1e5, 4096.0, computed=True)) > 0
    assert dev.inplace_pj_per_bit() < dev.external_pj_per_bit()
    # PAM §5.2: PU power = 3x a normal read
    e = dev.cfg.energy
    assert dev.inplace_pj_per_bit() == pytest.approx(4 * (e.act_pj_per_bit + e.cell_read_pj_per_bit))


def test_ddr4_pim_internal_rate_is_the_papers_204_gflops() -> None:
    dev = _pim("ddr4-pim")
    assert dev.peak_flops(True) == pytest.approx(204e9, rel=0.01)
