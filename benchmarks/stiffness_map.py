"""The stiffness map (the authors' overview figure): what it shows at a few σ, and what it costs.

Part 1, the figure's numbers on the tree toy (unconditional), at each σ: ρ(J) at the thin
branch's centre (the component :func:`thin_branch` picks) against σ/(λ_min + σ²), the
one-component value; |cos(n, v₁)| there (n: the across direction); the median, 99th percentile
and maximum of ρ(J) over the app's map (120 × 120 over the particle view's square: the largest
values lie on the boundaries between branches, where the responsibilities switch); whether
⟨f, n⟩ flips sign across the branch and keeps one sign beside it.

Part 2, the cost: the map's 14,400 points (one analytic ∂D/∂x and one 2 × 2 eigvalsh each,
in float64 as the engine computes) against one model call D(x; σ) on the same 14,400 points
(float64 too, no autograd), interleaved, median of ``--repeats``; the ratio is the map's cost
in model-call equivalents. The thin branch and its segments are timed too (a one-off
O(K²) search over the mixture's means, then 2 × 21 model calls).

    python -m benchmarks.stiffness_map [--repeats 5] [--threads 2] > benchmarks/stiffness_map.txt
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from stiffviz import load_model
from stiffviz.app.render import view_extent
from stiffviz.app.stiffness_view import VIEW_RESOLUTION
from stiffviz.diagnostics.stiffness_map import (
    branch_stiffness, segments, stiffness_map, thin_branch,
)  # fmt: skip

SIGMAS = (0.003, 0.01, 0.0316, 0.1, 0.316, 1.0)
COST_SIGMAS = (0.01, 0.1, 1.0)


def figure_table(model) -> None:
    branch = thin_branch(model)
    print(f"thin branch: component {branch.component}, centre ({branch.centre[0]:.4f}, {branch.centre[1]:.4f}), "
          f"width sqrt(lambda_min) = {branch.width:.4f}, length sqrt(lambda_max) = {branch.length:.4f}\n")  # fmt: skip
    header = ("sigma", "rho centre", "sigma/(l_min+s^2)", "|cos(n,v1)|", "map median", "map p99", "map max",
              "flips across", "one sign beside")  # fmt: skip
    print(" | ".join(f"{h:>17}" for h in header))
    for sigma in SIGMAS:
        stiffness = branch_stiffness(model, branch, sigma)
        grid = stiffness_map(model, sigma, view_extent(model, sigma), VIEW_RESOLUTION)
        across, along = segments(model, branch, sigma)
        t, p = across.offsets, across.projection
        outside = t.abs() > 0.05 * t.abs().max()
        flips = bool((torch.sign(p[outside]) == torch.sign(t[outside])).all())
        one_sign = bool((along.projection > 0).all() or (along.projection < 0).all())
        row = (f"{sigma:g}", f"{stiffness.rho:.4g}", f"{sigma / (branch.width**2 + sigma**2):.4g}",
               f"{stiffness.alignment:.4f}", f"{float(grid.rho.median()):.4g}",
               f"{float(torch.quantile(grid.rho.flatten(), 0.99)):.4g}",
               f"{float(grid.rho.max()):.4g}", "yes" if flips else "no", "yes" if one_sign else "no")  # fmt: skip
        print(" | ".join(f"{c:>17}" for c in row))


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def cost_table(model, repeats: int) -> None:
    print(f"\nCost of one map ({VIEW_RESOLUTION} x {VIEW_RESOLUTION} = {VIEW_RESOLUTION**2:,} points, float64), "
          f"median of {repeats}, interleaved:\n")  # fmt: skip
    print(f"{'sigma':>7} | {'map (s)':>9} | {'1 model call (s)':>16} | {'model-call equivalents':>22}")
    for sigma in COST_SIGMAS:
        extent = view_extent(model, sigma)
        axis = torch.linspace(-extent, extent, VIEW_RESOLUTION, dtype=torch.float64)
        yy, xx = torch.meshgrid(axis, axis, indexing="ij")
        points = torch.stack([xx.flatten(), yy.flatten()], 1)
        stiffness_map(model, sigma, extent, VIEW_RESOLUTION)  # warm-up
        maps, calls = [], []
        for _ in range(repeats):
            maps.append(timed(lambda: stiffness_map(model, sigma, extent, VIEW_RESOLUTION)))
            with torch.no_grad():
                calls.append(timed(lambda: model(points, sigma)))
        m, c = statistics.median(maps), statistics.median(calls)
        print(f"{sigma:>7g} | {m:>9.3f} | {c:>16.3f} | {m / c:>22.1f}")
    branch_s = statistics.median(timed(lambda: thin_branch(model)) for _ in range(repeats))
    segment_s = statistics.median(timed(lambda: segments(model, thin_branch(model), 0.01)) for _ in range(repeats))
    print(f"\nthin branch search: {branch_s:.3f} s; branch + both segments: {segment_s:.3f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"stiffness map benchmark: torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{args.threads} threads\n")  # fmt: skip
    model = load_model("tree")
    figure_table(model)
    cost_table(model, args.repeats)


if __name__ == "__main__":
    main()
