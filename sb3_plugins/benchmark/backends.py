"""Where benchmark runs execute: in this process, in a local process pool, or as Ray tasks.

Every backend hands each finished record to ``on_record`` in the main process as soon as it arrives, so the
results file grows run by run and an interruption loses only the runs still in flight.
"""

from __future__ import annotations

import multiprocessing
import os
import queue as queue_module
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any

from sb3_plugins.benchmark.runner import RunSpec, run_one

__all__ = ["BACKENDS", "RunFailed", "execute"]

BACKENDS = ("local", "ray")
OnRecord = Callable[[dict[str, Any]], None]
OnProgress = Callable[[tuple[str, str, int], int], None]

_progress_queue: Any = None  # set in each pool worker by _init_worker


def _init_worker(progress_queue: Any) -> None:
    global _progress_queue
    _progress_queue = progress_queue
    _exit_with_parent()


def _exit_with_parent() -> None:
    """End this worker as soon as the process that started it is gone.

    A pool's workers outlive a main process killed by SIGKILL (or the OOM killer), which runs no cleanup: each
    would train its run to the end at 100% CPU with nobody to take the record. A daemon thread waits on the
    parent's sentinel (multiprocessing's, readable once the parent exits: POSIX and Windows alike) and then
    ends the worker at once.
    """
    parent = multiprocessing.parent_process()
    if parent is None:  # not a multiprocessing child: nothing to watch
        return

    def watch() -> None:
        parent.join()  # returns when the parent has exited, however it ended
        os._exit(1)  # no cleanup to run: the run's record has nowhere to go

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _run_in_worker(spec: RunSpec) -> dict[str, Any]:
    return run_one(spec, progress=lambda steps: _progress_queue.put((spec.key, steps)))


def _run_task(spec: RunSpec) -> dict[str, Any]:
    return run_one(spec)


class RunFailed(RuntimeError):
    """Raised by :func:`execute` after all runs ended when some of them raised; the others finished and were
    handed to ``on_record``. The message names each failed run and its error.

    Example::

        from sb3_plugins.benchmark import RunFailed

        try:
            raise RunFailed("1 run(s) failed (the others are recorded): CartPole-v1 ppo seed 0: MemoryError")
        except RuntimeError as error:
            print(error)
    """


def execute(
    specs: Sequence[RunSpec],
    on_record: OnRecord,
    on_progress: OnProgress | None = None,
    n_jobs: int = 1,
    backend: str = "local",
    ray_address: str | None = None,
) -> None:
    """Run ``specs`` and pass each record to ``on_record`` as it finishes (each run on 1 torch thread).

    :param specs: the runs
    :param on_record: called in this process with every finished record
    :param on_progress: called with ``(run key, real steps so far)`` now and then (local backend)
    :param n_jobs: runs at once (local: worker processes; ray: CPUs of a local Ray instance started here)
    :param backend: ``"local"`` or ``"ray"``
    :param ray_address: an existing Ray cluster (``"auto"``, ``"ray://host:10001"``); default: a local one
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "ray":
        _execute_ray(specs, on_record, n_jobs, ray_address)
    elif n_jobs == 1 or len(specs) <= 1:
        _execute_inline(specs, on_record, on_progress)
    else:
        _execute_pool(specs, on_record, on_progress, n_jobs)


def _execute_inline(specs: Sequence[RunSpec], on_record: OnRecord, on_progress: OnProgress | None) -> None:
    # As in a pool: a run that raises is reported at the end and the runs after it still execute and are recorded.
    failures = []
    for spec in specs:
        report = None if on_progress is None else (lambda steps, key=spec.key: on_progress(key, steps))
        try:
            record = run_one(spec, progress=report)
        except Exception as error:  # KeyboardInterrupt is no run's failure: it ends the benchmark
            failures.append((spec, error))
            continue
        on_record(record)
    _raise_failures(failures)


def _execute_pool(specs: Sequence[RunSpec], on_record: OnRecord, on_progress: OnProgress | None, n_jobs: int) -> None:
    # spawn, not fork: a forked child of a process that already ran torch's thread pools can deadlock.
    context = multiprocessing.get_context("spawn")
    progress_queue = context.Queue()
    failures = []
    with ProcessPoolExecutor(n_jobs, mp_context=context, initializer=_init_worker,
                             initargs=(progress_queue,)) as pool:  # fmt: skip
        futures = {pool.submit(_run_in_worker, spec): spec for spec in specs}
        pending = set(futures)
        try:
            while pending:
                done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                _drain(progress_queue, on_progress)
                for future in done:
                    if future.exception() is not None:
                        failures.append((futures[future], future.exception()))
                    else:
                        on_record(future.result())
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    _raise_failures(failures)


def _drain(progress_queue: Any, on_progress: OnProgress | None) -> None:
    while True:
        try:
            key, steps = progress_queue.get_nowait()
        except queue_module.Empty:
            return
        if on_progress is not None:
            on_progress(tuple(key), steps)


def _raise_failures(failures: list[tuple[RunSpec, BaseException]]) -> None:
    if failures:
        lines = [f"{s.env_id} {s.algo} seed {s.seed}: {type(e).__name__}: {e}" for s, e in failures]
        raise RunFailed(f"{len(failures)} run(s) failed (the others are recorded):\n" + "\n".join(lines))


def _execute_ray(specs: Sequence[RunSpec], on_record: OnRecord, n_jobs: int, ray_address: str | None) -> None:
    try:
        import ray
    except ImportError:
        raise ValueError("--backend ray needs Ray: pip install 'dream-envs[ray]' (or pip install ray)") from None
    started_here = not ray.is_initialized()
    if started_here:
        # A local instance gets exactly n_jobs CPUs, so n_jobs runs execute at once, as with the local pool.
        ray.init(address=ray_address, num_cpus=None if ray_address else n_jobs, include_dashboard=False,
                 log_to_driver=False, configure_logging=False)  # fmt: skip
    failures = []
    try:
        task = ray.remote(num_cpus=1)(_run_task)
        refs = {task.remote(spec): spec for spec in specs}
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                try:
                    on_record(ray.get(ref))
                except ray.exceptions.RayTaskError as error:
                    failures.append((refs[ref], error.cause if error.cause is not None else error))
    finally:
        if started_here:
            ray.shutdown()
    _raise_failures(failures)
