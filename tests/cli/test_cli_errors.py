"""A user mistake is one line on stderr and exit code 2 — never a traceback."""

from __future__ import annotations

import json
from pathlib import Path


def _one_line_error(proc) -> str:  # type: ignore[no-untyped-def]
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_help_lists_commands(cli) -> None:
    proc = cli("--help")
    assert proc.returncode == 0
    assert "models" in proc.stdout


def test_models_json_contract(tmp_path: Path, cli) -> None:
    out = tmp_path / "models.json"
    proc = cli("models", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(out.read_text())
    names = {r["name"] for r in rows}
    assert {"llama-3-70b", "opt-175b", "qwen2.5-32b"} <= names
    for r in rows:
        assert {"name", "layers", "kv_heads", "head_dim", "kv_bytes_per_token"} <= set(r)


def test_unknown_preset(cli) -> None:
    line = _one_line_error(cli("models", "no-such-model"))
    assert "no-such-model" in line


def test_malformed_yaml_names_file_and_line(tmp_path: Path, cli) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nlayers: [1, 2\n")
    line = _one_line_error(cli("models", str(bad)))
    assert "bad.yaml" in line and "line" in line


def test_negative_value_names_field_and_line(tmp_path: Path, cli) -> None:
    bad = tmp_path / "neg.yaml"
    bad.write_text(
        "name: x\nfamily: llama\nlayers: -3\nhidden: 64\nheads: 4\nkv_heads: 2\nhead_dim: 16\n"
        "ffn_hidden: 128\ngated_mlp: true\nvocab: 100\nmax_context: 128\nsource: test\n"
    )
    line = _one_line_error(cli("models", str(bad)))
    assert "layers" in line and "line 3" in line and "neg.yaml" in line


def test_unknown_field_is_refused(tmp_path: Path, cli) -> None:
    bad = tmp_path / "extra.yaml"
    bad.write_text("name: x\nfamily: llama\nlayerz: 3\n")
    line = _one_line_error(cli("models", str(bad)))
    assert "layerz" in line


def test_unwritable_json_path(cli) -> None:
    line = _one_line_error(cli("models", "--json", "/proc/definitely/not/here.json"))
    assert "cannot write" in line


def test_unknown_option(cli) -> None:
    _one_line_error(cli("models", "--no-such-flag"))
