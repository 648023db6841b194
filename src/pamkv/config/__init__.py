"""Configs: pydantic schemas and their YAML presets (models, devices, systems, workloads)."""

from pamkv.config.loader import list_presets, load, preset_dir, read_yaml, validate

__all__ = ["list_presets", "load", "preset_dir", "read_yaml", "validate"]
