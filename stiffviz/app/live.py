"""The live run behind the app, without Gradio: request checking, streaming, comparison runs.

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

:func:`stream_session` runs the sampler (the library's :func:`stiffviz.sample`) in a worker
thread and yields a :class:`Session` after every step: the trace so far and the states
x_0 … x_i with the denoised estimates D(x_i; σ_i) (the x0 preview), on the CPU. With
``compare`` it then runs the same seed again with every guidance off (cfg = autoguidance
= 1, no ERK-Guid, no SteinDiff), so both runs can be overlaid step by step.
"""

from __future__ import annotations

import math
import queue
import threading
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator, Mapping

import torch

from ..config import MODEL_SCHEDULE
from ..errors import ParameterError
from ..models import list_models, load_model
from ..quality import quality_report
from ..sampler import initial_noise, sample
from ..schedules import SCHEDULES
from ..solvers import SOLVERS, nfe_for
from ..trace import Trace

NO_CLASS = "(none)"
GUIDED, UNGUIDED = "guidance on", "guidance off"


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
}
# The page's inputs, in the order of the run endpoint's arguments.
INPUTS = ("model", "prompt", "negative_prompt", "cls", "cfg", "autoguidance", "solver", "steps", "schedule",
          "sigma_min", "sigma_max", "rho", "erk_on", "erk_guid", "erk_con", "stein_on", "stein_probes",
          "stein_gamma_min", "stein_gamma_max", "eig", "lte_ref", "lipschitz", "seed", "batch", "compare")  # fmt: skip
DEFAULTS: dict[str, Any] = dict(
    model="tree", prompt="", negative_prompt="", cls=NO_CLASS, cfg=1.0, autoguidance=1.0, solver="heun", steps=6,
    schedule="karras", sigma_min=0.002, sigma_max=80.0, rho=7.0, erk_on=True, erk_guid=1.0, erk_con=0.5, stein_on=False,
    stein_probes=5, stein_gamma_min=1.0, stein_gamma_max=3.0, eig=True, lte_ref=False, lipschitz=False,
    seed=0, batch=1024, compare=True,
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
    """The app's step and batch limits for the model ``name``: the built-ins' own, otherwise the
    size rule from ``model`` (loaded when not given) and its ``parameter_count`` and ``shape``."""
    if name in MODEL_LIMITS:
        return ModelLimits(name, **MODEL_LIMITS[name])
    if name in list_models():
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


def _number(name: str, value: Any, limits: ModelLimits) -> float | int:
    """``value`` as a number within its range (steps and batch: within the model's limits)."""
    low, high, integer = INPUT_RANGES[name]
    high = {"steps": limits.max_steps, "batch": limits.max_batch}.get(name, high)
    kind = f"an integer in [{int(low)}, {int(high)}]" if integer else f"a number in [{low:g}, {high:g}]"
    if name in ("steps", "batch"):
        kind += f" for the model {limits.name}"
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ParameterError(name, f"must be {kind}, got {value!r}") from None
    if not math.isfinite(number) or not low <= number <= high or (integer and number != int(number)):
        raise ParameterError(name, f"must be {kind}, got {value!r}")
    return int(number) if integer else number


def _choice(name: str, value: Any, choices: list[str]) -> str:
    if value not in choices:
        raise ParameterError(name, f"must be one of {', '.join(choices)}, got {value!r}")
    return value


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
    if not isinstance(text, str) or len(text) > MAX_PROMPT:
        raise ParameterError(name, f"must be text of at most {MAX_PROMPT} characters, got {len(str(text))} characters")
    if text and not getattr(model, "text_conditioned", False):
        raise ParameterError(name, f"the model {model_name} is not text-conditioned; leave the prompt empty")
    return text


def parse_request(values: Mapping[str, Any], models: list[str], lookup: Callable[[str], Any] = load_model) -> Request:
    """Check the page's inputs (by name, see ``INPUTS``) and turn them into a :class:`Request`.

    ``models`` are the names the server offers; ``lookup(name)`` gives the model object (the
    app's loaded-once models), whose size, text conditioning and schedules the checks follow.
    """
    missing = [name for name in INPUTS if name not in values]
    if missing:
        raise ParameterError(missing[0], "is missing from the request")
    name = _choice("model", values["model"], models)
    model = lookup(name)
    limits = limits_for(name, model)
    numbers = {key: _number(key, values[key], limits) for key in INPUT_RANGES}
    prompts = {key: _prompt(key, values[key], model, name) for key in ("prompt", "negative_prompt")}
    _choice("solver", values["solver"], list(SOLVERS))
    _choice("schedule", values["schedule"], schedules_for(model))
    cls = values["cls"]
    settings = dict(
        solver=values["solver"], schedule=values["schedule"], cls=None if cls in (None, "", NO_CLASS) else cls,
        erk_guid=numbers["erk_guid"] if values["erk_on"] else None, stein=bool(values["stein_on"]),
        eig=bool(values["eig"]), lte_ref=bool(values["lte_ref"]), lipschitz=bool(values["lipschitz"]),
        **{key: numbers[key] for key in INPUT_RANGES if key != "erk_guid"},
    )  # fmt: skip
    if getattr(model, "text_conditioned", False):
        settings.update(prompt=prompts["prompt"], negative_prompt=prompts["negative_prompt"] or None)
    return Request(name, settings, bool(values["compare"]))


def nfe_text(solver: str, steps: Any, cfg: Any = 1.0, autoguidance: Any = 1.0) -> str:
    """'NFE = …' for ``steps`` steps of ``solver``, and the model calls per evaluation that
    CFG (the unconditional call) and Autoguidance (the weak model's call) add."""
    try:
        nfe = nfe_for(solver, int(steps))
        calls = 1 + (float(cfg) != 1.0) + (float(autoguidance) != 1.0)
    except (ParameterError, TypeError, ValueError):
        return "NFE: —"
    guided = f" × {calls} model calls per evaluation (guidance)" if calls > 1 else ""
    return f"**NFE = {nfe}**{guided}"


@dataclass
class RunRecord:
    """One run as the app keeps it: its trace (growing while it runs) and states on the CPU.

    ``states[k]`` is x_k (k = 0 … steps done) and ``previews[k]`` the denoised estimate
    D(x_k; σ_k). ``decoded`` caches a latent model's VAE pictures of them (see :func:`pictures`).
    """

    label: str
    trace: Trace
    states: list[torch.Tensor] = field(default_factory=list)
    previews: list[torch.Tensor] = field(default_factory=list)
    samples: torch.Tensor | None = None
    quality: dict = field(default_factory=dict)
    error: str = ""
    decoded: dict[tuple[str, int], torch.Tensor] = field(default_factory=dict, repr=False)

    @property
    def done(self) -> bool:
        return self.samples is not None or bool(self.error)

    def preview_index(self, k: int) -> int:
        """The newest estimate at step k: D(x_k; σ_k) once x_k was evaluated, else D(x_{k−1}; σ_{k−1})
        (the latest state while streaming; the final state, whose step to σ = 0 returns D(x_{N−1}))."""
        return min(k, len(self.previews) - 1)

    def preview(self, k: int) -> torch.Tensor:
        return self.previews[self.preview_index(k)] if self.previews else self.states[k]

    def sigma(self, k: int) -> float:
        """σ_k, the noise level of ``states[k]``."""
        steps = self.trace.steps
        return steps[k - 1]["sigma_next"] if k else steps[0]["sigma"] if steps else math.nan


@dataclass
class Session:
    """What one browser session holds between events (a ``gr.State``): never shared."""

    request: Request
    runs: dict[str, RunRecord] = field(default_factory=dict)

    def plan(self) -> list[tuple[str, dict]]:
        """The runs to make, (label, settings): the request, then its unguided twin when comparing."""
        request = self.request
        plan = [(GUIDED if request.has_guidance else "run", request.settings)]
        if request.compare and request.has_guidance:
            plan.append((UNGUIDED, request.unguided()))
        return plan

    @property
    def done(self) -> bool:
        """Every planned run has ended (or one stopped with an error, which ends the session)."""
        runs = self.runs.values()
        return any(run.error for run in runs) or (len(self.runs) == len(self.plan()) and all(r.done for r in runs))

    @property
    def steps_done(self) -> int:
        return max(min((len(run.states) for run in self.runs.values()), default=1) - 1, 0)


def _worker(model, settings: dict, events: queue.Queue) -> None:
    def on_step(record: dict, x_next: torch.Tensor, denoised: torch.Tensor) -> None:
        events.put(("step", dict(record), x_next.detach().cpu(), denoised.detach().cpu()))

    try:
        events.put(("done", *sample(model, on_step=on_step, **settings)))
    except ParameterError as err:
        events.put(("error", err))
    except Exception as err:  # noqa: BLE001 - the page reports it; the server keeps running
        events.put(("error", RuntimeError(f"the run failed: {type(err).__name__}: {err}")))


def stream_run(model, label: str, settings: dict) -> Iterator[RunRecord]:
    """Run :func:`stiffviz.sample` in a worker thread; yield the growing :class:`RunRecord`
    after each step and once more when the run has ended (samples and quality, or an error)."""
    events: queue.Queue = queue.Queue()
    threading.Thread(target=_worker, args=(model, settings, events), daemon=True).start()
    run: RunRecord | None = None
    while True:
        kind, *payload = events.get()
        if kind == "step":
            record, x_next, denoised = payload
            if run is None:
                run = RunRecord(label, Trace({"model": getattr(model, "name", ""), **settings}, []))
                dtype = x_next.dtype
                run.states.append(initial_noise(tuple(model.shape), settings["batch"], settings["seed"],
                                                record["sigma"], dtype, torch.device("cpu")))  # fmt: skip
            run.trace.steps.append(record)
            run.states.append(x_next)
            run.previews.append(denoised)
            yield run
            continue
        if kind == "error":
            run = run or RunRecord(label, Trace(dict(settings), []))
            run.error = str(payload[0])
            yield run
            return
        samples, trace = payload
        if run is None:  # a run that stopped before its first step
            run = RunRecord(label, trace, [samples.cpu()])
        run.trace, run.samples = trace, samples.detach().cpu()
        run.quality = quality_report(model, run.samples, settings.get("cls"), settings["seed"])
        yield run
        return


def stream_session(request: Request, model=None) -> Iterator[Session]:
    """Yield the :class:`Session` after every step of the guided run, then of its unguided
    twin when ``request.compare`` (and the request has guidance to switch off)."""
    model = model if model is not None else load_model(request.model)
    session = Session(request)
    for label, settings in session.plan():
        for run in stream_run(model, label, settings):
            session.runs[label] = run
            yield session
        if session.runs[label].error:
            return


def step_status(session: Session, k: int | None = None) -> str:
    """A Markdown line per run: where it is (step k of n, σ), and how it ended."""
    lines = []
    for run in session.runs.values():
        n = len(run.trace.steps)
        shown = n if k is None else min(k, n)
        sigma = run.trace.steps[shown - 1]["sigma_next"] if shown else (run.trace.sigmas or [math.nan])[0]
        line = f"**{run.label}**: step {shown} of {run.trace.config.get('steps', n)}, σ = {sigma:.4g}"
        if run.error:
            line += f" — stopped: {run.error}"
        elif run.trace.status == "diverged":
            line += f" — **diverged**: {run.trace.message}"
        elif run.done:
            line += f" — done, NFE {run.trace.summary.get('nfe')}, {run.trace.summary.get('wall_time_s', 0):.2f} s"
        lines.append(line)
    return "\n\n".join(lines)


def results_rows(session: Session) -> tuple[list[str], list[list]]:
    """The results table: per finished run, status, NFE, wall time and its quality measures."""
    finished = [run for run in session.runs.values() if run.samples is not None]
    measures = sorted({key for run in finished for key in run.quality})
    header = ["run", "status", "steps", "NFE", "wall time (s)", *measures]
    rows = [[run.label, run.trace.status, len(run.trace.steps), run.trace.summary.get("nfe"),
             round(run.trace.summary.get("wall_time_s", math.nan), 3),
             *(round(run.quality[m], 4) if m in run.quality else None for m in measures)]
            for run in finished]  # fmt: skip
    return header, rows


def pictures(run: RunRecord, model, k: int, vae: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_k, D(x_k; σ_k)) of ``run`` as images (B, C, H, W) in [−1, 1] for :func:`~stiffviz.app.render.image_grid`.

    Pixel models: the states themselves. Latent models (``model.latent``; the sampler and every
    diagnostic work on the latents): RGB pictures from ``model.decode``, the cheap linear
    projection (``fast=True``) while the run streams, the VAE (``vae``: the run's end and
    scrubbing) otherwise, each VAE picture decoded once per run and kept in ``run.decoded``.
    """
    if not getattr(model, "latent", False):
        return run.states[k], run.preview(k)
    preview = ("preview", run.preview_index(k)) if run.previews else ("state", k)
    return _decoded(run, model, ("state", k), vae), _decoded(run, model, preview, vae)


def _decoded(run: RunRecord, model, key: tuple[str, int], vae: bool) -> torch.Tensor:
    if vae and key in run.decoded:
        return run.decoded[key]
    kind, k = key
    latents = (run.states if kind == "state" else run.previews)[k]
    with torch.no_grad():
        images = model.decode(latents.to(getattr(model, "device", "cpu")), fast=not vae).detach().cpu()
    if vae:
        run.decoded[key] = images
    return images


def with_steps(run: RunRecord, k: int) -> RunRecord:
    """The run as it was after step k (for scrubbing; it shares the run's ``decoded`` cache)."""
    trace = replace(run.trace, steps=run.trace.steps[:k])
    return replace(run, trace=trace, states=run.states[: k + 1], previews=run.previews[: k + 1])
