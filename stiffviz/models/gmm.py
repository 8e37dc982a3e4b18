"""Exact denoiser of a (class-conditional) Gaussian mixture (docs/math.md §7).

Under noise of level σ the mixture Σ_k π_k N(μ_k, Σ_k) stays a mixture with
Σ'_k = Σ_k + σ²I. With P_k = Σ'_k⁻¹, z_k = P_k(μ_k − x) and responsibilities
r_k ∝ π_k N(x; μ_k, Σ'_k):

    ∇log p_σ = Σ_k r_k z_k,            D(x; σ) = x + σ² ∇log p_σ
    ∇²log p_σ = −Σ_k r_k P_k + Σ_k r_k z_k z_kᵀ − (∇log p_σ)(∇log p_σ)ᵀ

Each Σ_k = U_k diag(λ_k) U_kᵀ is diagonalised once, so P_k = U_k diag(1/(λ_k + σ²)) U_kᵀ
costs O(K d³) per σ. The log-responsibilities are one matrix product:
log π_k N(x; μ_k, Σ'_k) = −½ vec(x xᵀ)·vec(P_k) + xᵀ a_k + c_k with a_k = P_k μ_k and
c_k = log π_k − ½ μ_kᵀ a_k − ½ log det Σ'_k − (d/2) log 2π, and so is the score:
Σ_k r_k z_k = Σ_k r_k a_k − (Σ_k r_k P_k) x. Samples that share σ and class are evaluated
together (the sampler's case: one group per call).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import torch

from ..errors import ParameterError
from .base import cond_per_sample, sigma_per_sample


@dataclass(frozen=True)
class _Mixture:
    """One mixture (a class, or all of them) in a given dtype and device."""

    means: torch.Tensor  # (K, d)
    eigvals: torch.Tensor  # (K, d)
    eigvecs: torch.Tensor  # (K, d, d), columns are eigenvectors
    log_weights: torch.Tensor  # (K,), normalised


@dataclass(frozen=True)
class _Group:
    """The samples ``index`` that share one σ and one class, with that mixture's P_k, a_k, c_k."""

    index: torch.Tensor | slice
    x: torch.Tensor  # (b, d)
    sigma2: float
    precision: torch.Tensor  # (K, d, d): P_k
    a: torch.Tensor  # (K, d): P_k μ_k
    const: torch.Tensor  # (K,): c_k

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """log π_k N(x; μ_k, Σ'_k) = −½ vec(xxᵀ)·vec(P_k) + xᵀa_k + c_k, shape (b, K)."""
        d = x.shape[1]
        outer = (x.unsqueeze(2) * x.unsqueeze(1)).reshape(-1, d * d)
        return torch.addmm(self.const, outer, self.precision.reshape(-1, d * d).T, alpha=-0.5).addmm_(x, self.a.T)

    def moments(self) -> tuple[torch.Tensor, torch.Tensor]:
        """log p_σ(x) (b,) and ∇log p_σ(x) = Σ r_k a_k − (Σ r_k P_k) x (b, d).

        Rows are processed in chunks so the (rows, K) block stays in cache; the exponent
        is clamped at −80 (a relative change below e^{−80}·K in the weights).
        """
        d, K = self.x.shape[1], self.a.shape[0]
        right = torch.cat([self.x.new_ones(K, 1), self.a, self.precision.reshape(K, d * d)], 1)
        log_norm, score = [], []
        for x in self.x.split(max(16, 2**19 // K)):
            logits = self.logits(x)
            top = logits.amax(1, keepdim=True)
            if torch.is_grad_enabled():  # autograd needs the intermediates
                weights = (logits - top).clamp_min(-80.0).exp()
            else:
                weights = logits.sub_(top).clamp_min_(-80.0).exp_()
            m = weights @ right  # (rows, 1 + d + d²), unnormalised
            norm = m[:, :1]
            log_norm.append(top.squeeze(1) + norm.squeeze(1).log())
            weighted_precision = (m[:, 1 + d :] / norm).view(-1, d, d)
            score.append(m[:, 1 : 1 + d] / norm - torch.bmm(weighted_precision, x.unsqueeze(-1)).squeeze(-1))
        return torch.cat(log_norm), torch.cat(score)

    def score(self) -> torch.Tensor:
        return self.moments()[1]

    def log_prob(self) -> torch.Tensor:
        return self.moments()[0]

    def hessian(self) -> torch.Tensor:
        """−Σ r_k P_k + Σ r_k z_k z_kᵀ − (Σ r_k z_k)(Σ r_k z_k)ᵀ with z_k = a_k − P_k x."""
        resp = torch.softmax(self.logits(self.x), 1)
        z = self.a.unsqueeze(0) - torch.einsum("kij,bj->bki", self.precision, self.x)  # (b, K, d)
        score = torch.einsum("bk,bki->bi", resp, z)
        second = torch.einsum("bk,bki,bkj->bij", resp, z, z)
        first = torch.einsum("bk,kij->bij", resp, self.precision)
        return second - first - score.unsqueeze(-1) * score.unsqueeze(-2)


class GaussianMixtureDenoiser:
    """Exact denoiser, score, log-density and Jacobians of a Gaussian mixture in R^d.

    Parameters are kept in float64 on the CPU and cast lazily to the dtype and device
    of each input, so one object serves float32/float64 and CPU/CUDA alike.

    Args:
        means: (K, d) component means μ_k.
        covs: (K, d, d) symmetric positive-definite covariances Σ_k.
        weights: (K,) non-negative mixture weights π_k (normalised here).
        component_class: (K,) class index of each component, or None if unconditional.
        classes: class names, one per class index (None if unconditional).
        name: model name, for messages.
    """

    def __init__(
        self,
        means: torch.Tensor,
        covs: torch.Tensor,
        weights: torch.Tensor,
        component_class: torch.Tensor | None = None,
        classes: tuple[str, ...] | None = None,
        name: str = "gmm",
    ):
        means = torch.as_tensor(means, dtype=torch.float64)
        covs = torch.as_tensor(covs, dtype=torch.float64)
        weights = torch.as_tensor(weights, dtype=torch.float64)
        covs = 0.5 * (covs + covs.transpose(-1, -2))
        eigvals, eigvecs = torch.linalg.eigh(covs)
        if (eigvals <= 0).any():
            raise ParameterError("covs", "every covariance must be positive definite")
        self.name = name
        self.shape = (means.shape[1],)
        self.classes = tuple(classes) if classes is not None else None
        self.weak: GaussianMixtureDenoiser | None = None
        self._params = (means, eigvals, eigvecs, weights)
        self._component_class = component_class
        # One row of log-weights per class, and a last row for the unconditional mixture.
        rows = [torch.ones_like(weights, dtype=torch.bool)]
        if self.classes is not None:
            cls = torch.as_tensor(component_class)
            rows = [cls == c for c in range(len(self.classes))] + rows
        self._masks = rows
        self._cache: dict[tuple, list[_Mixture]] = {}

    # ----------------------------------------------------------------- parameters
    @property
    def n_components(self) -> int:
        return self._params[0].shape[0]

    def _mixtures(self, dtype: torch.dtype, device: torch.device) -> list[_Mixture]:
        key = (dtype, device)
        if key not in self._cache:
            means, eigvals, eigvecs, weights = self._params
            mixtures = []
            for mask in self._masks:
                w = weights[mask]
                mixtures.append(
                    _Mixture(
                        *(t[mask].to(device=device, dtype=dtype) for t in (means, eigvals, eigvecs)),
                        log_weights=(w / w.sum()).log().to(device=device, dtype=dtype),
                    )
                )
            self._cache[key] = mixtures
        return self._cache[key]

    # ----------------------------------------------------------------- posterior
    def _groups(self, x: torch.Tensor, sigma, cond) -> Iterator[_Group]:
        if x.ndim != 2 or x.shape[1] != self.shape[0]:
            raise ParameterError("x", f"must have shape (B, {self.shape[0]}), got {tuple(x.shape)}")
        mixtures = self._mixtures(x.dtype, x.device)
        batch = x.shape[0]
        sig = sigma_per_sample(sigma, x)
        cls = cond_per_sample(cond, batch, self.classes, x.device)
        rows = torch.full((batch,), len(mixtures) - 1, device=x.device) if cls is None else cls
        uniform = batch == 0 or (bool((sig == sig[0]).all()) and bool((rows == rows[0]).all()))
        if uniform:
            keys = [(float(sig[0]) if batch else 0.0, int(rows[0]) if batch else 0, slice(None))]
        else:
            pairs = torch.stack([sig.double(), rows.double()], 1)
            unique, inverse = torch.unique(pairs, dim=0, return_inverse=True)
            keys = [(float(s), int(r), (inverse == g).nonzero().squeeze(1)) for g, (s, r) in enumerate(unique)]
        for s, row, index in keys:
            yield self._group(x[index], s * s, mixtures[row], index)

    @staticmethod
    def _group(x: torch.Tensor, sigma2: float, mix: _Mixture, index) -> _Group:
        inv = 1.0 / (mix.eigvals + sigma2)  # (K, d)
        precision = torch.einsum("kij,kj,klj->kil", mix.eigvecs, inv, mix.eigvecs)
        a = torch.einsum("kij,kj->ki", precision, mix.means)
        const = (
            mix.log_weights
            - 0.5 * (mix.means * a).sum(1)
            + 0.5 * inv.log().sum(1)
            - 0.5 * x.shape[1] * math.log(2 * math.pi)
        )
        return _Group(index, x, sigma2, precision, a, const)

    def _scatter(self, x: torch.Tensor, sigma, cond, fn, tail: tuple[int, ...]) -> torch.Tensor:
        out = None
        for g in self._groups(x, sigma, cond):
            value = fn(g)
            if isinstance(g.index, slice):
                return value
            if out is None:
                out = x.new_empty((x.shape[0], *tail))
            out[g.index] = value
        return out if out is not None else x.new_empty((0, *tail))

    # ----------------------------------------------------------------- public API
    def __call__(self, x: torch.Tensor, sigma: float | torch.Tensor, cond=None) -> torch.Tensor:
        """Denoised estimate D(x; σ) = x + σ² ∇log p_σ(x), shape (B, d)."""
        return self._scatter(x, sigma, cond, lambda g: g.x + g.sigma2 * g.score(), self.shape)

    def score(self, x: torch.Tensor, sigma: float | torch.Tensor, cond=None) -> torch.Tensor:
        """∇_x log p_σ(x | cond), shape (B, d)."""
        return self._scatter(x, sigma, cond, _Group.score, self.shape)

    def log_prob(self, x: torch.Tensor, sigma: float | torch.Tensor = 0.0, cond=None) -> torch.Tensor:
        """log p_σ(x | cond), shape (B,); σ = 0 is the clean data density."""
        return self._scatter(x, sigma, cond, _Group.log_prob, ())

    def hessian_log_prob(self, x: torch.Tensor, sigma: float | torch.Tensor, cond=None) -> torch.Tensor:
        """∇²_x log p_σ(x | cond), shape (B, d, d), symmetric."""
        d = self.shape[0]
        return self._scatter(x, sigma, cond, _Group.hessian, (d, d))

    def denoiser_jacobian(self, x: torch.Tensor, sigma: float | torch.Tensor, cond=None) -> torch.Tensor:
        """∂D/∂x = I + σ² ∇²log p_σ = Cov[x0 | x]/σ², shape (B, d, d)."""
        s2 = sigma_per_sample(sigma, x).square().view(-1, 1, 1)
        return torch.eye(self.shape[0], dtype=x.dtype, device=x.device) + s2 * self.hessian_log_prob(x, sigma, cond)

    def drift_jacobian(self, x: torch.Tensor, sigma: float | torch.Tensor, cond=None) -> torch.Tensor:
        """J = ∂f/∂x for f = (x − D)/σ: J = −σ ∇²log p_σ, shape (B, d, d), symmetric."""
        return -sigma_per_sample(sigma, x).view(-1, 1, 1) * self.hessian_log_prob(x, sigma, cond)

    def components(self, cond=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The clean mixture (of class ``cond``, or all classes), float64 on the CPU: means μ_k (K, d),
        the eigenvalues of Σ_k (K, d, ascending), its eigenvectors (K, d, d, as columns) and weights π_k (K,)."""
        mix = self._mixtures(torch.float64, torch.device("cpu"))
        row = len(mix) - 1
        if cond is not None:
            row = int(cond_per_sample(cond, 1, self.classes, torch.device("cpu"))[0])
        m = mix[row]
        return m.means, m.eigvals, m.eigvecs, m.log_weights.exp()

    def sample_reference(self, n: int, generator: torch.Generator | None = None, cond=None) -> torch.Tensor:
        """n exact draws from the clean mixture (given ``cond``), float64 on the CPU."""
        means, eigvals, eigvecs, weights = self.components(cond)
        comp = torch.multinomial(weights, n, replacement=True, generator=generator)
        eps = torch.randn(n, self.shape[0], generator=generator, dtype=torch.float64)
        scale = eigvecs[comp] * eigvals[comp].sqrt().unsqueeze(1)  # U diag(√λ)
        return means[comp] + torch.einsum("nij,nj->ni", scale, eps)

    def __repr__(self) -> str:
        return f"GaussianMixtureDenoiser({self.name!r}, components={self.n_components}, classes={self.classes})"
