"""The local backend: cells in worker processes on this machine.

Each of ``workers`` processes sets torch's threads to ``threads_for(workers)``, so workers ×
threads ≤ cores. Workers are forked from this process where the platform allows it and CUDA is not
initialised here (a fork starts in milliseconds and inherits the imports; torch resets its CPU
thread pools in a forked child); otherwise (CUDA in use: a forked child cannot use it) they start
from a fork server, a clean process that imported stiffviz once. Ctrl-C cancels the cells not
started and terminates the workers.
"""

from __future__ import annotations

import multiprocessing
import signal
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Callable

from ..errors import ParameterError
from ..threads import apply, cores, threads_for
from . import results


def check_workers(workers: int | None) -> int:
    """``workers`` (None: the core count) as a positive int, or a ParameterError naming it."""
    if workers is None:
        return cores()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ParameterError("workers", f"must be an integer ≥ 1, got {workers!r}")
    return workers


def _init_worker(threads: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    apply(threads)


def _context():
    import torch

    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and not torch.cuda.is_initialized():
        return multiprocessing.get_context("fork")
    if "forkserver" in methods:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["stiffviz.sweep.results", "stiffviz.sampler", "stiffviz.quality"])
        return ctx
    return multiprocessing.get_context("spawn")


def run_cells(cells: list[dict], *, workers: int | None = None, metrics: bool = False, trace_dir: str | None = None,
              on_row: Callable[[dict], None] = lambda row: None) -> None:  # fmt: skip
    """Run ``cells`` in ``workers`` processes (default: the core count), calling ``on_row(row)``
    in this process as each cell finishes (in finishing order). One worker (or one cell) runs
    in this process, one cell after another."""
    workers = min(check_workers(workers), max(1, len(cells)))
    if not cells:
        return
    if workers == 1:  # one after another in this process, with its own thread setting
        for cell in cells:
            on_row(results.run_cell(cell, metrics, trace_dir))
        return
    pool = ProcessPoolExecutor(workers, mp_context=_context(), initializer=_init_worker,
                               initargs=(threads_for(workers),))  # fmt: skip
    try:
        pending = {pool.submit(results.run_cell, cell, metrics, trace_dir) for cell in cells}
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                on_row(future.result())
    except BaseException:
        for process in list((pool._processes or {}).values()):  # stop running cells now, not after them
            process.terminate()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
