"""The parametric context-locality generator: how much attention mass each KV token (or block) gets.

Per decode step and head, the attention mass over the ``n`` tokens of the context is a mixture of
four parts, each normalised on its own so that its share is exactly its parameter:

- **sinks** — ``sink_mass`` spread over the first ``sink_tokens`` tokens (attention sinks,
  StreamingLLM arXiv 2309.17453; ../shared/reference/locality.md: token 0 holds 0.28-0.29);
- **recent window** — ``recent_mass`` over the last ``recent_window`` tokens with weights
  ``(recent_offset + d)^-recent_decay`` (``d`` = 0 for the newest token) times the modulation below
  ("important tokens cluster near the current token", PAM §3.2);
- **heavy hitters** — ``1 - sink_mass - recent_mass - background_mass`` over all tokens in proportion
  to ``p_i * modulation_i``, where ``p_i`` is a static Pareto(``tail_index``) weight drawn when the
  token enters the context (a power-law mass over ranks, H2O arXiv 2306.14048);
- **diffuse background** — ``background_mass`` over all tokens with lognormal(``background_sigma``)
  weights driven by the same log-modulation as the token's heavy-hitter weight (one attention logit):
  the flat tail, whose order churns from step to step but keeps the drift's memory.

The modulation of token ``i`` is ``exp(drift_sigma * u_i(t) + jitter_sigma * e_i(t))``: ``u`` a stationary AR(1)
series with correlation ``drift_corr`` per step (the drift of the hot set, which is what makes an
importance EMA and migration meaningful) and ``e`` white noise (fast churn).

Context-length law. Sinks and the recent window keep a constant mass in a constant number of tokens
(DuoAttention arXiv 2410.10819: many heads stay "streaming" heads at any length). The normalised
Pareto weights of ``n`` tokens concentrate as ``n`` grows when ``tail_index`` < 1: the heavy-hitter
mass outside its top ``k`` tokens falls like ``k^(1 - 1/tail_index)``. The background keeps a floor:
the mass outside any top fraction ``f`` never falls below about ``background_mass * (1 - f)``. So the
mass held by a fixed *fraction* of the context rises with context length and saturates just below 1,
as measured (../shared/reference/locality.md: "attention gets more concentrated with longer contexts").

At block granularity (``block_tokens`` > 1) a unit's static weight and recent weight are the exact
sums over its tokens; the modulation is drawn per block (approximating the modulation of its dominant
token) and the background per block as one lognormal with the moments of the sum of its tokens'
(Fenton-Wilkinson). A step costs O(blocks), not O(tokens).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from pamkv.config.workloads import LocalityConfig


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


def units_for(n_tokens: int, block_tokens: int) -> int:
    """Units (blocks of ``block_tokens`` tokens, the last possibly partial) covering ``n_tokens`` tokens."""
    return -(-n_tokens // block_tokens)


def unit_token_counts(n_tokens: int, block_tokens: int) -> np.ndarray:
    """Tokens held by each unit (all ``block_tokens`` except a partial last one), int64."""
    units = units_for(n_tokens, block_tokens)
    counts = np.full(units, block_tokens, dtype=np.int64)
    if units:
        counts[-1] = n_tokens - block_tokens * (units - 1)
    return counts


def _pareto(rng: np.random.Generator, shape: tuple[int, ...], tail_index: float) -> np.ndarray:
    """Pareto(tail_index) draws with minimum 1: P(X > x) = x^-tail_index."""
    # 1 - random() lies in (0, 1], so the power is finite.
    return (1.0 - rng.random(shape)) ** (-1.0 / tail_index)


def recent_profile(n_tokens: int, config: LocalityConfig) -> np.ndarray:
    """Recent-window weights of the last min(window, n) tokens, oldest first, summing to 1."""
    width = min(config.recent_window, n_tokens)
    dist = np.arange(width - 1, -1, -1, dtype=np.float64)  # distance from the newest token
    w = (config.recent_offset + dist) ** (-config.recent_decay)
    return w / w.sum()


@dataclass
class LocalityState:
    """One running context of the generator: ``heads`` independent head streams.

    Arrays grow by doubling, so appending a token costs O(1) amortised; a step costs O(heads * units).
    """

    config: LocalityConfig
    rng: np.random.Generator
    heads: int
    block_tokens: int
    n_tokens: int = 0
    _pareto_sum: np.ndarray = field(default_factory=lambda: np.zeros((1, 0)))  # (heads, capacity)
    _drift: np.ndarray = field(default_factory=lambda: np.zeros((1, 0)))  # (heads, capacity)
    _units: int = 0
    _total_pareto: np.ndarray = field(default_factory=lambda: np.zeros(1))  # (heads,)
    # Per-unit recent profiles depend only on (window width, n mod block): cached.
    _recent_cache: dict[tuple[int, int], tuple[int, np.ndarray]] = field(default_factory=dict)

    @property
    def n_units(self) -> int:
        """Units (tokens or blocks) in the context now."""
        return self._units

    def unit_tokens(self) -> np.ndarray:
        """Tokens per unit now (the last unit may be partial)."""
        return unit_token_counts(self.n_tokens, self.block_tokens)

    def _grow(self, units: int) -> None:
        cap = self._pareto_sum.shape[1]
        if units <= cap:
            return
        new_cap = max(units, 2 * cap, 64)
        for name in ("_pareto_sum", "_drift"):
            old = getattr(self, name)
            grown = np.zeros((self.heads, new_cap))
            grown[:, :cap] = old
            setattr(self, name, grown)

    def append(self, new_tokens: int) -> None:
        """Add ``new_tokens`` tokens: draw their static weights and start their drift."""
        if new_tokens < 0:
            raise ValueError(f"new_tokens must be >= 0, got {new_tokens}")
        if new_tokens == 0:
            return
        b = self.block_tokens
        first, last = self.n_tokens, self.n_tokens + new_tokens
        units_after = units_for(last, b)
        self._grow(units_after)
        p = _pareto(self.rng, (self.heads, new_tokens), self.config.tail_index)
        # Accumulate each new token's weight into its unit (a block may receive several).
        if b == 1:
            self._pareto_sum[:, first:last] = p
        elif first // b == (last - 1) // b:  # the common decode case: all into one block
            self._pareto_sum[:, first // b] += p.sum(axis=1)
        else:
            unit_of = (np.arange(first, last) // b).astype(np.int64)
            # unit_of is non-decreasing: sum each run of equal units, then add the runs in.
            starts = np.flatnonzero(np.diff(unit_of, prepend=-1))
            self._pareto_sum[:, unit_of[starts]] += np.add.reduceat(p, starts, axis=1)
        self._total_pareto = self._total_pareto + p.sum(axis=1)
        fresh = slice(self._units, units_after)
        self._drift[:, fresh] = self.rng.standard_normal((self.heads, units_after - self._units))
        self.n_tokens = last
        self._units = units_after

    def _recent_units(self) -> tuple[int, np.ndarray]:
        """First unit of the recent window and the window's profile summed per unit (sums to 1)."""
        n, b = self.n_tokens, self.block_tokens
        width = min(self.config.recent_window, n)
        key = (width, n % b)
        if key not in self._recent_cache:
            prof = recent_profile(n, self.config)
            pos = np.arange(n - width, n) // b
            per_unit = prof if b == 1 else np.bincount(pos - pos[0], weights=prof)
            self._recent_cache[key] = (int(pos[0]) - units_for(n, b), per_unit)
        offset, per_unit = self._recent_cache[key]
        return self._units + offset, per_unit

    def _sink_units(self) -> tuple[np.ndarray, np.ndarray]:
        """Units holding the sink tokens and the share of the sink mass each holds."""
        sinks = min(self.config.sink_tokens, self.n_tokens)
        if sinks <= 1:
            return np.zeros(sinks, dtype=np.int64), np.ones(sinks)
        units, counts = np.unique(np.arange(sinks) // self.block_tokens, return_counts=True)
        return units, counts / sinks

    def _background(self, z: np.ndarray | None) -> np.ndarray:
        """This step's diffuse weights per unit, shape (heads, units), rows summing to 1.

        A token's weight is exp(background_sigma * z), with ``z`` its standardised log-modulation (the
        same slow drift and fresh noise that move its heavy-hitter weight: one attention logit), or
        fresh normals when there is no modulation. A block's weight stands for the sum over its tokens:
        one lognormal with the same mean and variance (Fenton-Wilkinson moment matching).
        """
        sigma = self.config.background_sigma
        if z is None:
            z = self.rng.standard_normal((self.heads, self._units))
        if self.block_tokens == 1:
            w = np.exp(sigma * z)
        else:
            k = self.unit_tokens().astype(np.float64)
            s2 = np.log1p(np.expm1(sigma * sigma) / k)
            w = k * np.exp(np.sqrt(s2) * z - s2 / 2)
        return w / w.sum(axis=1, keepdims=True)

    def mass_of(self, log_mod: np.ndarray) -> np.ndarray:
        """Mass per unit, shape (heads, units), for a log-modulation of the same shape; rows sum to 1.

        Each part is normalised on its own, so the sinks hold exactly ``sink_mass``, the recent window's
        profile exactly ``recent_mass``, the diffuse part ``background_mass``, and the heavy-hitter
        (content) weights the rest.
        """
        cfg = self.config
        units = self._units
        modulation = np.exp(log_mod - log_mod.max(axis=1, keepdims=True))
        content_share = 1.0 - cfg.sink_mass - cfg.recent_mass - cfg.background_mass
        w = self._pareto_sum[:, :units] * modulation
        out = w * (content_share / w.sum(axis=1, keepdims=True))
        if cfg.recent_mass > 0:
            first, prof = self._recent_units()
            r = prof * modulation[:, first:]
            out[:, first:] += r * (cfg.recent_mass / r.sum(axis=1, keepdims=True))
        if cfg.sink_tokens and cfg.sink_mass > 0:
            sink_units, share = self._sink_units()
            out[:, sink_units] += cfg.sink_mass * share
        if cfg.background_mass > 0:
            scale = float(np.hypot(cfg.drift_sigma, cfg.jitter_sigma))
            out += cfg.background_mass * self._background(log_mod / scale if scale > 0 else None)
        return out

    def step(self, new_tokens: int = 1) -> np.ndarray:
        """Append ``new_tokens`` tokens, advance the drift one step, return mass (heads, units), rows sum to 1."""
        self.append(new_tokens)
        cfg = self.config
        drift = self._drift[:, : self._units]
        rho = cfg.drift_corr
        drift *= rho
        drift += np.sqrt(1.0 - rho * rho) * self.rng.standard_normal(drift.shape)
        log_mod = cfg.drift_sigma * drift
        if cfg.jitter_sigma > 0:
            log_mod = log_mod + cfg.jitter_sigma * self.rng.standard_normal(drift.shape)
        return self.mass_of(log_mod)


@dataclass(frozen=True)
class LocalityModel:
    """The context-locality generator; ``start`` opens a context, its ``step`` gives per-unit mass."""

    config: LocalityConfig = field(default_factory=LocalityConfig)

    def start(
        self, n_tokens: int, rng: np.random.Generator, *, heads: int = 1, block_tokens: int = 1
    ) -> LocalityState:
        """Open a context holding ``n_tokens`` prompt tokens, ``heads`` independent heads, units of ``block_tokens``.

        Call ``step(1)`` once per decode step: it appends the new token and returns this step's mass.
        """
        if n_tokens < 1:
            raise ValueError(f"n_tokens must be >= 1, got {n_tokens}")
        if heads < 1 or block_tokens < 1:
            raise ValueError("heads and block_tokens must be >= 1")
        state = LocalityState(
            config=self.config,
            rng=rng,
            heads=heads,
            block_tokens=block_tokens,
            _pareto_sum=np.zeros((heads, 0)),
            _drift=np.zeros((heads, 0)),
            _total_pareto=np.zeros(heads),
        )
        state.append(n_tokens)
        return state
