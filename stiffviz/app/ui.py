"""The Gradio app: controls, the live run, charts, comparison, stability view, export, Learn tab.

Layout and wiring only. Every number comes from the library (:mod:`stiffviz.app.live` runs and
checks requests, :mod:`stiffviz.app.plots` and :mod:`stiffviz.app.render` draw); the event handlers
are plain functions of the inputs (``run``, ``scrub``, ``redraw``, ``export``,
``on_model_change``, ``prescribed``), testable without a browser. ``run`` is a generator: it yields the page's
outputs after every sampler step, so the charts and the picture grow while the run goes on.

The server's own models (``build_app("diffusers:FOLDER", …)``, from ``app.py --model``) are
loaded once when the page is built; the page offers them by name and never takes a path.
Text-conditioned models get a prompt box; latent models show decoded pictures (a linear
preview while streaming, the VAE at the end and when scrubbing, see :func:`stiffviz.app.live.pictures`).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Iterator

import gradio as gr
import torch

from ..config import MODEL_SCHEDULE
from ..errors import ParameterError
from ..models import list_models, load_model
from ..prescribe import DEFAULT_TARGET, RULES, check_matches, prescribe
from ..solvers import SOLVERS
from . import api, contractivity, frames, sessions
from .cost import admit, cost_note, timing_for
from .frames import COLOURS, OUTPUT_COUNT, X_AXES
from .learn import build_learn_tab
from . import gpu
from .live import STOPS, Session, bound_allocator, release_memory, step_status, stream_session
from .plots import CHARTS
from .presets import FINDINGS, PRESETS
from .report import write_exports
from .stiffness_view import LOG_SIGMA, stiffness_view
from .sweep_tab import build_sweep_tab, sweep_folder
from .userdata import UserData, block as user_data_block, lookup, models_for
from .requests import (
    DEFAULTS, INPUT_RANGES, INPUTS, MAX_GRID_TEXT, MAX_PROMPT, NO_CLASS, ModelLimits, available_models, choice, limits_for,
    limits_table, nfe_text, number, parse_request, paths_for, schedules_for, w_con_for,
)  # fmt: skip

CONCURRENCY_LIMIT = 2  # runs at once per event; more requests wait in the queue
QUEUE_SIZE = 32
TEXT_CFG = 7.5  # the CFG weight a text-conditioned model starts with (diffusers' usual guidance scale)
INTRO = """# stiffviz: a stiffness microscope for diffusion sampling
Pick a model and a solver, switch guidance on or off and press **Run**. The charts show, at every
step, how stiff the probability-flow ODE is (ρ̂, and z = |h|ρ̂ against the solver's stability
boundary), how large the local truncation error is, whether it points along the Jacobian's
dominant eigenvector, and what SteinDiff's coefficient did. With *compare* on, the same seed is
run again with every guidance off and both runs are overlaid (solid: on, dashed: off)."""


def device() -> torch.device:
    """CUDA when present (a GPU or ZeroGPU Space), the CPU otherwise."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@functools.lru_cache(maxsize=None)
def _model(name: str):
    """The model ``name`` on :func:`device`, loaded once per server (models keep no run state)."""
    return load_model(name, device=device())


def _limits(name: str) -> ModelLimits:
    """``name``'s limits; the size rule reads the server's loaded model (built-ins have their own)."""
    return limits_for(name, None if name in list_models() else _model(name))


# ---------------------------------------------------------------- event handlers
def run(model: str, prompt: str, negative_prompt: str, cls: str, cfg: float, autoguidance: float, solver: str,
        steps: int, schedule: str, sigma_min: float, sigma_max: float, rho: float, erk_on: bool, erk_guid: float,
        erk_con: float, stein_on: bool, stein_probes: int, stein_gamma_min: float, stein_gamma_max: float,
        stein_sigma_max: float, eig: bool, lte_ref: bool, lipschitz: bool, seed: int, batch: int, compare: bool,
        path: str, denoise_to_zero: bool, churn: float, s_tmin: float, s_tmax: float, s_noise: float, adaptive: bool,
        rtol: float, atol: float, sigmas: str,
        x_axis: str, colour: str = "red", user: UserData | None = None, gr_request: gr.Request | None = None, *,
        models: list[str] | None = None) -> Iterator[tuple]:  # fmt: skip
    """Sample with the settings and stream the run: a frame after every step (status, views, charts, results).

    The parameters are the page's inputs (``INPUTS``, then the chart's x axis and the particles'
    colour, both display options), each checked on
    the server: a rejected value yields one message naming the parameter and its limit; a diverged
    run shows its steps up to the divergence and says where and why it stopped. ``user`` (a hidden
    ``gr.State``) is the session's own data: its model is offered as ``USER_DATA`` in this session only.

    The run stops at its next step when the session presses Stop or starts another run, or when
    Gradio closes this generator (the page went, or a cancel); the sampling runs under ZeroGPU
    when there is one (:mod:`stiffviz.app.gpu`), the figures here.
    """
    values = {name: value for name, value in locals().items() if name in INPUTS}
    key = getattr(gr_request, "session_hash", None)
    stop = STOPS.begin(key)
    try:
        choice("x_axis", x_axis, list(X_AXES))
        choice("colour", colour, list(COLOURS))
        find = lookup(user, _model)
        request = parse_request(values, models_for(models or available_models(), user), find)
        model = find(request.model)
        admit(request, model)  # refused over the server's budget per run (cost.py)
        shown: dict = {}  # what the page has of this run (frames.frame sends only changes)
        server = request.model in (models or available_models())  # else the session's own, small: it crosses
        events = gpu.events(request, request.model if server else model, _model)
        for session in stream_session(request, model, stop, events):
            yield frames.frame(session, model, x_axis, shown, colour)
    except ParameterError as err:
        yield frames.message(str(err))
    finally:
        STOPS.end(key, stop)
        release_memory()


RUN_SETTINGS = ("model", "solver", "path", "denoise_to_zero")  # the page's, compared with the recorded run's


def prescribed(session: Session | None, rule: Any, target: Any, model: Any, solver: Any, path: Any = "edm",
               denoise_to_zero: Any = True) -> tuple:  # fmt: skip
    """The rerun button's first half: the σ grid :func:`stiffviz.prescribe.prescribe` proposes (``rule``
    "lte" or "stability" with ``target``) from the session's finished run (the request's own, not its
    unguided twin), as the σ box's text, and the steps slider at its number of levels. The page's model,
    solver, path and end convention must be the run's (a grid is prescribed for them); every refusal is a
    :class:`gr.Error` naming the parameter."""
    if session is None or not session.done:
        raise gr.Error(f"prescribe: {NO_RUN_YET} there is no recorded run to prescribe from yet.", print_exception=False)
    record = session.runs.get(session.plan()[0][0])
    if record is None or record.samples is None:
        raise gr.Error("prescribe: the last run did not finish, so it cannot prescribe: " + step_status(session),
                       print_exception=False)  # fmt: skip
    page = dict(zip(RUN_SETTINGS, (model, solver, path, denoise_to_zero)))
    if page["model"] != session.request.model:
        raise gr.Error(f"model: the last run sampled {session.request.model!r}, the page now says {page['model']!r}; "
                       "run the new model first, then prescribe from it", print_exception=False)  # fmt: skip
    _checked(lambda: check_matches(record.trace, "prescribe", **{k: page[k] for k in RUN_SETTINGS[1:]}))
    result = _checked(prescribe, record.trace, rule, target, "prescribe")
    return ", ".join(repr(s) for s in result.sigmas), len(result.sigmas)


def stop_run(gr_request: gr.Request | None = None) -> None:
    """The Stop button: the session's run ends at its next step (its page keeps what it has)."""
    STOPS.stop(getattr(gr_request, "session_hash", None))


NO_RUN_YET = "run the sampler first (the Run button, or the /run endpoint in the same session):"


def _checked(check, *args):
    """``check(*args)`` with its :class:`ParameterError` raised as a :class:`gr.Error` (the same message)."""
    try:
        return check(*args)
    except ParameterError as err:
        raise gr.Error(str(err), print_exception=False) from None


def scrub(session: Session | None, step: Any, user: UserData | None = None, colour: str = "red") -> tuple:
    """The step slider: the state and x0 preview at step k of the recorded runs (no resampling;
    a latent model's VAE pictures are decoded once and kept in the session, which is returned
    so the cache survives a ZeroGPU worker), the particles coloured as ``colour`` says. Before a
    finished run, or a step beyond the recorded ones, a :class:`gr.Error` names the step."""
    _checked(choice, "colour", colour, list(COLOURS))
    if session is None or not session.runs or not session.done:
        raise gr.Error(f"step: {NO_RUN_YET} there are no recorded steps to show yet.", print_exception=False)
    k = _checked(number, "step", step, 0, session.steps_done, True, " (the recorded steps)")
    model = lookup(user, _model)(session.request.model)
    return (frames.with_note(step_status(session, k), model), *frames.views(session, model, k, colour), session)


def recolour(session: Session | None, step: Any, colour: str, user: UserData | None = None) -> tuple:
    """The particle-colour toggle: the particle views again at the step shown (the slider's step once
    the runs are done, the newest while they stream), red or coloured by each particle's own ρ̂ or
    stiffness index of that step (before a run: a message the page does not pop up)."""
    _checked(choice, "colour", colour, list(COLOURS))
    if session is None or not session.runs:
        raise gr.Error(f"colour: {NO_RUN_YET} there are no particles to colour yet.", visible=False,
                       print_exception=False)
    model = lookup(user, _model)(session.request.model)
    if frames.is_image(model):  # pictures have no particles to colour
        return gr.skip(), gr.skip(), gr.skip()
    k = _checked(number, "step", step, 0, session.steps_done, True, " (the recorded steps)") if session.done \
        else session.steps_done  # fmt: skip
    return frames.views(session, model, k, colour)


def stiffness(model: str, cls: str, log_sigma: Any, user: UserData | None = None, *,
              models: list[str] | None = None) -> tuple:  # fmt: skip
    """The stiffness map view (display only: it changes no run): ρ(J) of the drift Jacobian over the
    plane at σ = 10^``log_sigma`` for the model and class chosen above, and the drift on two
    segments across and along a thin branch (:mod:`stiffviz.app.stiffness_view`). A model without
    a map (not 2-D, or no exact Jacobian) gets no figures and a note saying so."""
    name = _checked(choice, "model", model, models_for(models or available_models(), user))
    sigma = 10.0 ** _checked(number, "log_sigma", log_sigma, LOG_SIGMA[0], LOG_SIGMA[1], False)
    chosen = lookup(user, _model)(name)
    cond = None if cls == NO_CLASS or chosen.classes is None else _checked(choice, "cls", cls, list(chosen.classes))
    return stiffness_view(chosen, sigma, cond)


def redraw(session: Session | None, x_axis: str) -> list:
    """The x-axis toggle: the charts again against step or log σ (before a run: a message the
    page does not pop up, as the toggle may be clicked first; an API caller gets it)."""
    _checked(choice, "x_axis", x_axis, list(X_AXES))
    if session is None or not session.runs:
        raise gr.Error(f"x_axis: {NO_RUN_YET} there are no charts to redraw yet.", visible=False,
                       print_exception=False)
    return frames.charts(session, x_axis)


def show_contractivity(session: Session | None, step: Any, user: UserData | None = None) -> Any:
    """The contractivity view (display-only): L(γ) = ‖(1 − γ) I + γ ∂T/∂x‖₂ of SteinDiff step ``step``
    of the session's SteinDiff run, against γ, with the run's raw, applied and oracle γ marked
    (:mod:`stiffviz.app.contractivity`). Before a finished run, without SteinDiff, or at a step where
    SteinDiff did not act, a :class:`gr.Error` names the step."""
    if session is None or not session.runs or not session.done:
        raise gr.Error(f"step: {NO_RUN_YET} there is no SteinDiff step to show yet.", print_exception=False)
    k = _checked(number, "step", step, 0, session.steps_done, True, " (the recorded steps)")
    model = lookup(user, _model)(session.request.model)
    return _checked(contractivity.view, session.runs, model, k)


def export(session: Session | None, request: gr.Request | None = None, user: UserData | None = None) -> Any:
    """The export button: trace JSON and CSV, samples and an HTML report of every finished run, in the
    session's own folder (its earlier export replaced; deleted when the session ends, see :mod:`.sessions`)."""
    if session is None or not session.done:
        raise gr.Error(f"export: {NO_RUN_YET} there is nothing to export yet.", print_exception=False)
    finished = {label: run for label, run in session.runs.items() if run.samples is not None}
    if not finished:
        raise gr.Error("export: no run finished, so there is nothing to export: " + step_status(session))
    directory = sessions.export_folder(request.session_hash if request else None)
    return [str(path) for path in write_exports(finished, directory, lookup(user, _model)(session.request.model))]


def on_model_change(name: str, schedule: str = DEFAULTS["schedule"], user: UserData | None = None,
                    path: str = DEFAULTS["path"], models: list[str] | None = None) -> tuple:
    """Model dropdown: its classes, whether CFG and Autoguidance apply, its step and batch limits,
    the prompt boxes (text-conditioned models only), its schedules (its own grid, "model", chosen where it has one)
    and its paths (a flow model runs on its own only).

    Only the server's names are accepted (``models``; the page cannot name a path or a Hub id), and
    ``USER_DATA`` once the session has its own data (``user``).
    """
    models = models_for(models or available_models(), user)
    try:
        if name not in models:
            raise ParameterError("model", f"must be one of {', '.join(models)}, got {name!r}")
        model = lookup(user, _model)(name)
    except (ParameterError, OSError) as err:
        return (gr.skip(),) * 10 + (f"⚠️ {err}",)
    classes = [NO_CLASS, *(model.classes or ())]
    text = bool(getattr(model, "text_conditioned", False))
    limits = limits_for(name, model)
    schedules, paths = schedules_for(model), paths_for(model)
    return (
        gr.update(choices=classes, value=NO_CLASS, interactive=model.classes is not None),
        gr.update(interactive=model.classes is not None or text, value=TEXT_CFG if text else 1.0),
        gr.update(interactive=getattr(model, "weak", None) is not None, value=1.0),
        gr.update(maximum=limits.max_steps),
        gr.update(maximum=limits.max_batch, value=limits.default_batch),
        gr.update(value=hasattr(model, "denoiser_jacobian")),  # exact eigenpairs are cheap; power iteration is not
        gr.update(visible=text, value=""),
        gr.update(visible=text, value=""),
        gr.update(choices=schedules, value=MODEL_SCHEDULE if MODEL_SCHEDULE in schedules else
                  schedule if schedule in schedules else DEFAULTS["schedule"]),  # fmt: skip
        gr.update(choices=paths, value=path if path in paths else paths[0]),
        f"Limits for **{name}**: at most {limits.max_steps} steps and a batch of {limits.max_batch}.",
    )


# ---------------------------------------------------------------- layout
def _gpu(fn):
    """Wrap ``fn`` for ZeroGPU when the ``spaces`` package is importable (a Hugging Face Space)."""
    try:
        import spaces
    except ImportError:
        return fn
    return spaces.GPU(fn)


def _serving(handler: Callable[..., Iterator[tuple]], models: list[str]) -> Callable[..., Iterator[tuple]]:
    """``handler`` with the server's ``models`` bound, as a plain generator function with ``handler``'s
    signature: Gradio reads the hidden ``gr.Request`` parameter (the browser session, whose newer run
    stops the older one) and the API's parameter names from it, which a ``functools.partial`` hides."""

    @functools.wraps(handler)
    def serving(*args: Any, **kwargs: Any) -> Iterator[tuple]:
        yield from handler(*args, models=models, **kwargs)

    return serving


def build_app(*server_models: str, sweep: str | None = None) -> gr.Blocks:
    """The whole page; ``server_models`` (``load_model`` specs such as "diffusers:FOLDER") are the
    server's own models, loaded here, once (a spec that fails raises its :class:`ParameterError`);
    ``sweep`` is the folder the Sweeps tab shows (default: the findings sweep shipped in ``assets/``)."""
    sweep_dir = sweep_folder(sweep)  # a bad folder stops the server before any model loads
    models = available_models(*server_models)
    latent = any(getattr(_model(name), "latent", False) for name in server_models)  # loads each one now
    default_limits = _limits(DEFAULTS["model"])
    bound_allocator()  # a run's large temporaries go back to the OS (live.py)
    for name in models:  # each model's time per call, measured once, at start-up (cost.py)
        timing_for(_model(name), name, _limits(name).default_batch)
    with api.Blocks(title="stiffviz", delete_cache=(sessions.SWEEP_S, sessions.EXPORT_AGE_S)) as app:
        gr.Markdown(INTRO)
        session = gr.State(None, time_to_live=sessions.IDLE_S, delete_callback=sessions.free)
        with gr.Tab("Sampler"):
            with gr.Row():
                with gr.Column(scale=1, min_width=300):
                    c = _controls(models, default_limits)
                    with gr.Row():
                        run_button = gr.Button("Run", variant="primary", elem_id="run-button")
                        stop_button = gr.Button("Stop", variant="stop", elem_id="stop-button")
                    with gr.Row():  # display options of the rerun button, not run inputs
                        rule = gr.Radio(list(RULES), value="lte", label="prescribed schedule's rule", elem_id="rule")
                        target = gr.Number(DEFAULT_TARGET, label="stability target z/B", minimum=0.01, maximum=1.0,
                                           elem_id="target")  # fmt: skip
                    rerun_button = gr.Button("Rerun with the prescribed schedule", elem_id="rerun-button")
                    cost_md = gr.Markdown(cost_note(DEFAULTS, models, _model), elem_id="cost")
                    limits_note = gr.Markdown(f"Limits for **tree**: at most {default_limits.max_steps} steps "
                                              f"and a batch of {default_limits.max_batch}.")  # fmt: skip
                    with gr.Accordion("Server limits per model", open=False):
                        gr.Markdown(limits_table([_limits(m) for m in models]), elem_id="limits-table")
                    user = user_data_block(models, c["model"], session)
                    with gr.Accordion("Presets: the README's findings on the tree toy (one click runs one)", open=True):
                        preset_table = gr.Examples([[p.inputs[name] for name in INPUTS] for p in PRESETS],
                                                   [c[name] for name in INPUTS],
                                                   example_labels=[p.label for p in PRESETS],
                                                   examples_per_page=len(FINDINGS), cache_examples=False,
                                                   api_visibility="private")  # fmt: skip
                with gr.Column(scale=3):
                    status = gr.Markdown("Press **Run** to sample.", elem_id="status")
                    with gr.Row():
                        view_a = gr.Plot(label="particles", elem_id="view-a")
                        view_b = gr.Plot(label="particles (guidance off)", visible=False, elem_id="view-b")
                        gallery = gr.Gallery(label="state and x0 preview", columns=4, format="png", height="auto",
                                             visible=False, elem_id="gallery")  # fmt: skip
                    step = gr.Slider(0, 1, value=0, step=1, label="step (scrub after the run)", interactive=False,
                                     elem_id="step-slider")  # fmt: skip
                    x_axis = gr.Radio(list(X_AXES), value="step", label="chart x axis", elem_id="x-axis")
                    colour = gr.Radio(list(COLOURS), value="red", label="particle colour (2-D models: each "
                                      "particle's own ρ̂ or stiffness index at the step shown)",
                                      elem_id="particle-colour")  # fmt: skip
                    charts, names = [], [*CHARTS, "stability"]  # two charts a row, the stability view last
                    for row in range(0, len(names), 2):
                        with gr.Row():
                            charts += [gr.Plot(label=name, elem_id=f"chart-{name}") for name in names[row:row + 2]]
                    *charts, stability = charts
                    results = gr.Dataframe(label="results", interactive=False, elem_id="results")
                    with gr.Accordion("SteinDiff: contractivity of a step (L against γ)", open=False):
                        with gr.Row():
                            stein_step = gr.Slider(0, default_limits.max_steps, value=0, step=1,
                                                   label="SteinDiff step", elem_id="contractivity-step")  # fmt: skip
                            stein_draw = gr.Button("Draw", elem_id="contractivity-button")
                        stein_view = gr.Plot(label="contractivity", elem_id="contractivity")
                    with gr.Accordion("Stiffness map: the authors' overview figure (display only, 2-D models)",
                                      open=False) as map_box:  # fmt: skip
                        with gr.Row():
                            log_sigma = gr.Slider(*LOG_SIGMA[:2], value=LOG_SIGMA[2], step=LOG_SIGMA[3],
                                                  label="log₁₀ σ (the map's noise level; not a run input)",
                                                  elem_id="map-sigma")  # fmt: skip
                            map_draw = gr.Button("Draw", elem_id="map-button")
                        map_note = gr.Markdown("The model and class chosen above, at the σ of the slider.",
                                               elem_id="map-note")  # fmt: skip
                        with gr.Row():
                            map_view = gr.Plot(label="stiffness map", elem_id="stiffness-map")
                            segment_view = gr.Plot(label="drift across and along a thin branch",
                                                   elem_id="stiffness-segments")  # fmt: skip
                    export_button = gr.Button("Export trace, samples and HTML report", elem_id="export-button")
                    files = gr.File(label="downloads", file_count="multiple", elem_id="downloads")
        with gr.Tab("Learn"):
            build_learn_tab()
        with gr.Tab("Sweeps"):
            build_sweep_tab(sweep_dir)

        inputs = [c[name] for name in INPUTS] + [x_axis, colour, user]
        outputs = [status, view_a, view_b, gallery, *charts, stability, results, step, session]
        # preprocess=False: the raw values reach ``run``, which checks each one and names it in its message
        # (Gradio's own slider check would reject an API caller's value without naming the input).
        run_fn = _serving(run, models)
        running = run_button.click(run_fn, inputs, outputs, api_name="run", concurrency_limit=CONCURRENCY_LIMIT,
                                   concurrency_id="run", preprocess=False)  # fmt: skip
        # A preset fills the controls, then runs as Run does, in the same slots. Not cached: a run's outputs
        # include the visitor's own Session (scrub, export), which a shared example cache cannot give back.
        preset_run = preset_table.load_input_event.then(run_fn, inputs, outputs, concurrency_id="run",
                                                        concurrency_limit=CONCURRENCY_LIMIT, preprocess=False,
                                                        api_visibility="private")  # fmt: skip
        # Coming from another model, the model's change event resets the batch to the tree's default while the
        # preset runs (with the preset's batch): the page shows the preset's batch again once the run is over.
        preset_run.then(lambda example: PRESETS[example[0]].inputs["batch"], preset_table.dataset, c["batch"],
                        queue=False, api_visibility="private")  # fmt: skip
        # Rerun: the grid prescribed from the session's run fills the σ box (and steps), then runs as Run does.
        page_run = [c[name] for name in RUN_SETTINGS if name in c]
        rerun = rerun_button.click(prescribed, [session, rule, target, *page_run], [c["sigmas"], c["steps"]],
                                   api_name="prescribe", queue=False,
                                   preprocess=False).success(run_fn, inputs, outputs, concurrency_id="run",
                                                             concurrency_limit=CONCURRENCY_LIMIT, preprocess=False,
                                                             api_visibility="private")  # fmt: skip
        # Stop: the run's stop event (it ends at its next step) and Gradio's cancel of the streaming event.
        stop_button.click(stop_run, None, None, cancels=[running, preset_run, rerun], api_name="stop", queue=False)
        # A latent model's VAE decodes when scrubbing: on ZeroGPU that needs the GPU too.
        step.input(_gpu(scrub) if latent else scrub, [session, step, user, colour],
                   [status, view_a, view_b, gallery, session], api_name="scrub", trigger_mode="always_last",
                   preprocess=False)  # fmt: skip
        x_axis.change(redraw, [session, x_axis], charts, api_name="redraw", preprocess=False)
        colour.change(recolour, [session, step, colour, user], [view_a, view_b, gallery], api_name="recolour",
                      preprocess=False)  # fmt: skip
        map_inputs, map_outputs = [c["model"], c["cls"], log_sigma, user], [map_view, segment_view, map_note]
        stiffness_fn = functools.partial(stiffness, models=models)
        map_draw.click(stiffness_fn, map_inputs, map_outputs, api_name="stiffness_map", preprocess=False)
        gr.on([log_sigma.release, map_box.expand], stiffness_fn, map_inputs, map_outputs, api_name=False,
              preprocess=False)  # fmt: skip
        export_button.click(export, [session, user], files, api_name="export")
        stein_draw.click(show_contractivity, [session, stein_step, user], stein_view, api_name="contractivity",
                         preprocess=False)  # fmt: skip
        stein_step.release(show_contractivity, [session, stein_step, user], stein_view, api_name=False,
                           preprocess=False)  # fmt: skip
        model_outputs = [c[name] for name in ("cls", "cfg", "autoguidance", "steps", "batch", "eig", "prompt",
                                              "negative_prompt", "schedule", "path")] + [limits_note]  # fmt: skip
        c["model"].change(functools.partial(on_model_change, models=models), [c["model"], c["schedule"], user, c["path"]],
                          model_outputs,
                          api_name=False, preprocess=False)  # fmt: skip  (raw names: the handler checks them)
        nfe_inputs = [c["solver"], c["steps"], c["cfg"], c["autoguidance"], c["denoise_to_zero"], c["adaptive"]]
        for name in ("solver", "steps", "cfg", "autoguidance", "denoise_to_zero", "adaptive"):
            c[name].change(nfe_text, nfe_inputs, c["nfe"], api_name=False)
        for name in ("steps", "denoise_to_zero"):  # w_con follows the step count (the authors' values)
            c[name].change(_w_con, [c["steps"], c["denoise_to_zero"]], c["erk_con"], api_name=False)
        guidance_inputs = [c["solver"], c["churn"], c["adaptive"]]
        for name in ("solver", "churn", "adaptive"):  # a sampler that refuses a guidance method turns it off
            c[name].change(_guidance_allowed, guidance_inputs, [c["erk_on"], c["stein_on"]], api_name=False)
        gr.on([c[name].change for name in INPUTS], functools.partial(_cost_note, models=models),
              [c[name] for name in INPUTS] + [user], cost_md, api_name=False, preprocess=False)  # fmt: skip
        sessions.install(app)  # a session's runs and files go when it ends or idles (see sessions.py)
    return app


def _guidance_allowed(solver: Any, churn: Any, adaptive: Any) -> tuple:
    """ERK-Guid and SteinDiff checkboxes after a change of sampler: ERK-Guid goes off for a stochastic
    sampler (Euler ancestral, churn > 0) or adaptive steps, SteinDiff for adaptive steps (the sampler
    refuses those pairs, docs/math.md §11–12); otherwise they are left as the visitor set them."""
    stochastic = solver == "euler_ancestral" or (isinstance(churn, (int, float)) and churn > 0)
    off = gr.update(value=False)
    return (off if stochastic or adaptive is True else gr.update(), off if adaptive is True else gr.update())


def _w_con(steps: Any, denoise_to_zero: Any):
    """The w_con slider after a change of steps: the authors' value for the step count."""
    value = w_con_for(steps, denoise_to_zero)
    return gr.update() if value is None else value


def _cost_note(*values: Any, models: list[str]) -> str:
    """The estimate under the Run button for the page's inputs (``INPUTS`` order, then the session's own data)."""
    *inputs, user = values
    return cost_note(dict(zip(INPUTS, inputs)), models_for(models, user), lookup(user, _model))


def queued(app: gr.Blocks) -> gr.Blocks:
    """``app`` with its queue on: at most ``CONCURRENCY_LIMIT`` runs at once, ``QUEUE_SIZE`` waiting."""
    return app.queue(default_concurrency_limit=CONCURRENCY_LIMIT, max_size=QUEUE_SIZE)


def _controls(models: list[str], limits) -> dict[str, gr.components.Component]:
    """The input widgets by name (the names of ``INPUTS``), plus the NFE note."""
    d, r = DEFAULTS, INPUT_RANGES
    c: dict[str, Any] = {}
    c["model"] = gr.Dropdown(models, value=d["model"], label="model", elem_id="model")
    c["prompt"] = gr.Textbox(d["prompt"], label="prompt", max_length=MAX_PROMPT, lines=2, visible=False,
                             elem_id="prompt")  # fmt: skip
    c["negative_prompt"] = gr.Textbox(d["negative_prompt"], label="negative prompt", max_length=MAX_PROMPT,
                                      visible=False, elem_id="negative-prompt")  # fmt: skip
    with gr.Row():
        c["cls"] = gr.Dropdown([NO_CLASS, "A", "B"], value=d["cls"], label="class", elem_id="class")
        c["cfg"] = gr.Slider(*r["cfg"][:2], value=d["cfg"], step=0.1, label="CFG weight (1 = off)")
    c["autoguidance"] = gr.Slider(*r["autoguidance"][:2], value=d["autoguidance"], step=0.1,
                                  label="Autoguidance weight (1 = off)")  # fmt: skip
    with gr.Row():
        c["solver"] = gr.Dropdown(list(SOLVERS), value=d["solver"], label="solver", elem_id="solver")
        c["steps"] = gr.Slider(1, limits.max_steps, value=d["steps"], step=1, label="steps", elem_id="steps")
    c["nfe"] = gr.Markdown(nfe_text(d["solver"], d["steps"]), elem_id="nfe")
    with gr.Accordion("Advanced: noise schedule", open=False):
        c["schedule"] = gr.Radio(schedules_for(None), value=d["schedule"], label="schedule", elem_id="schedule")
        c["path"] = gr.Dropdown(paths_for(None), value=d["path"], elem_id="path",
                                label="path the solver steps in (edm, vp, flow: one ODE, other coordinates)")  # fmt: skip
        with gr.Row():
            c["sigma_min"] = gr.Number(d["sigma_min"], label="σ_min", minimum=r["sigma_min"][0], maximum=r["sigma_min"][1])
            c["sigma_max"] = gr.Number(d["sigma_max"], label="σ_max", minimum=r["sigma_max"][0], maximum=r["sigma_max"][1])
            c["rho"] = gr.Number(d["rho"], label="ρ (Karras)", minimum=r["rho"][0], maximum=r["rho"][1])
        c["sigmas"] = gr.Textbox(d["sigmas"], elem_id="sigmas", max_length=MAX_GRID_TEXT,
                                 label="explicit σ grid: comma-separated levels, decreasing (replaces the schedule, "
                                       "σ_min, σ_max, ρ and steps; empty: the schedule)")  # fmt: skip
        c["denoise_to_zero"] = gr.Checkbox(d["denoise_to_zero"], elem_id="denoise-to-zero",
                                           label="denoise to zero: end with the Euler step to σ = 0 (off: the authors' "
                                                 "diff-sampler grid, N = steps levels to σ_min, N − 1 steps)")  # fmt: skip
    with gr.Group():
        c["erk_on"] = gr.Checkbox(d["erk_on"], label="ERK-Guid (error as a guidance signal)", elem_id="erk-on")
        with gr.Row():
            c["erk_guid"] = gr.Slider(*r["erk_guid"][:2], value=d["erk_guid"], step=0.05, label="w_stiff")
            c["erk_con"] = gr.Slider(*r["erk_con"][:2], value=d["erk_con"], step=0.05, label="w_con")
    with gr.Group():
        c["stein_on"] = gr.Checkbox(d["stein_on"], label="SteinDiff (Stein-stabilised steps)", elem_id="stein-on")
        with gr.Row():
            c["stein_probes"] = gr.Slider(*r["stein_probes"][:2], value=d["stein_probes"], step=1, label="probes K")
            c["stein_gamma_min"] = gr.Number(d["stein_gamma_min"], label="γ min")
            c["stein_gamma_max"] = gr.Number(d["stein_gamma_max"], label="γ max")
            c["stein_sigma_max"] = gr.Number(d["stein_sigma_max"], label="acts at σ ≤",
                                             minimum=r["stein_sigma_max"][0], maximum=r["stein_sigma_max"][1])
    with gr.Accordion("Stochastic sampling: EDM's churn (euler_ancestral brings its own noise)", open=False):
        with gr.Row():
            c["churn"] = gr.Slider(*r["churn"][:2], value=d["churn"], step=1, label="S_churn (0 = off)", elem_id="churn")
            c["s_noise"] = gr.Slider(*r["s_noise"][:2], value=d["s_noise"], step=0.001, label="S_noise")
            c["s_tmin"] = gr.Number(d["s_tmin"], label="acts at σ ≥", minimum=r["s_tmin"][0], maximum=r["s_tmin"][1])
            c["s_tmax"] = gr.Number(d["s_tmax"], label="acts at σ ≤", minimum=r["s_tmax"][0], maximum=r["s_tmax"][1])
    with gr.Accordion("Adaptive steps: a PI controller on the embedded error (heun, bosh3, dpm2)", open=False):
        with gr.Row():
            c["adaptive"] = gr.Checkbox(d["adaptive"], label="adaptive (steps then caps the attempts)", elem_id="adaptive")
            c["rtol"] = gr.Number(d["rtol"], label="rtol", minimum=r["rtol"][0], maximum=r["rtol"][1])
            c["atol"] = gr.Number(d["atol"], label="atol", minimum=r["atol"][0], maximum=r["atol"][1])
    with gr.Accordion("Costly diagnostics", open=False):
        c["eig"] = gr.Checkbox(d["eig"], label="Jacobian eigenvectors (λ₁, v₁)")
        c["lte_ref"] = gr.Checkbox(d["lte_ref"], label="reference LTE (32 RK4 sub-steps)")
        c["lipschitz"] = gr.Checkbox(d["lipschitz"], label="Lipschitz constant of the step")
    with gr.Row():
        c["seed"] = gr.Number(d["seed"], label="seed", precision=0, minimum=0, maximum=r["seed"][1])
        c["batch"] = gr.Slider(1, limits.max_batch, value=d["batch"], step=1, label="batch", elem_id="batch")
    c["compare"] = gr.Checkbox(d["compare"], label="compare: run again with guidance off", elem_id="compare")
    return c
