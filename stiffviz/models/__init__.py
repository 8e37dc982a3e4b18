"""Denoisers: the protocol, the exact toys, the registry and the guidance combinators."""

from .base import CallableDenoiser, Denoiser
from .gmm import GaussianMixtureDenoiser
from .guided import GuidedDenoiser, guided_denoiser
from .registry import list_models, load_model

__all__ = ["CallableDenoiser", "Denoiser", "GaussianMixtureDenoiser", "GuidedDenoiser", "guided_denoiser", "list_models", "load_model"]
