"""Stochastic samplers against deterministic ones at equal NFE, on the tree and rings toys.

For each toy (exact Gaussian-mixture denoisers: quality against the true distribution, exact
drift Jacobians) and each NFE budget, the rows are

* ``euler`` and ``euler_ancestral`` (η = 1) at NFE steps (one evaluation per step);
* ``heun`` at (NFE + 1)/2 steps, deterministic and with EDM's churn (docs/math.md §11) at a few
  S_churn over every σ (γ_i = min(S_churn/N, √2 − 1)), and ``EDM-style``: S_churn = 40 in
  σ ∈ [0.05, 50] with S_noise = 1.003 (Karras et al. 2022's ImageNet-64 settings; at N ≤ 16
  steps γ saturates at √2 − 1 inside that range).

Karras schedule σ 80 → 0.002, float32, the same seeds (so the same initial noise) for every
row. Quality (from ``stiffviz.quality.quality_report``): sliced Wasserstein distance (SWD ↓),
k-NN precision and recall (↑), each the mean over the seeds (± the standard deviation of that
mean). Stiffness of the deterministic part of every step (from σ̂_i with churn, to σ_down for
ancestral steps; the final step to σ = 0 left out, it is x = D): z = h·ρ̂ (the secant estimate
the trace records) and h·|λ₁| with λ₁ the exact dominant eigenvalue of the drift Jacobian at
the step's start, as the median over steps and samples and as the largest per-step median
(the stiffest step); ``%>2`` is the share of (step, sample) pairs with h·|λ₁| > 2, outside the
real stability interval of Euler and Heun.

    python -m benchmarks.stochastic [--batch 512] [--seeds 0 1 2] [--nfe 15] > benchmarks/stochastic.txt

Takes about 10 minutes on 2 busy CPU cores (a few on an idle machine).
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch

from stiffviz import load_model, sample
from stiffviz.quality import quality_report

MODELS = ("tree", "rings")
BASE = dict(schedule="karras", sigma_min=0.002, sigma_max=80.0, rho=7.0, dtype="float32", eig=True)
CHURNS = (1.0, 2.0, 4.0)
EDM_STYLE = dict(churn=40.0, s_tmin=0.05, s_tmax=50.0, s_noise=1.003)


def rows(nfe: int) -> dict[str, dict]:
    heun_steps = (nfe + 1) // 2
    table = {"euler": dict(solver="euler", steps=nfe), "euler_ancestral": dict(solver="euler_ancestral", steps=nfe),
             "heun": dict(solver="heun", steps=heun_steps)}  # fmt: skip
    for churn in CHURNS:
        table[f"heun churn {churn:g}"] = dict(solver="heun", steps=heun_steps, churn=churn)
    table["heun EDM-style"] = dict(solver="heun", steps=heun_steps, **EDM_STYLE)
    return table


def step_stiffness(trace) -> dict[str, np.ndarray]:
    """z = h·ρ̂ and h·|λ₁| per (step, sample) of the deterministic parts, the step to σ = 0 left out."""
    hz, hl = [], []
    for s in trace.steps:
        if s["sigma_next"] == 0.0:
            continue
        h = s.get("sigma_hat", s["sigma"]) - s.get("sigma_down", s["sigma_next"])
        hl.append(h * np.abs(np.asarray(s["eig_max"], dtype=float)))
        hz.append(np.asarray(s["stiffness_z"], dtype=float) if "stiffness_z" in s else np.full_like(hl[-1], np.nan))
    return {"z": np.array(hz), "hl": np.array(hl)}


def _nanmedian(a: np.ndarray) -> float:
    a = a[np.isfinite(a)]
    return float(np.median(a)) if a.size else float("nan")


def run(model, settings: dict, batch: int, seeds: list[int]) -> dict:
    quality: dict[str, list[float]] = {"swd": [], "precision": [], "recall": []}
    z, hl, nfe = [], [], None
    for seed in seeds:
        x, trace = sample(model, batch=batch, seed=seed, **BASE | settings)
        nfe = trace.summary["nfe"]
        q = quality_report(model, x, None, seed) if trace.status == "ok" else {}
        for name in quality:
            quality[name].append(q.get(name, float("nan")))
        stiff = step_stiffness(trace)
        z.append(stiff["z"])
        hl.append(stiff["hl"])
    z, hl = np.concatenate(z, axis=1), np.concatenate(hl, axis=1)
    per_step = [_nanmedian(row) for row in hl]
    return {"nfe": nfe, "quality": {k: (np.mean(v), np.std(v) / np.sqrt(len(v))) for k, v in quality.items()},
            "z": _nanmedian(z), "hl": _nanmedian(hl), "hl_max": max(per_step), "over": float(np.mean(hl > 2.0))}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--nfe", type=int, nargs="+", default=[15])
    args = parser.parse_args()
    start = time.perf_counter()
    print(f"# python -m benchmarks.stochastic --batch {args.batch} --seeds {' '.join(map(str, args.seeds))} "
          f"--nfe {' '.join(map(str, args.nfe))}")  # fmt: skip
    print(f"# torch {torch.__version__}, {platform.machine()}, {torch.get_num_threads()} threads; "
          f"quality: mean over {len(args.seeds)} seeds ± standard error")  # fmt: skip
    for name in MODELS:
        model = load_model(name)
        for nfe in args.nfe:
            print(f"\n=== {name}, NFE {nfe}, {args.batch} samples ===")
            print(f"{'sampler':<18} {'NFE':>4} {'SWD':>16} {'precision':>14} {'recall':>14} "
                  f"{'z=h·ρ̂':>7} {'h·|λ1|':>7} {'max step':>8} {'%>2':>6}")  # fmt: skip
            for label, settings in rows(nfe).items():
                r = run(model, settings, args.batch, args.seeds)
                q = r["quality"]
                cells = [f"{q[k][0]:.4f} ± {q[k][1]:.4f}" if k == "swd" else f"{q[k][0]:.3f} ± {q[k][1]:.3f}"
                         for k in ("swd", "precision", "recall")]  # fmt: skip
                print(f"{label:<18} {r['nfe']:>4} {cells[0]:>16} {cells[1]:>14} {cells[2]:>14} "
                      f"{r['z']:>7.3f} {r['hl']:>7.3f} {r['hl_max']:>8.2f} {100 * r['over']:>5.1f}%", flush=True)  # fmt: skip
    print(f"\n# total wall time {time.perf_counter() - start:.0f} s (not deterministic; every other number is)")


if __name__ == "__main__":
    main()
