"""Diagnostic cost: each optional diagnostic's price in model-call equivalents per step.

Workload: the tree toy (unconditional), 1,024 samples, Heun with 16 steps (31 NFE),
float32, CPU with 2 threads. The variants below run interleaved, ``--repeats`` times each
after a warm-up; the table prints median wall times. The unit is one denoiser call
D(x; σ) on the same batch (no autograd), timed at a few σ on forward-coupled states
x = x* + σε; its median over σ is "one model call".

Per variant: extra seconds over the baseline (cheap diagnostics on), extra per step (over
the steps the diagnostic acts on: all 16 for eig and lipschitz, the 15 steps to σ > 0 for
lte_ref, stein and stein_oracle), and that ÷ one model call = model-call equivalents per
step. The last column is the work each adds per step by construction (D = one denoiser
evaluation; JVP/VJP = a forward- or reverse-mode pass through D, or through the Heun
step T = 2 D where noted).

The ``+stein`` row clips γ to [1, 1]: SteinDiff does all its work (the candidate step
under autograd and K = 5 Hutchinson VJPs through it) but the trajectory stays the
baseline's, so the row measures the work and not a different trajectory. The
``+stein [1,3]`` row uses the default clips, which move the trajectory.

    python -m benchmarks.diagnostic_cost [--repeats 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from stiffviz import load_model, sample
from stiffviz.models.guided import guided_denoiser

STEPS, BATCH = 16, 1024
CALL_SIGMAS = (80.0, 5.0, 0.5, 0.02)

# label -> (sample() settings, steps it acts on, extra work per step by construction)
VARIANTS = {
    "baseline (cheap diagnostics)": (dict(), STEPS, "0 (reuses the solver's stages)"),
    "+eig exact (toy default)": (dict(eig=True), STEPS, "0 D; 1 analytic dD/dx + 1 batched 2x2 eigh"),
    "+eig power (20 it, 8 Lanczos)": (
        dict(eig=True, eig_method="power", eig_iterations=20, lanczos_iterations=8),
        STEPS, "20 JVP + 8x(JVP+VJP) + 1 D  (~37 D-passes)"),
    "+lte_ref (32 RK4 substeps)": (dict(lte_ref=True, lte_ref_substeps=32), STEPS - 1, "32 x 4 = 128 D"),
    "+lipschitz (10 it)": (
        dict(lipschitz=True, lipschitz_iterations=10), STEPS,
        "11 JVP + 10 VJP + 1 fwd through T=2 D (~44 D-passes)"),
    "+stein (5 probes) [1,1]": (
        dict(stein=True, stein_probes=5, stein_gamma_min=1.0, stein_gamma_max=1.0), STEPS - 1,
        "T under autograd + 5 VJP through T=2 D (~10 D-VJPs)"),
    "+stein (5 probes) [1,3]": (
        dict(stein=True, stein_probes=5), STEPS - 1, "same; default clips move the trajectory"),
    "+stein_oracle": (dict(stein_oracle=True), STEPS - 1, "2 D (one Heun step) + 1,024 reference draws"),
}


def time_model_call(model, repeats: int) -> dict[float, float]:
    """Median wall time of one D(x; σ) on BATCH forward-coupled states, per σ (interleaved)."""
    denoise = guided_denoiser(model)
    generator = torch.Generator().manual_seed(0)
    x_star = model.sample_reference(BATCH, generator).to(torch.float32)
    states = {s: x_star + s * torch.randn(x_star.shape, generator=generator) for s in CALL_SIGMAS}
    times = {s: [] for s in CALL_SIGMAS}
    with torch.no_grad():
        for s, x in states.items():  # warm-up
            denoise(x, s)
        for _ in range(repeats):
            for s, x in states.items():
                start = time.perf_counter()
                denoise(x, s)
                times[s].append(time.perf_counter() - start)
    return {s: statistics.median(t) for s, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--call-repeats", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model("tree")
    common = dict(solver="heun", steps=STEPS, batch=BATCH, seed=0, dtype="float32", device="cpu")
    for settings, _, _ in VARIANTS.values():  # warm-up
        sample(model, **common, **settings)
    times = {label: [] for label in VARIANTS}
    call_times = {s: [] for s in CALL_SIGMAS}
    for _ in range(args.repeats):
        for label, (settings, _, _) in VARIANTS.items():
            start = time.perf_counter()
            _, trace = sample(model, **common, **settings)
            times[label].append(time.perf_counter() - start)
        for s, t in time_model_call(model, max(1, args.call_repeats // args.repeats)).items():
            call_times[s].append(t)
    call = {s: statistics.median(t) for s, t in call_times.items()}
    unit = statistics.median(call.values())
    base = statistics.median(times["baseline (cheap diagnostics)"])

    print(f"tree, {BATCH} samples, heun {STEPS} steps ({2 * STEPS - 1} NFE), float32, cpu, "
          f"{torch.get_num_threads()} threads, {args.repeats} interleaved repeats; "
          f"{platform.processor() or platform.machine()}, torch {torch.__version__}")  # fmt: skip
    print("one model call D(x; σ) on the batch, median ms: "
          + ", ".join(f"σ={s:g} {1e3 * t:.3f}" for s, t in call.items())
          + f"; unit = {1e3 * unit:.3f} ms")  # fmt: skip
    print(f"baseline run: {base:.3f} s = {base / STEPS * 1e3:.1f} ms per step = "
          f"{base / (2 * STEPS - 1) / unit:.2f} model calls per NFE (loop overhead included)")  # fmt: skip
    print()
    header = (f"{'variant':<30} {'median s':>8} {'min s':>7} {'extra s':>8} {'steps':>5} "
              f"{'extra ms/step':>13} {'calls/step':>10}  by construction, per step")  # fmt: skip
    print(header)
    print("-" * len(header))
    for label, (_, acting, work) in VARIANTS.items():
        med = statistics.median(times[label])
        extra = med - base
        per_step = extra / acting
        print(f"{label:<30} {med:>8.3f} {min(times[label]):>7.3f} {extra:>8.3f} {acting:>5d} "
              f"{1e3 * per_step:>13.2f} {per_step / unit:>10.1f}  {work}")  # fmt: skip


if __name__ == "__main__":
    main()
