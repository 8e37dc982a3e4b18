"""The stiffness map view: the authors' overview figure, live, for the app and the HTML report.

Two figures at one noise level σ, drawn from :mod:`stiffviz.diagnostics.stiffness_map` (docs/math.md
§7; no mathematics here):

* **the map**: ρ(J), the spectral radius of the drift Jacobian, on a ``VIEW_RESOLUTION``² grid over
  the particle view's square at σ, as 256 levels of log₁₀ ρ (one byte a grid point, at most
  ``DECADES`` decades below the top), the mixture's centres on top and the two segments marked;
* **the segments**: left, the thin branch up close, an arrow of the drift f at each point of the
  two segments, red where ⟨f, n⟩ > 0 and blue where it is < 0 (n: the across direction); right,
  ⟨f, n⟩ against the position t on each segment.

Display only: nothing here changes a run. Only 2-D models with an exact Jacobian have it
(:func:`~stiffviz.diagnostics.stiffness_map.supports_map`); for others :func:`stiffness_view`
says so instead.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from ..diagnostics.stiffness_map import (
    Branch, BranchStiffness, Segment, StiffnessMap, branch_stiffness, segments, stiffness_map, supports_map,
    thin_branch,
)  # fmt: skip
from .plots import TEMPLATE
from .render import cached, view_extent

VIEW_RESOLUTION = 120  # grid points per side of the map sent to the page (14,400 bytes of levels)
DECADES = 6.0  # decades of ρ the map's colours span below its maximum
LOG_SIGMA = (-2.5, 0.5, -1.5, 0.05)  # the σ slider, in log₁₀ σ: minimum, maximum, default, step
POSITIVE, NEGATIVE = "#d62728", "#1f77b4"
NOT_SUPPORTED = ("The stiffness map needs a 2-D model with an exact Jacobian: the toys tree, rings, moons and "
                 "swissroll, or your own points. **{name}** is not one, so there is no map to show.")  # fmt: skip


@functools.lru_cache(maxsize=16)
def view_data(model, sigma: float, cond=None) -> tuple[StiffnessMap, Branch, tuple[Segment, Segment], BranchStiffness]:
    """The map over the particle view's square at σ, the thin branch, its segments and its stiffness
    (cached per server and σ; see :func:`~stiffviz.app.render.cached` for a visitor's own model)."""
    grid = stiffness_map(model, sigma, view_extent(model, sigma, cond), VIEW_RESOLUTION, cond)
    branch = thin_branch(model, cond)
    return grid, branch, segments(model, branch, sigma, cond), branch_stiffness(model, branch, sigma, cond)


def log_levels(rho: np.ndarray, decades: float = DECADES) -> tuple[np.ndarray, float, float]:
    """log₁₀ ρ as 8-bit levels (0 at ``decades`` below the top or lower, 255 at the top) and the
    range (low, high) in log₁₀ ρ that the levels span."""
    logs = np.log10(np.maximum(rho, np.finfo(np.float64).tiny))
    high = float(np.nanmax(logs))
    low = max(float(np.nanmin(logs)), high - decades)
    span = max(high - low, 1e-12)
    return np.round((np.clip(logs, low, high) - low) * (255 / span)).astype(np.uint8), low, high


def _colour_bar(low: float, high: float) -> dict:
    decades = range(math.ceil(low), math.floor(high) + 1)
    span = max(high - low, 1e-12)
    return dict(title="ρ(J)", tickvals=[(k - low) * 255 / span for k in decades],
                ticktext=[f"10<sup>{k}</sup>" for k in decades])  # fmt: skip


def _f32(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float32).numpy()


def map_figure(model, grid: StiffnessMap, branch: Branch, pair: tuple[Segment, Segment], cond=None) -> go.Figure:
    """The heat map of ρ(J) with the mixture's centres and the two segments."""
    levels, low, high = log_levels(grid.rho.numpy())
    axis = _f32(grid.axis)
    fig = go.Figure(go.Heatmap(x=axis, y=axis, z=levels, zmin=0, zmax=255, colorscale="Viridis", hoverinfo="skip",
                               colorbar=_colour_bar(low, high), name="ρ(J)"))  # fmt: skip
    centres = _f32(model.components(cond)[0])
    fig.add_trace(go.Scattergl(x=centres[:, 0], y=centres[:, 1], mode="markers", name="mixture centres",
                               marker=dict(size=2, color="rgba(255,255,255,0.6)"), hoverinfo="skip"))  # fmt: skip
    for segment, colour in zip(pair, ("#ff7f0e", "#e377c2")):
        ends = _f32(segment.points[[0, -1]])
        fig.add_trace(go.Scatter(x=ends[:, 0], y=ends[:, 1], mode="lines", name=f"{segment.name} segment",
                                 line=dict(color=colour, width=3)))  # fmt: skip
    extent = float(grid.axis[-1])
    fig.update_layout(title=f"{getattr(model, 'name', 'model')}: spectral radius of the drift Jacobian at "
                            f"σ = {grid.sigma:.3g}", template=TEMPLATE, height=460,
                      xaxis=dict(range=[-extent, extent], constrain="domain"),
                      yaxis=dict(range=[-extent, extent], scaleanchor="x", constrain="domain"),
                      legend=dict(orientation="h", y=-0.08), margin=dict(l=30, r=10, t=40, b=30))  # fmt: skip
    return fig


def _arrow_angles(vectors: np.ndarray) -> np.ndarray:
    """Plotly's marker angle (degrees clockwise from up) of each 2-D vector."""
    return (90.0 - np.degrees(np.arctan2(vectors[:, 1], vectors[:, 0]))).astype(np.float32)


def segment_figure(model, branch: Branch, pair: tuple[Segment, Segment], sigma: float, cond=None) -> go.Figure:
    """Left: the branch up close, an arrow of f at each segment point coloured by the sign of ⟨f, n⟩;
    right: ⟨f, n⟩ against the position on each segment."""
    fig = make_subplots(1, 2, column_widths=[0.5, 0.5], horizontal_spacing=0.12,
                        subplot_titles=("drift f on the segments (red: ⟨f, n⟩ > 0, blue: < 0)",
                                        "⟨f, n⟩ along each segment"))  # fmt: skip
    centre = branch.centre
    reach = 1.15 * max(float(s.points.sub(centre).norm(dim=1).max()) for s in pair)
    means = model.components(cond)[0]
    near = _f32(means[(means - centre).abs().amax(1) <= reach])
    fig.add_trace(go.Scatter(x=near[:, 0], y=near[:, 1], mode="markers", name="mixture centres",
                             marker=dict(size=5, color="#999999"), hoverinfo="skip"), 1, 1)  # fmt: skip
    for segment, dash in zip(pair, ("solid", "dot")):
        points, f, p = _f32(segment.points), _f32(segment.drift), _f32(segment.projection)
        fig.add_trace(go.Scatter(x=points[:, 0], y=points[:, 1], mode="lines+markers", name=f"{segment.name}",
                                 line=dict(color="#555555", width=1, dash=dash), showlegend=False,
                                 marker=dict(symbol="arrow", size=11, angle=_arrow_angles(f),
                                             color=np.where(p >= 0, POSITIVE, NEGATIVE)),
                                 customdata=p, hovertemplate="⟨f, n⟩ = %{customdata:.3g}<extra></extra>"), 1, 1)  # fmt: skip
        fig.add_trace(go.Scatter(x=_f32(segment.offsets), y=p, mode="lines+markers", name=segment.name,
                                 line=dict(dash=dash)), 1, 2)  # fmt: skip
    fig.add_hline(y=0, line=dict(color="#999999", width=1), row=1, col=2)
    cx, cy = float(centre[0]), float(centre[1])
    fig.update_xaxes(range=[cx - reach, cx + reach], constrain="domain", row=1, col=1)
    fig.update_yaxes(range=[cy - reach, cy + reach], scaleanchor="x", constrain="domain", row=1, col=1)
    fig.update_xaxes(title_text="position t on the segment", row=1, col=2)
    fig.update_layout(title=f"a thin branch (component {branch.component}) at σ = {sigma:.3g}: across, the drift "
                            "flips sign; beside it, it keeps one", template=TEMPLATE, height=420,
                      legend=dict(orientation="h", y=-0.15), margin=dict(l=30, r=10, t=60, b=30))  # fmt: skip
    return fig


def summary(model, grid: StiffnessMap, branch: Branch, stiffness: BranchStiffness, pair: tuple[Segment, Segment]) -> str:
    """A Markdown paragraph with the figure's numbers."""
    across, along = pair
    rho = grid.rho
    flips = bool((across.projection[0] < 0) != (across.projection[-1] < 0))
    one_sign = bool((along.projection > 0).all() or (along.projection < 0).all())
    return (f"**{getattr(model, 'name', 'model')}** at σ = {grid.sigma:.3g}: on the branch (component "
            f"{branch.component}'s centre) ρ(J) = {stiffness.rho:.3g}, and the across direction n lines up with "
            f"the dominant eigenvector (|cos(n, v₁)| = {stiffness.alignment:.3f}); over the map ρ(J) has median "
            f"{float(rho.median()):.3g} and maximum {float(rho.max()):.3g} (between branches). Across the branch "
            f"⟨f, n⟩ {'changes sign' if flips else 'keeps one sign'}; beside it, along the branch, it "
            f"{'keeps one sign' if one_sign else 'changes sign'}. Display only: the map changes no run.")  # fmt: skip


def stiffness_view(model, sigma: float, cond=None) -> tuple[go.Figure | None, go.Figure | None, str]:
    """(map, segments, note) for ``model`` at σ, or (None, None, why not) for a model without a map."""
    if not supports_map(model):
        return None, None, NOT_SUPPORTED.format(name=getattr(model, "name", "this model"))
    grid, branch, pair, stiffness = cached(view_data, model)(model, float(sigma), cond)
    return (map_figure(model, grid, branch, pair, cond), segment_figure(model, branch, pair, grid.sigma, cond),
            summary(model, grid, branch, stiffness, pair))  # fmt: skip
