"""Adaptive steps (docs/math.md §12) against k-diffusion's ``sample_dpm_adaptive`` and fixed-step Heun.

On the exact toys (tree, rings; unconditional, float32, the same seed and so the same initial
noise σ_max·ε for every row, σ 80 → 0.002) each table lists, sorted by NFE:

* ``ours heun`` / ``ours bosh3``: ``sample(adaptive=True)`` with Heun–Euler 2(1) or
  Bogacki–Shampine 3(2), PI control in log σ, then the final denoise step to σ = 0;
* ``k-diff dpm12`` / ``k-diff dpm23``: k-diffusion's own ``sample_dpm_adaptive`` (order 2 or 3,
  its defaults otherwise: I-control, h_init 0.05, accept_safety 0.81), which stops at σ_min;
* ``fixed heun``: plain Heun on Karras steps with the NFE nearest each adaptive row's.

Every adaptive row runs at the same (rtol, atol) pairs: k-diffusion's default (0.05, 0.0078)
and the same ratio at rtol 0.1 and 0.02. NFE counts every denoiser call, rejected attempts
included (k-diffusion's ``info['nfe']``, which re-evaluates a rejected step's first stage;
ours reuses it). Quality: sliced Wasserstein distance (↓), mean NLL (↓) and k-NN precision and
recall (↑) from ``stiffviz.quality.quality_report``. Every number is deterministic for a seed.

    python -m benchmarks.adaptive [--batch 1024] [--seed 0] > benchmarks/adaptive.txt
"""

from __future__ import annotations

import argparse
import platform

import torch

from benchmarks.kdiffusion_speed import load_kdiffusion_sampling
from stiffviz import load_model, sample
from stiffviz.quality import quality_report
from stiffviz.sampler import initial_noise

MODELS = ("tree", "rings")
TOLERANCES = ((0.1, 0.0156), (0.05, 0.0078), (0.02, 0.0031))
SIGMA_MIN, SIGMA_MAX = 0.002, 80.0
MEASURES = ("swd", "nll", "precision", "recall")


def ours(model, solver: str, rtol: float, atol: float, batch: int, seed: int) -> tuple[torch.Tensor, dict]:
    x, trace = sample(model, solver=solver, adaptive=True, rtol=rtol, atol=atol, steps=1000, batch=batch, seed=seed,
                      diagnostics=False)  # fmt: skip
    rejected = sum(1 for s in trace.steps if not s["accepted"])
    return x, dict(nfe=trace.summary["nfe"], accepted=len(trace.steps) - rejected, rejected=rejected)


def theirs(kd, model, order: int, rtol: float, atol: float, batch: int, seed: int) -> tuple[torch.Tensor, dict]:
    x = initial_noise(tuple(model.shape), batch, seed, SIGMA_MAX, torch.float32, torch.device("cpu"))
    with torch.no_grad():
        x, info = kd.sample_dpm_adaptive(lambda x, s: model(x, float(s[0])), x, SIGMA_MIN, SIGMA_MAX, order=order,
                                         rtol=rtol, atol=atol, disable=True, return_info=True)  # fmt: skip
    return x, dict(nfe=info["nfe"], accepted=info["n_accept"], rejected=info["n_reject"])


def heun_steps(nfe: int) -> int:
    """The Heun step count whose NFE (2N − 1) is nearest ``nfe``."""
    return max(1, round((nfe + 1) / 2))


def fixed(model, steps: int, batch: int, seed: int) -> tuple[torch.Tensor, dict]:
    x, trace = sample(model, solver="heun", steps=steps, batch=batch, seed=seed, diagnostics=False)
    return x, dict(nfe=trace.summary["nfe"], accepted=steps, rejected=0)


def table(name: str, batch: int, seed: int, kd) -> list[str]:
    model = load_model(name)
    rows = []
    for rtol, atol in TOLERANCES:
        tol = f"{rtol:g}/{atol:g}"
        for solver in ("heun", "bosh3"):
            rows.append((f"ours {solver}", tol, *ours(model, solver, rtol, atol, batch, seed)))
        for order in (2, 3):
            rows.append((f"k-diff dpm{order - 1}{order}", tol, *theirs(kd, model, order, rtol, atol, batch, seed)))
    for steps in sorted({heun_steps(row[3]["nfe"]) for row in rows}):
        rows.append(("fixed heun", "-", *fixed(model, steps, batch, seed)))
    rows.sort(key=lambda row: (row[3]["nfe"], row[0]))
    lines = [f"## {name}: {batch} samples, seed {seed}",
             f"{'run':<14} {'rtol/atol':>13} {'NFE':>5} {'acc':>4} {'rej':>4} " + " ".join(f"{m:>9}" for m in MEASURES)]  # fmt: skip
    for label, tol, x, counts in rows:
        quality = quality_report(model, x, None, seed)
        lines.append(f"{label:<14} {tol:>13} {counts['nfe']:>5} {counts['accepted']:>4} {counts['rejected']:>4} "
                     + " ".join(f"{quality[m]:>9.4f}" for m in MEASURES))  # fmt: skip
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    kd = load_kdiffusion_sampling()
    print(f"# Adaptive steps vs k-diffusion's sample_dpm_adaptive ({platform.machine()}, torch {torch.__version__})")
    for name in MODELS:
        print("\n".join(table(name, args.batch, args.seed, kd)) + "\n")


if __name__ == "__main__":
    main()
