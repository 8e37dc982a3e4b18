"""What the page shows of a session: the status, the particle views or image gallery, the
charts, the stability view and the results table, as the ``run``/``scrub``/``redraw`` outputs.

``frame(session, …)`` is one streamed frame of ``run`` (its outputs in ``OUTPUT_COUNT`` order:
status, view A, view B, gallery, the ``CHARTS``, stability, results, step slider, session).
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from .live import RunRecord, Session, pictures, results_rows, step_status, with_steps
from .plots import CHARTS, stability_figure, trace_figure
from .render import image_grid, particle_figure

X_AXES = {"step": "step", "σ (log)": "sigma"}
LATENT_NOTE = ("_Latent model: the sampler and every diagnostic work on its latents {shape}; the pictures are "
               "decoded (a linear preview while the run streams, the VAE at the end and when scrubbing)._")  # fmt: skip
OUTPUT_COUNT = 1 + 3 + len(CHARTS) + 1 + 1 + 1 + 1


def is_image(model) -> bool:
    return len(model.shape) == 3


def with_note(status: str, model) -> str:
    """The status, and for a latent model the line saying where the diagnostics live."""
    if not getattr(model, "latent", False):
        return status
    return f"{status}\n\n{LATENT_NOTE.format(shape='×'.join(map(str, model.shape)))}"


def views(session: Session, model, k: int | None, finished: dict | None = None) -> tuple[Any, Any, Any]:
    """(2-D view of the first run, 2-D view of the second, image gallery) at step k (None: latest).

    ``finished`` (label → figure) keeps the views of runs that have ended, drawn once.
    """
    runs = [run if k is None else with_steps(run, k) for run in session.runs.values() if run.states]
    if not runs:
        return gr.skip(), gr.skip(), gr.skip()
    if is_image(model):
        gallery = []
        for run in runs:
            i = len(run.states) - 1
            sigma = run.sigma(i)
            state, preview = pictures(run, model, i, vae=k is not None or run.done)
            estimate = run.sigma(run.preview_index(i))
            gallery += [(image_grid(state), f"{run.label} · x at step {i} (σ = {sigma:.3g})"),
                        (image_grid(preview), f"{run.label} · x0 preview D(x; σ = {estimate:.3g})")]  # fmt: skip
        return gr.update(visible=False), gr.update(visible=False), gr.update(value=gallery, visible=True)
    finished = {} if finished is None else finished
    figures = [finished[run.label] if run.label in finished else particles(run, model) for run in runs]
    if k is None:
        finished.update((run.label, figure) for run, figure in zip(runs, figures) if run.done)
    second = figures[1] if len(figures) > 1 else None
    return (gr.update(value=figures[0], visible=True), gr.update(value=second, visible=second is not None),
            gr.update(visible=False))  # fmt: skip


def particles(run: RunRecord, model):
    i = len(run.states) - 1
    sigma = run.sigma(i)
    figure = particle_figure(model, run.states, sigma, run.trace.config.get("cls"))
    figure.update_layout(title=f"{run.label}: particles at step {i}, σ = {sigma:.3g}")
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


def frame(session: Session, model, x_axis: str, finished: dict) -> tuple:
    """Every output of ``run`` for the session as it stands (the stability view once done)."""
    done = session.done
    slider = gr.update(maximum=max(session.steps_done, 1), value=session.steps_done, interactive=done)
    return (with_note(step_status(session), model), *views(session, model, None, finished), *charts(session, x_axis),
            stability(session) if done else gr.skip(), results(session), slider, session)  # fmt: skip


def message(text: str) -> tuple:
    """Outputs that only show ``text`` (a rejected request): everything else unchanged."""
    return (f"⚠️ {text}", *(gr.skip() for _ in range(OUTPUT_COUNT - 1)))
