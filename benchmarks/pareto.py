"""The quality–NFE front of prescribed schedules against hand-made ones (docs/math.md §13).

Heun (EDM, σ 80 → 0.002, float32, the same seed and so the same initial noise in every row)
at 4, 6, 8 and 12 steps (NFE = 2N − 1) on three exact models: the 2-D ``tree`` and ``rings``
mixtures and ``digits`` (the 1,797 scikit-learn digits as a 64-D mixture of point masses).
The schedules at each step count:

* ``karras``: EDM's grid, ρ = 7 (this run also records the diagnostics the rules read);
* ``logsnr``: ln σ uniform;
* ``ays-svd``: the "Align Your Steps" grid published for Stable Video Diffusion (Sabour,
  Fidler & Kreis 2024, arXiv:2404.14507; the 11 levels 700 … 0.002 of ``AYS_SVD`` below,
  from the authors' how-to page), mapped affinely in ln σ onto [0.002, 80] and resampled to
  N levels by log-linear interpolation, the authors' own recipe for other step counts. It was
  optimised for a video model, not for these data: a hand schedule in their style, no more;
* ``erk-guid``: ``karras`` with ERK-Guid (docs/math.md §4), the authors' pairings by step
  count: w_stiff 0.5 / w_con 0.1 at ≤ 8 steps, w_stiff 0.75 / w_con 0.3 at 9–16;
* ``lte`` and ``stability`` (target z/B = 0.8): the grid :func:`stiffviz.prescribe.prescribe`
  proposes from this step count's ``karras`` run, run at the same NFE.

Quality (``stiffviz.quality.quality_report``, reference draws seeded apart from the run):
SWD, the sliced Wasserstein distance to the model's exact distribution (↓; for digits over
the 64 pixels, ``stiffviz.metrics.sliced_wasserstein``), and k-NN recall (↑); digits also get
the Fréchet distance in the digits classifier's features (FD ↓). Every number is deterministic
for a seed and batch; prescribing itself makes no model call.

Prints one table per model and writes ``assets/pareto.json`` (the numbers the README's
figure is drawn from, ``python .ci/pareto_png.py``). About 4–6 minutes on 2 CPU cores.

    python -m benchmarks.pareto [--steps 4 6 8 12] [--toy-batch 1024] [--digits-batch 256] > benchmarks/pareto.txt
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.findings import fmt
from stiffviz import load_model, sample
from stiffviz.metrics import sliced_wasserstein
from stiffviz.prescribe import DEFAULT_TARGET, prescribe
from stiffviz.quality import REFERENCE_SEED_OFFSET, quality_report

MODELS = ("tree", "rings", "digits")
STEPS = (4, 6, 8, 12)
BASE = dict(solver="heun", sigma_min=0.002, sigma_max=80.0, rho=7.0, dtype="float32", eig=False)
# Align Your Steps, Stable Video Diffusion (10 steps, 11 levels), as the authors publish it.
AYS_SVD = (700.00, 54.5, 15.886, 7.977, 4.248, 1.789, 0.981, 0.403, 0.173, 0.034, 0.002)
SCHEDULES = ("karras", "logsnr", "ays-svd", "erk-guid", "lte", "stability")
OUT = Path(__file__).resolve().parents[1] / "assets" / "pareto.json"


def ays_grid(steps: int, sigma_min: float, sigma_max: float) -> list[float]:
    """``AYS_SVD`` mapped affinely in ln σ onto [σ_min, σ_max], then ``steps`` levels by
    log-linear interpolation over its level index (the authors' recipe)."""
    logs = np.log(np.array(AYS_SVD))
    unit = (logs - logs[-1]) / (logs[0] - logs[-1])  # 1 at the top, 0 at the bottom
    mapped = math.log(sigma_min) + unit * (math.log(sigma_max) - math.log(sigma_min))
    where = np.linspace(0, len(AYS_SVD) - 1, steps)
    return np.exp(np.interp(where, np.arange(len(AYS_SVD)), mapped)).tolist()


def erk_settings(steps: int) -> dict:
    """The authors' w_stiff for the step count; w_con left to its default by steps (docs/math.md §4)."""
    return dict(erk_guid=0.5 if steps <= 8 else 0.75)


def quality(model, x: torch.Tensor, seed: int) -> dict:
    """SWD and recall (and FD for images) of samples ``x``; see the module docstring."""
    report = quality_report(model, x, None, seed)
    if len(model.shape) == 3:
        generator = torch.Generator().manual_seed(seed + REFERENCE_SEED_OFFSET)
        reference = model.sample_reference(max(len(x), 512), generator).flatten(1)
        report["swd"] = sliced_wasserstein(x.detach().to("cpu", torch.float64).flatten(1), reference,
                                           generator=generator)  # fmt: skip
    return {key: report.get(key) for key in ("swd", "recall", "fd")}


def run(model, seed: int, batch: int, **settings) -> dict:
    start = time.perf_counter()
    x, trace = sample(model, seed=seed, batch=batch, **BASE | settings)
    ok = trace.status == "ok" and bool(torch.isfinite(x).all())
    row = dict(status="ok" if ok else "diverged", nfe=int(trace.summary["nfe"]),
               sigmas=[float(s) for s in trace.sigmas[:-1]], wall=time.perf_counter() - start)  # fmt: skip
    row |= quality(model, x, seed) if ok else dict(swd=None, recall=None, fd=None)
    return row | dict(trace=trace)


def rows_for(model, steps: int, seed: int, batch: int) -> dict[str, dict]:
    rows = {"karras": run(model, seed, batch, steps=steps, schedule="karras")}
    rows["logsnr"] = run(model, seed, batch, steps=steps, schedule="logsnr")
    rows["ays-svd"] = run(model, seed, batch, sigmas=ays_grid(steps, BASE["sigma_min"], BASE["sigma_max"]))
    rows["erk-guid"] = run(model, seed, batch, steps=steps, schedule="karras", **erk_settings(steps))
    for rule in ("lte", "stability"):
        prescription = prescribe(rows["karras"]["trace"], rule, DEFAULT_TARGET)
        rows[rule] = run(model, seed, batch, sigmas=prescription.sigmas) | dict(feasible=prescription.feasible)
    return rows


def front(points: list[tuple[int, float, str]]) -> set[str]:
    """Labels of the points no other point beats: as few NFE or fewer and a lower SWD."""
    return {label for nfe, swd, label in points
            if not any(n <= nfe and s < swd and (n, s) != (nfe, swd) for n, s, _ in points)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=list(STEPS))
    parser.add_argument("--toy-batch", type=int, default=1024)
    parser.add_argument("--digits-batch", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--json", type=Path, default=OUT)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"pareto: heun, karras/logsnr/AYS-SVD/ERK-Guid/prescribed (lte, stability τ = {DEFAULT_TARGET}), "
          f"σ 80 → 0.002, float32, seed {args.seed}; {torch.get_num_threads()} threads, {platform.machine()}, "
          f"torch {torch.__version__}")  # fmt: skip
    total = time.perf_counter()
    saved: dict = {"steps": args.steps, "schedules": list(SCHEDULES), "models": {}}
    for name in args.models:
        model = load_model(name)
        batch = args.digits_batch if len(model.shape) == 3 else args.toy_batch
        print(f"\n=== {name}, {batch} samples ===")
        print(f"{'steps':>5} {'NFE':>4} {'schedule':<10} {'SWD':>8} {'recall':>7} {'FD':>8} {'note':<14} σ grid")
        results = {steps: rows_for(model, steps, args.seed, batch) for steps in args.steps}
        points = [(r["nfe"], r["swd"], f"{s}/{label}") for s, rows in results.items() for label, r in rows.items()
                  if r["swd"] is not None]  # fmt: skip
        best = front(points)
        for steps, rows in results.items():
            for label, r in rows.items():
                note = ("front " if f"{steps}/{label}" in best else "") + ("" if r.get("feasible", True) else "τ out of reach")
                grid = " ".join(f"{s:.3g}" for s in r["sigmas"])
                print(f"{steps:>5} {r['nfe']:>4} {label:<10} {fmt(r['swd'], '.4f'):>8} {fmt(r['recall'], '.3f'):>7} "
                      f"{fmt(r['fd'], '.2f'):>8} {(r['status'] if r['status'] != 'ok' else note):<14} {grid}")  # fmt: skip
        saved["models"][name] = {"batch": batch, "rows": [
            dict(steps=steps, schedule=label, **{k: r.get(k) for k in ("nfe", "swd", "recall", "fd", "status")},
                 front=f"{steps}/{label}" in best)
            for steps, rows in results.items() for label, r in rows.items()]}  # fmt: skip
    args.json.parent.mkdir(exist_ok=True)
    args.json.write_text(json.dumps(saved, indent=1) + "\n")
    print(f"\nwrote {args.json.name}; total wall time {time.perf_counter() - total:.1f} s")


if __name__ == "__main__":
    main()
