"""Sample-quality measures for point clouds in R^d.

Everything here is pure torch on the CPU in float64 and never calls a model
(``mean_nll`` calls only the ``log_prob`` it is handed).  Inputs of shape
``(N, *trailing)`` are read as ``N`` points in ``R^d`` with ``d = prod(trailing)``;
a 1-D tensor of shape ``(N,)`` is ``N`` points in ``R^1``.

Bad input raises :class:`stiffviz.errors.ParameterError` (a ``ValueError``) whose
message starts with the offending parameter's name, e.g.
``"fake: contains non-finite values"``.
"""

from __future__ import annotations

import operator
from typing import Callable

import torch

from stiffviz.errors import ParameterError

__all__ = ["sliced_wasserstein", "mean_nll", "knn_precision_recall", "KNN_K"]

# Default neighbour index of knn_precision_recall: each set needs at least KNN_K + 1 points.
KNN_K = 3

# Largest number of pairwise distances held at once by the chunked k-NN code
# (2**22 float64 values = 32 MiB per distance block).
_CHUNK_ELEMENTS = 1 << 22


# --------------------------------------------------------------------------- #
# input checks
# --------------------------------------------------------------------------- #
def _as_points(name: str, x: torch.Tensor) -> torch.Tensor:
    """Return ``x`` as a detached float64 CPU tensor of shape ``(N, d)``, or raise."""
    if not isinstance(x, torch.Tensor):
        raise ParameterError(name, f"must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() == 0:
        raise ParameterError(name, "must have shape (N, d) (or (N,) / (N, ...)), got a scalar")
    if torch.is_complex(x):
        raise ParameterError(name, "must be real-valued, got a complex tensor")
    pts = x.detach().to(device="cpu", dtype=torch.float64)
    if pts.dim() == 1:
        pts = pts.reshape(-1, 1)
    else:
        d = 1
        for size in pts.shape[1:]:
            d *= size
        pts = pts.reshape(pts.shape[0], d)
    if pts.shape[1] == 0:
        raise ParameterError(name, f"has zero features per point (shape {tuple(x.shape)})")
    if not bool(torch.isfinite(pts).all()):
        raise ParameterError(name, "contains non-finite values")
    return pts


def _check_same_dim(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    if a.shape[1] != b.shape[1]:
        raise ParameterError(
            name_b,
            f"has dimension d={b.shape[1]} but {name_a} has d={a.shape[1]}; "
            "both point sets must live in the same space",
        )


def _positive_int(name: str, value: int) -> int:
    if isinstance(value, bool):
        raise ParameterError(name, f"must be an integer >= 1, got {value!r}")
    try:
        value = operator.index(value)
    except TypeError:
        raise ParameterError(name, f"must be an integer >= 1, got {value!r}") from None
    if value < 1:
        raise ParameterError(name, f"must be >= 1, got {value}")
    return value


# --------------------------------------------------------------------------- #
# sliced Wasserstein
# --------------------------------------------------------------------------- #
def _w2_squared_sorted(xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """Exact squared 1-D W2 between uniform empirical measures, column by column.

    ``xs`` (N, P) and ``ys`` (M, P) hold P independent 1-D samples, each column
    sorted ascending.  With step quantile functions
    ``F^{-1}(u) = xs[floor(u N)]`` and ``G^{-1}(u) = ys[floor(u M)]``,

        W2^2 = int_0^1 (F^{-1}(u) - G^{-1}(u))^2 du

    is a finite sum: both quantile functions are constant between consecutive
    points of the merged grid {i/N} U {j/M}.  Working in units of 1/(N M) the
    breakpoints are the integers i*M and j*N, so the merge is exact.
    Returns a (P,) tensor.
    """
    n, m = xs.shape[0], ys.shape[0]
    if n == m:  # the merged grid is {i/N}: W2^2 = mean_i (xs_i - ys_i)^2
        return (xs - ys).pow(2).mean(dim=0)
    breaks = torch.unique(torch.cat([torch.arange(n + 1) * m, torch.arange(m + 1) * n]))
    left = breaks[:-1]  # interval [left, right) in units of 1/(N M)
    weights = (breaks[1:] - left).to(torch.float64) / float(n * m)
    ix = torch.div(left, m, rounding_mode="floor")  # floor(u N) for u in the interval
    iy = torch.div(left, n, rounding_mode="floor")  # floor(u M)
    diff = xs[ix] - ys[iy]  # (K, P), K <= N + M - 1
    return (weights[:, None] * diff.pow(2)).sum(dim=0)


def sliced_wasserstein(
    x: torch.Tensor,
    y: torch.Tensor,
    n_projections: int = 256,
    generator: torch.Generator | None = None,
) -> float:
    r"""Monte-Carlo sliced 2-Wasserstein distance between two point clouds.

    For ``x`` = {x_i}_{i=1..N} and ``y`` = {y_j}_{j=1..M} in R^d (uniform
    weights 1/N and 1/M),

        SW_2(x, y) = sqrt( E_{theta ~ U(S^{d-1})} [ W_2^2(theta^T x, theta^T y) ] ),

    with the expectation replaced by the mean over ``n_projections`` directions
    theta_p = g_p / |g_p|, g_p ~ N(0, I_d) drawn on the CPU from ``generator``
    (torch's default generator when ``None``).  Each 1-D term is computed
    **exactly** (no interpolation): with sorted projections a_(1..N), b_(1..M)
    and step quantile functions F^{-1}(u) = a_(floor(uN)+1), G^{-1}(u) =
    b_(floor(uM)+1),

        W_2^2 = int_0^1 (F^{-1}(u) - G^{-1}(u))^2 du,

    a weighted sum over the at most N + M - 1 intervals of the merged grid
    {i/N} U {j/M}.  For N == M this is (1/N) sum_i (a_(i) - b_(i))^2.  Because
    the empirical measures are compared exactly, repeating every point of a
    cloud r times leaves the distance unchanged.

    Args:
        x: (N, d) points; trailing dims are flattened to d, a (N,) tensor is d = 1.
        y: (M, d) points, M may differ from N.
        n_projections: number of directions theta (>= 1).
        generator: CPU ``torch.Generator`` for the directions.

    Returns:
        SW_2 as a Python float (same units as the data).

    Raises:
        ParameterError (a ValueError): non-finite values, empty sets, mismatched
        d, or ``n_projections < 1``.
    """
    xp = _as_points("x", x)
    yp = _as_points("y", y)
    if xp.shape[0] < 1:
        raise ParameterError("x", "must contain at least one point")
    if yp.shape[0] < 1:
        raise ParameterError("y", "must contain at least one point")
    _check_same_dim("x", xp, "y", yp)
    n_projections = _positive_int("n_projections", n_projections)

    d = xp.shape[1]
    theta = torch.randn(n_projections, d, generator=generator, dtype=torch.float64)
    norms = theta.norm(dim=1, keepdim=True)
    # A draw of exactly 0 has probability 0; guard anyway so we never divide by it.
    theta = torch.where(norms > 0, theta / norms.clamp_min(1e-300), torch.ones_like(theta) / d**0.5)

    xs = torch.sort(xp @ theta.T, dim=0).values  # (N, P)
    ys = torch.sort(yp @ theta.T, dim=0).values  # (M, P)
    w2sq = _w2_squared_sorted(xs, ys)
    return float(w2sq.mean().clamp_min(0.0).sqrt())


# --------------------------------------------------------------------------- #
# negative log-likelihood
# --------------------------------------------------------------------------- #
def mean_nll(x: torch.Tensor, log_prob: Callable[[torch.Tensor], torch.Tensor]) -> float:
    r"""Mean negative log-likelihood of samples under a density.

        NLL = -(1/N) sum_{i=1..N} log p(x_i),

    where ``log_prob(x)`` returns log p(x_i) for every point, shape (N,) (any
    shape with N elements is accepted).  ``x`` is passed to ``log_prob``
    unchanged (same shape, dtype and device) after checking that it is finite;
    the average is taken in float64.  For x_i ~ p this estimates the
    differential entropy H(p).  A log-density of -inf (point outside the
    support) gives ``inf``; a NaN log-density is an error.

    Args:
        x: (N, ...) samples, N >= 1.
        log_prob: callable returning the log-density of each sample.

    Returns:
        The mean NLL as a Python float (nats).

    Raises:
        ParameterError (a ValueError): non-finite or empty ``x``, or a
        ``log_prob`` result with the wrong number of elements or NaNs.
    """
    pts = _as_points("x", x)
    n = pts.shape[0]
    if n < 1:
        raise ParameterError("x", "must contain at least one point")
    lp = log_prob(x)
    if not isinstance(lp, torch.Tensor):
        lp = torch.as_tensor(lp)
    lp = lp.detach().to(device="cpu", dtype=torch.float64).reshape(-1)
    if lp.numel() != n:
        raise ParameterError(
            "log_prob", f"must return one value per point ({n}), got {lp.numel()} values"
        )
    if bool(torch.isnan(lp).any()):
        raise ParameterError("log_prob", "returned NaN")
    return float(-lp.mean())


# --------------------------------------------------------------------------- #
# k-NN precision / recall
# --------------------------------------------------------------------------- #
def _cdist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # The direct (non-matmul) formula gives exact zeros for coincident points.
    return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")


def _rows_per_chunk(n_cols: int) -> int:
    return max(1, _CHUNK_ELEMENTS // max(1, n_cols))


def _knn_radii(pts: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each point to its k-th nearest neighbour in ``pts``, itself excluded.

    The (k+1)-th smallest distance in a row of the full distance matrix
    (whose smallest entry is the point's zero distance to itself) is the k-th
    nearest *other* point, duplicates included.
    """
    n = pts.shape[0]
    out = torch.empty(n, dtype=torch.float64)
    step = _rows_per_chunk(n)
    for start in range(0, n, step):
        dist = _cdist(pts[start : start + step], pts)
        out[start : start + step] = torch.topk(dist, k + 1, dim=1, largest=False).values[:, k]
    return out


def _covered_fraction(queries: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor) -> float:
    """Fraction of ``queries`` q with |q - c_j| <= r_j for at least one centre j."""
    n = queries.shape[0]
    covered = 0
    step = _rows_per_chunk(centres.shape[0])
    for start in range(0, n, step):
        dist = _cdist(queries[start : start + step], centres)
        covered += int((dist <= radii[None, :]).any(dim=1).sum())
    return covered / n


def knn_precision_recall(
    real: torch.Tensor, fake: torch.Tensor, k: int = KNN_K
) -> tuple[float, float]:
    r"""Improved precision and recall (Kynkäänniemi et al., 2019) with k-NN balls.

    For a set Phi let NN_k(phi, Phi) be the distance from phi in Phi to its k-th
    nearest neighbour in Phi \ {phi}, and the manifold estimate

        manifold(Phi) = union_{phi in Phi} B(phi, NN_k(phi, Phi))   (closed balls).

    Then, with Phi_r = ``real`` and Phi_g = ``fake``,

        precision = (1/|Phi_g|) sum_{g in Phi_g} 1[g in manifold(Phi_r)],
        recall    = (1/|Phi_r|) sum_{r in Phi_r} 1[r in manifold(Phi_g)],

    where "in" means |q - phi| <= NN_k(phi, Phi) for some phi.  So precision is
    the fraction of fake points that look real and recall the fraction of real
    points the fakes reach; note recall(real, fake) == precision(fake, real).
    Distances are Euclidean in float64, computed with ``torch.cdist`` in row
    blocks of at most 2**22 entries so 4096 x 4096 inputs need ~32 MiB.

    Args:
        real: (N, d) reference points, N >= k + 1.
        fake: (M, d) generated points, M >= k + 1.
        k: neighbour index defining each ball's radius (>= 1).

    Returns:
        ``(precision, recall)``, each in [0, 1].

    Raises:
        ParameterError (a ValueError): non-finite values, mismatched d,
        ``k < 1``, or a set with fewer than k + 1 points.
    """
    k = _positive_int("k", k)
    rp = _as_points("real", real)
    fp = _as_points("fake", fake)
    _check_same_dim("real", rp, "fake", fp)
    for name, pts in (("real", rp), ("fake", fp)):
        if pts.shape[0] < k + 1:
            raise ParameterError(
                name, f"has {pts.shape[0]} points but k={k} needs at least k+1={k + 1}"
            )
    real_radii = _knn_radii(rp, k)
    fake_radii = _knn_radii(fp, k)
    precision = _covered_fraction(fp, rp, real_radii)
    recall = _covered_fraction(rp, fp, fake_radii)
    return precision, recall
