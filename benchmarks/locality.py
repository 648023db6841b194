"""Speed of the batched locality generator (``LocalityBatch``) as the simulator drives it, and a check that
a change to it gives the same results.

Run: ``python benchmarks/locality.py --record PATH [--workload azure-conv] [--requests 300]`` runs one
simulation and saves every call it makes to its locality batch (``add``, ``append``, ``step``,
``remove``, ``compact``, with copies of the arguments). ``python benchmarks/locality.py --replay PATH``
replays such a file on a fresh batch with a fixed seed and prints the CPU time per kind of call (least
over ``--repeat`` replays) and two digests: of every returned array, and of the batch's whole state
(random generator, slot bookkeeping, flat storage) after every call. ``append`` and ``step`` are timed
apart for one context and for several. Replaying one file under two versions of the package (e.g. the
other with ``PYTHONPATH=<older checkout>/src``) compares their speed and checks they give bit-identical
results.

``--heads``, ``--block-tokens`` and ``--compact-min`` replay the same calls with other shapes (several
head rows, one unit per token, compaction as soon as holes outweigh live slots); ``--scale`` multiplies
every token count (e.g. 100 for contexts of ~100K tokens).
"""

from __future__ import annotations

import argparse
import hashlib
import pickle
import time
from collections import defaultdict
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np

from pamkv.workloads.locality import batch as batch_module
from pamkv.workloads.locality.batch import LocalityBatch

_RECORDED = ("__init__", "add", "append", "step", "remove", "compact")


def record(path: Path, system: str, model: str, workload: str, requests: int) -> None:
    """Run one simulation and pickle every call it makes to its locality batch (arguments copied)."""
    from pamkv.config.runs import RunConfig
    from pamkv.sim import simulate

    calls: list[tuple[Any, ...]] = []
    shapes: list[dict[str, Any]] = []
    orig = {n: getattr(LocalityBatch, n) for n in _RECORDED}
    depth = [0]  # calls the batch makes to itself (e.g. a compaction) are not the caller's

    def copy(a: Any) -> Any:
        return np.array(a, copy=True) if isinstance(a, (np.ndarray, list, tuple)) else a

    def wrap(name: str) -> Any:
        def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            if depth[0] == 0:
                if name == "__init__":
                    shapes.append({"config": args[0], **kwargs})
                else:
                    calls.append((name, *(copy(a) for a in args), {k: copy(v) for k, v in kwargs.items()}))
            depth[0] += 1
            try:
                return orig[name](self, *args, **kwargs)
            finally:
                depth[0] -= 1

        return method

    for name in orig:
        setattr(LocalityBatch, name, wrap(name))
    try:
        simulate(RunConfig(system=system, model=model, workload=workload, requests=requests))
    finally:
        for name, fn in orig.items():
            setattr(LocalityBatch, name, fn)
    if len(shapes) != 1:
        raise SystemExit(f"expected one locality batch in the run, found {len(shapes)}")
    path.write_bytes(pickle.dumps({"shape": shapes[0], "calls": calls}))
    counts: dict[str, int] = defaultdict(int)
    for c in calls:
        counts[c[0]] += 1
    print(f"recorded {len(calls)} calls to {path}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))


def _scaled(calls: list[tuple[Any, ...]], scale: int) -> list[tuple[Any, ...]]:
    """The calls with every token count (``add``'s prompt, ``append``'s new tokens) times ``scale``."""
    if scale == 1:
        return calls
    out = []
    for name, *args, kwargs in calls:
        if name == "add":
            args = [args[0], args[1] * scale]
        elif name == "append":
            args = [args[0], np.asarray(args[1]) * scale]
        out.append((name, *args, kwargs))
    return out


def state_bytes(batch: LocalityBatch) -> list[bytes]:
    """Everything a batch's future results depend on, as bytes: random generator, slot bookkeeping and
    the used part of the flat storage."""
    n = batch._slot_count
    parts = [
        repr(batch.rng.bit_generator.state).encode(),
        repr((list(batch._slot_of.items()), batch._free_slots, n, batch._end, batch._live_cap)).encode(),
        repr(batch._pareto.shape).encode(),
    ]
    for a in (batch._start[:n], batch._cap[:n], batch._units[:n], batch._tokens[:n],
              batch._pareto[:, : batch._end], batch._drift[:, : batch._end]):
        parts.append(np.ascontiguousarray(a).tobytes())
    return parts


def _fresh(shape: dict[str, Any], heads: int | None, block_tokens: int | None, seed: int) -> LocalityBatch:
    return LocalityBatch(
        shape["config"], np.random.default_rng(seed),
        heads=heads or shape.get("heads", 1), block_tokens=block_tokens or shape.get("block_tokens", 1),
    )


def digests(shape: dict[str, Any], calls: list[tuple[Any, ...]], heads: int | None, block_tokens: int | None,
            seed: int) -> tuple[str, str]:
    """Digests (hex, 16 digits) of every returned array and of the state after every call."""
    batch = _fresh(shape, heads, block_tokens, seed)
    h_out, h_state = hashlib.sha256(), hashlib.sha256()
    for name, *args, kwargs in calls:
        out = getattr(batch, name)(*args, **kwargs)
        if out is not None:
            for a in out:
                h_out.update(repr((a.dtype, a.shape)).encode())
                h_out.update(np.ascontiguousarray(a).tobytes())
        for part in state_bytes(batch):
            h_state.update(part)
    return h_out.hexdigest()[:16], h_state.hexdigest()[:16]


def _kind(name: str, args: list[Any]) -> str:
    """A call's kind: its name, and for ``append``/``step`` whether it lists one context or several."""
    if name in ("append", "step"):
        return f"{name} ({'one' if np.asarray(args[0]).size == 1 else 'many'})"
    return name


def timings(shape: dict[str, Any], calls: list[tuple[Any, ...]], heads: int | None, block_tokens: int | None,
            seed: int, repeat: int) -> dict[str, float]:
    """CPU seconds per kind of call over the whole sequence, least of ``repeat`` replays."""
    best: dict[str, float] = {}
    for _ in range(repeat):
        batch = _fresh(shape, heads, block_tokens, seed)
        spent: dict[str, float] = defaultdict(float)
        for name, *args, kwargs in calls:
            fn = getattr(batch, name)
            t0 = time.process_time()
            fn(*args, **kwargs)
            spent[_kind(name, args)] += time.process_time() - t0
        best = {k: min(v, best.get(k, v)) for k, v in spent.items()}
    return best


def replay(path: Path, repeat: int, seed: int, heads: int | None, block_tokens: int | None, scale: int,
           compact_min: int | None) -> None:
    """Replay recorded calls: digests of results and states, then CPU time per kind of call."""
    data = pickle.loads(path.read_bytes())
    calls = _scaled(data["calls"], scale)
    shape = data["shape"]
    patch = mock.patch.object(batch_module, "_COMPACT_MIN_UNITS", compact_min) if compact_min is not None else None
    if patch is not None:
        patch.start()
    try:
        out, state = digests(shape, calls, heads, block_tokens, seed)
        best = timings(shape, calls, heads, block_tokens, seed, repeat)
    finally:
        if patch is not None:
            patch.stop()
    counts: dict[str, int] = defaultdict(int)
    for name, *args, _ in calls:
        counts[_kind(name, args)] += 1
    print(f"replay of {path.name} (heads {heads or shape.get('heads', 1)}, block_tokens "
          f"{block_tokens or shape.get('block_tokens', 1)}, tokens x{scale}, seed {seed}; CPU, least of {repeat}):")
    for k in sorted(best):
        print(f"  {k:>13}: {counts[k]:6d} calls, {best[k]:7.3f} s, {best[k] / counts[k] * 1e3:7.3f} ms/call")
    print(f"  {'all':>13}: {sum(best.values()):7.3f} s")
    print(f"  digests: results {out}, states {state}")


def main() -> None:
    """Parse arguments and record or replay."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--record", type=Path, metavar="PATH", help="record one simulation's locality-batch calls")
    ap.add_argument("--replay", type=Path, metavar="PATH", help="replay recorded calls: digests and times")
    ap.add_argument("--system", default="pam", help="system of the recorded simulation")
    ap.add_argument("--model", default="llama-3-70b", help="model of the recorded simulation")
    ap.add_argument("--workload", default="azure-conv", help="workload of the recorded simulation")
    ap.add_argument("--requests", type=int, default=300, help="requests of the recorded simulation")
    ap.add_argument("--repeat", type=int, default=5, help="replays to take the least time of")
    ap.add_argument("--seed", type=int, default=0, help="seed of the replayed batch")
    ap.add_argument("--heads", type=int, default=None, help="replay with this many heads")
    ap.add_argument("--block-tokens", type=int, default=None, help="replay with units of this many tokens")
    ap.add_argument("--scale", type=int, default=1, help="replay with every token count times this")
    ap.add_argument("--compact-min", type=int, default=None, help="replay with this compaction threshold")
    args = ap.parse_args()
    if args.record:
        record(args.record, args.system, args.model, args.workload, args.requests)
    if args.replay:
        replay(args.replay, args.repeat, args.seed, args.heads, args.block_tokens, args.scale, args.compact_min)
    if not (args.record or args.replay):
        ap.print_help()


if __name__ == "__main__":
    main()
