"""The contractivity figure's cost in model-call equivalents (docs/math.md §5).

One figure is L(γ) = ‖(1 − γ) I + γ ∂T/∂x‖₂ of one Heun step on the app's kept states (1,024
samples of the tree toy) at 121 γ's, through the exact route the app takes for states of at
most 64 elements: d = 2 reverse passes through the two-call Heun step and the batched singular
values of M(γ); and, for comparison, the power route at 13 γ's × 16 samples with 10
iterations (what the app uses for larger states; forced here on the tree). Interleaved with
one denoiser call D(x; σ) on the same 1,024 samples (``benchmarks.diagnostic_cost``'s unit);
median wall times, and their ratio = model-call equivalents per figure.

    python -m benchmarks.contractivity_cost [--repeats 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np
import torch

from stiffviz import load_model
from stiffviz.app.contractivity import GRID_POINTS, MAX_SAMPLES, POWER_ITERATIONS
from stiffviz.diagnostics.contractivity import contractivity
from stiffviz.models.guided import guided_denoiser
from stiffviz.solvers import get_solver

from .diagnostic_cost import BATCH, time_model_call

SIGMA, SIGMA_NEXT = 0.5, 0.25


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"contractivity figure: heun step σ {SIGMA} → {SIGMA_NEXT}, float32, cpu, {torch.get_num_threads()} threads, "
          f"{args.repeats} interleaved repeats; {platform.machine()}, torch {torch.__version__}")  # fmt: skip
    print(f"{'model':<8} {'route':<32} {'figure s':>9} {'1 call ms':>9} {'calls':>7}")
    heun = get_solver("heun")
    for name in ("tree",):
        model = load_model(name)
        denoise = guided_denoiser(model)
        generator = torch.Generator().manual_seed(0)
        x_star = model.sample_reference(BATCH, generator).to(torch.float32)
        x = x_star + SIGMA * torch.randn(x_star.shape, generator=generator)
        routes = {
            f"exact, {BATCH} samples, {GRID_POINTS['exact']} γ": (x, np.linspace(0, 3, GRID_POINTS["exact"]), "exact"),
            f"power, {MAX_SAMPLES['power']} samples, {GRID_POINTS['power']} γ": (
                x[:MAX_SAMPLES["power"]], np.linspace(0, 3, GRID_POINTS["power"]), "power"),
        }
        times = {label: [] for label in routes}
        calls = []
        for repeat in range(args.repeats + 1):  # the first round is a warm-up
            for label, (states, gammas, method) in routes.items():
                start = time.perf_counter()
                contractivity(denoise, heun, states, SIGMA, SIGMA_NEXT, gammas, method, POWER_ITERATIONS)
                if repeat:
                    times[label].append(time.perf_counter() - start)
            if repeat:
                calls.append(statistics.median(time_model_call(model, 5).values()))
        unit = statistics.median(calls)
        for label, t in times.items():
            figure = statistics.median(t)
            print(f"{name:<8} {label:<32} {figure:>9.3f} {1e3 * unit:>9.3f} {figure / unit:>7.0f}")


if __name__ == "__main__":
    main()
