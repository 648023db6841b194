"""The tiered KV store: append/read/free, payload, importance, migration, policies, errors."""

from __future__ import annotations

import numpy as np
import pytest
from kv_fixtures import select_all, small_spec, snapshot

from pamkv.kv import (
    CapacityError,
    KVStoreError,
    LayeredPolicy,
    MigrationPlan,
    PamPolicy,
    PlanError,
    RecentWindowPolicy,
    StaticPolicy,
    StoreSpec,
    TieredKVStore,
    TierSpec,
)


def test_append_read_free_and_block_table() -> None:
    store = TieredKVStore(small_spec())
    assert store.append([7, 9], [10, 3]).tolist() == [0, 0]
    assert store.append(7, 2).tolist() == [10]
    assert store.length(7) == 12 and store.length(9) == 3
    table = store.block_table(7)
    assert table["tokens"].tolist() == [4, 4, 4]
    assert set(table) == {"block", "tier", "device", "unit", "bank", "row", "col", "tokens"}
    parts = store.read(7)
    assert np.array_equal(np.sort(np.concatenate([p.positions for p in parts])), np.arange(12))
    sel = store.read(7, positions=[11, 0, 5, 5])
    assert sorted(np.concatenate([p.positions for p in sel]).tolist()) == [0, 5, 11]
    store.check()
    store.free([7])
    assert store.requests == [9] and int(store.tier_tokens.sum()) == 3
    store.check()
    with pytest.raises(KVStoreError, match="unknown request 7"):
        store.read(7)


def test_layered_policy_fills_top_down_by_arrival_and_refills_freed_room() -> None:
    store = TieredKVStore(small_spec(), LayeredPolicy())
    store.append([1], [12 * 4])  # hbm holds 12 blocks
    store.append([2], [8])
    assert set(store.block_table(1)["tier"].tolist()) == {0}
    assert store.block_table(2)["tier"].tolist() == [1, 1]
    store.append([3], [8])
    store.free([1])
    report = store.schedule()
    assert store.block_table(2)["tier"].tolist() == [0, 0]  # earliest arrivals rise first
    assert store.block_table(3)["tier"].tolist() == [0, 0]
    assert report.links["ddr->hbm"].blocks == 4
    store.check()


def test_static_policy_never_moves() -> None:
    store = TieredKVStore(small_spec(), StaticPolicy())
    store.append([1, 2], [48, 8])
    store.free([1])
    store.observe([2], [2] * 8, list(range(8)))
    assert len(store.plan()) == 0 and store.schedule().blocks == 0


def test_recent_window_policy_keeps_every_requests_newest_blocks_high() -> None:
    store = TieredKVStore(small_spec(block_tokens=4), RecentWindowPolicy())
    store.append([1, 2, 3], [40, 40, 40])  # 30 blocks; hbm holds 12
    for _ in range(8):
        store.append([1, 2, 3], 1)
        store.schedule()
    for r in (1, 2, 3):
        tiers = store.block_table(r)["tier"]
        assert (tiers[-4:] == 0).all()  # 12 hbm blocks = the last 4 of each request
        assert (np.diff(tiers[::-1]) >= 0).all()  # older blocks never above newer ones
    store.check()


def test_pam_places_hot_new_blocks_high_and_schedules_by_importance() -> None:
    policy = PamPolicy(x=4.0, y=2.0, hot_new_blocks=1)
    store = TieredKVStore(small_spec(block_tokens=4), policy)
    store.append([1], [4 * 20])  # 20 blocks; hbm holds 12, ddr 10
    t = store.block_table(1)["tier"]
    # the sink and the last block are hot; of the cold middle the newest take the rest of hbm
    assert t.tolist() == [0] + [1] * 8 + [0] * 11
    # make block 5 (in ddr) the most important; one schedule step must bring it to hbm
    for _ in range(3):
        store.observe([1], [1] * 4, [20, 21, 22, 23], [5.0] * 4)
    store.schedule()
    t = store.block_table(1)["tier"]
    assert t[5] == 0
    scores = store.tier_scores()
    assert scores[0] > scores[1] >= scores[2]
    store.check()


def test_pam_without_importance_moves_nothing() -> None:
    store = TieredKVStore(small_spec(), PamPolicy(x=4.0, y=2.0))
    store.append([1, 2], [60, 60])
    assert store.schedule().blocks == 0


def test_importance_is_the_ema_of_scores_and_eq8_per_tier() -> None:
    store = TieredKVStore(small_spec(block_tokens=4), StaticPolicy())
    store.append([1, 2], [8, 4])
    store.observe([1, 2], [1, 1, 2], [0, 5, 3], [1.0, 2.0, 4.0])
    imp = store._imp
    b1, b2 = store.block_table(1)["block"], store.block_table(2)["block"]
    assert imp[b1[0], 0] == 0.6 and imp[b1[1], 1] == 1.2 and imp[b2[0], 3] == 2.4
    store.observe([1], [1], [0], [2.0])  # request 2 not in the batch: unchanged
    assert imp[b1[0], 0] == 0.4 * 0.6 + 0.6 * 2.0
    assert imp[b1[1], 1] == pytest.approx(0.4 * 1.2) and imp[b2[0], 3] == 2.4
    total = 0.4 * 0.6 + 0.6 * 2.0 + 0.4 * 1.2 + 2.4
    assert store.tier_scores()[0] == pytest.approx(total / 12)  # all 12 tokens in hbm
    assert store.last_reads.tolist() == [1, 0, 0]


def test_observe_refuses_bad_input() -> None:
    store = TieredKVStore(small_spec())
    store.append([1, 2], [8, 8])
    before = snapshot(store)
    with pytest.raises(KVStoreError, match="twice"):
        store.observe([1], [1, 1], [3, 3])
    with pytest.raises(KVStoreError, match="batch"):
        store.observe([1], [2], [3])
    with pytest.raises(KVStoreError, match="outside"):
        store.observe([1], [1], [8])
    with pytest.raises(ValueError, match="non-negative"):
        store.observe([1], [1], [3], [-1.0])
    with pytest.raises(KVStoreError, match="twice in one batch"):
        store.observe([1, 1], [1], [3])
    assert snapshot(store) == before and store.steps == 0
    store.observe([1], [1], [3], [1.0])
    assert snapshot(store) != before


def test_migration_counts_bytes_per_link_and_refuses_impossible_plans() -> None:
    spec = small_spec(layers=3)
    store = TieredKVStore(spec, StaticPolicy())
    store.append([1], [4 * 12 + 2])  # hbm full (12 blocks), 1 partial block of 2 tokens in ddr
    table = store.block_table(1)
    last = table["block"][-1:]
    report = store.migrate(MigrationPlan(last, np.array([1]), np.array([2])))
    assert report.links["ddr->ssd"].tokens == 2
    assert report.bytes == 2 * 64 * 3 == store.traffic.bytes  # tokens x K+V bytes x layers
    before = snapshot(store)
    with pytest.raises(CapacityError, match="tier 'hbm'"):
        store.migrate(MigrationPlan(last, np.array([2]), np.array([0])))
    with pytest.raises(PlanError, match="unknown block"):
        store.migrate(MigrationPlan(np.array([999]), np.array([0]), np.array([1])))
    with pytest.raises(PlanError, match="not 'hbm'"):
        store.migrate(MigrationPlan(last, np.array([0]), np.array([1])))
    assert snapshot(store) == before
    # a swap between two full positions is fine: capacity is checked on the net result
    hb = table["block"][:1]
    swap = MigrationPlan(np.concatenate((hb, last)), np.array([0, 2]), np.array([2, 0]))
    store.migrate(swap)
    assert store.block_table(1)["tier"][[0, -1]].tolist() == [2, 0]
    store.check()


def test_a_full_store_refuses_appends_unchanged() -> None:
    store = TieredKVStore(small_spec(), PamPolicy(x=2.0, y=1.5))
    store.append([1], [52 * 4])  # exactly every block (12 + 10 + 30)
    assert store.free_blocks().sum() == 0
    before = snapshot(store)
    with pytest.raises(CapacityError):
        store.append([1, 2], [1, 1])
    assert snapshot(store) == before and store.requests == [1]
    store.append([1], 0)  # nothing new: fine
    store.check()


def test_payload_round_trip_survives_migration() -> None:
    spec = small_spec(layers=2, payload=dict(kv_heads=2, head_dim=3))
    store = TieredKVStore(spec, StaticPolicy())
    rng = np.random.default_rng(0)
    store.append([5], [30])
    k, v = rng.standard_normal((2, 2, 30, 2, 3)).astype(np.float32)
    for layer in range(2):
        store.write_kv(5, np.arange(30), layer, k[layer], v[layer])
    b = store.block_table(5)["block"]
    store.migrate(MigrationPlan(b[:2], np.array([0, 0]), np.array([2, 1])))
    for layer in range(2):
        parts = store.read(5, layer=layer)
        assert len({(p.tier, p.device) for p in parts}) == len(parts) >= 3
        for p in parts:
            assert np.array_equal(p.k, k[layer][p.positions]) and np.array_equal(p.v, v[layer][p.positions])  # type: ignore[arg-type]
    with pytest.raises(KVStoreError, match="payload"):
        TieredKVStore(small_spec()).write_kv(5, [0], 0, k[0][:1], v[0][:1])


def test_unit_loads_cover_the_selection_per_device() -> None:
    store = TieredKVStore(small_spec(), LayeredPolicy())
    store.append([1, 2, 3], [40, 40, 40])
    reqs, pos = select_all(store)
    loads = store.unit_loads(reqs, pos)
    assert [len(d) for d in loads] == [2, 1, 1]
    per_device: dict[tuple[int, int], int] = {}
    for r in (1, 2, 3):
        for p in store.read(r):
            per_device[p.tier, p.device] = per_device.get((p.tier, p.device), 0) + p.positions.size
    for t, devs in enumerate(loads):
        for d, load in enumerate(devs):
            assert load.tokens.sum() == per_device.get((t, d), 0)
            assert (load.rows <= load.tokens).all() and load.bytes_per_token == 64
    loc = store.locate(reqs, pos)
    assert np.array_equal(np.bincount(loc.tier, minlength=3), [sum(x.tokens.sum() for x in d) for d in loads])


def test_same_operations_same_layout() -> None:
    def run() -> tuple[object, ...]:
        store = TieredKVStore(small_spec(), PamPolicy(x=4.0, y=2.0))
        rng = np.random.default_rng(3)
        store.append([1, 2, 3], [50, 30, 20])
        for _ in range(10):
            store.append([1, 2, 3], 1)
            reqs, pos = select_all(store)
            keep = rng.random(pos.size) < 0.2
            store.observe([1, 2, 3], reqs[keep], pos[keep], rng.random(int(keep.sum())))
            store.schedule()
        return snapshot(store)

    assert run() == run()


def test_two_hundred_fifty_six_requests_of_8k_tokens() -> None:
    """The store holds 256 x 8192 tokens (131,072 blocks) and runs a decode step over them."""
    layout = dict(units=64, banks_per_unit=4, rows_per_bank=4096, row_bytes=1024)
    spec = StoreSpec(token_bytes=256, tiers=[
        TierSpec(name="hbm", devices=4, capacity_blocks=8192, layout=layout),  # type: ignore[arg-type]
        TierSpec(name="ddr", devices=4, capacity_blocks=16384, layout=layout),  # type: ignore[arg-type]
        TierSpec(name="ssd", devices=2, capacity_blocks=40000),
    ])
    store = TieredKVStore(spec, PamPolicy(x=8.0, y=3.0, max_swaps=2048))
    reqs = np.arange(256)
    store.append(reqs, 8192)
    store.append(reqs, 1)
    rng = np.random.default_rng(1)
    pos = rng.integers(0, 8193, (256, 1024))
    pos = np.sort(pos, axis=1)
    keep = np.concatenate((np.ones((256, 1), bool), pos[:, 1:] != pos[:, :-1]), axis=1)
    store.observe(reqs, np.repeat(reqs, 1024)[keep.ravel()], pos[keep], rng.random(int(keep.sum())))
    report = store.schedule()
    assert 0 < report.blocks <= 2 * 2048
    store.check()
