"""Whether the optional ``[hf]`` extra is installed, checked without importing torch."""

from __future__ import annotations

import importlib.util

from pamkv.errors import UserError

HF_MODULES = ("torch", "transformers", "gguf", "accelerate")


def missing_hf_modules() -> list[str]:
    """The modules of the ``pamkv[hf]`` extra that cannot be found (none imported)."""
    return [m for m in HF_MODULES if importlib.util.find_spec(m) is None]


def require_hf(what: str = "this") -> None:
    """Raise a one-line :class:`UserError` naming the ``pamkv[hf]`` extra when part of it is missing."""
    missing = missing_hf_modules()
    if missing:
        raise UserError(f"{what} needs the optional Hugging Face extra (missing: {', '.join(missing)}); "
                        f"install it with: pip install 'pamkv[hf]'")
