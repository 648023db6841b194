"""Where a sweep's points run: in this process, in a local pool of worker processes, or on a Ray cluster.

Every executor runs the same :func:`~pamkv.sweep.worker.run_task` on the same tasks and returns the
outcomes in point order, so the results do not depend on the executor or the number of workers
(each point is an independent, seeded simulation).
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from pamkv.errors import UserError
from pamkv.sweep.worker import Outcome, Task, run_task

OnDone = Callable[[Outcome], None]
TaskFn = Callable[[Task], Outcome]

RAY_INSTALL_HINT = 'pip install "pamkv[ray]"'
# A point whose worker process dies (killed for memory, a crash in native code) is retried once, alone
# in a fresh worker; if that one dies too, the point is recorded as failed.
MAX_ATTEMPTS = 2
DIED = "the worker process running this point died (out of memory or killed?)"


def available_cpus() -> int:
    """CPUs this process may run on (the default number of local workers)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def run_serial(tasks: Sequence[Task], on_done: OnDone | None = None, *, fn: TaskFn = run_task) -> list[Outcome]:
    """Run every task in this process, one after the other (``fn``: what runs a task)."""
    outcomes = []
    for task in tasks:
        outcome = fn(task)
        outcomes.append(outcome)
        if on_done:
            on_done(outcome)
    return outcomes


def _pool_context() -> Any:
    """A safe way to start workers: a forkserver that has imported the simulator once, else spawn.

    Plain fork is avoided: the driver runs a progress-bar thread, and forking a threaded process can
    leave a worker holding a lock that no thread will release.
    """
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["pamkv.sweep.worker"])
        return ctx
    return mp.get_context("spawn")


def run_local(tasks: Sequence[Task], workers: int, on_done: OnDone | None = None, *,
              fn: TaskFn = run_task) -> list[Outcome]:
    """Run the tasks on ``workers`` local processes (serially in this process for one worker).

    ``fn`` runs one task (:func:`run_task`; another module-level function for tests). A point whose
    worker dies is retried once alone; if it dies again its outcome says so.
    """
    if workers < 1:
        raise UserError(f"--workers must be at least 1 (got {workers})")
    if workers == 1 or len(tasks) <= 1:
        return run_serial(tasks, on_done, fn=fn)
    outcomes: dict[int, Outcome] = {}

    def finish(outcome: Outcome) -> None:
        outcomes[outcome.index] = outcome
        if on_done:
            on_done(outcome)

    pending: deque[Task] = deque(tasks)
    suspects: list[Task] = []  # in flight when a worker died: any of them may have killed it
    ctx = _pool_context()

    def retry_alone() -> bool:
        """Run each suspect again, alone in a fresh worker; one that dies again is recorded as failed."""
        survived = False
        for task in sorted(suspects, key=lambda t: t.index):
            with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
                try:
                    finish(pool.submit(fn, task).result())
                    survived = True
                except BrokenProcessPool:
                    finish(Outcome(task.index, None, DIED, 0.0))
        suspects.clear()
        return survived

    while pending:
        with ProcessPoolExecutor(max_workers=min(workers, len(pending)), mp_context=ctx) as pool:
            running: dict[Future[Outcome], Task] = {}
            broken = False
            while (pending or running) and not broken:
                while pending and len(running) < workers:
                    task = pending.popleft()
                    running[pool.submit(fn, task)] = task
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    try:
                        outcome = future.result()
                    except BrokenProcessPool:
                        broken = True
                        continue
                    finish(outcome)
                    del running[future]
            suspects.extend(running.values())
        if broken and not outcomes and not retry_alone():
            # No point has finished, and each one in flight died again alone: workers cannot run here.
            raise UserError(
                "the worker processes die before finishing any point: rerun with --workers 1 to see why (a "
                "script that calls run_sweep must do so under `if __name__ == \"__main__\":`)")
    retry_alone()
    return [outcomes[t.index] for t in tasks]


def require_ray() -> Any:
    """The ``ray`` module, imported on demand; a one-line error saying how to install it when missing."""
    try:
        import ray
    except ImportError:
        raise UserError(f"--ray needs the Ray package, which is not installed: {RAY_INSTALL_HINT}") from None
    return ray


def run_ray(tasks: Sequence[Task], address: str, workers: int | None = None,
            on_done: OnDone | None = None) -> list[Outcome]:
    """Run the tasks as Ray tasks (one CPU each) on the cluster at ``address``.

    ``address`` is a Ray address (``ray://host:10001``, ``host:6379``), ``auto`` (the cluster this
    machine belongs to) or ``local`` (start a private Ray on this machine). ``workers`` caps the
    points in flight (default: all submitted at once; Ray queues them by free CPUs).
    """
    ray = require_ray()
    if workers is not None and workers < 1:
        raise UserError(f"--workers must be at least 1 (got {workers})")
    started = False
    if not ray.is_initialized():
        try:
            if address == "local":
                ray.init(include_dashboard=False, num_cpus=workers, log_to_driver=False)
            else:
                ray.init(address=address, log_to_driver=False)
        except Exception as exc:  # noqa: BLE001 - ray raises many kinds; the user needs one line
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"--ray {address}: cannot start or reach Ray: {first}") from None
        started = True
    try:
        remote = ray.remote(num_cpus=1, max_retries=MAX_ATTEMPTS - 1)(run_task)
        limit = workers or len(tasks)
        pending: deque[Task] = deque(tasks)
        running: dict[Any, Task] = {}
        outcomes: dict[int, Outcome] = {}
        while pending or running:
            while pending and len(running) < limit:
                task = pending.popleft()
                running[remote.remote(task)] = task
            ready, _ = ray.wait(list(running), num_returns=1)
            for ref in ready:
                task = running.pop(ref)
                try:
                    outcome = ray.get(ref)
                except ray.exceptions.RayError as exc:  # the task's worker or node died
                    outcome = Outcome(task.index, None, " ".join(f"Ray: {type(exc).__name__}: {exc}".split())[:500],
                                      0.0)
                outcomes[task.index] = outcome
                if on_done:
                    on_done(outcome)
        return [outcomes[t.index] for t in tasks]
    finally:
        if started:
            ray.shutdown()
