"""Exact denoiser of a set of 2-D points, such as a visitor's own data (docs/math.md §7).

The points are first standardised, ``y_n = (p_n − mean) / s`` with s the mean of the two
per-axis standard deviations (the fitted toys' scale), so the data spread about 1 and the
app's schedule σ ∈ [0.002, 80] runs from far below the points' spacing to far above their extent.
Each point smoothed by a bandwidth h into N(y_n, h²I) gives p_0 = (1/N) Σ_n N(y_n, h²I), and
under noise σ, p_σ = (1/N) Σ_n N(x; y_n, (σ² + h²)I), so with V = σ² + h²

    r_n = softmax_n(−‖x − y_n‖² / (2V)),   D(x; σ) = x + (σ²/V)(Σ_n r_n y_n − x),

which at h = 0 is the empirical mixture's D = Σ_n r_n y_n. The model is a
:class:`GaussianMixtureDenoiser` with covariances h²I, so the exact score, log-density, Hessian
and Jacobians (every diagnostic's ground truth) come with it. Its covariances must be
positive definite, so h = 0 is taken as h = ``H_FLOOR`` = 10⁻⁶: the responsibilities are then
the empirical mixture's at √(σ² + 10⁻¹²) instead of σ, and the step toward their mean is
σ²/(σ² + 10⁻¹²) of it, both changes below 10⁻⁴ relative for σ ≥ 10⁻⁴ (the app's smallest σ_min).
The clean data of h = 0 are point masses, which have no density: such a model says so
(``discrete``), and the quality report gives it no NLL (the floor's would only measure 10⁻⁶).
Its Autoguidance twin (``weak``) is the same points smoothed by √(h² + ``WEAK_SMOOTHING``²).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import ParameterError
from .gmm import GaussianMixtureDenoiser

H_FLOOR = 1e-6  # the bandwidth used for h = 0 (standardised units)
H_MAX = 1.0  # the largest bandwidth, in standardised units (the data's spread)
WEAK_SMOOTHING = 0.3  # the Autoguidance twin's extra bandwidth, like the digits' twin


def standardise(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(y, mean, s): ``points`` (N, 2) centred and divided by s, the mean per-axis standard deviation.

    Refuses fewer than two points and points that are all equal (s = 0: nothing to scale).
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ParameterError("points", f"must have shape (N, 2), got {points.shape}")
    if len(points) < 2:
        raise ParameterError("points", f"has {len(points)} point{'s' * (len(points) != 1)}; "
                                       "a data set needs at least two distinct points")  # fmt: skip
    if not np.isfinite(points).all():
        raise ParameterError("points", "has values that are not finite (NaN or infinity)")
    mean = points.mean(0)
    with np.errstate(over="ignore"):
        scale = float(points.std(0).mean())
    if not math.isfinite(scale):
        raise ParameterError("points", "has values so large that their spread overflows; rescale the data")
    if scale <= 1e-12 * max(1.0, float(np.abs(points).max())):  # equal to within rounding
        raise ParameterError("points", f"all {len(points)} points are equal (degenerate: the data have no spread); "
                                       "give at least two distinct points")  # fmt: skip
    return (points - mean) / scale, mean, scale


def check_bandwidth(bandwidth: float) -> float:
    """h as a float in [0, ``H_MAX``], or a :class:`ParameterError` naming the bandwidth."""
    try:
        h = float(bandwidth) if not isinstance(bandwidth, (bool, str)) else math.nan  # True is no bandwidth
    except (TypeError, ValueError, OverflowError):
        raise ParameterError("bandwidth", f"must be a number in [0, {H_MAX:g}], got {bandwidth!r}") from None
    if not (math.isfinite(h) and 0.0 <= h <= H_MAX):
        raise ParameterError("bandwidth", f"must be a number in [0, {H_MAX:g}], got {bandwidth!r}")
    return h


def _mixture(y: torch.Tensor, h: float, name: str) -> GaussianMixtureDenoiser:
    n = y.shape[0]
    covs = torch.eye(2, dtype=torch.float64).expand(n, 2, 2) * max(h, H_FLOOR) ** 2
    return GaussianMixtureDenoiser(y, covs, torch.full((n,), 1.0 / n, dtype=torch.float64), name=name)


def point_denoiser(points: np.ndarray, bandwidth: float = 0.0, name: str = "points") -> GaussianMixtureDenoiser:
    """The exact denoiser of ``points`` (N, 2), standardised and smoothed by ``bandwidth`` h (module docstring).

    The model keeps ``mean`` and ``scale`` (the original coordinates are ``mean + scale·y``),
    ``bandwidth`` and ``discrete`` (h = 0: point masses, no clean density); ``weak`` is its Autoguidance twin.
    """
    h = check_bandwidth(bandwidth)
    y, mean, scale = standardise(points)
    data = torch.tensor(y, dtype=torch.float64)
    model = _mixture(data, h, name)
    model.weak = _mixture(data, math.hypot(h, WEAK_SMOOTHING), name + "-weak")
    model.mean, model.scale, model.bandwidth, model.discrete = mean, scale, h, h == 0.0
    return model
