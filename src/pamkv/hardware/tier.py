"""A memory tier as the simulator prices it: ``count`` identical devices behind their links.

:class:`DeviceTier` implements the simulator's ``TierModel`` protocol (``pamkv.sim.pricing``) on
top of the device models, so the serving loop never needs to know which device kind it has.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pamkv.errors import UserError
from pamkv.hardware.dram import DramDevice
from pamkv.hardware.links import Link
from pamkv.hardware.pim import PimDevice
from pamkv.hardware.registry import load_device, load_link
from pamkv.hardware.ssd import SsdDevice


@dataclass(frozen=True)
class ScalarPrices:
    """One tier's prices on Python floats, one count at a time, each equal to its vectorised method.

    ``attention``: tokens per device -> seconds (:meth:`DeviceTier.attention_seconds`); ``fetch``: tokens
    per device -> seconds (``fetch_seconds``); ``energy``/``read_energy``: tokens -> joules (``energy_j``
    computed / not); ``link``: bytes -> seconds (``link_seconds``); ``link_energy``: bytes -> joules.
    """

    attention: Callable[[float], float]
    fetch: Callable[[float], float]
    energy: Callable[[float], float]
    read_energy: Callable[[float], float]
    link: Callable[[float], float]
    link_energy: Callable[[float], float]


@dataclass
class DeviceTier:
    """``devices`` copies of one device, attending in place (``pim``) or read out over ``link``.

    ``links``: how many copies of the link preset connect the tier to the GPUs (default one per
    device). ``group`` and ``head_dim``: the model's query heads per KV head and head width (they
    set the PUs' work per byte and the partials' size); ``selected_fraction``: the share of stored
    tokens a step selects (sets how many flash pages an SSD senses).
    """

    name: str
    device: PimDevice | SsdDevice | DramDevice
    devices: int
    link: Link
    pim: bool = True
    group: int = 1
    head_dim: int = 128
    power_limit: bool = False
    selected_fraction: float = 1.0

    @classmethod
    def from_presets(
        cls, name: str, device: str, count: int, link: str, pim: bool = True, links: int | None = None,
        group: int = 1, head_dim: int = 128, power_limit: bool = False, selected_fraction: float = 1.0,
    ) -> DeviceTier:
        """Build a tier from a device preset and a link preset."""
        dev = load_device(device)
        if not isinstance(dev, PimDevice | SsdDevice | DramDevice):
            raise UserError(f"tier '{name}': device '{device}' is not a memory device")
        if pim and isinstance(dev, DramDevice):
            raise UserError(f"tier '{name}': device '{device}' has no PIM units (set pim: false)")
        return cls(name, dev, count, load_link(link, links or count), pim, group, head_dim, power_limit,
                   selected_fraction)

    def attention_seconds(self, tokens_per_device: np.ndarray, token_bytes: float, coarse: bool) -> np.ndarray:
        """Seconds for one device to attend over ``tokens_per_device`` selected tokens of one layer."""
        dev = self.device
        if isinstance(dev, SsdDevice):
            return dev.attention_seconds(tokens_per_device, token_bytes, coarse, group=self.group,
                                         head_dim=self.head_dim, power_limit=self.power_limit,
                                         selected_fraction=self.selected_fraction)
        if isinstance(dev, PimDevice):
            return dev.attention_seconds(tokens_per_device, token_bytes, coarse, group=self.group,
                                         head_dim=self.head_dim, power_limit=self.power_limit)
        raise UserError(f"tier '{self.name}': plain DRAM cannot attend in place")

    def scalar_prices(self, token_bytes: float, coarse: bool) -> ScalarPrices | None:
        """This tier's prices on Python floats (for a few steps at a time), or None for plain DRAM."""
        dev, link = self.device, self.link
        if isinstance(dev, SsdDevice):
            f = self.selected_fraction
            return ScalarPrices(
                dev.attention_seconds_fn(token_bytes, coarse, self.group, self.head_dim, self.power_limit, f),
                dev.fetch_seconds_fn(token_bytes, f), dev.energy_fn(token_bytes, True, f),
                dev.energy_fn(token_bytes, False, f), link.transfer_seconds_fn(), link.energy_fn())
        if isinstance(dev, PimDevice):
            return ScalarPrices(
                dev.attention_seconds_fn(token_bytes, coarse, self.group, self.head_dim, self.power_limit),
                dev.fetch_seconds_fn(token_bytes), dev.energy_fn(token_bytes, True), dev.energy_fn(token_bytes, False),
                link.transfer_seconds_fn(), link.energy_fn())
        return None

    def fetch_seconds(self, tokens_per_device: np.ndarray, token_bytes: float) -> np.ndarray:
        """Seconds for one device to read selected tokens out to the host (no PIM), before the link."""
        dev = self.device
        if isinstance(dev, SsdDevice):
            return dev.fetch_seconds(tokens_per_device, token_bytes, self.selected_fraction)
        return dev.fetch_seconds(tokens_per_device, token_bytes)

    def link_seconds(self, nbytes: np.ndarray) -> np.ndarray:
        """Seconds to move ``nbytes`` between this tier (all its links together) and the GPUs."""
        return self.link.transfer_seconds(nbytes)

    def energy_j(self, tokens: np.ndarray, token_bytes: float, computed: bool) -> np.ndarray:
        """Joules to read ``tokens`` (and compute attention over them in place when ``computed``)."""
        dev = self.device
        if isinstance(dev, SsdDevice):
            return dev.energy_j(tokens, token_bytes, computed, self.selected_fraction)
        if isinstance(dev, PimDevice):
            return dev.energy_j(tokens, token_bytes, computed)
        return dev.energy_j(tokens, token_bytes)

    def link_energy_j(self, nbytes: np.ndarray) -> np.ndarray:
        """Joules to move ``nbytes`` over this tier's link."""
        return self.link.energy_j(nbytes)
