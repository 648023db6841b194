"""Links between devices: bandwidth per direction, per-message latency, achievable efficiency, energy.

The simulator prices KV migrations and partial-result transfers with :meth:`Link.transfer_seconds`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from pamkv.config.devices import LinkConfig


class Link:
    """A point-to-point link (``lanes`` identical links in parallel act as one wider link)."""

    def __init__(self, cfg: LinkConfig, lanes: int = 1) -> None:
        if lanes < 1:
            raise ValueError("lanes must be >= 1")
        self.cfg = cfg
        self.name = cfg.name
        self.lanes = lanes

    @property
    def bandwidth(self) -> float:
        """Achievable bytes/s per direction of all lanes together."""
        return self.cfg.bandwidth * self.cfg.efficiency * self.lanes

    def transfer_seconds(self, nbytes: np.ndarray | float, messages: np.ndarray | float = 1) -> np.ndarray:
        """Seconds to move ``nbytes`` in ``messages`` messages: ``messages x latency + bytes / bandwidth``.

        Vectorised over both arguments; nothing to move costs nothing.
        """
        b = np.asarray(nbytes, dtype=float)
        m = np.asarray(messages, dtype=float)
        return np.where(b > 0, m * self.cfg.latency_s + b / self.bandwidth, 0.0)

    def energy_j(self, nbytes: np.ndarray | float) -> np.ndarray:
        """Joules to move ``nbytes``."""
        return np.asarray(nbytes, dtype=float) * 8.0 * self.cfg.energy_pj_per_bit * 1e-12

    def transfer_seconds_fn(self) -> Callable[[float], float]:
        """``b -> transfer_seconds(b)`` for one message on Python floats (the same operations: the same result)."""
        latency, bandwidth = 1.0 * self.cfg.latency_s, self.bandwidth
        return lambda b: latency + b / bandwidth if b > 0 else 0.0

    def energy_fn(self) -> Callable[[float], float]:
        """``b -> energy_j(b)`` on Python floats: joules to move ``b`` bytes."""
        pj = self.cfg.energy_pj_per_bit
        return lambda b: b * 8.0 * pj * 1e-12

    def summary(self) -> dict[str, object]:
        """Headline figures."""
        c = self.cfg
        return {
            "name": c.name, "bandwidth_gbps": c.bandwidth / 1e9 * self.lanes,
            "achievable_gbps": self.bandwidth / 1e9, "latency_us": c.latency_s * 1e6,
            "energy_pj_per_bit": c.energy_pj_per_bit, "description": c.description, "source": c.source,
        }
