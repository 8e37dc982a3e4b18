"""What a solver step hands the sampling loop: its result, its error estimate, its stages.

Every model call of a step is kept as a :class:`Stage` (x, σ, D(x; σ), f(x; σ)) with
f = (x − D)/σ the probability-flow drift (docs/math.md §1), so diagnostics and guidance
never call the model again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

import numpy as np
import torch


@dataclass(frozen=True)
class Stage:
    """One denoiser evaluation: state ``x`` at noise level ``sigma``, D(x; σ) and f(x; σ)."""

    x: torch.Tensor
    sigma: float
    denoised: torch.Tensor
    drift: torch.Tensor


    def detach(self) -> "Stage":
        return Stage(self.x.detach(), self.sigma, self.denoised.detach(), self.drift.detach())


Evaluate = Callable[[torch.Tensor, float], Stage]


class Evaluator:
    """Calls a denoiser ``D(x, σ)``, returns the :class:`Stage` with f = (x − D)/σ, and counts calls."""

    def __init__(self, denoise: Callable[[torch.Tensor, float], torch.Tensor]):
        self.denoise, self.calls = denoise, 0

    def __call__(self, x: torch.Tensor, sigma: float) -> Stage:
        self.calls += 1
        denoised = self.denoise(x, sigma)
        return Stage(x, sigma, denoised, (x - denoised) / sigma)


@dataclass(frozen=True)
class StepResult:
    """A solver step from σ_i to σ_{i+1}.

    Attributes:
        x: the step's result at σ_{i+1} (the higher-order solution of an embedded pair).
        error: embedded error estimate e = x_high − x_low, or None when the step has no pair.
        stages: every evaluation the step used, ``stages[0]`` at (x_i, σ_i).
        boundary: real-axis stability boundary of this step: stable for hλ ∈ [−boundary, 0].
        next_stage: an evaluation already made at (x, σ_{i+1}) (first-same-as-last), or None.
    """

    x: torch.Tensor
    error: torch.Tensor | None
    stages: Sequence[Stage]
    boundary: float
    next_stage: Stage | None = None

    def detach(self) -> "StepResult":
        """The same step with every tensor cut from the autograd graph."""
        return StepResult(
            self.x.detach(),
            None if self.error is None else self.error.detach(),
            [s.detach() for s in self.stages],
            self.boundary,
            None if self.next_stage is None else self.next_stage.detach(),
        )


class Solver(Protocol):
    """A one-step or multistep method for dx/dσ = f(x; σ).

    ``pair`` names the secant pair its ERK-Guid variant uses (docs/math.md §4):
    ``lagged`` (x_i and the previous step's predictor, both at σ_i), ``within`` (x_i and
    this step's intermediate stage) or ``consecutive`` (x_i and x_{i−1}).
    """

    name: str
    pair: str

    def step(
        self, evaluate: Evaluate, first: Stage, sigma_next: float, history: Sequence[StepResult]
    ) -> StepResult: ...

    def amplification(self, z: np.ndarray) -> np.ndarray:
        """|growth factor| per step for the test equation y' = λy with z = hλ (nominal step)."""
        ...

    @property
    def stability_boundary(self) -> float:
        """Nominal real-axis stability boundary (the step may report its own)."""
        ...
