"""The app's requests, checked on the server: the inputs by name, their ranges, per-model limits.

A request is the page's inputs by name (``INPUTS``). :func:`parse_request` checks every one
on the server (an API caller bypasses the page's sliders) against ``INPUT_RANGES`` and the
per-model :class:`ModelLimits`, then :class:`~stiffviz.config.SampleConfig` checks the rest;
each failure is a :class:`ParameterError` naming the parameter and its limit. The model must
be one of the server's names (the page never names a path or a Hub id); a prompt (at most
``MAX_PROMPT`` characters) is accepted only by a text-conditioned model, the schedule
"model" (the model's own scheduler grid) only by a model with ``model_sigmas``.

**Limits.** The built-in models keep their fixed limits (``TOY_LIMITS``, ``MODEL_LIMITS``).
Any other model (``diffusers:…``) gets limits from its size, a budget of work per run: with
D = prod(shape) state elements per sample and P = ``parameter_count`` network parameters,

    max_batch = clamp(⌊BATCH_ELEMENTS / D · min(1, LARGE_NETWORK / P)⌋, 1, 64)
    max_steps = 100 if P < SMALL_NETWORK else 50
    default_batch = min(16, ⌈max_batch / 4⌉)

so a batch holds at most BATCH_ELEMENTS = 2¹⁸ state elements, and a network beyond
LARGE_NETWORK = 10⁷ parameters shrinks it in proportion (every model call costs about P per
element); networks under SMALL_NETWORK = 10⁶ parameters may take twice the steps.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from ..config import MODEL_SCHEDULE
from ..errors import ParameterError
from ..guidance.erk import default_erk_con
from ..models import list_models, load_model
from ..paths import PATHS
from ..schedules import SCHEDULES, explicit_levels
from ..adaptive import ATOL, RTOL
from ..solvers import SOLVERS, nfe_for
from .userdata import USER_DATA

NO_CLASS = "(none)"


@dataclass(frozen=True)
class ModelLimits:
    """Server-side limits of one model in the app (the page shows them)."""

    name: str
    max_steps: int
    max_batch: int
    default_batch: int


TOY_LIMITS = dict(max_steps=200, max_batch=4096, default_batch=1024)
MODEL_LIMITS = {
    "digits": dict(max_steps=100, max_batch=256, default_batch=36),
    "digits16": dict(max_steps=100, max_batch=64, default_batch=16),
    "digits-unet": dict(max_steps=64, max_batch=64, default_batch=16),
}
BATCH_ELEMENTS = 2**18  # state elements in one batch (the size rule above)
LARGE_NETWORK = 10**7  # parameters beyond which the batch shrinks in proportion
SMALL_NETWORK = 10**6  # parameters below which a network may take MAX_STEPS_SMALL steps
MAX_STEPS_SMALL, MAX_STEPS_NETWORK, MAX_BATCH_NETWORK = 100, 50, 64
MAX_PROMPT = 500  # characters, for the prompt and the negative prompt
MAX_GRID_TEXT = 20_000  # characters of the explicit σ grid box

# Numeric inputs: (low, high, integer?); the highs of steps and batch are the model's (limits_for).
INPUT_RANGES: dict[str, tuple[float, float, bool]] = {
    "steps": (1, 1000, True),
    "batch": (1, 4096, True),
    "seed": (0, 2**31 - 1, True),
    "cfg": (0.0, 10.0, False),
    "autoguidance": (0.0, 10.0, False),
    "sigma_min": (1e-4, 10.0, False),
    "sigma_max": (0.1, 500.0, False),
    "rho": (0.5, 20.0, False),
    "erk_guid": (0.0, 5.0, False),
    "erk_con": (0.0, 5.0, False),
    "stein_probes": (1, 32, True),
    "stein_gamma_min": (-10.0, 10.0, False),
    "stein_gamma_max": (-10.0, 10.0, False),
    "stein_sigma_max": (0.0, 500.0, False),  # SteinDiff acts only at σ ≤ this (500: at every σ)
    "churn": (0.0, 100.0, False),  # EDM's S_churn (docs/math.md §11); 0: no churn
    "s_tmin": (0.0, 500.0, False),
    "s_tmax": (0.0, 500.0, False),  # churn acts for σ_i in [s_tmin, s_tmax] (500: at every σ)
    "s_noise": (0.5, 2.0, False),
    "rtol": (1e-6, 1.0, False),  # adaptive steps' tolerances (docs/math.md §12)
    "atol": (1e-6, 1.0, False),
}
FLAGS = ("erk_on", "stein_on", "eig", "lte_ref", "lipschitz", "compare", "denoise_to_zero", "adaptive")  # checkboxes: true or false only
# The page's inputs, in the order of the run endpoint's arguments.
INPUTS = ("model", "prompt", "negative_prompt", "cls", "cfg", "autoguidance", "solver", "steps", "schedule",
          "sigma_min", "sigma_max", "rho", "erk_on", "erk_guid", "erk_con", "stein_on", "stein_probes",
          "stein_gamma_min", "stein_gamma_max", "stein_sigma_max",
          "eig", "lte_ref", "lipschitz", "seed", "batch", "compare", "path", "denoise_to_zero", "churn", "s_tmin", "s_tmax", "s_noise", "adaptive", "rtol", "atol", "sigmas")  # fmt: skip
DEFAULTS: dict[str, Any] = dict(
    model="tree", prompt="", negative_prompt="", cls=NO_CLASS, cfg=1.0, autoguidance=1.0, solver="heun", steps=6,
    schedule="karras", sigma_min=0.002, sigma_max=80.0, rho=7.0, erk_on=True, erk_guid=1.0, erk_con=default_erk_con(6), stein_on=False,
    stein_probes=5, stein_gamma_min=1.0, stein_gamma_max=3.0, stein_sigma_max=500.0, eig=True, lte_ref=False,
    lipschitz=False,
    seed=0, batch=1024, compare=True, path="edm", denoise_to_zero=True, churn=0.0, s_tmin=0.0, s_tmax=500.0, s_noise=1.0, adaptive=False, rtol=RTOL, atol=ATOL, sigmas="",
)  # fmt: skip


def available_models(*server_models: str) -> list[str]:
    """The app's models: ``list_models()``, then the server's own specs (``diffusers:…``) in order."""
    names = list_models()
    return names + [spec for spec in dict.fromkeys(server_models) if spec not in names]


def size_limits(name: str, parameter_count: int, elements: int) -> ModelLimits:
    """The limits of a model with ``parameter_count`` parameters and ``elements`` state
    elements per sample: the size rule of the module's docstring."""
    shrink = min(1.0, LARGE_NETWORK / parameter_count) if parameter_count > 0 else 1.0
    max_batch = max(1, min(MAX_BATCH_NETWORK, int(BATCH_ELEMENTS / max(elements, 1) * shrink)))
    max_steps = MAX_STEPS_SMALL if parameter_count < SMALL_NETWORK else MAX_STEPS_NETWORK
    return ModelLimits(name, max_steps, max_batch, min(16, math.ceil(max_batch / 4)))


def limits_for(name: str, model=None) -> ModelLimits:
    """The app's step and batch limits for the model ``name``: the built-ins' own (a visitor's own
    2-D data, ``USER_DATA``, those of the toys), otherwise the size rule from ``model`` (loaded
    when not given) and its ``parameter_count`` and ``shape``."""
    if name in MODEL_LIMITS:
        return ModelLimits(name, **MODEL_LIMITS[name])
    if name in list_models() or name == USER_DATA:
        return ModelLimits(name, **TOY_LIMITS)
    model = model if model is not None else load_model(name)
    return size_limits(name, int(getattr(model, "parameter_count", 0)), math.prod(model.shape))


def limits_table(limits: list[ModelLimits]) -> str:
    """The per-model limits as a Markdown table (shown in the page)."""
    rows = [f"| {m.name} | {m.max_steps} | {m.max_batch} |" for m in limits]
    return "\n".join(["| model | max steps | max batch |", "|---|---|---|", *rows])


def schedules_for(model) -> list[str]:
    """The schedules the model can run: karras and logsnr, and "model" where it has ``model_sigmas``."""
    return list(SCHEDULES) + ([MODEL_SCHEDULE] if hasattr(model, "model_sigmas") else [])


def paths_for(model) -> list[str]:
    """The paths the model can run on (docs/math.md §9): edm, vp and flow for an EDM denoiser, a
    flow model its own only."""
    native = getattr(model, "path", "edm")
    return list(PATHS) if native == "edm" else [native]


def shown(value: Any) -> str:
    """``value`` as a message shows it: its repr cut to 40 characters, "(text)" for text (so "5" is
    told from 5), and an integer of hundreds of digits as its number of digits."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**30:
        digits = len(str(abs(value))) if value.bit_length() < 14_000 else "over 4,000"  # str() stops at 4,300 digits
        return f"an integer of {digits} digits"
    text = repr(value)
    text = text if len(text) <= 40 else text[:39] + "…"
    return text + {str: " (text)", list: " (a list)", dict: " (a dict)"}.get(type(value), "")


def number(name: str, value: Any, low: float, high: float, integer: bool, context: str = "") -> float | int:
    """``value`` as a number in [low, high] (an integer where ``integer``), else :class:`ParameterError`
    naming ``name`` and the range. Only real numbers are numbers: text ("5"), true/false and
    nothing are refused, not converted; an integer of any size is compared exactly, never
    overflowing; a float with a fraction is refused where an integer is wanted (3.5 is not 3)."""
    kind = f"an integer in [{int(low)}, {int(high)}]" if integer else f"a number in [{low:g}, {high:g}]"
    refused = ParameterError(name, f"must be {kind}{context}, got {shown(value)}")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise refused
    if isinstance(value, numbers.Integral):
        if not low <= int(value) <= high:
            raise refused
        return int(value) if integer else float(value)
    number = float(value)
    if not math.isfinite(number) or not low <= number <= high or (integer and number != int(number)):
        raise refused
    return int(number) if integer else number


def real(name: str, value: Any) -> float:
    """``value`` as a finite float: a real number (not text, not true/false) within a float's range."""
    try:
        finite = not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(float(value))
    except OverflowError:  # an integer beyond 1.8e308
        finite = False
    if not finite:
        raise ParameterError(name, f"must be a finite number, got {shown(value)}")
    return float(value)


def flag(name: str, value: Any) -> bool:
    """A checkbox's value: only true or false (the text "false" is refused, not read as true)."""
    if not isinstance(value, bool):
        raise ParameterError(name, f"must be true or false (a checkbox), got {shown(value)}")
    return value


def choice(name: str, value: Any, choices: Sequence[str]) -> str:
    """``value`` if it is one of ``choices`` (text, compared exactly), else :class:`ParameterError`."""
    if not isinstance(value, str) or value not in choices:
        raise ParameterError(name, f"must be one of {', '.join(choices)}, got {shown(value)}")
    return value


def _number(name: str, value: Any, limits: ModelLimits) -> float | int:
    """``value`` as a number within its range (steps and batch: within the model's limits)."""
    low, high, integer = INPUT_RANGES[name]
    high = {"steps": limits.max_steps, "batch": limits.max_batch}.get(name, high)
    return number(name, value, low, high, integer, f" for the model {limits.name}" if name in ("steps", "batch") else "")


@dataclass(frozen=True)
class Request:
    """A checked request: the model's name, the keyword settings of :func:`stiffviz.sample`
    and whether to run the unguided twin as well."""

    model: str
    settings: dict
    compare: bool

    def unguided(self) -> dict:
        """The same settings with every guidance method off."""
        return self.settings | dict(cfg=1.0, autoguidance=1.0, erk_guid=None, stein=False)

    @property
    def has_guidance(self) -> bool:
        return self.unguided() != self.settings


def _prompt(name: str, value: Any, model, model_name: str) -> str:
    """A prompt as text: at most ``MAX_PROMPT`` characters, empty unless the model reads text."""
    text = "" if value is None else value
    if not isinstance(text, str):
        raise ParameterError(name, f"must be text of at most {MAX_PROMPT} characters, got {shown(value)}")
    if len(text) > MAX_PROMPT:
        raise ParameterError(name, f"must be text of at most {MAX_PROMPT} characters, got {len(text)} characters")
    if text and not getattr(model, "text_conditioned", False):
        raise ParameterError(name, f"the model {model_name} is not text-conditioned; leave the prompt empty")
    return text


def _class(value: Any, model, model_name: str) -> str | None:
    """The class: one of the model's class names, or none (``NO_CLASS``, "" or nothing)."""
    if value is None or value in ("", NO_CLASS):
        return None
    if not model.classes:
        raise ParameterError("cls", f"the model {model_name} has no classes; use {NO_CLASS}, got {shown(value)}")
    return choice("cls", value, [NO_CLASS, *model.classes])


def w_con_for(steps: Any, denoise_to_zero: Any = True) -> float | None:
    """The w_con slider's value when the step count changes: the authors' w_con for the solver's
    steps (``default_erk_con``), or None (no change) for a value that is no step count."""
    try:
        return default_erk_con(int(steps) - (denoise_to_zero is False))
    except (TypeError, ValueError, OverflowError):
        return None


def explicit_sigmas(value: Any, limits: ModelLimits) -> tuple[float, ...] | None:
    """The explicit σ grid box (docs/math.md §13): text of comma-separated numbers, strictly
    decreasing, positive but for an optional final 0, at most the model's step limit of positive
    levels; empty (or nothing) for the schedule's grid (None)."""
    if value is None or isinstance(value, str) and not value.strip():
        return None
    if not isinstance(value, str) or len(value) > MAX_GRID_TEXT:
        raise ParameterError("sigmas", f"must be text of at most {MAX_GRID_TEXT:,} characters: comma-separated "
                                       f"numbers such as 80, 5, 0.5, 0.002 (or empty), got {shown(value)}")  # fmt: skip
    try:
        levels = [float(part) for part in value.split(",")]
    except ValueError:
        raise ParameterError("sigmas", f"must be comma-separated numbers such as 80, 5, 0.5, 0.002 (or empty), "
                                       f"got {shown(value)}") from None  # fmt: skip
    return explicit_levels(levels, limits.max_steps)


def parse_request(values: Mapping[str, Any], models: list[str], lookup: Callable[[str], Any] = load_model) -> Request:
    """Check the page's inputs (by name, see ``INPUTS``) and turn them into a :class:`Request`.

    ``models`` are the names the server offers; ``lookup(name)`` gives the model object (the
    app's loaded-once models), whose size, text conditioning and schedules the checks follow.
    """
    missing = [name for name in INPUTS if name not in values]
    if missing:
        raise ParameterError(missing[0], "is missing from the request")
    name = choice("model", values["model"], models)
    model = lookup(name)
    limits = limits_for(name, model)
    numeric = {key: _number(key, values[key], limits) for key in INPUT_RANGES}
    prompts = {key: _prompt(key, values[key], model, name) for key in ("prompt", "negative_prompt")}
    choice("solver", values["solver"], list(SOLVERS))
    choice("schedule", values["schedule"], schedules_for(model))
    choice("path", values["path"], paths_for(model))
    flags = {key: flag(key, values[key]) for key in FLAGS}
    settings = dict(
        solver=values["solver"], schedule=values["schedule"], path=values["path"], cls=_class(values["cls"], model, name),
        erk_guid=numeric["erk_guid"] if flags["erk_on"] else None, stein=flags["stein_on"],
        eig=flags["eig"], lte_ref=flags["lte_ref"], lipschitz=flags["lipschitz"], denoise_to_zero=flags["denoise_to_zero"],
        adaptive=flags["adaptive"],
        **{key: numeric[key] for key in INPUT_RANGES if key != "erk_guid"},
    )  # fmt: skip
    grid = explicit_sigmas(values["sigmas"], limits)
    if grid is not None:  # an explicit grid: its levels are the steps (schedule, σ range and ρ unused)
        settings.update(sigmas=grid, steps=len(grid))
    if getattr(model, "text_conditioned", False):
        settings.update(prompt=prompts["prompt"], negative_prompt=prompts["negative_prompt"] or None)
    return Request(name, settings, flags["compare"])


def nfe_text(solver: str, steps: Any, cfg: Any = 1.0, autoguidance: Any = 1.0, denoise_to_zero: Any = True,
             adaptive: Any = False) -> str:  # fmt: skip
    """'NFE = …' for ``steps`` steps of ``solver`` (``steps`` levels to σ_min, ``steps`` − 1 steps,
    without the denoise-to-zero step), and the model calls per evaluation that CFG (the
    unconditional call) and Autoguidance (the weak model's call) add. With ``adaptive``, 'NFE ≤ …':
    ``steps`` caps the attempts to σ_min, so the count is that of ``steps`` + 1 levels (docs/math.md §12)."""
    try:
        nfe = nfe_for(solver, int(steps) + (adaptive is True), denoise_to_zero is not False)
        calls = 1 + (float(cfg) != 1.0) + (float(autoguidance) != 1.0)
    except (ParameterError, TypeError, ValueError, OverflowError):
        return "NFE: —"
    guided = f" × {calls} model calls per evaluation (guidance)" if calls > 1 else ""
    return f"**NFE {'≤' if adaptive is True else '='} {nfe}**{guided}"
