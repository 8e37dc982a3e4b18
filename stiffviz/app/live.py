"""The live run behind the app, without Gradio: streaming the sampler, comparison runs.

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
from typing import Iterator

import torch

from ..errors import ParameterError
from ..models import list_models, load_model
from ..quality import quality_report
from ..sampler import initial_noise, sample
from ..trace import Trace
from .requests import Request

GUIDED, UNGUIDED = "guidance on", "guidance off"


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
