"""The optional, costlier diagnostics of a run, and the state they carry across steps.

Per step, at the start state x_i (σ_i → σ_{i+1}), as enabled in :class:`DiagnosticOptions`:

* ``eig``: dominant eigenpair (λ₁, v₁) of the drift Jacobian J (exact or power iteration,
  warm-started from the previous step's v₁) → ``eig_max``, ``align_cos_true`` = |cos(e, v₁)|,
  ``align_cos_vhat`` = |cos(v̂, v₁)|, and ``stiffness_ratio`` = max|λ|/min|λ|.
* ``lte_ref``: e* = x_{i+1} − x_ref with x_ref from 32 RK4 sub-steps → ``lte_ref`` = ‖e*‖ and,
  with ``eig``, ``align_cos_ref`` = |cos(e*, v₁)|. Not on the final step to σ = 0.
* ``lipschitz``: L = ‖∂T_γ/∂x‖₂ of the step map actually applied,
  T_γ(x) = (1 − γ) x + γ T(x) (γ = 1 without SteinDiff), by power iteration.
* ``stein_oracle``: γ* = E⟨u, x − x*⟩/E‖u‖² on forward-coupled pairs x = x* + σ_i ε with x*
  from the model's reference sampler, through the same candidate map T (without the
  multistep history, which fresh pairs do not have).

None of these moves the trajectory; their model calls are not counted in the trace's NFE.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from ..errors import ParameterError
from ..guidance.stein import oracle_coefficient
from ..solvers.base import Evaluator, Solver, StepResult
from .lipschitz import lipschitz_constant
from .reference import fine_solution
from .secant import abs_cosine, batch_norm
from .spectrum import spectrum_for

EIG_METHODS = ("auto", "exact", "power")


@dataclass(frozen=True)
class DiagnosticOptions:
    """Which diagnostics a run records; the cheap per-step ones (``diagnostics``) cost no model call."""

    diagnostics: bool = True
    eig: bool = False
    eig_method: str = "auto"
    eig_iterations: int = 20
    lanczos_iterations: int = 8
    lte_ref: bool = False
    lte_ref_substeps: int = 32
    lipschitz: bool = False
    lipschitz_iterations: int = 10
    stein_oracle: bool = False

    def __post_init__(self):
        if self.eig_method not in EIG_METHODS:
            raise ParameterError("eig_method", f"must be one of {', '.join(EIG_METHODS)}, got {self.eig_method!r}")
        for name, high in (("eig_iterations", 500), ("lanczos_iterations", 100), ("lte_ref_substeps", 1000),
                           ("lipschitz_iterations", 500)):  # fmt: skip
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
                raise ParameterError(name, f"must be an integer in [1, {high}], got {value!r}")

    @property
    def any_costly(self) -> bool:
        return self.eig or self.lte_ref or self.lipschitz or self.stein_oracle


@dataclass(frozen=True)
class StepContext:
    """What the loop knows after step i: start, end, the step itself, v̂ and the applied γ."""

    x: torch.Tensor
    sigma: float
    sigma_next: float
    step: StepResult
    x_next: torch.Tensor
    history: Sequence[StepResult]
    direction: torch.Tensor | None  # v̂ of the secant pair
    gamma: float  # SteinDiff's applied γ (1 when off)


def _numpy(t: torch.Tensor):
    return t.detach().to("cpu", torch.float64).numpy()


def candidate_step(evaluate: Evaluator, solver: Solver, y: torch.Tensor, sigma: float, sigma_next: float,
                   history: Sequence[StepResult] = ()) -> torch.Tensor:  # fmt: skip
    """T(y): ``solver``'s step from σ to σ_next (Euler to D(y) when σ_next = 0)."""
    first = evaluate(y, sigma)
    return first.denoised if sigma_next == 0.0 else solver.step(evaluate, first, sigma_next, history).x


class GroundTruth:
    """Computes the enabled costly diagnostics step by step, keeping warm starts between steps."""

    def __init__(self, options: DiagnosticOptions, denoise, solver: Solver, generator: torch.Generator,
                 reference: Callable[[int, torch.Generator], torch.Tensor] | None = None):  # fmt: skip
        if options.stein_oracle and reference is None:
            raise ParameterError("stein_oracle", "needs a model with reference samples (sample_reference)")
        self.options, self.solver, self.generator, self.reference = options, solver, generator, reference
        self.evaluate = Evaluator(denoise)
        self.spectrum = (
            spectrum_for(denoise, options.eig_method, options.eig_iterations, options.lanczos_iterations, generator)
            if options.eig else None
        )  # fmt: skip
        self._eigvec: torch.Tensor | None = None
        self._singular: torch.Tensor | None = None

    def _random(self, like: torch.Tensor) -> torch.Tensor:
        return torch.randn(like.shape, generator=self.generator, dtype=like.dtype).to(like.device)

    def candidate(self, y: torch.Tensor, sigma: float, sigma_next: float, history: Sequence[StepResult]) -> torch.Tensor:
        """T(y): the solver's step from σ to σ_next (Euler to D(y) when σ_next = 0)."""
        return candidate_step(self.evaluate, self.solver, y, sigma, sigma_next, history)

    def record(self, record: dict, ctx: StepContext) -> None:
        """Add the enabled fields to ``record`` (numpy arrays per sample, floats per batch)."""
        o = self.options
        eigvec = None
        if o.eig:
            pair, ratio = self.spectrum.estimate(ctx.x, ctx.sigma, self._eigvec)
            eigvec = self._eigvec = pair.vector
            record["eig_max"] = _numpy(pair.value)
            record["stiffness_ratio"] = _numpy(ratio)
            if ctx.step.error is not None:
                record["align_cos_true"] = _numpy(abs_cosine(ctx.step.error, eigvec))
            if ctx.direction is not None:
                record["align_cos_vhat"] = _numpy(abs_cosine(ctx.direction, eigvec))
        if o.lte_ref and ctx.sigma_next > 0.0:
            error = ctx.x_next - fine_solution(self.evaluate, ctx.x, ctx.sigma, ctx.sigma_next, o.lte_ref_substeps)
            record["lte_ref"] = _numpy(batch_norm(error))
            if eigvec is not None:
                record["align_cos_ref"] = _numpy(abs_cosine(error, eigvec))
        if o.lipschitz:
            gamma = ctx.gamma

            def applied(y):
                t = self.candidate(y, ctx.sigma, ctx.sigma_next, ctx.history)
                return t if gamma == 1.0 else (1 - gamma) * y + gamma * t

            start = self._singular if self._singular is not None else self._random(ctx.x)
            estimate = lipschitz_constant(applied, ctx.x, start, o.lipschitz_iterations, key=self.evaluate.denoise)
            self._singular = estimate.vector
            record["lipschitz"] = _numpy(estimate.value)
        if o.stein_oracle and ctx.sigma_next > 0.0:
            x_star = self.reference(ctx.x.shape[0], self.generator).to(ctx.x.device, ctx.x.dtype)
            coupled = x_star + ctx.sigma * self._random(x_star)
            u = coupled - self.candidate(coupled, ctx.sigma, ctx.sigma_next, [])
            record["stein_gamma_oracle"] = oracle_coefficient(u, coupled, x_star)
