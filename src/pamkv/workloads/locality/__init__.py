"""Context-locality models: which KV tokens a decode step reads and how much attention each gets.

- :class:`LocalityModel` — the parametric generator (sinks, recent window, power-law heavy hitters,
  drifting hot set); ``start(n_tokens, rng, heads=, block_tokens=)`` -> stream; ``stream.step(1)`` ->
  mass per token or block, shape (heads, units).
- :class:`LocalityBatch` — the same generator over many contexts at once (``model.batch(rng)``):
  ``add``/``append``/``remove`` contexts, ``step(ids, steps)`` -> ragged ``(mass, offsets)``;
  :func:`open_batch` gives that interface for any source (:class:`StreamBatch` for a replay).
- :class:`RecordedLocality` — replays a recorded attention trace through the same interface.
- :func:`measure` — the reference figures (../shared/reference/locality.md) of any source.
- :class:`LocalityCurveBank` / :func:`measure_curves` — aggregate curves for a simulator.
- :func:`fit_locality` — fit the generator to measured figures.
"""

from pamkv.workloads.locality.batch import ContextBatch, LocalityBatch, StreamBatch, open_batch
from pamkv.workloads.locality.curves import LocalityCurveBank, LocalityCurves, measure_curves
from pamkv.workloads.locality.fit import FitResult, fit_locality
from pamkv.workloads.locality.metrics import FIGURE_NAMES, FigureAccumulator, measure
from pamkv.workloads.locality.model import (
    LocalityModel,
    LocalitySource,
    LocalityState,
    LocalityStream,
    unit_token_counts,
    units_for,
)
from pamkv.workloads.locality.reference import CITED_RANGES, REFERENCE, out_of_range, reference_mean
from pamkv.workloads.locality.replay import (
    LocalityRecorder,
    LocalityTrace,
    RecordedLocality,
    load_locality_trace,
    save_locality_trace,
)

__all__ = [
    "CITED_RANGES",
    "ContextBatch",
    "FIGURE_NAMES",
    "REFERENCE",
    "FigureAccumulator",
    "FitResult",
    "LocalityBatch",
    "LocalityCurveBank",
    "LocalityCurves",
    "LocalityModel",
    "LocalityRecorder",
    "LocalitySource",
    "LocalityState",
    "LocalityStream",
    "LocalityTrace",
    "RecordedLocality",
    "StreamBatch",
    "fit_locality",
    "load_locality_trace",
    "measure",
    "measure_curves",
    "out_of_range",
    "open_batch",
    "reference_mean",
    "save_locality_trace",
    "unit_token_counts",
    "units_for",
]
