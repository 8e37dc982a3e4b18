"""Explicit Runge–Kutta methods as data: Butcher tableaux with embedded weights.

A tableau (c, A, b, b̂) advances y' = f(σ, y) by k_j = f(σ + c_j h, y + h Σ_{l<j} A_jl k_l),
y_high = y + h Σ b_j k_j, and estimates the error as e = h Σ (b_j − b̂_j) k_j (docs/math.md §2).
Its stability function is R(z) = 1 + z bᵀ(I − zA)⁻¹1 = 1 + Σ_{m≥1} z^m bᵀA^{m−1}1, a
polynomial for explicit methods; the real-axis boundary is the largest r with
|R(−x)| ≤ 1 for all x ∈ [0, r].
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np


@dataclass(frozen=True)
class Tableau:
    """Butcher tableau of an explicit method; ``b_low`` is the embedded lower-order weights."""

    name: str
    c: tuple[float, ...]
    A: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    b_low: tuple[float, ...] | None = None
    order: int = 1
    known_boundary: float | None = None  # a closed form, where there is one (skips the scan)

    @property
    def stages(self) -> int:
        return len(self.c)

    @property
    def fsal(self) -> bool:
        """First same as last: the final stage is evaluated at the step's result."""
        return self.c[-1] == 1.0 and tuple(self.A[-1]) == tuple(self.b)

    @cached_property
    def stability_polynomial(self) -> np.ndarray:
        """Coefficients of R(z), lowest power first: [1, bᵀ1, bᵀA1, bᵀA²1, …]."""
        A, b = np.array(self.A, dtype=float), np.array(self.b, dtype=float)
        coeffs, v = [1.0], np.ones(self.stages)
        for _ in range(self.stages):
            coeffs.append(float(b @ v))
            v = A @ v
        return np.array(coeffs)

    def stability_function(self, z: np.ndarray) -> np.ndarray:
        """R(z) for complex z."""
        return np.polynomial.polynomial.polyval(np.asarray(z, dtype=complex), self.stability_polynomial)

    @cached_property
    def stability_boundary(self) -> float:
        """Largest r with |R(−x)| ≤ 1 on [0, r]: ``known_boundary`` when given, else by a fine
        scan refined by bisection."""
        if self.known_boundary is not None:
            return self.known_boundary
        grid = np.linspace(0.0, 10.0, 20001)[1:]
        bad = np.abs(self.stability_function(-grid)) > 1.0 + 1e-12
        if not bad.any():
            return float("inf")
        lo, hi = (grid[bad.argmax() - 1] if bad.argmax() else 0.0), grid[bad.argmax()]
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if abs(self.stability_function(-mid)) <= 1.0 + 1e-12 else (lo, mid)
        return round(float(lo), 9)  # the bisection's last digits are noise


EULER = Tableau("euler", (0.0,), ((0.0,),), (1.0,), None, order=1)
HEUN_EULER = Tableau("heun", (0.0, 1.0), ((0.0, 0.0), (1.0, 0.0)), (0.5, 0.5), (1.0, 0.0), order=2)
BOGACKI_SHAMPINE = Tableau(
    "bosh3",
    (0.0, 0.5, 0.75, 1.0),
    ((0.0, 0.0, 0.0, 0.0), (0.5, 0.0, 0.0, 0.0), (0.0, 0.75, 0.0, 0.0), (2 / 9, 1 / 3, 4 / 9, 0.0)),
    (2 / 9, 1 / 3, 4 / 9, 0.0),
    (7 / 24, 1 / 4, 1 / 3, 1 / 8),
    order=3,
)
RK4 = Tableau(
    "rk4",
    (0.0, 0.5, 0.5, 1.0),
    ((0.0, 0.0, 0.0, 0.0), (0.5, 0.0, 0.0, 0.0), (0.0, 0.5, 0.0, 0.0), (0.0, 0.0, 1.0, 0.0)),
    (1 / 6, 1 / 3, 1 / 3, 1 / 6),
    None,
    order=4,
)


def midpoint_tableau(c: float) -> Tableau:
    """Two-stage method evaluating at σ + c·h and stepping with that slope, paired with Euler.

    R(z) = 1 + z + c z²; for c ≥ 1/8 the real boundary is 1/c (R(−1/c) = 1, and |R| ≤ 1 between),
    given in closed form because DPM-Solver-2 builds one tableau per step.
    """
    boundary = 1.0 / c if c >= 0.125 else None
    return Tableau("dpm2", (0.0, c), ((0.0, 0.0), (c, 0.0)), (0.0, 1.0), (1.0, 0.0), order=2, known_boundary=boundary)
