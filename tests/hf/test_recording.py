"""Attention recordings without a model: recorder, file round trip, figures, layer ranges (numpy only)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pamkv.errors import UserError
from pamkv.integrations.recording import (
    AttentionRecorder,
    fit_targets,
    measure_recording,
    measure_trace,
    parse_layer_range,
    recording_facts,
)
from pamkv.workloads.locality import FIGURE_NAMES, load_locality_trace


def _probs(rng: np.random.Generator, streams: int, n: int) -> np.ndarray:
    w = rng.pareto(1.0, size=(streams, n)) + 1e-6
    return w / w.sum(1, keepdims=True)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 70), block=st.integers(1, 9), streams=st.integers(1, 3), seed=st.integers(0, 99))
def test_block_records_keep_every_tokens_mass(n: int, block: int, streams: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = _probs(rng, streams, n)
    read = rng.random((streams, n)) < 0.5
    read[:, -1] = True
    rec = AttentionRecorder(block_tokens=block)
    rec.add(request=0, position=n - 1, layer=0, read=read, probs=p)
    trace = rec.trace()
    assert len(trace) == streams
    for s in range(streams):
        lo, hi = int(trace.offsets[s]), int(trace.offsets[s + 1])
        ids = trace.block_ids[lo:hi]
        blocks_read = np.unique(np.flatnonzero(read[s]) // block)
        assert np.array_equal(ids, blocks_read)  # a block is listed when any of its tokens was read
        want = np.add.reduceat(p[s], np.arange(0, n, block))[blocks_read]
        np.testing.assert_allclose(trace.mass[lo:hi], want, rtol=1e-5)  # with its tokens' whole mass
        assert math.isclose(trace.dense(s).sum(), 1.0, rel_tol=1e-9)


def test_min_mass_drops_small_entries_and_the_file_round_trips(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    rec = AttentionRecorder(min_mass=0.02, heads="query", heads_per_kv=3, layers=(1, 3), source="unit test")
    for pos in range(10, 20):
        for layer in range(4):
            p = _probs(rng, 2, pos + 1)
            rec.add(request=0, position=pos, layer=layer, read=np.ones_like(p, dtype=bool), probs=p)
    assert len(rec) == 10 * 2 * 2  # layers 1 and 2 only
    trace = rec.trace()
    assert (trace.mass >= 0.02).all()
    path = tmp_path / "r.npz"
    rec.save(path)
    back = load_locality_trace(path)
    assert np.array_equal(back.block_ids, trace.block_ids) and np.array_equal(back.step, trace.step)
    assert recording_facts(path) == {"head_kind": "query", "heads_per_kv": 3, "min_mass": 0.02,
                                     "source": "unit test"}
    with pytest.raises(UserError, match="nothing was recorded"):
        AttentionRecorder().save(tmp_path / "empty.npz")


def test_figures_of_a_known_pattern(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Every step puts 0.5 on token 0 and 0.5 on the newest token: sink 0.5, last-64 0.5, top-1% 0.5."""
    rec = AttentionRecorder()
    for pos in range(200, 240):
        p = np.zeros((1, pos + 1))
        p[0, 0] = p[0, -1] = 0.5
        rec.add(request=0, position=pos, layer=0, read=np.ones_like(p, dtype=bool), probs=p)
    figs = measure_trace(rec.trace())
    assert figs["sink_mass"] == pytest.approx(0.5)
    assert figs["last64_mass"] == pytest.approx(0.5)
    assert figs["top10_mass"] == pytest.approx(1.0)
    assert figs["series"] == 1 and figs["records"] == 40
    rec.save(tmp_path / "k.npz")
    with pytest.raises(UserError, match="no recorded layer"):
        measure_recording(tmp_path / "k.npz", (3, None))
    targets = fit_targets(figs)
    assert set(targets) <= set(FIGURE_NAMES) and "steps" not in targets
    assert all(math.isfinite(v) for v in targets.values())


@pytest.mark.parametrize(
    ("text", "want"), [(None, (None, None)), ("", (None, None)), ("2:", (2, None)), (":10", (None, 10)),
                       ("2:30", (2, 30)), ("5", (5, 6))],
)
def test_layer_ranges(text: str | None, want: tuple[int | None, int | None]) -> None:
    assert parse_layer_range(text) == want


@pytest.mark.parametrize("text", ["a:b", "5:2", "-1:"])
def test_bad_layer_ranges(text: str) -> None:
    with pytest.raises(UserError, match="--layers"):
        parse_layer_range(text)
