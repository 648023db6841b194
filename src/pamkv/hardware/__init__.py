"""Hardware models: timing, energy and cost of PIM DRAM devices, SSD-PIM, host GPUs and links.

``hardware`` prices what the upper layers decide: a bank-level DRAM model (:mod:`.dram`), DRAM-PIM
devices pricing one step of local attention from a :class:`UnitLoad` (:mod:`.pim`), SSD-PIM
(:mod:`.ssd`), GPUs as rooflines (:mod:`.gpu`) and links (:mod:`.links`). Presets load with
:func:`load_device` / :func:`load_link`; :class:`DeviceTier` adapts a device to the simulator.
"""

from pamkv.hardware.dram import DramDevice, DramSpec, PatternResult, pattern
from pamkv.hardware.gpu import Gpu
from pamkv.hardware.layout import DeviceLayout, UnitLoad
from pamkv.hardware.links import Link
from pamkv.hardware.pim import PimDevice, StepCost
from pamkv.hardware.registry import Device, device_summary, list_devices, list_links, load_device, load_link
from pamkv.hardware.ssd import SsdDevice
from pamkv.hardware.tier import DeviceTier

__all__ = [
    "Device",
    "DeviceLayout",
    "DeviceTier",
    "DramDevice",
    "DramSpec",
    "Gpu",
    "Link",
    "PatternResult",
    "PimDevice",
    "SsdDevice",
    "StepCost",
    "UnitLoad",
    "device_summary",
    "list_devices",
    "list_links",
    "load_device",
    "load_link",
    "pattern",
]
