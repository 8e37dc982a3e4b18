"""Findings: what ERK-Guid and SteinDiff do to few-step Heun sampling of the tree toy.

The tree toy (unconditional, both classes) is an exact Gaussian-mixture denoiser, so the
sample quality of a run can be measured against the true distribution, and the drift
Jacobian's true dominant eigenpair is known at every step. For Heun at 4, 6, 8 and 16
steps (Karras schedule, σ 80 → 0.002, float32, 2,048 samples, the same seed and so the
same initial noise for every row) one table per step count compares:

* ``none``: plain Heun;
* ``ERK-Guid w=…``: ERK-Guid (docs/math.md §4) over a grid of w_stiff, w_con = 0.5;
* ``SteinDiff […]``: SteinDiff (docs/math.md §5) with Heun as the candidate map, K = 5
  Hutchinson probes, γ clipped to [γ_min, γ_max]; ``σ≤1`` acts only for σ_i ≤ 1. The row
  ``SteinDiff [1,1] measure`` clips γ to exactly 1, so it samples as plain Heun while
  recording the Stein estimate γ_raw on the plain-Heun trajectory (a control).

Columns: status ("ok" or "diverged"), NFE (evaluations of the denoiser; SteinDiff's K
backward passes per step come on top and are not counted), sliced Wasserstein distance
(SWD ↓), mean NLL under the exact clean density (↓; alone it rewards collapse), k-NN
precision and recall (↑), all from ``stiffviz.quality.quality_report``. Every number but
the total wall time is deterministic for a given seed and batch.

Under each table:

* per step of the ``none`` run (run with ``eig=True`` and ``stein_oracle=True``, which
  record but do not move the trajectory): σ_i; z = h·ρ̂, the secant stiffness ERK-Guid
  uses (Heun has it from step 1); the true h·|λ₁| (median and 99th percentile) and the
  share of samples with h·|λ₁| > 1 (Heun's real-axis stability interval ends at 2); the
  classical stiffness ratio max|λ|/min|λ|; |cos(e, v₁)| of the embedded LTE
  e = x^H − x^E with the true dominant eigenvector, over all samples and over the 10 %
  stiffest (largest h·|λ₁|) of the step (for a direction uniform on the circle the
  median |cos| is 0.707); |cos(v̂, v₁)| of ERK-Guid's estimated direction; and the oracle
  γ* (below).
* per step of each SteinDiff row: γ_raw (the Stein estimate before clipping) / γ applied,
  next to the oracle γ* = E⟨u, x − x*⟩/E‖u‖² computed on fresh forward-coupled pairs
  x = x* + σ_i ε (it depends on the schedule only, not on the trajectory).

The grid is the sweep spec ``benchmarks/findings_sweep.yaml`` (method × steps), run with
``stiffviz.sweep``'s local backend (``--workers`` processes); the per-step tables read the
cells' traces back from the sweep folder (``--out``, default a temporary one). The same
results table comes from ``python -m stiffviz sweep --spec benchmarks/findings_sweep.yaml``.

NaN and absent values print as "-". Takes about 3–5 minutes on 2 CPU cores.

    python -m benchmarks.findings [--batch 2048] [--seed 0] [--steps 4 6 8 16] [--workers 2] [--out DIR]
"""

from __future__ import annotations

import argparse
import math
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from stiffviz import Trace
from stiffviz.app.presets import FINDINGS, FINDINGS_BASE, FINDINGS_STEPS
from stiffviz.sweep import DEFAULT_CELL, make_cells, run_sweep

SPEC = Path(__file__).with_name("findings_sweep.yaml")
QUALITY = ("swd", "nll", "precision", "recall")
RECORD_ONLY = ("eig", "stein_oracle")  # on the plain run: recorded, the samples do not move

ERK_CON = FINDINGS[1].settings["erk_con"]
STEIN_PROBES = FINDINGS[-1].settings["stein_probes"]
# A control not in the README's table: SteinDiff clipped to γ = 1 samples as plain Heun and records γ_raw.
MEASURE = ("SteinDiff [1,1] measure",
           dict(stein=True, stein_probes=STEIN_PROBES, stein_gamma_min=1.0, stein_gamma_max=1.0))


def fmt(value, spec: str) -> str:
    """``value`` formatted with ``spec``; None, NaN and ±inf as "-"."""
    if value is None:
        return "-"
    try:
        if not math.isfinite(float(value)):
            return "-"
    except (TypeError, ValueError):
        return str(value)
    return format(value, spec)


def rows_for() -> dict[str, dict]:
    """The README's rows (``stiffviz.app.presets.FINDINGS``, the app's presets too), the control
    before the SteinDiff rows, and on ``none`` the diagnostics that record without moving it."""
    rows: dict[str, dict] = {}
    for finding in FINDINGS:
        if finding.settings.get("stein") and MEASURE[0] not in rows:
            rows[MEASURE[0]] = MEASURE[1]
        rows[finding.name] = dict(finding.settings)
    rows["none"] |= dict(eig=True, stein_oracle=True)
    return rows


def spec_cells(batch: int, seed: int, steps: list[int]) -> list[dict]:
    """The cells of ``findings_sweep.yaml`` (a list of grids, their union) at this batch, seed and steps."""
    return make_cells(SPEC, batch=batch, seed=seed, steps=steps)


def _same(a, b) -> bool:
    """Equal option values, a missing one (None, or NaN from the results table) equal to None."""
    off = lambda v: v is None or (isinstance(v, float) and math.isnan(v))  # noqa: E731
    return off(a) and off(b) or (not off(a) and not off(b) and a == b)


def label_of(cell: dict, rows: dict[str, dict]) -> str:
    """The findings row (``rows_for``'s label) whose run the cell is: every option a row sets
    (record-only diagnostics aside) has the row's value, or the default where the row leaves it."""
    keys = {k for settings in rows.values() for k in settings if k not in RECORD_ONLY}
    for label, settings in rows.items():
        expected = DEFAULT_CELL | {k: v for k, v in settings.items() if k not in RECORD_ONLY}
        if all(_same(cell.get(k), expected[k]) for k in keys):
            return label
    raise ValueError(f"a cell of {SPEC.name} is no findings row: {cell}")


def sweep_results(batch: int, seed: int, steps: list[int], workers: int | None, out: Path) -> dict[int, dict]:
    """Run the spec's cells into ``out`` and sort the rows into ``{steps: {label: result}}`` (the
    ``rows_for`` order), each result a dict of status, trace, quality and wall time; a failed cell's status is "error: …"."""
    rows = rows_for()
    cells = spec_cells(batch, seed, steps)
    table = run_sweep(cells, workers=workers, out=out, metrics=True, progress=False)
    by_steps: dict[int, dict] = {n: {} for n in steps}
    for row in table.to_dict("records"):
        path = out / "traces" / f"{row['cell_id']}.json"
        quality = {k: row[k] for k in QUALITY if k in row and row[k] is not None and row[k] == row[k]}
        result = {"status": row["status"] if row["status"] != "failed" else f"error: {row['message']}",
                  "trace": Trace.from_json(path) if path.is_file() else None, "quality": quality,
                  "wall": row["wall_time_s"]}  # fmt: skip
        by_steps[int(row["steps"])][label_of(row, rows)] = result
    return {n: {label: by_steps[n][label] for label in rows if label in by_steps[n]} for n in steps}


def _median(values) -> float:
    a = np.asarray(values, dtype=float)
    a = a[np.isfinite(a)]
    return float(np.median(a)) if a.size else float("nan")


def print_table(steps: int, batch: int, results: dict[str, dict]) -> None:
    print(f"\n=== tree (unconditional), heun {steps} steps, {batch} samples ===")
    print(f"{'method':<24} {'status':<9} {'NFE':>4} {'SWD':>8} {'NLL':>10} {'prec':>6} {'recall':>6}")
    for label, r in results.items():
        q, trace = r["quality"], r["trace"]
        nfe = trace.summary.get("nfe") if trace is not None else None
        print(f"{label:<24} {r['status']:<9} {fmt(nfe, 'd'):>4} {fmt(q.get('swd'), '.4f'):>8} "
              f"{fmt(q.get('nll'), '.2f'):>10} {fmt(q.get('precision'), '.3f'):>6} "
              f"{fmt(q.get('recall'), '.3f'):>6}")  # fmt: skip
    for label, r in results.items():
        if r["status"] not in ("ok",) and r["trace"] is not None and r["trace"].message:
            print(f"  {label}: {r['trace'].message}")


def print_none_steps(result: dict) -> None:
    trace = result["trace"]
    if trace is None:
        return
    print("\n  none, per step (medians over samples unless noted):")
    print(f"  {'i':>3} {'sigma':>9} {'z=h·ρ̂':>7} {'h·|λ1|':>7} {'p99':>6} {'%>1':>5} {'ratio':>7} "
          f"{'cos(e,v1)':>9} {'top10%':>7} {'cos(v̂,v1)':>10} {'γ* oracle':>10}")  # fmt: skip
    for s in trace.steps:
        h = s["sigma"] - s["sigma_next"]
        z_true = h * np.abs(s["eig_max"]) if "eig_max" in s else None
        cos_true = s.get("align_cos_true")
        p99 = share = cos_top = None
        if z_true is not None:
            p99 = float(np.nanpercentile(z_true, 99))
            share = 100.0 * float((z_true > 1.0).mean())
            if cos_true is not None:
                cos_top = _median(cos_true[z_true >= np.nanpercentile(z_true, 90)])
        med = lambda name: _median(s[name]) if name in s else None  # noqa: E731
        print(f"  {s['i']:>3} {s['sigma']:>9.4g} {fmt(med('stiffness_z'), '.3g'):>7} "
              f"{fmt(_median(z_true) if z_true is not None else None, '.3g'):>7} {fmt(p99, '.3g'):>6} "
              f"{fmt(share, '.1f'):>5} {fmt(med('stiffness_ratio'), '.3g'):>7} {fmt(med('align_cos_true'), '.3f'):>9} "
              f"{fmt(cos_top, '.3f'):>7} {fmt(med('align_cos_vhat'), '.3f'):>10} "
              f"{fmt(s.get('stein_gamma_oracle'), '.3g'):>10}")  # fmt: skip


def print_stein_steps(results: dict[str, dict]) -> None:
    stein = {label: r for label, r in results.items() if label.startswith("SteinDiff") and r["trace"] is not None}
    if not stein:
        return
    oracle = results["none"]["trace"]
    width = 22
    print("\n  SteinDiff, per step: γ_raw / γ applied (\"-\": not acting at this step)")
    print(f"  {'i':>3} {'sigma':>9} {'γ* oracle':>10} " + " ".join(f"{label[10:]:>{width}}" for label in stein))
    for i, sigma in enumerate(oracle.sigmas[:-1] if oracle is not None else []):
        cells = []
        for r in stein.values():
            steps = r["trace"].steps
            s = steps[i] if i < len(steps) else {}
            cell = (f"{fmt(s.get('stein_gamma_raw'), '.3g')} / {fmt(s.get('stein_gamma'), '.3g')}"
                    if "stein_gamma_raw" in s else "-")  # fmt: skip
            cells.append(f"{cell:>{width}}")
        g_star = oracle.steps[i].get("stein_gamma_oracle") if i < len(oracle.steps) else None
        print(f"  {i:>3} {sigma:>9.4g} {fmt(g_star, '.3g'):>10} " + " ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=FINDINGS_BASE["batch"])
    parser.add_argument("--seed", type=int, default=FINDINGS_BASE["seed"])
    parser.add_argument("--steps", type=int, nargs="+", default=list(FINDINGS_STEPS))
    parser.add_argument("--workers", type=int, default=None, help="sweep worker processes (default: one per core)")
    parser.add_argument("--out", default=None, help="sweep folder to keep (results and traces; default: temporary)")
    args = parser.parse_args()
    print(f"findings: tree toy, heun, {args.batch} samples, seed {args.seed}, float32, karras σ 80 → 0.002; "
          f"ERK-Guid w_con = {ERK_CON}; SteinDiff K = {STEIN_PROBES} probes; sweep {SPEC.name}, "
          f"{args.workers or 'one per core'} workers, {platform.machine()}, torch {torch.__version__}")  # fmt: skip
    total = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        results = sweep_results(args.batch, args.seed, args.steps, args.workers, Path(args.out or scratch))
        for steps in args.steps:
            print_table(steps, args.batch, results[steps])
            if "none" in results[steps] and results[steps]["none"]["trace"] is not None:
                print_none_steps(results[steps]["none"])
            print_stein_steps(results[steps])
    print(f"\ntotal wall time {time.perf_counter() - total:.1f} s")


if __name__ == "__main__":
    main()
