"""The contractivity view: L(γ) = ‖(1 − γ) I + γ ∂T/∂x‖₂ of one SteinDiff step (docs/math.md §5).

For step k of a run with SteinDiff on, the curve is computed from the run's kept states
(x_k and, for a multistep solver, the states and denoised estimates it looks back on) by
:func:`stiffviz.diagnostics.contractivity.contractivity`, through the run's own denoiser
(the same class, CFG and Autoguidance weights). The figure draws the median over the samples
and the 90 % quantile against γ, the line L = 1, where each summary climbs back through 1, and
the γ's the run had at that step: raw (the Stein estimate), applied (clipped) and the oracle γ*
when it was recorded. It is display-only: nothing is sampled again.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import plotly.graph_objects as go
import torch

from ..diagnostics.contractivity import EXACT_MAX_DIM, HIGH_QUANTILE, ContractivityCurve, contractivity
from ..config import DTYPES
from ..errors import ParameterError
from ..models.guided import guided_denoiser
from ..solvers import get_solver
from ..solvers.base import Stage, StepResult
from .plots import TEMPLATE

GRID_POINTS = {"exact": 121, "power": 13}  # γ's on the curve
MAX_SAMPLES = {"exact": 1024, "power": 16}  # samples of the kept states the curve is computed on
EXACT_ELEMENTS = 2048  # and at most this many state elements on the exact route (d reverse passes each)
POWER_ITERATIONS = 10
GAMMA_TOP = (3.0, 1000.0)  # the γ axis ends at 1.25 × the largest marked γ, within these
MARKS = {"stein_gamma_raw": ("γ raw", "#d62728", "dash"), "stein_gamma": ("γ applied", "#2ca02c", "solid"),
         "stein_gamma_oracle": ("γ* oracle", "#9467bd", "dot")}  # fmt: skip


def stein_run(runs: dict[str, Any]) -> tuple[str, Any] | None:
    """(label, run) of the first run of ``runs`` whose trace recorded SteinDiff's γ, or None."""
    return next(((label, run) for label, run in runs.items() if "stein_gamma_raw" in run.trace.fields()), None)


def acted_steps(run) -> list[int]:
    """The steps at which SteinDiff computed a γ (in its σ range, not the last step)."""
    return [r["i"] for r in run.trace.steps if "stein_gamma_raw" in r]


def marks(record: dict) -> dict[str, float]:
    """The step's recorded γ's by label (finite ones only)."""
    return {MARKS[key][0]: float(record[key]) for key in MARKS if key in record and math.isfinite(float(record[key]))}


def gamma_grid(marked: dict[str, float], points: int) -> np.ndarray:
    """0 … top, with top = 1.25 × the largest marked γ, at least 3 and at most 1000."""
    top = min(max(GAMMA_TOP[0], 1.25 * max(marked.values(), default=0.0)), GAMMA_TOP[1])
    return np.linspace(0.0, top, points)


def _history(run, k: int, n: int, device, dtype) -> list[StepResult]:
    """What a multistep solver looks back on at step k: the first stages (x_j, σ_j, D(x_j)) of the
    two steps before, rebuilt from the kept states and denoised estimates."""
    out = []
    for j in range(max(k - 2, 0), k):
        x, d = (t[:n].to(device, dtype) for t in (run.states[j], run.previews[j]))
        sigma = run.sigma(j)
        out.append(StepResult(x, None, [Stage(x, sigma, d, (x - d) / sigma)], 2.0))
    return out


def step_curve(run, model, k: int) -> tuple[ContractivityCurve, dict[str, float]]:
    """L(γ) at step k of ``run`` (a run with kept ``states``) and the γ's recorded there."""
    acted = acted_steps(run)
    if not acted:
        raise ParameterError("step", "the run has no SteinDiff step (switch SteinDiff on; it acts at σ_i in its "
                                     "range and never on the last step)")  # fmt: skip
    if k not in acted:
        raise ParameterError("step", f"SteinDiff acted at steps {acted[0]}…{acted[-1]} of this run, not at step {k}")
    if k >= len(run.states):
        raise ParameterError("step", f"the run kept states up to step {len(run.states) - 1}, not {k}")
    if getattr(model, "text_conditioned", False):
        raise ParameterError("model", "the contractivity view needs a class-conditional or unconditional model")
    config, record = run.trace.config, run.trace.steps[k]
    size = math.prod(model.shape)
    method = "exact" if size <= EXACT_MAX_DIM else "power"
    n = min(len(run.states[k]), MAX_SAMPLES[method], max(16, EXACT_ELEMENTS // size))
    device = getattr(model, "device", torch.device("cpu"))
    dtype = DTYPES[config.get("dtype", "float32")]
    x = run.states[k][:n].to(device, dtype)
    denoise = guided_denoiser(model, config.get("cls"), config.get("cfg", 1.0), config.get("autoguidance", 1.0))
    marked = marks(record)
    curve = contractivity(denoise, get_solver(config["solver"]), x, record["sigma"], record["sigma_next"],
                          gamma_grid(marked, GRID_POINTS[method]), method, POWER_ITERATIONS,
                          history=_history(run, k, n, device, dtype))  # fmt: skip
    return curve, marked


def contractivity_figure(curve: ContractivityCurve, marked: dict[str, float], title: str) -> go.Figure:
    """L(γ) against γ: median and 90 % quantile over the samples, L = 1, crossings and the run's γ's."""
    fig = go.Figure()
    for q, name, colour in ((0.5, "median L(γ)", "#1f77b4"), (HIGH_QUANTILE, f"{HIGH_QUANTILE:.0%} quantile", "#ff7f0e")):
        fig.add_scatter(x=curve.gammas, y=curve.summary(q), mode="lines", name=name, line=dict(color=colour))
        crossing = curve.crossing(q)
        if crossing is not None and math.isfinite(crossing):
            fig.add_scatter(x=[crossing], y=[1.0], mode="markers", name=f"{name} crosses 1 at γ = {crossing:.3g}",
                            marker=dict(color=colour, size=10, symbol="diamond"))  # fmt: skip
    fig.add_hline(y=1.0, line=dict(color="#888", dash="dot"), annotation_text="L = 1: contractive below")
    for label, gamma in marked.items():
        _, colour, dash = next(m for m in MARKS.values() if m[0] == label)
        fig.add_vline(x=gamma, line=dict(color=colour, dash=dash), annotation_text=f"{label} = {gamma:.3g}",
                      annotation_textangle=-90)  # fmt: skip
    fig.update_layout(template=TEMPLATE, title=title, height=420, margin=dict(l=50, r=10, t=50, b=40),
                      xaxis_title="γ (x ← x − γ (x − T(x)))", yaxis_title="L(γ) = ‖(1 − γ) I + γ ∂T/∂x‖₂",
                      legend=dict(orientation="h", y=-0.2))  # fmt: skip
    return fig


def step_figure(label: str, run, model, k: int) -> go.Figure:
    """The contractivity figure of step k of ``run`` (called ``label``)."""
    curve, marked = step_curve(run, model, k)
    record = run.trace.steps[k]
    title = (f"Contractivity of the relaxed step · {label}: step {k}, σ {record['sigma']:.3g} → "
             f"{record['sigma_next']:.3g} ({curve.method} Jacobian, {curve.values.shape[1]:,} samples)")  # fmt: skip
    return contractivity_figure(curve, marked, title)


def view(runs: dict[str, Any], model, step: int) -> go.Figure:
    """The app's view: the figure at ``step`` of the session's SteinDiff run (``runs``: label → run)."""
    found = stein_run(runs)
    if found is None:
        raise ParameterError("step", "the contractivity view needs a run with SteinDiff on")
    return step_figure(*found, model, step)


def report_figure(runs: dict[str, Any], model) -> go.Figure | None:
    """For the HTML report: the figure at the step with the largest raw γ of the SteinDiff run, or
    None (no SteinDiff run, no model, or no kept states)."""
    found = stein_run(runs)
    if found is None or model is None or not getattr(found[1], "states", None):
        return None
    label, run = found
    raw = {k: float(run.trace.steps[k]["stein_gamma_raw"]) for k in acted_steps(run) if k < len(run.states)}
    finite = {k: g for k, g in raw.items() if math.isfinite(g)}
    if not finite:
        return None
    return step_figure(label, run, model, max(finite, key=finite.get))
