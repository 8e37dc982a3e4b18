"""Ray's overhead per cell against the local backend, on the same machine and the same cells.

Workload: cells of the tree toy (Heun, steps 4 and 8 × ERK-Guid 0 and 0.5 × seeds, 256 samples
each, no trace files), 2 workers on each backend (threads per worker: cores // 2), sweeps of 16
and of 64 cells. A sweep's wall time is a fixed cost (the local backend starts its worker pool on
every sweep; Ray's warm workers need none) plus a cost per cell; the cost per cell is the slope
(T64 − T16) / 48, so Ray's overhead per cell is its slope minus the local slope. Ray runs on a local
cluster started once (its start-up is printed apart); its first sweep also starts Ray's worker
processes (each imports torch) and is timed apart. Rounds alternate the four sweeps; medians.

    python -m benchmarks.sweep_ray_overhead [--rounds 3]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import ray

from stiffviz.sweep import make_cells
from stiffviz.sweep import local as local_backend
from stiffviz.sweep import ray_backend
from stiffviz.threads import cores

GRID = {"steps": [4, 8], "erk_guid": [0.0, 0.5], "batch": 256}
SIZES = (16, 64)
WORKERS = 2


def _cells(count: int) -> list[dict]:
    return make_cells(**GRID, seeds=list(range(count // 4)))


def _timed(run_cells, cells: list[dict]) -> float:
    rows: list[dict] = []
    start = time.perf_counter()
    run_cells(cells, workers=WORKERS, metrics=False, trace_dir=None, on_row=rows.append)
    wall = time.perf_counter() - start
    assert len(rows) == len(cells) and all(r["status"] == "ok" for r in rows), rows
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    grids = {n: _cells(n) for n in SIZES}
    backends = {"local": local_backend.run_cells, "ray": ray_backend.run_cells}
    start = time.perf_counter()
    ray.init(num_cpus=cores(), include_dashboard=False, log_to_driver=False)
    init_s = time.perf_counter() - start
    try:
        cold = _timed(ray_backend.run_cells, grids[SIZES[0]])
        times: dict[tuple[str, int], list[float]] = {(b, n): [] for b in backends for n in SIZES}
        for _ in range(args.rounds):
            for (name, n), walls in times.items():
                walls.append(_timed(backends[name], grids[n]))
    finally:
        ray.shutdown()
    med = {key: statistics.median(walls) for key, walls in times.items()}
    small, large = SIZES
    slope = {b: (med[b, large] - med[b, small]) / (large - small) for b in backends}
    fixed = {b: med[b, small] - slope[b] * small for b in backends}
    print(f"{WORKERS} workers, {cores()} cores; median of {args.rounds} rounds, alternating; ray {ray.__version__}; "
          f"{platform.processor() or platform.machine()}\n")  # fmt: skip
    print(f"| backend | {small} cells s | {large} cells s | per cell ms (slope) | fixed per sweep s |")
    print("|---|---:|---:|---:|---:|")
    for b in backends:
        print(f"| {b} | {med[b, small]:.2f} | {med[b, large]:.2f} | {1e3 * slope[b]:.1f} | {fixed[b]:.2f} |")
    print(f"\nRay's overhead per cell (Ray slope − local slope): {1e3 * (slope['ray'] - slope['local']):+.1f} ms")
    print(f"Ray's first sweep of {small} cells (starting its worker processes): {cold:.2f} s")
    print(f"Starting the local Ray cluster (ray.init, once per session): {init_s:.1f} s")


if __name__ == "__main__":
    main()
