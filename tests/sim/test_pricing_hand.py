"""The iteration pricer and the engine against hand computations, on toy linear devices.

The toy devices make every formula checkable by hand: a tier reads tokens at a fixed rate, a GPU
GEMM costs 2mnk / F seconds. The real devices are tested against references in tests/hardware.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from pamkv.model import load_model
from pamkv.scheduling.requests import BatchLimits
from pamkv.sim.engine import Engine, EngineOptions, Requests
from pamkv.sim.pricing import PricerOptions, SystemPricer

FLOPS = 1e15  # toy GPU: 1 PFLOP/s for every GEMM
RATE = 1e9  # toy tier: bytes per second per device


@dataclass
class ToyTier:
    name: str
    devices: int
    pim: bool = True

    def attention_seconds(self, tokens: np.ndarray, token_bytes: float, coarse: bool) -> np.ndarray:
        return np.asarray(tokens) * token_bytes / RATE

    def fetch_seconds(self, tokens: np.ndarray, token_bytes: float) -> np.ndarray:
        return np.asarray(tokens) * token_bytes / RATE

    def link_seconds(self, nbytes: np.ndarray) -> np.ndarray:
        return np.zeros_like(np.asarray(nbytes, dtype=float))

    def energy_j(self, tokens: np.ndarray, token_bytes: float, computed: bool) -> np.ndarray:
        return np.asarray(tokens) * token_bytes * 1e-12

    def link_energy_j(self, nbytes: np.ndarray) -> np.ndarray:
        return np.zeros_like(np.asarray(nbytes, dtype=float))


class ToyGpu:
    def gemm_seconds(self, m: int, n: int, k: int) -> float:
        return 2.0 * m * n * k / FLOPS

    def attention_seconds(self, flops: np.ndarray, nbytes: np.ndarray) -> np.ndarray:
        return np.asarray(nbytes) / 3e12

    def allreduce_seconds(self, nbytes: float, gpus: int) -> float:
        return 0.0

    def energy_j(self, flops: float, nbytes: float) -> float:
        return flops * 1e-12


MODEL = load_model("llama-2-7b")
TOKEN_BYTES = 2 * MODEL.kv_heads * MODEL.head_dim * 2


def _pricer(devices: list[int], pp: int = 1, tp: int = 1) -> SystemPricer:
    tiers = [ToyTier(f"t{i}", d) for i, d in enumerate(devices)]
    return SystemPricer(MODEL, ToyGpu(), tiers, PricerOptions(tp=tp, pp=pp, attention_on_gpu=False, pamattention=True))


def _gemm_layer_seconds(m: int) -> float:
    h, f, hd = MODEL.hidden, MODEL.ffn_hidden, MODEL.head_dim
    weights = h * (MODEL.heads + 2 * MODEL.kv_heads) * hd + MODEL.heads * hd * h + 3 * h * f
    return 2.0 * m * weights / FLOPS


def test_one_request_one_device_is_the_hand_formula() -> None:
    pricer = _pricer([1])
    reads = np.array([[1000.0]])
    seconds, busy, _ = pricer.decode(1, reads, np.array([1000.0]))
    head = 2.0 * MODEL.vocab * MODEL.hidden / FLOPS
    attention = 1000 * TOKEN_BYTES / RATE
    expected = MODEL.layers * (_gemm_layer_seconds(1) + attention) + head
    assert seconds[0] == pytest.approx(expected, rel=1e-12)
    assert busy[0, 1] == pytest.approx(MODEL.layers * attention, rel=1e-12)


def test_two_identical_devices_split_the_work_evenly() -> None:
    one, two = _pricer([1]), _pricer([2])
    reads = np.array([[4096.0]])
    s1, b1, _ = one.decode(1, reads, reads[:, 0])
    s2, b2, _ = two.decode(1, reads, reads[:, 0])
    attention = MODEL.layers * 4096 * TOKEN_BYTES / RATE
    assert b1[0, 1] == pytest.approx(attention)
    assert b2[0, 1] == pytest.approx(attention / 2)
    assert s1[0] - s2[0] == pytest.approx(attention / 2)


def test_an_empty_tier_adds_no_time() -> None:
    reads_one = np.array([[500.0]])
    reads_two = np.array([[500.0, 0.0]])
    s1, _, e1 = _pricer([1]).decode(4, reads_one, reads_one[:, 0])
    s2, b2, e2 = _pricer([1, 1]).decode(4, reads_two, reads_two[:, 0])
    assert s2[0] == pytest.approx(s1[0])
    assert b2[0, 2] == 0.0
    assert e2[0] == pytest.approx(e1[0])


def test_slowest_tier_decides_the_layer() -> None:
    reads = np.array([[100.0, 300.0]])
    s, busy, _ = _pricer([1, 1]).decode(1, reads, reads.sum(axis=1))
    head = 2.0 * MODEL.vocab * MODEL.hidden / FLOPS
    assert s[0] == pytest.approx(MODEL.layers * (_gemm_layer_seconds(1) + 300 * TOKEN_BYTES / RATE) + head)


def test_steps_are_priced_independently() -> None:
    pricer = _pricer([1, 2])
    reads = np.array([[10.0, 20.0], [30.0, 40.0], [0.0, 5.0]])
    together, _, _ = pricer.decode(3, reads, reads.sum(axis=1))
    alone = [pricer.decode(3, reads[i : i + 1], reads[i : i + 1].sum(axis=1))[0][0] for i in range(3)]
    assert together == pytest.approx(alone)


class ListKV:
    """A KV side with one tier and unlimited room: every read on tier 0."""

    tier_names = ["t0"]
    imbalance = np.ones(1)

    def __init__(self) -> None:
        self.held: dict[int, int] = {}

    def fits(self, rid: int, tokens: int) -> bool:
        return True

    def free_tokens(self) -> int:
        return 10**12

    def add_tokens(self, rids: np.ndarray, tokens: np.ndarray) -> None:
        for r, n in zip(rids.tolist(), tokens.tolist(), strict=True):
            self.held[r] = self.held.get(r, 0) + n

    def add_decode_tokens(self, rids: np.ndarray, steps: np.ndarray | int) -> None:
        for r, n in zip(rids.tolist(), np.broadcast_to(steps, rids.shape).tolist(), strict=True):
            self.held[r] += n

    def free(self, rids: np.ndarray | int) -> None:
        for r in np.atleast_1d(rids).tolist():
            self.held.pop(r, None)

    def read_shares(self, rids: np.ndarray) -> np.ndarray:
        return np.ones((len(rids), 1))

    def window(self, steps: int) -> np.ndarray:
        return np.zeros(0)

    def below_top(self) -> bool:
        return False

    def occupancy(self) -> np.ndarray:
        return np.array([sum(self.held.values())])

    def tokens_lost(self) -> int:
        return 0


def test_engine_single_request_matches_the_sum_of_its_steps() -> None:
    pricer = _pricer([1])
    reqs = Requests(arrival=np.zeros(1), prompt=np.array([100]), output=np.array([11]))
    opts = EngineOptions(BatchLimits(8, 8192), sparsity_ratio=1.0, schedule_every=0, migration_overlapped=True,
                         max_sim_s=1e9)
    result = Engine(reqs, ListKV(), pricer, opts).run()
    prefill = pricer.prefill([100], [100])[0]
    decode = sum(pricer.decode(1, np.array([[100.0 + i]]), np.array([100.0 + i]))[0][0] for i in range(1, 11))
    assert result.metrics["ttft_s_p50"] == pytest.approx(prefill)
    assert result.metrics["e2e_s_p50"] == pytest.approx(prefill + decode)
    assert result.metrics["tpot_s_p50"] == pytest.approx(decode / 10)
    assert result.metrics["requests_completed"] == 1
    assert result.metrics["output_tokens"] == 11


def test_a_request_finishing_mid_segment_leaves_with_its_own_finish_time() -> None:
    """Two requests decode together; the shorter leaves after its last token, the other goes on alone,
    all in one segment (no iteration boundary at the completion)."""
    pricer = _pricer([1])
    reqs = Requests(arrival=np.zeros(2), prompt=np.array([100, 100]), output=np.array([4, 11]))
    opts = EngineOptions(BatchLimits(8, 8192), sparsity_ratio=1.0, schedule_every=0, migration_overlapped=True,
                         max_sim_s=1e9)
    result = Engine(reqs, ListKV(), pricer, opts).run()
    prefill = pricer.prefill([100, 100], [100, 100])[0]
    together = sum(pricer.decode(2, np.array([[2 * (100.0 + i)]]), np.array([2 * (100.0 + i)]))[0][0]
                   for i in range(1, 4))
    alone = sum(pricer.decode(1, np.array([[100.0 + i]]), np.array([100.0 + i]))[0][0] for i in range(4, 11))
    e2e = result.requests["e2e_s"].to_numpy()
    assert e2e[0] == pytest.approx(prefill + together)
    assert e2e[1] == pytest.approx(prefill + together + alone)
    assert result.timeline["kind"].tolist() == ["prefill", "decode"]
    assert result.metrics["output_tokens"] == 15


class CountingKV(ListKV):
    """ListKV that records the steps passed to each window and reports blocks below the top tier or not."""

    def __init__(self, below: bool) -> None:
        super().__init__()
        self.below = below
        self.windows: list[int] = []

    def window(self, steps: int) -> np.ndarray:
        self.windows.append(steps)
        return np.zeros(0)

    def below_top(self) -> bool:
        return self.below


@pytest.mark.parametrize(("below", "every"), [(True, 8), (False, 32)])
def test_windows_come_less_often_while_everything_is_in_the_top_tier(below: bool, every: int) -> None:
    reqs = Requests(arrival=np.zeros(1), prompt=np.array([100]), output=np.array([101]))  # 100 decode steps
    opts = EngineOptions(BatchLimits(8, 8192), sparsity_ratio=1.0, schedule_every=8, migration_overlapped=True,
                         max_sim_s=1e9, idle_window_factor=4)
    kv = CountingKV(below)
    Engine(reqs, kv, _pricer([1]), opts).run()
    assert kv.windows == [every] * (100 // every)
