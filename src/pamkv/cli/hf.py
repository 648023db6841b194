"""`pamkv run-model` (PAM under a real Hugging Face model) and `pamkv locality` (figures of a recording)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from pamkv.cli.app import JSON_HELP, SEED_HELP, app
from pamkv.errors import UserError
from pamkv.output import write_json


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:.{digits}f}" if abs(v) >= 10 ** -digits or v == 0 else f"{v:.2e}"
    return str(v)


def _read_prompt(prompt: str | None, prompt_file: str | None) -> str:
    if (prompt is None) == (prompt_file is None):
        raise UserError("give the prompt with exactly one of --prompt TEXT or --prompt-file PATH")
    if prompt_file is not None:
        try:
            return Path(prompt_file).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"{prompt_file}: cannot read the prompt file: {exc}") from None
    return str(prompt)


@app.command("run-model")
def run_model_cmd(
    path: Annotated[str | None, typer.Argument(
        help="A local checkpoint directory or .gguf file (default: the --model-package's GGUF).")] = None,
    model_package: Annotated[str | None, typer.Option(
        "--model-package", help="A pip package shipping weights, found without importing it: smollm2.")] = None,
    prompt: Annotated[str | None, typer.Option("--prompt", help="The prompt text.")] = None,
    prompt_file: Annotated[str | None, typer.Option("--prompt-file", help="Read the prompt from this file.")] = None,
    chat: Annotated[bool, typer.Option("--chat", help="Wrap the prompt in the tokenizer's chat template.")] = False,
    max_prompt_tokens: Annotated[int | None, typer.Option(
        "--max-prompt-tokens", min=1, help="Keep only the first N tokens of the encoded prompt.")] = None,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", min=1, help="Tokens to generate.")] = 32,
    sparse: Annotated[str, typer.Option(
        "--sparse", help="Selection per decode step: none (dense), double-sparsity, oracle-topk.")] = "none",
    ratio: Annotated[float, typer.Option("--ratio", help="Sparse: keep 1/RATIO of the tokens (paper: 8).")] = 8.0,
    config: Annotated[str | None, typer.Option(
        "--config", help="YAML file of PAM options (tiers, placement, selection; see docs/hf.md).")] = None,
    record: Annotated[str | None, typer.Option(
        "--record", help="Write the attention recording (.npz) of every decode step here.")] = None,
    record_heads: Annotated[str, typer.Option(
        "--record-heads", help="Record one stream per KV head (kv) or per query head (query).")] = "kv",
    record_block_tokens: Annotated[int, typer.Option(
        "--record-block-tokens", min=1, help="Record ids of blocks of this many tokens (1 = tokens).")] = 1,
    record_min_mass: Annotated[float, typer.Option(
        "--record-min-mass", min=0.0, help="Leave out entries with less attention mass (smaller files).")] = 0.0,
    record_prompt_from: Annotated[int | None, typer.Option(
        "--record-prompt-from", min=1,
        help="Also record prompt positions >= N as teacher-forced steps.")] = None,
    record_layers: Annotated[str | None, typer.Option(
        "--record-layers", help="Record only layers FIRST:STOP (e.g. 2:).")] = None,
    reference: Annotated[bool, typer.Option(
        "--reference/--no-reference", help="Also run the model's own path and compare.")] = True,
    teacher_forced: Annotated[bool | None, typer.Option(
        "--teacher-forced/--no-teacher-forced",
        help="Also compare along the reference's tokens (default: on when sparse).")] = None,
    temperature: Annotated[float, typer.Option(
        "--temperature", min=0.0, help="0 = greedy; above 0, sample (with --seed).")] = 0.0,
    ignore_eos: Annotated[bool, typer.Option(
        "--ignore-eos", help="Generate all --max-new-tokens even past an end-of-sequence token.")] = False,
    dtype: Annotated[str, typer.Option("--dtype", help="Model dtype: float32, bfloat16, float16.")] = "float32",
    threads: Annotated[int, typer.Option(
        "--threads", min=0, help="torch CPU threads (0 = torch's default; a fixed count gives the same result).")] = 1,
    seed: Annotated[int, typer.Option("--seed", help=SEED_HELP)] = 0,
    json_path: Annotated[str | None, typer.Option("--json", help=JSON_HELP)] = None,
) -> None:
    """Run a local LLaMA-architecture model with its KV in PAM's tiers and attention by PAMattention."""
    from pamkv.integrations.extras import require_hf
    from pamkv.integrations.recording import AttentionRecorder, parse_layer_range

    require_hf("pamkv run-model")
    text = _read_prompt(prompt, prompt_file)
    if record_heads not in ("kv", "query"):
        raise UserError(f"--record-heads: expected kv or query, got '{record_heads}'")
    first, stop = parse_layer_range(record_layers)
    import torch

    from pamkv.config import load
    from pamkv.integrations.hf import PamHFConfig, load_model, resolve_model_path
    from pamkv.integrations.hf.run import encode_prompt, run_model, selection_config

    if threads:
        torch.set_num_threads(threads)
    base = load(PamHFConfig, "hf", config) if config else PamHFConfig()
    options = base.model_copy(update={"selection": selection_config(sparse, ratio, base.selection)})
    model_path = resolve_model_path(path, model_package)
    loaded = load_model(model_path, dtype=dtype)
    ids = encode_prompt(loaded.tokenizer, text, chat)
    if max_prompt_tokens is not None:
        ids = ids[:, :max_prompt_tokens]
    if record_prompt_from is not None and record_prompt_from >= ids.shape[1]:
        raise UserError(f"--record-prompt-from {record_prompt_from}: the prompt has only {ids.shape[1]} tokens")
    recorder = None
    if record is not None:
        info = loaded.describe()
        recorder = AttentionRecorder(
            block_tokens=record_block_tokens, heads=record_heads,  # type: ignore[arg-type]
            min_mass=record_min_mass, heads_per_kv=info["heads"] // info["kv_heads"],
            layers=None if first is None and stop is None else (first or 0, stop if stop is not None else 1 << 30),
            source=f"{model_path.name}; selection {options.selection.method}; prompt {ids.shape[1]} tokens",
        )
    forced = (sparse != "none") if teacher_forced is None else teacher_forced
    report, pam, ref, _ = run_model(
        loaded.model, ids, max_new_tokens, options=options, recorder=recorder, record_prompt_from=record_prompt_from,
        reference=reference, forced=forced and reference, temperature=temperature, seed=seed, ignore_eos=ignore_eos,
    )
    decode = loaded.tokenizer.decode if loaded.tokenizer is not None else (lambda t, **_: str(list(t)))
    report["model"] = loaded.describe()
    report["text"] = decode(pam.tokens[0], skip_special_tokens=True)
    report["reference_text"] = decode(ref.tokens[0], skip_special_tokens=True) if ref is not None else None
    if recorder is not None:
        assert record is not None
        recorder.save(record)
        report["recording"] = {"path": record, "records": len(recorder), "heads": record_heads,
                               "block_tokens": record_block_tokens, "min_mass": record_min_mass}
    if json_path:
        write_json(report, json_path)
        if json_path == "-":
            return
    _print_run(report)


def _print_run(report: dict[str, Any]) -> None:
    console = Console()
    m = report["model"]
    console.print(f"[bold]{Path(m['path']).name}[/bold]: {m['model_type']}, {m['layers']} layers, "
                  f"{m['heads']} heads / {m['kv_heads']} KV heads x {m['head_dim']}, "
                  f"{m['parameters'] / 1e6:.0f}M parameters ({m['loader']})")
    sel = report["selection"]
    kept = f" (keep {sel['ratio']:.3g} of the tokens)" if sel["method"] != "dense" else ""
    console.print(f"prompt {report['prompt_tokens']} tokens, generated {report['new_tokens']}; "
                  f"selection {sel['method']}{kept}")
    agree = report["agreement"]
    if agree is not None:
        t = Table(title="Agreement with the model's own path (default cache, sdpa)")
        t.add_column("figure")
        t.add_column("value", justify="right")
        for k in ("tokens_identical", "first_divergence", "matching_prefix_tokens", "logit_max_abs_error",
                  "logit_rel_l2_error", "top1_agreement"):
            t.add_row(k.replace("_", " "), _fmt(agree[k], 6 if "error" in k else 3))
        forced = report.get("teacher_forced")
        if forced is not None:
            for k in ("top1_agreement", "logit_max_abs_error", "logit_rel_l2_error"):
                t.add_row(f"teacher-forced {k.replace('_', ' ')}", _fmt(forced[k], 4))
        console.print(t)
    pam = report["pam"]
    t = Table(title=f"PAM tiers over {pam['layers']} layers, {pam['decode_steps']} decode steps "
                    f"(placement {pam['placement']})")
    for col in ("tier", "capacity/layer", "blocks held", "tokens held", "KV reads", "read share", "mass share"):
        t.add_column(col, justify="left" if col == "tier" else "right")
    for row in pam["tiers"]:
        t.add_row(row["tier"], _fmt(row["capacity_blocks_per_layer"]), _fmt(row["blocks_held"]),
                  _fmt(row["tokens_held"]), _fmt(row["kv_reads"]), _fmt(row["read_share"]),
                  _fmt(row["attention_mass_share"]))
    console.print(t)
    mig = pam["migrations"]
    console.print(f"migrations: {mig['blocks']:,} blocks, {mig['tokens']:,} tokens, {mig['bytes'] / 1e6:.2f} MB "
                  + ", ".join(f"{k} {v['blocks']}" for k, v in mig["links"].items()))
    secs = report["seconds"]
    console.print(f"time: PAM {secs['pam']:.1f} s" + (f", reference {secs['reference']:.1f} s"
                                                       if secs["reference"] is not None else ""))
    if "recording" in report:
        console.print(f"recording: {report['recording']['records']:,} records -> {report['recording']['path']}")
    console.print(f"[bold]text:[/bold] {report['text']!r}")


@app.command("locality")
def locality_cmd(
    path: Annotated[str, typer.Argument(help="An attention recording (.npz) from `pamkv run-model --record`.")],
    layers: Annotated[str | None, typer.Option(
        "--layers", help="Measure layers FIRST:STOP only (e.g. 2: as reference/locality.md).")] = None,
    seed: Annotated[int, typer.Option("--seed", help=SEED_HELP + " (the measurement draws nothing)")] = 0,
    json_path: Annotated[str | None, typer.Option("--json", help=JSON_HELP)] = None,
) -> None:
    """Context-locality figures of a recording, beside the reference measurements (reference/locality.md)."""
    from pamkv.integrations.recording import measure_recording, parse_layer_range
    from pamkv.workloads.locality import REFERENCE

    if not Path(path).is_file():
        raise UserError(f"{path}: no such file")
    result = measure_recording(path, parse_layer_range(layers))
    result["seed"] = seed
    result["reference"] = REFERENCE
    if json_path:
        write_json(result, json_path)
        if json_path == "-":
            return
    figs = result["figures"]
    span = result["layers"]
    assert isinstance(figs, dict) and isinstance(span, list)
    t = Table(title=f"Context locality of {Path(path).name} (layers {span[0]}-{span[1] - 1}, per "
                    f"{result['head_kind']} head, {int(figs['series'])} streams, "
                    f"mean context {figs['context_tokens_mean']:.0f} tokens)")
    t.add_column("figure")
    for col in ("recording", "ref T2k", "ref G1"):
        t.add_column(col, justify="right")
    for name, value in figs.items():
        if name in ("context_tokens_mean", "steps", "heads", "series", "records", "layers_used"):
            continue
        t.add_row(name, _fmt(value), _fmt(REFERENCE["T2k"].get(name)), _fmt(REFERENCE["G1"].get(name)))
    Console().print(t)
    if result["block_tokens"] != 1:
        Console().print(f"note: ids are blocks of {result['block_tokens']} tokens; the reference is per token")
