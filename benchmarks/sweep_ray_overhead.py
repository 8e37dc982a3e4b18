"""Ray's overhead per cell against the local backend, on the same machine and the same cells.

Workload: 64 cells of the tree toy (Heun, steps 4 and 8 × ERK-Guid 0 and 0.5 × seeds 0..15, 256
samples each, no trace files), 2 workers on each backend (threads per worker: cores // 2). Each
sweep's time splits into its start (until the first row arrives: the local backend starts its
worker pool on every sweep, Ray's warm workers need none) and its cost per cell in the steady
state, (time of the last row − time of row 2) / 62, after each worker's first cell (where a fresh
worker loads the model); Ray's overhead per cell is its cost per cell minus the local one. Ray runs on a local cluster started once (its start-up is printed
apart); its first sweep also starts Ray's worker processes (each imports torch) and is timed
apart. Rounds alternate local, Ray; medians.

    python -m benchmarks.sweep_ray_overhead [--rounds 5]
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

GRID = {"steps": [4, 8], "erk_guid": [0.0, 0.5], "seeds": list(range(16)), "batch": 256}
WORKERS = 2


def _timed(run_cells, cells: list[dict]) -> tuple[float, float, float]:
    """(wall s, start s: until the first row, steady cost per cell s)."""
    arrivals: list[float] = []
    rows: list[dict] = []

    def on_row(row: dict) -> None:
        arrivals.append(time.perf_counter())
        rows.append(row)

    start = time.perf_counter()
    run_cells(cells, workers=WORKERS, metrics=False, trace_dir=None, on_row=on_row)
    wall = time.perf_counter() - start
    assert len(rows) == len(cells) and all(r["status"] == "ok" for r in rows), rows
    first = WORKERS  # from the row after each worker's first (a worker's first cell loads the model)
    return wall, arrivals[0] - start, (arrivals[-1] - arrivals[first - 1]) / (len(cells) - first)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    cells = make_cells(**GRID)
    n = len(cells)
    backends = {"local": local_backend.run_cells, "ray": ray_backend.run_cells}
    start = time.perf_counter()
    ray.init(num_cpus=cores(), include_dashboard=False, log_to_driver=False)
    init_s = time.perf_counter() - start
    try:
        cold = _timed(ray_backend.run_cells, cells)
        times: dict[str, list[tuple[float, float, float]]] = {b: [] for b in backends}
        for _ in range(args.rounds):
            for name, run_cells in backends.items():
                times[name].append(_timed(run_cells, cells))
    finally:
        ray.shutdown()
    med = {b: [statistics.median(t[i] for t in walls) for i in range(3)] for b, walls in times.items()}
    print(f"{n} cells (tree toy, Heun, 256 samples), {WORKERS} workers, {cores()} cores; median of {args.rounds} "
          f"rounds, alternating; ray {ray.__version__}; {platform.processor() or platform.machine()}\n")  # fmt: skip
    print("| backend | sweep wall s | start: to the first row s | per cell, steady ms |")
    print("|---|---:|---:|---:|")
    for b, (wall, first, per_cell) in med.items():
        print(f"| {b} | {wall:.2f} | {first:.2f} | {1e3 * per_cell:.1f} |")
    print(f"| ray, first sweep (starts its workers) | {cold[0]:.2f} | {cold[1]:.2f} | {1e3 * cold[2]:.1f} |")
    overhead = med["ray"][2] - med["local"][2]
    print(f"\nRay's overhead per cell (Ray − local, steady): {1e3 * overhead:+.1f} ms "
          f"({100 * overhead / med['local'][2]:+.0f}% of the local cost per cell)")
    print(f"Starting the local Ray cluster (ray.init, once per session): {init_s:.1f} s")


if __name__ == "__main__":
    main()
