"""Probability paths: is flow matching less stiff? (docs/math.md §9)

The same probability-flow ODE stepped in three coordinates (``path``: edm, vp, flow) on the
exact toys (tree, rings) and the digits Gaussian mixture, for Euler (16 steps), Heun (8 steps,
15 NFE) and DPM-Solver++(2M) (16 steps), so every row costs 15–16 denoiser evaluations. Grids:
``karras`` (the Karras σ grid, σ 80 → 0.002, ρ = 7, mapped to each path's time, so all paths
visit the same σ's) and each path's own ``uniform`` grid (uniform in VP's linear-β time; uniform
in flow time with shift 1 and with shift 3, between the same end σ's). EDM's own grid is Karras.

Columns, per run (seed 0; a path's first state is the same EDM noise σ_max·ε in its coordinates):

* ``h|λ₁| med`` / ``max``: h·|λ₁| with λ₁ the dominant eigenvalue of the path drift's Jacobian
  (exact ``eigh``, ``eig=True``) at the step's start state and h the step in the path's own time;
  per step the median over samples, then the median and the maximum over the steps before the
  final step to t = 0 (that step is the same D in every path);
* ``LTE med``: the reference local error ‖x_step − x_ref‖ (``lte_ref``, 4 RK4 sub-steps per
  step) converted to EDM coordinates (÷ s(t_{i+1})), median over samples and steps;
* quality of the final samples (coordinates-free: s(0) = 1 on every path), from
  ``stiffviz.quality.quality_report``: sliced Wasserstein distance (toys) or Fréchet distance in
  the digits classifier's features, and k-NN recall.

The diagnostics run on ``--diag-batch`` samples (they cost 4 × 4 extra evaluations per step and an
eigendecomposition per sample), the quality on a separate run of ``--batch`` samples with the
same settings and seed. About 5 minutes of CPU time (295 s measured; 18.5 minutes of wall time
on 2 cores that other jobs kept at a load average of 11–21).

    python -m benchmarks.paths [--batch 512] [--diag-batch 48] [--models tree rings digits]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from stiffviz import load_model, sample
from stiffviz.paths import Path
from stiffviz.quality import quality_report

SOLVERS = {"euler": 16, "heun": 8, "dpmpp2m": 16}
GRIDS = [("edm", "karras", 1.0), ("vp", "karras", 1.0), ("vp", "uniform", 1.0), ("flow", "karras", 1.0),
         ("flow", "uniform", 1.0), ("flow", "uniform", 3.0)]  # fmt: skip


def stiffness_and_lte(trace, path: str) -> tuple[float, float, float]:
    """(median, max) over steps of the per-step median h·|λ₁|, and the median LTE in EDM coordinates."""
    steps = [s for s in trace.steps if s["sigma_next"] > 0]
    z = [np.median(np.abs(s["eig_max"])) * (s["sigma"] - s["sigma_next"]) for s in steps]
    lte = [np.median(s["lte_ref"]) / Path(path).scale(s["sigma_next"]) for s in steps if "lte_ref" in s]
    return float(np.median(z)), float(np.max(z)), float(np.median(lte))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--diag-batch", type=int, default=48)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", nargs="+", default=["tree", "rings", "digits"])
    args = parser.parse_args()
    start = time.perf_counter()
    for name in args.models:
        model = load_model(name)
        image = len(model.shape) == 3
        measure = "FD" if image else "SWD"
        print(f"\n{name}: NFE 16 (Heun 15), seed {args.seed}; diagnostics on {args.diag_batch} samples, quality on {args.batch}")
        print(f"{'path':<5} {'grid':<13} {'solver':<8} {'NFE':>3} {'h|λ₁| med':>10} {'max':>8} {'LTE med':>9} "
              f"{measure:>7} {'recall':>6}")  # fmt: skip
        for path, schedule, shift in GRIDS:
            grid = schedule if shift == 1.0 else f"{schedule} s={shift:g}"
            for solver, steps in SOLVERS.items():
                settings = dict(path=path, schedule=schedule, shift=shift, solver=solver, steps=steps, seed=args.seed)
                _, diag = sample(model, batch=args.diag_batch, eig=True, lte_ref=True, lte_ref_substeps=4, **settings)
                samples, run = sample(model, batch=args.batch, diagnostics=False, **settings)
                quality = quality_report(model, samples, seed=args.seed)
                med, top, lte = stiffness_and_lte(diag, path)
                score = quality["fd" if image else "swd"]
                print(f"{path:<5} {grid:<13} {solver:<8} {run.summary['nfe']:>3} {med:>10.3f} {top:>8.2f} {lte:>9.2e} "
                      f"{score:>7.4f} {quality['recall']:>6.3f}")  # fmt: skip
    print(f"\ntotal wall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
