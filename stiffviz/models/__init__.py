"""Denoisers: the protocol, the exact toys, the registry and the guidance combinators."""

from .base import CallableDenoiser, Denoiser
from .gmm import GaussianMixtureDenoiser
from .guided import guided_denoiser
from .registry import list_models, load_model

__all__ = ["CallableDenoiser", "Denoiser", "GaussianMixtureDenoiser", "guided_denoiser", "list_models", "load_model"]
