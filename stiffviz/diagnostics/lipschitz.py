"""Local Lipschitz constant of a step map, L = ‖∂T/∂x‖₂ per sample (docs/math.md §5).

Power iteration on ∂Tᵀ∂T: v ← ∂Tᵀ(∂T v)/‖·‖ with a JVP (``autodiff.jvp``) and a VJP
(``torch.func.vjp``, one forward pass reused) per iteration; L = ‖∂T v‖ for the final unit v.
The map is contractive where L < 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .autodiff import jvp
from .secant import batch_norm


@dataclass(frozen=True)
class LipschitzEstimate:
    value: torch.Tensor  # (B,)
    vector: torch.Tensor  # (B, …), the top right singular vector, for warm starts


def lipschitz_constant(
    step_map: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, start: torch.Tensor, iterations: int = 10,
    key: object = None,
) -> LipschitzEstimate:
    """Largest singular value of ∂T/∂x at ``x``, per sample, from ``start`` (B, …).

    ``key`` names the network behind ``step_map`` for :func:`autodiff.jvp`'s fallback memory.
    """
    shape = (-1,) + (1,) * (x.ndim - 1)
    unit = lambda v: v / batch_norm(v).clamp_min(torch.finfo(v.dtype).tiny).view(shape)  # noqa: E731
    _, vjp = torch.func.vjp(step_map, x)
    v = unit(start)
    for _ in range(iterations):
        v = unit(vjp(jvp(step_map, x, v, key))[0])
    return LipschitzEstimate(batch_norm(jvp(step_map, x, v, key)), v)
