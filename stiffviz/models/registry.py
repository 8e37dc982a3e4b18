"""Model names → denoisers: ``load_model`` and ``list_models``."""

from __future__ import annotations

import copy
from functools import lru_cache

import torch

from ..errors import ParameterError
from .empirical import digits
from .toys import TOYS
from .unet import load_digits_unet

BUILDERS = {
    **TOYS,
    "digits": lru_cache(maxsize=None)(lambda: digits(8)),
    "digits16": lru_cache(maxsize=None)(lambda: digits(16)),
    "digits-unet": load_digits_unet,  # a fresh wrapper per call; the weights are cached per file
}


def list_models() -> list[str]:
    """Names accepted by :func:`load_model` (besides ``diffusers:SPEC``)."""
    return list(BUILDERS)


def load_model(name: str, device: str | torch.device | None = None, dtype: torch.dtype | None = None):
    """The denoiser ``name`` as ``model(x, sigma, cond=None)``; ``diffusers:SPEC`` opens a diffusers
    model, SPEC a local folder or a Hub id (needs the optional ``diffusers`` package; see
    ``stiffviz/models/diffusers``).

    ``device`` and ``dtype`` become the model's defaults (``model.device``, ``model.dtype``;
    CPU and float32 when not given); the toys accept any float dtype and device anyway.
    """
    if name.startswith("diffusers:"):
        from .diffusers import load_diffusers  # optional extra: imported only when asked for

        return load_diffusers(name[len("diffusers:") :], device, dtype)
    if name not in BUILDERS:
        raise ParameterError("model", f"must be one of {', '.join(list_models())} or diffusers:SPEC, got {name!r}")
    model = copy.copy(BUILDERS[name]())  # shallow: shares the cached parameters
    model.device = torch.device(device) if device is not None else torch.device("cpu")
    model.dtype = dtype or torch.float32
    return model
