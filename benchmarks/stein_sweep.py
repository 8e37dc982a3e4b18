"""SteinDiff's clips against plain sampling at 3–5 NFE on the tree and rings toys.

SteinDiff (docs/math.md §5) relaxes each solver step, x ← x − γ (x − T(x)), with γ from Stein's
identity clipped to [γ_min, γ_max] and acting only for σ_i in its range. This sweep asks
whether any setting of those clips beats the plain solver at the same NFE, on both toys.

Runs (Karras schedule σ 80 → 0.002, float32, the same seed and so the same initial noise for
every row of a table): Heun 2 steps (3 NFE) and 3 steps (5 NFE), Euler 3, 4 and 5 steps (3, 4,
5 NFE). SteinDiff's K Hutchinson backward passes per step come on top of the NFE and are not
counted in it. Settings (K = 5 probes unless noted):

* ``plain``: the solver alone (γ = 1);
* ``[a,b]``: γ clipped to [a, b] at every step but the last (the step to σ = 0);
* ``[a,b] σ≤1`` / ``σ≥1``: acting only for σ_i ≤ 1 (the stiff end) / σ_i ≥ 1;
* ``[1,3] K=1``: the default clips with one probe.

Quality from ``stiffviz.quality.quality_report`` (reference samples from the seed's own
generator, the same for every row): sliced Wasserstein distance (SWD ↓), k-NN precision and
recall (↑). A setting *beats* plain at a (toy, solver, steps) cell when its SWD is lower and
its recall is at most ``RECALL_SLACK`` = 0.01 lower (about three standard errors of a recall
near 0.98 from 1,024 samples: a tie, not a loss). The first summary lists, per setting, the
cells where it beats the same solver's plain run, and where it does so on both toys; the
second, at 3 and 5 NFE, every (solver, setting), plain Euler included, that beats plain Heun
at the same NFE on both toys.

    python -m benchmarks.stein_sweep [--batch 1024] [--seed 0] [--threads 2]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from stiffviz import load_model, sample
from stiffviz.solvers import nfe_for

from .findings import fmt, run_row

TOYS = ("tree", "rings")
CELLS = (("heun", 2), ("heun", 3), ("euler", 3), ("euler", 4), ("euler", 5))
STEIN = dict(stein=True, stein_probes=5)
SETTINGS: dict[str, dict] = {
    "plain": {},
    "[1,3] (default)": STEIN | dict(stein_gamma_min=1.0, stein_gamma_max=3.0),
    "[1,1.5]": STEIN | dict(stein_gamma_min=1.0, stein_gamma_max=1.5),
    "[0.5,1.5]": STEIN | dict(stein_gamma_min=0.5, stein_gamma_max=1.5),
    "[0,10]": STEIN | dict(stein_gamma_min=0.0, stein_gamma_max=10.0),
    "[1,3] σ≤1": STEIN | dict(stein_gamma_min=1.0, stein_gamma_max=3.0, stein_sigma_max=1.0),
    "[1,3] σ≥1": STEIN | dict(stein_gamma_min=1.0, stein_gamma_max=3.0, stein_sigma_min=1.0),
    "[1,1.5] σ≥1": STEIN | dict(stein_gamma_min=1.0, stein_gamma_max=1.5, stein_sigma_min=1.0),
    "[1,3] K=1": dict(stein=True, stein_probes=1, stein_gamma_min=1.0, stein_gamma_max=3.0),
}
RECALL_SLACK = 0.01


def beats(row: dict, plain: dict) -> bool:
    """Lower SWD and recall at most ``RECALL_SLACK`` below plain's (both runs finished)."""
    q, p = row["quality"], plain["quality"]
    if row["status"] != "ok" or plain["status"] != "ok" or q.get("swd") is None or p.get("swd") is None:
        return False
    return q["swd"] < p["swd"] and (q.get("recall") or 0.0) >= (p.get("recall") or 0.0) - RECALL_SLACK


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"stein_sweep: {', '.join(TOYS)}; {args.batch} samples, seed {args.seed}, float32, karras σ 80 → 0.002; "
          f"{torch.get_num_threads()} threads, {platform.machine()}, torch {torch.__version__}")  # fmt: skip
    total = time.perf_counter()
    results: dict[tuple[str, str, int], dict[str, dict]] = {}
    for toy in TOYS:
        model = load_model(toy)
        sample(model, steps=3, batch=64, stein=True)  # warm-up
        for solver, steps in CELLS:
            rows = {label: run_row(model, steps, args.batch, args.seed, dict(solver=solver) | extra)
                    for label, extra in SETTINGS.items()}  # fmt: skip
            results[toy, solver, steps] = rows
            print(f"\n=== {toy}, {solver} {steps} steps ({nfe_for(solver, steps)} NFE) ===")
            print(f"{'setting':<18} {'status':<9} {'SWD':>8} {'prec':>6} {'recall':>6} {'beats':>5} {'wall s':>7}")
            for label, r in rows.items():
                q = r["quality"]
                mark = "" if label == "plain" else "yes" if beats(r, rows["plain"]) else "no"
                print(f"{label:<18} {r['status']:<9} {fmt(q.get('swd'), '.4f'):>8} {fmt(q.get('precision'), '.3f'):>6} "
                      f"{fmt(q.get('recall'), '.3f'):>6} {mark:>5} {r['wall']:>7.2f}")  # fmt: skip
    print(f"\n=== summary: cells where a setting beats plain (lower SWD, recall ≥ plain's − {RECALL_SLACK}) ===")
    for label in list(SETTINGS)[1:]:
        won = [f"{toy} {solver} {steps}" for (toy, solver, steps), rows in results.items()
               if beats(rows[label], rows["plain"])]  # fmt: skip
        both = [f"{solver} {steps}" for solver, steps in CELLS
                if all(beats(results[toy, solver, steps][label], results[toy, solver, steps]["plain"]) for toy in TOYS)]
        print(f"{label:<18} beats plain in {len(won):>2} of {len(results)} cells; on both toys at: "
              f"{', '.join(both) or 'none'}")  # fmt: skip
    print("\n=== summary at equal NFE against plain Heun (Heun 2 steps = 3 NFE, 3 steps = 5 NFE) ===")
    for solver, steps in CELLS:
        if solver != "heun":
            continue
        nfe = nfe_for(solver, steps)
        same = [(s, n) for s, n in CELLS if nfe_for(s, n) == nfe]
        wins = [f"{s} {n} {label}" for s, n in same for label in SETTINGS
                if all(beats(results[toy, s, n][label], results[toy, solver, steps]["plain"]) for toy in TOYS)]
        print(f"{nfe} NFE: beat plain heun {steps} on both toys: {', '.join(wins) or 'none'}")
    print(f"\ntotal wall time {time.perf_counter() - total:.1f} s")


if __name__ == "__main__":
    main()
