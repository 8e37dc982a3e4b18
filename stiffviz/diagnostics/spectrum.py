"""The drift Jacobian's spectrum per sample: dominant eigenpair and stiffness ratio (docs/math.md §3).

J = ∂f/∂x for f(x; σ) = (x − D_w(x; σ))/σ, so J = (I − ∂D_w/∂x)/σ.

Two estimators behind one interface (``dominant`` and ``stiffness_ratio``):

* :class:`ExactSpectrum` for models that give ∂D/∂x analytically (the toys): J is
  built and ``torch.linalg.eigh`` of its symmetric part gives every eigenvalue.
* :class:`IterativeSpectrum` for any model: power iteration v ← Jv/‖Jv‖ through
  Jacobian-vector products (forward mode, or its VJP-based fallback: ``autodiff.jvp``), warm-started from the previous step's
  vector, and a few Lanczos iterations on the symmetric part S = (J + Jᵀ)/2 for the ratio.

The dominant eigenvalue is the one of largest |λ|, reported with its sign (``eig_max``);
the stiffness ratio is max|λ|/min|λ|.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import torch

from ..errors import ParameterError
from .autodiff import jvp
from .secant import batch_dot, batch_norm

DenoiseFn = Callable[[torch.Tensor, float], torch.Tensor]


@dataclass(frozen=True)
class Eigenpair:
    """Per-sample dominant eigenvalue (B,) and unit eigenvector (B, …)."""

    value: torch.Tensor
    vector: torch.Tensor


class SpectrumEstimator(Protocol):
    def dominant(self, x: torch.Tensor, sigma: float, start: torch.Tensor | None) -> Eigenpair: ...

    def stiffness_ratio(self, x: torch.Tensor, sigma: float) -> torch.Tensor: ...

    def estimate(self, x: torch.Tensor, sigma: float, start: torch.Tensor | None) -> tuple[Eigenpair, torch.Tensor]:
        """Both at once (the dominant eigenpair and the stiffness ratio), sharing work where possible."""
        ...


def _unit(v: torch.Tensor) -> torch.Tensor:
    shape = (-1,) + (1,) * (v.ndim - 1)
    return v / batch_norm(v).clamp_min(torch.finfo(v.dtype).tiny).view(shape)


class ExactSpectrum:
    """Eigendecomposition of J = (I − ∂D/∂x)/σ from an analytic ``jacobian(x, σ)`` (B, d, d)."""

    def __init__(self, jacobian: Callable[[torch.Tensor, float], torch.Tensor]):
        self.jacobian = jacobian

    def symmetric_jacobian(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        """(J + Jᵀ)/2 with J = (I − ∂D/∂x)/σ, shape (B, d, d) (J itself for an exact denoiser)."""
        d = x.flatten(1).shape[1]
        jd = self.jacobian(x, sigma).reshape(-1, d, d)
        j = (torch.eye(d, dtype=x.dtype, device=x.device) - jd) / sigma
        return 0.5 * (j + j.transpose(1, 2))

    def eigen(self, x: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
        """All eigenvalues (B, d) and eigenvectors (B, d, d) of J (symmetrised)."""
        return torch.linalg.eigh(self.symmetric_jacobian(x, sigma))

    def radius(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        """The spectral radius ρ(J) = max|λ| per sample, shape (B,) (eigenvalues only)."""
        return torch.linalg.eigvalsh(self.symmetric_jacobian(x, sigma)).abs().amax(1)

    def dominant(self, x: torch.Tensor, sigma: float, start: torch.Tensor | None = None) -> Eigenpair:
        return self.estimate(x, sigma, start)[0]

    def stiffness_ratio(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        return self.estimate(x, sigma)[1]

    def estimate(self, x: torch.Tensor, sigma: float, start: torch.Tensor | None = None) -> tuple[Eigenpair, torch.Tensor]:
        """One eigendecomposition gives the dominant pair and max|λ|/min|λ|."""
        values, vectors = self.eigen(x, sigma)
        magnitude = values.abs()
        k = magnitude.argmax(1)
        rows = torch.arange(len(k), device=x.device)
        pair = Eigenpair(values[rows, k], vectors[rows, :, k].reshape(x.shape))
        return pair, magnitude.amax(1) / magnitude.amin(1)


class IterativeSpectrum:
    """Matrix-free estimates through Jacobian-vector products of the drift.

    Args:
        denoise: D_w(x, σ).
        iterations: power iterations per step (each one JVP).
        lanczos_iterations: Lanczos iterations for the stiffness ratio (each one JVP + one VJP).
        generator: CPU generator for random start vectors (a seed gives the same vectors on every device).
    """

    def __init__(self, denoise: DenoiseFn, iterations: int = 20, lanczos_iterations: int = 8,
                 generator: torch.Generator | None = None):  # fmt: skip
        self.denoise, self.iterations, self.lanczos_iterations = denoise, iterations, lanczos_iterations
        self.generator = generator or torch.Generator().manual_seed(0)

    def _random(self, like: torch.Tensor) -> torch.Tensor:
        return torch.randn(like.shape, generator=self.generator, dtype=like.dtype).to(like.device)

    def _jvp(self, x: torch.Tensor, sigma: float, v: torch.Tensor) -> torch.Tensor:
        """J v = (v − (∂D/∂x) v)/σ, through the denoiser's own JVP when it has one."""
        if hasattr(self.denoise, "jvp"):
            return (v - self.denoise.jvp(x, sigma, v)) / sigma
        drift = lambda y: (y - self.denoise(y, sigma)) / sigma  # noqa: E731
        return jvp(drift, x, v, key=self.denoise)

    def dominant(self, x: torch.Tensor, sigma: float, start: torch.Tensor | None = None) -> Eigenpair:
        """Power iteration from ``start`` (or a random vector); λ is the last Rayleigh quotient ⟨v, Jv⟩."""
        v = _unit(start if start is not None else self._random(x))
        value = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for _ in range(self.iterations):
            jv = self._jvp(x, sigma, v)
            value = batch_dot(v, jv)
            v = _unit(jv)
        if start is not None:  # eigenvectors have no sign: keep the one closest to the warm start
            flip = torch.where(batch_dot(v, start) < 0, -1.0, 1.0).to(v.dtype)
            v = v * flip.view((-1,) + (1,) * (v.ndim - 1))
        return Eigenpair(value, v)

    def stiffness_ratio(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        """max|θ|/min|θ| over the Ritz values θ of S = (J + Jᵀ)/2 after k Lanczos steps.

        The extreme Ritz values converge first; min|θ| is an estimate of the smallest |λ|
        from above, so the ratio is a lower bound that tightens as k grows (exact for k = d).
        """
        drift = lambda y: (y - self.denoise(y, sigma)) / sigma  # noqa: E731
        _, vjp = torch.func.vjp(drift, x)

        def symmetric(v):
            return 0.5 * (self._jvp(x, sigma, v) + vjp(v)[0])

        ritz = lanczos_ritz_values(symmetric, self._random(x), min(self.lanczos_iterations, x[0].numel()))
        return ritz.abs().amax(1) / ritz.abs().amin(1)

    def estimate(self, x: torch.Tensor, sigma: float, start: torch.Tensor | None = None) -> tuple[Eigenpair, torch.Tensor]:
        return self.dominant(x, sigma, start), self.stiffness_ratio(x, sigma)


def lanczos_ritz_values(matvec: Callable[[torch.Tensor], torch.Tensor], start: torch.Tensor, k: int) -> torch.Tensor:
    """Ritz values (B, k) of a symmetric batched operator after k Lanczos steps.

    Full re-orthogonalisation against the stored basis keeps the small k exact in practice.
    """
    batch = start.shape[0]
    basis = [_unit(start).flatten(1)]
    alphas, betas = [], []
    shape = start.shape
    for j in range(k):
        w = matvec(basis[j].view(shape)).flatten(1)
        alpha = (w * basis[j]).sum(1)
        alphas.append(alpha)
        for q in basis:  # full re-orthogonalisation (Gram–Schmidt, twice is enough)
            w = w - (w * q).sum(1, keepdim=True) * q
        for q in basis:
            w = w - (w * q).sum(1, keepdim=True) * q
        if j + 1 < k:
            beta = w.norm(dim=1)
            betas.append(beta)
            basis.append(w / beta.clamp_min(torch.finfo(w.dtype).tiny).unsqueeze(1))
    t = torch.diag_embed(torch.stack(alphas, 1))
    if betas:
        off = torch.stack(betas, 1)
        t = t + torch.diag_embed(off, 1) + torch.diag_embed(off, -1)
    return torch.linalg.eigvalsh(t.reshape(batch, k, k))


def spectrum_for(denoise, method: str, iterations: int, lanczos_iterations: int, generator: torch.Generator) -> SpectrumEstimator:
    """``exact`` where the guided denoiser has an analytic Jacobian (``auto`` picks it), else power/Lanczos."""
    if method in ("auto", "exact") and getattr(denoise, "has_jacobian", False):
        return ExactSpectrum(denoise.jacobian)
    if method == "exact":
        raise ParameterError("eig_method", "this model gives no analytic Jacobian; use power or auto")
    return IterativeSpectrum(denoise, iterations, lanczos_iterations, generator)
