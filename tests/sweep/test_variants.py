"""System variants: overrides land where they name, are validated, and round-trip through YAML."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from pamkv.config import load
from pamkv.config.systems import SystemConfig
from pamkv.sweep import OverrideError, derive_system, system_yaml
from pamkv.sweep.variants import parse_system_key


def _pam() -> SystemConfig:
    return load(SystemConfig, "systems", "pam")


def test_overrides_change_only_what_they_name() -> None:
    base = _pam()
    variant = derive_system(base, {"system.tp": 2, "system.pp": 4, "system.tiers.ddr.count": 20,
                                   "system.tiers.2.links": 4})
    assert (variant.tp, variant.pp) == (2, 4)
    assert variant.tiers[1].count == 20 and variant.tiers[2].links == 4
    assert variant.name == "pam[tp=2, pp=4, tiers.ddr.count=20, tiers.2.links=4]"
    untouched = {"name", "description", "tp", "pp", "tiers"}
    assert variant.model_dump(exclude=untouched) == base.model_dump(exclude=untouched)
    assert [t.model_dump(exclude={"count", "links"}) for t in variant.tiers] == [
        t.model_dump(exclude={"count", "links"}) for t in base.tiers]
    assert base.tp == 4 and base.tiers[1].count == 40  # the preset itself is unchanged


def test_invalid_variant_names_the_key() -> None:
    with pytest.raises(OverrideError) as info:
        derive_system(_pam(), {"system.tiers.ssd.count": 0})
    assert info.value.key == "system.tiers.ssd.count" and "greater than 0" in info.value.message
    with pytest.raises(OverrideError) as info:
        derive_system(_pam(), {"system.target_x": 2.0, "system.tp": 3})
    assert info.value.key == "system.target_x"  # a whole-system check blames the first key
    assert "tp x pp must equal gpus" in info.value.message


@pytest.mark.parametrize("key", ["system.", "system.tp.x", "system.tiers.1", "system.tiers.1.count.x", "system.foo"])
def test_bad_keys(key: str) -> None:
    with pytest.raises(OverrideError):
        parse_system_key(key)


@settings(max_examples=10, deadline=None)
@given(ratio=st.floats(1.0, 64.0), count=st.integers(1, 64), x=st.one_of(st.none(), st.floats(0.1, 100.0)))
def test_yaml_round_trip(tmp_path_factory: pytest.TempPathFactory, ratio: float, count: int,
                         x: float | None) -> None:
    variant = derive_system(_pam(), {"system.sparsity_ratio": ratio, "system.tiers.hbm.count": count,
                                     "system.target_x": x})
    path: Path = tmp_path_factory.mktemp("sys") / "variant.yaml"
    path.write_text(system_yaml(variant, "a header\nof two lines"))
    assert load(SystemConfig, "systems", path) == variant
    assert yaml.safe_load(path.read_text())["tiers"][0]["count"] == count
