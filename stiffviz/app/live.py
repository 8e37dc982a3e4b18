"""The live run behind the app, without Gradio: streaming the sampler, comparison runs, stopping.

:func:`stream_session` runs the sampler (the library's :func:`stiffviz.sample`) in a worker
thread and yields a :class:`Session` after every step: the trace so far and the states
x_0 … x_i with the denoised estimates D(x_i; σ_i) (the x0 preview), on the CPU. With
``compare`` it then runs the same seed again with every guidance off (cfg = autoguidance
= 1, no ERK-Guid, no SteinDiff), so both runs can be overlaid step by step.

**What a run keeps.** The trace keeps every per-sample statistic of the whole batch; the states
and previews are kept for the first :func:`kept` samples only (at most ``KEEP_SAMPLES``, and at
most ``KEEP_ELEMENTS`` state elements each), which is what the views draw and scrubbing shows.
The sampler's events (:func:`produce`) carry only that: they are what crosses ZeroGPU's process
boundary (:mod:`stiffviz.app.gpu`).

**Stopping.** Each run has a ``threading.Event``; the sampler's step callback raises
:class:`RunStopped` once it is set, so the run ends at its next step. :data:`STOPS` holds the
running ones by browser session: the Stop button sets its session's, a new run of the same
session sets the previous one's, and closing :func:`stream_session` (Gradio does on a closed
connection or a cancel) sets its own.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import queue
import threading
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator

import torch

from ..errors import ParameterError
from ..models import list_models, load_model
from ..quality import not_available, quality_report
from ..sampler import initial_noise, sample
from ..trace import Trace
from .requests import Request

KEEP_SAMPLES = 1024  # samples whose states a run keeps per step (the views draw at most this many)
KEEP_ELEMENTS = 2**16  # state elements kept per step and kind (x_k, D(x_k)): 256 kB at float32
KEEP_DECODED = 32  # VAE pictures a run keeps decoded (a latent model's scrubbing), oldest dropped first
MMAP_THRESHOLD = 16 * 2**20  # bytes: larger blocks come straight from the OS and go back to it when freed
STOPPED = "stopped before the end (Stop was pressed, the page closed, or a newer run of this session began)"
GUIDED, UNGUIDED = "guidance on", "guidance off"


@dataclass
class RunRecord:
    """One run as the app keeps it: its trace (growing while it runs) and states on the CPU.

    ``states[k]`` is x_k (k = 0 … steps done) and ``previews[k]`` the denoised estimate
    D(x_k; σ_k), both of the first :func:`kept` samples of the batch (``batch`` samples were run;
    ``samples`` holds all of them). ``decoded`` caches a latent model's VAE pictures of them (see
    :func:`pictures`), at most ``KEEP_DECODED``.
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

    @property
    def batch(self) -> int:
        """The samples the run ran (its states keep the first :func:`kept` of them)."""
        return int(self.trace.config.get("batch", len(self.states[-1]) if self.states else 0))

    def preview_index(self, k: int) -> int:
        """The newest estimate at step k: D(x_k; σ_k) once x_k was evaluated, else D(x_{k−1}; σ_{k−1})
        (the latest state while streaming; the final state, whose step to σ = 0 returns D(x_{N−1}))."""
        return min(k, len(self.previews) - 1)

    def preview(self, k: int) -> torch.Tensor:
        return self.previews[self.preview_index(k)] if self.previews else self.states[k]

    @property
    def last_step(self) -> int:
        """k of the newest state x_k kept: the steps done, one fewer for a diverged run (its
        failing step's non-finite state is not kept)."""
        return max(len(self.states) - 1, 0)

    def sigma(self, k: int) -> float:
        """σ_k, the noise level of ``states[k]`` (a rejected adaptive step leaves the state at its σ)."""
        steps = self.trace.steps
        if not k:
            return steps[0]["sigma"] if steps else math.nan
        return steps[k - 1]["sigma_next" if steps[k - 1].get("accepted", True) else "sigma"]


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

    def kept_bytes(self) -> int:
        """Bytes of the tensors and arrays the session keeps: states, previews, samples, trace records."""
        total = 0
        for run in self.runs.values():
            tensors = [*run.states, *run.previews, *([run.samples] if run.samples is not None else [])]
            total += sum(t.nelement() * t.element_size() for t in tensors)
            total += sum(v.nbytes for record in run.trace.steps for v in record.values() if hasattr(v, "nbytes"))
        return total

    @property
    def steps_done(self) -> int:
        """The last step of the longest run: the step slider's end (scrubbing to k shows each run
        at min(k, its own last step), so a run that diverged early does not cut the others short)."""
        return max((run.last_step for run in self.runs.values()), default=0)


class RunStopped(Exception):
    """Raised in the sampler's step callback once the run's stop event is set: the run ends there."""


def kept(shape: tuple[int, ...], batch: int) -> int:
    """How many samples' states a run keeps per step (the first ones of the batch, i.i.d. like the rest):
    min(batch, KEEP_SAMPLES, ⌊KEEP_ELEMENTS / prod(shape)⌋), at least 1. Every per-sample statistic
    of the trace is still computed on the whole batch by the sampler."""
    return max(1, min(batch, KEEP_SAMPLES, KEEP_ELEMENTS // max(math.prod(shape), 1)))


def _keep(x: torch.Tensor, n: int) -> torch.Tensor:
    """The first n samples of x on the CPU, copied (a view would keep the whole batch alive)."""
    return x[:n].detach().cpu().clone()


def produce(request: Request, model, stop: threading.Event, put: Callable[[tuple], None]) -> None:
    """Run the session's runs (:meth:`Session.plan`) in this thread, handing ``put`` compact events:

    * ``("step", label, record, state, preview)``: the sampler's trace record of the step (its
      per-sample statistics on the whole batch) and x_{i+1}, D(x_i; σ_i) of the first :func:`kept` samples;
    * ``("end", label, samples, trace, quality)``: every final sample, the trace without the
      records already sent (a diverged run's failing step is only here), the quality measures;
    * ``("error", label, message)``: the run stopped (``stop`` set, a bad request, a failure); no run follows.

    ``stop`` is checked at every step: once set, the run ends at its next step.
    """
    for label, settings in Session(request).plan():
        n = kept(tuple(model.shape), settings["batch"])
        sent = 0

        def on_step(record: dict, x_next: torch.Tensor, denoised: torch.Tensor) -> None:
            nonlocal sent
            if stop.is_set():
                raise RunStopped
            put(("step", label, dict(record), _keep(x_next, n), _keep(denoised, n)))
            sent += 1

        try:
            samples, trace = sample(model, on_step=on_step, **settings)
            quality = quality_report(model, samples.detach().cpu(), settings.get("cls"), settings["seed"]) \
                if trace.status == "ok" else {}  # a diverged run's last finite state is no sample to measure
        except RunStopped:
            return put(("error", label, STOPPED))
        except ParameterError as err:
            return put(("error", label, str(err)))
        except Exception as err:  # noqa: BLE001 - the page reports it; the server keeps running
            return put(("error", label, f"the run failed: {type(err).__name__}: {err}"))
        put(("end", label, samples.detach().cpu(), replace(trace, steps=trace.steps[sent:]), quality))


def session_events(request: Request, model) -> Iterator[tuple]:
    """:func:`produce`'s events as a generator (what ZeroGPU's worker process runs and pickles):
    the runs go on in a thread; closing the generator stops them at their next step."""
    stop, events = threading.Event(), queue.Queue()
    threading.Thread(target=_feed, args=(lambda: produce(request, model, stop, events.put), events.put),
                     daemon=True, name="stiffviz-sampler").start()  # fmt: skip
    try:
        while (event := events.get()) is not None:
            yield event
    finally:
        stop.set()


def _feed(work: Callable[[], None], put: Callable[[Any], None]) -> None:
    try:
        work()
    finally:
        put(None)


def _pump(events: Iterator[tuple], stop: threading.Event, put: Callable[[tuple], None]) -> None:
    """Hand on the events of ``events`` (e.g. ZeroGPU's worker) until they end or ``stop`` is set,
    then close it: ZeroGPU then closes :func:`session_events` in its process, stopping the sampler."""
    try:
        for event in events:
            put(event)
            if stop.is_set():
                break
    except Exception as err:  # noqa: BLE001 - e.g. ZeroGPU's own errors: the page reports them
        put(("error", None, f"the run failed: {type(err).__name__}: {err}"))
    finally:
        getattr(events, "close", lambda: None)()


def stream_session(request: Request, model=None, stop: threading.Event | None = None,
                   events: Iterator[tuple] | None = None) -> Iterator[Session]:  # fmt: skip
    """Yield the :class:`Session` after every step of the guided run, then of its unguided
    twin when ``request.compare`` (and the request has guidance to switch off).

    The sampler runs in a thread (:func:`produce`), or ``events`` supplies its events (ZeroGPU:
    :func:`stiffviz.app.gpu.events`). ``stop`` (set by the Stop button, a newer run of the same
    session, or closing this generator) ends the run at its next step.
    """
    model = model if model is not None else load_model(request.model)
    stop = stop if stop is not None else threading.Event()
    inbox: queue.Queue = queue.Queue()
    work = (lambda: produce(request, model, stop, inbox.put)) if events is None else \
        (lambda: _pump(events, stop, inbox.put))  # fmt: skip
    threading.Thread(target=_feed, args=(work, inbox.put), daemon=True, name="stiffviz-run").start()
    session = Session(request)
    try:
        while (event := inbox.get()) is not None:
            kind = event[0]
            run = _record(session, event[1], model)
            if kind == "step":
                record, state, preview = event[2:]
                if not run.states:  # x_0, drawn again here as the sampler drew it (the seed's noise at σ_0)
                    settings = run.trace.config
                    noise = initial_noise(tuple(model.shape), settings["batch"], settings["seed"], record["sigma"],
                                          state.dtype, torch.device("cpu"))  # fmt: skip
                    run.states.append(_keep(noise, len(state)))
                run.trace.steps.append(record)
                run.states.append(state)
                run.previews.append(preview)
            elif kind == "end":
                samples, trace, quality = event[2:]
                run.trace = replace(trace, steps=run.trace.steps + trace.steps)
                run.samples, run.quality = samples, quality
                if not run.states:  # a run that stopped before its first step
                    run.states.append(_keep(samples, kept(tuple(model.shape), len(samples))))
            else:
                run.error = event[2]
            yield session
            if kind == "error":
                return
    finally:
        stop.set()


def _record(session: Session, label: str | None, model) -> RunRecord:
    """The session's run ``label`` (None: the newest), created with its initial state x_0 (kept samples)."""
    plan = dict(session.plan())
    label = label or (list(session.runs) or list(plan))[-1]
    if label not in session.runs:
        settings = plan[label]
        session.runs[label] = RunRecord(label, Trace({"model": getattr(model, "name", ""), **settings}, []))
    return session.runs[label]


class Stops:
    """The stop events of the running runs by browser session (``gr.Request.session_hash``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[str, threading.Event] = {}

    def begin(self, key: str | None) -> threading.Event:
        """A new run's stop event; a run of the same session still going is stopped (None: no session)."""
        stop = threading.Event()
        if key is not None:
            with self._lock:
                previous = self._running.get(key)
                self._running[key] = stop
            if previous is not None:
                previous.set()
        return stop

    def end(self, key: str | None, stop: threading.Event) -> None:
        """The run of ``stop`` has ended (or its page went): set it, forget it."""
        stop.set()
        with self._lock:
            if key is not None and self._running.get(key) is stop:
                del self._running[key]

    def stop(self, key: str | None) -> bool:
        """Stop the session's run (the Stop button); whether one was running."""
        with self._lock:
            stop = self._running.get(key) if key is not None else None
        if stop is not None:
            stop.set()
        return stop is not None

    def __len__(self) -> int:
        with self._lock:
            return len(self._running)


STOPS = Stops()


def _libc():
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


def bound_allocator() -> bool:
    """Fix glibc's mmap threshold at ``MMAP_THRESHOLD`` (its default rises to 32 MB after large
    frees, so a run's large temporaries then come from the heap and, fragmented by the small blocks
    a run keeps, stay in RSS): at the top, a 200-step run at 4,096 samples peaked at 5.4 GB without
    this, ~0.8 GB with it. Whether it applied (glibc only)."""
    libc = _libc()
    return bool(libc is not None and libc.mallopt(-3, MMAP_THRESHOLD))  # -3: M_MMAP_THRESHOLD


def release_memory() -> bool:
    """Give the allocator's free pages back to the OS (glibc ``malloc_trim``), after a run ends."""
    libc = _libc()
    return bool(libc is not None and libc.malloc_trim(0))


def step_status(session: Session, k: int | None = None) -> str:
    """A Markdown line per run: where it is (step k of n, σ_k: the state x_k shown, at most the
    run's last kept state), and how it ended. A diverged run's last state is x_i of the failing
    step i, so its line says "step i" as the trace's message does."""
    lines = []
    for run in session.runs.values():
        shown = run.last_step if k is None else min(k, run.last_step)
        sigma = run.sigma(shown) if run.trace.steps else (run.trace.sigmas or [math.nan])[0]
        line = f"**{run.label}**: step {shown} of {run.trace.config.get('steps', len(run.trace.steps))}, σ = {sigma:.4g}"
        if run.error:
            line += f" — stopped: {run.error}"
        elif run.trace.status == "diverged":
            line += f" — **diverged**: {run.trace.message}"
        elif run.done:
            line += f" — done, NFE {run.trace.summary.get('nfe')}, {run.trace.summary.get('wall_time_s', 0):.2f} s"
        lines.append(line)
    return "\n\n".join(lines)


NOT_AVAILABLE = "n/a"
DIVERGED_NOTE = "the run diverged: quality is not measured on its last finite state"


def quality_note(run: RunRecord) -> str:
    """Why some of the run's quality measures are not available ('' when all are)."""
    if run.trace.status == "diverged":
        return DIVERGED_NOTE
    return not_available(run.quality, len(run.samples)) if run.samples is not None else ""


def results_rows(session: Session) -> tuple[list[str], list[list]]:
    """The results table: per finished run, status, NFE, wall time and its quality measures;
    ``NOT_AVAILABLE`` for a measure the run cannot give, with a note column saying why."""
    finished = [run for run in session.runs.values() if run.samples is not None]
    measures = sorted({key for run in finished for key in run.quality})
    notes = [quality_note(run) for run in finished]
    header = ["run", "status", "steps", "NFE", "wall time (s)", *measures, *(["note"] if any(notes) else [])]
    rows = [[run.label, run.trace.status, run.last_step, run.trace.summary.get("nfe"),
             round(run.trace.summary.get("wall_time_s", math.nan), 3),
             *(NOT_AVAILABLE if run.quality.get(m) is None else round(run.quality[m], 4) for m in measures),
             *([note] if any(notes) else [])]
            for run, note in zip(finished, notes)]  # fmt: skip
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
        while len(run.decoded) > KEEP_DECODED:
            del run.decoded[next(iter(run.decoded))]
    return images


def with_steps(run: RunRecord, k: int) -> RunRecord:
    """The run as it was after step k (for scrubbing; it shares the run's ``decoded`` cache)."""
    trace = replace(run.trace, steps=run.trace.steps[:k])
    return replace(run, trace=trace, states=run.states[: k + 1], previews=run.previews[: k + 1])
