"""Exact denoiser of a finite data set, and the ``digits`` image models (docs/math.md §7).

For data {y_n} with class priors, the noisy density is p_σ(x) = Σ_n π_n N(x; y_n, σ²I), so

    r_n = softmax_n(log π_n − ‖x − y_n‖²/(2σ²)),   D(x; σ) = Σ_n r_n y_n,
    ∂D/∂x = Cov_r[y]/σ² = (Σ_n r_n y_n y_nᵀ − D Dᵀ)/σ²,

and a Jacobian-vector product needs no autograd: (∂D/∂x) v = (Σ_n r_n y_n ⟨y_n, v⟩ − D⟨D, v⟩)/σ².
The log-weights are one matrix product, ⟨x, y_n⟩/σ² − ‖y_n‖²/(2σ²) + log π_n (the ‖x‖² term
cancels in the softmax).

A smoothed twin (for Autoguidance) replaces each y_n by N(y_n, δ²I): then
p_σ = Σ_n π_n N(x; y_n, (σ² + δ²)I) and D = x + σ²∇log p_σ = x + σ²(Σ_n r'_n y_n − x)/(σ² + δ²)
with r' the responsibilities at variance σ² + δ². δ = 0 is the exact denoiser.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits

from ..errors import ParameterError
from .base import cond_per_sample, sigma_per_sample

DIGIT_CLASSES = tuple(str(i) for i in range(10))
WEAK_SMOOTHING = 0.3  # δ of the digits' smoothed twin


class EmpiricalDenoiser:
    """Exact (δ = 0) or smoothed (δ > 0) denoiser of images ``data`` (N, *shape) with labels.

    Unconditional sampling weights every image equally; a class restricts the sum to it.
    """

    def __init__(self, data: torch.Tensor, labels: torch.Tensor | None, classes: tuple[str, ...] | None,
                 name: str, smoothing: float = 0.0):  # fmt: skip
        self.name, self.shape, self.classes, self.smoothing = name, tuple(data.shape[1:]), classes, smoothing
        self.weak = None
        self._data = data.to(torch.float64).flatten(1)
        self._labels = labels
        self._cache: dict = {}

    def _tables(self, dtype: torch.dtype, device: torch.device):
        key = (dtype, device)
        if key not in self._cache:
            y = self._data.to(device=device, dtype=dtype)
            self._cache[key] = (y, 0.5 * y.square().sum(1))
        return self._cache[key]

    def _responsibilities(self, x: torch.Tensor, sigma, cond) -> tuple[torch.Tensor, torch.Tensor]:
        """r (B, N) at variance σ² + δ², and that variance (B, 1)."""
        if x.shape[1:] != self.shape:
            raise ParameterError("x", f"must have shape (B, {', '.join(map(str, self.shape))}), got {tuple(x.shape)}")
        y, half_norm = self._tables(x.dtype, x.device)
        variance = (sigma_per_sample(sigma, x).square() + self.smoothing**2).unsqueeze(1)
        logits = (x.flatten(1) @ y.T - half_norm) / variance
        cls = cond_per_sample(cond, x.shape[0], self.classes, x.device)
        if cls is not None:
            labels = self._labels.to(x.device)
            logits = logits.masked_fill(labels.unsqueeze(0) != cls.unsqueeze(1), float("-inf"))
        return torch.softmax(logits, 1), variance

    def __call__(self, x: torch.Tensor, sigma: float | torch.Tensor, cond=None) -> torch.Tensor:
        """D(x; σ) = x + σ²(Σ r'_n y_n − x)/(σ² + δ²) (= Σ r_n y_n when δ = 0)."""
        resp, variance = self._responsibilities(x, sigma, cond)
        mean = resp @ self._tables(x.dtype, x.device)[0]
        if self.smoothing == 0.0:
            return mean.view_as(x)
        s2 = sigma_per_sample(sigma, x).square().unsqueeze(1)
        flat = x.flatten(1)
        return (flat + s2 * (mean - flat) / variance).view_as(x)

    def denoiser_jvp(self, x: torch.Tensor, sigma, v: torch.Tensor, cond=None) -> torch.Tensor:
        """(∂D/∂x) v without autograd, with V = σ² + δ² and m = Σ r'_n y_n:

        ∂D/∂x = (δ² I + σ² Cov_{r'}[y]/V)/V,   Cov_{r'}[y] v = Σ_n r'_n y_n ⟨y_n, v⟩ − m ⟨m, v⟩.
        """
        resp, variance = self._responsibilities(x, sigma, cond)
        y = self._tables(x.dtype, x.device)[0]
        flat_v = v.flatten(1)
        mean = resp @ y
        cov_v = (resp * (flat_v @ y.T)) @ y - mean * (mean * flat_v).sum(1, keepdim=True)
        s2 = sigma_per_sample(sigma, x).square().unsqueeze(1)
        return ((self.smoothing**2 * flat_v + s2 * cov_v / variance) / variance).view_as(x)

    def denoiser_jacobian(self, x: torch.Tensor, sigma, cond=None) -> torch.Tensor:
        """∂D/∂x as (B, d, d), d = prod(shape): (δ² I + σ² Cov_{r'}[y]/V)/V with V = σ² + δ²."""
        resp, variance = self._responsibilities(x, sigma, cond)
        y = self._tables(x.dtype, x.device)[0]
        mean = resp @ y
        cov = torch.einsum("bn,ni,nj->bij", resp, y, y) - mean.unsqueeze(2) * mean.unsqueeze(1)
        s2 = sigma_per_sample(sigma, x).square().view(-1, 1, 1)
        eye = torch.eye(y.shape[1], dtype=x.dtype, device=x.device)
        var = variance.view(-1, 1, 1)
        return (self.smoothing**2 * eye + s2 * cov / var) / var

    def sample_reference(self, n: int, generator: torch.Generator | None = None, cond=None) -> torch.Tensor:
        """n images drawn uniformly (within the class if given), float64 on the CPU."""
        pool = torch.arange(self._data.shape[0])
        if cond is not None:
            c = int(cond_per_sample(cond, 1, self.classes, torch.device("cpu"))[0])
            pool = pool[self._labels == c]
        pick = pool[torch.randint(len(pool), (n,), generator=generator)]
        data = self._data[pick]
        if self.smoothing:
            data = data + self.smoothing * torch.randn(data.shape, generator=generator, dtype=data.dtype)
        return data.view(n, *self.shape)

    def __repr__(self) -> str:
        return f"EmpiricalDenoiser({self.name!r}, images={self._data.shape[0]}, shape={self.shape}, δ={self.smoothing})"


@lru_cache(maxsize=None)
def digits_images(size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 1,797 digits scaled to [−1, 1] (v/8 − 1), shape (N, 1, size, size), and labels.

    ``size`` > 8 upsamples smoothly (bicubic, then clamped to [−1, 1]).
    """
    bunch = load_digits()
    images = torch.tensor(bunch.images, dtype=torch.float64).unsqueeze(1) / 8.0 - 1.0
    if size != 8:
        images = F.interpolate(images, size=(size, size), mode="bicubic", align_corners=False).clamp(-1.0, 1.0)
    return images, torch.tensor(bunch.target, dtype=torch.long)


def digits(size: int = 8) -> EmpiricalDenoiser:
    """The exact digits denoiser at ``size``×``size``, with its smoothed twin as ``weak``."""
    images, labels = digits_images(size)
    name = "digits" if size == 8 else f"digits{size}"
    model = EmpiricalDenoiser(images, labels, DIGIT_CLASSES, name)
    model.weak = EmpiricalDenoiser(images, labels, DIGIT_CLASSES, name + "-weak", smoothing=WEAK_SMOOTHING)
    return model
