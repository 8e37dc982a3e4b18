"""Diffusers models behind ``diffusers:SPEC`` (optional extra: ``pip install diffusers``).

The scheduler decides the ODE, the network only answers calls:

- ``schedulers.py``: one family per supported scheduler class (DDPM, DDIM, EulerDiscrete,
  EDMEuler, FlowMatchEulerDiscrete): the model's own σ (or t) grid, the network's input and
  timestep for a state and σ, and the denoised estimate from its output;
- ``networks.py``: how UNet2DModel, UNet2DConditionModel and SD3-style transformers are called;
- ``text.py``: prompts encoded once per run through diffusers' own ``encode_prompt``;
- ``latent.py``: the VAE of latent models (diagnostics stay in latent space) and a fitted linear
  latent→RGB preview;
- ``loading.py``: ``load_diffusers(SPEC)`` for local folders and Hub ids.

Nothing here imports diffusers at module level: without it, loading raises a ParameterError that
says what to install.
"""

from .loading import INSTALL_MESSAGE, load_diffusers

__all__ = ["INSTALL_MESSAGE", "load_diffusers"]
