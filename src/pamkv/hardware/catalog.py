"""Typed loaders for the simulator: a memory device for a tier, a host GPU, a link.

These wrap :func:`pamkv.hardware.load_device` with the kind check each use needs, so a system preset
that names a GPU as a memory tier (or the reverse) fails with one line instead of later.
"""

from __future__ import annotations

from pathlib import Path

from pamkv.errors import UserError
from pamkv.hardware.dram import DramDevice
from pamkv.hardware.gpu import Gpu
from pamkv.hardware.links import Link
from pamkv.hardware.pim import PimDevice
from pamkv.hardware.registry import load_device, load_link
from pamkv.hardware.ssd import SsdDevice

TierDevice = PimDevice | SsdDevice | DramDevice
"""A device that can hold KV: DRAM-PIM, SSD-PIM or plain DRAM."""

__all__ = ["Gpu", "Link", "TierDevice", "load_gpu", "load_link", "load_tier_device"]


def load_tier_device(name_or_path: str | Path) -> TierDevice:
    """A memory device preset (``hbm3-pim``, ``ddr4-pim``, ``ssd-pim``, plain DRAM) for a KV tier."""
    dev = load_device(name_or_path)
    if isinstance(dev, Gpu):
        raise UserError(f"device '{dev.name}' is a GPU, not a memory device for a KV tier")
    return dev


def load_gpu(name_or_path: str | Path) -> Gpu:
    """A GPU preset (``h100``, ``a100``)."""
    dev = load_device(name_or_path)
    if not isinstance(dev, Gpu):
        raise UserError(f"device '{dev.cfg.name}' is not a GPU (use h100 or a100)")
    return dev
