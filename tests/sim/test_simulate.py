"""End-to-end simulation: the CLI contract, determinism, the two modes, and physical sanity."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from pamkv.config.runs import RunConfig
from pamkv.model import kv_bytes_per_token_per_layer, load_model
from pamkv.sim import CONTRACT_METRICS, simulate
from pamkv.sim.build import assemble, load_system
from pamkv.sim.result import Result


def test_cli_contract_and_determinism(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    args = ["simulate", "--system", "pam", "--model", "llama-3-70b", "--workload", "azure-conv",
            "--requests", "300", "--seed", "7"]
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    for out in (a, b):
        proc = cli(*args, "--json", str(out))
        assert proc.returncode == 0, proc.stderr
    ma, mb = json.loads(a.read_text()), json.loads(b.read_text())
    assert set(CONTRACT_METRICS) <= set(ma)
    assert ma["tokens_lost"] == 0
    assert ma["requests_completed"] == 300
    ma.pop("sim_wall_s")
    mb.pop("sim_wall_s")
    assert ma == mb
    assert set(ma["device_utilization"]) == {"gpu", "hbm", "ddr", "ssd"}


def test_python_api_matches_the_contract() -> None:
    result = simulate({"system": "pam", "model": "llama-3-70b", "workload": "azure-conv", "requests": 40, "seed": 3})
    m = result.metrics
    assert set(CONTRACT_METRICS) <= set(m)
    assert m["tokens_lost"] == 0 and m["requests_completed"] == 40
    assert m["ttft_s_p50"] <= m["ttft_s_p99"] and m["tpot_s_p50"] <= m["tpot_s_p99"]
    assert len(result.requests) == 40 and not result.timeline.empty
    assert json.loads(result.to_json())["requests_completed"] == 40


def test_other_seed_other_result() -> None:
    # sharegpt's lengths are drawn from the seed (azure-conv is a fixed trace)
    a = simulate(RunConfig(workload="sharegpt", requests=40, seed=1)).metrics
    b = simulate(RunConfig(workload="sharegpt", requests=40, seed=2)).metrics
    assert a["e2e_s_p50"] != b["e2e_s_p50"]


def test_offline_batch_keeps_the_batch_full() -> None:
    m = simulate(RunConfig(system="pam", workload="arxiv-sum", batch=32, requests=64)).metrics
    assert m["mode"] == "offline" and m["requests_completed"] == 64
    assert m["decode_throughput_tokens_per_s"] > m["throughput_tokens_per_s"] > 0


def test_online_slo_search_reports_the_largest_batch() -> None:
    m = simulate(RunConfig(system="pam", workload="sharegpt", requests=64, slo_tpot_ms=100)).metrics
    assert m["slo_met"] and m["max_batch_within_slo"] >= 1
    assert m["tpot_s_p50"] <= 0.100


def test_attacc_runs_out_of_memory_offline() -> None:
    m = simulate(RunConfig(system="attacc", workload="arxiv-sum", batch=1024, requests=1024)).metrics
    assert m["oom"] is True and m["throughput_tokens_per_s"] == 0.0


def test_store_invariants_hold_after_a_run() -> None:
    a = assemble(RunConfig(system="pam", workload="azure-conv", requests=60, seed=5))
    a.engine.run()
    a.kv.store.check()
    assert a.kv.tokens_lost() == 0


def test_attention_never_beats_peak_bandwidth() -> None:
    """Every tier's busy time is at least the bytes it reads over its devices' peak internal bandwidth."""
    a = assemble(RunConfig(system="pam", workload="arxiv-sum", batch=8, requests=8))
    p = a.pricer
    model = load_model("llama-3-70b")
    token_bytes = kv_bytes_per_token_per_layer(model)
    for t, tier in enumerate(p.tiers):
        reads = np.zeros((1, len(p.tiers)))
        reads[0, t] = 200_000.0
        _, busy, _ = p.decode(8, reads, reads.sum(axis=1))
        per_stage = reads[0, t] / p.opts.pp
        bound = model.layers * per_stage * token_bytes / (p.devices_per_stage[t] * tier.device.internal_bandwidth())
        assert busy[0, 1 + t] >= bound * 0.999, tier.name


def test_gains_are_small_when_kv_fits_in_hbm() -> None:
    run = {"model": "llama-3-70b", "workload": "arxiv-sum", "batch": 32, "requests": 32}
    pam = simulate(RunConfig(system="pam", **run)).metrics
    vllm = simulate(RunConfig(system="vllm-offload", **run)).metrics
    assert pam["device_utilization"]["ddr"] == 0.0 and pam["device_utilization"]["ssd"] == 0.0
    ratio = pam["decode_throughput_tokens_per_s"] / vllm["decode_throughput_tokens_per_s"]
    assert 0.9 < ratio < 1.5


def test_l_pim_puts_most_kv_and_attention_time_in_the_lowest_tier() -> None:
    """PAPER.md §3: in L-PIM the SSD holds most KV and takes most of the attention time."""
    r = simulate(RunConfig(system="l-pim", model="opt-175b", workload="arxiv-sum", batch=128, requests=128))
    occ = r.timeline[[c for c in r.timeline.columns if c.startswith("occupancy_")]].to_numpy(dtype=float)
    peak = occ[occ.sum(axis=1).argmax()]
    assert peak[2] / peak.sum() > 0.4  # the SSD holds the largest share at the peak
    util = r.metrics["device_utilization"]
    assert util["ssd"] > util["ddr"] > 0 and util["ssd"] > util["hbm"]


def _per_step_and_default(tmp_path: Path, run: dict[str, Any]) -> tuple[Result, Result]:
    """The same run with a window after every step (exact) and with the default windows."""
    pam = load_system("pam")
    exact = tmp_path / "pam-every-step.yaml"
    exact.write_text(yaml.safe_dump(pam.model_copy(update={"schedule_every": 1, "idle_window_factor": 1}).model_dump()))
    return simulate(RunConfig(system=str(exact), **run)), simulate(RunConfig(system="pam", **run))


@pytest.mark.parametrize("run", [
    dict(workload="arxiv-sum", batch=16, requests=32),  # every block stays in HBM
    dict(workload="arxiv-sum", model="opt-175b", batch=32, requests=32, max_sim_s=45.0),  # spills to DDR
])
def test_aggregated_windows_agree_with_per_step_scheduling(tmp_path: Path, run: dict[str, Any]) -> None:
    """Sampling accesses and scheduling in windows instead of every step barely moves the answer."""
    exact, agg = _per_step_and_default(tmp_path, run)
    assert (exact.timeline["occupancy_ddr"].max() > 0) == ("model" in run)
    for name in ("decode_throughput_tokens_per_s", "tpot_s_p50", "energy_j_per_token"):
        assert agg.metrics[name] == pytest.approx(exact.metrics[name], rel=0.03), name


def test_a_request_that_can_never_fit_is_an_error(cli) -> None:  # type: ignore[no-untyped-def]
    proc = cli("simulate", "--system", "attacc", "--model", "opt-175b", "--workload", "mooncake-conv",
               "--requests", "2000")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "can never fit" in proc.stderr
