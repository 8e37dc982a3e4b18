"""Plotly figures from traces: the charts of the app and of exported reports (no mathematics here
beyond order statistics of recorded numbers).

Every per-sample diagnostic is drawn as its median over samples with a band from the first
to the third quartile; several runs (e.g. guidance on and off) are overlaid in one figure.
The x axis is the step index or σ_i on a log axis. Figures carry a fixed ``uirevision`` so a
browser keeps the user's zoom and legend choices while a streaming run redraws them. Numbers
go into the figures as float32 arrays (:func:`compact`: plotly sends them as base64 typed
arrays, 4 bytes a number) unless a finite value lies outside float32's range.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import plotly.graph_objects as go

from ..solvers import get_solver
from ..trace import Trace

CHARTS = {
    "stiffness": (("stiffness", "ρ̂ (secant)"), ("stiffness_z", "z = |h| ρ̂")),
    "lte": (("lte", "‖e‖ embedded"), ("lte_ref", "‖e*‖ reference"), ("lte_ratio", "ε scaled (adaptive: accept ≤ 1)")),
    "alignment": (("align_cos_est", "|cos(e, v̂)|"), ("align_cos_true", "|cos(e, v₁)|"),
                  ("align_cos_ref", "|cos(e*, v₁)|"), ("align_cos_vhat", "|cos(v̂, v₁)|")),
    "stein": (("stein_gamma", "γ applied"), ("stein_gamma_raw", "γ raw"), ("stein_gamma_oracle", "γ* oracle")),
    "lipschitz": (("lipschitz", "L = ‖∂T/∂x‖₂"),),
}  # fmt: skip
TITLES = {"stiffness": "Stiffness", "lte": "Local truncation error", "alignment": "Alignment with the dominant direction",
          "stein": "SteinDiff coefficient", "lipschitz": "Lipschitz constant of the step map"}  # fmt: skip
LOG_Y = {"stiffness", "lte"}
# plotly.js's own plain white style: a named template (plotly_white) is deep-copied into every
# figure, which made building the app's streamed frames four times slower.
TEMPLATE = "none"
HINTS = {"stiffness": "the cheap diagnostics", "lte": "the cheap diagnostics (Euler has no embedded estimate)",
         "alignment": "the cheap diagnostics or Jacobian eigenvectors", "stein": "SteinDiff",
         "lipschitz": "the Lipschitz diagnostic"}  # fmt: skip
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
DASHES = ("solid", "dash", "dot", "dashdot")


FLOAT32_MAX = float(np.finfo(np.float32).max)


def compact(values) -> np.ndarray:
    """``values`` as float32 (7 significant digits: plenty for a chart), or float64 when a finite
    value would overflow float32 (e.g. a diverging run's 1e300)."""
    values = np.asarray(values, dtype=np.float64)
    finite = np.abs(values[np.isfinite(values)])
    return values if finite.size and finite.max() > FLOAT32_MAX else values.astype(np.float32)


def quartiles(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-step 25th, 50th and 75th percentiles over samples of a (steps, B) array, NaN-aware."""
    out = np.full((3, values.shape[0]), np.nan)
    for row, v in enumerate(values):
        v = v[np.isfinite(v)]
        if v.size:
            out[:, row] = np.percentile(v, [25, 50, 75])
    return out[0], out[1], out[2]


def _x(trace: Trace, axis: str) -> np.ndarray:
    return compact(trace.column("sigma")) if axis == "sigma" else trace.column("i").astype(np.int32)


def _markers(trace: Trace) -> dict:
    """Marker symbols per step: filled, hollow where an adaptive run rejected the step (docs/math.md §12)."""
    if "accepted" not in trace.fields():
        return {}
    return dict(symbol=np.where(trace.column("accepted") == 0.0, "circle-open", "circle").tolist(), size=7)


def _rgba(hex_colour: str, alpha: float) -> str:
    r, g, b = (int(hex_colour[k : k + 2], 16) for k in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def trace_figure(chart: str, runs: Mapping[str, Trace], x_axis: str = "step") -> go.Figure:
    """One chart (a key of ``CHARTS``) for every run in ``runs`` (label → trace).

    Per-sample fields: median line and interquartile band; batch fields (γ): one line.
    The stiffness chart also draws each run's stability boundary against z.
    """
    if chart not in CHARTS:
        raise ValueError(f"chart must be one of {', '.join(CHARTS)}, got {chart!r}")
    traces: list[go.Scatter] = []  # the figure is made once at the end: add_trace re-validates every time
    for r, (label, trace) in enumerate(runs.items()):
        x = _x(trace, x_axis)
        for f, (field, name) in enumerate(CHARTS[chart]):
            if field not in trace.fields():
                continue
            colour, dash = COLOURS[f % len(COLOURS)], DASHES[r % len(DASHES)]
            column = trace.column(field)
            legend = f"{name} · {label}" if len(runs) > 1 else name
            if column.ndim == 1:
                traces.append(go.Scatter(x=x, y=compact(column), name=legend, mode="lines+markers",
                                         line=dict(color=colour, dash=dash), marker=_markers(trace)))  # fmt: skip
                continue
            low, mid, high = map(compact, quartiles(column))
            group = f"{field}-{label}"
            traces.append(go.Scatter(x=x, y=high, mode="lines", line=dict(width=0), showlegend=False,
                                     legendgroup=group, hoverinfo="skip"))  # fmt: skip
            traces.append(go.Scatter(x=x, y=low, mode="lines", line=dict(width=0), fill="tonexty",
                                     fillcolor=_rgba(colour, 0.15), showlegend=False, legendgroup=group,
                                     hoverinfo="skip"))  # fmt: skip
            traces.append(go.Scatter(x=x, y=mid, name=legend, mode="lines+markers", marker=_markers(trace),
                                     line=dict(color=colour, dash=dash), legendgroup=group))  # fmt: skip
        if chart == "stiffness" and "stiffness_z" in trace.fields():
            traces.append(go.Scatter(x=x, y=compact(trace.column("stability_boundary")), mode="lines",
                                     name="stability boundary" + (f" · {label}" if len(runs) > 1 else ""),
                                     line=dict(color="black", dash=DASHES[r % len(DASHES)], width=1)))  # fmt: skip
    fig = go.Figure(data=traces)
    if not traces:
        fig.add_annotation(text=f"not recorded in this run: turn on {HINTS[chart]}", showarrow=False,
                           x=0.5, y=0.5, xref="paper", yref="paper", font=dict(color="grey"))  # fmt: skip
    rejected = any("accepted" in t.fields() and (t.column("accepted") == 0.0).any() for t in runs.values())
    fig.update_layout(
        title=TITLES[chart] + "<br><sup>lines: median over samples; bands: interquartile range"
        + ("; hollow markers: rejected adaptive steps" if rejected else "") + "</sup>",
        uirevision=chart, template=TEMPLATE, height=380, margin=dict(l=50, r=10, t=60, b=40),
        legend=dict(orientation="h", yanchor="top", y=-0.22, font=dict(size=10),
                    entrywidth=0.5, entrywidthmode="fraction"),  # two entries a row: no overlaps
        xaxis=dict(title="σ_i" if x_axis == "sigma" else "step i",
                   type="log" if x_axis == "sigma" else "linear", autorange="reversed" if x_axis == "sigma" else True),
        yaxis=dict(type="log" if chart in LOG_Y else "linear"),
    )  # fmt: skip
    return fig


def _step_z(trace: Trace) -> tuple[np.ndarray, np.ndarray, str]:
    """(step indices, z per step, what z is): h·λ₁ (median λ₁) when recorded, else −|h|·ρ̂ (median)."""
    h = trace.column("sigma_next") - trace.column("sigma")
    if "eig_max" in trace.fields():
        z, source = h * quartiles(trace.column("eig_max"))[1], "z = h·λ₁ (median)"
    else:
        z, source = -np.abs(h) * quartiles(trace.column("stiffness"))[1], "z = −|h|·ρ̂ (median)"
    keep = np.isfinite(z)
    return trace.column("i")[keep], z[keep], source


def stability_figure(solver: str, trace: Trace | Mapping[str, Trace] | None = None, extent: float | None = None,
                     resolution: int = 121, points: Mapping[str, complex] | None = None) -> go.Figure:  # fmt: skip
    """The solver's stability region {z : growth(z) ≤ 1}, each step's z = hλ₁ on it, and extra ``points``.

    ``trace`` is one trace or several (label → trace, drawn with different symbols).
    h = σ_{i+1} − σ_i and λ₁ = ``eig_max`` (median over samples) when recorded; otherwise the
    secant estimate z = −|h| ρ̂ on the negative real axis. Steps outside the region are the
    ones an explicit solver cannot take stably along that direction; the steps are coloured
    by index (hover for the number). ``points`` (label → z) are drawn as labelled crosses (the
    Learn tab's z = hλ). The view spans Re z ∈ [−extent, 1], by default wide enough for every
    step's z (at least 4, at most 50).
    """
    runs = {"": trace} if isinstance(trace, Trace) else dict(trace or {})
    steps = {label: _step_z(t) for label, t in runs.items() if t.steps}
    if extent is None:
        largest = max((np.abs(z).max(initial=0.0) for _, z, _ in steps.values()), default=0.0)
        extent = float(min(max(4.0, 1.15 * largest), 50.0))
    method = get_solver(solver)
    re = np.linspace(-extent, 1.0, resolution)
    im = np.linspace(-extent / 1.5, extent / 1.5, resolution)
    growth = method.amplification(re[None, :] + 1j * im[:, None])
    fig = go.Figure(go.Contour(x=compact(re), y=compact(im), z=(growth <= 1.0).astype(np.uint8), showscale=False,
                               contours=dict(start=0.5, end=0.5, size=1, coloring="fill"),
                               colorscale=[[0, "white"], [1, "#c6dbef"]], name="stable region", hoverinfo="skip"))  # fmt: skip
    for r, (label, (index, z, source)) in enumerate(steps.items()):
        marker = dict(size=10, color=index.astype(np.int32), colorscale="Viridis", symbol=("circle", "diamond-open")[r % 2],
                      line=dict(width=1.5), showscale=r == 0, colorbar=dict(title="step", thickness=12))  # fmt: skip
        fig.add_trace(go.Scatter(x=compact(z), y=np.zeros(z.shape, np.float32), mode="markers",
                                 name=source + (f" · {label}" if label else ""),
                                 marker=marker, hovertext=[f"step {int(i)}: z = {v:.3g}" for i, v in zip(index, z)],
                                 hoverinfo="text"))  # fmt: skip
    for k, (label, z) in enumerate((points or {}).items()):
        marker = dict(size=12, symbol="x", color=COLOURS[(k + 1) % len(COLOURS)])
        fig.add_trace(go.Scatter(x=[z.real], y=[z.imag], mode="markers+text", name=label, text=[label],
                                 textposition="top center", marker=marker))  # fmt: skip
    fig.update_layout(title=f"Stability region of {solver}", template=TEMPLATE, height=380,
                      xaxis=dict(title="Re z", range=[-extent, 1.0], constrain="domain"),
                      yaxis=dict(title="Im z", scaleanchor="x", constrain="domain"),
                      legend=dict(orientation="h", y=-0.25, font=dict(size=10)),
                      uirevision=f"stability-{solver}", margin=dict(l=50, r=10, t=40, b=40))  # fmt: skip
    return fig
