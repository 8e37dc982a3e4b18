"""Solvers by name: ``euler``, ``euler_ancestral``, ``heun``, ``bosh3``, ``dpm2``, ``dpmpp2m``, ``deis`` (and ``rk4``)."""

from __future__ import annotations

from ..errors import ParameterError
from .base import Solver, Stage, StepResult
from .deis import DEIS
from .dpm import DPMSolverPP2M
from .runge_kutta import AncestralEuler, RungeKuttaSolver, bosh3, dpm2, euler, heun, rk4, runge_kutta_step
from .tableau import Tableau

SOLVERS = {"euler": euler, "euler_ancestral": AncestralEuler, "heun": heun, "bosh3": bosh3, "dpm2": dpm2, "dpmpp2m": DPMSolverPP2M, "deis": DEIS, "rk4": rk4}


def get_solver(name: str) -> Solver:
    """A fresh solver object by name."""
    if name not in SOLVERS:
        raise ParameterError("solver", f"must be one of {', '.join(SOLVERS)}, got {name!r}")
    return SOLVERS[name]()


NFE_PER_STEP = {"euler": 1, "euler_ancestral": 1, "heun": 2, "dpm2": 2, "dpmpp2m": 1, "deis": 1, "rk4": 4}


def nfe_for(name: str, steps: int, denoise_to_zero: bool = True) -> int:
    """Denoiser evaluations of ``steps`` steps ending at σ = 0 (the last step is Euler, one
    evaluation), without ERK-Guid or SteinDiff (which break Bogacki–Shampine's first-same-as-last
    reuse). ``denoise_to_zero=False``: ``steps`` levels ending at σ_min, ``steps`` − 1 solver
    steps and no final evaluation (the authors' diff-sampler count, docs/math.md §4)."""
    get_solver(name)  # validates the name
    if name == "bosh3":  # 4 on the first step, 3 after (first same as last), none on the last
        return 1 if steps == 1 else 4 + 3 * (steps - 2)
    return NFE_PER_STEP[name] * (steps - 1) + int(denoise_to_zero)


__all__ = ["SOLVERS", "Solver", "Stage", "StepResult", "AncestralEuler", "RungeKuttaSolver", "DPMSolverPP2M", "DEIS", "Tableau",
           "get_solver", "nfe_for", "runge_kutta_step"]
