"""What the page shows of a session: the status, the particle views or image gallery, the
charts, the stability view and the results table, as the ``run``/``scrub``/``redraw`` outputs.

``frame(session, …)`` is one streamed frame of ``run`` (its outputs in ``OUTPUT_COUNT`` order:
status, view A, view B, gallery, the ``CHARTS``, stability, results, step slider, session).

Light frames: a frame carries only what changed since the page's last one (``shown`` keeps a
key of each output's content; an unchanged output is ``gr.skip()``, so a finished run's view
and the stability view are sent once). The views and charts of a run of n steps are redrawn
at most ``MAX_REDRAWS`` times while it streams (every ⌈n / MAX_REDRAWS⌉ steps from step 1)
and always when it ends, so the last frame is complete and exact. A particle view draws the
first ``MAX_PARTICLES`` particles and ``MAX_PATHS`` paths of the batch (a uniform subsample:
the draws are independent); every chart's statistic is over the whole batch. A display option
(``COLOURS``) colours a 2-D view's particles by their own ρ̂ or stiffness index at the shown step.
"""

from __future__ import annotations

import math
from typing import Any

import gradio as gr
import numpy as np

from .live import RunRecord, Session, pictures, results_rows, step_status, with_steps
from .plots import CHARTS, stability_figure, trace_figure
from .render import Colouring, image_grid, particle_figure

X_AXES = {"step": "step", "σ (log)": "sigma"}
# The particle views' colours: red, or each particle's own value of a trace field at the shown step
# (log₁₀, the stiffness index on a scale diverging at 10⁰ = 1: the stability boundary).
COLOURS = {"red": None, "ρ̂ (per sample)": ("stiffness", "log₁₀ ρ̂", None),
           "stiffness index": ("stiffness_index", "log₁₀ index", 0.0)}  # fmt: skip
LATENT_NOTE = ("_Latent model: the sampler and every diagnostic work on its latents {shape}; the pictures are "
               "decoded (a linear preview while the run streams, the VAE at the end and when scrubbing)._")  # fmt: skip
OUTPUT_COUNT = 1 + 3 + len(CHARTS) + 1 + 1 + 1 + 1
MAX_PARTICLES = 1024  # particles drawn in a view (of a batch of up to 4,096)
MAX_PATHS = 64  # particle paths drawn in a view
MAX_REDRAWS = 25  # streamed redraws of the views and charts per run, besides its last frame


def is_image(model) -> bool:
    return len(model.shape) == 3


def with_note(status: str, model) -> str:
    """The status, and for a latent model the line saying where the diagnostics live."""
    if not getattr(model, "latent", False):
        return status
    return f"{status}\n\n{LATENT_NOTE.format(shape='×'.join(map(str, model.shape)))}"


def views(session: Session, model, k: int, colour: str = "red") -> tuple[Any, Any, Any]:
    """(2-D view of the first run, 2-D view of the second, image gallery) at step k (scrubbing)."""
    runs = [with_steps(run, k) for run in session.runs.values() if run.states]
    if not runs:
        return gr.skip(), gr.skip(), gr.skip()
    if is_image(model):
        return gr.update(visible=False), gr.update(visible=False), gallery(runs, model, vae=True)
    second = particles(runs[1], model, colour) if len(runs) > 1 else None
    return (gr.update(value=particles(runs[0], model, colour), visible=True),
            gr.update(value=second, visible=second is not None), gr.update(visible=False))  # fmt: skip


def gallery(runs: list[RunRecord], model, vae: bool) -> Any:
    """The image gallery: each run's latest state and x0 preview (a latent model's decoded by the VAE
    when ``vae`` or the run is done, by its fast projection otherwise)."""
    pictures_shown = []
    for run in runs:
        i = len(run.states) - 1
        state, preview = pictures(run, model, i, vae=vae or run.done)
        estimate = run.sigma(run.preview_index(i))
        pictures_shown += [(image_grid(state), f"{run.label} · x at step {i} (σ = {run.sigma(i):.3g})"),
                           (image_grid(preview), f"{run.label} · x0 preview D(x; σ = {estimate:.3g})")]  # fmt: skip
    return gr.update(value=pictures_shown, visible=True)


def colouring(run: RunRecord, colour: str) -> tuple[Colouring | None, str]:
    """The particles' colours for option ``colour`` and a note for the view's title.

    The state x_k shown is coloured by the record of step k − 1, the step that reached it (while
    a run streams, step k's own record does not exist yet); x_0, or a step without the field (the
    first Heun step has no secant pair), gives no colouring.
    """
    if COLOURS[colour] is None:
        return None, ""
    field, title, midpoint = COLOURS[colour]
    j = len(run.states) - 2
    values = run.trace.steps[j].get(field) if 0 <= j < len(run.trace.steps) else None
    if values is None:
        return None, f"; no {colour} recorded for this state"
    values = np.asarray(values, dtype=np.float64)[: len(run.states[-1])]
    logs, positive = np.full_like(values, np.nan), values > 0  # NaN (a diverged sample) is not > 0
    logs[positive] = np.log10(values[positive])
    return Colouring(title, logs, midpoint), f"; colour: {colour} of step {j}, which reached it"


def particles(run: RunRecord, model, colour: str = "red"):
    i = len(run.states) - 1
    sigma = run.sigma(i)
    colours, colour_note = colouring(run, colour)
    figure = particle_figure(model, run.states, sigma, run.trace.config.get("cls"), max_paths=MAX_PATHS,
                             max_particles=MAX_PARTICLES, colouring=colours)  # fmt: skip
    shown, batch = min(len(run.states[-1]), MAX_PARTICLES), run.batch
    note = f" ({shown:,} of {batch:,} shown)" if shown < batch else ""
    figure.update_layout(title=f"{run.label}: particles at step {i}, σ = {sigma:.3g}{note}{colour_note}")
    return figure


def charts(session: Session, x_axis: str) -> list:
    runs = {run.label: run.trace for run in session.runs.values() if run.trace.steps}
    return [trace_figure(chart, runs, X_AXES.get(x_axis, "step")) for chart in CHARTS]


def stability(session: Session):
    runs = {run.label: run.trace for run in session.runs.values() if run.trace.steps}
    return stability_figure(session.request.settings["solver"], runs)


def results(session: Session):
    header, rows = results_rows(session)
    return gr.update(value=rows, headers=header)


def redraw_due(session: Session) -> bool:
    """Whether the streaming run's views and charts are redrawn in this frame: at steps 1,
    1 + s, 1 + 2s, … (s = ⌈steps / MAX_REDRAWS⌉) and when a run has ended."""
    newest = list(session.runs.values())[-1]
    stride = math.ceil(max(int(session.request.settings.get("steps", 1)), 1) / MAX_REDRAWS)
    return newest.done or (len(newest.trace.steps) - 1) % stride == 0


def _changed(shown: dict, output: str, key: Any) -> bool:
    """True (and noted in ``shown``) when ``output``'s content ``key`` differs from what the page has."""
    if shown.get(output, ...) == key:
        return False
    shown[output] = key
    return True


def _streamed_views(session: Session, model, shown: dict, due: bool, colour: str) -> tuple[Any, Any, Any]:
    runs = [run for run in session.runs.values() if run.states]
    if not runs:
        return gr.skip(), gr.skip(), gr.skip()
    skip = gr.skip()
    if is_image(model):
        hidden = _changed(shown, "views", "hidden")
        key = tuple((run.label, len(run.states), run.done) for run in runs)
        fresh = (due or all(run.done for run in runs)) and _changed(shown, "gallery", key)
        return (gr.update(visible=False) if hidden else skip, gr.update(visible=False) if hidden else skip,
                gallery(runs, model, vae=False) if fresh else skip)  # fmt: skip
    out = []
    for slot, run in zip(("view-a", "view-b"), runs):
        fresh = (due or run.done) and _changed(shown, slot, (run.label, len(run.states), colour))
        out.append(gr.update(value=particles(run, model, colour), visible=True) if fresh else skip)
    if len(runs) == 1:
        out.append(gr.update(value=None, visible=False) if _changed(shown, "view-b", None) else skip)
    out.append(gr.update(visible=False) if _changed(shown, "gallery", "hidden") else skip)
    return tuple(out)


def frame(session: Session, model, x_axis: str, shown: dict, colour: str = "red") -> tuple:
    """One streamed frame of ``run``: the outputs whose content differs from what ``shown`` says
    the page has (it starts empty for each run and is updated here), ``gr.skip()`` for the rest.

    Views and charts are redrawn when :func:`redraw_due`; the stability view once every run is done.
    """
    done, due = session.done, redraw_due(session)
    status = with_note(step_status(session), model)
    header, rows = results_rows(session)
    slider = dict(maximum=max(session.steps_done, 1), value=session.steps_done, interactive=done)
    chart_key = (x_axis, tuple((run.label, len(run.trace.steps)) for run in session.runs.values()))
    fresh_charts = (due or done) and _changed(shown, "charts", chart_key)
    skip = gr.skip()
    return (status if _changed(shown, "status", status) else skip,
            *_streamed_views(session, model, shown, due, colour),
            *(charts(session, x_axis) if fresh_charts else [skip] * len(CHARTS)),
            stability(session) if done and _changed(shown, "stability", True) else skip,
            gr.update(value=rows, headers=header) if _changed(shown, "results", repr((header, rows))) else skip,
            gr.update(**slider) if _changed(shown, "slider", repr(slider)) else skip,
            session)  # fmt: skip


def message(text: str) -> tuple:
    """Outputs that only show ``text`` (a rejected request): everything else unchanged."""
    return (f"⚠️ {text}", *(gr.skip() for _ in range(OUTPUT_COUNT - 1)))
