"""Load device and link presets as priced models, and summarise them (what ``pamkv hw`` shows)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from pamkv.config.devices import (
    DramDeviceConfig,
    GpuDeviceConfig,
    SsdDeviceConfig,
    load_device_config,
    load_link_config,
)
from pamkv.config.loader import list_presets
from pamkv.hardware.dram import DramDevice
from pamkv.hardware.gpu import Gpu
from pamkv.hardware.links import Link
from pamkv.hardware.pim import PimDevice
from pamkv.hardware.ssd import SsdDevice

Device = DramDevice | PimDevice | SsdDevice | Gpu


def list_devices() -> list[str]:
    """Names of the packaged device presets."""
    return list_presets("devices")


def list_links() -> list[str]:
    """Names of the packaged link presets."""
    return list_presets("links")


@cache
def _link(name: str) -> Link:
    return Link(load_link_config(name))


def load_link(name_or_path: str | Path, lanes: int = 1) -> Link:
    """A link model from a preset name or a link YAML file (``lanes`` links in parallel)."""
    if lanes == 1 and str(name_or_path) in list_links():
        return _link(str(name_or_path))
    return Link(load_link_config(name_or_path), lanes)


def _build(cfg: DramDeviceConfig | SsdDeviceConfig | GpuDeviceConfig) -> Device:
    if isinstance(cfg, GpuDeviceConfig):
        return Gpu(cfg, load_link(cfg.nvlink))
    if isinstance(cfg, SsdDeviceConfig):
        return SsdDevice(cfg)
    return PimDevice(cfg) if cfg.pim is not None else DramDevice(cfg)


@cache
def _device(name: str) -> Device:
    return _build(load_device_config(name))


def load_device(name_or_path: str | Path) -> Device:
    """A priced device model from a preset name (``pamkv hw`` lists them) or a device YAML file."""
    if str(name_or_path) in list_devices():
        return _device(str(name_or_path))
    return _build(load_device_config(name_or_path))


def device_capacity_bytes(device: Device) -> float:
    """Bytes a device stores (GPU: its HBM)."""
    if isinstance(device, Gpu):
        return device.hbm_bytes
    if isinstance(device, SsdDevice):
        return device.capacity_bytes
    return float(device.spec.capacity_bytes)


def device_summary(device: Device) -> dict[str, object]:
    """Headline figures of a device: capacity, bandwidths, FLOPS, energy per bit, cost per GB.

    ``capacity_gb`` is in the GB vendors state: 2^30 bytes for DRAM and HBM (JEDEC densities are
    binary), 10^9 bytes for flash; ``capacity_bytes`` is exact.
    """
    cfg = device.cfg
    kind = "gpu" if isinstance(device, Gpu) else "ssd-pim" if isinstance(device, SsdDevice) else (
        "dram-pim" if isinstance(device, PimDevice) else "dram")
    out: dict[str, object] = {"name": cfg.name, "kind": kind, "description": cfg.description}
    out.update(device.summary())
    if isinstance(device, SsdDevice):
        out["peak_external_bandwidth_gbps"] = load_link(device.cfg.host_link).cfg.bandwidth / 1e9
        out["energy_pj_per_bit_external"] = device.pj_per_bit() + load_link(device.cfg.host_link).cfg.energy_pj_per_bit
    if isinstance(device, DramDevice | PimDevice):
        energy = device.cfg.energy
        out["energy_source"] = energy.source
    out["energy_pj_per_bit"] = out.get("energy_pj_per_bit_in_place") or out.get("energy_pj_per_bit_external")
    out["capacity_bytes"] = device_capacity_bytes(device)
    out["cost_usd_per_gb"] = cfg.cost.usd_per_gb
    out["cost_source"] = cfg.cost.source
    out["cost_usd"] = device.cost_usd
    return out
