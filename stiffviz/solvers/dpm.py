"""DPM-Solver++(2M): a multistep exponential integrator in t = −log σ (data prediction).

With h = t_{i+1} − t_i = log(σ_i/σ_{i+1}) and r = h_{i−1}/h:

    x_{i+1} = (σ_{i+1}/σ_i) x_i + (1 − e^{−h}) D̃,   D̃ = (1 + 1/(2r)) D_i − (1/(2r)) D_{i−1}

with D̃ = D_i (first order, equal to an Euler step in σ) on the first step; the last step
to σ = 0 is the loop's Euler step. The embedded error is the difference to the
first-order update, e = (1 − e^{−h}) (D_i − D_{i−1})/(2r).

Stability: for steps small against σ the method tends to Adams–Bashforth 2 in σ on the
test equation (the terms that differ are O(h/σ)), so the growth factor reported is the
larger root modulus of ζ² − (1 + 3z/2) ζ + z/2 and the real boundary is 1 (2 on the
first-order first step).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .base import Evaluate, Stage, StepResult
from .deis import adams_bashforth_amplification


class DPMSolverPP2M:
    name = "dpmpp2m"
    pair = "consecutive"
    order = 2
    stability_boundary = 1.0

    def step(self, evaluate: Evaluate, first: Stage, sigma_next: float, history: Sequence[StepResult]) -> StepResult:
        h = math.log(first.sigma / sigma_next)
        ratio, gain = sigma_next / first.sigma, -math.expm1(-h)
        x_first_order = ratio * first.x + gain * first.denoised
        if not history:
            return StepResult(x_first_order, None, [first], boundary=2.0)
        previous = history[-1].stages[0]
        r = math.log(previous.sigma / first.sigma) / h
        correction = (gain / (2 * r)) * (first.denoised - previous.denoised)
        return StepResult(x_first_order + correction, correction, [first], boundary=self.stability_boundary)

    def amplification(self, z: np.ndarray) -> np.ndarray:
        """Larger root modulus of ζ² − (1 + 3z/2)ζ + z/2 = 0 (Adams–Bashforth 2)."""
        return adams_bashforth_amplification(z, 2)
