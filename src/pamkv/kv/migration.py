"""Migration plans (what to move) and reports (what moved, bytes per link)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def link_name(src: str, dst: str) -> str:
    """Name of the link a move uses: ``'<src tier>-><dst tier>'``."""
    return f"{src}->{dst}"


@dataclass(frozen=True)
class MigrationPlan:
    """Blocks to move: block ids, the tier each is in now, the tier it goes to (int64 arrays)."""

    blocks: np.ndarray
    src: np.ndarray
    dst: np.ndarray

    def __len__(self) -> int:
        return int(self.blocks.size)

    @staticmethod
    def empty() -> MigrationPlan:
        """A plan that moves nothing."""
        z = np.zeros(0, dtype=np.int64)
        return MigrationPlan(z, z, z)


@dataclass
class LinkTraffic:
    """What crossed one link: blocks, tokens, and bytes (tokens x K+V bytes of all stored layers)."""

    blocks: int = 0
    tokens: int = 0
    bytes: float = 0.0

    def add(self, other: LinkTraffic) -> None:
        """Accumulate ``other`` into this one."""
        self.blocks += other.blocks
        self.tokens += other.tokens
        self.bytes += other.bytes


@dataclass
class MigrationReport:
    """What one migration (or a whole run, when accumulated) moved, per link and in total."""

    links: dict[str, LinkTraffic] = field(default_factory=dict)

    @property
    def blocks(self) -> int:
        """Blocks moved over all links."""
        return sum(t.blocks for t in self.links.values())

    @property
    def tokens(self) -> int:
        """Tokens moved over all links."""
        return sum(t.tokens for t in self.links.values())

    @property
    def bytes(self) -> float:
        """Bytes moved over all links."""
        return float(sum(t.bytes for t in self.links.values()))

    def add(self, other: MigrationReport) -> None:
        """Accumulate ``other`` into this report."""
        for name, t in other.links.items():
            self.links.setdefault(name, LinkTraffic()).add(t)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready: totals and ``links: {name: {blocks, tokens, bytes}}``."""
        return {
            "blocks": self.blocks, "tokens": self.tokens, "bytes": self.bytes,
            "links": {k: {"blocks": v.blocks, "tokens": v.tokens, "bytes": v.bytes}
                      for k, v in sorted(self.links.items())},
        }
