"""The scheduler decides the ODE: one family per diffusers scheduler class (docs/math.md §1, §9).

Every family maps the engine's state and noise level to the network's input and its output
back to the denoised estimate, so that Euler on ``model_sigmas(N)`` is the scheduler's own
deterministic ``step()`` loop (the tests compare them step for step):

``network_input(x, σ) -> (x_in, timestep)`` and ``denoised(x, σ, output) -> D``; σ is a float64
tensor of shape (B,), the coefficients are formed in float64 and applied in ``x.dtype``.

**VP: DDPMScheduler, DDIMScheduler.** Trained on x_t = sqrt(ᾱ_t)·x0 + sqrt(1 − ᾱ_t)·ε at integer
t; the EDM state is x = x_t / sqrt(ᾱ_t) = x0 + σ_t·ε with σ_t = sqrt((1 − ᾱ_t)/ᾱ_t), so
x_in = x / sqrt(1 + σ²) and

    epsilon:       D = x − σ·ε̂
    v_prediction:  D = x/(1 + σ²) − σ/sqrt(1 + σ²)·v̂        (v = sqrt(ᾱ)ε − sqrt(1 − ᾱ)x0)
    sample:        D = x̂0

with ``clip_sample`` the scheduler's clamp of D to ±``clip_sample_range``. The grid is σ at the
consecutive timesteps of ``set_timesteps(N)``, then 0. Euler there is DDIM with η = 0: DDIM's
update in EDM variables is x' = D + σ'(x − D)/σ (with a clamped D this is DDIM's
``use_clipped_model_output=True``). The timestep of an arbitrary σ interpolates t linearly in
log σ over the table (an integer on the table). DDPM's own step is ancestral (stochastic); its
probability-flow ODE is this one. Two documented differences from diffusers' DDIM loop: its last
step lands on ᾱ = ``final_alpha_cumprod`` (σ > 0 when ``set_alpha_to_one=False``) where ours goes
to σ = 0 and returns D (DDIM's last ``pred_original_sample``); and DDIM jumps from t_i to
t_i − T//N, which is t_{i+1} only for consistent spacings (``leading``, or ``trailing`` with N | T).

**EulerDiscreteScheduler.** The same VP variables, but the scheduler holds σ itself: its grid is
its own ``sigmas`` and the network gets its ``timesteps``. With the default linear
interpolation, σ(t) interpolates the float32 table σ_k linearly in t at non-integer t, so
t(σ) is the inverse of that piecewise-linear map; with Karras, exponential or beta sigmas the
scheduler derives t from σ by linear interpolation in log σ (``_sigma_to_t``), and so do we.

**EDMEulerScheduler.** Native EDM preconditioning with σ_d = ``sigma_data``:
c_in = 1/sqrt(σ² + σ_d²), c_noise = ¼ ln σ (the network's timestep, ``precondition_noise``),
c_skip = σ_d²/(σ² + σ_d²), c_out = ±σσ_d/sqrt(σ² + σ_d²) (+ epsilon, − v_prediction), and
D = c_skip·x + c_out·F(c_in·x, c_noise).

**FlowMatchEulerDiscreteScheduler** (``path = "flow"``). The state is x_t = (1 − t)·x0 + t·ε with
t the scheduler's sigma in [0, 1]; the network gets x_t and the timestep t·T
(T = ``num_train_timesteps``) and returns the velocity v, and D_flow = x_t − t·v, so the engine's
(x − D)/t is v and Euler is the scheduler's x' = x + (t' − t)·v. The grid is the scheduler's own
``set_timesteps(N)`` sigmas (with its shift, t_0 = 1, ending at 0). With
``use_dynamic_shifting`` the shift μ is computed the way ``StableDiffusion3Pipeline`` does for the
model's sample size: image_seq_len = (H // p)·(W // p) with p the network's patch size (1 for a
UNet), μ linear in image_seq_len between (``base_image_seq_len``, ``base_shift``) and
(``max_image_seq_len``, ``max_shift``).

Where the scheduler's last sigma is not 0 (``final_sigmas_type="sigma_min"``) the grid ends at 0
instead: the last step returns D. Options that change these rules and are not implemented
(``thresholding``, ``timestep_type="continuous"``, ``interpolation_type="log_linear"``,
``invert_sigmas``, ``stochastic_sampling``) are refused by name.
"""

from __future__ import annotations

import numpy as np
import torch

from ...config import MAX_STEPS
from ...errors import ParameterError

PREDICTIONS = {
    "DDPMScheduler": ("epsilon", "v_prediction", "sample"),
    "DDIMScheduler": ("epsilon", "v_prediction", "sample"),
    "EulerDiscreteScheduler": ("epsilon", "v_prediction", "sample"),
    "EDMEulerScheduler": ("epsilon", "v_prediction"),
    "FlowMatchEulerDiscreteScheduler": ("flow",),
}
SUPPORTED = tuple(PREDICTIONS)


def _column(values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(B,) float64 coefficients as (B, 1, …, 1) in x's dtype."""
    return values.to(x.dtype).reshape(-1, *([1] * (x.ndim - 1)))


def _check_steps(steps: int, high: int) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= high:
        raise ParameterError("steps", f"must be an integer in [1, {high}] for this model, got {steps!r}")
    return steps


def _grid(sigmas: torch.Tensor, name: str) -> torch.Tensor:
    """σ_0 > … > σ_{N−1} (the scheduler's σ at its N timesteps) followed by 0, float64."""
    sigmas = sigmas.to("cpu", torch.float64)
    grid = torch.cat([sigmas, sigmas.new_zeros(1)])
    if not bool(torch.isfinite(grid).all()) or not bool((grid.diff() < 0).all()):
        raise ParameterError("steps", f"{name}: the scheduler's grid is not strictly decreasing for this many steps")
    return grid


class VPFamily:
    """DDPMScheduler / DDIMScheduler: VP at integer timesteps (module docstring)."""

    path = "edm"

    def __init__(self, scheduler, prediction_type: str, name: str):
        self.scheduler, self.prediction_type, self.name = scheduler, prediction_type, name
        config = scheduler.config
        if config.get("thresholding", False):
            raise ParameterError("model", f"{name}: the scheduler's thresholding=True (dynamic thresholding) is not supported")
        self.clip = float(config.get("clip_sample_range", 1.0)) if config.get("clip_sample", False) else None
        alphas = scheduler.alphas_cumprod.to(torch.float64)  # the scheduler's float32 values, widened
        sigmas = ((1 - alphas) / alphas).sqrt()
        self.sigma_table = sigmas  # σ_t for t = 0 … T−1 (∞ where ᾱ = 0)
        valid = torch.isfinite(sigmas) & (sigmas > 0)
        self._t = torch.arange(len(alphas), dtype=torch.float64)[valid]
        self._log_sigma = sigmas[valid].log()
        if len(self._t) < 2 or not bool((self._log_sigma.diff() > 0).all()):
            raise ParameterError("model", f"{name}: the scheduler's σ_t must increase strictly with t")
        self.sigma_min, self.sigma_max = float(sigmas[valid][0]), float(sigmas[valid][-1])

    def timesteps(self, steps: int) -> torch.Tensor:
        """The scheduler's own ``set_timesteps(steps)`` timesteps (long, decreasing)."""
        _check_steps(steps, int(self.scheduler.config.num_train_timesteps))
        self.scheduler.set_timesteps(steps)
        return self.scheduler.timesteps.to("cpu", torch.long).clone()

    def model_sigmas(self, steps: int) -> torch.Tensor:
        t = self.timesteps(steps)
        sigmas = self.sigma_table[t]
        if not bool(torch.isfinite(sigmas).all()):
            raise ParameterError("model", f"{self.name}: timestep {int(t[0])} has ᾱ = 0 (zero terminal SNR, σ = ∞), where "
                                          "the EDM ODE cannot start; use timestep_spacing='leading'")  # fmt: skip
        return _grid(sigmas, self.name)

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        """t(σ): t linear in log σ between table entries, σ clamped to the table's range."""
        return _log_interp(sigma, self._log_sigma, self._t)

    def network_input(self, x: torch.Tensor, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x * _column((1 + sigma * sigma).rsqrt(), x), self.timestep(sigma)

    def denoised(self, x: torch.Tensor, sigma: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        d = _vp_denoised(x, sigma, output, self.prediction_type)
        return d.clamp(-self.clip, self.clip) if self.clip is not None else d


class EulerFamily(VPFamily):
    """EulerDiscreteScheduler: VP σ's held by the scheduler itself (module docstring)."""

    def __init__(self, scheduler, prediction_type: str, name: str):
        config = scheduler.config
        for option, default in (("timestep_type", "discrete"), ("interpolation_type", "linear")):
            if config.get(option, default) != default:
                raise ParameterError("model", f"{name}: EulerDiscreteScheduler with {option}={config[option]!r} is not "
                                              f"supported (only {option}={default!r})")  # fmt: skip
        super().__init__(scheduler, prediction_type, name)
        self.clip = None
        # the scheduler's own table: σ_k computed in float32 from its float32 ᾱ_k, as set_timesteps does
        table = (((1 - scheduler.alphas_cumprod) / scheduler.alphas_cumprod) ** 0.5).numpy()
        self._table = torch.from_numpy(table.astype(np.float64))
        self._log_table = torch.from_numpy(np.log(table).astype(np.float64))
        self._log_rule = any(config.get(k, False) for k in ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas"))
        self.sigma_min, self.sigma_max = float(self._table[0]), float(self._table[-1])

    def model_sigmas(self, steps: int) -> torch.Tensor:
        _check_steps(steps, int(self.scheduler.config.num_train_timesteps))
        self.scheduler.set_timesteps(steps)
        return _grid(self.scheduler.sigmas[:-1], self.name)  # its last σ (0 or σ_min) → 0

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        index = torch.arange(len(self._table), dtype=torch.float64)
        if self._log_rule:  # _sigma_to_t: t linear in log σ, clamped
            return _log_interp(sigma, self._log_table, index)
        return _interp(sigma, self._table, index)  # the inverse of σ(t) = interp(t, k, σ_k)


class EDMFamily:
    """EDMEulerScheduler: native EDM preconditioning (module docstring)."""

    path = "edm"

    def __init__(self, scheduler, prediction_type: str, name: str):
        self.scheduler, self.prediction_type, self.name = scheduler, prediction_type, name
        self.sigma_data = float(scheduler.config.sigma_data)
        self.sigma_min, self.sigma_max = float(scheduler.config.sigma_min), float(scheduler.config.sigma_max)

    def model_sigmas(self, steps: int) -> torch.Tensor:
        _check_steps(steps, MAX_STEPS)
        self.scheduler.set_timesteps(steps)
        return _grid(self.scheduler.sigmas[:-1], self.name)  # its last σ (0 or σ_min) → 0

    def network_input(self, x: torch.Tensor, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c_in = (sigma * sigma + self.sigma_data**2).rsqrt()
        return x * _column(c_in, x), 0.25 * sigma.log()

    def denoised(self, x: torch.Tensor, sigma: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        sd2 = self.sigma_data**2
        c_skip = sd2 / (sigma * sigma + sd2)
        c_out = sigma * self.sigma_data * (sigma * sigma + sd2).rsqrt()
        if self.prediction_type == "v_prediction":
            c_out = -c_out
        return _column(c_skip, x) * x + _column(c_out, x) * output


class FlowFamily:
    """FlowMatchEulerDiscreteScheduler: rectified flow, D_flow = x_t − t·v (module docstring)."""

    path = "flow"
    prediction_type = "flow"

    def __init__(self, scheduler, name: str, image_seq_len: int):
        self.scheduler, self.name = scheduler, name
        config = scheduler.config
        for option in ("invert_sigmas", "stochastic_sampling"):
            if config.get(option, False):
                raise ParameterError("model", f"{name}: FlowMatchEulerDiscreteScheduler with {option}=True is not supported")
        self.train_timesteps = int(config.num_train_timesteps)
        self.mu = None
        if config.get("use_dynamic_shifting", False):
            slope = (config.max_shift - config.base_shift) / (config.max_image_seq_len - config.base_image_seq_len)
            self.mu = image_seq_len * slope + config.base_shift - slope * config.base_image_seq_len
        self.sigma_min, self.sigma_max = float(scheduler.sigma_min), float(scheduler.sigma_max)

    def model_sigmas(self, steps: int) -> torch.Tensor:
        _check_steps(steps, self.train_timesteps)
        self.scheduler.set_timesteps(steps, mu=self.mu)
        return _grid(self.scheduler.sigmas[:-1], self.name)  # its last σ (0 or σ_min) → 0

    def network_input(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, t * self.train_timesteps

    def denoised(self, x: torch.Tensor, t: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        return x - _column(t, x) * output


def _vp_denoised(x: torch.Tensor, sigma: torch.Tensor, output: torch.Tensor, prediction: str) -> torch.Tensor:
    if prediction == "epsilon":
        return x - _column(sigma, x) * output
    if prediction == "v_prediction":
        return x * _column(1 / (1 + sigma * sigma), x) - _column(sigma * (1 + sigma * sigma).rsqrt(), x) * output
    return output  # sample: the network predicts x0


def _interp(value: torch.Tensor, table: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear interpolation of ``target`` against the increasing ``table`` (clamped)."""
    table, target = table.to(value.device), target.to(value.device)
    hi = torch.searchsorted(table, value.contiguous()).clamp(1, len(table) - 1)
    lo = hi - 1
    w = ((value - table[lo]) / (table[hi] - table[lo])).clamp(0, 1)
    return target[lo] + w * (target[hi] - target[lo])


def _log_interp(sigma: torch.Tensor, log_table: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return _interp(sigma.clamp_min(1e-10).log(), log_table, t)


def scheduler_family(scheduler, name: str, image_seq_len: int):
    """The family of ``scheduler`` (by class name); anything else is refused, naming what is supported."""
    kind = type(scheduler).__name__
    if kind not in PREDICTIONS:
        raise ParameterError("model", f"{name}: the scheduler {kind} is not supported; supported schedulers: {', '.join(SUPPORTED)}")
    if kind == "FlowMatchEulerDiscreteScheduler":
        return FlowFamily(scheduler, name, image_seq_len)
    prediction = scheduler.config.get("prediction_type", "epsilon")
    if prediction not in PREDICTIONS[kind]:
        raise ParameterError("model", f"{name}: prediction_type {prediction!r} is not supported with {kind}; "
                                      f"supported: {', '.join(PREDICTIONS[kind])}")  # fmt: skip
    family = {"DDPMScheduler": VPFamily, "DDIMScheduler": VPFamily, "EulerDiscreteScheduler": EulerFamily,
              "EDMEulerScheduler": EDMFamily}[kind]  # fmt: skip
    return family(scheduler, prediction, name)
