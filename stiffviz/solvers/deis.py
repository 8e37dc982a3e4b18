"""DEIS (tAB): a variable-step Adams–Bashforth method on dx/dσ = f(x; σ) (docs/math.md §2).

Step i uses the r most recent drifts f_i, f_{i−1}, …, f_{i−r+1} (one model call per step):
the polynomial P through (σ_{i−j}, f_{i−j}) is integrated exactly over the step,

    x_{i+1} = x_i + ∫_{σ_i}^{σ_{i+1}} P(s) ds = x_i + h Σ_j w_j f_{i−j},   h = σ_{i+1} − σ_i,
    w_j = ∫_0^1 ℓ_j(u) du,   ℓ_j the Lagrange basis on the nodes u_k = (σ_{i−k} − σ_i)/h,

and with equal steps w is the classical Adams–Bashforth row (r = 2: 3/2, −1/2). The order
follows the authors' code (ERK-Guid's patched diff-sampler, ``deis_sampler`` with
``max_order=4``, "DEIS-tAB3"): r = min(i + 1, 4), i.e. a first-order (Euler) step 0 and the
order raised by one per step while the drifts accumulate, with no lowering at the end. The
embedded error estimate is the difference to the next-lower order, e = x^(r) − x^(r−1)
= h Σ_j (w_j^(r) − w_j^(r−1)) f_{i−j} (none on step 0). The loop's final step to σ = 0 is its
Euler step x = D(x_{N−1}) as for every solver.

What differs from the authors: diff-sampler's tAB interpolates the drift in DEIS's VP time
τ(σ) and gets the weights by a 10 000-point Riemann sum; here the polynomial is in σ itself
and the weights are exact. Both are Adams–Bashforth of the same order on the same grid; they
agree exactly on equal steps in the interpolation variable and differ by the method's own
truncation error otherwise.

Stability: on y' = λy with equal steps and z = hλ the growth factor is the largest root modulus
of ζ^r − ζ^{r−1} − z Σ_j w_j ζ^{r−1−j}. The real-axis boundaries of Adams–Bashforth 1–4 are
2, 1, 6/11 and 3/10 (Hairer & Wanner, *Solving ODEs II*, §V.1, the stability domains of the
explicit Adams methods); each step reports the one of its order.

ERK-Guid: the consecutive pair Δx = x_i − x_{i−1}, Δf = f_i − f_{i−1}, h = σ_{i−1} − σ_i,
correction added with the plus sign (docs/math.md §4), as in the authors' ``deis_sampler``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .base import Evaluate, Stage, StepResult
from .runge_kutta import _combine

MAX_ORDER = 4  # the authors' max_order: four drifts, a cubic (DEIS-tAB3)
BOUNDARY = {1: 2.0, 2: 1.0, 3: 6 / 11, 4: 3 / 10}  # AB1–AB4 on the negative real axis (Hairer–Wanner II §V.1)


def adams_bashforth_weights(nodes: Sequence[float]) -> np.ndarray:
    """w_j = ∫_0^1 ℓ_j(u) du for the Lagrange basis ℓ_j on ``nodes`` (ℓ_j(u_k) = δ_jk), exact."""
    P = np.polynomial.polynomial
    nodes = np.asarray(nodes, dtype=float)
    weights = np.empty(len(nodes))
    for j, node in enumerate(nodes):
        others = np.delete(nodes, j)
        basis = P.polyfromroots(others) / np.prod(node - others)
        weights[j] = P.polyval(1.0, P.polyint(basis))
    return weights


def adams_bashforth_amplification(z: np.ndarray, order: int) -> np.ndarray:
    """Largest root modulus of ζ^r − ζ^{r−1} − z Σ_j w_j ζ^{r−1−j} (equal steps, r = ``order``)."""
    z = np.asarray(z, dtype=complex)
    weights = adams_bashforth_weights(-np.arange(order, dtype=float))
    flat = z.reshape(-1)
    companion = np.zeros((flat.size, order, order), dtype=complex)  # rows: monic polynomial, highest power first
    companion[:, 0, :] = flat[:, None] * weights[None, :]
    companion[:, 0, 0] += 1.0
    companion[:, np.arange(1, order), np.arange(order - 1)] = 1.0
    return np.abs(np.linalg.eigvals(companion)).max(axis=-1).reshape(z.shape)


class DEIS:
    """DEIS tAB up to ``max_order`` drifts (the authors' 4), ERK-Guid's consecutive pair."""

    name = "deis"
    pair = "consecutive"

    def __init__(self, max_order: int = MAX_ORDER):
        self.max_order = max_order

    @property
    def order(self) -> int:
        return self.max_order

    @property
    def stability_boundary(self) -> float:
        return BOUNDARY[self.max_order]

    def step(self, evaluate: Evaluate, first: Stage, sigma_next: float, history: Sequence[StepResult]) -> StepResult:
        past: list[Stage] = [step.stages[0] for step in reversed(history)][: self.max_order - 1]
        stages = [first, *past]
        h = sigma_next - first.sigma
        nodes = [(stage.sigma - first.sigma) / h for stage in stages]
        drifts = [stage.drift for stage in stages]
        weights = adams_bashforth_weights(nodes)
        x_next = _combine(first.x, h, weights.tolist(), drifts)
        error = None
        if len(stages) > 1:
            lower = np.append(adams_bashforth_weights(nodes[:-1]), 0.0)
            error = _combine(torch.zeros_like(first.x), h, (weights - lower).tolist(), drifts)
        return StepResult(x_next, error, [first], boundary=BOUNDARY[len(stages)])

    def amplification(self, z: np.ndarray) -> np.ndarray:
        return adams_bashforth_amplification(z, self.max_order)
