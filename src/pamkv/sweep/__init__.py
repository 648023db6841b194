"""Design-space sweeps: run many simulations over a grid of run and system fields, collect one table.

``pamkv sweep GRID.yaml`` (or :func:`run_sweep`) reads a grid (:class:`~pamkv.config.sweeps.SweepConfig`),
checks it and every point before running (:func:`load_sweep`), derives system variants from ``system.``
keys (:func:`derive_system`), runs the points in this process, a local process pool or on a Ray
cluster, and writes ``results.parquet`` / ``results.csv`` with one row per point.
"""

from pamkv.sweep.grid import Point, SweepPlan, load_sweep
from pamkv.sweep.run import SweepResult, run_sweep
from pamkv.sweep.variants import OverrideError, derive_system, system_yaml

__all__ = ["OverrideError", "Point", "SweepPlan", "SweepResult", "derive_system", "load_sweep", "run_sweep",
           "system_yaml"]
