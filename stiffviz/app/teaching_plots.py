"""Plotly figures of the Learn tab's examples (:mod:`stiffviz.teaching`); they draw what the
examples return and compute nothing but axis ranges and the arrow scale.

Each figure carries a fixed ``uirevision`` so the browser keeps the user's zoom while the
inputs change.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .plots import COLOURS, TEMPLATE, stability_figure
from ..teaching import AlignmentSweep, ScalarExample, StiffSystemExample

LAYOUT = dict(template=TEMPLATE, margin=dict(l=55, r=10, t=45, b=40), legend=dict(orientation="h", y=-0.3))
EXACT = dict(color="black", width=1.5)
ARROW_FRACTION = 0.15  # the longest drawn error vector is this fraction of the trajectory's extent


def complex_text(z: complex) -> str:
    """``-2.1`` for a real z, ``-1 + 2i`` otherwise (4 significant digits)."""
    if z.imag == 0:
        return f"{z.real:.4g}"
    return f"{z.real:.4g} {'+' if z.imag > 0 else '−'} {abs(z.imag):.4g}i"


def _numerical(name: str, colour: str = COLOURS[0]) -> dict:
    line, marker = dict(color=colour, width=1, dash="dot"), dict(size=6, color=colour)
    return dict(mode="markers+lines", name=name, line=line, marker=marker)


def solution_figure(ex: ScalarExample) -> go.Figure:
    """Re y and |y| (log axis) against t: the exact solution as a line, the numerical steps as markers."""
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.1, subplot_titles=("Re y", "|y| (log axis)"))
    for row, part in ((1, np.real), (2, np.abs)):
        fig.add_trace(go.Scatter(x=ex.t_dense, y=part(ex.y_dense), mode="lines", name="exact y₀·exp(λt)", line=EXACT,
                                 legendgroup="exact", showlegend=row == 1), row=row, col=1)  # fmt: skip
        fig.add_trace(go.Scatter(x=ex.t, y=part(ex.y), legendgroup="num", showlegend=row == 1,
                                 **_numerical(f"{ex.solver}, h = {ex.h:g}")), row=row, col=1)  # fmt: skip
    fig.update_yaxes(type="log", exponentformat="power", row=2, col=1)
    fig.update_xaxes(title="t", row=2, col=1)
    fig.update_layout(title=f"y' = λy, λ = {complex_text(ex.lam)}", height=460, uirevision="learn-solution", **LAYOUT)
    return fig


def growth_figure(ex: ScalarExample) -> go.Figure:
    """Measured growth |y_{n+1}/y_n| per step against |R(z)|, |e^z| and the stability threshold 1."""
    n = np.arange(len(ex.growth))
    fig = go.Figure(go.Scatter(x=n, y=ex.growth, **_numerical("measured |yₙ₊₁/yₙ|")))
    for value, name, dash in ((ex.amplification, f"|R(z)| = {ex.amplification:.4g}", "dash"),
                              (ex.exact_growth, f"exact |exp(z)| = {ex.exact_growth:.4g}", "solid"),
                              (1.0, "1: stability threshold", "dot")):  # fmt: skip
        fig.add_trace(go.Scatter(x=[-0.5, max(len(n) - 0.5, 0.5)], y=[value, value], mode="lines", name=name,
                                 line=dict(color="black" if value == 1.0 else COLOURS[1], dash=dash, width=1)))  # fmt: skip
    fig.update_layout(title="Growth per step", xaxis_title="step n", yaxis=dict(title="factor", rangemode="tozero"),
                      height=320, uirevision="learn-growth", **LAYOUT)  # fmt: skip
    return fig


def _extent(points: list[complex]) -> float:
    return max([4.0] + [1.15 * max(-z.real, 1.5 * abs(z.imag)) for z in points])


def z_stability_figure(ex: ScalarExample) -> go.Figure:
    """The solver's stability region with the point z = hλ."""
    fig = stability_figure(ex.solver, extent=_extent([ex.z]), points={"z = hλ": ex.z})
    fig.update_layout(uirevision="learn-stability-scalar")
    return fig


def modes_stability_figure(ex: StiffSystemExample) -> go.Figure:
    """The solver's stability region with z = hλ_stiff and z = hλ_slow."""
    points = {"hλ_stiff": complex(ex.z_stiff), "hλ_slow": complex(ex.z_slow)}
    fig = stability_figure(ex.solver, extent=_extent(list(points.values())), points=points)
    fig.update_layout(uirevision="learn-stability-system")
    return fig


def _arrows(starts: np.ndarray, vectors: np.ndarray, scale: float, name: str, colour: str) -> go.Scatter:
    """Segments start → start + scale·vector with an arrow head at the end (None separates them)."""
    ends = starts + scale * vectors
    x = np.column_stack([starts[:, 0], ends[:, 0], np.full(len(starts), np.nan)]).ravel()
    y = np.column_stack([starts[:, 1], ends[:, 1], np.full(len(starts), np.nan)]).ravel()
    sizes = np.tile([0, 10, 0], len(starts))
    return go.Scatter(x=x, y=y, mode="lines+markers", name=name, line=dict(color=colour, width=1.5), connectgaps=False,
                      marker=dict(symbol="arrow", angleref="previous", size=sizes, color=colour))  # fmt: skip


def phase_figure(ex: StiffSystemExample) -> go.Figure:
    """Phase plane: exact and numerical trajectories, the eigen-directions, and per step the
    error vectors drawn from y_{n+1}, each set scaled so its longest arrow is visible (scale in the legend)."""
    points = np.vstack([ex.y, ex.y_dense, np.zeros((1, 2))])
    low, high = points.min(axis=0), points.max(axis=0)
    pad = 0.1 * float(np.max(high - low))
    reach = 2.0 * float(np.max(np.abs(points))) + pad  # eigen-direction lines cross the whole view
    fig = go.Figure()
    directions = ((ex.v_stiff, f"v_stiff (λ = {ex.lam_stiff:g})", "dash"), (ex.v_slow, f"v_slow (λ = {ex.lam_slow:g})", "dot"))
    for v, name, dash in directions:
        fig.add_trace(go.Scatter(x=[-reach * v[0], reach * v[0]], y=[-reach * v[1], reach * v[1]], mode="lines", name=name,
                                 line=dict(color="grey", dash=dash, width=1)))  # fmt: skip
    fig.add_trace(go.Scatter(x=ex.y_dense[:, 0], y=ex.y_dense[:, 1], mode="lines", name="exact exp(tM)·y₀", line=EXACT))
    fig.add_trace(go.Scatter(x=ex.y[:, 0], y=ex.y[:, 1], **_numerical(f"{ex.solver}, h = {ex.h:g}")))
    vectors = ((ex.lte_exact, "exact LTE exp(hM)yₙ − yₙ₊₁", COLOURS[1]), (ex.lte_estimate, "embedded estimate e", COLOURS[2]))
    for errors, name, colour in vectors:
        if errors is None or not len(errors):
            continue
        longest = float(np.max(np.linalg.norm(errors, axis=1)))
        scale = ARROW_FRACTION * float(np.max(high - low)) / longest if longest > 0 else 1.0
        fig.add_trace(_arrows(ex.y[1:], errors, scale, f"{name}, drawn × {scale:.3g}", colour))
    fig.update_layout(title="Phase plane of y' = My (arrows from yₙ₊₁)", height=460, uirevision="learn-phase",
                      xaxis=dict(title="y₁", range=[low[0] - pad, high[0] + pad]),
                      yaxis=dict(title="y₂", range=[low[1] - pad, high[1] + pad], scaleanchor="x"), **LAYOUT)  # fmt: skip
    return fig


def alignment_figure(ex: StiffSystemExample) -> go.Figure:
    """|cos(ℓ_n, v_stiff)| and |cos(e_n, v_stiff)| per step, as the sampler's alignment chart."""
    n = np.arange(len(ex.cos_exact))
    fig = go.Figure(go.Scatter(x=n, y=ex.cos_exact, **_numerical("|cos(exact LTE, v_stiff)|", COLOURS[1])))
    if ex.cos_estimate is not None:
        fig.add_trace(go.Scatter(x=n, y=ex.cos_estimate, **_numerical("|cos(embedded e, v_stiff)|", COLOURS[2])))
    fig.update_layout(title="Alignment of the error with the stiff direction", xaxis_title="step n",
                      yaxis=dict(title="|cos|", range=[0, 1.05]), height=320, uirevision="learn-alignment",
                      **LAYOUT)  # fmt: skip
    return fig


def sweep_figure(sw: AlignmentSweep) -> go.Figure:
    """Median (solid) and last-step (dashed) |cos(error, v_stiff)| against h|λ_stiff| over one
    duration, the solver's real-axis boundary as a vertical line and the chosen h marked."""
    fig = go.Figure()
    hover = "h|λ_stiff| = %{x:.3f}<br>h = %{customdata[0]:.4g}, N = %{customdata[1]}<br>|cos| = %{y:.3f}"
    custom = np.column_stack([sw.h, sw.steps])
    curves = [(sw.median_exact, sw.last_exact, "exact LTE", COLOURS[1]),
              (sw.median_estimate, sw.last_estimate, "embedded e", COLOURS[2])]  # fmt: skip
    for median, last, name, colour in curves:
        if median is None:
            continue
        fig.add_trace(go.Scatter(x=sw.z, y=median, mode="lines+markers", name=f"{name}: median over the run",
                                 line=dict(color=colour, width=1.5), marker=dict(size=4, color=colour),
                                 customdata=custom, hovertemplate=hover))  # fmt: skip
        fig.add_trace(go.Scatter(x=sw.z, y=last, mode="lines", name=f"{name}: last step", customdata=custom,
                                 line=dict(color=colour, width=1.5, dash="dash"), hovertemplate=hover))  # fmt: skip
    fig.add_trace(go.Scatter(x=[sw.boundary, sw.boundary], y=[0, 1.05], mode="lines", name=f"stability boundary {sw.boundary:.4g}",
                             line=dict(color="black", dash="dot", width=1)))  # fmt: skip
    fig.add_trace(go.Scatter(x=[sw.z_chosen, sw.z_chosen], y=[0, 1.05], mode="lines", line=dict(color="grey", width=1),
                             name=f"chosen h|λ_stiff| = {sw.z_chosen:.4g}", legendgroup="chosen"))  # fmt: skip
    if sw.chosen is not None:
        k = sw.chosen
        marks = [(curve[k], colour) for curve, colour in ((sw.median_exact, COLOURS[1]), (sw.last_exact, COLOURS[1]),
                 (sw.median_estimate, COLOURS[2]), (sw.last_estimate, COLOURS[2])) if curve is not None]  # fmt: skip
        fig.add_trace(go.Scatter(x=[sw.z_chosen] * len(marks), y=[m[0] for m in marks], mode="markers", showlegend=False,
                                 legendgroup="chosen", hovertemplate="chosen h: |cos| = %{y:.3f}<extra></extra>",
                                 marker=dict(symbol="diamond", size=10, color=[m[1] for m in marks],
                                             line=dict(color="black", width=1))))  # fmt: skip
    right = 1.05 * max(float(np.max(sw.z)), sw.z_chosen, sw.boundary)
    fig.update_layout(title=f"Same duration T = N·h = {sw.duration:.4g}, other step sizes", height=380,
                      xaxis=dict(title="h|λ_stiff|", range=[0, right]), uirevision="learn-sweep",
                      yaxis=dict(title="|cos(error, v_stiff)|", range=[0, 1.05]), **LAYOUT)  # fmt: skip
    return fig


def path_stiffness_figure(sigmas: np.ndarray, z: dict[str, np.ndarray], shift: dict[str, np.ndarray]) -> go.Figure:
    """h·λ per step against σ_i for each path (``z``), with the part the scaling adds, h·s′/s (``shift``, dotted)."""
    fig = go.Figure()
    for n, (path, values) in enumerate(z.items()):
        colour = COLOURS[n % len(COLOURS)]
        fig.add_scatter(x=sigmas, y=values, mode="markers+lines", name=f"{path}: h·λ", line=dict(color=colour))
        if np.any(shift[path] != 0):
            fig.add_scatter(x=sigmas, y=shift[path], mode="lines", name=f"{path}: h·s′/s",
                            line=dict(color=colour, dash="dot"))  # fmt: skip
    fig.update_layout(**LAYOUT, title="one ODE, three coordinates: h·λ per step", uirevision="paths",
                      xaxis=dict(type="log", title="σ at the step's start", autorange="reversed"),
                      yaxis=dict(title="h·λ (h < 0: towards t = 0)"))  # fmt: skip
    return fig
