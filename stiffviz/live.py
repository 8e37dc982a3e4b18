"""The live run behind the app, without Gradio: request checking, streaming, comparison runs.

A request is the page's inputs by name (``INPUTS``). :func:`parse_request` checks every one
on the server (an API caller bypasses the page's sliders) against ``INPUT_RANGES`` and the
per-model :class:`ModelLimits`, then :class:`~stiffviz.config.SampleConfig` checks the rest;
each failure is a :class:`ParameterError` naming the parameter and its limit.

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
from typing import Any, Iterator, Mapping

import torch

from .errors import ParameterError
from .models import list_models, load_model
from .quality import quality_report
from .sampler import initial_noise, sample
from .schedules import SCHEDULES
from .solvers import SOLVERS, nfe_for
from .trace import Trace

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
DIFFUSERS_LIMITS = dict(max_steps=50, max_batch=4, default_batch=2)

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
INPUTS = ("model", "cls", "cfg", "autoguidance", "solver", "steps", "schedule", "sigma_min", "sigma_max", "rho",
          "erk_on", "erk_guid", "erk_con", "stein_on", "stein_probes", "stein_gamma_min", "stein_gamma_max",
          "eig", "lte_ref", "lipschitz", "seed", "batch", "compare")  # fmt: skip
DEFAULTS: dict[str, Any] = dict(
    model="tree", cls=NO_CLASS, cfg=1.0, autoguidance=1.0, solver="heun", steps=6, schedule="karras",
    sigma_min=0.002, sigma_max=80.0, rho=7.0, erk_on=True, erk_guid=1.0, erk_con=0.5, stein_on=False,
    stein_probes=5, stein_gamma_min=1.0, stein_gamma_max=3.0, eig=True, lte_ref=False, lipschitz=False,
    seed=0, batch=1024, compare=True,
)  # fmt: skip


def available_models(extra: str | None = None) -> list[str]:
    """The app's models: ``list_models()`` and the server's ``diffusers:PATH`` model, if any."""
    return list_models() + ([extra] if extra else [])


def limits_for(model: str) -> ModelLimits:
    """The app's step and batch limits for ``model``."""
    limits = DIFFUSERS_LIMITS if model.startswith("diffusers:") else MODEL_LIMITS.get(model, TOY_LIMITS)
    return ModelLimits(model, **limits)


def limits_table(models: list[str]) -> str:
    """The per-model limits as a Markdown table (shown in the page)."""
    rows = [f"| {m} | {limits_for(m).max_steps} | {limits_for(m).max_batch} |" for m in models]
    return "\n".join(["| model | max steps | max batch |", "|---|---|---|", *rows])


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


def parse_request(values: Mapping[str, Any], models: list[str]) -> Request:
    """Check the page's inputs (by name, see ``INPUTS``) and turn them into a :class:`Request`."""
    missing = [name for name in INPUTS if name not in values]
    if missing:
        raise ParameterError(missing[0], "is missing from the request")
    model = _choice("model", values["model"], models)
    numbers = {name: _number(name, values[name], limits_for(model)) for name in INPUT_RANGES}
    _choice("solver", values["solver"], list(SOLVERS))
    _choice("schedule", values["schedule"], list(SCHEDULES))
    cls = values["cls"]
    settings = dict(
        solver=values["solver"], schedule=values["schedule"], cls=None if cls in (None, "", NO_CLASS) else cls,
        erk_guid=numbers["erk_guid"] if values["erk_on"] else None, stein=bool(values["stein_on"]),
        eig=bool(values["eig"]), lte_ref=bool(values["lte_ref"]), lipschitz=bool(values["lipschitz"]),
        **{name: numbers[name] for name in INPUT_RANGES if name != "erk_guid"},
    )  # fmt: skip
    return Request(model, settings, bool(values["compare"]))


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
    D(x_k; σ_k); the final state has no evaluation of its own, so its preview is itself.
    """

    label: str
    trace: Trace
    states: list[torch.Tensor] = field(default_factory=list)
    previews: list[torch.Tensor] = field(default_factory=list)
    samples: torch.Tensor | None = None
    quality: dict = field(default_factory=dict)
    error: str = ""

    @property
    def done(self) -> bool:
        return self.samples is not None or bool(self.error)

    def preview(self, k: int) -> torch.Tensor:
        return self.previews[k] if k < len(self.previews) else self.states[k]

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


def with_steps(run: RunRecord, k: int) -> RunRecord:
    """The run as it was after step k (for scrubbing)."""
    trace = replace(run.trace, steps=run.trace.steps[:k])
    return replace(run, trace=trace, states=run.states[: k + 1], previews=run.previews[: k + 1])
