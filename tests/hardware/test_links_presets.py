"""Links, and the presets themselves: every one loads, every value cites a source."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pamkv.config.devices import load_device_config, load_link_config
from pamkv.config.loader import preset_dir
from pamkv.errors import UserError
from pamkv.hardware import device_summary, list_devices, list_links, load_device, load_link

REQUIRED_DEVICES = {"hbm3-pim", "ddr4-pim", "ssd-pim", "h100", "a100", "hbm3-6400", "ddr5-4800", "ddr5-5600",
                    "lpddr5-6400"}
REQUIRED_LINKS = {"nvlink4", "pcie5-x16", "cxl2-x16", "ddr4-channel", "rdma-400g"}


def test_required_presets_exist() -> None:
    assert set(list_devices()) >= REQUIRED_DEVICES
    assert set(list_links()) >= REQUIRED_LINKS


@pytest.mark.parametrize("kind", ["devices", "links"])
def test_every_numeric_value_cites_its_source(kind: str) -> None:
    for path in sorted(preset_dir(kind).glob("*.yaml")):
        lines = path.read_text().splitlines()
        assert lines[0].startswith("#"), f"{path.name}: starts with a comment saying what it is and its source"
        for i, line in enumerate(lines, 1):
            if re.match(r"^\s*[A-Za-z_]+:\s*[-+]?[\d.]", line):
                assert "#" in line, f"{path.name}:{i}: '{line.strip()}' has no source comment"


@pytest.mark.parametrize("name", sorted(REQUIRED_DEVICES))
def test_summary_has_the_headline_figures(name: str) -> None:
    s = device_summary(load_device(name))
    for key in ("capacity_gb", "peak_external_bandwidth_gbps", "peak_internal_bandwidth_gbps", "peak_flops",
                "energy_pj_per_bit", "cost_usd_per_gb"):
        assert key in s and s[key] is not None, key
    assert float(s["capacity_gb"]) > 0  # type: ignore[arg-type]


@settings(max_examples=30, deadline=None)
@given(name=st.sampled_from(sorted(REQUIRED_LINKS)), nbytes=st.floats(1, 1e12), more=st.floats(0, 1e12))
def test_transfer_time_is_latency_plus_bytes_over_bandwidth(name: str, nbytes: float, more: float) -> None:
    link = load_link(name)
    a, b = link.transfer_seconds(np.array([nbytes, nbytes + more]))
    assert a >= nbytes / link.cfg.bandwidth + link.cfg.latency_s - 1e-15
    assert b >= a
    assert float(link.transfer_seconds(0.0)) == 0.0
    assert float(load_link(name, lanes=4).transfer_seconds(nbytes)) <= a


def test_unknown_presets_and_bad_files_are_one_line_errors(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UserError, match="unknown device preset 'nope'"):
        load_device_config("nope")
    with pytest.raises(UserError, match="unknown link preset"):
        load_link_config("nope")
    bad = tmp_path / "dev.yaml"
    bad.write_text("name: x\nkind: gpu\ndescription: y\npeak_flops: -1\n")
    with pytest.raises(UserError, match=r"line 4: field 'peak_flops'"):
        load_device_config(bad)
    bad.write_text("name: x\nkind: tpu\n")
    with pytest.raises(UserError, match="field 'kind'"):
        load_device_config(bad)
