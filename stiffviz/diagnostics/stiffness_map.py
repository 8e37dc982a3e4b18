"""The stiffness map of a 2-D mixture at one noise level: the authors' overview figure (docs/math.md §7).

For a 2-D model whose denoiser Jacobian ∂D/∂x is analytic (a :class:`GaussianMixtureDenoiser`:
the toys, or a visitor's own points), at a chosen σ:

* **The map**: ρ(x) = max|λ(J(x))|, the spectral radius of the drift Jacobian
  J = (I − ∂D/∂x)/σ = −σ ∇²log p_σ, on an n × n grid. J is symmetric for an exact denoiser, so
  one ``eigvalsh`` of a 2 × 2 matrix per grid point gives it exactly (:meth:`ExactSpectrum.radius`).
* **A thin branch**: a component k of the mixture, with centre μ_k, across direction n (the minor
  axis of Σ_k) and along direction u (its major axis). It is the component whose nearest mean off
  its own line {μ_k + s u} lies furthest away in units of its width √λ_min, among those with
  neighbours on that line on both sides (the middle of a branch, not its tip): the most isolated
  piece of a thin branch (:func:`thin_branch`).
* **Two short segments** through the branch, with w = √(λ_min + σ²) and ℓ = √(λ_max + σ²) its
  widths under noise: *across*, c + t n for |t| ≤ 3w; *along*, c + w n + t u for |t| ≤ 2ℓ (a
  line beside the branch, one noisy width to the side). On each, the drift f = (x − D(x; σ))/σ
  and its projection ⟨f, n⟩ on the across direction (:func:`segments`).

What the figure shows, near one component N(μ, Σ): p_σ ≈ N(μ, Σ + σ²I) there, so
f ≈ σ(Σ + σ²I)⁻¹(x − μ) and J ≈ σ(Σ + σ²I)⁻¹, whose largest eigenvalue σ/(λ_min + σ²) belongs
to n. Across the branch ⟨f, n⟩ ≈ σt/(λ_min + σ²) changes sign at the centre and its slope is
that eigenvalue: the stiff direction. Beside the branch ⟨f, n⟩ ≈ σw/(λ_min + σ²) keeps one sign
all along it: the arrows stay parallel. Between branches, where the responsibilities switch
from one component to another, the term Σ r_k z_k z_kᵀ − (∇log p)(∇log p)ᵀ of ∇²log p_σ makes ρ
larger still.

Everything is computed in float64 on the CPU (the models keep their parameters there).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import ParameterError
from .spectrum import ExactSpectrum

MAX_RESOLUTION = 160  # grid points per side (a map of at most 25,600 points)
SEGMENT_POINTS = 21  # points per segment
ACROSS_SPAN = 3.0  # the across segment's half-length, in noisy widths w
ALONG_SPAN = 2.0  # the along segment's half-length, in noisy lengths ℓ
ON_LINE_COS = math.cos(math.radians(30))  # a mean within 30° of the major axis lies on the branch's line


def supports_map(model) -> bool:
    """Whether ``model`` is 2-D and gives its denoiser Jacobian and mixture components analytically."""
    return tuple(getattr(model, "shape", ())) == (2,) and hasattr(model, "denoiser_jacobian") \
        and hasattr(model, "components")  # fmt: skip


def check_model(model) -> None:
    """A :class:`ParameterError` naming the model unless :func:`supports_map`."""
    if not supports_map(model):
        raise ParameterError("model", "the stiffness map needs a 2-D model with an exact Jacobian (the toys tree, "
                             f"rings, moons, swissroll, or your own points); {getattr(model, 'name', model)!r} "
                             "is not one")  # fmt: skip


def check_sigma(sigma: float) -> float:
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not (math.isfinite(sigma) and sigma > 0):
        raise ParameterError("sigma", f"must be a finite number > 0, got {sigma!r}")
    return float(sigma)


def _spectrum(model, cond) -> ExactSpectrum:
    return ExactSpectrum(lambda x, sigma: model.denoiser_jacobian(x, sigma, cond))


def _chunk_rows(model) -> int:
    """Points per batch: the (rows, K, d) terms of ∇²log p_σ hold about 2²¹·d numbers (32 MB at K = 2,032)."""
    return max(256, 2**21 // model.components()[0].shape[0])


def spectral_radius(model, x: torch.Tensor, sigma: float, cond=None) -> torch.Tensor:
    """ρ(J) = max|λ| of J = (I − ∂D/∂x)/σ at the points ``x`` (B, 2), shape (B,), float64."""
    check_model(model)
    sigma = check_sigma(sigma)
    spectrum = _spectrum(model, cond)
    x = torch.as_tensor(x, dtype=torch.float64)
    with torch.no_grad():
        parts = [spectrum.radius(rows, sigma) for rows in x.split(_chunk_rows(model))]
    return torch.cat(parts) if parts else x.new_zeros(0)


@dataclass(frozen=True)
class StiffnessMap:
    """ρ(J) on the grid ``axis`` × ``axis`` at noise level ``sigma``: ``rho[i, j]`` is at (axis[j], axis[i])."""

    sigma: float
    axis: torch.Tensor  # (n,)
    rho: torch.Tensor  # (n, n), rows along y


def stiffness_map(model, sigma: float, extent: float, resolution: int = 120, cond=None) -> StiffnessMap:
    """ρ(J) on a ``resolution``² grid over [−extent, extent]² (``resolution`` ≤ ``MAX_RESOLUTION``)."""
    if isinstance(resolution, bool) or not isinstance(resolution, int) or not 2 <= resolution <= MAX_RESOLUTION:
        raise ParameterError("resolution", f"must be an integer in [2, {MAX_RESOLUTION}], got {resolution!r}")
    if isinstance(extent, bool) or not isinstance(extent, (int, float)) or not (math.isfinite(extent) and extent > 0):
        raise ParameterError("extent", f"must be a finite number > 0, got {extent!r}")
    axis = torch.linspace(-extent, extent, resolution, dtype=torch.float64)
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    rho = spectral_radius(model, torch.stack([xx.flatten(), yy.flatten()], 1), sigma, cond)
    return StiffnessMap(float(sigma), axis, rho.view(resolution, resolution))


@dataclass(frozen=True)
class Branch:
    """A thin piece of a branch: component ``component``'s centre, unit axes and standard deviations."""

    component: int
    centre: torch.Tensor  # (2,) μ_k
    across: torch.Tensor  # (2,) n, the minor axis of Σ_k
    along: torch.Tensor  # (2,) u, the major axis of Σ_k
    width: float  # √λ_min
    length: float  # √λ_max


def thin_branch(model, cond=None) -> Branch:
    """The component with the largest isolation (distance to the nearest mean off its line, over √λ_min)
    among those with means on its line on both sides; among all components if none has both."""
    check_model(model)
    means, eigvals, eigvecs, _ = model.components(cond)
    along = eigvecs[:, :, -1]  # (K, 2): the major axes (eigenvalues ascending)
    offsets = means.unsqueeze(0) - means.unsqueeze(1)  # [k, j] = μ_j − μ_k
    distance = offsets.norm(dim=2)
    reach = (offsets * along.unsqueeze(1)).sum(2)  # ⟨μ_j − μ_k, u_k⟩
    on_line = reach.abs() >= ON_LINE_COS * distance
    on_line.fill_diagonal_(False)
    off_line = ~on_line
    off_line.fill_diagonal_(False)
    nearest_off = torch.where(off_line, distance, torch.full_like(distance, math.inf)).amin(1)
    isolation = nearest_off / eigvals[:, 0].sqrt()
    middle = (on_line & (reach > 0)).any(1) & (on_line & (reach < 0)).any(1)
    if middle.any():
        isolation = torch.where(middle, isolation, torch.full_like(isolation, -math.inf))
    k = int(isolation.argmax())
    return Branch(k, means[k], eigvecs[k, :, 0], along[k], float(eigvals[k, 0].sqrt()), float(eigvals[k, -1].sqrt()))


@dataclass(frozen=True)
class Segment:
    """A short segment: its points ``points[i] = start + offsets[i]·direction``, the drift f there and
    the projection ⟨f, n⟩ on the branch's across direction n."""

    name: str  # "across" or "along"
    offsets: torch.Tensor  # (m,) t
    points: torch.Tensor  # (m, 2)
    drift: torch.Tensor  # (m, 2) f = (x − D(x; σ))/σ
    projection: torch.Tensor  # (m,) ⟨f, n⟩


def drift(model, x: torch.Tensor, sigma: float, cond=None) -> torch.Tensor:
    """f(x; σ) = (x − D(x; σ))/σ at the points ``x`` (B, 2), float64."""
    x = torch.as_tensor(x, dtype=torch.float64)
    with torch.no_grad():
        return (x - model(x, sigma, cond)) / sigma


def segments(model, branch: Branch, sigma: float, cond=None, points: int = SEGMENT_POINTS) -> tuple[Segment, Segment]:
    """The across and along segments of ``branch`` at σ (module docstring), each of ``points`` points."""
    check_model(model)
    sigma = check_sigma(sigma)
    width = math.sqrt(branch.width**2 + sigma**2)
    length = math.sqrt(branch.length**2 + sigma**2)
    out = []
    for name, start, direction, half in (("across", branch.centre, branch.across, ACROSS_SPAN * width),
                                         ("along", branch.centre + width * branch.across, branch.along,
                                          ALONG_SPAN * length)):  # fmt: skip
        offsets = torch.linspace(-half, half, points, dtype=torch.float64)
        xs = start + offsets.unsqueeze(1) * direction
        f = drift(model, xs, sigma, cond)
        out.append(Segment(name, offsets, xs, f, f @ branch.across))
    return out[0], out[1]


@dataclass(frozen=True)
class BranchStiffness:
    """At the branch centre: ρ(J), the dominant eigenvalue λ₁ and |cos(n, v₁)| (n: the across direction)."""

    rho: float
    eigenvalue: float
    alignment: float


def branch_stiffness(model, branch: Branch, sigma: float, cond=None) -> BranchStiffness:
    """The exact dominant eigenpair of J at the branch centre and how well n lines up with it."""
    check_model(model)
    sigma = check_sigma(sigma)
    with torch.no_grad():
        pair, _ = _spectrum(model, cond).estimate(branch.centre.unsqueeze(0), sigma)
    vector = pair.vector[0]
    alignment = float((vector @ branch.across).abs() / vector.norm())
    return BranchStiffness(abs(float(pair.value[0])), float(pair.value[0]), alignment)
