"""A local diffusers ``UNet2DModel`` (DDPM/DDIM, variance preserving) as an EDM denoiser.

The optional extra behind ``diffusers:PATH``: ``pip install diffusers``. Without it the rest
of stiffviz works; loading such a model raises a :class:`ParameterError` saying what to install.

**VP ↔ EDM.** A variance-preserving model is trained on ``x_t = sqrt(ᾱ_t)·x0 + sqrt(1 − ᾱ_t)·ε``
at integer times t = 0 … T−1, with ᾱ_t = Π_{s≤t}(1 − β_s) the scheduler's cumulative alphas.
Dividing by sqrt(ᾱ_t) gives the EDM variable (docs/math.md §1)

    x = x_t / sqrt(ᾱ_t) = x0 + σ_t·ε,      σ_t = sqrt((1 − ᾱ_t) / ᾱ_t),   ᾱ = 1 / (1 + σ²).

**σ → t.** The table (t, σ_t) is strictly increasing in t. For any σ the continuous time is the
linear interpolation of t against log σ over that table, σ clamped to [σ_0, σ_{T−1}]
(``sigma_min``, ``sigma_max``); on a table entry this is exactly its integer t.

**The denoiser.** With ``x_vp = x / sqrt(1 + σ²)`` (= sqrt(ᾱ)·x) and the UNet's output at time t:

    epsilon:       ε̂ = UNet(x_vp, t)
    v_prediction:  v̂ = UNet(x_vp, t),  ε̂ = sqrt(ᾱ)·v̂ + sqrt(1 − ᾱ)·x_vp   (v = sqrt(ᾱ)ε − sqrt(1−ᾱ)x0)
    D(x; σ) = x − σ·ε̂          (x0 = (x_vp − sqrt(1 − ᾱ)·ε̂)/sqrt(ᾱ) = x − σ ε̂)

with ᾱ = 1/(1 + σ²). A UNet with twice the input channels (learned variance) gives ε̂ or v̂
in its first half.

**Sampling on the model's grid.** ``timestep_sigmas(N)`` gives σ_{t_i} for the timesteps
t_0 > … > t_{N−1} of the scheduler's own ``set_timesteps(N)``. Euler on
``[σ_{t_0}, …, σ_{t_{N−1}}, 0]`` from ``x = sqrt(1 + σ_{t_0}²)·x_T`` is deterministic DDIM (η = 0,
``set_alpha_to_one=True``) step for step: DDIM's update in EDM variables is
x' = x̂0 + σ'·ε̂ = x + (σ' − σ)·ε̂ = x + (σ' − σ)(x − D)/σ, Euler's step.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ..errors import ParameterError
from .base import cond_per_sample, sigma_per_sample

INSTALL_MESSAGE = "diffusers:PATH needs the optional diffusers package: pip install diffusers"
PREDICTION_TYPES = ("epsilon", "v_prediction")


def _import_diffusers():
    try:
        from diffusers import DDIMScheduler, UNet2DModel
    except ImportError as error:
        raise ParameterError("model", INSTALL_MESSAGE) from error
    return UNet2DModel, DDIMScheduler


def _locate(path: str) -> tuple[Path, Path]:
    """(UNet folder, scheduler folder) for the flat layout or the pipeline layout."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise ParameterError("model", f"diffusers:PATH must be a local folder; {path!r} is not one")
    if (root / "unet").is_dir():
        unet_dir = root / "unet"
    elif (root / "config.json").is_file():
        unet_dir = root
    else:
        raise ParameterError("model", f"no diffusers UNet in {path!r}: expected config.json and weights there or in unet/")
    for scheduler_dir in (root / "scheduler", unet_dir, root):
        if (scheduler_dir / "scheduler_config.json").is_file():
            return unet_dir, scheduler_dir
    raise ParameterError("model", f"no scheduler_config.json in {path!r} (nor in its scheduler/ folder)")


def _unet_config(unet_dir: Path, path: str) -> dict:
    try:
        config = json.loads((unet_dir / "config.json").read_text())
    except (OSError, ValueError) as error:
        raise ParameterError("model", f"cannot read {unet_dir / 'config.json'} for {path!r}: {error}") from error
    name = config.get("_class_name", "UNet2DModel")
    if name != "UNet2DModel":
        raise ParameterError("model", f"{path!r} holds a {name}; diffusers:PATH takes a UNet2DModel")
    if config.get("time_embedding_type", "positional") == "fourier":
        raise ParameterError("model", f"{path!r} is a score-SDE UNet (Fourier time embedding); "
                                      "only variance-preserving DDPM/DDIM UNets are supported")
    if config.get("class_embed_type") is not None:
        raise ParameterError("model", f"{path!r} uses class_embed_type={config['class_embed_type']!r}; "
                                      "only num_class_embeds (a class-label table) is supported")
    return config


class DiffusersDenoiser:
    """D(x; σ, class) from a diffusers ``UNet2DModel`` and its VP scheduler (module docstring).

    Attributes: ``shape`` (C, H, W), ``classes`` (``('0', …)`` when ``num_class_embeds`` is set,
    else ``None``), ``name``, ``weak`` (``None``: no Autoguidance), ``device``, ``dtype``,
    ``prediction_type``, ``sigma_min``/``sigma_max`` (σ_0 and σ_{T−1}), ``alphas_cumprod``
    (float64, length T), ``unet`` and ``scheduler`` (a DDIM scheduler built from the config).
    """

    def __init__(self, unet, scheduler, name: str, device: torch.device, dtype: torch.dtype):
        config = unet.config
        self.unet, self.scheduler, self.name, self.weak = unet, scheduler, name, None
        self.device, self.dtype = device, dtype
        self.prediction_type = scheduler.config.prediction_type
        if self.prediction_type not in PREDICTION_TYPES:
            raise ParameterError("model", f"{name}: the scheduler's prediction_type must be epsilon or v_prediction, "
                                          f"got {self.prediction_type!r}")
        size = config.sample_size
        height, width = (size, size) if isinstance(size, int) else tuple(size)
        self.shape = (int(config.in_channels), int(height), int(width))
        if config.out_channels not in (config.in_channels, 2 * config.in_channels):
            raise ParameterError("model", f"{name}: out_channels {config.out_channels} must be in_channels or twice it")
        classes = config.num_class_embeds
        self.classes = tuple(str(i) for i in range(classes)) if classes else None
        alphas = scheduler.alphas_cumprod.to(torch.float64)  # the scheduler's own (float32) values, widened
        sigmas = ((1 - alphas) / alphas).sqrt()
        valid = torch.isfinite(sigmas) & (sigmas > 0)  # a zero-terminal-SNR schedule ends at σ = ∞
        self.alphas_cumprod = alphas
        self._t_table = torch.arange(len(alphas), dtype=torch.float64)[valid]
        self._sigma_table = sigmas[valid]
        self._log_sigma_table = self._sigma_table.log()
        if len(self._sigma_table) < 2 or not bool((self._log_sigma_table.diff() > 0).all()):
            raise ParameterError("model", f"{name}: the scheduler's σ_t must increase strictly with t")
        self.sigma_min, self.sigma_max = float(self._sigma_table[0]), float(self._sigma_table[-1])

    def sigma_to_t(self, sigma: torch.Tensor) -> torch.Tensor:
        """Continuous t: t linearly interpolated against log σ over the table, σ clamped to its range."""
        log_table, t_table = self._log_sigma_table.to(sigma.device), self._t_table.to(sigma.device)
        log_sigma = sigma.to(torch.float64).log().clamp(float(log_table[0]), float(log_table[-1]))
        hi = torch.searchsorted(log_table, log_sigma).clamp(1, len(log_table) - 1)
        lo = hi - 1
        w = (log_sigma - log_table[lo]) / (log_table[hi] - log_table[lo])
        return t_table[lo] + w * (t_table[hi] - t_table[lo])

    def t_to_sigma(self, t: torch.Tensor) -> torch.Tensor:
        """σ_t = sqrt((1 − ᾱ_t)/ᾱ_t) at integer timesteps t (float64)."""
        alphas = self.alphas_cumprod[torch.as_tensor(t, dtype=torch.long)]
        return ((1 - alphas) / alphas).sqrt()

    def timesteps(self, num_inference_steps: int) -> torch.Tensor:
        """The scheduler's own ``set_timesteps(N)`` timesteps t_0 > … > t_{N−1} (long)."""
        n = int(num_inference_steps)
        total = int(self.scheduler.config.num_train_timesteps)
        if not 1 <= n <= total:
            raise ParameterError("steps", f"must lie in [1, {total}] for this model, got {num_inference_steps}")
        self.scheduler.set_timesteps(n)
        return self.scheduler.timesteps.to("cpu", torch.long).clone()

    def timestep_sigmas(self, num_inference_steps: int) -> torch.Tensor:
        """σ_{t_i} = sqrt((1 − ᾱ_{t_i})/ᾱ_{t_i}) for the scheduler's timesteps (float64, decreasing).

        No trailing zero: append σ_N = 0 to sample; Euler on that grid is DDIM (η = 0).
        """
        t = self.timesteps(num_inference_steps)
        sigmas = self.t_to_sigma(t)
        if not bool(torch.isfinite(sigmas).all()):
            raise ParameterError("steps", f"{self.name}: a timestep has ᾱ = 0 (σ = ∞); use another timestep_spacing")
        return sigmas

    def __call__(self, x: torch.Tensor, sigma: float | torch.Tensor, cond=None) -> torch.Tensor:
        """D(x; σ) = x − σ ε̂ with ε̂ from the UNet at t(σ) on x_vp = x/sqrt(1 + σ²)."""
        sigma = sigma_per_sample(sigma, x)
        labels = cond_per_sample(cond, x.shape[0], self.classes, self.device)
        if self.classes is not None and labels is None:
            raise ParameterError("class", f"{self.name} is class-conditional; pass a class in 0..{len(self.classes) - 1}")
        s = sigma.reshape(-1, *([1] * (x.ndim - 1)))
        scale = (1 + s * s).rsqrt()  # sqrt(ᾱ)
        x_vp = x * scale
        t = self.sigma_to_t(sigma.detach().cpu()).to(self.device, torch.float32)  # float64 lookup on the CPU
        out = self.unet(x_vp.to(self.device, self.dtype), t, class_labels=labels).sample
        out = out[:, : x.shape[1]].to(x.device, x.dtype)
        if self.prediction_type == "epsilon":
            eps = out
        else:  # v = sqrt(ᾱ)ε − sqrt(1 − ᾱ)x0  ⇒  ε = sqrt(ᾱ)v + sqrt(1 − ᾱ)x_vp
            eps = scale * out + (s * scale) * x_vp
        return x - s * eps


def load_diffusers(path: str, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> DiffusersDenoiser:
    """The diffusers ``UNet2DModel`` in folder ``path`` as an EDM denoiser (module docstring).

    ``path`` holds the UNet (``config.json`` + weights) and ``scheduler_config.json``, or is a
    pipeline folder with ``unet/`` and ``scheduler/``. Safetensors weights are loaded when
    present (never a pickle then). ``device`` defaults to the CPU, ``dtype`` to float32.
    """
    UNet2DModel, DDIMScheduler = _import_diffusers()
    unet_dir, scheduler_dir = _locate(path)
    _unet_config(unet_dir, path)
    files = os.listdir(unet_dir)
    safetensors = any(f.endswith(".safetensors") or f.endswith(".safetensors.index.json") for f in files)
    if not safetensors and not any(f.endswith(".bin") or f.endswith(".bin.index.json") for f in files):
        raise ParameterError("model", f"no UNet weights (.safetensors or .bin) in {str(unet_dir)!r}")
    device = torch.device(device) if device is not None else torch.device("cpu")
    dtype = dtype or torch.float32
    try:
        unet = UNet2DModel.from_pretrained(str(unet_dir), use_safetensors=safetensors, local_files_only=True,
                                           torch_dtype=dtype, low_cpu_mem_usage=False)
        scheduler_config = DDIMScheduler.load_config(str(scheduler_dir), local_files_only=True)
        scheduler = DDIMScheduler.from_config(scheduler_config)
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as error:
        raise ParameterError("model", f"cannot load the diffusers model in {path!r}: {error}") from error
    unet = unet.to(device).eval().requires_grad_(False)
    return DiffusersDenoiser(unet, scheduler, "diffusers:" + path, device, dtype)
