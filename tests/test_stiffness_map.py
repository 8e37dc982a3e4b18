"""The stiffness map and the branch segments (docs/math.md §7) against independent computations.

The reference here is written separately from the model's code: log p_σ as a log-sum-exp of
``torch.distributions.MultivariateNormal`` densities with covariances Σ_k + σ²I, the drift
f = −σ ∇log p_σ and its Jacobian J = −σ ∇²log p_σ by autograd, and the spectrum by
``torch.linalg.eigvals`` (the general, non-symmetric eigensolver).
"""

from __future__ import annotations

import math

import pytest
import torch

from stiffviz import load_model
from stiffviz.diagnostics.stiffness_map import (
    MAX_RESOLUTION, branch_stiffness, segments, spectral_radius, stiffness_map, supports_map, thin_branch,
)  # fmt: skip
from stiffviz.errors import ParameterError
from stiffviz.models import CallableDenoiser
from stiffviz.models.gmm import GaussianMixtureDenoiser


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread):
    yield


def _log_density(means, covs, weights, sigma):
    """x ↦ log Σ_k π_k N(x; μ_k, Σ_k + σ²I), row-wise, from torch.distributions."""
    normal = torch.distributions.MultivariateNormal(means, covariance_matrix=covs + sigma**2 * torch.eye(2))
    log_w = (weights / weights.sum()).log()
    return lambda x: torch.logsumexp(normal.log_prob(x.unsqueeze(1)) + log_w, dim=1)


def _reference(means, covs, weights, sigma):
    """(f, J) at points x (B, 2): f = −σ ∇log p_σ and J = ∂f/∂x by autograd (rows do not interact)."""
    log_p = _log_density(means, covs, weights, sigma)

    def drift(x):
        with torch.enable_grad():
            x = x if x.requires_grad else x.detach().requires_grad_(True)
            return -sigma * torch.autograd.grad(log_p(x).sum(), x, create_graph=True)[0]

    def jacobian(x):
        j = torch.autograd.functional.jacobian(lambda y: drift(y).sum(0), x)  # (2, B, 2)
        return j.permute(1, 0, 2)

    return drift, jacobian


def _mixture_of(model, cond=None):
    """The model's own mixture as (means, covs, weights), covs rebuilt from its eigenpairs."""
    means, eigvals, eigvecs, weights = model.components(cond)
    return means, eigvecs @ torch.diag_embed(eigvals) @ eigvecs.transpose(1, 2), weights


def _two_branches() -> GaussianMixtureDenoiser:
    """Two thin parallel branches, rows of 7 components elongated along (cos 0.4, sin 0.4), 0.5 apart."""
    u = torch.tensor([math.cos(0.4), math.sin(0.4)], dtype=torch.float64)
    n = torch.tensor([-u[1], u[0]])
    t = torch.linspace(-0.3, 0.3, 7, dtype=torch.float64)
    means = torch.cat([t[:, None] * u, t[:, None] * u + 0.5 * n])
    cov = 0.05**2 * torch.outer(u, u) + 0.01**2 * torch.outer(n, n)
    return GaussianMixtureDenoiser(means, cov.expand(14, 2, 2).clone(), torch.ones(14), name="two-branches")


@pytest.mark.parametrize("name, sigma", [("tree", 0.01), ("tree", 0.3), ("moons", 0.05)])
def test_map_is_the_spectral_radius_of_the_autograd_jacobian(name, sigma):
    model = load_model(name)
    grid = stiffness_map(model, sigma, extent=1.5, resolution=24)
    rows, cols = torch.randint(0, 24, (2, 16), generator=torch.Generator().manual_seed(5))
    points = torch.stack([grid.axis[cols], grid.axis[rows]], 1)
    _, jacobian = _reference(*_mixture_of(model), sigma)
    expected = torch.linalg.eigvals(jacobian(points)).abs().amax(1)
    assert torch.allclose(grid.rho[rows, cols], expected, rtol=1e-6, atol=1e-9)


def test_class_map_uses_that_class_only():
    model = load_model("tree")
    x = torch.tensor([[0.2, 0.3], [-0.3, -0.2], [0.5, -0.4]], dtype=torch.float64)
    _, jacobian = _reference(*_mixture_of(model, 1), 0.05)
    expected = torch.linalg.eigvals(jacobian(x)).abs().amax(1)
    assert torch.allclose(spectral_radius(model, x, 0.05, cond="B"), expected, rtol=1e-6)
    assert not torch.allclose(spectral_radius(model, x, 0.05, cond="A"), expected, rtol=1e-2)


def test_thin_branch_is_the_middle_of_a_thin_row():
    model = _two_branches()
    branch = thin_branch(model)
    u = torch.tensor([math.cos(0.4), math.sin(0.4)], dtype=torch.float64)
    assert branch.component % 7 not in (0, 6)  # not a tip
    assert abs(float(branch.along @ u)) == pytest.approx(1.0, abs=1e-12)
    assert abs(float(branch.across @ u)) == pytest.approx(0.0, abs=1e-12)
    assert (branch.width, branch.length) == pytest.approx((0.01, 0.05), rel=1e-9)


@pytest.mark.parametrize("model", [_two_branches(), load_model("tree")], ids=["two-branches", "tree"])
@pytest.mark.parametrize("sigma", [0.003, 0.01])
def test_drift_flips_across_the_branch_and_keeps_its_sign_along_it(model, sigma):
    branch = thin_branch(model)
    across, along = segments(model, branch, sigma)
    drift, _ = _reference(*_mixture_of(model), sigma)
    for segment in (across, along):  # the segments' drift is the reference drift
        assert torch.allclose(segment.drift, drift(segment.points), rtol=1e-6, atol=1e-9)
        assert torch.allclose(segment.projection, drift(segment.points) @ branch.across, rtol=1e-6, atol=1e-9)
    t, p = across.offsets, across.projection
    outside = t.abs() > 0.05 * t.abs().max()
    assert (torch.sign(p[outside]) == torch.sign(t[outside])).all()  # f points away from the branch on both sides
    assert (along.projection > 0).all()  # beside the branch (on the +n side) one sign, all along it
    # the flip is stiff: the slope of ⟨f, n⟩ through the centre is ρ(J) there, ≈ σ/(λ_min + σ²)
    centre = len(t) // 2
    slope = (p[centre + 1] - p[centre - 1]) / (t[centre + 1] - t[centre - 1])
    rho = spectral_radius(model, branch.centre.unsqueeze(0), sigma)[0]
    assert float(slope) == pytest.approx(float(rho), rel=0.05)


@pytest.mark.parametrize("model", [_two_branches(), load_model("tree")], ids=["two-branches", "tree"])
def test_across_direction_is_the_dominant_eigenvector_at_the_centre(model):
    sigma = 0.01
    branch = thin_branch(model)
    _, jacobian = _reference(*_mixture_of(model), sigma)
    values, vectors = torch.linalg.eigh(jacobian(branch.centre.unsqueeze(0))[0])
    v1 = vectors[:, values.abs().argmax()]
    assert abs(float(v1 @ branch.across)) > 0.99
    stiffness = branch_stiffness(model, branch, sigma)
    assert stiffness.alignment == pytest.approx(abs(float(v1 @ branch.across)), abs=1e-9)
    assert stiffness.rho == pytest.approx(float(values.abs().max()), rel=1e-6)


def test_between_branches_is_stiffer_than_on_a_branch():
    model = _two_branches()
    sigma = 0.05
    branch = thin_branch(model)
    n = torch.tensor([-math.sin(0.4), math.cos(0.4)], dtype=torch.float64)  # from the lower row to the upper
    between = branch.centre + (0.25 if branch.component < 7 else -0.25) * n  # halfway to the other row
    _, jacobian = _reference(*_mixture_of(model), sigma)
    rho = torch.linalg.eigvals(jacobian(torch.stack([branch.centre, between]))).abs().amax(1)
    assert rho[1] > 3 * rho[0]


def test_bad_inputs_name_the_parameter():
    model = _two_branches()
    with pytest.raises(ParameterError, match="resolution"):
        stiffness_map(model, 0.1, 1.0, resolution=MAX_RESOLUTION + 1)
    with pytest.raises(ParameterError, match="extent"):
        stiffness_map(model, 0.1, float("nan"))
    with pytest.raises(ParameterError, match="sigma"):
        stiffness_map(model, 0.0, 1.0)
    flat = CallableDenoiser(lambda x, sigma: x, shape=(2,))
    assert not supports_map(flat) and supports_map(model)
    with pytest.raises(ParameterError, match="model.*2-D model with an exact Jacobian"):
        stiffness_map(flat, 0.1, 1.0)
