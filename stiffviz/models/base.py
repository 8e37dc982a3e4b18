"""The denoiser contract shared by every model, and helpers to normalise its arguments.

A denoiser is a callable ``D(x, sigma, cond=None)`` returning the estimate of the clean
sample given ``x = x0 + σ·ε`` (EDM convention, docs/math.md §1). ``x`` has shape
``(B, *shape)``; ``sigma`` is a float or a tensor of shape ``(B,)``; ``cond`` is ``None``
(unconditional), a class index, or a tensor of ``B`` class indices.
"""

from __future__ import annotations

from typing import Callable, Protocol, runtime_checkable

import torch

from ..errors import ParameterError


@runtime_checkable
class Denoiser(Protocol):
    """What the sampler needs of a model: ``D(x, σ, cond)``, its sample shape and its classes."""

    shape: tuple[int, ...]
    classes: tuple[str, ...] | None

    def __call__(self, x: torch.Tensor, sigma: float | torch.Tensor, cond=None) -> torch.Tensor: ...


class CallableDenoiser:
    """Wrap a plain ``fn(x, sigma, **extra_args)`` (for example a k-diffusion model) as a :class:`Denoiser`.

    σ always reaches ``fn`` as a tensor of shape (B,) in ``x``'s dtype and device (k-diffusion's
    convention, so ``sigma.view(-1, 1, 1, 1)`` works), whether the sampler passes a float or a
    tensor. ``extra_args`` are passed as keyword arguments on every call. With ``takes_cond``
    the call is ``fn(x, sigma, cond, **extra_args)``; otherwise ``cond`` must be ``None``.
    """

    def __init__(self, fn: Callable[..., torch.Tensor], shape: tuple[int, ...], takes_cond: bool = False,
                 extra_args: dict | None = None):  # fmt: skip
        self.fn, self.shape, self.classes, self.takes_cond = fn, tuple(shape), None, takes_cond
        self.extra_args = dict(extra_args or {})
        self.weak = None

    def __call__(self, x: torch.Tensor, sigma: float | torch.Tensor, cond=None) -> torch.Tensor:
        sigma = sigma_per_sample(sigma, x).contiguous()  # a real (B,) tensor, not a stride-0 view
        if self.takes_cond:
            return self.fn(x, sigma, cond, **self.extra_args)
        if cond is not None:
            raise ParameterError("cond", "this model is unconditional; pass cond=None")
        return self.fn(x, sigma, **self.extra_args)


def sigma_per_sample(sigma: float | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """σ as a tensor of shape (B,) in ``x``'s dtype and device."""
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    if sigma.ndim == 0:
        return sigma.expand(x.shape[0])
    if sigma.shape != (x.shape[0],):
        raise ParameterError("sigma", f"must be a scalar or have shape ({x.shape[0]},), got {tuple(sigma.shape)}")
    return sigma


def cond_per_sample(cond, batch: int, classes: tuple[str, ...] | None, device: torch.device) -> torch.Tensor | None:
    """Class indices as a long tensor of shape (B,), or ``None`` for unconditional.

    A class may be given by index or by name; indices must lie in [0, len(classes)).
    """
    if cond is None:
        return None
    if classes is None:
        raise ParameterError("class", "this model is unconditional; it takes no class")
    if isinstance(cond, str):
        if cond not in classes:
            raise ParameterError("class", f"must be one of {', '.join(classes)}, got {cond!r}")
        cond = classes.index(cond)
    cond = torch.as_tensor(cond, dtype=torch.long, device=device)
    if cond.ndim == 0:
        cond = cond.expand(batch)
    if cond.shape != (batch,):
        raise ParameterError("class", f"must be one index or {batch} indices, got shape {tuple(cond.shape)}")
    if cond.numel() and (int(cond.min()) < 0 or int(cond.max()) >= len(classes)):
        raise ParameterError("class", f"indices must lie in [0, {len(classes) - 1}]")
    return cond
