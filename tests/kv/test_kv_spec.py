"""Store specs: capacities in blocks or bytes, layouts, and one-line errors for bad YAML."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from pamkv.config import load
from pamkv.errors import UserError
from pamkv.hardware.layout import DeviceLayout
from pamkv.kv import StoreSpec, TierSpec

GOOD = """\
block_tokens: 16
token_bytes: 4096
layers: 2
tiers:
  - name: hbm
    devices: 2
    capacity_blocks: 8
    layout: {units: 4, banks_per_unit: 4, rows_per_bank: 64, row_bytes: 1024}
  - name: ssd
    capacity_bytes: 1.0e9
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "store.yaml"
    p.write_text(text)
    return p


def test_yaml_spec_loads(tmp_path: Path) -> None:
    spec = load(StoreSpec, "kv", write(tmp_path, GOOD))
    assert spec.capacity_blocks().tolist() == [16, int(1e9 // (16 * 4096 * 2))]
    assert spec.bytes_per_token == 8192
    assert spec.tiers[1].kind == "dram" and spec.lam == 0.6 and spec.window == 10


@pytest.mark.parametrize(
    "edit, field",
    [
        (("capacity_blocks: 8", "capacity_blocks: -8"), "tiers.0.capacity_blocks"),
        (("devices: 2", "devices: 0"), "tiers.0.devices"),
        (("name: hbm", "name: hbm\n    colour: red"), "tiers.0.colour"),
        (("units: 4", "units: four"), "tiers.0.layout.units"),
        (("capacity_bytes: 1.0e9", "capacity_bytes: 1.0e9\n    capacity_blocks: 3"), "tiers.1"),
        (("capacity_blocks: 8", "capacity_blocks: 800"), "tiers.0.capacity_blocks ('hbm'): 800 blocks"),
        (("name: ssd", "name: hbm"), "unique"),
        (("token_bytes: 4096\n", ""), "token_bytes"),
    ],
)
def test_bad_yaml_is_one_line_naming_the_field(tmp_path: Path, edit: tuple[str, str], field: str) -> None:
    path = write(tmp_path, GOOD.replace(*edit))
    with pytest.raises(UserError) as err:
        load(StoreSpec, "kv", path)
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg and field in msg


def test_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="line"):
        load(StoreSpec, "kv", write(tmp_path, "tiers: [\n  - name: a\n"))


def test_capacity_from_layout_and_alignment_loss() -> None:
    layout = DeviceLayout("hbm3", "dram", units=4, banks_per_unit=4, rows_per_bank=100, row_bytes=1024)
    # block = 16 tokens x 300 B -> 4 tokens x 300 B = 1200 B per bank: 2 rows per slot, 50 slots per unit
    spec = StoreSpec(token_bytes=300, tiers=[TierSpec(name="hbm", layout=layout)])  # type: ignore[arg-type]
    assert spec.capacity_blocks().tolist() == [200]
    # the same device by bytes: raw bytes allow 1.6 MB / 4800 B = 341 blocks, the aligned layout only 200
    spec = StoreSpec(token_bytes=300, tiers=[TierSpec(
        name="hbm", capacity_bytes=layout.capacity_bytes, layout=layout)])  # type: ignore[arg-type]
    assert spec.capacity_blocks().tolist() == [200]


def test_payload_sets_token_bytes() -> None:
    spec = StoreSpec(payload=dict(kv_heads=2, head_dim=8, dtype="float16"), layers=3,  # type: ignore[arg-type]
                     tiers=[TierSpec(name="hbm", capacity_blocks=4)])
    assert spec.bytes_per_token == 2 * 2 * 8 * 2 * 3


def test_python_construction_validates_too() -> None:
    with pytest.raises(ValidationError):
        TierSpec(name="hbm", capacity_blocks=0)
    with pytest.raises(ValidationError):
        TierSpec(name="hbm")
