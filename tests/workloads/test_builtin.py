"""Built-in workloads: they load as installed, match their published statistics, and are reproducible."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pamkv.config.workloads import ArrivalConfig
from pamkv.errors import UserError
from pamkv.workloads import list_workloads, load_workload, packaged_trace, read_trace
from pamkv.workloads.lengths import clipped_lognormal_mean, fit_lognormal

REQUIRED = {"sharegpt", "wildchat", "humaneval", "arxiv-sum", "write-doc", "azure-conv", "azure-code", "mooncake-conv"}
N = 20_000  # draws for the distribution checks: sampling error of the mean well under 2%


def test_required_presets_exist_and_load() -> None:
    names = set(list_workloads())
    assert names >= REQUIRED | {"sharegpt-real"}
    for name in names:
        t = load_workload(name, requests=50, seed=1)
        s = t.stats()
        assert s["requests"] == 50 and s["arrival_rate_per_s"] > 0
        assert t.input_tokens.min() >= 1 and t.output_tokens.min() >= 0


@pytest.mark.parametrize(("name", "context"), [("sharegpt", 534.0), ("wildchat", 738.0), ("humaneval", 174.0)])
def test_online_workloads_match_the_paper(name: str, context: float) -> None:
    s = load_workload(name, requests=N, seed=0).stats()
    assert s["context_tokens_mean"] == pytest.approx(context, rel=0.02)
    assert s["input_tokens_mean"] / s["context_tokens_mean"] == pytest.approx(183 / 482, rel=0.03)


def test_online_workloads_pool_to_183_299() -> None:
    stats = [load_workload(n, requests=N, seed=5).stats() for n in ("sharegpt", "wildchat", "humaneval")]
    assert np.mean([s["input_tokens_mean"] for s in stats]) == pytest.approx(183, rel=0.02)
    assert np.mean([s["output_tokens_mean"] for s in stats]) == pytest.approx(299, rel=0.02)


@pytest.mark.parametrize("name", ["arxiv-sum", "write-doc"])
def test_offline_workloads_span_the_published_range(name: str) -> None:
    t = load_workload(name, requests=N, seed=0)
    assert t.input_tokens.min() >= 1500 and t.input_tokens.max() <= 8000
    assert t.input_tokens.mean() == pytest.approx(4750, rel=0.02)
    assert t.input_tokens.min() < 1600 and t.input_tokens.max() > 7900


def test_real_tables_and_paper_settings_differ_as_documented() -> None:
    real = load_workload("sharegpt-real").stats()
    assert real["requests"] == 30731 and real["input_tokens_mean"] == pytest.approx(2340, abs=1)
    assert load_workload("sharegpt", requests=N).stats()["input_tokens_mean"] < 250


def test_packaged_traces_equal_the_shared_files(shared: Path) -> None:
    pairs = {
        "azure_conv": "AzureLLMInferenceTrace_conv.csv",
        "azure_code": "AzureLLMInferenceTrace_code.csv",
        "mooncake_conv": "mooncake_conversation_trace.jsonl",
        "sharegpt_lengths": "sharegpt_lengths_llama2_tokenizer.csv",
        "arxiv_lengths": "arxiv_summarization_lengths_llama2_tokenizer.csv",
    }
    for packed, file in pairs.items():
        a, b = packaged_trace(packed), read_trace(shared / "data" / file)
        assert np.array_equal(a.arrival_s, b.arrival_s), packed
        assert np.array_equal(a.input_tokens, b.input_tokens) and np.array_equal(a.output_tokens, b.output_tokens)
        if b.hash_ids is not None:
            assert a.hash_ids is not None and np.array_equal(a.hash_ids, b.hash_ids)


def test_same_seed_same_trace_bit_for_bit() -> None:
    for name in ("sharegpt", "write-doc", "sharegpt-real"):
        a = load_workload(name, requests=300, seed=11, sample=True)
        b = load_workload(name, requests=300, seed=11, sample=True)
        c = load_workload(name, requests=300, seed=12, sample=True)
        assert a.arrival_s.tobytes() == b.arrival_s.tobytes()
        assert a.input_tokens.tobytes() == b.input_tokens.tobytes()
        assert a.input_tokens.tobytes() != c.input_tokens.tobytes()


def test_options_compose() -> None:
    t = load_workload("azure-conv", requests=100, rate_scale=2.0)
    base = load_workload("azure-conv", requests=100)
    assert np.allclose(t.arrival_s, base.arrival_s / 2)
    g = load_workload("azure-code", arrivals=ArrivalConfig(process="gamma", rate_per_s=4.0, cv=3.0), requests=5000)
    assert g.arrivals == "gamma(4/s,cv=3)" and g.stats()["arrival_rate_per_s"] == pytest.approx(4.0, rel=0.15)
    w = load_workload("azure-conv", start_s=600, end_s=1200)
    assert w.arrival_s.max() < 600 and 5.5 * 600 * 0.7 < len(w) < 5.5 * 600 * 1.3
    off = load_workload("arxiv-sum", requests=10, arrivals=ArrivalConfig(process="none"))
    assert off.offline and off.stats()["arrival_rate_per_s"] is None
    with pytest.raises(UserError, match="offline"):
        load_workload("arxiv-sum", requests=10, arrivals=ArrivalConfig(process="none"), rate_scale=2)
    with pytest.raises(UserError, match="unknown workload"):
        load_workload("no-such-workload")


def test_user_workload_yaml_with_relative_trace(tmp_path: Path) -> None:
    (tmp_path / "reqs.csv").write_text("when,in,out\n0.0,100,5\n0.5,200,6\n2.0,300,7\n")
    (tmp_path / "mine.yaml").write_text(
        "name: mine\ndescription: my trace\nsource: test\nmode: online\n"
        "requests:\n  kind: trace\n  path: reqs.csv\n  format: csv\n"
        "  columns: {input: in, output: out, arrival: when}\n"
        "arrivals: {process: trace}\n"
    )
    t = load_workload(tmp_path / "mine.yaml")
    assert t.name == "mine" and t.input_tokens.tolist() == [100, 200, 300]
    (tmp_path / "bad.yaml").write_text(
        "name: bad\ndescription: x\nsource: x\nmode: online\nrequests: {kind: synthetic, input: {dist: lognormal,"
        " mean: 10}, output: {dist: constant, mean: 5}}\narrivals: {process: none}\n"
    )
    with pytest.raises(UserError, match="bad.yaml"):
        load_workload(tmp_path / "bad.yaml")


@settings(max_examples=30, deadline=None)
@given(mean=st.floats(20, 5000), cv=st.floats(0.2, 2.5), hi_factor=st.floats(1.5, 40))
def test_lognormal_fit_hits_the_clipped_mean(mean: float, cv: float, hi_factor: float) -> None:
    hi = mean * hi_factor
    mu, sigma = fit_lognormal(mean, cv, 1.0, hi)
    assert sigma == pytest.approx(np.sqrt(np.log1p(cv * cv)))
    assert clipped_lognormal_mean(mu, sigma, 1.0, hi) == pytest.approx(mean, rel=1e-9)
