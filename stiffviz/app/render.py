"""Pictures of the evolving state, for the app and reports (no sampling mathematics here).

* Image models: a grid of the batch's images (state or x0 preview), mapped from [−1, 1]
  to 8-bit grey, each tile enlarged by nearest-neighbour so 8×8 digits stay crisp.
* 2-D models: the particles over the model's noisy density p_σ at the current σ (its
  ``log_prob``, drawn as a heat map of 256 grey levels), with each particle's path so far.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import plotly.graph_objects as go
import torch

from .plots import TEMPLATE

DENSITY_SPAN = 12.0  # nats of log p_σ below its maximum that the particle view shades


def image_grid(images: torch.Tensor, columns: int | None = None, tile: int = 64, gap: int = 2) -> np.ndarray:
    """(B, C, H, W) in [−1, 1] → one (rows·(tile+gap), columns·(tile+gap), 3) uint8 picture.

    Values outside [−1, 1] (a noisy state) are clipped; C = 1 is shown in grey.
    """
    x = images.detach().to("cpu", torch.float32)
    if x.ndim != 4:
        raise ValueError(f"expected images (B, C, H, W), got shape {tuple(x.shape)}")
    batch, channels, height, width = x.shape
    columns = columns or max(1, math.ceil(math.sqrt(batch)))
    rows = max(1, math.ceil(batch / columns))
    scale = max(1, tile // max(height, width))
    pixels = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    pixels = pixels.repeat_interleave(scale, 2).repeat_interleave(scale, 3)
    if channels == 1:
        pixels = pixels.expand(-1, 3, -1, -1)
    h, w = pixels.shape[2] + gap, pixels.shape[3] + gap
    canvas = np.full((rows * h, columns * w, 3), 255, dtype=np.uint8)
    for k in range(batch):
        r, c = divmod(k, columns)
        canvas[r * h : r * h + h - gap, c * w : c * w + w - gap] = pixels[k, :3].permute(1, 2, 0).numpy()
    return canvas


def cached(function, model):
    """``function``, cached per server, or uncached for a model marked ``session_only`` (a
    visitor's own data: no server-wide cache may hold it, see :mod:`stiffviz.app.userdata`)."""
    return function.__wrapped__ if getattr(model, "session_only", False) else function


@functools.lru_cache(maxsize=8)
def data_extent(model, cond=None) -> float:
    """Half-width of a square holding 98 % of the model's clean data (×1.15, at least 1)."""
    reference = model.sample_reference(512, torch.Generator().manual_seed(0), cond=cond)
    return float(max(torch.quantile(reference.abs(), 0.98).item() * 1.15, 1.0))


def view_extent(model, sigma: float, cond=None) -> float:
    """The particle view's half-width at noise level σ: the data's, or 2.5σ while noise dominates
    (x = x0 + σε has |ε| < 2.5 for 99 % of coordinates). It depends only on the model and σ, so
    runs on the same σ grid share views (and cached densities)."""
    return max(cached(data_extent, model)(model, cond), 2.5 * sigma)


@functools.lru_cache(maxsize=256)
def density_grid(model, sigma: float, cond, extent: float, resolution: int) -> np.ndarray:
    """log p_σ on a resolution² grid over [−extent, extent]², rows along y (float32 is plenty
    for a picture), clipped ``DENSITY_SPAN`` nats below its maximum so the tails stay visible."""
    grid = torch.linspace(-extent, extent, resolution)
    xx, yy = torch.meshgrid(grid, grid, indexing="xy")
    with torch.no_grad():
        density = model.log_prob(torch.stack([xx.flatten(), yy.flatten()], 1), max(sigma, 1e-3), cond)
    density = density.view(resolution, resolution)
    return density.clamp_min(density.max() - DENSITY_SPAN).numpy()


def density_levels(density: np.ndarray, span: float = DENSITY_SPAN) -> np.ndarray:
    """log p_σ as 8-bit grey levels: 0 at ``span`` nats below its maximum (or lower), 255 at it.

    A level is span/255 ≈ 0.05 nats wide: the picture's precision, at one byte a grid point.
    """
    top = float(np.nanmax(density))
    return np.round((np.clip(density, top - span, top) - (top - span)) * (255 / span)).astype(np.uint8)


@dataclass(frozen=True)
class Colouring:
    """Particle colours from one number per particle (NaN: none, drawn grey), on a colour bar titled
    ``title``; with ``midpoint`` a diverging scale centred there (blue below, red above)."""

    title: str
    values: np.ndarray
    midpoint: float | None = None


def _coloured(fig: go.Figure, points: np.ndarray, colouring: Colouring) -> None:
    values = np.asarray(colouring.values, dtype=np.float64)[: len(points)]
    finite = np.isfinite(values)
    if (~finite).any():
        fig.add_trace(go.Scattergl(x=points[~finite, 0], y=points[~finite, 1], mode="markers", name="no value",
                                   marker=dict(size=3, color="#aaaaaa")))  # fmt: skip
    scale = dict(colorscale="RdBu_r", cmid=colouring.midpoint) if colouring.midpoint is not None else \
        dict(colorscale="Viridis")  # fmt: skip
    fig.add_trace(go.Scattergl(x=points[finite, 0], y=points[finite, 1], mode="markers", name="particles",
                               marker=dict(size=4, color=values[finite].astype(np.float32), showscale=True,
                                           colorbar=dict(title=colouring.title), **scale)))  # fmt: skip


def particle_figure(model, paths: Sequence[torch.Tensor], sigma: float, cond=None, extent: float | None = None,
                    resolution: int = 90, max_paths: int = 256, max_particles: int | None = None,
                    colouring: Colouring | None = None) -> go.Figure:  # fmt: skip
    """Particles of a 2-D model over log p_σ, with their paths (a list of (B, 2) states so far).

    The view spans ``extent`` (default :func:`view_extent`). The density is drawn as
    :func:`density_levels` (one byte a grid point); the first ``max_paths`` particles' paths and
    the first ``max_particles`` particles (None: all) are drawn, in float32: the batch's
    particles are independent draws, so the first n are a uniform subsample, the same n at
    every step. The title says how many of the batch are shown when not all are. The particles
    are red, or coloured by ``colouring`` (its values of the first particles of the batch).
    """
    batch = paths[-1].shape[0]
    shown = batch if max_particles is None else min(batch, max_particles)
    current = paths[-1][:shown].detach().to("cpu", torch.float32).numpy()
    extent = extent if extent is not None else view_extent(model, sigma, cond)
    grid = np.linspace(-extent, extent, resolution, dtype=np.float32)
    levels = density_levels(cached(density_grid, model)(model, float(sigma), cond, float(extent), resolution))
    fig = go.Figure(go.Heatmap(x=grid, y=grid, z=levels, zmin=0, zmax=255, colorscale="Greys", showscale=False,
                               hoverinfo="skip", name="log p_σ"))  # fmt: skip
    lines = min(batch, max_paths)
    if len(paths) > 1:
        stacked = torch.stack([p[:lines].detach().to("cpu", torch.float32) for p in paths])  # (T, n, 2)
        gaps = torch.full((1, lines), float("nan"))
        xs = torch.cat([stacked[:, :, 0], gaps]).T.flatten()
        ys = torch.cat([stacked[:, :, 1], gaps]).T.flatten()
        fig.add_trace(go.Scattergl(x=xs.numpy(), y=ys.numpy(), mode="lines", name="paths",
                                   line=dict(width=0.6, color="rgba(31,119,180,0.35)"), hoverinfo="skip"))  # fmt: skip
    if colouring is None:
        fig.add_trace(go.Scattergl(x=current[:, 0], y=current[:, 1], mode="markers", name="particles",
                                   marker=dict(size=3, color="#d62728")))  # fmt: skip
    else:
        _coloured(fig, current, colouring)
    title = f"particles at σ = {sigma:.3g}" + (f" ({shown:,} of {batch:,} shown)" if shown < batch else "")
    fig.update_layout(title=title, template=TEMPLATE, height=420,
                      xaxis=dict(range=[-extent, extent], constrain="domain"),
                      yaxis=dict(range=[-extent, extent], scaleanchor="x", constrain="domain"),
                      uirevision=f"particles-{extent:.6g}", margin=dict(l=30, r=10, t=40, b=30),
                      showlegend=False)  # fmt: skip  (uirevision: zoom persists while the view's extent does)
    return fig
