"""Validated settings of one sampling run, shared by the Python API, the CLI and the UI."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch

from .adaptive import ATOL, RTOL, check_adaptive
from .diagnostics.ground_truth import DiagnosticOptions
from .errors import ParameterError, check_finite
from .guidance.erk import ErkGuid, default_erk_con
from .guidance.stein import SteinDiff
from .paths import PATHS
from .schedules import SCHEDULES, explicit_levels
from .stochastic import Stochastic, check_combination

MODEL_SCHEDULE = "model"  # the model's own scheduler grid (diffusers models: ``model.model_sigmas``)
from .solvers import SOLVERS

MAX_STEPS = 1000
MAX_BATCH = 65536
DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass(frozen=True)
class SampleConfig(DiagnosticOptions):
    """Everything that determines a run; ``validate`` names the offending parameter and its limit.

    The diagnostics' switches (``diagnostics``, ``eig``, ``lte_ref``, ``lipschitz``,
    ``stein_oracle`` and their iteration counts) come from :class:`DiagnosticOptions`.

    ``erk_guid`` is ERK-Guid's w_stiff (None: off), ``erk_con`` its w_con (None: the authors'
    value for the solver's steps, :func:`~stiffviz.guidance.erk.default_erk_con`: 0.1 up to 8 steps, 0.3 up
    to 16, 0.5 above; ``to_dict`` records the value used). ``denoise_to_zero=False`` is the
    authors' diff-sampler convention (docs/math.md §4): the grid is ``steps`` noise levels ending
    at σ_min, so ``steps`` = N time points give N − 1 solver steps, with no final Euler step to
    σ = 0 (the samples are the states at σ_min) and ERK-Guid corrects the last step. ``cls`` is the class
    (index or name) for class-conditional models, None for unconditional sampling; ``prompt``
    and ``negative_prompt`` condition text models (CFG runs against the negative prompt, or
    the empty one). ``path`` is the Gaussian path whose coordinates and time the solver steps in
    (``edm``, ``vp``, ``flow``; None: the model's own, :mod:`stiffviz.paths`). ``schedule`` is ``karras``,
    ``logsnr`` (σ grids, mapped to the path's time), ``uniform`` (in the path's own time; ``shift``
    for flow) or ``model`` (the model's own grid); ``sigmas``, when
    given, is an explicit grid of ``steps`` positive levels that replaces the schedule.
    """

    model: str = "tree"
    solver: str = "heun"
    steps: int = 32
    batch: int = 1024
    seed: int = 0
    schedule: str = "karras"
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0
    sigmas: tuple[float, ...] | None = None  # an explicit grid: overrides schedule (docs/math.md §13)
    path: str | None = None  # the coordinates the solver steps in (docs/math.md §9); None: the model's own
    shift: float = 1.0  # the flow path's uniform grid: σ ← shift·σ (diffusers' FlowMatch shift)
    cls: int | str | None = None
    prompt: str | None = None
    negative_prompt: str | None = None
    cfg: float = 1.0
    autoguidance: float = 1.0
    erk_guid: float | None = None
    erk_con: float | None = None  # None: by steps (default_erk_con)
    denoise_to_zero: bool = True
    dtype: str = "float32"
    device: str | None = None
    # Stochastic sampling (docs/math.md §11): EDM's churn S_churn, acting for σ_i in [s_tmin, s_tmax], noise scale s_noise
    churn: float = 0.0
    s_tmin: float = 0.0
    s_tmax: float | None = None  # None: no upper limit
    s_noise: float = 1.0
    # The diagnostics' switches are inherited from DiagnosticOptions; SteinDiff (docs/math.md §5):
    stein: bool = False
    stein_probes: int = 5
    stein_gamma_min: float = 1.0
    stein_gamma_max: float = 3.0
    stein_sigma_min: float = 0.0
    stein_sigma_max: float | None = None  # None: no upper limit
    # Adaptive steps (docs/math.md §12): ``steps`` then caps the attempted steps, rejected ones included
    adaptive: bool = False
    rtol: float = RTOL
    atol: float = ATOL

    def validate(self) -> "SampleConfig":
        if self.solver not in SOLVERS:
            raise ParameterError("solver", f"must be one of {', '.join(SOLVERS)}, got {self.solver!r}")
        if self.schedule not in SCHEDULES + (MODEL_SCHEDULE,):
            raise ParameterError("schedule", f"must be one of {', '.join(SCHEDULES + (MODEL_SCHEDULE,))}, got {self.schedule!r}")
        if self.path is not None and self.path not in PATHS:
            raise ParameterError("path", f"must be one of {', '.join(PATHS)}, got {self.path!r}")
        if check_finite("shift", self.shift) <= 0:
            raise ParameterError("shift", f"must be > 0, got {self.shift}")
        for name in ("prompt", "negative_prompt"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), str):
                raise ParameterError(name, f"must be text, got {type(getattr(self, name)).__name__}")
        _integer_in("steps", self.steps, 1, MAX_STEPS)
        if self.sigmas is not None:
            _check_levels(self.sigmas, self.steps)
        _integer_in("batch", self.batch, 1, MAX_BATCH)
        _integer_in("seed", self.seed, 0, 2**63 - 1)
        for name in ("sigma_min", "sigma_max", "rho", "cfg", "autoguidance"):
            check_finite(name, getattr(self, name))
        if self.erk_con is not None:
            check_finite("erk_con", self.erk_con)
        if not isinstance(self.denoise_to_zero, bool):
            raise ParameterError("denoise_to_zero", f"must be true or false, got {self.denoise_to_zero!r}")
        if not self.denoise_to_zero and self.steps < 2:
            raise ParameterError("steps", f"must be ≥ 2 without the denoise-to-zero step (N time points give "
                                          f"N − 1 steps), got {self.steps}")  # fmt: skip
        if self.sigma_min <= 0:
            raise ParameterError("sigma_min", f"must be > 0, got {self.sigma_min}")
        if self.sigma_min >= self.sigma_max:
            raise ParameterError("sigma_min", f"must be < sigma_max = {self.sigma_max}, got {self.sigma_min}")
        if self.rho <= 0:
            raise ParameterError("rho", f"must be > 0, got {self.rho}")
        if self.erk_guid is not None:
            check_finite("erk_guid", self.erk_guid)
        if self.dtype not in DTYPES:
            raise ParameterError("dtype", f"must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.device is not None:
            _check_device(self.device)
        check_adaptive(self)
        self.erk(), self.stein_diff()  # each validates its fields (DiagnosticOptions did on construction)
        noise = self.stochastic()
        check_combination(noise.churn > 0 or self.solver == "euler_ancestral", self.erk_guid is not None, self.path or "edm")
        return self

    def erk(self) -> ErkGuid | None:
        return ErkGuid(self.erk_guid, self.erk_con_used) if self.erk_guid is not None else None

    @property
    def erk_con_used(self) -> float:
        """``erk_con``, or the authors' w_con for ``steps`` when it is None."""
        return default_erk_con(self.solver_steps) if self.erk_con is None else self.erk_con

    @property
    def solver_steps(self) -> int:
        """Steps the solver takes: ``steps``, or ``steps`` − 1 without the denoise-to-zero step."""
        return self.steps if self.denoise_to_zero else self.steps - 1

    def stein_diff(self) -> SteinDiff | None:
        if not self.stein:
            return None
        sigma_max = math.inf if self.stein_sigma_max is None else self.stein_sigma_max
        return SteinDiff(self.stein_probes, self.stein_gamma_min, self.stein_gamma_max, self.stein_sigma_min, sigma_max)

    def stochastic(self) -> Stochastic:
        """The churn settings (validated); ``euler_ancestral`` brings its own noise."""
        s_tmax = math.inf if self.s_tmax is None else self.s_tmax
        return Stochastic(self.churn, self.s_tmin, s_tmax, self.s_noise)

    def diagnostic_options(self) -> DiagnosticOptions:
        return DiagnosticOptions(**{f.name: getattr(self, f.name) for f in fields(DiagnosticOptions)})

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    def to_dict(self) -> dict:
        """The settings, with ``erk_con`` the value used."""
        return asdict(self) | {"erk_con": self.erk_con_used}


def _check_levels(sigmas, steps: int) -> None:
    """An explicit grid: valid levels (``explicit_levels``), one per step."""
    levels = explicit_levels(sigmas, MAX_STEPS)
    if len(levels) != steps:
        raise ParameterError("sigmas", f"has {len(levels)} positive levels, so steps must be {len(levels)}, got {steps}")


def _check_device(name: str) -> None:
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ParameterError("device", f"must be a torch device such as cpu or cuda, got {name!r}") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ParameterError("device", "CUDA is not available on this machine; use cpu")
    if device.type not in ("cpu", "cuda"):
        raise ParameterError("device", f"must be cpu or cuda, got {name!r}")


def _integer_in(name: str, value, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ParameterError(name, f"must be an integer in [{low}, {high}], got {value!r}")
