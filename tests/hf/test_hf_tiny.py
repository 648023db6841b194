"""PAM under a small randomly initialised LLaMA: exactness, tiers, migration, selection, padding, recording."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytestmark = pytest.mark.hf
pytest.importorskip("transformers")

import torch  # noqa: E402
from hf_helpers import prompt, small_tiers, tiny_llama  # noqa: E402

from pamkv.attention import Partial  # noqa: E402
from pamkv.integrations.hf import PamCache, register  # noqa: E402
from pamkv.integrations.hf.run import generate, run_model, selection_config  # noqa: E402
from pamkv.integrations.recording import AttentionRecorder, measure_recording  # noqa: E402
from pamkv.workloads.locality import RecordedLocality, load_locality_trace  # noqa: E402

PROMPT, NEW = 300, 64


@pytest.fixture(scope="module")
def model():  # type: ignore[no-untyped-def]
    return tiny_llama()


@pytest.fixture(scope="module")
def reference(model):  # type: ignore[no-untyped-def]
    """The model's own greedy path (default cache, sdpa): 64 new tokens after a 300-token prompt."""
    ids = prompt(PROMPT)
    return ids, generate(model, ids, NEW, ignore_eos=True)


def naive_merge(parts):  # type: ignore[no-untyped-def]
    """A wrong merge: averages the devices' outputs, ignoring how much attention mass each part holds."""
    return Partial(torch.stack([p.out for p in parts]).mean(0), torch.logsumexp(torch.stack([p.lse for p in parts]), 0))


def test_dense_generation_is_token_for_token_the_default_caches(model, reference) -> None:  # type: ignore[no-untyped-def]
    ids, ref = reference
    cache = PamCache(model.config, PROMPT + NEW, options=small_tiers())
    pam = generate(model, ids, NEW, cache=cache, ignore_eos=True)
    assert pam.tokens.shape == (1, NEW)
    assert torch.equal(pam.tokens, ref.tokens)
    assert float((pam.logits - ref.logits).abs().max()) < 1e-4
    rep = cache.report()
    assert rep["decode_steps"] == NEW - 1
    for tier in rep["tiers"]:  # the tiny capacities spread every layer's KV over all three tiers
        assert tier["blocks_held"] > 0 and tier["kv_reads"] > 0, tier
    assert rep["migrations"]["blocks"] > 0
    assert abs(sum(t["attention_mass_share"] for t in rep["tiers"]) - 1) < 1e-4
    # the stores hold the model's real K/V: compare with one plain forward over the same tokens
    full = torch.cat([ids, ref.tokens[:, :-1]], 1)
    with torch.no_grad():
        plain = model(full, use_cache=True)
    for layer in cache.pam_layers:
        layer.store.check()
        assert layer.store.length(0) == PROMPT + NEW - 1
        k, v = layer.gather(torch.float32, torch.device("cpu"))
        assert torch.allclose(k, plain.cache.layers[layer.layer_idx].keys, atol=1e-4)
        assert torch.allclose(v, plain.cache.layers[layer.layer_idx].values, atol=1e-4)


def test_a_wrong_merge_changes_the_tokens(model, reference) -> None:  # type: ignore[no-untyped-def]
    """The equality test can fail: the same run with a merge that drops the lse weights diverges."""
    ids, ref = reference
    cache = PamCache(model.config, PROMPT + NEW, options=small_tiers(), merge=naive_merge)
    pam = generate(model, ids, NEW, cache=cache, ignore_eos=True)
    assert not torch.equal(pam.tokens, ref.tokens)


@pytest.mark.parametrize("method", ["oracle-topk", "double-sparsity"])
def test_sparse_selection_at_full_budget_is_exact(model, reference, method) -> None:  # type: ignore[no-untyped-def]
    ids, ref = reference
    opts = small_tiers(selection=selection_config(method, 1.0))
    pam = generate(model, ids, 16, cache=PamCache(model.config, PROMPT + 16, options=opts), ignore_eos=True)
    assert torch.equal(pam.tokens, ref.tokens[:, :16])


def test_sparse_steps_read_only_the_selected_tokens(model, reference) -> None:  # type: ignore[no-untyped-def]
    ids, _ = reference
    opts = small_tiers(selection=selection_config("oracle-topk", 4.0))
    report, pam, ref, cache = run_model(model, ids, 16, options=opts, forced=True, ignore_eos=True)
    kv_heads = 2
    # decode step j (1..15) sees 300 + j tokens and reads ceil(n/4) per KV head in each of the 2 layers
    want = 2 * sum(kv_heads * math.ceil((PROMPT + j) / 4) for j in range(1, 16))
    assert sum(t["kv_reads"] for t in report["pam"]["tiers"]) == want
    agree = report["agreement"]
    assert agree["reference_tokens"] == agree["pam_tokens"] == 16
    assert 0 <= agree["top1_agreement"] <= 1 and agree["logit_max_abs_error"] >= 0
    forced = report["teacher_forced"]
    assert forced["steps"] == 16 and 0 <= forced["top1_agreement"] <= 1
    assert report["pam"]["score_reads"] > 0


def test_left_padded_batch_matches_the_default_cache(model) -> None:  # type: ignore[no-untyped-def]
    ids = prompt(120, seed=3, batch=2)
    mask = torch.ones_like(ids)
    ids[1, :25] = 0
    mask[1, :25] = 0
    kwargs = dict(attention_mask=mask, max_new_tokens=12, do_sample=False, min_new_tokens=12)
    model.set_attn_implementation("sdpa")
    with torch.no_grad():
        ref = model.generate(ids, **kwargs)
        register()
        model.set_attn_implementation("pamkv")
        cache = PamCache(model.config, 132, batch=2, options=small_tiers())
        pam = model.generate(ids, cache=cache, **kwargs)
    model.set_attn_implementation("sdpa")
    assert torch.equal(pam, ref)


def test_pam_attention_without_pam_cache_and_pam_cache_under_sdpa(model, reference) -> None:  # type: ignore[no-untyped-def]
    ids, ref = reference
    register()
    model.set_attn_implementation("pamkv")  # default DynamicCache: the K/V given form one part
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=8, do_sample=False)
    model.set_attn_implementation("sdpa")  # a PamCache serving sdpa: K/V gathered from the store
    with torch.no_grad():
        out2 = model.generate(ids, max_new_tokens=8, do_sample=False,
                              cache=PamCache(model.config, PROMPT + 8, options=small_tiers()))
    assert torch.equal(out[:, PROMPT:], ref.tokens[:, :8])
    assert torch.equal(out2[:, PROMPT:], ref.tokens[:, :8])


@pytest.mark.parametrize(("heads", "block_tokens"), [("query", 1), ("kv", 4)])
def test_recording_holds_the_true_attention_and_reads_back(model, tmp_path, heads, block_tokens) -> None:  # type: ignore[no-untyped-def]
    ids = prompt(40, seed=5)
    rec = AttentionRecorder(heads=heads, block_tokens=block_tokens, heads_per_kv=2, source="tiny")
    cache = PamCache(model.config, 48, options=small_tiers(), recorder=rec, record_prompt_from=30)
    pam = generate(model, ids, 8, cache=cache, ignore_eos=True)
    path = tmp_path / "rec.npz"
    rec.save(path)
    trace = load_locality_trace(path)
    streams = 4 if heads == "query" else 2
    steps = (40 - 30) + 7  # prompt positions 30..39 teacher-forced, then 7 decode steps (positions 40..46)
    assert len(trace) == steps * 2 * streams
    assert sorted(set(trace.step.tolist())) == list(range(30, 47))
    # the recorded mass is the model's attention: compare with eager attention over the same tokens
    full = torch.cat([ids, pam.tokens[:, :-1]], 1)
    model.set_attn_implementation("eager")
    with torch.no_grad():
        att = model(full, output_attentions=True).attentions
    model.set_attn_implementation("sdpa")
    for r in range(len(trace)):
        layer, s, pos = int(trace.layer[r]), int(trace.kv_head[r]), int(trace.step[r])
        probs = att[layer][0, :, pos, : pos + 1].double().numpy()
        want = probs[s] if heads == "query" else probs.reshape(2, 2, -1).mean(1)[s]
        if block_tokens > 1:
            want = np.add.reduceat(want, np.arange(0, want.size, block_tokens))
        assert int(trace.n_tokens[r]) == pos + 1
        np.testing.assert_allclose(trace.dense(r), want, atol=1e-5)
    result = measure_recording(path)
    assert result["head_kind"] == heads and result["heads_per_kv"] == 2
    figs = result["figures"]
    assert figs["series"] == 2 * streams and figs["records"] == len(trace)  # type: ignore[index]
    assert 0 < figs["top10_mass"] <= 1 and 0 < figs["sink_mass"] < 1  # type: ignore[index]
    replay = RecordedLocality.from_file(path).start(64, np.random.default_rng(0), heads=3, block_tokens=16)
    mass = replay.step(1)
    assert mass.shape == (3, 5) and np.allclose(mass.sum(1), 1)


@pytest.mark.parametrize("arch", ["qwen2", "mistral-sliding-window"])
def test_other_llama_family_architectures(arch) -> None:  # type: ignore[no-untyped-def]
    """Qwen2 (q/k/v biases) and Mistral with a 48-token sliding window (the mask drops old tokens)."""
    from transformers import MistralConfig, MistralForCausalLM, Qwen2Config, Qwen2ForCausalLM

    common = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=1024, initializer_range=0.1)
    torch.manual_seed(0)
    if arch == "qwen2":
        m = Qwen2ForCausalLM(Qwen2Config(**common)).eval()
    else:
        m = MistralForCausalLM(MistralConfig(sliding_window=48, **common)).eval()
    report, _, _, _ = run_model(m, prompt(120), 24, options=small_tiers(), ignore_eos=True)
    assert report["agreement"]["tokens_identical"], report["agreement"]
