"""``pamkv reproduce``: the paper's evaluation (§7, Figs 9-13) run on our simulator, beside its numbers.

Every figure is a set of simulator runs, reduced to the quantities the paper reports (speed-ups,
energy reductions), each compared with :mod:`pamkv.report.paper`. Runs are cached in-process by their
:class:`~pamkv.config.runs.RunConfig`, so figures that share points (offline, energy, ablation) and
SLO searches that share probes (one batch sweep serves every SLO) simulate each point once.

Derived quantities (docs/reproduce.md gives the reasons):

* **attention time** of an offline run = ``makespan_s - gpu_busy_s`` with
  ``gpu_busy_s = device_utilization["gpu"] x makespan_s``: the time the GPUs wait for the KV side
  (attention on every tier, the partial merge, migrations that stall a step). Offline runs have no
  idle time, so everything else is GPU work (prefill, projections, FFN, LM head).
* **KV-side (attention) energy** = ``energy_j`` less the prefill energy (metered at the pricer) and
  less the GPU's non-attention decode energy (the pricer's price of each decode step with no KV read,
  times the steps at that batch, from the run's timeline).
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import yaml

from pamkv.config.runs import RunConfig
from pamkv.errors import UserError
from pamkv.report.paper import FIGURES, PAPER_CLAIMS, PaperNumber, paper_numbers

if TYPE_CHECKING:
    from pamkv.sim.pricing import SystemPricer

FIGURE_NAMES: tuple[str, ...] = tuple(FIGURES)
TOLERANCE = 0.25
"""An ours/paper ratio outside [1 - 0.25, 1 + 0.25] is flagged (and explained in docs/reproduce.md)."""


# --- the plan: which points each figure runs ---------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    """Which runs make each figure; :func:`make_plan` gives the full and the quick plan."""

    quick: bool
    seed: int
    waves: int
    """Offline runs and SLO probes serve ``waves x batch`` requests, all queued at t = 0."""
    online_models: tuple[str, ...]
    online_datasets: tuple[str, ...]
    slos_ms: tuple[float, ...]
    max_batch: int
    """Largest batch an SLO search probes."""
    slo_resolution: int
    """The SLO search bisects until ``hi - lo <= max(1, lo // slo_resolution)``."""
    offline_points: tuple[tuple[str, int], ...]
    """(model, batch) of the offline figure, also used by the energy figure."""
    offline_datasets: tuple[str, ...]
    ablation: tuple[str, str, int, int]
    """(model, dataset, small batch, large batch)."""
    scaling: tuple[str, str, int, int]
    """(model, dataset, batch, requests)."""
    scaling_variants: tuple[tuple[int, int], ...]
    """(tp, pp) variants of the 8-GPU node."""


def make_plan(quick: bool = False, seed: int = 0) -> Plan:
    """The paper's points (full), or a subset with fewer requests that runs in minutes (quick)."""
    if quick:
        return Plan(
            quick=True, seed=seed, waves=1,
            online_models=("qwen2.5-32b", "llama-3-70b", "opt-175b"), online_datasets=("sharegpt", "wildchat"),
            slos_ms=(100.0, 150.0, 200.0), max_batch=1024, slo_resolution=4,
            offline_points=(("llama-3-70b", 256), ("opt-175b", 16)), offline_datasets=("arxiv-sum", "write-doc"),
            ablation=("llama-3-70b", "write-doc", 256, 512),
            scaling=("llama-3-70b", "write-doc", 256, 256), scaling_variants=((8, 1), (4, 2), (2, 4)),
        )
    return Plan(
        quick=False, seed=seed, waves=2,
        online_models=("qwen2.5-32b", "llama-3-70b", "opt-175b"),
        online_datasets=("sharegpt", "wildchat", "humaneval"),
        slos_ms=(100.0, 150.0, 200.0), max_batch=4096, slo_resolution=16,
        offline_points=(("llama-3-70b", 256), ("llama-3-70b", 512), ("llama-3-70b", 1024),
                        ("opt-175b", 16), ("opt-175b", 32), ("opt-175b", 64)),
        offline_datasets=("arxiv-sum", "write-doc"),
        ablation=("llama-3-70b", "arxiv-sum", 256, 1024),
        scaling=("llama-3-70b", "write-doc", 1024, 1024), scaling_variants=((8, 1), (4, 2), (2, 4)),
    )


# --- progress ----------------------------------------------------------------------------------------
class Progress(Protocol):
    """Where the figures report progress (the CLI draws rich progress bars)."""

    def begin(self, figure: str, total: int) -> None:
        """A figure starts; it will report ``total`` steps."""
        ...

    def step(self, label: str) -> None:
        """One step of the current figure is done."""
        ...


class _Silent:
    def begin(self, figure: str, total: int) -> None:
        pass

    def step(self, label: str) -> None:
        pass


# --- running and caching ----------------------------------------------------------------------------
class _PrefillMeter:
    """Passes the engine's pricing calls (:class:`pamkv.sim.engine.Pricer`) through; adds up the prefill energy."""

    def __init__(self, inner: SystemPricer) -> None:
        self.inner = inner
        self.resource_names = inner.resource_names
        self.prefill_j = 0.0

    def prefill(self, chunks: list[int], contexts: list[int]) -> tuple[float, np.ndarray, float]:
        seconds, busy, joules = self.inner.prefill(chunks, contexts)
        self.prefill_j += float(joules)
        return seconds, busy, joules

    def decode(
        self, batch: int | np.ndarray, reads: np.ndarray, context: np.ndarray, imbalance: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.inner.decode(batch, reads, context, imbalance)

    def migration(self, link_bytes: np.ndarray) -> tuple[float, float]:
        return self.inner.migration(link_bytes)


def run_point(run: RunConfig) -> dict[str, Any]:
    """Simulate one offline run; its metrics plus ``attention_s``, ``kv_energy_j`` and per-token forms.

    Units: seconds, joules, tokens per second (see the module docstring for the formulas).
    """
    import time

    from pamkv.sim import oom_metrics
    from pamkv.sim.build import assemble, describe

    wall0 = time.perf_counter()
    try:
        a = assemble(run)
    except UserError as exc:
        # A request that can never fit in the system's KV memory: out of memory, as the paper reports it.
        if "can never fit" not in str(exc):
            raise
        a, never_fits = None, str(exc)
    if a is None or a.oom:
        metrics = oom_metrics()
        if a is None:
            metrics.update(system=Path(run.system).stem, model=run.model, workload=run.workload, batch=run.batch,
                           oom=True, error=never_fits)
        else:
            metrics.update(describe(a))
        metrics.update(attention_s=math.nan, attention_s_per_token=math.nan, kv_energy_j=math.nan,
                       kv_energy_j_per_token=math.nan, prefill_energy_j=math.nan, decode_throughput_tokens_per_s=0.0)
        metrics["sim_wall_s"] = time.perf_counter() - wall0
        return metrics
    pricer = a.pricer
    meter = _PrefillMeter(pricer)
    a.engine.pricer = meter
    result = a.engine.run()
    m = dict(result.metrics)
    m.update(describe(a))
    makespan = float(m["makespan_s"])
    gpu_busy = float(m["device_utilization"].get("gpu", 0.0)) * makespan
    m["attention_s"] = max(makespan - gpu_busy, 0.0)
    tokens = max(float(m["output_tokens"]), 1.0)
    m["attention_s_per_token"] = m["attention_s"] / tokens
    tl = result.timeline
    decode = tl[tl["kind"] == "decode"] if len(tl) else tl
    tiers = len(pricer.resource_names) - 1
    gpu_decode_j = 0.0
    if len(decode):
        steps = decode.groupby("batch")["steps"].sum()
        for batch, k in steps.items():
            joules = pricer.decode(int(batch), np.zeros((1, tiers)), np.zeros(1))[2]  # GPU work, no KV read
            gpu_decode_j += float(joules[0]) * int(k)
    m["prefill_energy_j"] = meter.prefill_j
    m["kv_energy_j"] = float(m["energy_j"]) - meter.prefill_j - gpu_decode_j
    m["kv_energy_j_per_token"] = m["kv_energy_j"] / tokens
    m["sim_wall_s"] = time.perf_counter() - wall0
    return m


class Runner:
    """Runs and caches offline points; builds system variants as YAML files in a private temp dir."""

    def __init__(self, plan: Plan, run: Callable[[RunConfig], dict[str, Any]] = run_point) -> None:
        self.plan = plan
        self._run = run
        self.cache: dict[str, dict[str, Any]] = {}
        self.configs: dict[str, RunConfig] = {}
        self._tmp = tempfile.TemporaryDirectory(prefix="pamkv-reproduce-")

    def close(self) -> None:
        """Remove the temporary system variants."""
        self._tmp.cleanup()

    def variant(self, base: str, name: str, **update: Any) -> str:
        """Path of a system YAML: preset ``base`` with ``update`` applied, named ``name``."""
        from pamkv.config.systems import SystemConfig
        from pamkv.sim.build import load_system

        cfg = load_system(base).model_dump(mode="json")
        cfg.update(update, name=name)
        SystemConfig.model_validate(cfg)  # fail here, not deep in a run
        path = Path(self._tmp.name) / f"{name}.yaml"
        if not path.exists():
            path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        return str(path)

    def offline(self, system: str, model: str, workload: str, batch: int,
                requests: int | None = None) -> dict[str, Any]:
        """Metrics of ``batch`` requests decoding together (``waves x batch`` requests unless given)."""
        run = RunConfig(system=system, model=model, workload=workload, batch=batch,
                        requests=requests or self.plan.waves * batch, seed=self.plan.seed)
        key = run.model_dump_json()
        if key not in self.cache:
            self.cache[key] = self._run(run)
            self.configs[key] = run
        return self.cache[key]


# --- results -----------------------------------------------------------------------------------------
@dataclass
class Comparison:
    """Ours beside one of the paper's numbers (value or range; ``nan`` when not run)."""

    paper: PaperNumber
    ours_lo: float
    ours_hi: float
    detail: str = ""

    @property
    def ratio(self) -> tuple[float, float]:
        """ours / paper at each end (one value twice for a single number)."""
        return _div(self.ours_lo, self.paper.lo), _div(self.ours_hi, self.paper.hi)

    @property
    def flagged(self) -> bool:
        """True when either end differs from the paper by more than :data:`TOLERANCE`."""
        return any(math.isfinite(r) and abs(r - 1.0) > TOLERANCE for r in self.ratio) or any(
            math.isinf(r) for r in self.ratio)

    def ours_text(self) -> str:
        """Our value or range, in the paper's unit."""
        if math.isnan(self.ours_lo):
            return "not run"
        if self.paper.is_range:
            return f"{_fmt(self.ours_lo)}-{_fmt(self.ours_hi)}{self.paper.unit}"
        return f"{_fmt(self.ours_lo)}{self.paper.unit}"

    def ratio_text(self) -> str:
        """ours/paper, one value or one per end of a range."""
        lo, hi = self.ratio
        if math.isnan(lo):
            return "—"
        return f"{lo:.2f}" if not self.paper.is_range else f"{lo:.2f} / {hi:.2f}"

    def to_dict(self) -> dict[str, Any]:
        """JSON form: the paper's number, ours, and the ratios."""
        return {"key": self.paper.key, "label": self.paper.label, "unit": self.paper.unit,
                "section": self.paper.section, "paper_lo": self.paper.lo, "paper_hi": self.paper.hi,
                "ours_lo": self.ours_lo, "ours_hi": self.ours_hi, "ratio_lo": self.ratio[0],
                "ratio_hi": self.ratio[1], "flagged": self.flagged, "detail": self.detail}


@dataclass
class FigureResult:
    """One reproduced figure: per-point table, comparisons with the paper, checks, plotted series."""

    name: str
    title: str
    header: list[str]
    rows: list[list[Any]]
    comparisons: list[Comparison]
    checks: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    series_x: list[str] = field(default_factory=list)
    series: dict[str, list[float]] = field(default_factory=dict)
    series_ylabel: str = ""
    series_log: bool = True

    def to_dict(self) -> dict[str, Any]:
        """JSON form of everything in the figure."""
        return {"title": self.title, "header": self.header, "rows": self.rows,
                "comparisons": [c.to_dict() for c in self.comparisons], "checks": self.checks,
                "notes": self.notes, "series_x": self.series_x, "series": self.series,
                "series_ylabel": self.series_ylabel}


def _div(a: float, b: float) -> float:
    if b == 0 or math.isnan(a) or math.isnan(b):
        return math.nan
    return a / b


def _fmt(x: float) -> str:
    if math.isinf(x):
        return "inf"
    if not math.isfinite(x):
        return "—"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def _mean(values: Iterable[float]) -> float:
    """Arithmetic mean of the finite values (the paper's averages are arithmetic: 26.41 = mean of 4)."""
    v = [x for x in values if math.isfinite(x)]
    return float(np.mean(v)) if v else math.nan


def _compare(figure: str, ours: dict[str, tuple[float, float]],
             details: dict[str, str] | None = None) -> list[Comparison]:
    """One Comparison per paper number of ``figure``; keys we did not run get ``nan``."""
    details = details or {}
    out = []
    for p in paper_numbers(figure):
        lo, hi = ours.get(p.key, (math.nan, math.nan))
        out.append(Comparison(p, lo, hi, details.get(p.key, "")))
    return out


def _decode_tput(m: dict[str, Any]) -> float:
    return 0.0 if m.get("oom") else float(m.get("decode_throughput_tokens_per_s") or 0.0)


# --- fig9: online ------------------------------------------------------------------------------------
ONLINE_SYSTEMS = ("pam", "vllm-offload", "ls-pim")


def _meets(m: dict[str, Any], slo_ms: float) -> bool:
    """The SLO criterion of :mod:`pamkv.sim.slo`: not out of memory and TPOT p50 within the SLO."""
    tpot = m.get("tpot_s_p50")
    return not m.get("oom") and tpot is not None and math.isfinite(tpot) and tpot <= slo_ms / 1e3


def slo_search(runner: Runner, system: str, model: str, dataset: str) -> dict[float, tuple[int, dict[str, Any] | None]]:
    """Per SLO of the plan: the largest batch whose TPOT p50 meets it, and the peak-throughput run within it.

    One doubling sweep (1, 2, 4, ... up to ``max_batch``, stopping at the first batch that misses the
    loosest SLO) serves every SLO; each SLO then bisects between its last meeting and first missing
    batch. Probes are cached, so SLOs share them. The run returned is the probe of highest throughput
    among those that meet the SLO (usually the largest batch; a smaller batch can win when the
    larger one's output lengths leave a longer tail). Batch 0 (run ``None``) = no batch meets it.
    """
    plan = runner.plan
    tested: dict[int, dict[str, Any]] = {}

    def probe(b: int) -> dict[str, Any]:
        if b not in tested:
            tested[b] = runner.offline(system, model, dataset, b)
        return tested[b]

    loosest = max(plan.slos_ms)
    b = 1
    while b <= plan.max_batch:
        if not _meets(probe(b), loosest):
            break
        b *= 2
    out: dict[float, tuple[int, dict[str, Any] | None]] = {}
    for slo in plan.slos_ms:
        lo = max((x for x in tested if _meets(tested[x], slo)), default=0)
        above = [x for x in tested if x > lo and not _meets(tested[x], slo)]
        hi = min(above) if above else None
        if hi is not None:
            while hi - lo > max(1, lo // plan.slo_resolution):
                mid = (lo + hi) // 2
                if _meets(probe(mid), slo):
                    lo = mid
                else:
                    hi = mid
        meeting = [tested[x] for x in sorted(tested) if _meets(tested[x], slo)]
        best = max(meeting, key=lambda m: float(m["throughput_tokens_per_s"]), default=None)
        out[slo] = (lo, best)
    return out


def fig9(runner: Runner, progress: Progress) -> FigureResult:
    """Online: PAM's peak throughput within each TPOT SLO over vLLM-offload's and LS-PIM's."""
    plan = runner.plan
    progress.begin("fig9", len(plan.online_models) * len(plan.online_datasets) * len(ONLINE_SYSTEMS))
    rows: list[list[Any]] = []
    sp_vllm: list[tuple[str, str, float]] = []
    sp_ls: list[float] = []
    series_x: list[str] = []
    for model in plan.online_models:
        for dataset in plan.online_datasets:
            found = {}
            for system in ONLINE_SYSTEMS:
                found[system] = slo_search(runner, system, model, dataset)
                progress.step(f"{model} {dataset} {system}")
            for slo in plan.slos_ms:
                tput = {}
                cells: list[Any] = [model, dataset, slo]
                for system in ONLINE_SYSTEMS:
                    batch, m = found[system][slo]
                    tput[system] = float(m["throughput_tokens_per_s"]) if m else 0.0
                    cells += [batch, tput[system]]
                v = _speedup(tput["pam"], tput["vllm-offload"])
                ls = _speedup(tput["pam"], tput["ls-pim"])
                rows.append([*cells, v, ls])
                sp_vllm.append((model, dataset, v))
                sp_ls.append(ls)
                series_x.append(f"{_short(model)}/{dataset[:5]}/{slo:g}")
    ours: dict[str, tuple[float, float]] = {}

    def put(key: str, values: list[float]) -> None:
        if values:
            x = _mean(values)
            ours[key] = (x, x)

    put("avg:vllm-offload", [v for _, _, v in sp_vllm])
    put("avg:ls-pim", sp_ls)
    for model in plan.online_models:
        put(f"model:{model}", [v for m, _, v in sp_vllm if m == model])
    for dataset in plan.online_datasets:
        put(f"dataset:{dataset}", [v for _, d, v in sp_vllm if d == dataset])
    missed = sum(1 for _, _, v in sp_vllm if math.isinf(v)) + sum(1 for v in sp_ls if math.isinf(v))
    notes = [
        "Peak throughput = the highest end-to-end output tokens/s among the probed batches whose TPOT p50 "
        f"meets the SLO (probes serve {plan.waves} x batch requests queued at t=0; batches searched up to "
        f"{plan.max_batch}); 'batch' is the largest batch that meets it.",
        "Averages are arithmetic means of the per-point speed-ups; a point where the baseline meets the "
        "SLO at no batch (speed-up inf) is left out of the averages.",
    ]
    if missed:
        notes.append(f"{missed} point(s) where a baseline met the SLO at no batch (inf) were left out of averages.")
    if plan.quick:
        notes.append("--quick: ShareGPT and WildChat, one wave per probe, batches up to 1024, coarse bisection.")
    header = ["model", "dataset", "SLO ms"]
    for system in ONLINE_SYSTEMS:
        header += [f"{system} batch", f"{system} tok/s"]
    header += ["PAM/vLLM-offload", "PAM/LS-PIM"]
    series = {"over vLLM-offload": [v for _, _, v in sp_vllm], "over LS-PIM": sp_ls}
    return FigureResult("fig9", FIGURES["fig9"], header, rows, _compare("fig9", ours), notes=notes,
                        series_x=series_x, series=series,
                        series_ylabel="speed-up (peak throughput within SLO)")


def _speedup(ours: float, base: float) -> float:
    if base <= 0:
        return math.inf if ours > 0 else math.nan
    return ours / base


def _short(model: str) -> str:
    return {"qwen2.5-32b": "qwen32b", "llama-3-70b": "llama70b", "opt-175b": "opt175b"}.get(model, model)


# --- fig10: offline ----------------------------------------------------------------------------------
def _offline_runs(runner: Runner, systems: Sequence[str], progress: Progress,
                  figure: str) -> dict[tuple[str, str, int, str], dict[str, Any]]:
    plan = runner.plan
    points = [(m, d, b) for m, b in plan.offline_points for d in plan.offline_datasets]
    progress.begin(figure, len(points) * len(systems))
    out = {}
    for model, dataset, batch in points:
        for system in systems:
            out[(model, dataset, batch, system)] = runner.offline(system, model, dataset, batch)
            progress.step(f"{model} {dataset} b{batch} {system}")
    return out


def fig10(runner: Runner, progress: Progress) -> FigureResult:
    """Offline: PAM's decode throughput over vLLM-offload's at the paper's fixed batches; AttAcc's OOM.

    Beside the comparison, a sensitivity column: PAM over vLLM-offload attending every token (the
    paper does not say whether its vLLM baseline used the sparsity; see docs/reproduce.md).
    """
    plan = runner.plan
    dense = runner.variant("vllm-offload", "vllm-offload-dense", sparsity="dense", sparsity_ratio=1.0)
    systems = ("pam", "vllm-offload", dense, "attacc")
    runs = _offline_runs(runner, systems, progress, "fig10")
    rows: list[list[Any]] = []
    per_key: dict[str, list[float]] = {}
    xs: list[str] = []
    dec: list[float] = []
    e2e: list[float] = []
    vs_dense: list[float] = []
    oom = 0
    for model, batch in plan.offline_points:
        for dataset in plan.offline_datasets:
            pam, vllm, vdense, att = (runs[(model, dataset, batch, s)] for s in systems)
            s_dec = _speedup(_decode_tput(pam), _decode_tput(vllm))
            s_e2e = _speedup(float(pam["throughput_tokens_per_s"]), float(vllm["throughput_tokens_per_s"]))
            s_dense = _speedup(_decode_tput(pam), _decode_tput(vdense))
            kv_share = _div(float(vllm.get("attention_s", math.nan)), float(vllm.get("decode_s") or math.nan))
            oom += bool(att.get("oom"))
            rows.append([model, dataset, batch, _decode_tput(pam), _decode_tput(vllm), s_dec,
                         float(pam["throughput_tokens_per_s"]), float(vllm["throughput_tokens_per_s"]), s_e2e,
                         100.0 * kv_share, _div(1.0, 1.0 - kv_share), s_dense,
                         "OOM" if att.get("oom") else f"{_decode_tput(att):,.0f}"])
            per_key.setdefault(f"{model}/{dataset}", []).append(s_dec)
            xs.append(f"{_short(model)}/{dataset}/b{batch}")
            dec.append(s_dec)
            e2e.append(s_e2e)
            vs_dense.append(s_dense)
    ours = {k: (_mean(v), _mean(v)) for k, v in per_key.items()}
    if ours:
        avg = _mean(x for x, _ in ours.values())
        ours["avg"] = (avg, avg)
    points = len(rows)
    checks = [{"claim": PAPER_CLAIMS["fig10"], "holds": oom > points / 2,
               "detail": f"AttAcc out of memory in {oom} of {points} offline runs"}]
    notes = [
        "Speed-up = PAM's decode throughput (decode tokens / decode seconds) over vLLM-offload's; prefill "
        "is the same GPU work on every system, the paper's gains are decode effects. End-to-end "
        "throughput (output tokens / makespan) is shown beside it.",
        f"Each run: {plan.waves} x batch requests queued at t=0 (the batch refills as requests finish). "
        "Per model and dataset the paper's number is compared with the mean over the batches.",
        "'vLLM KV %' = share of vLLM-offload's decode time spent on attention and KV fetches; 'bound' = "
        "1 / (1 - that share), the largest decode speed-up any KV-side design can give over it (the "
        "GPU's own work stays). 'PAM/vLLM dense' is a sensitivity reading: the same baseline attending "
        "every token.",
    ]
    if plan.quick:
        notes.append("--quick: LLaMA3-70B at batch 256 and OPT-175B at batch 16 only, one wave of requests.")
    header = ["model", "dataset", "batch", "PAM decode tok/s", "vLLM decode tok/s", "speed-up (decode)",
              "PAM e2e tok/s", "vLLM e2e tok/s", "speed-up (e2e)", "vLLM KV %", "bound", "PAM/vLLM dense (decode)",
              "AttAcc decode tok/s"]
    return FigureResult("fig10", FIGURES["fig10"], header, rows, _compare("fig10", ours), checks, notes,
                        xs, {"decode": dec, "end-to-end": e2e, "decode, vLLM dense": vs_dense},
                        "PAM over vLLM-offload")


# --- fig11: energy -----------------------------------------------------------------------------------
def fig11(runner: Runner, progress: Progress) -> FigureResult:
    """Energy per output token: how much lower PAM's is than each baseline's, over the offline points.

    Compared on the KV side (attention, KV reads and moves): the paper's energy comes from its memory
    simulators (Ramulator 2.0, OpenSSD), which see no GPU projection/FFN work. Totals are shown beside.
    """
    plan = runner.plan
    systems = ("pam", "vllm-offload", "l-pim", "ls-pim")
    runs = _offline_runs(runner, systems, progress, "fig11")
    rows: list[list[Any]] = []
    red: dict[str, list[float]] = {s: [] for s in systems[1:]}
    xs: list[str] = []
    for model, batch in plan.offline_points:
        for dataset in plan.offline_datasets:
            r = {s: runs[(model, dataset, batch, s)] for s in systems}
            e = {s: float(r[s]["energy_j_per_token"]) for s in systems}
            kv = {s: float(r[s]["kv_energy_j_per_token"]) for s in systems}
            lower = {s: 100.0 * (1.0 - _div(e["pam"], e[s])) for s in systems[1:]}
            lower_kv = {s: 100.0 * (1.0 - _div(kv["pam"], kv[s])) for s in systems[1:]}
            for s in systems[1:]:
                red[s].append(lower_kv[s])
            rows.append([model, dataset, batch, *(kv[s] * 1e3 for s in systems), *(lower_kv[s] for s in systems[1:]),
                         *(e[s] for s in systems), *(lower[s] for s in systems[1:])])
            xs.append(f"{_short(model)}/{dataset}/b{batch}")
    ours = {}
    for key, values in red.items():
        v = [x for x in values if math.isfinite(x)]
        if v:
            ours[key] = (min(v), max(v))
    notes = [
        "KV-side energy per output token = the run's joules less prefill and less the GPU's non-attention "
        "decode work (projections, FFN, LM head), over output tokens: KV reads, in-place attention, "
        "partials and fetches over links, migrations, and GPU attention kernels (vLLM). The paper's energy "
        "comes from Ramulator 2.0 / OpenSSD (memory side), so this is what its percentages compare.",
        "Total energy per output token (all joules, GPU included) and its reductions are shown beside.",
        "Ranges are min-max over the offline points (models x batches x datasets), as the paper gives them.",
    ]
    header = ["model", "dataset", "batch", *(f"{s} KV mJ/tok" for s in systems),
              *(f"% lower KV vs {s}" for s in systems[1:]), *(f"{s} total J/tok" for s in systems),
              *(f"% lower total vs {s}" for s in systems[1:])]
    return FigureResult("fig11", FIGURES["fig11"], header, rows, _compare("fig11", ours), notes=notes, series_x=xs,
                        series={f"vs {s} (KV side)": red[s] for s in systems[1:]},
                        series_ylabel="% lower KV-side energy per output token", series_log=False)


# --- fig12: ablation ---------------------------------------------------------------------------------
ABLATION_SYSTEMS = ("pam", "pam-no-pamattention", "pam-no-mapping", "pam-no-scheduling", "ls-pim")


def fig12(runner: Runner, progress: Progress) -> FigureResult:
    """Ablation: attention speed-up of PAM and its ablations with LS-PIM = 1, small and large batch."""
    model, dataset, small, large = runner.plan.ablation
    progress.begin("fig12", 2 * len(ABLATION_SYSTEMS))
    rows: list[list[Any]] = []
    ours: dict[str, tuple[float, float]] = {}
    series: dict[str, list[float]] = {}
    for size, batch in (("small", small), ("large", large)):
        attn = {}
        for system in ABLATION_SYSTEMS:
            m = runner.offline(system, model, dataset, batch)
            attn[system] = float(m["attention_s_per_token"])
            progress.step(f"{size} b{batch} {system}")
        base = attn["ls-pim"]
        vs_ls = {s: _div(base, attn[s]) for s in ABLATION_SYSTEMS}
        series[f"{size} batch ({batch})"] = [vs_ls[s] for s in ABLATION_SYSTEMS]
        for s in ABLATION_SYSTEMS:
            pam_over = _div(attn[s], attn["pam"])
            rows.append([size, batch, s, attn[s] * 1e3, vs_ls[s], pam_over])
            if s != "pam":
                ours[f"{size}:pam/{s}"] = (pam_over, pam_over)
    notes = [
        f"{model} on {dataset}, offline, batch {small} (small) and {large} (large); the paper does not "
        "name the model or the batches of its ablation.",
        "Attention time = makespan - GPU busy time (device_utilization['gpu'] x makespan): the decode "
        "time the GPUs wait for the KV side (attention on every tier, merge, stalling migrations), per "
        "output token. Speed-up of X over Y = Y's attention time / X's.",
    ]
    header = ["batch size", "batch", "system", "attention ms/token", "speed-up (LS-PIM = 1)", "PAM over it"]
    return FigureResult("fig12", FIGURES["fig12"], header, rows, _compare("fig12", ours), notes=notes,
                        series_x=list(ABLATION_SYSTEMS), series=series, series_ylabel="attention speed-up (LS-PIM = 1)")


# --- fig13: scaling ----------------------------------------------------------------------------------
def fig13(runner: Runner, progress: Progress) -> FigureResult:
    """Scaling: PAM over L-PIM on TP/PP variants of the 8-GPU node (Write_doc, fixed requests)."""
    model, dataset, batch, requests = runner.plan.scaling
    variants = runner.plan.scaling_variants
    progress.begin("fig13", 2 * len(variants))
    rows: list[list[Any]] = []
    speedups: list[float] = []
    pam_tput: list[float] = []
    xs: list[str] = []
    for tp, pp in variants:
        t = {}
        for base in ("pam", "l-pim"):
            path = runner.variant(base, f"{base}-tp{tp}pp{pp}", tp=tp, pp=pp)
            t[base] = _decode_tput(runner.offline(path, model, dataset, batch, requests))
            progress.step(f"TP{tp}xPP{pp} {base}")
        s = _speedup(t["pam"], t["l-pim"])
        rows.append([f"TP{tp} x PP{pp}", t["pam"], t["l-pim"], s])
        speedups.append(s)
        pam_tput.append(t["pam"])
        xs.append(f"TP{tp}xPP{pp}")
    finite = [s for s in speedups if math.isfinite(s)]
    ours = {"l-pim": (min(finite), max(finite))} if finite else {}
    order = sorted(range(len(variants)), key=lambda i: variants[i][1])  # by pipeline depth
    ordered = [pam_tput[i] for i in order]
    holds = all(a >= b for a, b in zip(ordered, ordered[1:], strict=False))
    checks = [{"claim": PAPER_CLAIMS["fig13"], "holds": holds,
               "detail": "PAM decode tok/s by PP depth: " + ", ".join(f"{xs[i]} {pam_tput[i]:,.0f}" for i in order)}]
    notes = [f"{model} on {dataset}: {requests} requests, batch {batch}; speed-up in decode throughput; "
             "the paper does not name the model or batch of this experiment."]
    header = ["parallelism", "PAM decode tok/s", "L-PIM decode tok/s", "PAM/L-PIM"]
    return FigureResult("fig13", FIGURES["fig13"], header, rows, _compare("fig13", ours), checks, notes,
                        xs, {"PAM over L-PIM": speedups}, "speed-up (decode throughput)")


BUILDERS: dict[str, Callable[[Runner, Progress], FigureResult]] = {
    "fig9": fig9, "fig10": fig10, "fig11": fig11, "fig12": fig12, "fig13": fig13,
}


# --- the whole reproduction --------------------------------------------------------------------------
def check_figures(names: Sequence[str]) -> list[str]:
    """The requested figure labels in order, all figures when none; UserError for an unknown one."""
    if not names:
        return list(FIGURE_NAMES)
    bad = [n for n in names if n not in BUILDERS]
    if bad:
        raise UserError(f"unknown figure '{bad[0]}' (choose from {', '.join(FIGURE_NAMES)})")
    return list(dict.fromkeys(names))


def reproduce(names: Sequence[str], plan: Plan, progress: Progress | None = None,
              runner: Runner | None = None) -> dict[str, FigureResult]:
    """Build the requested figures (label -> result), running and caching the simulations they need."""
    own = runner is None
    runner = runner or Runner(plan)
    try:
        return {name: BUILDERS[name](runner, progress or _Silent()) for name in check_figures(names)}
    finally:
        if own:
            runner.close()


def to_json(figures: dict[str, FigureResult], plan: Plan, runner: Runner | None = None) -> dict[str, Any]:
    """Everything as one JSON-ready dict: the plan, each figure, and each run's key metrics."""
    out: dict[str, Any] = {"plan": asdict(plan), "tolerance": TOLERANCE,
                           "figures": {k: f.to_dict() for k, f in figures.items()}}
    if runner is not None:
        keep = ("system", "model", "workload", "batch", "requests", "oom", "throughput_tokens_per_s",
                "decode_throughput_tokens_per_s", "tpot_s_p50", "ttft_s_p50", "energy_j_per_token",
                "kv_energy_j_per_token", "attention_s", "prefill_s", "decode_s", "makespan_s",
                "device_utilization", "migrated_bytes", "tokens_lost", "sim_wall_s")
        out["runs"] = [{k: m.get(k) for k in keep} | {"run": runner.configs[key].model_dump()}
                       for key, m in runner.cache.items()]
    return out


# --- rendering ---------------------------------------------------------------------------------------
def cell(value: Any) -> str:
    """A table cell: numbers with sensible precision, everything else as text."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if isinstance(value, float | np.floating):
        return _fmt(float(value))
    return str(value)


def comparison_rows(fig: FigureResult) -> list[list[str]]:
    """Rows of the ours-beside-paper table: what, paper, ours, ours/paper, flag, source."""
    return [[c.paper.label, c.paper.text(), c.ours_text(), c.ratio_text(),
             ">25% off" if c.flagged else ("ok" if math.isfinite(c.ratio[0]) else "—"), c.paper.section]
            for c in fig.comparisons]


COMPARISON_HEADER = ["result", "paper", "ours", "ours/paper", "", "paper source"]


def rich_tables(fig: FigureResult) -> list[Any]:
    """The figure as rich renderables: its comparison table, its per-point table, checks and notes."""
    from rich.table import Table
    from rich.text import Text

    comp = Table(title=f"{fig.name}: {fig.title}", title_justify="left")
    for i, h in enumerate(COMPARISON_HEADER):
        comp.add_column(h, justify="left" if i in (0, 5) else "right")
    for row, c in zip(comparison_rows(fig), fig.comparisons, strict=True):
        comp.add_row(*row, style="yellow" if c.flagged else None)
    detail = Table(title=f"{fig.name}: per point", title_justify="left")
    for i, h in enumerate(fig.header):
        detail.add_column(h, justify="left" if i < 2 else "right")
    for r in fig.rows:
        detail.add_row(*(cell(v) for v in r))
    out: list[Any] = [comp, detail]
    for chk in fig.checks:
        verdict = "holds" if chk["holds"] else "does not hold"
        out.append(Text(f"paper: {chk['claim']} — ours: {verdict} ({chk['detail']})"))
    return out


def plot(fig: FigureResult) -> Any:
    """A matplotlib figure: left, our per-point series; right, ours beside the paper with ours/paper."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    f, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.6), gridspec_kw={"width_ratios": [1.4, 1]})
    n = len(fig.series_x)
    k = max(1, len(fig.series))
    width = 0.8 / k
    for i, (name, ys) in enumerate(fig.series.items()):
        ys_plot = [y if math.isfinite(y) else np.nan for y in ys]
        ax1.bar(np.arange(n) + (i - (k - 1) / 2) * width, ys_plot, width, label=name)
    ax1.set_xticks(np.arange(n))
    ax1.set_xticklabels(fig.series_x, rotation=60, ha="right", fontsize=7)
    ax1.set_ylabel(fig.series_ylabel)
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    if fig.series_log and any(math.isfinite(y) and y > 0 for ys in fig.series.values() for y in ys):
        ax1.set_yscale("log")
        _plain_log(ax1.yaxis, plain)
    ax1.axhline(1.0 if fig.series_log else 0.0, color="grey", lw=0.8)
    ax1.legend(fontsize=8)
    ax1.set_title("ours, per point", fontsize=10)

    comps = fig.comparisons
    y = np.arange(len(comps))[::-1]
    for yi, c in zip(y, comps, strict=True):
        ax2.plot([c.paper.lo, c.paper.hi], [yi + 0.15] * 2, color="tab:grey", lw=5, solid_capstyle="round")
        ax2.plot([c.paper.lo], [yi + 0.15], "s", color="tab:grey", ms=5)
        if math.isfinite(c.ours_lo) and math.isfinite(c.ours_hi):
            ax2.plot([c.ours_lo, c.ours_hi], [yi - 0.15] * 2, color="tab:blue", lw=5, solid_capstyle="round")
            ax2.plot([c.ours_lo], [yi - 0.15], "o", color="tab:blue", ms=5)
        ax2.annotate(f"ours/paper {c.ratio_text()}", (1.01, yi), xycoords=("axes fraction", "data"),
                     fontsize=7, va="center", color="tab:red" if c.flagged else "black")
    ax2.set_yticks(y)
    ax2.set_yticklabels([c.paper.label for c in comps], fontsize=7)
    unit = comps[0].paper.unit if comps else "x"
    if unit == "x":
        ax2.set_xscale("log")
        _plain_log(ax2.xaxis, plain)
    ax2.set_xlabel("speed-up (x)" if unit == "x" else "% lower")
    ax2.plot([], [], color="tab:grey", lw=5, label="paper")
    ax2.plot([], [], color="tab:blue", lw=5, label="ours")
    ax2.legend(fontsize=8, loc="lower right")
    ax2.set_title("ours beside the paper", fontsize=10)
    f.suptitle(f"{fig.name}: {fig.title}", fontsize=11)
    f.subplots_adjust(wspace=0.9, bottom=0.3)
    return f


def _plain_log(axis: Any, formatter: Any) -> None:
    """Log axis ticks at 1, 2, 5 x 10^k, labelled as plain numbers, minor ticks unlabelled."""
    from matplotlib.ticker import LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(formatter)
    axis.set_minor_formatter(NullFormatter())


def write_outputs(figures: dict[str, FigureResult], plan: Plan, out: Path, data: dict[str, Any]) -> Path:
    """Write ``out/<figure>.png``, ``out/reproduce.json`` and ``out/reproduce.html``; returns the HTML path."""
    from pamkv.output import write_json
    from pamkv.report.html import Report

    mode = "quick" if plan.quick else "full"
    rep = Report(f"pamkv reproduce ({mode}): PAM's evaluation beside the paper's numbers")
    rep.text("Each figure compares our simulator's result with the number the PAM paper reports "
             "(arXiv 2602.11521, §7); ours/paper beyond ±25% is flagged and explained in docs/reproduce.md.",
             note=True)
    for name, fig in figures.items():
        rep.heading(f"{name}: {fig.title}")
        rep.table(COMPARISON_HEADER, comparison_rows(fig))
        rep.figure(plot(fig), name, f"{name}: ours per point (left), ours beside the paper (right)")
        for chk in fig.checks:
            rep.text(f"Paper: {chk['claim']}. Ours: {'holds' if chk['holds'] else 'does not hold'} ({chk['detail']}).")
        for note in fig.notes:
            rep.text(note)
        rep.table(fig.header, [[cell(v) for v in r] for r in fig.rows])
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot write to {out}: {exc.strerror or exc}") from exc
    html = rep.write(out, "reproduce.html")
    write_json(data, out / "reproduce.json")
    return html
