"""ERK-Guid as the authors run it, on the exact toys (tree, rings) and digits (a 64-D Gaussian mixture).

Part A, Heun with the final Euler step to σ = 0 (EDM's sampler, the authors' Table 2 setting):
at 8, 16 and 32 steps, plain Heun against ERK-Guid with the authors' w_stiff for the step
count (0.5 at 8, 0.75 at 16, 1.0 at 32) and two thresholds: w_con by steps (0.1 / 0.3 / 0.5,
their reproduction script) and the fixed w_con = 0.5 this project used before.

Part B, the authors' Table-4 setting (their patched diff-sampler, ``denoise_to_zero=False``):
the grid is N Karras levels from σ_max = 80 to σ_min = 0.002, N − 1 steps, the samples are the
states at σ_min, and ERK-Guid corrects the last step too. DEIS (tAB3) at N = 9 and 17 (8 and
16 NFE) and DPM-Solver-2 at N = 5 and 9 (the same NFE), each plain and with ERK-Guid (w_stiff
by steps as above, w_con by steps).

Columns: NFE (denoiser evaluations), quality from ``stiffviz.quality.quality_report`` against the
model's exact distribution: SWD (sliced Wasserstein ↓) and k-NN precision / recall (↑) for the
toys; for digits the Fréchet distance of the 64-D samples (fd ↓) with precision / recall.
Every run uses the same seed, so the same initial noise. Deterministic but for the wall time.

    python -m benchmarks.erk_authors [--batch 1024] [--digits-batch 512] [--seed 0] > benchmarks/erk_authors.txt
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from stiffviz import load_model, sample
from stiffviz.guidance.erk import default_erk_con
from stiffviz.quality import quality_report

MODELS = ("tree", "rings", "digits")
HEUN_STEPS = (8, 16, 32)
W_STIFF = {8: 0.5, 16: 0.75, 32: 1.0}  # the authors' w_stiff by steps (unguided EDM2; 1.0 of 0.5–2.5 at 32)
OLD_W_CON = 0.5
TABLE4 = (("deis", (9, 17)), ("dpm2", (5, 9)))  # (solver, N time points): 8 and 16 NFE each


def w_stiff_for(steps: int) -> float:
    return W_STIFF[min(W_STIFF, key=lambda s: abs(s - steps))]


def run(model, batch: int, seed: int, **settings) -> dict:
    x, trace = sample(model, batch=batch, seed=seed, diagnostics=False, **settings)
    quality = quality_report(model, x, None, seed) if trace.status == "ok" else {}
    return {"nfe": trace.summary["nfe"], "status": trace.status, "w_con": trace.config["erk_con"], **quality}


def row(label: str, result: dict, measures: list[str]) -> str:
    cells = " ".join(f"{result[m]:>9.4f}" if result.get(m) is not None else f"{'-':>9}" for m in measures)
    return f"  {label:<34} {result['nfe']:>4} {cells}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--digits-batch", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    start = time.perf_counter()
    print(f"ERK-Guid as the authors run it; torch {torch.__version__}, {platform.machine()}, "
          f"batch {args.batch} (digits {args.digits_batch}), seed {args.seed}")  # fmt: skip
    for name in MODELS:
        model = load_model(name)
        batch = args.digits_batch if name == "digits" else args.batch
        measures = ["fd", "precision", "recall"] if name == "digits" else ["swd", "precision", "recall"]
        header = f"  {'run':<34} {'NFE':>4} " + " ".join(f"{m:>9}" for m in measures)
        print(f"\n{name}, A: Heun to σ = 0 (Table 2 setting)\n{header}")
        for steps in HEUN_STEPS:
            w = w_stiff_for(steps)
            print(row(f"heun {steps}", run(model, batch, args.seed, steps=steps), measures))
            for label, w_con in ((f"by steps {default_erk_con(steps)}", None), (f"fixed {OLD_W_CON}", OLD_W_CON)):
                result = run(model, batch, args.seed, steps=steps, erk_guid=w, erk_con=w_con)
                print(row(f"heun {steps} ERK w={w} w_con {label}", result, measures))
        print(f"\n{name}, B: no denoise to zero, N levels to σ_min (Table 4 setting)\n{header}")
        for solver, points in TABLE4:
            for n in points:
                w = w_stiff_for(n - 1)
                common = dict(solver=solver, steps=n, denoise_to_zero=False)
                print(row(f"{solver} N={n}", run(model, batch, args.seed, **common), measures))
                result = run(model, batch, args.seed, erk_guid=w, **common)
                print(row(f"{solver} N={n} ERK w={w} w_con {result['w_con']}", result, measures))
    print(f"\ntotal wall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
