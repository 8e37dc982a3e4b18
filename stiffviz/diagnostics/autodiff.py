"""Jacobian-vector products for every costly diagnostic, with a fallback (docs/math.md §10).

For a map f: ℝ^d → ℝ^d at x, the product J v with J = ∂f/∂x is computed

1. by forward-mode autodiff (``torch.func.jvp``): one pass, the cheapest; where an operation
   of the network has no forward-mode rule (some attention kernels, custom autograd
   functions), PyTorch raises, and then
2. by differentiating a vector-Jacobian product once more ("double backward"): the VJP
   g(u) = Jᵀu is linear in u, so ⟨g(u), v⟩ = uᵀ J v and J v = ∇_u ⟨g(u), v⟩. It costs a
   forward pass and two backward passes and needs only reverse mode, which every
   trainable network supports.

Which route was taken is remembered per function object, so a network without forward
mode fails once, not at every product.

Forward mode's state is process-wide, not per thread: ``torch.func.jvp`` keeps its nesting
depth and the current dual level in module globals, so two threads inside it at once make
one of them raise ("no level exists", "invalid index") or run at the other's level, and a
raise here would silently switch that network to the fallback for good. :func:`jvp` therefore
holds one process-wide lock (re-entrant, for a JVP inside a JVP) around forward mode: concurrent
runs take their forward-mode products in turn and get exactly the values they get alone.
The reverse-mode route keeps its state per thread and needs no lock.
"""

from __future__ import annotations

import threading
import weakref
from typing import Callable

import torch

_FORWARD_MODE_FAILED: weakref.WeakSet = weakref.WeakSet()  # the networks whose forward mode raised
_FORWARD_MODE = threading.RLock()  # torch.func.jvp's state is process-wide: one thread in it at a time


def vjp_jvp(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """J v through two reverse passes: J v = ∇_u ⟨Jᵀu, v⟩ (u a dummy cotangent, any value works)."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        y = fn(x)
        u = torch.zeros_like(y, requires_grad=True)
        (vjp,) = torch.autograd.grad(y, x, grad_outputs=u, create_graph=True)
        (jv,) = torch.autograd.grad(vjp, u, grad_outputs=v)
    return jv.detach()


def jvp(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, v: torch.Tensor, key: object = None) -> torch.Tensor:
    """J v of ``fn`` at ``x``: forward mode first, the VJP-based product where it is unsupported.

    ``key`` identifies the underlying network for remembering a failure (default: ``fn``).
    """
    key = key if key is not None else fn
    if key not in _FORWARD_MODE_FAILED:
        try:
            with _FORWARD_MODE:
                return torch.func.jvp(fn, (x,), (v,))[1]
        except (RuntimeError, NotImplementedError):
            _FORWARD_MODE_FAILED.add(key)
    return vjp_jvp(fn, x, v)
