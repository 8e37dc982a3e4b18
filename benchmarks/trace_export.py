"""Trace export speed: to_csv, to_json, to_parquet and to_pandas on one large trace, side by side.

Workload: the tree toy, Heun with 200 steps, 4,096 samples, ERK-Guid on (so the table has every
cheap diagnostic, erk_active among them): 200 × 4,096 = 819,200 (step, sample) rows. The trace
is sampled once; then each export runs ``--repeats`` times, interleaved (csv, json, parquet,
pandas, csv, ...), written to a temporary folder (to_pandas only builds the frame). The table
prints the median wall time of each, its ratio to to_parquet, and the file size.

    python -m benchmarks.trace_export [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from stiffviz import sample

STEPS, BATCH = 200, 4096


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    _, trace = sample("tree", solver="heun", steps=STEPS, batch=BATCH, seed=0, erk_guid=0.5)
    print(f"sampled {len(trace.steps)} steps x {BATCH} samples in {time.perf_counter() - t0:.1f} s; "
          f"fields: {', '.join(trace.fields())}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        exports = {
            "to_csv": lambda: trace.to_csv(folder / "trace.csv"),
            "to_json": lambda: trace.to_json(folder / "trace.json"),
            "to_parquet": lambda: trace.to_parquet(folder / "trace.parquet"),
            "to_pandas": lambda: trace.to_pandas(),
        }
        times: dict[str, list[float]] = {name: [] for name in exports}
        for _ in range(args.repeats):
            for name, export in exports.items():
                start = time.perf_counter()
                export()
                times[name].append(time.perf_counter() - start)
        sizes = {name: (folder / f"trace.{name[3:]}").stat().st_size for name in exports if name != "to_pandas"}
    rows = len(trace.to_pandas())
    medians = {name: statistics.median(t) for name, t in times.items()}
    print(f"\n{len(trace.steps)} steps x {BATCH} samples = {rows:,} rows; median of {args.repeats}, interleaved; "
          f"torch threads {args.threads}; {platform.processor() or platform.machine()}\n")  # fmt: skip
    print("| export | median s | × to_parquet | file MB |")
    print("|---|---:|---:|---:|")
    for name, median in medians.items():
        size = f"{sizes[name] / 1e6:.1f}" if name in sizes else "(in memory)"
        print(f"| `{name}` | {median:.3f} | {median / medians['to_parquet']:.1f} | {size} |")


if __name__ == "__main__":
    main()
