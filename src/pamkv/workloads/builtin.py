"""Named workloads (presets) and the one entry point that turns a name or a file into a :class:`Trace`.

``load_workload(NAME | PATH)`` accepts a packaged preset name (``pamkv.config.list_presets("workloads")``),
a workload YAML file (the :class:`WorkloadConfig` schema), or a trace file of any supported format.
A length-only file (no arrival times) gets Poisson arrivals at :data:`DEFAULT_RATE_PER_S` unless the
caller chooses a process. Randomness (synthetic lengths, sampling, arrivals) comes from
``np.random.default_rng`` streams derived from ``seed``: same seed, same trace, bit for bit.
"""

from __future__ import annotations

from dataclasses import replace
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np

from pamkv.config import list_presets, load
from pamkv.config.workloads import ArrivalConfig, ColumnMapping, TraceSource, WorkloadConfig
from pamkv.errors import UserError
from pamkv.workloads.arrivals import apply_arrivals
from pamkv.workloads.lengths import draw_lengths
from pamkv.workloads.native import read_npz
from pamkv.workloads.readers import FORMATS, read_trace
from pamkv.workloads.trace import Trace

DEFAULT_REQUESTS = 1000
# Default rate for requests without arrival times: the Azure conversation trace's measured mean rate
# (19,366 requests over 58 min, ../shared/data/README.md), a real production conversation service.
DEFAULT_RATE_PER_S = 5.5


def packaged_names() -> list[str]:
    """Names of the traces and length tables shipped in ``pamkv/data``."""
    folder = Path(str(resources.files("pamkv") / "data"))
    return sorted(p.stem for p in folder.glob("*.npz"))


@cache
def packaged_trace(name: str) -> Trace:
    """A trace or length table shipped with pamkv (see ``pamkv/data/ATTRIBUTION.md``)."""
    if name not in packaged_names():
        raise UserError(f"unknown packaged trace '{name}' (known: {', '.join(packaged_names())})")
    return read_npz(Path(str(resources.files("pamkv") / "data" / f"{name}.npz")), name=name)


def length_table(name: str, column: str) -> np.ndarray:
    """One column ('input' or 'output') of a packaged length table or trace, int64."""
    t = packaged_trace(name)
    return t.input_tokens if column == "input" else t.output_tokens


def list_workloads() -> list[str]:
    """Names of the built-in workloads."""
    return list_presets("workloads")


def workload_config(
    name_or_path: str | Path,
    *,
    format: str = "auto",
    columns: ColumnMapping | None = None,
) -> tuple[WorkloadConfig, Path | None]:
    """The workload config for a preset name, a workload YAML file, or a trace file, and the folder
    relative trace paths are resolved against (None for presets)."""
    text = str(name_or_path)
    if format not in FORMATS:
        raise UserError(f"unknown trace format '{format}' (known: {', '.join(FORMATS)})")
    if text in list_workloads():
        if format != "auto" or columns is not None:
            raise UserError(f"a trace format or column mapping applies to trace files, not the built-in '{text}'")
        return load(WorkloadConfig, "workloads", text), None
    path = Path(text)
    if text.endswith((".yaml", ".yml")):
        return load(WorkloadConfig, "workloads", path), path.resolve().parent
    if path.is_file():
        src = TraceSource(kind="trace", path=str(path.resolve()), format=format,  # type: ignore[arg-type]
                          columns=columns)
        cfg = WorkloadConfig(
            name=path.stem, description=f"trace file {path.name}", source=str(path), mode="online",
            requests=src, arrivals=ArrivalConfig(process="trace"),
        )
        return cfg, path.resolve().parent
    known = ", ".join(list_workloads())
    raise UserError(f"unknown workload '{text}': not a built-in ({known}) nor an existing file")


def build_trace(
    cfg: WorkloadConfig,
    *,
    base_dir: Path | None = None,
    requests: int | None = None,
    sample: bool = False,
    seed: int = 0,
    skip_bad_rows: bool = False,
    arrivals: ArrivalConfig | None = None,
    rate_scale: float = 1.0,
    start_s: float | None = None,
    end_s: float | None = None,
) -> Trace:
    """Materialise a workload: read or draw its requests, select, give them arrivals, scale the rate.

    Order: read (or draw ``requests`` synthetic ones) -> time window [start_s, end_s) -> first
    ``requests`` (or a seeded sample of that many with ``sample``) -> arrivals (``arrivals`` overrides
    the workload's) -> arrival rate times ``rate_scale``.
    """
    if requests is not None and requests < 1:
        raise UserError(f"requests must be >= 1, got {requests}")
    root = np.random.SeedSequence(seed)
    len_seed, pick_seed, arr_seed = root.spawn(3)
    src = cfg.requests
    count = requests if requests is not None else cfg.count
    if src.kind == "synthetic":
        n = count if count is not None else DEFAULT_REQUESTS
        rng = np.random.default_rng(len_seed)
        inp = draw_lengths(src.input, n, rng, length_table)
        out = draw_lengths(src.output, n, rng, length_table)
        trace = Trace.from_arrays(None, inp, out, name=cfg.name, source=cfg.source)
    else:
        if src.packaged is not None:
            trace = packaged_trace(src.packaged)
        else:
            assert src.path is not None
            p = Path(src.path)
            if not p.is_absolute() and base_dir is not None:
                p = base_dir / p
            trace = read_trace(p, format=src.format, skip_bad_rows=skip_bad_rows, columns=src.columns)
        trace = replace(trace, name=cfg.name, source=cfg.source if src.packaged else trace.source)
        if start_s is not None or end_s is not None:
            if trace.offline:
                raise UserError(f"workload '{cfg.name}' has no arrival times to take a time window of")
            trace = trace.window(start_s or 0.0, end_s)
        if count is not None:
            if sample:
                trace = trace.sample(min(count, len(trace)), int(pick_seed.generate_state(1)[0]))
            else:
                trace = trace.head(count)
    if len(trace) == 0:
        raise UserError(f"workload '{cfg.name}' has no requests left")
    process = arrivals or cfg.arrivals
    if process.process == "trace" and trace.offline:
        process = ArrivalConfig(process="poisson", rate_per_s=DEFAULT_RATE_PER_S)
    trace = apply_arrivals(trace, process, np.random.default_rng(arr_seed))
    if trace.offline:
        if rate_scale != 1.0:
            raise UserError(f"rate scale needs arrival times; workload '{cfg.name}' is an offline batch here")
        return trace
    return trace.scale_rate(rate_scale)


def load_workload(
    name_or_path: str | Path,
    *,
    requests: int | None = None,
    sample: bool = False,
    seed: int = 0,
    format: str = "auto",
    columns: ColumnMapping | None = None,
    skip_bad_rows: bool = False,
    arrivals: ArrivalConfig | None = None,
    rate_scale: float = 1.0,
    start_s: float | None = None,
    end_s: float | None = None,
) -> Trace:
    """The requests of a built-in workload, a workload YAML, or a trace file, ready to serve.

    See :func:`build_trace` for the options. Raises :class:`UserError` for any bad name, file or row.
    """
    cfg, base = workload_config(name_or_path, format=format, columns=columns)
    return build_trace(
        cfg, base_dir=base, requests=requests, sample=sample, seed=seed, skip_bad_rows=skip_bad_rows,
        arrivals=arrivals, rate_scale=rate_scale, start_s=start_s, end_s=end_s,
    )
