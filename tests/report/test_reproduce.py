"""`pamkv reproduce`: the paper's numbers table, the figure reductions, the SLO search, the CLI outputs."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pamkv.config.runs import RunConfig
from pamkv.report import reproduce as rp
from pamkv.report.paper import FIGURES, PAPER_NUMBERS, paper_number, paper_numbers

# Relative speeds of the fake systems: PAM fastest, the ablations between it and LS-PIM.
SPEED = {"pam": 8.0, "pam-no-pamattention": 4.0, "pam-no-mapping": 3.0, "pam-no-scheduling": 2.0,
         "ls-pim": 1.5, "l-pim": 1.0, "vllm-offload": 0.5, "vllm-offload-dense": 0.25, "attacc": 6.0}


def _system(run: RunConfig) -> str:
    name = Path(run.system).stem
    return name.split("-tp")[0]


def fake_run(run: RunConfig) -> dict[str, Any]:
    """Metrics of a made-up machine whose TPOT grows linearly with the batch (no simulation)."""
    system = _system(run)
    speed = SPEED[system]
    assert run.batch is not None
    tpot = 0.002 * run.batch / speed
    oom = system == "attacc" and run.batch > 32
    return {"system": system, "oom": oom, "tpot_s_p50": tpot, "throughput_tokens_per_s": run.batch / tpot / 2,
            "decode_throughput_tokens_per_s": 0.0 if oom else run.batch / tpot,
            "energy_j_per_token": 10.0 / speed, "kv_energy_j_per_token": 4.0 / speed,
            "attention_s_per_token": 1.0 / speed, "device_utilization": {"gpu": 0.5}}


def tiny_plan(quick: bool = True, seed: int = 0) -> rp.Plan:
    return replace(rp.make_plan(quick=True, seed=seed), max_batch=256, online_datasets=("sharegpt", "wildchat"),
                   offline_points=(("llama-3-70b", 16), ("opt-175b", 64)))


# --- the paper's numbers ------------------------------------------------------------------------------
def test_paper_numbers_table_is_complete() -> None:
    assert set(FIGURES) == {"fig9", "fig10", "fig11", "fig12", "fig13"}
    keys = [(p.figure, p.key) for p in PAPER_NUMBERS]
    assert len(keys) == len(set(keys))
    expected = {"fig9": 7, "fig10": 5, "fig11": 3, "fig12": 8, "fig13": 1}
    for fig, count in expected.items():
        numbers = paper_numbers(fig)
        assert len(numbers) == count, fig
        for p in numbers:
            assert p.section.startswith("§7") and p.label and p.unit in ("x", "%")
            assert 0 < p.lo <= p.hi
    # The paper's offline average is the arithmetic mean of its four offline speed-ups.
    four = [paper_number("fig10", k).lo for k in ("llama-3-70b/arxiv-sum", "llama-3-70b/write-doc",
                                                   "opt-175b/arxiv-sum", "opt-175b/write-doc")]
    assert sum(four) / 4 == pytest.approx(paper_number("fig10", "avg").lo, abs=0.01)
    assert paper_number("fig11", "vllm-offload").text() == "53.1-92.7%"
    assert paper_number("fig9", "avg:vllm-offload").text() == "12.88x"


def test_every_paper_number_gets_our_value_on_the_full_plan() -> None:
    plan = replace(rp.make_plan(quick=False), max_batch=512)
    runner = rp.Runner(plan, run=fake_run)
    try:
        figures = rp.reproduce(list(FIGURES), plan, runner=runner)
        data = rp.to_json(figures, plan, runner)
    finally:
        runner.close()
    compared = {(f, c["key"]) for f, fig in data["figures"].items() for c in fig["comparisons"]}
    assert compared == {(p.figure, p.key) for p in PAPER_NUMBERS}
    for fig in figures.values():
        for c in fig.comparisons:
            assert math.isfinite(c.ours_lo) and math.isfinite(c.ours_hi), (fig.name, c.paper.key)
    # The fake's speeds give known answers: PAM/vLLM = 16, PAM over LS-PIM's attention = 8/1.5.
    assert figures["fig10"].comparisons[-1].ours_lo == pytest.approx(16.0)
    fig12 = {c.paper.key: c.ours_lo for c in figures["fig12"].comparisons}
    assert fig12["small:pam/ls-pim"] == pytest.approx(8 / 1.5)
    assert fig12["large:pam/pam-no-scheduling"] == pytest.approx(4.0)
    fig11 = {c.paper.key: (c.ours_lo, c.ours_hi) for c in figures["fig11"].comparisons}
    assert fig11["vllm-offload"] == pytest.approx((100 * (1 - 0.5 / 8),) * 2)
    assert figures["fig10"].checks[0]["holds"]  # the fake AttAcc is OOM above batch 32: 8 of 12 runs
    assert "PAM decode tok/s" in figures["fig13"].checks[0]["detail"]
    # Shared points ran once: fig11 and fig12 reuse fig10's PAM runs.
    assert len(runner.cache) == len({json.dumps(r["run"], sort_keys=True) for r in data["runs"]})


def test_flagging_uses_the_25_percent_rule() -> None:
    p = paper_number("fig9", "avg:vllm-offload")
    assert not rp.Comparison(p, p.lo * 1.2, p.lo * 1.2).flagged
    assert rp.Comparison(p, p.lo * 1.3, p.lo * 1.3).flagged
    assert rp.Comparison(p, p.lo * 0.7, p.lo * 0.7).flagged
    assert rp.Comparison(p, math.inf, math.inf).flagged
    assert not rp.Comparison(p, math.nan, math.nan).flagged
    r = paper_number("fig11", "l-pim")
    assert rp.Comparison(r, r.lo, r.hi * 2).flagged
    assert rp.Comparison(r, r.lo, r.hi).ratio == (1.0, 1.0)


# --- the SLO search -----------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(per_request_ms=st.floats(0.01, 50.0), slos=st.lists(st.sampled_from([20.0, 100.0, 150.0, 200.0]),
                                                              min_size=1, max_size=3, unique=True))
def test_slo_search_finds_the_largest_batch_within_resolution(per_request_ms: float, slos: list[float]) -> None:
    plan = replace(rp.make_plan(quick=True), slos_ms=tuple(sorted(slos)), max_batch=1024, slo_resolution=8)
    calls: list[int] = []

    def linear(run: RunConfig) -> dict[str, Any]:
        assert run.batch is not None
        calls.append(run.batch)
        return {"oom": False, "tpot_s_p50": per_request_ms * run.batch / 1e3, "throughput_tokens_per_s": 1.0}

    runner = rp.Runner(plan, run=linear)
    try:
        found = rp.slo_search(runner, "pam", "llama-3-70b", "sharegpt")
    finally:
        runner.close()
    assert len(calls) == len(set(calls))  # every probe simulated once, shared by the SLOs
    for slo in slos:
        batch, metrics = found[slo]
        largest = min(int(slo / per_request_ms + 1e-9), 1024)  # the true answer (tpot = c x batch)
        while largest > 0 and per_request_ms * largest > slo:
            largest -= 1
        assert batch <= largest
        assert (metrics is None) == (batch == 0)
        if metrics is not None:
            assert metrics["tpot_s_p50"] <= slo / 1e3
        if largest >= 1:
            assert batch >= largest - max(1, largest // 8)


# --- the command -------------------------------------------------------------------------------------
def test_cli_writes_json_html_and_png(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real (tiny) fig13: three TP/PP variants of PAM and L-PIM, two requests each."""
    from pamkv.cli import main

    original = rp.make_plan

    def plan(quick: bool = False, seed: int = 0) -> rp.Plan:
        return replace(original(quick=True, seed=seed), scaling=("llama-3-70b", "humaneval", 2, 2))

    monkeypatch.setattr(rp, "make_plan", plan)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        main(["reproduce", "fig13", "--quick", "--out", str(out), "--json", str(tmp_path / "r.json"), "--seed", "1"])
    assert exit_info.value.code == 0
    html = (out / "reproduce.html").read_text()
    assert "fig13" in html and "data:image/png;base64" in html and "6.03-16.96x" in html
    assert (out / "fig13.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (out / "report.html").exists() and not list(out.glob(".reproduce-*"))
    data = json.loads((tmp_path / "r.json").read_text())
    assert data == json.loads((out / "reproduce.json").read_text())
    fig = data["figures"]["fig13"]
    assert [c["key"] for c in fig["comparisons"]] == ["l-pim"]
    assert 0 < fig["comparisons"][0]["ours_lo"] <= fig["comparisons"][0]["ours_hi"]
    assert [r[0] for r in fig["rows"]] == ["TP8 x PP1", "TP4 x PP2", "TP2 x PP4"]
    assert len(data["runs"]) == 6
    assert all(r["tokens_lost"] == 0 and r["run"]["seed"] == 1 and r["run"]["requests"] == 2 for r in data["runs"])
    assert {r["system"] for r in data["runs"]} == {f"{s}-tp{t}pp{p}" for s in ("pam", "l-pim")
                                                   for t, p in ((8, 1), (4, 2), (2, 4))}


def test_cli_rejects_an_unknown_figure(capsys: pytest.CaptureFixture[str]) -> None:
    from pamkv.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["reproduce", "fig7", "--quick"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "pamkv: error: unknown figure 'fig7' (choose from fig9, fig10, fig11, fig12, fig13)"]


def test_attention_time_and_kv_energy_are_consistent_on_a_real_run() -> None:
    """The derived figures obey their definitions on a real run (tiny: 2 requests)."""
    m = rp.run_point(RunConfig(system="pam", model="opt-175b", workload="humaneval", batch=2, requests=2))
    makespan, util = m["makespan_s"], m["device_utilization"]
    assert m["attention_s"] == pytest.approx(makespan * (1 - util["gpu"]))
    assert 0 < m["attention_s"] < m["decode_s"]
    assert 0 < m["prefill_energy_j"] < m["energy_j"]
    assert 0 < m["kv_energy_j"] < m["energy_j"] - m["prefill_energy_j"]
    assert m["kv_energy_j_per_token"] == pytest.approx(m["kv_energy_j"] / m["output_tokens"])


def test_same_seed_same_numbers_and_seed_matters() -> None:
    run = RunConfig(system="pam", model="llama-3-70b", workload="humaneval", batch=3, requests=3, seed=4)
    keys = ("decode_throughput_tokens_per_s", "attention_s", "kv_energy_j", "energy_j", "tpot_s_p50")
    a, b = rp.run_point(run), rp.run_point(run)
    assert [a[k] for k in keys] == [b[k] for k in keys]
    c = rp.run_point(run.model_copy(update={"seed": 5}))
    assert [a[k] for k in keys] != [c[k] for k in keys]


def test_cli_rejects_a_file_as_out_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pamkv.cli import main

    target = tmp_path / "taken"
    target.write_text("x")
    with pytest.raises(SystemExit) as exit_info:
        main(["reproduce", "fig13", "--quick", "--out", str(target)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pamkv: error: --out ") and "not a folder" in err[0]
