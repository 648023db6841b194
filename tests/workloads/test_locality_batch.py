"""The batched locality generator: the same distribution as one context at a time, ragged results that
are distributions, exact agreement of the vectorised formula with the one-context path, bookkeeping
through adds/removes/appends/compactions, multi-step drift, determinism, and the stream fallback."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pamkv.config.workloads import LocalityConfig
from pamkv.workloads.locality import (
    FIGURE_NAMES,
    LocalityBatch,
    LocalityModel,
    LocalityRecorder,
    RecordedLocality,
    StreamBatch,
    measure,
    open_batch,
    out_of_range,
)
from pamkv.workloads.locality import batch as batch_module
from pamkv.workloads.locality.batch import pareto_weights
from pamkv.workloads.locality.metrics import FigureAccumulator, combine

CONFIGS = st.builds(
    LocalityConfig,
    sink_tokens=st.integers(1, 40),
    sink_mass=st.floats(0.0, 0.4),
    recent_mass=st.floats(0.0, 0.4),
    recent_window=st.integers(1, 300),
    tail_index=st.floats(0.3, 1.5),
    background_mass=st.floats(0.0, 0.1),
)


def test_batch_figures_match_single_contexts_and_the_cited_ranges() -> None:
    # Eight contexts stepped together (as many head streams as the single-context test uses), at the
    # reference's 0.8-1.4k contexts; figures per context, averaged as measure() averages heads.
    model = LocalityModel()
    batch = model.batch(3)
    ids = np.arange(8)
    for c, n in zip(ids.tolist(), np.linspace(800, 1400, 8).astype(int).tolist(), strict=True):
        batch.add(c, n)
    accs = [FigureAccumulator() for _ in ids]
    for _ in range(100):
        batch.append(ids, 1)
        mass, off = batch.step(ids)
        for i, acc in enumerate(accs):
            acc.add(mass[0, off[i] : off[i + 1]])
    batched = combine(accs)
    assert out_of_range(batched) == {}
    runs = [measure(model, n, steps=100, heads=4, seed=1030 + i) for i, n in enumerate((800, 1400))]
    single = {k: (runs[0][k] + runs[1][k]) / 2 for k in FIGURE_NAMES}
    for k in FIGURE_NAMES:
        assert batched[k] == pytest.approx(single[k], abs=0.06), k


def test_one_context_batch_is_the_single_stream() -> None:
    state = LocalityModel().start(700, np.random.default_rng(11), heads=2, block_tokens=16)
    batch = LocalityModel().batch(np.random.default_rng(11), heads=2, block_tokens=16)
    batch.add(5, 700)
    for new, k in ((1, 1), (0, 3), (17, 1), (1, 8)):
        a = state.step(new, steps=k)
        batch.append([5], new)
        b, off = batch.step([5], k)
        assert off.tolist() == [0, a.shape[1]]
        assert a.tobytes() == b.tobytes()


@settings(max_examples=30, deadline=None)
@given(
    cfg=CONFIGS,
    block=st.sampled_from([1, 3, 16, 64]),
    heads=st.integers(1, 2),
    sizes=st.lists(st.integers(1, 700), min_size=2, max_size=6),
    seed=st.integers(0, 10_000),
)
def test_vectorised_formula_equals_the_one_context_path(
    cfg: LocalityConfig, block: int, heads: int, sizes: list[int], seed: int
) -> None:
    # The same log-modulation through the ragged (segment-operation) path and one context at a time.
    batch = LocalityModel(cfg).batch(seed, heads=heads, block_tokens=block)
    for c, n in enumerate(sizes):
        batch.add(10 * c + 1, n)
    ids = [10 * c + 1 for c in range(len(sizes))][::-1]
    units = batch.units(ids)
    off = np.concatenate([[0], np.cumsum(units)])
    log_mod = np.random.default_rng(seed).standard_normal((heads, int(off[-1])))
    together, got_off = batch.mass_of(ids, log_mod)
    assert got_off.tolist() == off.tolist()
    for i, c in enumerate(ids):
        alone, _ = batch.mass_of([c], log_mod[:, off[i] : off[i + 1]])
        assert np.allclose(alone, together[:, off[i] : off[i + 1]], rtol=1e-12, atol=1e-15)


@settings(max_examples=30, deadline=None)
@given(
    cfg=CONFIGS,
    block=st.sampled_from([1, 5, 16]),
    heads=st.integers(1, 3),
    sizes=st.lists(st.integers(1, 900), min_size=1, max_size=7),
    pick=st.data(),
    seed=st.integers(0, 10_000),
)
def test_ragged_offsets_and_rows_are_distributions(
    cfg: LocalityConfig, block: int, heads: int, sizes: list[int], pick: st.DataObject, seed: int
) -> None:
    batch = LocalityModel(cfg).batch(seed, heads=heads, block_tokens=block)
    for c, n in enumerate(sizes):
        batch.add(c, n)
    ids = pick.draw(st.permutations(range(len(sizes))))[: pick.draw(st.integers(1, len(sizes)))]
    new = pick.draw(st.lists(st.integers(0, 40), min_size=len(ids), max_size=len(ids)))
    batch.append(ids, new)
    tokens = np.array([sizes[c] for c in ids]) + np.array(new)
    assert batch.tokens(ids).tolist() == tokens.tolist()
    mass, off = batch.step(ids, pick.draw(st.integers(1, 50)))
    units = -(-tokens // block)
    assert off.tolist() == [0, *np.cumsum(units).tolist()]
    assert mass.shape == (heads, int(units.sum()))
    assert np.all(np.isfinite(mass)) and np.all(mass >= 0)
    sums = np.add.reduceat(mass, off[:-1], axis=1)
    assert np.allclose(sums, 1.0)
    # A context's first unit holds at least the share of the sink mass its sinks put there.
    sinks = np.minimum(cfg.sink_tokens, tokens)
    first_share = np.minimum(block, sinks) / sinks
    assert np.all(mass[:, off[:-1]] >= cfg.sink_mass * first_share - 1e-9)


@settings(max_examples=30, deadline=None)
@given(
    ops=st.lists(
        st.tuples(st.sampled_from(["add", "remove", "append", "step", "compact"]), st.integers(0, 11),
                  st.integers(0, 3000)),
        min_size=1, max_size=40,
    ),
    block=st.sampled_from([1, 4, 16]),
)
def test_bookkeeping_through_adds_removes_appends_and_compaction(ops: list[tuple[str, int, int]], block: int) -> None:
    # Compact as soon as holes outweigh live slots, so that small cases exercise it.
    with mock.patch.object(batch_module, "_COMPACT_MIN_UNITS", 0):
        _run_bookkeeping(ops, block)


def _run_bookkeeping(ops: list[tuple[str, int, int]], block: int) -> None:
    batch = LocalityModel().batch(0, block_tokens=block)
    held: dict[int, int] = {}
    for op, cid, amount in ops:
        before = {c: batch.unit_state(c) for c in held}
        touched: set[int] = set()
        if op == "add":
            if cid in held:
                with pytest.raises(ValueError):
                    batch.add(cid, amount + 1)
            else:
                batch.add(cid, amount + 1)
                held[cid] = amount + 1
                touched = {cid}
        elif op == "remove":
            if cid in held:
                batch.remove(cid)
                del held[cid]
                del before[cid]
            else:
                with pytest.raises(KeyError):
                    batch.remove(cid)
        elif op == "append" and held:
            ids = sorted(held)[: 1 + cid % len(held)]
            new = [(amount * (i + 1)) % 700 for i in range(len(ids))]
            batch.append(ids, new)
            for c, m in zip(ids, new, strict=True):
                held[c] += m
            touched = set(ids)
        elif op == "step" and held:
            ids = sorted(held)[cid % len(held) :]
            _, off = batch.step(ids, 1 + amount % 5)
            assert off[-1] == sum(-(-held[c] // block) for c in ids)
            for c in ids:  # stepping moves the drift only
                assert np.array_equal(batch.unit_state(c)[0], before[c][0])
            touched = set(ids)
        elif op == "compact":
            batch.compact()
        assert sorted(batch.context_ids()) == sorted(held) and len(batch) == len(held)
        ids = sorted(held)
        assert batch.tokens(ids).tolist() == [held[c] for c in ids]
        assert batch.units(ids).tolist() == [-(-held[c] // block) for c in ids]
        for c in held:
            p, d = batch.unit_state(c)
            if c not in touched:  # moves and compactions keep every other context's units intact
                assert np.array_equal(p, before[c][0]) and np.array_equal(d, before[c][1])
            elif op == "append":  # full units before the append keep their weight and drift
                keep = before[c][0].shape[1] - 1
                assert np.array_equal(p[:, :keep], before[c][0][:, :keep])
                assert np.array_equal(d[:, : keep + 1], before[c][1])
            assert np.all(p >= 1.0)  # every unit holds at least one Pareto(>= 1) weight
        total_units = sum(-(-n // block) for n in held.values())
        assert batch.allocated_units <= 3 * total_units + 8 * len(held)


def test_block_weights_are_the_sums_of_their_tokens_pareto_draws() -> None:
    cfg = LocalityConfig()
    batch = LocalityModel(cfg).batch(2, heads=2, block_tokens=16)
    sizes = {4: 30, 9: 16, 2: 1, 7: 100}
    for c, n in sizes.items():
        batch.add(c, n)
    ids, new = [9, 2, 7, 4], [40, 15, 1, 3]
    before = {c: batch.unit_state(c)[0] for c in ids}
    twin = np.random.Generator(np.random.PCG64())
    twin.bit_generator.state = batch.rng.bit_generator.state
    batch.append(ids, new)
    draws = pareto_weights(twin, (2, sum(new)), cfg.tail_index)
    at = 0
    for c, m in zip(ids, new, strict=True):
        expect = np.zeros((2, -(-(sizes[c] + m) // 16)))
        expect[:, : before[c].shape[1]] = before[c]
        for t in range(m):
            expect[:, (sizes[c] + t) // 16] += draws[:, at + t]
        at += m
        assert np.allclose(batch.unit_state(c)[0], expect, rtol=1e-13)


def _lag_corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def test_multi_step_drift_equals_k_single_steps_in_distribution() -> None:
    rho = LocalityConfig().drift_corr
    k = 8
    jump = LocalityModel().batch(4)
    walk = LocalityModel().batch(4)
    for b in (jump, walk):
        b.add(0, 20_000)
        b.add(1, 20_000)
    d0_jump = jump.unit_state(0)[1]
    d0_walk = walk.unit_state(0)[1]
    assert np.array_equal(d0_jump, d0_walk)  # same seed, same prompt draws
    jump.step([0, 1], [k, 1])  # one context jumps k steps, the other one
    for _ in range(k):
        walk.step([0])
    d_jump, d_walk = jump.unit_state(0)[1], walk.unit_state(0)[1]
    # Lag-k autocorrelation rho^k and stationary unit variance either way (sd of the estimates ~0.007).
    assert _lag_corr(d0_jump, d_jump) == pytest.approx(rho**k, abs=0.03)
    assert _lag_corr(d0_walk, d_walk) == pytest.approx(rho**k, abs=0.03)
    assert d_jump.var() == pytest.approx(1.0, abs=0.05) and d_walk.var() == pytest.approx(1.0, abs=0.05)
    # The context listed with one step moved by one step.
    assert _lag_corr(walk.unit_state(1)[1], jump.unit_state(1)[1]) == pytest.approx(rho, abs=0.03)
    # The single-context view takes the same keyword.
    state = LocalityModel().start(20_000, np.random.default_rng(5))
    d0 = state.batch.unit_state(0)[1]
    state.step(0, steps=k)
    assert _lag_corr(d0, state.batch.unit_state(0)[1]) == pytest.approx(rho**k, abs=0.03)


def test_same_seed_same_calls_same_arrays() -> None:
    def run() -> list[bytes]:
        batch = LocalityModel().batch(np.random.default_rng(9), heads=2, block_tokens=16)
        out = []
        for c in range(12):
            batch.add(c, 100 + 37 * c)
        for t in range(6):
            ids = np.array([c for c in batch.context_ids() if (c + t) % 3])
            batch.append(ids, 5)
            mass, off = batch.step(ids, 1 + t % 2)
            out += [mass.tobytes(), off.tobytes()]
            batch.remove(batch.context_ids()[0])
            batch.add(100 + t, 3000)
        return out

    assert run() == run()


def test_mistakes_are_refused() -> None:
    batch = LocalityModel().batch(0)
    batch.add(1, 10)
    batch.add(2, 10)
    with pytest.raises(ValueError):
        batch.add(1, 5)
    with pytest.raises(ValueError):
        batch.add(3, 0)
    with pytest.raises(KeyError):
        batch.step([1, 7])
    with pytest.raises(ValueError):
        batch.step([1, 2, 1])
    with pytest.raises(ValueError):
        batch.step([1], 0)
    with pytest.raises(ValueError):
        batch.append([1, 2], [1, -1])
    with pytest.raises(ValueError):
        batch.append([1, 2], [1, 2, 3])
    with pytest.raises(ValueError):
        LocalityBatch(None, 0, heads=0)
    with pytest.raises(ValueError):
        LocalityModel().start(10, np.random.default_rng(0)).step(1, steps=0)
    mass, off = batch.step([])
    assert mass.shape == (1, 0) and off.tolist() == [0]


def test_open_batch_uses_streams_for_a_replay() -> None:
    assert isinstance(open_batch(LocalityModel(), np.random.default_rng(0)), LocalityBatch)
    rec = LocalityRecorder(block_tokens=1)
    state = LocalityModel().start(50, np.random.default_rng(0))
    for step in range(4):
        m = state.step(1)[0]
        rec.add(step=step, layer=0, kv_head=0, n_tokens=state.n_tokens, block_ids=np.arange(m.size), mass=m)
    batch = open_batch(RecordedLocality(rec.trace()), np.random.default_rng(1), block_tokens=16)
    assert isinstance(batch, StreamBatch)
    batch.add(0, 50)
    batch.add(1, 700)
    batch.append([1, 0], [3, 1])
    assert batch.tokens([0, 1]).tolist() == [51, 703]
    mass, off = batch.step([1, 0], [2, 1])
    assert off.tolist() == [0, 44, 48]
    assert np.allclose(np.add.reduceat(mass, off[:-1], axis=1), 1.0)
    assert 1 in batch and len(batch) == 2
    batch.remove(1)
    assert 1 not in batch


@settings(max_examples=30, deadline=None)
@given(cfg=CONFIGS, block=st.sampled_from([1, 2, 3, 16, 64]), sigma=st.floats(0.05, 3.0))
def test_tabulated_factors_are_the_per_call_formulas(cfg: LocalityConfig, block: int, sigma: float) -> None:
    # Every table entry equals, to the bit, the formula the step would evaluate for that unit.
    cfg = cfg.model_copy(update={"background_sigma": sigma})
    batch = LocalityBatch(cfg, 0, block_tokens=block)
    row = int(batch._recent_row)
    for last in range(1, block + 1):
        key = last % block
        for units in (1, 2, 5, int(batch._recent_count[key]), int(batch._recent_count[key]) + 3):
            n = last + block * (units - 1)
            width = min(cfg.recent_window, n)
            count = units - (n - width) // block
            assert count == min(int(batch._recent_count[key]), units)
            j = np.arange(count)
            direct = batch._recent_weights(np.full(count, last), np.full(count, width), j)
            assert direct.tobytes() == batch._recent_table[key * row + j].tobytes()
    # The partial-block factors, computed as the step did, over arrays of other lengths and orders.
    scale = np.hypot(cfg.drift_sigma, cfg.jitter_sigma)
    z_scale = 1.0 / scale if scale > 0 else 1.0
    for size in (1, 3, 17, 40):
        tokens = np.random.default_rng(size).integers(1, block + 1, size)
        k = tokens.astype(np.float64)
        s2 = np.log1p(np.expm1(sigma * sigma) / k)
        keys = tokens % block
        assert (k / block).tobytes() == batch._block_gain[keys].tobytes()
        assert (np.sqrt(s2) * z_scale).tobytes() == batch._block_slope[keys].tobytes()
        assert (s2 / 2).tobytes() == batch._block_shift[keys].tobytes()


def test_any_ids_are_found_and_mistakes_refused() -> None:
    # Small ids go through the dense table, negative and huge ones through the sorted lookup; listings
    # in any order give results in that order; a listing checked once is refused once stale.
    batch = LocalityModel().batch(1, block_tokens=4)
    ids = [5, -3, 2**40, 0, 17]
    for i, c in enumerate(ids):
        batch.add(c, 10 * (i + 1))
    for order in (ids, ids[::-1], sorted(ids)):
        assert batch.tokens(np.array(order)).tolist() == [10 * (ids.index(c) + 1) for c in order]
        _, off = batch.step(np.array(order), 2)
        assert np.diff(off).tolist() == [-(-10 * (ids.index(c) + 1) // 4) for c in order]
    small = np.array([0, 5, 17])
    batch.append(small, 3)
    batch.step(small)  # the same listing again
    assert batch.tokens(small).tolist() == [43, 13, 53]
    with pytest.raises(ValueError):
        batch.step(np.array([5, 0, 5]))
    with pytest.raises(ValueError):
        batch.step(np.array([2**40, 5, 2**40]))
    with pytest.raises(KeyError):
        batch.step(np.array([0, 6]))
    with pytest.raises(KeyError):
        batch.step(np.array([-4, 0]))
    batch.remove(5)
    with pytest.raises(KeyError):
        batch.step(small)
    with pytest.raises(KeyError):
        batch.step(np.array([5]))
    batch.add(5, 8)
    assert batch.tokens(small).tolist() == [43, 8, 53]
    assert batch.step(np.array([17]))[1].tolist() == [0, 14]
