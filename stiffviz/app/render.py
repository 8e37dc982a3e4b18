"""Pictures of the evolving state, for the app and reports (no sampling mathematics here).

* Image models: a grid of the batch's images (state or x0 preview), mapped from [−1, 1]
  to 8-bit grey, each tile enlarged by nearest-neighbour so 8×8 digits stay crisp.
* 2-D models: the particles over the model's noisy density p_σ at the current σ (its
  ``log_prob``, drawn as a heat map), with each particle's path so far.
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import numpy as np
import plotly.graph_objects as go
import torch

from .plots import TEMPLATE


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
    for a picture), clipped 12 nats below its maximum so the tails stay visible."""
    grid = torch.linspace(-extent, extent, resolution)
    xx, yy = torch.meshgrid(grid, grid, indexing="xy")
    with torch.no_grad():
        density = model.log_prob(torch.stack([xx.flatten(), yy.flatten()], 1), max(sigma, 1e-3), cond)
    density = density.view(resolution, resolution)
    return density.clamp_min(density.max() - 12).numpy()


def particle_figure(model, paths: Sequence[torch.Tensor], sigma: float, cond=None, extent: float | None = None,
                    resolution: int = 90, max_paths: int = 256) -> go.Figure:  # fmt: skip
    """Particles of a 2-D model over log p_σ, with their paths (a list of (B, 2) states so far).

    The view spans ``extent`` (default :func:`view_extent`); at most ``max_paths`` paths are drawn.
    """
    current = paths[-1].detach().to("cpu", torch.float64)
    extent = extent if extent is not None else view_extent(model, sigma, cond)
    grid = np.linspace(-extent, extent, resolution)
    density = cached(density_grid, model)(model, float(sigma), cond, float(extent), resolution)
    fig = go.Figure(go.Heatmap(x=grid, y=grid, z=density, colorscale="Greys", showscale=False,
                               hoverinfo="skip", name="log p_σ"))  # fmt: skip
    shown = min(current.shape[0], max_paths)
    if len(paths) > 1:
        stacked = torch.stack([p.detach().to("cpu", torch.float64)[:shown] for p in paths])  # (T, n, 2)
        xs = torch.cat([stacked[:, :, 0], torch.full((1, shown), float("nan"), dtype=torch.float64)]).T.flatten()
        ys = torch.cat([stacked[:, :, 1], torch.full((1, shown), float("nan"), dtype=torch.float64)]).T.flatten()
        fig.add_trace(go.Scattergl(x=xs.numpy(), y=ys.numpy(), mode="lines", name="paths",
                                   line=dict(width=0.6, color="rgba(31,119,180,0.35)"), hoverinfo="skip"))  # fmt: skip
    fig.add_trace(go.Scattergl(x=current[:, 0].numpy(), y=current[:, 1].numpy(), mode="markers", name="particles",
                               marker=dict(size=3, color="#d62728")))  # fmt: skip
    fig.update_layout(title=f"particles at σ = {sigma:.3g}", template=TEMPLATE, height=420,
                      xaxis=dict(range=[-extent, extent], constrain="domain"),
                      yaxis=dict(range=[-extent, extent], scaleanchor="x", constrain="domain"),
                      uirevision=f"particles-{extent:.6g}", margin=dict(l=30, r=10, t=40, b=30),
                      showlegend=False)  # fmt: skip  (uirevision: zoom persists while the view's extent does)
    return fig
