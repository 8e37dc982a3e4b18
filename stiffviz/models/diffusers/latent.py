"""Latent models: the VAE that turns the engine's latent x0 into RGB.

The engine and every diagnostic work in latent space (the network's state, shape ``model.shape``
= (latent channels, h, w)); images exist only for display.

- ``decode(x0, fast=False)``: the VAE itself, z = x0·s_std/c + m (c = ``scaling_factor``;
  ``latents_mean``/``latents_std`` m, s_std when the VAE has them) or z = x0/c + ``shift_factor``
  (SD3), then ``vae.decode(z).sample`` clamped to [−1, 1], in chunks of ``CHUNK`` samples.
- ``decode(x0, fast=True)``: a linear latent→RGB map fitted once at load time, RGB = A·x0 + b per
  latent pixel, nearest-upsampled by the VAE's scale factor f = 2^(levels − 1) and clamped. A and b
  minimise the squared error against the VAE's own decodes of ``FIT_SAMPLES`` random latents
  x0 ~ N(0, I) (seeded; at most ``FIT_SIZE``² latent pixels each: the VAE is convolutional). For a
  prediction constant over each f×f block this is least squares against the f×f block means of
  the decode, so the fit is a lstsq on the average-pooled decodes. It costs one small matrix
  product per frame, for streaming; the real VAE decodes the final state.
"""

from __future__ import annotations

import torch

from ...errors import ParameterError

CHUNK = 8
FIT_SAMPLES = 2
FIT_SIZE = 32
FIT_SEED = 0


class LatentDecoder:
    """The VAE of a latent model and its fitted fast projection (module docstring)."""

    def __init__(self, vae, shape: tuple[int, int, int], device: torch.device, name: str):
        self.vae, self.shape, self.device, self.name = vae, tuple(shape), device, name
        config = vae.config
        if int(config.latent_channels) != shape[0]:
            raise ParameterError("model", f"{name}: the VAE has {config.latent_channels} latent channels, the network "
                                          f"{shape[0]}")  # fmt: skip
        self.factor = 2 ** (len(config.block_out_channels) - 1)
        self.dtype = next(vae.parameters()).dtype
        self.projection, self.bias = self._fit()

    def latents(self, x0: torch.Tensor) -> torch.Tensor:
        """The VAE's latent z for the engine's x0 (module docstring)."""
        config = self.vae.config
        mean, std = config.get("latents_mean"), config.get("latents_std")
        if mean is not None and std is not None:
            view = (1, -1, 1, 1)
            mean = torch.tensor(mean, dtype=x0.dtype, device=x0.device).view(view)
            std = torch.tensor(std, dtype=x0.dtype, device=x0.device).view(view)
            return x0 * std / config.scaling_factor + mean
        shift = config.get("shift_factor")
        return x0 / config.scaling_factor + (shift if shift is not None else 0.0)

    def vae_decode(self, x0: torch.Tensor) -> torch.Tensor:
        """RGB in [−1, 1] (B, 3, f·h, f·w) from the VAE, float32 on x0's device."""
        out = []
        with torch.no_grad():
            for chunk in x0.split(CHUNK):
                z = self.latents(chunk.to(self.device, torch.float32)).to(self.dtype)
                out.append(self.vae.decode(z).sample.float().clamp(-1, 1).to(x0.device))
        return torch.cat(out)

    def fast_decode(self, x0: torch.Tensor) -> torch.Tensor:
        """RGB = clamp(A·x0 + b), nearest-upsampled by f (module docstring)."""
        a, b = self.projection.to(x0.device), self.bias.to(x0.device)
        rgb = torch.einsum("rc,bchw->brhw", a, x0.detach().float()) + b.view(1, -1, 1, 1)
        return torch.nn.functional.interpolate(rgb, scale_factor=self.factor, mode="nearest").clamp(-1, 1)

    def decode(self, x0: torch.Tensor, fast: bool = False) -> torch.Tensor:
        if x0.ndim != 4 or tuple(x0.shape[1:]) != self.shape:
            raise ParameterError("x0", f"must have shape (batch, {', '.join(map(str, self.shape))}) for {self.name}, "
                                       f"got {tuple(x0.shape)}")  # fmt: skip
        return self.fast_decode(x0) if fast else self.vae_decode(x0)

    def _fit(self) -> tuple[torch.Tensor, torch.Tensor]:
        channels, height, width = self.shape
        size = (min(height, FIT_SIZE), min(width, FIT_SIZE))
        generator = torch.Generator().manual_seed(FIT_SEED)
        x0 = torch.randn((FIT_SAMPLES, channels, *size), generator=generator)
        target = torch.nn.functional.avg_pool2d(self.vae_decode(x0.to(self.device)).cpu(), self.factor)  # (K, 3, h, w)
        inputs = torch.cat([x0, torch.ones(FIT_SAMPLES, 1, *size)], dim=1)  # the bias as a constant channel
        design = inputs.permute(0, 2, 3, 1).reshape(-1, channels + 1).double()
        rgb = target.permute(0, 2, 3, 1).reshape(-1, target.shape[1]).double()
        solution = torch.linalg.lstsq(design, rgb).solution  # (C + 1, 3)
        return solution[:channels].T.float().contiguous(), solution[channels].float()
