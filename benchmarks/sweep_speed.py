"""The local sweep backend against running the same cells one after another in one process.

A 16-cell sweep on the tree toy: steps 16, 32 × ERK-Guid w_stiff 0, 0.5 × seeds 0..3 (Heun,
float32, Karras σ 80 → 0.002, ``--batch`` samples). Rows:

* ``one process``: ``stiffviz.sample`` on each cell in turn, in this process, with the command
  line's thread policy (one run at a time: ``threads_for(1)`` threads, one per core);
* ``one process, 1 thread``: the same with one torch thread (what a busy machine favours: a
  pool of threads stalls whenever one of them is preempted, stiffviz.threads);
* ``sweep, N workers``: ``stiffviz.sweep(..., workers=N)``: N worker processes, each with
  ``threads_for(N)`` threads; its time includes starting the workers and writing nothing else.

``ratio`` is each wall time over the first row's (the issue's target for the sweep: ≤ 0.6 with
2 workers); the last line gives the sweep over the faster of the two one-process rows. The rows' results are checked equal (NFE and median LTE) before the table prints.

    python -m benchmarks.sweep_speed [--batch 4096] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

import stiffviz
from stiffviz.sweep import make_cells
from stiffviz.threads import apply_policy, cores, threads_for

GRID = dict(steps=[16, 32], erk_guid=[0.0, 0.5], seeds=[0, 1, 2, 3])


def one_process(cells: list[dict]) -> tuple[float, list[tuple]]:
    """Wall time and (nfe, median_lte) of the cells run one after another here."""
    start = time.perf_counter()
    model = stiffviz.load_model("tree")
    out = []
    for cell in cells:
        _, trace = stiffviz.sample(model, **{k: v for k, v in cell.items() if k != "model"})
        out.append((trace.summary["nfe"], trace.summary["median_lte"]))
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    grid = GRID | {"batch": args.batch}
    cells = make_cells(**grid)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    threads = apply_policy(1)
    serial, expected = one_process(cells)
    apply_policy(1, available=1)
    serial_1, _ = one_process(cells)
    apply_policy(1)
    start = time.perf_counter()
    frame = stiffviz.sweep(workers=args.workers, progress=False, **grid)
    parallel = time.perf_counter() - start
    got = list(zip(frame.nfe, frame.median_lte))
    assert [n for n, _ in got] == [n for n, _ in expected]
    assert all(abs(a - b) <= 1e-5 * abs(b) for (_, a), (_, b) in zip(got, expected)), "sweep rows differ"
    print(f"sweep_speed: tree, {len(cells)} cells (steps 16,32 x erk_guid 0,0.5 x seeds 0..3), heun, batch {args.batch}, "
          f"float32; {cores()} cores, {platform.machine()}, torch {torch.__version__}; load average before {load:.1f}")  # fmt: skip
    print(f"{'run':<24}{'threads':>8}{'wall s':>9}{'ratio':>7}")
    print(f"{'one process':<24}{threads:>8}{serial:>9.2f}{1.0:>7.2f}")
    print(f"{'one process, 1 thread':<24}{1:>8}{serial_1:>9.2f}{serial_1 / serial:>7.2f}")
    print(f"{f'sweep, {args.workers} workers':<24}{threads_for(args.workers):>8}{parallel:>9.2f}{parallel / serial:>7.2f}")
    print(f"sweep / faster one-process row: {parallel / min(serial, serial_1):.2f}")


if __name__ == "__main__":
    main()
