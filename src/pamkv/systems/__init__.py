"""Serving systems: PAM, its ablations and the paper's baselines, each a documented preset.

A system is a :class:`~pamkv.config.systems.SystemConfig` (hardware + policies); the presets live in
``presets/systems/*.yaml`` and ``docs/systems.md`` explains each one.
"""

from __future__ import annotations

from pathlib import Path

from pamkv.config import list_presets, load
from pamkv.config.systems import SystemConfig, TierConfig

PAPER_SYSTEMS = (
    "pam",
    "pam-no-pamattention",
    "pam-no-mapping",
    "pam-no-scheduling",
    "vllm-offload",
    "attacc",
    "l-pim",
    "ls-pim",
)


def load_system(name_or_path: str | Path) -> SystemConfig:
    """A system preset by name or a system YAML file by path."""
    return load(SystemConfig, "systems", name_or_path)


def system_names() -> list[str]:
    """Names of the packaged system presets."""
    return list_presets("systems")


__all__ = ["PAPER_SYSTEMS", "SystemConfig", "TierConfig", "load_system", "system_names"]
