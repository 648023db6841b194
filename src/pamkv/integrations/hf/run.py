"""One PAM run of a real model: reference generation, PAM generation, agreement, per-tier report.

The reference is the model's own path (transformers' default cache and ``sdpa`` attention). The PAM
run is ``model.generate`` with a :class:`~pamkv.integrations.hf.cache.PamCache` and the ``pamkv``
attention. Dense PAM must give the reference's tokens, token for token; sparse PAM (Double Sparsity
with labels calibrated on the prompt, or oracle top-k) is compared with it: identical tokens, first
divergence, and the logit error over the steps whose prefixes still agree.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from pamkv.attention import SelectionConfig, merge_to_partial
from pamkv.errors import UserError
from pamkv.integrations.hf.attention import register
from pamkv.integrations.hf.cache import ATTN_NAME, MergeFn, PamCache
from pamkv.integrations.hf.config import PamHFConfig
from pamkv.integrations.recording import AttentionRecorder

SPARSE_METHODS = {"none": "dense", "double-sparsity": "double-sparsity", "oracle-topk": "oracle"}
"""CLI names of the selection methods -> :class:`~pamkv.attention.SelectionConfig` methods."""


@dataclass
class Generation:
    """New tokens ``[batch, steps]``, the logits of each step ``[steps, batch, vocab]``, wall time (s)."""

    tokens: torch.Tensor
    logits: torch.Tensor
    seconds: float


def selection_config(sparse: str, ratio: float, base: SelectionConfig | None = None) -> SelectionConfig:
    """The selection for ``--sparse`` and ``--ratio`` (keep 1/ratio of the tokens), over ``base``'s other fields."""
    if sparse not in SPARSE_METHODS:
        raise UserError(f"--sparse: expected one of {', '.join(SPARSE_METHODS)}, got '{sparse}'")
    if not ratio >= 1:
        raise UserError(f"--ratio: keep 1/RATIO of the tokens, RATIO >= 1; got {ratio}")
    fields = (base or SelectionConfig(method="dense")).model_dump()
    fields.update(method=SPARSE_METHODS[sparse], ratio=1.0 / ratio)
    return SelectionConfig(**fields)


def encode_prompt(tokenizer: Any, prompt: str, chat: bool = False) -> torch.Tensor:
    """Token ids ``[1, T]`` of ``prompt`` (wrapped in the tokenizer's chat template if ``chat``)."""
    if tokenizer is None:
        raise UserError("this model has no tokenizer; it cannot encode a text prompt")
    if not prompt:
        raise UserError("--prompt: the prompt is empty")
    if chat:
        ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                            return_tensors="pt", return_dict=True)["input_ids"]
    else:
        ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    return torch.as_tensor(ids, dtype=torch.long).reshape(1, -1)


def generate(model: Any, input_ids: torch.Tensor, max_new_tokens: int, *, cache: PamCache | None = None,
             temperature: float = 0.0, seed: int = 0, ignore_eos: bool = False) -> Generation:
    """``model.generate`` greedy (or sampled at ``temperature`` with ``seed``); PAM when ``cache`` is given."""
    impl = ATTN_NAME if cache is not None else "sdpa"
    if cache is not None:
        register()
    model.set_attn_implementation(impl)
    kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens, "return_dict_in_generate": True,
                              "output_logits": True, "attention_mask": torch.ones_like(input_ids)}
    if temperature > 0:
        kwargs.update(do_sample=True, temperature=temperature, top_k=0, top_p=1.0)
    else:
        kwargs.update(do_sample=False, temperature=None, top_k=None, top_p=None)
    gen_cfg = model.generation_config
    if gen_cfg.pad_token_id is None:
        kwargs["pad_token_id"] = gen_cfg.eos_token_id if gen_cfg.eos_token_id is not None else 0
    if ignore_eos:
        kwargs["eos_token_id"] = None
        kwargs["min_new_tokens"] = max_new_tokens
    if cache is not None:
        kwargs["cache"] = cache
    torch.manual_seed(seed)
    start = time.perf_counter()
    with torch.no_grad():
        out = model.generate(input_ids, **kwargs)
    seconds = time.perf_counter() - start
    tokens = out.sequences[:, input_ids.shape[1]:]
    logits = torch.stack(out.logits).float() if out.logits else torch.zeros(0, *tokens.shape[:1], 0)
    return Generation(tokens, logits, seconds)


def agreement(ref: Generation, pam: Generation) -> dict[str, Any]:
    """Tokens identical?, first diverging step, and logit error over the steps with equal prefixes."""
    a, b = ref.tokens[0], pam.tokens[0]
    n = min(a.numel(), b.numel())
    diff = np.flatnonzero((a[:n] != b[:n]).numpy())
    first = int(diff[0]) if diff.size else None
    identical = first is None and a.numel() == b.numel()
    steps = n if first is None else first + 1  # step `first` still had equal prefixes
    la, lb = ref.logits[:steps, 0].double(), pam.logits[:steps, 0].double()
    err = (la - lb).abs()
    norm = float(torch.linalg.vector_norm(la))
    return {
        "tokens_identical": identical,
        "first_divergence": first,
        "matching_prefix_tokens": n if first is None else first,
        "reference_tokens": int(a.numel()),
        "pam_tokens": int(b.numel()),
        "compared_steps": steps,
        "logit_max_abs_error": float(err.max()) if err.numel() else 0.0,
        "logit_mean_abs_error": float(err.mean()) if err.numel() else 0.0,
        "logit_rel_l2_error": float(torch.linalg.vector_norm(la - lb)) / norm if norm > 0 else 0.0,
        "top1_agreement": float((la.argmax(-1) == lb.argmax(-1)).double().mean()) if steps else 1.0,
    }


def teacher_forced(model: Any, input_ids: torch.Tensor, ref: Generation, options: PamHFConfig) -> dict[str, Any]:
    """Feed the reference's tokens through a fresh PAM cache and compare every step's logits with it.

    Unlike free-running generation, the prefixes never diverge, so every step is comparable:
    ``top1_agreement`` is the share of steps where PAM would have picked the reference's token.
    """
    steps = int(ref.tokens.shape[1])
    register()
    model.set_attn_implementation(ATTN_NAME)
    cache = PamCache(model.config, input_ids.shape[1] + steps, batch=int(input_ids.shape[0]), options=options)
    logits = []
    start = time.perf_counter()
    with torch.no_grad():
        out = model(input_ids, cache=cache, use_cache=True)
        logits.append(out.logits[:, -1].float())
        for s in range(steps - 1):
            out = model(ref.tokens[:, s:s + 1], cache=cache, use_cache=True)
            logits.append(out.logits[:, -1].float())
    seconds = time.perf_counter() - start
    model.set_attn_implementation("sdpa")
    la, lb = ref.logits[:steps, 0].double(), torch.stack(logits)[:, 0].double()
    norm = float(torch.linalg.vector_norm(la))
    return {
        "steps": steps,
        "top1_agreement": float((la.argmax(-1) == lb.argmax(-1)).double().mean()),
        "logit_max_abs_error": float((la - lb).abs().max()),
        "logit_rel_l2_error": float(torch.linalg.vector_norm(la - lb)) / norm if norm > 0 else 0.0,
        "seconds": seconds,
    }


def run_model(
    model: Any, input_ids: torch.Tensor, max_new_tokens: int, *, options: PamHFConfig | None = None,
    recorder: AttentionRecorder | None = None, record_prompt_from: int | None = None, reference: bool = True,
    forced: bool = False, temperature: float = 0.0, seed: int = 0, ignore_eos: bool = False,
    merge: MergeFn = merge_to_partial,
) -> tuple[dict[str, Any], Generation, Generation | None, PamCache]:
    """Reference run (optional) and PAM run of ``model`` on ``input_ids [1, T]``; returns the report.

    Returns ``(report, pam_generation, reference_generation, cache)``. The report holds the agreement
    with the reference (if run; with ``forced`` also along the reference's tokens, see
    :func:`teacher_forced`), the PAM cache's per-tier report and timings.
    """
    if max_new_tokens < 1:
        raise UserError(f"--max-new-tokens must be >= 1, got {max_new_tokens}")
    opts = options if options is not None else PamHFConfig()
    ref = generate(model, input_ids, max_new_tokens, temperature=temperature, seed=seed,
                   ignore_eos=ignore_eos) if reference else None
    cache = PamCache(model.config, input_ids.shape[1] + max_new_tokens, batch=int(input_ids.shape[0]),
                     options=opts, recorder=recorder, record_prompt_from=record_prompt_from, merge=merge)
    pam = generate(model, input_ids, max_new_tokens, cache=cache, temperature=temperature, seed=seed,
                   ignore_eos=ignore_eos)
    model.set_attn_implementation("sdpa")
    report: dict[str, Any] = {
        "prompt_tokens": int(input_ids.shape[1]),
        "new_tokens": int(pam.tokens.shape[1]),
        "selection": {"method": opts.selection.method,
                      "ratio": opts.selection.ratio if opts.selection.method != "dense" else None,
                      "budget": opts.selection.budget},
        "sampling": {"temperature": temperature, "seed": seed},
        "agreement": agreement(ref, pam) if ref is not None else None,
        "teacher_forced": teacher_forced(model, input_ids, ref, opts) if ref is not None and forced else None,
        "pam": cache.report(),
        "seconds": {"reference": ref.seconds if ref is not None else None, "pam": pam.seconds},
    }
    return report, pam, ref, cache
