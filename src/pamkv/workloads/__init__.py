"""Workloads: request traces (real and synthetic), arrival processes, and context-locality models.

- :class:`Trace` — requests as numpy arrays (arrival_s, input_tokens, output_tokens, prefix hash ids).
- :func:`load_workload` — a built-in name, a workload YAML or a trace file -> :class:`Trace`.
- :func:`read_trace` — Azure, Mooncake, BurstGPT, length tables, generic CSV/JSONL, pamkv ``.npz``.
- :mod:`pamkv.workloads.locality` — which KV tokens each decode step reads, and how hot each is.
"""

from pamkv.workloads.arrivals import apply_arrivals, gamma_arrivals, poisson_arrivals
from pamkv.workloads.builtin import (
    DEFAULT_RATE_PER_S,
    DEFAULT_REQUESTS,
    build_trace,
    list_workloads,
    load_workload,
    packaged_trace,
    workload_config,
)
from pamkv.workloads.lengths import draw_lengths, fit_lognormal
from pamkv.workloads.native import save_trace
from pamkv.workloads.readers import FORMATS, detect_format, read_trace
from pamkv.workloads.trace import Trace, trace_stats

__all__ = [
    "DEFAULT_RATE_PER_S",
    "DEFAULT_REQUESTS",
    "FORMATS",
    "Trace",
    "apply_arrivals",
    "build_trace",
    "detect_format",
    "draw_lengths",
    "fit_lognormal",
    "gamma_arrivals",
    "list_workloads",
    "load_workload",
    "packaged_trace",
    "poisson_arrivals",
    "read_trace",
    "save_trace",
    "trace_stats",
    "workload_config",
]
