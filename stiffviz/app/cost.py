"""What a request will cost, before it starts, and the server's budget per run.

A run's work is counted in *passes through the model* by kind, step by step along the
request's own σ grid, as :func:`stiffviz.sample` makes them (every guidance term — the
model, CFG's unconditional call, Autoguidance's weak model — is one pass per evaluation):

* ``call``: a forward pass, D(x; σ) (the solver's stages; SteinDiff's step under autograd;
  the forward pass a VJP starts from; the reference LTE's 32 RK4 sub-steps, 4 passes each);
* ``jvp``: a forward-mode pass (``torch.func.jvp``) through the model;
* ``own_jvp``: a model's own Jacobian-vector product (``denoiser_jvp``, the exact toys);
* ``backward``: a reverse pass (a VJP) back through one forward pass;
* ``jacobian``: the exact eigenpairs of one evaluation (``denoiser_jacobian`` and ``eigh``).

Per step i (σ_i → σ_{i+1}), with S the solver's stages (euler 1, heun 2, dpm2 2, bosh3 4,
rk4 4, dpmpp2m 1) and T the candidate step (S passes; 1 on the last step, to σ = 0), of which
T' reach its result (S − 1 for bosh3, whose last pass sits at the result and only feeds the next step):

    sampling   S passes (first-same-as-last: bosh3's first stage is the previous step's last,
               unless ERK-Guid or SteinDiff moved the state; the last step: 1 or 0)
    SteinDiff  K backward passes through T' (the K Hutchinson probes), every step to σ > 0
    eig        exact: 1 jacobian; power: I own/forward-mode JVPs, then for the stiffness ratio
               1 call + k (JVP + backward) with k = min(Lanczos iterations, state size)
    lte_ref    4 · substeps calls (steps to σ > 0)
    lipschitz  T calls + (n + 1) · T jvp + n · T' backward (n power iterations)
    oracle     T calls (steps to σ > 0)

and ``compare`` adds the unguided twin, counted the same way at its own settings. An adaptive run
(docs/math.md §12) is counted on the longest grid its cap allows: ``steps`` attempts to σ_min,
then the step to 0; a rejected attempt costs at most an accepted one, so this is an upper bound. SteinDiff's
γ is not known in advance; the count assumes γ ≠ 1 (an upper bound: only bosh3 can reuse a stage).

Model-call equivalents weigh each kind by its time relative to one call, and seconds are

    model_calls = Σ_kind passes_kind · ratio_kind,   seconds = model_calls · t_call · B / B_ref

with t_call, the ratios and B_ref measured once per server model at start-up
(:func:`measure`, the least of a few timed passes at the model's default batch, at most
``REFERENCE_BATCH``, B_ref; on the CPU in CPU time per thread, which other busy processes do
not inflate) and the
time per call taken as linear in the batch B. :func:`admit` refuses a request whose
estimate exceeds the server's budget per run, ``RUN_BUDGET_S`` seconds (environment variable
``STIFFVIZ_RUN_BUDGET_S``), with a message that names the costliest part, the estimate and the limit.
"""

from __future__ import annotations

import os
import time
import weakref
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch

from ..adaptive import attempt_grid
from ..config import SampleConfig
from ..diagnostics.autodiff import jvp
from ..diagnostics.spectrum import ExactSpectrum
from ..errors import ParameterError
from ..models.guided import guided_denoiser
from ..sampler import sampling_grid
from ..solvers import get_solver
from .requests import Request, parse_request

RUN_BUDGET_S = 120.0  # seconds per run (compare included); STIFFVIZ_RUN_BUDGET_S overrides
BUDGET_VARIABLE = "STIFFVIZ_RUN_BUDGET_S"
KINDS = ("call", "jvp", "own_jvp", "backward", "jacobian")
# Each part of a run and the request parameter that switches it off or shrinks it.
PART_PARAMETERS = {"sampling": "steps", "stein": "stein_probes", "eig": "eig", "lte_ref": "lte_ref",
                   "lipschitz": "lipschitz", "stein_oracle": "stein_oracle"}  # fmt: skip
REPEATS = 3  # timed passes per kind at start-up (after one warm-up); the fastest counts
REFERENCE_BATCH = 256  # the largest batch timed at start-up (the time per call is linear in the batch)


@dataclass(frozen=True)
class Timing:
    """One model's measured time per call at ``batch`` samples and the other kinds' ratios to it."""

    call_s: float
    batch: int
    ratios: Mapping[str, float]

    def seconds(self, model_calls: float, batch: int) -> float:
        return model_calls * self.call_s * batch / self.batch


@dataclass(frozen=True)
class Cost:
    """A request's estimated cost: passes through the model by kind, model-call equivalents
    (in total and per part, over its runs: 2 with compare), and seconds at the request's batch."""

    passes: Mapping[str, float]
    parts: Mapping[str, float]
    model_calls: float
    seconds: float
    runs: int = 1

    def text(self, budget: float | None = None) -> str:
        """'≈ N model calls ≈ S s' (and the budget), for the page."""
        limit = f" (limit {budget:,.0f} s)" if budget is not None else ""
        return f"Estimated cost: ≈ {self.model_calls:,.0f} model calls ≈ {_seconds(self.seconds)}{limit}"


def _seconds(s: float) -> str:
    return f"{s:,.1f} s" if s < 100 else f"{s:,.0f} s"


def run_budget(environ: Mapping[str, str] = os.environ) -> float:
    """The server's budget per run in seconds: ``STIFFVIZ_RUN_BUDGET_S`` or ``RUN_BUDGET_S``."""
    text = environ.get(BUDGET_VARIABLE, "").strip()
    if not text:
        return RUN_BUDGET_S
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise ParameterError(BUDGET_VARIABLE, f"must be a positive number of seconds, got {text!r}")
    return value


# ---------------------------------------------------------------- counting passes
def _terms(model, cfg: float, autoguidance: float) -> list:
    """The models a guided evaluation calls: the model, again for CFG, the weak one for Autoguidance."""
    return [model] + [model] * (cfg != 1.0) + [getattr(model, "weak", None) or model] * (autoguidance != 1.0)


def _stages(solver) -> tuple[int, bool]:
    """(passes per step, first-same-as-last) of a solver."""
    tableau = getattr(solver, "tableau", None)
    return (tableau.stages, tableau.fsal) if tableau is not None else (1, False)


def run_passes(model, settings: Mapping[str, Any]) -> dict[str, Counter]:
    """Passes through the model by part of the run and kind, for one :func:`stiffviz.sample` run
    of ``model`` with ``settings`` (its keyword settings); see the module docstring."""
    config = SampleConfig(model=getattr(model, "name", "model"), **settings).validate()
    sigmas = [float(s) for s in sampling_grid(model, config)]
    if config.adaptive:  # every attempt the cap allows (an upper bound, rejected attempts included)
        sigmas = attempt_grid(sigmas, config.steps)
    terms = _terms(model, config.cfg, config.autoguidance)
    n = len(terms)
    own = sum(hasattr(m, "denoiser_jvp") for m in terms)
    guided_jvp = Counter(own_jvp=own, jvp=n - own)  # one GuidedDenoiser.jvp
    solver = get_solver(config.solver)
    stages, fsal = _stages(solver)
    stein = config.stein_diff()
    gamma_fixed = stein is None or stein.gamma_min == stein.gamma_max == 1.0
    exact = config.eig_method in ("auto", "exact") and all(hasattr(m, "denoiser_jacobian") for m in terms)
    lanczos = min(config.lanczos_iterations, int(torch.Size(model.shape).numel()))
    parts: dict[str, Counter] = {name: Counter() for name in PART_PARAMETERS}
    carried = False
    churn = config.stochastic()
    for i, (sigma, sigma_next) in enumerate(zip(sigmas, sigmas[1:])):
        carried = carried and churn.gamma(sigma, len(sigmas) - 1) == 0.0  # a churned state has no stage to reuse
        candidate = 1 if sigma_next == 0.0 else stages  # T's passes
        through = 1 if sigma_next == 0.0 else stages - fsal  # T's passes its result depends on
        if stein is not None and sigma_next > 0.0 and stein.acts_at(sigma):
            parts["sampling"]["call"] += stages * n
            parts["stein"]["backward"] += config.stein_probes * through * n
            carried = fsal and gamma_fixed
        elif sigma_next == 0.0:
            parts["sampling"]["call"] += (not carried) * n
        else:
            parts["sampling"]["call"] += (stages - carried) * n
            carried = fsal
        if config.erk_guid is not None and sigma_next > 0.0 and (i > 0 or solver.pair == "within"):
            carried = False  # ERK-Guid's correction moved the state: no stage to reuse
        if config.eig:
            if exact:
                parts["eig"]["jacobian"] += n
            else:
                parts["eig"].update({k: v * (config.eig_iterations + lanczos) for k, v in guided_jvp.items()})
                parts["eig"]["call"] += n
                parts["eig"]["backward"] += lanczos * n
        if config.lte_ref and sigma_next > 0.0:
            parts["lte_ref"]["call"] += 4 * config.lte_ref_substeps * n
        if config.lipschitz:
            iterations = config.lipschitz_iterations
            parts["lipschitz"].update(call=candidate * n, jvp=(iterations + 1) * candidate * n,
                                      backward=iterations * through * n)  # fmt: skip
        if config.stein_oracle and sigma_next > 0.0:
            parts["stein_oracle"]["call"] += candidate * n
    return parts


def estimate(request: Request, model, timing: Timing | None = None) -> Cost:
    """The cost of ``request`` (the run, and its unguided twin with ``compare``) on ``model``,
    with ``timing`` (default: the model's, measured once by :func:`timing_for`)."""
    from .live import Session  # the runs a request makes are the Session's plan

    timing = timing or timing_for(model)
    passes: Counter = Counter()
    parts: dict[str, float] = {}
    plan = Session(request).plan()
    for _, settings in plan:
        for part, counter in run_passes(model, settings).items():
            calls = sum(count * timing.ratios.get(kind, 1.0) for kind, count in counter.items())
            parts[part] = parts.get(part, 0.0) + calls
            passes.update(counter)
    model_calls = sum(parts.values())
    seconds = timing.seconds(model_calls, request.settings["batch"])
    return Cost(dict(passes), parts, model_calls, seconds, len(plan))


def admit(request: Request, model, budget: float | None = None) -> Cost:
    """The request's :class:`Cost` if it fits the budget per run (default :func:`run_budget`),
    else a :class:`ParameterError` naming the costliest part's parameter, the estimate and the limit."""
    budget = run_budget() if budget is None else budget
    cost = estimate(request, model)
    if cost.seconds > budget:
        part = max(cost.parts, key=cost.parts.get)
        share = cost.parts[part] / cost.model_calls
        raise ParameterError(
            PART_PARAMETERS[part],
            f"this request would take about {cost.model_calls:,.0f} model calls ≈ {_seconds(cost.seconds)} "
            f"({share:.0%} of it {part}{', over both runs of compare' if cost.runs > 1 else ''}), over the "
            f"server's limit of {budget:,.0f} s per run; lower the steps or the batch, or turn off "
            "costly diagnostics or compare",
        )
    return cost


def cost_note(values: Mapping[str, Any], models: list[str], lookup: Callable[[str], Any]) -> str:
    """The page's note under the Run button: the estimate and the limit, or why the inputs fail."""
    try:
        request = parse_request(values, models, lookup)
        budget = run_budget()
        cost = estimate(request, lookup(request.model))
    except ParameterError as err:
        return f"⚠️ {err}"
    over = " — **over the limit: refused**" if cost.seconds > budget else ""
    return cost.text(budget) + over


# ---------------------------------------------------------------- measuring
_TIMINGS: "weakref.WeakKeyDictionary[Any, Timing]" = weakref.WeakKeyDictionary()
_BY_NAME: dict[str, Timing] = {}


def _best_time(fn: Callable[[], Any], device: torch.device) -> float:
    """Seconds of one ``fn()``: the least of ``REPEATS`` timed calls after a warm-up. On the CPU
    each call counts the process's CPU time per torch thread where that is less than the wall
    time, so other processes busy on the machine at start-up do not inflate it; on a GPU, the
    wall time to the device's synchronisation."""
    cuda = device.type == "cuda"
    fn()
    times = []
    for _ in range(REPEATS):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        if cuda:
            torch.cuda.synchronize(device)
        wall, cpu = time.perf_counter() - wall, (time.process_time() - cpu) / torch.get_num_threads()
        times.append(wall if cuda else min(wall, cpu))
    return max(min(times), 1e-9)


def measure(model, batch: int) -> Timing:
    """Time one call of ``model`` on ``batch`` samples, and each other kind of pass relative to it
    (unconditional, at σ = 1, on the model's device; the kinds it cannot make are left out)."""
    device = torch.device(getattr(model, "device", "cpu"))
    generator = torch.Generator().manual_seed(0)
    x = torch.randn((batch, *model.shape), generator=generator).to(device)
    v = torch.randn((batch, *model.shape), generator=generator).to(device)
    sigma = 1.0

    def backward():
        with torch.enable_grad():
            y = x.detach().requires_grad_(True)
            torch.autograd.grad(model(y, sigma), y, grad_outputs=v)

    with torch.no_grad():
        call = _best_time(lambda: model(x, sigma), device)
        ratios = {"call": 1.0, "jvp": _best_time(lambda: jvp(lambda y: model(y, sigma), x, v, key=model), device) / call,
                  "backward": max(_best_time(backward, device) / call - 1.0, 0.0)}  # fmt: skip
        if hasattr(model, "denoiser_jvp"):
            ratios["own_jvp"] = _best_time(lambda: model.denoiser_jvp(x, sigma, v), device) / call
        if hasattr(model, "denoiser_jacobian"):
            spectrum = ExactSpectrum(guided_denoiser(model).jacobian)
            ratios["jacobian"] = _best_time(lambda: spectrum.estimate(x, sigma), device) / call
    return Timing(call, batch, ratios)


def timing_for(model, name: str | None = None, batch: int | None = None) -> Timing:
    """``model``'s :class:`Timing`, measured on first use (at ``batch``, at most and by default
    ``REFERENCE_BATCH``) and kept; ``name`` also files it for :func:`seconds_per_call`."""
    if model not in _TIMINGS:
        _TIMINGS[model] = measure(model, min(batch or REFERENCE_BATCH, REFERENCE_BATCH))
    if name is not None:
        _BY_NAME[name] = _TIMINGS[model]
    return _TIMINGS[model]


def seconds_per_call(name: str, batch: int | None = None) -> float:
    """The measured seconds of one call of the server's model ``name`` at ``batch`` samples
    (default: the batch it was measured at), linear in the batch."""
    if name not in _BY_NAME:
        raise ParameterError("model", f"{name!r} has no measured time per call; the server measures its models at start-up")
    timing = _BY_NAME[name]
    return timing.seconds(1.0, timing.batch if batch is None else batch)
