"""Stochastic samplers as fresh noise around a deterministic step (docs/math.md §11).

**Churn** (EDM's stochastic sampler, Karras et al. 2022, Algorithm 2). Before step i of N, when
S_tmin ≤ σ_i ≤ S_tmax, the state is pushed up to a higher noise level:

    γ_i = min(S_churn/N, √2 − 1),   σ̂_i = σ_i (1 + γ_i),   x̂_i = x_i + √(σ̂_i² − σ_i²) · S_noise · ε_i

and the solver's own deterministic step then runs from (x̂_i, σ̂_i) to σ_{i+1}. It applies to
every deterministic solver (with Heun it is EDM's sampler; with Euler and DPM-Solver-2 it is
k-diffusion's ``s_churn``).

**Ancestral** (``euler_ancestral``, η > 0). The deterministic step runs from σ_i down to σ_down
and fresh noise brings the state back up to σ_{i+1}:

    σ_up = min(σ_{i+1}, η σ_{i+1} √(σ_i² − σ_{i+1}²) / σ_i),   σ_down = √(σ_{i+1}² − σ_up²),
    x_{i+1} = x_down + σ_up · S_noise · ε_i      (no noise on the step to σ = 0)

so for η = 1 and an exact denoiser each step draws from the DDPM posterior's variance.

**The noise.** ε_i ~ N(0, I) is ``noise_sampler(σ_i, σ_{i+1})``, k-diffusion's convention; by
default a CPU generator seeded with ``seed + NOISE_SEED_OFFSET`` draws one tensor of the state's
shape per step (churn: on every step, where γ_i = 0 too, as k-diffusion does; ancestral: on every
step to σ > 0), so a seed reproduces a run and the ε of step i does not move with S_tmin or S_tmax.

**Diagnostics** are those of the deterministic part: h = σ̂_i − σ_{i+1} (churn) or σ_i − σ_down
(ancestral). Heun's lagged secant pair needs a state evaluated at σ_i, which a churned step never
has, so there ρ̂ comes from the step's own pair (x̂_i and its Euler predictor), as for DPM-Solver-2.

**Guidance.** ERK-Guid is refused with either kind of noise (its secant pair would be measured
across the injected noise, and the authors' code refuses churn too); SteinDiff is defined: its
candidate map is the deterministic part, with σ̂_i as the σ of Stein's identity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from .errors import ParameterError, check_finite

NoiseSampler = Callable[[float, float], torch.Tensor]
NOISE_SEED_OFFSET = 15_485_863  # churn and ancestral noise: a generator seeded with seed + offset
MAX_GAMMA = math.sqrt(2.0) - 1.0  # EDM's cap on γ_i: σ̂ ≤ √2 σ_i
MAX_CHURN = 1000.0  # S_churn/N saturates at √2 − 1 long before (N ≤ 1000 steps)


@dataclass(frozen=True)
class Stochastic:
    """EDM's churn settings: S_churn ≥ 0, the σ range [S_tmin, S_tmax] it acts in, S_noise > 0."""

    churn: float = 0.0
    s_tmin: float = 0.0
    s_tmax: float = math.inf
    s_noise: float = 1.0

    def __post_init__(self):
        if not 0.0 <= check_finite("churn", self.churn) <= MAX_CHURN:
            raise ParameterError("churn", f"must lie in [0, {MAX_CHURN:g}], got {self.churn}")
        if check_finite("s_tmin", self.s_tmin) < 0.0:
            raise ParameterError("s_tmin", f"must be ≥ 0, got {self.s_tmin}")
        if self.s_tmax != math.inf and check_finite("s_tmax", self.s_tmax) < self.s_tmin:
            raise ParameterError("s_tmin", f"must be ≤ s_tmax = {self.s_tmax}, got {self.s_tmin}")
        if not 0.0 < check_finite("s_noise", self.s_noise) <= 10.0:
            raise ParameterError("s_noise", f"must lie in (0, 10], got {self.s_noise}")

    def gamma(self, sigma: float, steps: int) -> float:
        """γ_i = min(S_churn/N, √2 − 1) for σ_i in [S_tmin, S_tmax], else 0."""
        return min(self.churn / steps, MAX_GAMMA) if self.s_tmin <= sigma <= self.s_tmax else 0.0


def ancestral_step(sigma: float, sigma_next: float, eta: float) -> tuple[float, float]:
    """(σ_down, σ_up) of an ancestral step from σ_i to σ_{i+1} with strength η (η = 0: (σ_{i+1}, 0))."""
    if eta == 0.0:
        return sigma_next, 0.0
    sigma_up = min(sigma_next, eta * math.sqrt(sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2))
    return math.sqrt(sigma_next**2 - sigma_up**2), sigma_up


def seeded_noise(x: torch.Tensor, seed: int) -> NoiseSampler:
    """ε ~ N(0, I) shaped like ``x``, drawn on the CPU from ``seed + NOISE_SEED_OFFSET``, then moved to x's device."""
    generator = torch.Generator().manual_seed(seed + NOISE_SEED_OFFSET)
    return lambda sigma, sigma_next: torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)


def check_combination(noisy: bool, erk: bool, path: str = "edm", adaptive: bool = False) -> None:
    """Refuse, by name, what a stochastic run does not define: ERK-Guid (no noise-free secant
    pair), paths other than ``edm`` (the noise formulas above hold in EDM's coordinates) and
    adaptive steps (a rejected step would keep its injected noise and draw more on the retry)."""
    if noisy and erk:
        raise ParameterError("erk_guid", "must be off with churn > 0 or euler_ancestral: its secant pair would be "
                                         "measured across the injected noise (docs/math.md §11)")  # fmt: skip
    if noisy and path != "edm":
        raise ParameterError("path", f"must be edm with churn > 0 or euler_ancestral (the noise is added in EDM's "
                                     f"coordinates), got {path!r}")  # fmt: skip
    if noisy and adaptive:
        raise ParameterError("adaptive", "must be off with churn > 0 or euler_ancestral: the step controller "
                                         "needs a deterministic step to accept or reject")  # fmt: skip


class NoiseInjection:
    """One run's noise: the churn settings, the ancestral η, the number of steps N and ε's source.

    ``x_hat`` is the state the last step's deterministic part started from (x̂_i, or x_i)."""

    def __init__(self, settings: Stochastic, eta: float, steps: int, noise_sampler: NoiseSampler):
        self.settings, self.eta, self.steps, self.draw = settings, eta, steps, noise_sampler
        self.moved, self.sigma_up, self.x_hat = False, 0.0, None

    def before(self, record: dict, x: torch.Tensor, sigma: float, sigma_next: float) -> tuple[torch.Tensor, float, float]:
        """(x̂_i, σ̂_i, target): the deterministic part's start and end; σ̂, σ_down and σ_up go in ``record``."""
        start = sigma
        if self.settings.churn > 0.0:
            eps = self.draw(sigma, sigma_next)
            start = sigma * (1.0 + self.settings.gamma(sigma, self.steps))
            if start != sigma:
                x = x + eps * (math.sqrt(start**2 - sigma**2) * self.settings.s_noise)
            record["sigma_hat"] = start
        self.moved, self.x_hat = start != sigma, x
        target, self.sigma_up = ancestral_step(sigma, sigma_next, self.eta)
        if self.eta > 0.0:
            record["sigma_down"], record["sigma_up"] = target, self.sigma_up
        return x, start, target

    def after(self, x_next: torch.Tensor, sigma: float, sigma_next: float) -> torch.Tensor:
        """x_down + σ_up · S_noise · ε for an ancestral step to σ_{i+1} > 0; else x_next as is."""
        if self.eta == 0.0 or sigma_next == 0.0:
            return x_next
        return x_next + self.draw(sigma, sigma_next) * (self.settings.s_noise * self.sigma_up)

    def pair_kind(self, kind: str) -> str:
        """Heun's lagged pair does not exist on a churned step: use the step's own (``within``) pair."""
        return "within" if self.moved and kind == "lagged" else kind


def noise_injection(settings: Stochastic | None, solver, steps: int, x: torch.Tensor, seed: int,
                    noise_sampler: NoiseSampler | None = None) -> NoiseInjection | None:  # fmt: skip
    """The run's :class:`NoiseInjection` for ``steps`` steps from state ``x`` (churn ``settings``, the
    ancestral η of ``solver.eta``; ε from ``noise_sampler`` or :func:`seeded_noise`), or None for a
    deterministic run (no churn, η = 0)."""
    settings, eta = settings or Stochastic(), getattr(solver, "eta", 0.0)
    if settings.churn == 0.0 and eta == 0.0:
        return None
    return NoiseInjection(settings, eta, steps, noise_sampler or seeded_noise(x, seed))
