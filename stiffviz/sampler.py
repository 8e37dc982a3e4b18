"""The sampling loop: one place owns the state that crosses steps (docs/math.md §1–5).

Per step i, from σ_i to σ_{i+1}:
1. evaluate the first stage (x_i, D(x_i), f(x_i)) unless the previous step handed it on;
2. let the solver advance (or, when σ_{i+1} = 0, take the Euler step x_{i+1} = D(x_i));
   with SteinDiff the step runs under autograd so Hutchinson probes can reach it;
3. form the solver's secant pair, record ‖e‖, ρ̂, z = |h|ρ̂, z/boundary and |cos(e, v̂)|;
4. SteinDiff: x_{i+1} = x_i − γ u with u = x_i − T(x_i); then ERK-Guid's correction
   (neither on the final step; ERK-Guid not on step 0);
5. the optional ground-truth diagnostics (eigenpairs, reference LTE, Lipschitz, oracle γ);
6. hand the record, the new state and the denoised estimate to ``on_step``.
A non-finite state stops the loop with status "diverged"; the trace keeps every step so far.
A stochastic run (EDM's churn, ``euler_ancestral``; docs/math.md §11) starts the step at
(x̂_i, σ̂_i) before 1., or ends it at σ_down and adds σ_up of fresh noise after 5.; every
diagnostic describes the deterministic step in between.

Other Gaussian paths (``path``: vp, flow; :mod:`stiffviz.paths`) run through the same loop with the
path's time t in σ's place and the path denoiser D̃(x, t) = x − t·f(x, t). Flow-matching models
(``path="flow"``) are such a path natively: for x_t = (1 − t)·x0 + t·ε the velocity is v = (x_t − D_flow(x_t; t))/t, the same form as
the EDM drift (docs/math.md §9), so ρ̂, z = |h|ρ̂ and every eigenvalue are those of ∂v/∂x_t, with
h a step in t.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch

from .adaptive import AdaptiveSteps
from .config import MODEL_SCHEDULE, SampleConfig
from .diagnostics.ground_truth import DiagnosticOptions, GroundTruth, StepContext
from .diagnostics.secant import abs_cosine, batch_norm, secant_pair, secant_stiffness
from .errors import ParameterError
from .guidance.erk import ErkGuid
from .guidance.stein import SteinDiff, hutchinson_divergence, stein_coefficient
from .models.base import Denoiser
from .models.guided import guided_denoiser
from .models.registry import load_model
from .paths import Path, path_denoiser, path_grid
from .schedules import explicit_grid, explicit_levels
from .solvers import Solver, Stage, StepResult, get_solver
from .solvers.base import Evaluator
from .stochastic import NoiseInjection, Stochastic, check_combination, noise_injection
from .trace import Trace

OnStep = Callable[[dict, torch.Tensor, torch.Tensor], None]
DenoiseFn = Callable[[torch.Tensor, float], torch.Tensor]
PROBE_SEED_OFFSET = 7_919  # Hutchinson probes: a generator seeded with seed + offset
GROUND_TRUTH_SEED_OFFSET = 104_729  # diagnostics' own generator, so turning them on never moves the run
HISTORY_KEPT = 3  # steps the loop keeps: DEIS (tAB3) interpolates the last 4 drifts, secant pairs look back 1


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float64).numpy()


def _stein_step(evaluate: Evaluator, solver: Solver, x: torch.Tensor, sigma: float, sigma_next: float,
                history: list[StepResult], stein: SteinDiff, generator: torch.Generator):  # fmt: skip
    """The candidate step T(x) under autograd, u = x − T(x), and γ (raw) from Hutchinson's ∇·u."""
    probes = torch.randn((stein.probes, *x.shape), generator=generator, dtype=x.dtype).to(x.device)
    with torch.enable_grad():
        x_in = x.detach().requires_grad_(True)
        step = solver.step(evaluate, evaluate(x_in, sigma), sigma_next, history)
        u = x_in - step.x
        divergence = hutchinson_divergence(u, x_in, probes)
    u = u.detach()
    return step.detach(), u, stein_coefficient(u, x, divergence.detach(), sigma, stein.alpha)


def integrate(
    denoise: DenoiseFn,
    sigmas: torch.Tensor,
    x: torch.Tensor,
    solver: Solver,
    erk: ErkGuid | None = None,
    diagnostics: DiagnosticOptions | bool = True,
    on_step: OnStep | None = None,
    config: dict | None = None,
    stein: SteinDiff | None = None,
    seed: int = 0,
    reference: Callable[[int, torch.Generator], torch.Tensor] | None = None,
    noise: Stochastic | NoiseInjection | None = None,
    control: AdaptiveSteps | None = None,
) -> tuple[torch.Tensor, Trace]:
    """Integrate dx/dσ = (x − D(x; σ))/σ along ``sigmas`` (decreasing, ≥ 0) from state ``x``.

    ``diagnostics`` is a :class:`DiagnosticOptions` (``True``/``False``: the cheap ones on/off);
    ``reference(n, generator)`` draws clean samples for the SteinDiff oracle. ``noise`` is EDM's
    churn, ``solver.eta`` (``euler_ancestral``) the ancestral noise, both drawn from a generator
    seeded from ``seed`` (or a prepared :class:`NoiseInjection` with its own ε; docs/math.md §11).
    ``control`` (adaptive steps, docs/math.md §12) replaces ``sigmas``' steps by its own and judges
    each: a rejected step is recorded and leaves x (and its first stage) as they were.
    Returns the final state (the last finite one if the run diverged) and the trace.
    """
    sig = [float(s) for s in sigmas]
    if any(b >= a for a, b in zip(sig, sig[1:])) or sig[-1] < 0:
        raise ParameterError("sigmas", "must be strictly decreasing and ≥ 0")
    options = diagnostics if isinstance(diagnostics, DiagnosticOptions) else DiagnosticOptions(diagnostics=bool(diagnostics))
    generator = torch.Generator().manual_seed(seed + PROBE_SEED_OFFSET)
    ground_truth = None
    if options.any_costly:
        diagnostics_generator = torch.Generator().manual_seed(seed + GROUND_TRUTH_SEED_OFFSET)
        ground_truth = GroundTruth(options, denoise, solver, diagnostics_generator, reference)
    injection = noise if isinstance(noise, NoiseInjection) else noise_injection(noise, solver, len(sig) - 1, x, seed)
    check_combination(injection is not None, erk is not None, adaptive=control is not None)
    trace = Trace(dict(config or {}), sig)
    evaluate = Evaluator(denoise)
    history: list[StepResult] = []
    carried: Stage | None = None
    start = time.perf_counter()
    for i, (sigma, sigma_next) in enumerate(zip(sig, sig[1:]) if control is None else control):
        record = {"i": i, "sigma": sigma, "sigma_next": sigma_next, "nfe": 0}
        if injection is not None:  # the deterministic part: from σ̂_i (churn), to σ_down (ancestral)
            x, sigma, sigma_next = injection.before(record, x, sigma, sigma_next)
            carried = None if injection.moved else carried
        stein_here = stein is not None and sigma_next > 0.0 and stein.acts_at(sigma)
        if stein_here:
            step, u, gamma_raw = _stein_step(evaluate, solver, x, sigma, sigma_next, history, stein, generator)
        elif sigma_next == 0.0:  # Euler to σ = 0: x + (0 − σ)(x − D)/σ = D
            first = carried or evaluate(x, sigma)
            step = StepResult(first.denoised, None, [first], boundary=2.0)
        else:
            step = solver.step(evaluate, carried or evaluate(x, sigma), sigma_next, history)
        record["stability_boundary"] = step.boundary
        first = step.stages[0]
        kind = solver.pair if injection is None else injection.pair_kind(solver.pair)
        pair = secant_pair(kind, step, history, sigma_next) if (options.diagnostics or erk or options.eig) else None
        stiffness = secant_stiffness(pair) if pair is not None else None
        if options.diagnostics:
            _record_cheap(record, step, stiffness, sigma - sigma_next)
        if control is not None and not control.accept(record, x, step):  # rejected: x and its first stage stay
            record["nfe"], carried = evaluate.calls, first
            trace.steps.append(record)
            if on_step is not None:
                on_step(record, x, first.denoised)
            continue
        x_next, carried, gamma = step.x, step.next_stage, 1.0
        if stein_here:
            gamma = stein.clip(gamma_raw)
            record["stein_gamma_raw"], record["stein_gamma"] = gamma_raw, gamma
            if gamma != 1.0:
                x_next, carried = x - gamma * u, None
        if erk is not None and pair is not None and sigma_next > 0.0:
            correction, active = erk.correction(pair, stiffness)
            x_next, carried = x_next + correction, None
            record["erk_active"] = _numpy(active).astype(bool)
            record["erk_correction"] = _numpy(batch_norm(correction))
        if ground_truth is not None:
            direction = stiffness.direction if stiffness is not None else None
            ground_truth.record(record, StepContext(x, sigma, sigma_next, step, x_next, history, direction, gamma))
        if injection is not None:  # ancestral: + σ_up·S_noise·ε up to σ_{i+1}
            x_next = injection.after(x_next, record["sigma"], record["sigma_next"])
        record["nfe"] = evaluate.calls
        trace.steps.append(record)
        if not bool(torch.isfinite(x_next).all()):
            trace.status = "diverged"
            trace.message = (
                f"the state became non-finite at step {i} (sigma {sigma:.4g} -> {sigma_next:.4g}); "
                f"the trace keeps steps 0..{i}"
            )
            break
        if on_step is not None:
            on_step(record, x_next, first.denoised)
        history.append(step)
        del history[:-HISTORY_KEPT]
        x = x_next
    if control is not None:
        trace.sigmas = control.sigmas
    trace.summary = _summary(trace, time.perf_counter() - start)
    return x, trace


def _record_cheap(record: dict, step: StepResult, stiffness, h: float) -> None:
    """‖e‖, ρ̂, z = hρ̂, z/boundary and |cos(e, v̂)|, moved to the CPU in one transfer."""
    values = {}
    if step.error is not None:
        values["lte"] = batch_norm(step.error)
    if stiffness is not None:
        z = h * stiffness.rho
        values.update(stiffness=stiffness.rho, stiffness_z=z, stiffness_index=z / step.boundary)
        if step.error is not None:
            values["align_cos_est"] = abs_cosine(step.error, stiffness.direction)
    if values:
        rows = _numpy(torch.stack(list(values.values())))
        record.update(zip(values, rows))


def _summary(trace: Trace, wall_time: float) -> dict:
    def overall_median(name: str) -> float | None:
        per_step = trace.step_median(name)
        per_step = per_step[np.isfinite(per_step)]
        return float(np.median(per_step)) if per_step.size else None

    return {
        "nfe": trace.steps[-1]["nfe"] if trace.steps else 0,
        "steps_done": len(trace.steps),
        "wall_time_s": wall_time,
        "median_stiffness": overall_median("stiffness"),
        "median_stiffness_z": overall_median("stiffness_z"),
        "median_lte": overall_median("lte"),
    }


def initial_noise(shape: tuple[int, ...], batch: int, seed: int, sigma_max: float, dtype, device) -> torch.Tensor:
    """σ_max · N(0, I) drawn on the CPU from ``seed``, then moved: a seed means the same noise everywhere.

    On other paths ``sigma_max`` is s(t_0)·σ(t_0) (for flow the first flow time t_0, 1 on a flow
    model's own grid)."""
    noise = torch.randn((batch, *shape), generator=torch.Generator().manual_seed(seed), dtype=dtype)
    return (sigma_max * noise).to(device)


NATIVE_PATHS = ("edm", "flow")  # the paths a model can be trained on (``model.path``)
EMBEDDING_ARGUMENTS = ("prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds", "negative_pooled_prompt_embeds")


def sampling_grid(model: Denoiser, config: SampleConfig) -> torch.Tensor:
    """The grid the loop steps along: :func:`grid_to_zero`, without its final 0 when
    ``config.denoise_to_zero`` is False (the authors' diff-sampler convention, docs/math.md §4:
    N = ``steps`` levels ending at σ_min, N − 1 steps, no final denoise step)."""
    grid = grid_to_zero(model, config)
    return grid if config.denoise_to_zero or grid[-1] > 0 else grid[:-1]


def grid_to_zero(model: Denoiser, config: SampleConfig) -> torch.Tensor:
    """The grid of the settings, decreasing to 0 (docs/math.md §1, §9).

    ``schedule="model"`` takes the model's own scheduler grid (``model.model_sigmas``, mapped to
    the run's path if it is not the model's own). A σ schedule (Karras, log-SNR) goes through the
    path's t(σ), so every path steps through the same σ's (a flow model, called with the flow time
    t of x_t = (1 − t)·x0 + t·ε, gets t = σ/(1 + σ)); ``uniform`` is uniform in the path's own time
    (:func:`stiffviz.paths.path_grid`). An explicit ``sigmas`` (docs/math.md §13) is taken as is, in
    the time the loop steps in (σ, or the path's t), with the final 0 appended.
    """
    native, path = model_path(model, config)
    if config.sigmas is not None:  # an explicit grid, in the loop's own time (as a trace's ``sigmas``)
        return explicit_grid(config.sigmas)
    if config.schedule == MODEL_SCHEDULE:
        if not hasattr(model, "model_sigmas"):
            raise ParameterError("schedule", f"'model' needs a model with its own scheduler (a diffusers model); "
                                             f"{config.model} has none: use karras or logsnr")  # fmt: skip
        grid = torch.as_tensor(model.model_sigmas(config.steps), dtype=torch.float64)
        return grid if path == native else Path(path).time(grid)
    return path_grid(path, config.schedule, config.steps, config.sigma_min, config.sigma_max, config.rho, config.shift)


def model_path(model: Denoiser, config: SampleConfig) -> tuple[str, str]:
    """(the model's own path, the path the run steps in): ``config.path``, or the model's own."""
    native = getattr(model, "path", "edm")
    if native not in NATIVE_PATHS:
        raise ParameterError("model", f"path must be one of {', '.join(NATIVE_PATHS)}, got {native!r}")
    path = config.path or native
    if native != "edm" and path != native:
        raise ParameterError("path", f"{config.model} is a {native} model; it runs on its own path only "
                                     f"(path={native!r} or none), got {path!r}")  # fmt: skip
    return native, path


def conditioning(model: Denoiser, config: SampleConfig, embeds: dict) -> tuple[object, object]:
    """(cond, uncond) for the guided denoiser: the class (and None), or a text model's prompt
    and negative-prompt conditioning, encoded once per run by ``model.condition``."""
    given = {k: v for k, v in embeds.items() if v is not None}
    unknown = set(given) - set(EMBEDDING_ARGUMENTS)
    if unknown:
        raise ParameterError(sorted(unknown)[0], f"unknown argument; embeddings are {', '.join(EMBEDDING_ARGUMENTS)}")
    prompted = config.prompt is not None or config.negative_prompt is not None or bool(given)
    if not getattr(model, "text_conditioned", False):
        if prompted:
            raise ParameterError("prompt", f"{config.model} is not text-conditioned; it takes no prompt")
        return config.cls, None
    if config.cls is not None:
        raise ParameterError("class", f"{config.model} is text-conditioned; it takes a prompt, not a class")
    if not prompted:
        return None, None  # the model's own empty-prompt conditioning
    return model.condition(prompt=config.prompt, negative_prompt=config.negative_prompt, **given)


def sample(model: str | Denoiser = "tree", on_step: OnStep | None = None, **settings) -> tuple[torch.Tensor, Trace]:
    """Draw ``batch`` samples with the settings of :class:`SampleConfig` (keyword arguments).

    ``model`` is a name from ``list_models()`` (or ``diffusers:SPEC``) or any denoiser object with
    ``shape`` and ``classes``. Text models also take, from Python, precomputed embeddings
    (``prompt_embeds``, ``negative_prompt_embeds``, ``pooled_prompt_embeds``,
    ``negative_pooled_prompt_embeds``) instead of ``prompt``. The initial state of seed s is
    ``s(t_0)σ(t_0) · randn((B, *shape), generator=torch.Generator().manual_seed(s))``: σ_max·ε on
    the EDM path, t_0·ε on the flow path (plain ε at t_0 = 1), σ_max/√(1 + σ_max²)·ε on VP. Returns the samples (B, *shape), the
    final states in the model's own coordinates (latents for latent models), and the :class:`Trace`.
    """
    embeds = {k: settings.pop(k) for k in list(settings) if k.endswith("prompt_embeds")}
    name = model if isinstance(model, str) else getattr(model, "name", type(model).__name__)
    if settings.get("sigmas") is not None:  # an explicit grid: steps follow from it unless given
        settings["sigmas"] = explicit_levels(settings["sigmas"])
        settings.setdefault("steps", len(settings["sigmas"]))
    config = SampleConfig(model=name, **settings).validate()
    if isinstance(model, str):
        model = load_model(model)
    device = torch.device(config.device) if config.device else getattr(model, "device", torch.device("cpu"))
    dtype = config.torch_dtype
    cond, uncond = conditioning(model, config, embeds)
    native, path = model_path(model, config)
    check_combination(config.churn > 0 or config.solver == "euler_ancestral", False, path)
    denoise = path_denoiser(guided_denoiser(model, cond, config.cfg, config.autoguidance, uncond=uncond), path, native)
    sigmas = sampling_grid(model, config)
    control = AdaptiveSteps(sigmas, get_solver(config.solver), config.rtol, config.atol, config.steps) \
        if config.adaptive else None  # fmt: skip
    x = initial_noise(tuple(model.shape), config.batch, config.seed, Path(path).noise_std(float(sigmas[0])), dtype, device)
    reference = None
    if hasattr(model, "sample_reference"):
        reference = lambda n, generator: model.sample_reference(n, generator, cond=config.cls)  # noqa: E731
    record = config.to_dict() | {"model_calls_per_nfe": denoise.calls, "shape": list(model.shape),
                                 "path": path}  # fmt: skip
    with torch.no_grad():
        return integrate(denoise, sigmas, x, get_solver(config.solver), config.erk(), config.diagnostic_options(),
                         on_step, record, config.stein_diff(), config.seed, reference, config.stochastic(),
                         control=control)  # fmt: skip
