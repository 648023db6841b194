"""`pamkv hw`: what the issue says must show."""

from __future__ import annotations

import json

import pytest

from pamkv.cli import main


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


def _json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    code, out, err = _run(capsys, *args, "--json", "-")
    assert code == 0, err
    return json.loads(out)


def test_overview_lists_devices_and_links(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "hw")
    assert code == 0 and "hbm3-pim" in out and "nvlink4" in out
    data = _json(capsys, "hw")
    assert {d["name"] for d in data["devices"]} >= {"hbm3-pim", "ddr4-pim", "ssd-pim", "h100", "a100"}


def test_device_figures(capsys: pytest.CaptureFixture[str]) -> None:
    d = _json(capsys, "hw", "hbm3-pim")
    for key in ("capacity_gb", "peak_external_bandwidth_gbps", "peak_internal_bandwidth_gbps", "peak_flops",
                "energy_pj_per_bit", "cost_usd_per_gb"):
        assert key in d


def test_pattern_stream_attention_gemm(capsys: pytest.CaptureFixture[str]) -> None:
    p = _json(capsys, "hw", "hbm3-6400", "--pattern", "seq", "--mapping", "mop4clxor")
    assert p["bandwidth_gbps"] > 0 and p["latency_ns"] > 0
    s = _json(capsys, "hw", "hbm3-pim", "--stream-bytes", "1000000")
    assert s["seconds"] > 0
    a = _json(capsys, "hw", "hbm3-pim", "--attention-context", "2049", "--attention-heads", "3", "--mapping",
              "attacc", "--power-limit")
    assert a["seconds"] == pytest.approx(3930 * 0.769e-9, rel=0.15)
    g = _json(capsys, "hw", "h100", "--gemm", "4096,57344,8192")
    assert g["seconds"] == pytest.approx(5.67e-3, rel=0.15)


@pytest.mark.parametrize("args", [("hw", "nope"), ("hw", "h100", "--pattern", "seq"),
                                  ("hw", "hbm3-pim", "--gemm", "1,2"), ("hw", "hbm3-6400", "--pattern", "zig"),
                                  ("hw", "hbm3-pim", "--stream-bytes", "1", "--gemm", "1,2,3")])
def test_mistakes_are_one_line_exit_2(capsys: pytest.CaptureFixture[str], args: tuple[str, ...]) -> None:
    code, _, err = _run(capsys, *args)
    assert code == 2
    assert err.startswith("pamkv: error:") and err.count("\n") == 1
