"""ERK-Guid: the embedded-pair error as a guidance signal (docs/math.md §4).

From a secant pair (ρ̂, v̂) with step h > 0:

    z = w_stiff · h · ρ̂,    β = 1[ρ̂ > w_con]
    x_{i+1} = x_step + sign · h · β · z² · ⟨f(x_i), v̂⟩ · v̂

with sign −1 for the lagged (Heun) and within-step (DPM-Solver-2) pairs and +1 for
consecutive trajectory points (the multistep variant). All of ρ̂, β, z and the inner
product are per sample. The loop corrects every step that has a pair and ends above σ = 0:
the within-step pair exists from step 0, so DPM-Solver-2 is corrected from step 0 (as in the
authors' code); the lagged and consecutive pairs first exist on step 1. The final Euler step
to σ = 0 is never corrected (with ``denoise_to_zero=False`` there is none, so the last step is
corrected too). w_stiff = 0 gives z = 0 and reproduces the plain solver.

w_con by steps (docs/math.md §4): the authors' reproduction script (unguided EDM2) sets
w_con = 0.1 at 8 steps, 0.3 at 16 and 0.5 at 32; :func:`default_erk_con` extends this to
any count, ≤ 8 → 0.1, 9–16 → 0.3, more → 0.5. It is the default wherever w_con is not given.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..diagnostics.secant import SecantPair, SecantStiffness, batch_dot
from ..errors import ParameterError, check_finite


W_CON_BY_STEPS = ((8, 0.1), (16, 0.3))  # (up to this many steps, w_con); beyond the last: W_CON_MANY
W_CON_MANY = 0.5


def default_erk_con(steps: int) -> float:
    """The authors' w_con for a run of ``steps`` solver steps: 0.1 up to 8, 0.3 up to 16, 0.5 above."""
    return next((w for limit, w in W_CON_BY_STEPS if steps <= limit), W_CON_MANY)


@dataclass(frozen=True)
class ErkGuid:
    """ERK-Guid weights: ``w_stiff`` scales z, ``w_con`` is the stiffness threshold on ρ̂."""

    w_stiff: float
    w_con: float = 0.5

    def __post_init__(self):
        for name, parameter in (("w_stiff", "erk_guid"), ("w_con", "erk_con")):
            if check_finite(parameter, getattr(self, name)) < 0:
                raise ParameterError(parameter, f"{name} must be ≥ 0, got {getattr(self, name)}")

    def correction(self, pair: SecantPair, stiffness: SecantStiffness) -> tuple[torch.Tensor, torch.Tensor]:
        """The vector added to the step's result, and β (the per-sample 'active' flag)."""
        active = stiffness.rho > self.w_con
        z = self.w_stiff * pair.h * stiffness.rho
        coefficient = pair.sign * pair.h * active.to(z.dtype) * z.square() * batch_dot(pair.current.drift, stiffness.direction)
        shape = (-1,) + (1,) * (stiffness.direction.ndim - 1)
        return coefficient.view(shape) * stiffness.direction, active
