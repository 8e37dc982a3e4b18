"""Command line: ``python -m stiffviz sample …`` (``--help`` lists every flag).

stdout is deterministic for a given seed and flags; the wall time goes to stderr.
Exit status: 0 for a finished run, 1 for a run that diverged, 2 for bad input.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Sequence

import numpy as np

from .config import DTYPES, MAX_BATCH, MAX_STEPS, MODEL_SCHEDULE, SampleConfig
from .diagnostics.ground_truth import EIG_METHODS
from .errors import ParameterError
from .models import list_models, load_model
from .prescribe import DEFAULT_TARGET, RULES, check_matches, load_trace, prescribe
from .quality import not_available, quality_report
from .sampler import sample
from .paths import PATHS
from .schedules import SCHEDULES
from .solvers import SOLVERS
from .threads import apply as apply_threads, threads_for
from .trace import Trace
from .plot_sweep import add_plot_sweep_parser, run_plot_sweep
from .sweep.cli import add_sweep_parser, run_sweep_cli
from .train import add_train_parser, run_train

DEFAULTS = SampleConfig()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m stiffviz", description="Stiffness diagnostics for diffusion sampling.")
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("sample", help="run the sampler, print a summary, optionally save the trace and samples",
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)  # fmt: skip
    add_sample_options(p)
    r_ = p.add_argument_group("prescribed schedules (docs/math.md §13)")
    r_.add_argument("--schedule-from", default=None, metavar="TRACE.json",
                    help="rerun on the grid a recorded run of the same model and solver prescribes "
                         "(same number of levels, so the same NFE; replaces --schedule and --steps)")  # fmt: skip
    r_.add_argument("--schedule-rule", default="lte", choices=list(RULES),
                    help="lte: even out the estimated local error; stability: keep z = h·ρ̂ within the target")
    r_.add_argument("--stability-target", type=float, default=DEFAULT_TARGET,
                    help="largest z / stability boundary the stability rule allows, in (0, 1]")
    p.add_argument("--threads", type=int, default=None,
                   help=f"torch CPU threads (default: one per core this process may use, {threads_for(1)} here, "
                        "torch's own; next to other runs keep runs at once x threads <= cores)")  # fmt: skip
    p.add_argument("--trace-out", default=None, metavar="F.json", help="write the trace as JSON (a .csv name writes CSV)")
    p.add_argument("--samples-out", default=None, metavar="F.npy", help="write the final samples as a NumPy array")
    add_sweep_parser(commands, add_sample_options)
    add_train_parser(commands)
    add_plot_sweep_parser(commands)
    return parser


def add_sample_options(p: argparse.ArgumentParser) -> None:
    """The flags of ``sample`` that ``sweep`` shares: the model, every run setting, ``--metrics``."""
    p.add_argument("--model", default=DEFAULTS.model, metavar="SPEC",
                   help=f"model: {', '.join(list_models())}, or diffusers:FOLDER_OR_HUB_ID")  # fmt: skip
    p.add_argument("--solver", default=DEFAULTS.solver, choices=list(SOLVERS), help="ODE solver (bosh3 = Bogacki–Shampine 3(2))")
    p.add_argument("--steps", type=int, default=DEFAULTS.steps, help=f"solver steps, 1..{MAX_STEPS}; the last one goes to σ = 0")
    p.add_argument("--batch", type=int, default=DEFAULTS.batch, help=f"number of samples, 1..{MAX_BATCH}")
    p.add_argument("--seed", type=int, default=DEFAULTS.seed, help="seed of the initial noise (same seed, same samples)")
    p.add_argument("--dtype", default=DEFAULTS.dtype, choices=list(DTYPES), help="floating-point type of the run")
    p.add_argument("--device", default=None, help="torch device of the model and the run, e.g. cpu or cuda (default: cpu)")
    p.add_argument("--schedule", default=DEFAULTS.schedule, choices=[*SCHEDULES, MODEL_SCHEDULE],
                   help="noise-level schedule; karras/logsnr: σ grids (mapped to the path's time); uniform: "
                        "uniform in the path's own time; model: the model's own scheduler grid (diffusers models)")  # fmt: skip
    p.add_argument("--path", default=None, choices=list(PATHS),
                   help="probability path the solver steps in (docs/math.md §9): edm, vp (VP-SDE linear β), "
                        "flow (rectified flow); default: the model's own")  # fmt: skip
    p.add_argument("--shift", type=float, default=DEFAULTS.shift,
                   help="flow path, uniform schedule: multiply σ by this (diffusers' FlowMatch shift)")
    p.add_argument("--sigma-min", type=float, default=DEFAULTS.sigma_min, help="smallest positive noise level")
    p.add_argument("--sigma-max", type=float, default=DEFAULTS.sigma_max, help="largest noise level (initial noise scale)")
    p.add_argument("--rho", type=float, default=DEFAULTS.rho, help="Karras schedule exponent ρ")
    p.add_argument("--class", dest="cls", default=None, help="class name or index for conditional models (tree: A or B)")
    p.add_argument("--prompt", default=None, help="text prompt for text-conditioned models (diffusers text-to-image)")
    p.add_argument("--negative-prompt", default=None, help="what CFG guides away from (text models; default: empty)")
    p.add_argument("--cfg", type=float, default=1.0, help="classifier-free guidance weight w (1 = none; a class or prompt)")
    p.add_argument("--autoguidance", type=float, default=1.0, help="Autoguidance weight w against the weaker model (1 = none)")
    p.add_argument("--erk-guid", type=float, default=None, metavar="W_STIFF", help="turn ERK-Guid on with this w_stiff")
    p.add_argument("--erk-con", type=float, default=None, metavar="W_CON",
                   help="ERK-Guid stiffness threshold w_con on ρ̂ (default: by steps, the authors' 0.1 up to 8, "
                        "0.3 up to 16, 0.5 above)")  # fmt: skip
    p.add_argument("--denoise-to-zero", action=argparse.BooleanOptionalAction, default=DEFAULTS.denoise_to_zero,
                   help="end with the Euler step to σ = 0; --no-denoise-to-zero is the authors' diff-sampler "
                        "convention: --steps N levels ending at σ_min, N − 1 steps, samples at σ_min")  # fmt: skip
    p.add_argument("--no-diagnostics", action="store_true", help="record no cheap per-step diagnostics (timing baseline)")
    g = p.add_argument_group("ground-truth diagnostics (cost extra model calls; off by default)")
    g.add_argument("--eig", action="store_true", help="dominant eigenpair of the drift Jacobian, stiffness ratio, alignment cosines")
    g.add_argument("--eig-method", default=DEFAULTS.eig_method, choices=list(EIG_METHODS),
                   help="exact (analytic Jacobian, the toys), power (JVP power iteration + Lanczos), auto")
    g.add_argument("--eig-iters", type=int, default=DEFAULTS.eig_iterations, help="power iterations per step")
    g.add_argument("--lanczos-iters", type=int, default=DEFAULTS.lanczos_iterations, help="Lanczos iterations for the stiffness ratio")
    g.add_argument("--lte-ref", action="store_true", help="reference LTE against a fine RK4 solution of each step")
    g.add_argument("--lte-ref-substeps", type=int, default=DEFAULTS.lte_ref_substeps, help="RK4 sub-steps of the reference")
    g.add_argument("--lipschitz", action="store_true", help="Lipschitz constant ‖∂T/∂x‖₂ of each applied step map")
    g.add_argument("--lipschitz-iters", type=int, default=DEFAULTS.lipschitz_iterations, help="power iterations for it")
    s_ = p.add_argument_group("SteinDiff (docs/math.md §5)")
    s_.add_argument("--stein", action="store_true", help="Stein-stabilised steps: x ← x − γ (x − T(x))")
    s_.add_argument("--stein-probes", type=int, default=DEFAULTS.stein_probes, help="Hutchinson probes K")
    s_.add_argument("--stein-gamma-min", type=float, default=DEFAULTS.stein_gamma_min, help="lower clip γ_min (γ = 1 is the plain solver)")
    s_.add_argument("--stein-gamma-max", type=float, default=DEFAULTS.stein_gamma_max, help="upper clip γ_max")
    s_.add_argument("--stein-sigma-min", type=float, default=DEFAULTS.stein_sigma_min, help="SteinDiff acts for σ ≥ this")
    s_.add_argument("--stein-sigma-max", type=float, default=None, help="SteinDiff acts for σ ≤ this (default: no limit)")
    s_.add_argument("--stein-oracle", action="store_true", help="record the oracle γ* from forward-coupled reference pairs")
    n_ = p.add_argument_group("stochastic sampling (docs/math.md §11; --solver euler_ancestral brings its own noise)")
    n_.add_argument("--churn", type=float, default=DEFAULTS.churn, help="EDM's S_churn: γ_i = min(S_churn/N, √2 − 1)")
    n_.add_argument("--s-tmin", type=float, default=DEFAULTS.s_tmin, help="churn acts for σ_i ≥ S_tmin")
    n_.add_argument("--s-tmax", type=float, default=None, help="churn acts for σ_i ≤ S_tmax (default: no limit)")
    n_.add_argument("--s-noise", type=float, default=DEFAULTS.s_noise, help="scale S_noise of the injected noise")
    a_ = p.add_argument_group("adaptive steps (docs/math.md §12; heun, bosh3 or dpm2)")
    a_.add_argument("--adaptive", action="store_true",
                    help="steps chosen by a PI controller on the embedded error, from σ_max to σ_min, then to σ = 0; "
                         "--steps caps the attempted steps (rejected ones included)")  # fmt: skip
    a_.add_argument("--rtol", type=float, default=DEFAULTS.rtol, help="relative tolerance of the scaled error")
    a_.add_argument("--atol", type=float, default=DEFAULTS.atol, help="absolute tolerance of the scaled error")
    p.add_argument("--metrics", action="store_true", help="print sample-quality measures against the exact model")


def _class_value(text: str | None):
    return int(text) if text is not None and text.lstrip("-").isdigit() else text


def _fmt(value) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{value:.4g}"


def format_summary(trace: Trace, quality: dict) -> str:
    """The deterministic part of the report: header, per-step medians (over samples) of each
    recorded diagnostic, SteinDiff's γ per step, totals and quality."""
    c = trace.config
    lines = [
        f"model {c['model']}  solver {c['solver']}  steps {c['steps']}  batch {c['batch']}  seed {c['seed']}  dtype {c['dtype']}",
        f"status {trace.status}" + (f": {trace.message}" if trace.message else ""),
    ]
    if c.get("prompt") is not None or c.get("negative_prompt") is not None:
        lines.insert(1, f"prompt {c.get('prompt')!r}  negative prompt {c.get('negative_prompt')!r}")
    columns = ["stiffness", "stiffness_z", "lte"] + [f for f in ("lte_ref", "eig_max", "align_cos_true", "lipschitz")
                                                       if f in trace.fields()]  # fmt: skip
    medians = {name: trace.step_median(name) for name in columns}
    batch_fields = [f for f in ("stein_gamma", "stein_gamma_raw", "stein_gamma_oracle", "sigma_hat", "sigma_down", "sigma_up",
                                 "accepted", "lte_ratio")
                    if f in trace.fields()]  # fmt: skip
    headers = {"stiffness_z": "z", "align_cos_true": "cos(e,v1)", "stein_gamma_raw": "gamma_raw",
               "stein_gamma_oracle": "gamma*", "stein_gamma": "gamma"}  # fmt: skip
    lines.append(f"{'step':>4} {'sigma':>10} {'sigma_next':>10} {'nfe':>5} "
                 + " ".join(f"{headers.get(n, n):>10}" for n in columns + batch_fields))  # fmt: skip
    for row, step in enumerate(trace.steps):
        lines.append(
            f"{step['i']:>4} {step['sigma']:>10.4g} {step['sigma_next']:>10.4g} {step['nfe']:>5} "
            + " ".join(f"{_fmt(medians[n][row]):>10}" for n in columns)
            + "".join(f" {_fmt(step.get(n)):>10}" for n in batch_fields)
        )
    s = trace.summary
    lines.append(f"NFE {s['nfe']}   median stiffness {_fmt(s['median_stiffness'])}   "
                 f"median z {_fmt(s['median_stiffness_z'])}   median LTE {_fmt(s['median_lte'])}")  # fmt: skip
    if quality:
        lines.append("quality  " + "   ".join(f"{k} {'n/a' if v is None else f'{v:.4f}'}" for k, v in quality.items()))
        if note := not_available(quality, c["batch"]):
            lines.append(f"n/a: {note}")
    return "\n".join(lines)


RUN_DESTS = (
    "solver", "steps", "batch", "seed", "schedule", "sigma_min", "sigma_max", "rho", "cls", "path", "shift", "prompt",
    "negative_prompt", "cfg", "autoguidance", "erk_guid", "erk_con", "denoise_to_zero", "dtype", "device",
    "no_diagnostics", "eig", "eig_method", "eig_iters", "lanczos_iters", "lte_ref", "lte_ref_substeps", "lipschitz",
    "lipschitz_iters", "stein", "stein_probes", "stein_gamma_min", "stein_gamma_max", "stein_sigma_min",
    "stein_sigma_max", "stein_oracle", "churn", "s_tmin", "s_tmax", "s_noise", "adaptive", "rtol", "atol",
)  # fmt: skip  (the flags' destinations that are run settings; --model is the model, not a setting)
SETTING_OF = {"eig_iters": "eig_iterations", "lanczos_iters": "lanczos_iterations",
              "lipschitz_iters": "lipschitz_iterations", "no_diagnostics": "diagnostics"}  # fmt: skip


def setting(dest: str, value):
    """The run setting (name, value) of the flag whose destination is ``dest``."""
    if dest == "cls":
        value = _class_value(value)
    elif dest == "no_diagnostics":
        value = not value
    return SETTING_OF.get(dest, dest), value


def settings_from_args(args: argparse.Namespace) -> dict:
    """The keyword settings of :func:`stiffviz.sample` that the flags ask for."""
    return dict(setting(dest, getattr(args, dest)) for dest in RUN_DESTS)


def run_sample(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    if args.schedule_from:
        settings.update(_prescribed(args, settings))
    SampleConfig(model=args.model, **settings).validate()  # bad flags fail before a model is loaded
    if args.threads is not None:
        apply_threads(args.threads)
    model = load_model(args.model, device=args.device)
    start = time.perf_counter()
    samples, trace = sample(model, **settings)
    wall = time.perf_counter() - start
    quality = quality_report(model, samples, settings["cls"], args.seed) if args.metrics and trace.status == "ok" else {}
    trace.summary.update(quality)
    print(format_summary(trace, quality))
    if args.metrics and trace.status != "ok":
        print("quality  n/a: the run diverged; its last finite state is not a sample to measure")
    print(f"wall time {wall:.3f} s", file=sys.stderr)
    if args.trace_out:
        (trace.to_csv if args.trace_out.endswith(".csv") else trace.to_json)(args.trace_out)
    if args.samples_out:
        np.save(args.samples_out, samples.cpu().numpy())
    return 0 if trace.status == "ok" else 1


def _prescribed(args: argparse.Namespace, settings: dict) -> dict:
    """``sigmas`` and ``steps`` from the grid the trace ``--schedule-from`` prescribes; the trace
    must come from the model, solver (and path) this run asks for, and ``--steps``, if changed
    from its default, must be the trace's number of levels."""
    trace = load_trace(args.schedule_from, "schedule_from")
    check_matches(trace, "schedule_from", model=args.model, **settings)
    prescription = prescribe(trace, args.schedule_rule, args.stability_target, "schedule_from")
    levels = len(prescription.sigmas)
    if args.steps not in (DEFAULTS.steps, levels):
        raise ParameterError("steps", f"must be {levels}, the number of levels of the trace {args.schedule_from}, "
                                      f"got {args.steps}")  # fmt: skip
    print(f"prescribed schedule ({args.schedule_rule} rule, from {args.schedule_from}): "
          + ", ".join(f"{s:.6g}" for s in prescription.sigmas)
          + ("" if prescription.feasible else "  (the stability target cannot be met with these steps)"))
    return dict(sigmas=prescription.sigmas, steps=levels)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "plot-sweep":
            return run_plot_sweep(args)
        if args.command == "sweep":
            return run_sweep_cli(args)
        return run_train(args) if args.command == "train" else run_sample(args)
    except ParameterError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
