"""The context-locality generator's front door: :class:`LocalityModel`, its single-context stream, and
the protocols a recorded trace's replay also implements.

The generator (sinks, a recent window, power-law heavy hitters, a drifting hot set, a diffuse
background; its formula, sources and context-length law) is implemented once, over many contexts at
a time, in :mod:`pamkv.workloads.locality.batch`. :class:`LocalityState` — what ``start`` returns —
is a view over a one-context :class:`~pamkv.workloads.locality.batch.LocalityBatch`;
``LocalityModel.batch`` opens a batch for many contexts (the simulator's path).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from pamkv.config.workloads import LocalityConfig
from pamkv.workloads.locality.batch import (
    LocalityBatch,
    pareto_weights,
    recent_profile,
    unit_token_counts,
    units_for,
)

__all__ = [
    "LocalityBatch",
    "LocalityModel",
    "LocalitySource",
    "LocalityState",
    "LocalityStream",
    "pareto_weights",
    "recent_profile",
    "unit_token_counts",
    "units_for",
]


class LocalityStream(Protocol):
    """A running context whose per-step attention mass the simulator reads (generator or replay)."""

    @property
    def n_tokens(self) -> int:
        """Tokens now in the context."""
        ...

    @property
    def block_tokens(self) -> int:
        """Tokens per unit of the mass arrays (1 = per token)."""
        ...

    @property
    def heads(self) -> int:
        """Independent head streams (rows of the mass arrays)."""
        ...

    def step(self, new_tokens: int = 1) -> np.ndarray:
        """Append ``new_tokens`` tokens, then return this step's mass, shape (heads, units), rows sum to 1."""
        ...


class LocalitySource(Protocol):
    """Anything that starts locality streams: :class:`LocalityModel` or a recorded trace's replay."""

    def start(
        self, n_tokens: int, rng: np.random.Generator, *, heads: int = 1, block_tokens: int = 1
    ) -> LocalityStream:
        """Begin a context of ``n_tokens`` tokens (the prompt); the first ``step`` is the first decode."""
        ...


@dataclass
class LocalityState:
    """One running context of the generator (``heads`` independent head streams): a view over a
    one-context :class:`LocalityBatch`, so the formula lives in one place.

    Appending a token costs O(1) amortised; a step costs O(heads * units).
    """

    batch: LocalityBatch
    context_id: int = 0
    _slot: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._slot = self.batch._slots([self.context_id], unique=False)

    @property
    def config(self) -> LocalityConfig:
        """The generator's parameters."""
        return self.batch.config

    @property
    def rng(self) -> np.random.Generator:
        """The random generator the context draws from."""
        return self.batch.rng

    @property
    def heads(self) -> int:
        """Independent head streams (rows of the mass arrays)."""
        return self.batch.heads

    @property
    def block_tokens(self) -> int:
        """Tokens per unit of the mass arrays (1 = per token)."""
        return self.batch.block_tokens

    @property
    def n_tokens(self) -> int:
        """Tokens now in the context."""
        return int(self.batch._tokens[self._slot[0]])

    @property
    def n_units(self) -> int:
        """Units (tokens or blocks) in the context now."""
        return int(self.batch._units[self._slot[0]])

    def unit_tokens(self) -> np.ndarray:
        """Tokens per unit now (the last unit may be partial)."""
        return unit_token_counts(self.n_tokens, self.block_tokens)

    def append(self, new_tokens: int) -> None:
        """Add ``new_tokens`` tokens: draw their static weights and start their drift."""
        if new_tokens < 0:
            raise ValueError(f"new_tokens must be >= 0, got {new_tokens}")
        self.batch._append_slots(self._slot, np.array([new_tokens], dtype=np.int64))

    def mass_of(self, log_mod: np.ndarray) -> np.ndarray:
        """Mass per unit, shape (heads, units), for a log-modulation of the same shape; rows sum to 1.

        Each part is normalised on its own, so the sinks hold exactly ``sink_mass``, the recent window's
        profile exactly ``recent_mass``, the diffuse part ``background_mass``, and the heavy-hitter
        (content) weights the rest.
        """
        return self.batch.mass_of([self.context_id], log_mod)[0]

    def step(self, new_tokens: int = 1, *, steps: int = 1) -> np.ndarray:
        """Append ``new_tokens`` tokens, advance the drift ``steps`` decode steps (exact in distribution),
        return this step's mass (heads, units), rows summing to 1."""
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        self.append(new_tokens)
        return self.batch._step_slots(self._slot, np.array([steps], dtype=np.int64))[0]


@dataclass(frozen=True)
class LocalityModel:
    """The context-locality generator; ``start`` opens a context, its ``step`` gives per-unit mass."""

    config: LocalityConfig = field(default_factory=LocalityConfig)

    def start(
        self, n_tokens: int, rng: np.random.Generator, *, heads: int = 1, block_tokens: int = 1
    ) -> LocalityState:
        """Open a context holding ``n_tokens`` prompt tokens, ``heads`` independent heads, units of ``block_tokens``.

        Call ``step(1)`` once per decode step: it appends the new token and returns this step's mass;
        ``step(k, steps=k)`` covers ``k`` decode steps at once.
        """
        if n_tokens < 1:
            raise ValueError(f"n_tokens must be >= 1, got {n_tokens}")
        batch = self.batch(rng, heads=heads, block_tokens=block_tokens)
        batch.add(0, n_tokens)
        return LocalityState(batch, 0)

    def batch(self, rng: np.random.Generator | int, *, heads: int = 1, block_tokens: int = 1) -> LocalityBatch:
        """An empty :class:`LocalityBatch` of this generator: many contexts, stepped together (``add``,
        ``append``, ``step``, ``remove``)."""
        return LocalityBatch(self.config, rng, heads=heads, block_tokens=block_tokens)
