"""Engine speed: the cost of the per-step diagnostics, measured side by side in one process.

Workload (issue 2): the tree toy, 1,024 samples, Heun with 32 steps (63 NFE), float32,
CPU with 2 threads. Variants run interleaved, ``--repeats`` times each after a warm-up,
and the table prints median wall times and their ratios to the bare loop.

    python -m benchmarks.engine_speed [--repeats 9] [--device cpu]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from stiffviz import load_model, sample

VARIANTS = {
    "bare loop (diagnostics off)": dict(diagnostics=False),
    "all diagnostics on": dict(diagnostics=True),
    "all diagnostics + ERK-Guid": dict(diagnostics=True, erk_guid=0.75),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model("tree", device=args.device)
    common = dict(solver="heun", steps=32, batch=1024, seed=0, dtype="float32", device=args.device)
    times = {name: [] for name in VARIANTS}
    for name, extra in VARIANTS.items():  # warm-up
        sample(model, **common, **extra)
    for _ in range(args.repeats):
        for name, extra in VARIANTS.items():
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            _, trace = sample(model, **common, **extra)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
    nfe = trace.summary["nfe"]
    base = statistics.median(times["bare loop (diagnostics off)"])
    print(f"tree, 1024 samples, heun 32 steps ({nfe} NFE), float32, {args.device}, {torch.get_num_threads()} threads, "
          f"{args.repeats} interleaved repeats; {platform.processor() or platform.machine()}, torch {torch.__version__}")  # fmt: skip
    print(f"{'variant':<32} {'median s':>9} {'min s':>7} {'ratio':>7}")
    for name, t in times.items():
        print(f"{name:<32} {statistics.median(t):>9.3f} {min(t):>7.3f} {statistics.median(t) / base:>7.3f}")


if __name__ == "__main__":
    main()
