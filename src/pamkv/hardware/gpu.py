"""Host GPU (H100, A100) as a roofline with achievable fractions per operator shape.

A 16-bit GEMM (M x K times K x N) is split into thread-block tiles; the library picks, among the
preset's tile shapes, the one that finishes first. With ``tiles = ceil(M/tm) ceil(N/tn)`` and
``waves = ceil(tiles / SMs)``, compute takes ``waves x 2 tm tn K / (per-SM peak x efficiency)``
(tile quantisation: a partial last wave costs a whole wave) and memory ``2 (KN + MK + MN) / (HBM
bandwidth x efficiency)`` (weights streamed once); the GEMM costs the larger, plus a launch
overhead. At a few tokens the weight stream dominates (flat time), at thousands compute does — the
two regimes of reference/gpu.md. Attention for the baselines that attend on the GPU is
FlashAttention (prefill, compute-bound) or FlashDecoding (decode, KV streaming). Tensor
parallelism adds ring all-reduces over NVLink; pipeline parallelism point-to-point activations.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from pamkv.config.devices import GpuDeviceConfig
from pamkv.config.models import ModelConfig
from pamkv.hardware.links import Link
from pamkv.model.size import weight_bytes


class Gpu:
    """One GPU of the host; implements the simulator's GPU pricing protocol."""

    def __init__(self, cfg: GpuDeviceConfig, nvlink: Link) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.nvlink = nvlink
        self._tiles = np.array([[t.m, t.n] for t in cfg.tiles], dtype=float)
        self._sm_rate = cfg.peak_flops / cfg.sms * cfg.compute_efficiency
        self._mem_rate = cfg.hbm_bandwidth * cfg.memory_efficiency
        self._gemm_memo: dict[tuple[int, int, int], float] = {}
        self._tile_list = [(float(t.m), float(t.n)) for t in cfg.tiles]

    # --- GEMM ---------------------------------------------------------------------------------
    def gemm_seconds_v(self, m: np.ndarray, n: np.ndarray, k: np.ndarray, dtype_bytes: float = 2.0) -> np.ndarray:
        """Seconds of GEMMs ``m x k`` times ``k x n`` (arrays broadcast together)."""
        m, n, k = (np.asarray(x, dtype=float)[..., None] for x in (m, n, k))
        tm, tn = self._tiles[:, 0], self._tiles[:, 1]
        waves = np.ceil(np.ceil(m / tm) * np.ceil(n / tn) / self.cfg.sms)
        compute = (waves * 2.0 * tm * tn * k / self._sm_rate).min(axis=-1)
        mem = (dtype_bytes * (k * n + m * k + m * n) / self._mem_rate)[..., 0]
        t = np.maximum(compute, mem) + self.cfg.launch_s
        return np.where((m[..., 0] > 0) & (n[..., 0] > 0) & (k[..., 0] > 0), t, 0.0)

    def gemm_seconds(self, m: int, n: int, k: int) -> float:
        """Seconds of one 16-bit GEMM (M x K times K x N) on one GPU (memoised per shape)."""
        key = (m, n, k)
        t = self._gemm_memo.get(key)
        if t is None:
            t = self._gemm_memo[key] = self._gemm_seconds_one(float(m), float(n), float(k))
        return t

    def _gemm_seconds_one(self, m: float, n: float, k: float, dtype_bytes: float = 2.0) -> float:
        """Seconds of one GEMM: :meth:`gemm_seconds_v` operation for operation on Python floats (same result)."""
        if not (m > 0 and n > 0 and k > 0):
            return 0.0
        sms = self.cfg.sms
        compute = min(
            float(math.ceil(float(math.ceil(m / tm)) * float(math.ceil(n / tn)) / sms)) * 2.0 * tm * tn * k
            / self._sm_rate
            for tm, tn in self._tile_list
        )
        mem = dtype_bytes * (k * n + m * k + m * n) / self._mem_rate
        return (compute if compute > mem else mem) + self.cfg.launch_s

    # --- attention -----------------------------------------------------------------------------
    def attention_seconds(self, flops: np.ndarray | float, nbytes: np.ndarray | float) -> np.ndarray:
        """Seconds of a FlashAttention/FlashDecoding kernel doing ``flops`` over ``nbytes`` of KV.

        Compute at FlashAttention's sustained fraction of peak, KV streaming at FlashDecoding's
        fraction of HBM bandwidth; the kernel is as slow as the slower, plus one launch.
        """
        f = np.asarray(flops, dtype=float)
        b = np.asarray(nbytes, dtype=float)
        c = self.cfg
        t = np.maximum(f / (c.peak_flops * c.attention_prefill_efficiency),
                       b / (c.hbm_bandwidth * c.attention_decode_efficiency)) + c.launch_s
        return np.where((f > 0) | (b > 0), t, 0.0)

    def attention_seconds_fn(self) -> Callable[[float, float], float]:
        """``(flops, nbytes) -> attention_seconds(flops, nbytes)`` on Python floats (the same operations, so
        the same result), for callers pricing one kernel at a time."""
        c = self.cfg
        compute = c.peak_flops * c.attention_prefill_efficiency
        stream = c.hbm_bandwidth * c.attention_decode_efficiency
        launch = c.launch_s

        def seconds(flops: float, nbytes: float) -> float:
            if not (flops > 0 or nbytes > 0):
                return 0.0
            f, b = flops / compute, nbytes / stream
            return (f if f > b else b) + launch

        return seconds

    # --- parallelism ---------------------------------------------------------------------------
    def allreduce_seconds(self, nbytes: float, gpus: int) -> float:
        """Seconds of a ring all-reduce of ``nbytes`` over ``gpus`` GPUs on NVLink.

        ``2 (g-1)/g x bytes / bandwidth`` on the wire and ``2 (g-1)`` message latencies.
        """
        if gpus <= 1 or nbytes <= 0:
            return 0.0
        steps = 2 * (gpus - 1)
        return steps * self.nvlink.cfg.latency_s + steps / gpus * nbytes / self.nvlink.bandwidth

    def pipeline_send_seconds(self, nbytes: float) -> float:
        """Seconds to hand ``nbytes`` of activations to the next pipeline stage (point to point)."""
        return float(self.nvlink.transfer_seconds(nbytes))

    # --- memory ----------------------------------------------------------------------------------
    @property
    def memory_reserve(self) -> float:
        """Fraction of HBM kept for activations and workspace."""
        return self.cfg.memory_reserve

    @property
    def cost_usd(self) -> float:
        """Estimated price of one GPU (cost per GB of HBM x HBM GB)."""
        return self.cfg.cost.usd_per_gb * self.cfg.hbm_gb

    @property
    def hbm_bytes(self) -> float:
        """HBM bytes (vendors' GB of DRAM are 2^30 bytes)."""
        return self.cfg.hbm_gb * 2.0**30

    def kv_capacity_bytes(self, model: ModelConfig, tp: int = 1, pp: int = 1, dtype: str = "fp16") -> float:
        """HBM bytes left for KV on one GPU after its share of the weights and the workspace reserve."""
        c = self.cfg
        free = self.hbm_bytes * (1.0 - c.memory_reserve) - weight_bytes(model, dtype, tp, pp)
        return max(0.0, free)

    # --- energy ------------------------------------------------------------------------------------
    def energy_j(self, flops: float, nbytes: float) -> float:
        """Joules of ``flops`` 16-bit FLOPs that stream ``nbytes`` from HBM (AttAcc's GPU table)."""
        e = self.cfg.energy
        return (flops * e.flop_pj + nbytes * 8.0 * (e.hbm_pj_per_bit + e.onchip_pj_per_bit)) * 1e-12

    def summary(self) -> dict[str, object]:
        """Headline figures."""
        c = self.cfg
        return {
            "capacity_gb": c.hbm_gb,
            "peak_external_bandwidth_gbps": self.nvlink.cfg.bandwidth / 1e9,
            "peak_internal_bandwidth_gbps": c.hbm_bandwidth / 1e9,
            "peak_flops": c.peak_flops,
            "sustained_flops": c.peak_flops * c.compute_efficiency,
            "sms": c.sms,
            "energy_pj_per_bit_external": self.nvlink.cfg.energy_pj_per_bit,
            "energy_pj_per_bit_in_place": c.energy.hbm_pj_per_bit,
            "energy_pj_per_flop": c.energy.flop_pj,
        }

