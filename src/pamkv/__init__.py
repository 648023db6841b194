"""pamkv — PAM (Processing Across Memory) for KV-centric LLM serving.

A functional implementation of PAM's algorithms (PAMattention, the tiered KV store, placement,
migration, online KV scheduling) and a performance simulator of PAM and its baselines on modelled
processing-in-memory hardware.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def simulate(config: Any) -> Any:
    """Simulate one serving run described by ``config`` and return its :class:`pamkv.sim.Result`."""
    from pamkv.sim import simulate as _simulate

    return _simulate(config)


__all__ = ["__version__", "simulate"]
