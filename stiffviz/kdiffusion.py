"""Drop-in replacements for k-diffusion's deterministic samplers that record stiffviz's diagnostics.

``sample_euler``, ``sample_heun``, ``sample_dpm_2``, ``sample_dpmpp_2m`` and
``sample_euler_ancestral`` take the same arguments as the functions of the same name in
``k_diffusion.sampling`` and, with guidance off and the same noise, return the same state (the
same solvers, docs/math.md §2: Euler, EDM Heun, DPM-Solver-2 with σ_mid = √(σ_i σ_{i+1}),
DPM-Solver++(2M); each the Euler step x = D to σ = 0; EDM's churn and Euler ancestral, §11). They run :func:`stiffviz.sampler.integrate`, so every step also gets the cheap
diagnostics (secant stiffness ρ̂, z = hρ̂, the embedded error ‖e‖, docs/math.md §3) and,
on request, the costly ones and ERK-Guid (docs/math.md §4) or SteinDiff (§5)::

    from stiffviz.kdiffusion import sample_heun
    x = sample_heun(model, x, sigmas, extra_args={"cond": c}, erk_guid=1.0)

``model(x, sigma, **extra_args)`` is any k-diffusion-convention denoiser (k-diffusion's own
wrappers included); σ reaches it as a tensor of shape (B,) in ``x``'s dtype and device,
like ``sigma * x.new_ones(B)``. The state stays on ``x``'s device and dtype; ``sigmas``
(strictly decreasing, ≥ 0; a trailing 0 as ``get_sigmas_karras`` appends it, or not) may
live on any device and is read once as float64 on the CPU.

Where the results differ from k-diffusion's: the solvers compute their step coefficients
(h, σ_mid, e^{−h}) in float64 from the values of ``sigmas``, k-diffusion in the dtype of
``sigmas``; with float64 sigmas the two agree to rounding (≤ 1e-6), with float32 sigmas they
differ at float32 rounding of those coefficients (relative ~1e-7). A run whose state becomes
non-finite stops there with a warning and returns the last finite state (k-diffusion returns
the non-finite one); the trace says at which step.

**Noise.** ``s_churn`` > 0 (Euler, Heun, DPM-Solver-2) and ``sample_euler_ancestral`` draw
ε from ``noise_sampler(σ_i, σ_{i+1})``, k-diffusion's convention (a keyword of every drop-in
here; k-diffusion's ``sample_heun`` has none). Its default is not k-diffusion's global
``torch.randn_like``: a generator seeded with ``seed + stiffviz.stochastic.NOISE_SEED_OFFSET``
draws on the CPU, so ``seed`` alone reproduces a run; on the CPU,
``torch.manual_seed(seed + NOISE_SEED_OFFSET)`` before k-diffusion's sampler gives it the same ε
(churn draws on every step, as k-diffusion does). ERK-Guid is refused with noise (docs/math.md §11).

**Callback.** ``callback`` receives k-diffusion's dict once per step,
``{'x': x_i (the state at σ_i before the step), 'i': i, 'sigma': sigmas[i],
'sigma_hat': sigmas[i], 'denoised': D(x_i; σ_i)}`` (with churn, x̂_i, σ̂_i and D(x̂_i; σ̂_i)), plus ``'diagnostics'``: the step's trace
record (``stiffness``, ``stiffness_z``, ``lte``, ... as numpy arrays per sample; see
:mod:`stiffviz.trace`). Because the diagnostics exist only once the step is computed, the
callback runs after step i (k-diffusion calls it in the middle of the step); its values are
those k-diffusion's callback gets. A step whose result is non-finite gets no callback.

**Trace.** ``return_trace=True`` returns ``(x, trace)`` with the :class:`stiffviz.Trace`;
``trace=[]`` (any list) receives the Trace by ``append`` when the run ends, for code that
must keep the plain tensor return value (a pipeline that calls ``sample_euler`` itself).

**Progress bar.** A tqdm bar (``tqdm.auto``) over the steps unless ``disable`` is truthy;
``disable=None`` is tqdm's own default (no bar when stderr is not a terminal), as in
k-diffusion. tqdm is the optional extra ``pip install stiffviz[kdiffusion]``; without it the
run goes on without a bar after one warning.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, replace
from typing import Any, Callable

import torch

from .diagnostics.ground_truth import DiagnosticOptions
from .errors import ParameterError
from .guidance.erk import ErkGuid, default_erk_con
from .guidance.stein import SteinDiff
from .models.base import CallableDenoiser
from .sampler import integrate
from .solvers import AncestralEuler, get_solver
from .stochastic import NoiseSampler, Stochastic, noise_injection
from .trace import Trace

Callback = Callable[[dict], Any]
Result = torch.Tensor | tuple[torch.Tensor, Trace]


def sample_euler(model: Callable[..., torch.Tensor], x: torch.Tensor, sigmas: torch.Tensor, extra_args: dict | None = None,
                 callback: Callback | None = None, disable: bool | None = None, s_churn: float = 0.0,
                 s_tmin: float = 0.0, s_tmax: float = float("inf"), s_noise: float = 1.0, *, erk_guid: float | None = None,
                 erk_con: float | None = None, diagnostics: bool | DiagnosticOptions = True, eig: bool = False,
                 lte_ref: bool = False, lipschitz: bool = False, stein: SteinDiff | None = None, seed: int = 0,
                 noise_sampler: NoiseSampler | None = None, trace: list | None = None,
                 return_trace: bool = False) -> Result:  # fmt: skip
    """k-diffusion's ``sample_euler``: x_{i+1} = x_i + h f(x_i; σ_i), stiffviz's ``euler`` (with churn from σ̂_i)."""
    return _run("euler", "sample_euler", **locals())


def sample_heun(model: Callable[..., torch.Tensor], x: torch.Tensor, sigmas: torch.Tensor, extra_args: dict | None = None,
                callback: Callback | None = None, disable: bool | None = None, s_churn: float = 0.0,
                s_tmin: float = 0.0, s_tmax: float = float("inf"), s_noise: float = 1.0, *, erk_guid: float | None = None,
                erk_con: float | None = None, diagnostics: bool | DiagnosticOptions = True, eig: bool = False,
                lte_ref: bool = False, lipschitz: bool = False, stein: SteinDiff | None = None, seed: int = 0,
                noise_sampler: NoiseSampler | None = None, trace: list | None = None,
                return_trace: bool = False) -> Result:  # fmt: skip
    """k-diffusion's ``sample_heun``: EDM Heun, Euler to σ = 0, stiffviz's ``heun``; with churn EDM's Algorithm 2."""
    return _run("heun", "sample_heun", **locals())


def sample_dpm_2(model: Callable[..., torch.Tensor], x: torch.Tensor, sigmas: torch.Tensor, extra_args: dict | None = None,
                 callback: Callback | None = None, disable: bool | None = None, s_churn: float = 0.0,
                 s_tmin: float = 0.0, s_tmax: float = float("inf"), s_noise: float = 1.0, *, erk_guid: float | None = None,
                 erk_con: float | None = None, diagnostics: bool | DiagnosticOptions = True, eig: bool = False,
                 lte_ref: bool = False, lipschitz: bool = False, stein: SteinDiff | None = None, seed: int = 0,
                 noise_sampler: NoiseSampler | None = None, trace: list | None = None,
                 return_trace: bool = False) -> Result:  # fmt: skip
    """k-diffusion's ``sample_dpm_2``: DPM-Solver-2 with σ_mid = √(σ_i σ_{i+1}), stiffviz's ``dpm2`` (with churn from σ̂_i)."""
    return _run("dpm2", "sample_dpm_2", **locals())


def sample_dpmpp_2m(model: Callable[..., torch.Tensor], x: torch.Tensor, sigmas: torch.Tensor, extra_args: dict | None = None,
                    callback: Callback | None = None, disable: bool | None = None, *, erk_guid: float | None = None,
                    erk_con: float | None = None, diagnostics: bool | DiagnosticOptions = True, eig: bool = False,
                    lte_ref: bool = False, lipschitz: bool = False, stein: SteinDiff | None = None, seed: int = 0,
                    trace: list | None = None, return_trace: bool = False) -> Result:  # fmt: skip
    """k-diffusion's ``sample_dpmpp_2m``: DPM-Solver++(2M), first order on step 0; stiffviz's ``dpmpp2m``."""
    return _run("dpmpp2m", "sample_dpmpp_2m", **locals())


def sample_euler_ancestral(model: Callable[..., torch.Tensor], x: torch.Tensor, sigmas: torch.Tensor,
                           extra_args: dict | None = None, callback: Callback | None = None, disable: bool | None = None,
                           eta: float = 1.0, s_noise: float = 1.0, noise_sampler: NoiseSampler | None = None, *,
                           diagnostics: bool | DiagnosticOptions = True, eig: bool = False, lte_ref: bool = False,
                           lipschitz: bool = False, stein: SteinDiff | None = None, seed: int = 0,
                           trace: list | None = None, return_trace: bool = False) -> Result:  # fmt: skip
    """k-diffusion's ``sample_euler_ancestral``: Euler from σ_i to σ_down, then σ_up·s_noise·ε up to
    σ_{i+1} (docs/math.md §11); stiffviz's ``euler_ancestral`` with η = ``eta``."""
    return _run(AncestralEuler(eta), "sample_euler_ancestral", erk_guid=None, erk_con=None, **locals())


def _options(diagnostics: bool | DiagnosticOptions, eig: bool, lte_ref: bool, lipschitz: bool) -> DiagnosticOptions:
    """``diagnostics`` (a bool switches the cheap ones) with ``eig``/``lte_ref``/``lipschitz`` switched on where True."""
    base = diagnostics if isinstance(diagnostics, DiagnosticOptions) else DiagnosticOptions(diagnostics=bool(diagnostics))
    return replace(base, eig=base.eig or bool(eig), lte_ref=base.lte_ref or bool(lte_ref),
                   lipschitz=base.lipschitz or bool(lipschitz))  # fmt: skip


def _progress_bar(total: int, disable: bool | None):
    """tqdm.auto's bar (k-diffusion's semantics of ``disable``), or None without tqdm or when disabled."""
    if disable:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        warnings.warn("stiffviz.kdiffusion: tqdm is not installed, so no progress bar is shown; "
                      "install it with pip install 'stiffviz[kdiffusion]' (or pass disable=True)", stacklevel=4)  # fmt: skip
        return None
    return tqdm(total=total, disable=disable)


def _check(x: torch.Tensor, sigmas, stein, trace, seed: int) -> torch.Tensor:
    """Validate the inputs; return ``sigmas`` as a 1-D float64 CPU tensor."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim < 1:
        raise ParameterError("x", "must be a floating-point tensor of shape (B, ...)")
    grid = torch.as_tensor(sigmas).detach().to("cpu", torch.float64)
    if grid.ndim != 1 or len(grid) < 1:
        raise ParameterError("sigmas", f"must be a 1-D tensor of noise levels, got shape {tuple(grid.shape)}")
    if stein is not None and not isinstance(stein, SteinDiff):
        raise ParameterError("stein", f"must be a stiffviz.guidance.stein.SteinDiff or None, got {type(stein).__name__}")
    if trace is not None and not callable(getattr(trace, "append", None)):
        raise ParameterError("trace", f"must be a list (it receives the Trace) or None, got {type(trace).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ParameterError("seed", f"must be an integer in [0, 2**63 - 1], got {seed!r}")
    return grid


def _name(model) -> str:
    """A label for the trace: the model's ``name``, a function's name, or the class name."""
    return str(getattr(model, "name", None) or getattr(model, "__name__", None) or type(model).__name__)


def _run(solver: str | AncestralEuler, sampler: str, *, model: Callable[..., torch.Tensor], x: torch.Tensor, sigmas,
         extra_args: dict | None, callback: Callback | None, disable: bool | None, erk_guid: float | None,
         erk_con: float | None, diagnostics: bool | DiagnosticOptions, eig: bool, lte_ref: bool, lipschitz: bool,
         stein: SteinDiff | None, seed: int, trace: list | None, return_trace: bool, noise_sampler: NoiseSampler | None = None,
         s_churn: float = 0.0, s_tmin: float = 0.0, s_tmax: float = float("inf"), s_noise: float = 1.0,
         eta: float = 0.0) -> Result:  # fmt: skip
    """Integrate with stiffviz's ``solver`` (a name, or the ancestral solver), adapting k-diffusion's
    model, callback, noise sampler and progress bar. Takes the drop-in's arguments by name."""
    grid = _check(x, sigmas, stein, trace, seed)
    solver = get_solver(solver) if isinstance(solver, str) else solver
    try:
        churn = Stochastic(s_churn, s_tmin, s_tmax, s_noise)
    except ParameterError as err:  # k-diffusion's name for S_churn
        raise ParameterError("s_churn", str(err).removeprefix("churn: ")) if err.parameter == "churn" else err
    noise = noise_injection(churn, solver, len(grid) - 1, x, seed, noise_sampler)
    erk_con = default_erk_con(len(grid) - 1) if erk_con is None else erk_con  # the authors' w_con by steps
    erk = ErkGuid(erk_guid, erk_con) if erk_guid is not None else None
    options = _options(diagnostics, eig, lte_ref, lipschitz)
    denoise = CallableDenoiser(model, tuple(x.shape[1:]), extra_args=extra_args)
    config = {"sampler": f"stiffviz.kdiffusion.{sampler}", "model": _name(model),
              "solver": solver.name, "steps": len(grid) - 1, "batch": x.shape[0], "shape": list(x.shape[1:]), "seed": seed,
              "schedule": "custom", "path": "edm", "dtype": str(x.dtype).removeprefix("torch."), "device": str(x.device),
              "erk_guid": erk_guid, "erk_con": erk_con, "stein": stein is not None,
              "stein_settings": None if stein is None else asdict(stein), **asdict(options),
              "churn": s_churn, "s_tmin": s_tmin, "s_tmax": s_tmax, "s_noise": s_noise, "eta": eta}  # fmt: skip
    bar = _progress_bar(len(grid) - 1, disable)
    before = [x]  # the state at σ_i before step i

    def on_step(record: dict, x_next: torch.Tensor, denoised: torch.Tensor) -> None:
        i = record["i"]
        if callback is not None:
            start = (noise.x_hat, record.get("sigma_hat", sigmas[i])) if noise is not None else (before[0], sigmas[i])
            callback({"x": start[0], "i": i, "sigma": sigmas[i], "sigma_hat": start[1], "denoised": denoised,
                      "diagnostics": record})  # fmt: skip
        before[0] = x_next
        if bar is not None:
            bar.update(1)

    try:
        with torch.no_grad():
            out, run = integrate(denoise, grid, x, solver, erk=erk, diagnostics=options, on_step=on_step,
                                 config=config, stein=stein, seed=seed, noise=noise)  # fmt: skip
    finally:
        if bar is not None:
            bar.close()
    if run.status != "ok":
        warnings.warn(f"stiffviz.kdiffusion.{sampler}: {run.message}; returning the last finite state", stacklevel=3)
    if trace is not None:
        trace.append(run)
    return (out, run) if return_trace else out
