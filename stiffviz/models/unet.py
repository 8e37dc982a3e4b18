"""``digits-unet``: a small class-conditional neural denoiser of the 8×8 digits, EDM-preconditioned.

The network F_θ is a tiny UNet (8×8 → 4×4 → 2×2 and back, skip connections, GroupNorm,
SiLU, dropout while training only) conditioned on the noise level through a Fourier embedding of c_noise and on the
class through an embedding with an extra "null" index (10) for the unconditional model,
learned by label dropout so that classifier-free guidance works (docs/math.md §6). The
denoiser is Karras et al. (2022), EDM, Table 1:

    D(x; σ) = c_skip(σ) x + c_out(σ) F_θ(c_in(σ) x, c_noise(σ), label)
    c_skip = σ_d² / (σ² + σ_d²),   c_out = σ σ_d / sqrt(σ² + σ_d²),
    c_in = 1 / sqrt(σ² + σ_d²),    c_noise = ln(σ) / 4

with σ_d the standard deviation of the training data (stored in the checkpoint).
c_noise uses max(σ, 1e-20), so σ = 0 gives D = x exactly instead of NaN.

Data: scikit-learn's bundled digits (1,797 images, values 0..16, 10 classes) scaled as
x = v/8 − 1 to [−1, 1], shape (N, 1, 8, 8). Checkpoints are safetensors files whose
string metadata holds everything needed to rebuild the network (architecture, σ_d,
training settings); they are read with ``safetensors.torch.load_file`` (no pickle).

Precision and device: weights are stored in float32. The network runs in the dtype and
on the device of its input ``x``: a copy of the network is made lazily per (dtype,
device) and kept by the wrapper, so float64 inputs get a genuine float64 evaluation
(what finite differences and JVP diagnostics want) and float32 inputs the float32 one.
The output has ``x``'s dtype and device. Loaded in a reduced precision (``dtype`` float16 or
bfloat16), only the network F runs in it: its input c_in·x is rounded to that dtype and its
output widened back, while the preconditioning, the solver and every diagnostic stay in
``x``'s dtype (float32). The forward pass is functional in ``x`` (no
in-place operations on inputs, no Python branching on tensor values), so it works under
autograd and ``torch.func.jvp``/``vjp``; the network's parameters do not require grad.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ParameterError
from .base import cond_per_sample, sigma_per_sample
from .empirical import DIGIT_CLASSES, digits_images

DATA_DIR = Path(__file__).resolve().parents[1] / "data"  # package data: installed with the wheel
MAIN_CHECKPOINT = DATA_DIR / "digits-unet.safetensors"
WEAK_CHECKPOINT = DATA_DIR / "digits-unet-weak.safetensors"
CHECKPOINT_FORMAT = "stiffviz.digits-unet/1"
REDUCED_PRECISION = (torch.float16, torch.bfloat16)  # network-only dtypes; the engine stays float32
NULL_LABEL = 10  # the "no class" index: unconditional model, label dropout
DIGIT_SHAPE = (1, 8, 8)
SIGMA_FLOOR = 1e-20  # c_noise = ln(max(σ, floor))/4; only matters at σ = 0 where c_out = 0


# ----------------------------------------------------------------------------- data
def digits_data() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 digits as x = v/8 − 1, float64 (N, 1, 8, 8) on the CPU, and their labels (N,)."""
    x, y = digits_images(8)
    return x.clone(), y.clone()


def digits_split(holdout: float = 0.1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(train indices, held-out indices): the first ``round(holdout·N)`` of a permutation seeded ``seed``."""
    n = digits_images(8)[0].shape[0]
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    k = int(round(holdout * n))
    return perm[k:].sort().values, perm[:k].sort().values


# ----------------------------------------------------------------------------- network
@dataclass(frozen=True)
class UNetConfig:
    """Architecture hyper-parameters (stored as JSON in the checkpoint metadata)."""

    width: int = 32  # channels at 8×8
    mult: tuple[int, ...] = (1, 2, 2)  # channel multipliers per resolution: 8×8, 4×4, 2×2
    in_channels: int = 1
    num_classes: int = 10  # plus one null index
    fourier_features: int = 16  # cos and sin of each -> 2× this many inputs to the embedding MLP
    emb_mult: int = 4  # embedding width = emb_mult × width
    dropout: float = 0.0  # in each ResBlock before its second convolution (training only)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "UNetConfig":
        d = json.loads(text)
        d["mult"] = tuple(d["mult"])
        return cls(**d)


def _groups(channels: int) -> int:
    """Largest group count ≤ 8 that divides ``channels`` with at least 2 channels per group."""
    for g in (8, 4, 2, 1):
        if channels % g == 0 and channels // g >= 2:
            return g
    return 1


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv, then GroupNorm modulated by the embedding (scale, shift), SiLU, conv; plus skip."""

    def __init__(self, cin: int, cout: int, emb: int, dropout: float = 0.0):
        super().__init__()
        self.dropout = dropout
        self.norm1 = nn.GroupNorm(_groups(cin), cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb, 2 * cout)
        self.norm2 = nn.GroupNorm(_groups(cout), cout, affine=False)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(emb)[:, :, None, None].chunk(2, dim=1)
        h = F.silu(self.norm2(h) * (1 + scale) + shift)
        h = self.conv2(F.dropout(h, self.dropout, training=self.training))
        return self.skip(x) + h


class TinyUNet(nn.Module):
    """F_θ(x_in, c_noise, label): one ResBlock per resolution on the way down, one on the way
    up (after concatenating the skip), a middle block at the lowest resolution; average
    pooling down, nearest-neighbour up. Labels are indices in [0, num_classes], the last
    one being "no class"."""

    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = c = config
        emb = c.emb_mult * c.width
        chans = [c.width * m for m in c.mult]
        self.register_buffer("freqs", 2.0 ** torch.linspace(-2.0, 3.0, c.fourier_features), persistent=False)
        self.map = nn.Sequential(nn.Linear(2 * c.fourier_features, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.label = nn.Embedding(c.num_classes + 1, emb)
        self.conv_in = nn.Conv2d(c.in_channels, chans[0], 3, padding=1)
        self.down = nn.ModuleList()
        prev = chans[0]
        for ch in chans:
            self.down.append(ResBlock(prev, ch, emb, c.dropout))
            prev = ch
        self.mid = ResBlock(prev, prev, emb, c.dropout)
        self.up = nn.ModuleList()
        for ch in reversed(chans):
            self.up.append(ResBlock(prev + ch, ch, emb, c.dropout))
            prev = ch
        self.norm_out = nn.GroupNorm(_groups(prev), prev)
        self.conv_out = nn.Conv2d(prev, c.in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        angles = c_noise.to(x.dtype)[:, None] * self.freqs.to(x.dtype)
        emb = F.silu(self.map(torch.cat([angles.cos(), angles.sin()], dim=1)) + self.label(labels))
        h = self.conv_in(x)
        skips = []
        last = len(self.down) - 1
        for level, block in enumerate(self.down):
            h = block(h, emb)
            skips.append(h)
            if level < last:
                h = F.avg_pool2d(h, 2)
        h = self.mid(h, emb)
        for level, block in enumerate(self.up):
            if level > 0:
                h = F.interpolate(h, scale_factor=2.0, mode="nearest")
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
        return self.conv_out(F.silu(self.norm_out(h)))


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


# ----------------------------------------------------------------------------- preconditioning
def edm_coefficients(sigma: torch.Tensor, sigma_data: float) -> tuple[torch.Tensor, ...]:
    """(c_skip, c_out, c_in, c_noise) of EDM (Karras et al. 2022, Table 1), elementwise in σ."""
    s2 = sigma.square() + sigma_data**2
    c_skip = sigma_data**2 / s2
    c_out = sigma * sigma_data / s2.sqrt()
    c_in = s2.rsqrt()
    c_noise = sigma.clamp_min(SIGMA_FLOOR).log() / 4
    return c_skip, c_out, c_in, c_noise


def precondition(net, x: torch.Tensor, sigma: torch.Tensor, labels: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """D(x; σ) = c_skip x + c_out net(c_in x, c_noise, labels) for σ of shape (B,) (training uses this)."""
    c_skip, c_out, c_in, c_noise = edm_coefficients(sigma, sigma_data)
    view = (-1,) + (1,) * (x.ndim - 1)
    return c_skip.view(view) * x + c_out.view(view) * net(c_in.view(view) * x, c_noise, labels)


class EDMDenoiser:
    """D(x; σ, cond) = c_skip x + c_out F(c_in x, c_noise, label) for a network ``net``.

    ``net(x_in, c_noise, labels)`` takes labels in [0, len(classes)], the last index being the
    null class used for ``cond=None``. An ``nn.Module`` net is copied lazily to each input's
    dtype and device (see the module docstring); any other callable is used as is.

    Attributes: ``shape`` (1, 8, 8), ``classes`` ("0".."9"), ``name``, ``sigma_data``,
    ``weak`` (the weaker model for Autoguidance, or None), ``metadata`` (checkpoint metadata).
    """

    def __init__(self, net, sigma_data: float, *, name: str = "digits-unet", classes=DIGIT_CLASSES,
                 shape=DIGIT_SHAPE, metadata: dict[str, str] | None = None):  # fmt: skip
        if isinstance(net, nn.Module):
            net = net.eval().requires_grad_(False)
        self.net = net
        self.sigma_data = float(sigma_data)
        self.name = name
        self.classes = tuple(classes) if classes is not None else None
        self.null_label = len(self.classes) if self.classes is not None else 0
        self.shape = tuple(shape)
        self.metadata = dict(metadata or {})
        self.weak: EDMDenoiser | None = None
        self.device = torch.device("cpu")
        self.dtype = torch.float32
        self._nets: dict[tuple[torch.dtype, torch.device], object] = {}

    def network(self, dtype: torch.dtype, device: torch.device):
        """The network in ``dtype`` on ``device`` (made once per pair)."""
        if not isinstance(self.net, nn.Module):
            return self.net
        key = (dtype, torch.device(device))
        if key not in self._nets:
            p = next(self.net.parameters())
            same = p.dtype == dtype and p.device == key[1]
            self._nets[key] = self.net if same else copy.deepcopy(self.net).to(device=key[1], dtype=dtype)
        return self._nets[key]

    def denoise_labels(self, x: torch.Tensor, sigma: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """D with σ of shape (B,) and raw label indices (B,) in [0, null_label] (the null one included)."""
        if self.dtype not in REDUCED_PRECISION:
            return precondition(self.network(x.dtype, x.device), x, sigma, labels, self.sigma_data)
        net = self.network(self.dtype, x.device)

        def reduced(x_in: torch.Tensor, c_noise: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            return net(x_in.to(self.dtype), c_noise, labels).to(x_in.dtype)

        return precondition(reduced, x, sigma, labels, self.sigma_data)

    def __call__(self, x: torch.Tensor, sigma: float | torch.Tensor, cond=None) -> torch.Tensor:
        """Denoised estimate, same shape, dtype and device as ``x`` of shape (B, 1, 8, 8)."""
        if x.ndim != 1 + len(self.shape) or tuple(x.shape[1:]) != self.shape:
            raise ParameterError("x", f"must have shape (B, {', '.join(map(str, self.shape))}), got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise ParameterError("x", f"must be a floating-point tensor, got {x.dtype}")
        batch = x.shape[0]
        sig = sigma_per_sample(sigma, x)
        labels = cond_per_sample(cond, batch, self.classes, x.device)
        if labels is None:
            labels = torch.full((batch,), self.null_label, dtype=torch.long, device=x.device)
        if batch == 0:
            return x.clone()
        return self.denoise_labels(x, sig, labels)

    def sample_reference(self, n: int, generator: torch.Generator | None = None, cond=None) -> torch.Tensor:
        """n random real digits (all 1,797, or those of class ``cond``), float64 (n, 1, 8, 8) on the CPU.

        Drawn without replacement when n is at most the number available, else with replacement.
        """
        x, y = digits_images(8)
        if cond is not None:
            c = int(cond_per_sample(cond, 1, self.classes, torch.device("cpu"))[0])
            x = x[y == c]
        if n <= x.shape[0]:
            index = torch.randperm(x.shape[0], generator=generator)[:n]
        else:
            index = torch.randint(x.shape[0], (n,), generator=generator)
        return x[index].clone()

    def __repr__(self) -> str:
        params = count_parameters(self.net) if isinstance(self.net, nn.Module) else "?"
        return f"EDMDenoiser({self.name!r}, sigma_data={self.sigma_data:.4f}, parameters={params})"


# ----------------------------------------------------------------------------- checkpoints
def checkpoint_metadata(config: UNetConfig, sigma_data: float, **extra) -> dict[str, str]:
    """The string metadata that rebuilds the denoiser: format, architecture, σ_d, classes, shape, extras."""
    meta = {
        "format": CHECKPOINT_FORMAT,
        "architecture": "TinyUNet",
        "config": config.to_json(),
        "sigma_data": repr(float(sigma_data)),
        "classes": json.dumps(list(DIGIT_CLASSES)),
        "null_label": str(NULL_LABEL),
        "shape": json.dumps(list(DIGIT_SHAPE)),
        "data": "sklearn.datasets.load_digits, x = v/8 - 1",
    }
    meta.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in extra.items()})
    return meta


@lru_cache(maxsize=8)
def _read_checkpoint(path: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file (cached per process; never mutated)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(path, framework="pt") as f:
        metadata = dict(f.metadata() or {})
    if metadata.get("format") != CHECKPOINT_FORMAT:
        raise ParameterError("checkpoint", f"{path} is not a {CHECKPOINT_FORMAT} file (format {metadata.get('format')!r})")
    return load_file(path), metadata


def load_checkpoint(path: str | Path, device=None, dtype: torch.dtype | None = None, name: str | None = None) -> EDMDenoiser:
    """An :class:`EDMDenoiser` rebuilt from a safetensors checkpoint (architecture from its metadata)."""
    path = Path(path)
    if not path.is_file():
        raise ParameterError("checkpoint", f"file not found: {path} (make it with `python -m stiffviz train`)")
    tensors, metadata = _read_checkpoint(str(path.resolve()))
    net = TinyUNet(UNetConfig.from_json(metadata["config"]))
    net.load_state_dict(tensors)  # copies into fresh parameters; the cached tensors stay untouched
    device = torch.device(device) if device is not None else torch.device("cpu")
    dtype = dtype or torch.float32
    net = net.to(device=device, dtype=dtype)
    model = EDMDenoiser(net, float(metadata["sigma_data"]), name=name or metadata.get("name", path.stem),
                        classes=tuple(json.loads(metadata["classes"])), shape=tuple(json.loads(metadata["shape"])),
                        metadata=metadata)  # fmt: skip
    model.device, model.dtype = device, dtype
    return model


def load_digits_unet(device=None, dtype: torch.dtype | None = None) -> EDMDenoiser:
    """The shipped ``digits-unet`` denoiser (``stiffviz/data/digits-unet.safetensors``) with ``.weak``
    set to the weaker checkpoint for Autoguidance (``stiffviz/data/digits-unet-weak.safetensors``).

    Weights are read once per process; every call returns a fresh wrapper whose network is
    on ``device`` (default CPU) in ``dtype`` (default float32).
    """
    model = load_checkpoint(MAIN_CHECKPOINT, device, dtype, name="digits-unet")
    model.weak = load_checkpoint(WEAK_CHECKPOINT, device, dtype, name="digits-unet-weak")
    return model
