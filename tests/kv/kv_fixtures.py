"""Small store specs and helpers shared by the kv tests."""

from __future__ import annotations

import numpy as np

from pamkv.kv import StoreSpec, TieredKVStore, TierSpec


def small_spec(block_tokens: int = 4, mapping: str = "activity", **extra: object) -> StoreSpec:
    """Three tiers: 2 HBM devices x 6 blocks, 1 DDR x 10, 1 SSD x 30 (4 channels)."""
    return StoreSpec(
        block_tokens=block_tokens, token_bytes=64, mapping=mapping,  # type: ignore[arg-type]
        tiers=[
            TierSpec(name="hbm", devices=2, capacity_blocks=6,
                     layout=dict(units=3, banks_per_unit=2, rows_per_bank=32, row_bytes=256)),  # type: ignore[arg-type]
            TierSpec(name="ddr", devices=1, capacity_blocks=10,
                     layout=dict(units=2, banks_per_unit=4, rows_per_bank=32, row_bytes=512)),  # type: ignore[arg-type]
            TierSpec(name="ssd", devices=1, capacity_blocks=30,
                     layout=dict(kind="ssd", units=4, banks_per_unit=2, rows_per_bank=64, row_bytes=1024)),  # type: ignore[arg-type]
        ],
        **extra,  # type: ignore[arg-type]
    )


def snapshot(store: TieredKVStore) -> tuple[object, ...]:
    """Everything observable about a store's placement and counters (to assert 'unchanged')."""
    tables = tuple(
        (r, tuple(np.asarray(v).tobytes() for v in store.block_table(r).values())) for r in store.requests
    )
    return (tables, store.used.tobytes(), store.tier_tokens.tobytes(), store.unit_used.tobytes(),
            store.traffic.bytes, store._imp.tobytes())


def select_all(store: TieredKVStore) -> tuple[np.ndarray, np.ndarray]:
    """(requests, positions) of every token in the store."""
    reqs = [np.full(store.length(r), r) for r in store.requests]
    pos = [np.arange(store.length(r)) for r in store.requests]
    if not reqs:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(reqs), np.concatenate(pos)
