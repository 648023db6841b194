"""Configs: pydantic schemas and their YAML presets (models, devices, systems, workloads)."""

from pamkv.config.loader import line_of, list_presets, load, preset_dir, read_yaml, validate

__all__ = ["line_of", "list_presets", "load", "preset_dir", "read_yaml", "validate"]
