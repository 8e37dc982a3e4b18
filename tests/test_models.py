"""Tests for the exact denoisers, the toys, the registry and the guidance combinators.

Every expected value is computed independently inside the test: by autograd through
``log_prob`` / the denoiser, by brute force with ``torch.distributions.MultivariateNormal``,
by the Gaussian posterior in closed form, by re-deriving the tree of docs/math.md §7 from its
specification, or by Monte-Carlo against closed-form mixture moments.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.distributions import MultivariateNormal

from stiffviz import ParameterError, list_models, load_model
from stiffviz.models import CallableDenoiser, GaussianMixtureDenoiser, guided_denoiser

TOYS = ["tree", "rings", "moons", "swissroll"]
SIGMAS = [0.01, 0.1, 1.0, 10.0]
F64 = torch.float64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _noisy_points(model, n: int, sigma: float, cond=None, seed: int = 0) -> torch.Tensor:
    """x = x0 + σ ε with x0 exact draws from the model: where the sampler actually goes."""
    g = _gen(seed)
    x0 = model.sample_reference(n, g, cond=cond)
    return (x0 + sigma * torch.randn(x0.shape, generator=g, dtype=F64)).to(F64)


def _assert_rows_close(actual: torch.Tensor, expected: torch.Tensor, rtol: float, floor: float = 1e-12):
    """Per sample (first axis): max |a − e| ≤ rtol · max(max |e|, floor) (normwise, per row)."""
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    assert torch.isfinite(actual).all()
    a = actual.reshape(actual.shape[0], -1).double()
    e = expected.reshape(expected.shape[0], -1).double()
    err = (a - e).abs().amax(1)
    scale = e.abs().amax(1).clamp_min(floor)
    worst = float((err / scale).max()) if err.numel() else 0.0
    assert worst <= rtol, f"worst per-row relative error {worst:.3e} > {rtol:.1e}"


def _autograd_score(model, x, sigma, cond=None) -> torch.Tensor:
    x = x.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model.log_prob(x, sigma, cond).sum(), x)
    return grad


def _batch_jacobian(fn, x: torch.Tensor) -> torch.Tensor:
    """(B, d, d) Jacobians of a row-wise map with torch.autograd.functional.jacobian.

    Rows are independent (checked separately in ``test_rows_are_independent``), so the
    Jacobian of the batch sum w.r.t. x holds every row's Jacobian: 2 backward passes, not 2B.
    """
    jac = torch.autograd.functional.jacobian(lambda y: fn(y).sum(0), x.detach().clone())  # (d, B, d)
    return jac.permute(1, 0, 2)


def _conds(name: str, n: int):
    if name != "tree":
        return [None]
    per_sample = torch.arange(n) % 2
    return [None, 0, 1, per_sample]


def _ref_cond(cond):
    # sample_reference takes one class; for per-sample classes draw from the unconditional mixture
    return cond if isinstance(cond, int) else None


# --------------------------------------------------------------------------- #
# 1. every toy: score, Tweedie, Jacobians against autograd
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module", params=TOYS)
def toy(request):
    return load_model(request.param)


def test_list_models_names_the_four_toys():
    assert set(TOYS) <= set(list_models())


@pytest.mark.parametrize("sigma", SIGMAS)
def test_toy_score_is_autograd_of_log_prob_and_tweedie(toy, sigma):
    n = 64
    for cond in _conds(toy.name, n):
        x = _noisy_points(toy, n, sigma, _ref_cond(cond), seed=1)
        score = toy.score(x, sigma, cond)
        _assert_rows_close(score, _autograd_score(toy, x, sigma, cond), 1e-7)
        # Tweedie: D = x + σ² ∇log p_σ (docs/math.md §1), with ∇log p_σ from autograd
        _assert_rows_close(toy(x, sigma, cond), x + sigma**2 * _autograd_score(toy, x, sigma, cond), 1e-7)


@pytest.mark.parametrize("sigma", SIGMAS)
def test_toy_jacobians_match_autograd(toy, sigma):
    n = 64
    eye = torch.eye(2, dtype=F64)
    for cond in _conds(toy.name, n):
        x = _noisy_points(toy, n, sigma, _ref_cond(cond), seed=2)
        jd = _batch_jacobian(lambda y: toy(y, sigma, cond), x)
        jf = _batch_jacobian(lambda y: (y - toy(y, sigma, cond)) / sigma, x)
        _assert_rows_close(toy.denoiser_jacobian(x, sigma, cond), jd, 1e-7)
        _assert_rows_close(toy.drift_jacobian(x, sigma, cond), jf, 1e-7)
        # Hessian of log p by autograd of the autograd score: J = −σ ∇² log p, ∂D/∂x = I + σ² ∇² log p
        hess = _batch_jacobian(lambda y: _autograd_score_graph(toy, y, sigma, cond), x)
        _assert_rows_close(toy.hessian_log_prob(x, sigma, cond), hess, 1e-7)
        _assert_rows_close(toy.drift_jacobian(x, sigma, cond), -sigma * hess, 1e-7)
        _assert_rows_close(toy.denoiser_jacobian(x, sigma, cond), eye + sigma**2 * hess, 1e-7, floor=1.0)
        # exact denoiser: ∂D/∂x = Cov[x0|x]/σ² is symmetric (docs/math.md §1)
        j = toy.drift_jacobian(x, sigma, cond)
        torch.testing.assert_close(j, j.transpose(1, 2), rtol=1e-10, atol=1e-12 * float(j.abs().max()))


def _autograd_score_graph(model, y, sigma, cond):
    """∇ log p with a graph (create_graph) so that it can be differentiated once more."""
    if not y.requires_grad:
        y = y.requires_grad_(True)
    (grad,) = torch.autograd.grad(model.log_prob(y, sigma, cond).sum(), y, create_graph=True)
    return grad


def test_tree_jacobians_with_batch_256_per_sample_classes():
    model = load_model("tree")
    n, sigma = 256, 0.05
    cond = torch.arange(n) % 2
    x = _noisy_points(model, n, sigma, None, seed=3)
    jf = _batch_jacobian(lambda y: (y - model(y, sigma, cond)) / sigma, x)
    _assert_rows_close(model.drift_jacobian(x, sigma, cond), jf, 1e-7)
    # and per-sample classes equal the per-class results row by row
    for c in (0, 1):
        rows = cond == c
        torch.testing.assert_close(model(x, sigma, cond)[rows], model(x[rows], sigma, c), rtol=0, atol=1e-14)


def test_rows_are_independent():
    """The batched-Jacobian shortcut above is valid only if row b of D depends on x[b] alone."""
    model = load_model("moons")
    x = _noisy_points(model, 4, 0.3, seed=4)
    full = torch.autograd.functional.jacobian(lambda y: model(y, 0.3), x)  # (B, d, B, d)
    for b in range(4):
        for c in range(4):
            if b != c:
                assert float(full[b, :, c, :].abs().max()) == 0.0


# --------------------------------------------------------------------------- #
# 2. GMM formulas against brute force (MultivariateNormal, Gaussian posterior)
# --------------------------------------------------------------------------- #
def _random_mixture(k: int, d: int, seed: int):
    g = _gen(seed)
    means = 1.5 * torch.randn(k, d, generator=g, dtype=F64)
    a = torch.randn(k, d, d, generator=g, dtype=F64)
    covs = a @ a.transpose(1, 2) * 0.3 + 0.05 * torch.eye(d, dtype=F64)
    weights = torch.rand(k, generator=g, dtype=F64) * 3 + 0.2  # unnormalised
    return means, covs, weights


def _brute_force(means, covs, weights, x, sigma):
    """log p_σ, posterior mean E[x0|x] and posterior covariance Cov[x0|x], by hand."""
    d = means.shape[1]
    eye = torch.eye(d, dtype=F64)
    pi = weights / weights.sum()
    noisy = covs + sigma**2 * eye
    comp = MultivariateNormal(means, covariance_matrix=noisy)  # batch (K,)
    logits = comp.log_prob(x.unsqueeze(1)) + pi.log()  # (B, K)
    log_p = torch.logsumexp(logits, 1)
    resp = torch.softmax(logits, 1)
    gain = covs @ torch.linalg.inv(noisy)  # Σ_k (Σ_k + σ²I)⁻¹, (K, d, d)
    post_mean = means + torch.einsum("kij,bkj->bki", gain, x.unsqueeze(1) - means)  # (B, K, d)
    post_cov = covs - gain @ covs  # (K, d, d)
    mean = torch.einsum("bk,bki->bi", resp, post_mean)
    second = torch.einsum("bk,kij->bij", resp, post_cov) + torch.einsum("bk,bki,bkj->bij", resp, post_mean, post_mean)
    cov = second - mean.unsqueeze(2) * mean.unsqueeze(1)
    return log_p, mean, cov


@pytest.mark.parametrize("d", [2, 3])
@pytest.mark.parametrize("sigma", [0.01, 0.3, 2.0, 10.0])
def test_gmm_matches_brute_force(d, sigma):
    means, covs, weights = _random_mixture(3, d, seed=10 + d)
    model = GaussianMixtureDenoiser(means, covs, weights)
    g = _gen(5)
    x = means[torch.randint(0, 3, (40,), generator=g)] + (1.0 + sigma) * torch.randn(40, d, generator=g, dtype=F64)
    log_p, post_mean, post_cov = _brute_force(means, covs, weights, x, sigma)
    torch.testing.assert_close(model.log_prob(x, sigma), log_p, rtol=1e-10, atol=1e-10)
    _assert_rows_close(model(x, sigma), post_mean, 1e-9)
    _assert_rows_close(model.score(x, sigma), (post_mean - x) / sigma**2, 1e-8)
    # ∂D/∂x = Cov[x0 | x] / σ² and J = (I − ∂D/∂x)/σ (docs/math.md §1)
    eye = torch.eye(d, dtype=F64)
    _assert_rows_close(model.denoiser_jacobian(x, sigma), post_cov / sigma**2, 1e-7)
    _assert_rows_close(model.drift_jacobian(x, sigma), (eye - post_cov / sigma**2) / sigma, 1e-7)


def test_gmm_log_prob_at_sigma_zero_is_clean_density():
    means, covs, weights = _random_mixture(3, 2, seed=20)
    model = GaussianMixtureDenoiser(means, covs, weights)
    x = torch.randn(30, 2, generator=_gen(6), dtype=F64)
    comp = MultivariateNormal(means, covariance_matrix=covs)
    expected = torch.logsumexp(comp.log_prob(x.unsqueeze(1)) + (weights / weights.sum()).log(), 1)
    torch.testing.assert_close(model.log_prob(x), expected, rtol=1e-10, atol=1e-10)


def test_gmm_class_conditional_mixtures():
    """cond selects the class's components with weights renormalised within the class."""
    means, covs, weights = _random_mixture(3, 2, seed=21)
    model = GaussianMixtureDenoiser(means, covs, weights, torch.tensor([0, 0, 1]), ("a", "b"))
    x = torch.randn(25, 2, generator=_gen(7), dtype=F64)
    sigma = 0.4
    for cond, idx in ((0, [0, 1]), ("a", [0, 1]), (1, [2]), ("b", [2]), (None, [0, 1, 2])):
        log_p, mean, _ = _brute_force(means[idx], covs[idx], weights[idx], x, sigma)
        torch.testing.assert_close(model.log_prob(x, sigma, cond), log_p, rtol=1e-10, atol=1e-10)
        _assert_rows_close(model(x, sigma, cond), mean, 1e-9)


def test_gmm_rejects_non_positive_definite_covariance():
    means, covs, weights = _random_mixture(3, 2, seed=22)
    covs[1] = torch.tensor([[1.0, 0.0], [0.0, -1.0]], dtype=F64)
    with pytest.raises(ParameterError) as err:
        GaussianMixtureDenoiser(means, covs, weights)
    assert err.value.parameter == "covs"


# --------------------------------------------------------------------------- #
# 3. per-sample σ of shape (B,) equals row-by-row scalar calls; float32 ≈ float64
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("name", TOYS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_per_sample_sigma_equals_scalar_calls(name, dtype):
    model = load_model(name)
    n = 12
    g = _gen(8)
    sigmas = torch.tensor([0.01, 0.5, 10.0, 0.5, 2.0, 0.01, 0.1, 10.0, 0.1, 2.0, 0.5, 0.03], dtype=F64)
    x = (model.sample_reference(n, g) + sigmas[:, None] * torch.randn(n, 2, generator=g, dtype=F64)).to(dtype)
    conds = [None] if model.classes is None else [None, 1, torch.tensor([0, 1] * 6)]
    rtol = 2e-3 if dtype == torch.float32 else 1e-10
    row_of = lambda t, b: t[b : b + 1].reshape(1, -1)  # noqa: E731
    for cond in conds:
        for method in ("__call__", "score", "log_prob", "denoiser_jacobian", "drift_jacobian"):
            fn = getattr(model, method)
            batched = fn(x, sigmas.to(dtype), cond)
            assert batched.dtype == dtype
            for b in range(n):
                c = cond[b : b + 1] if isinstance(cond, torch.Tensor) else cond
                row = fn(x[b : b + 1], float(sigmas.to(dtype)[b]), c)  # the same σ, as a Python float
                # The same formulas; only the blocking of the sums over K components differs, and
                # log π_k N(x; μ_k, Σ'_k) cancels terms of size ~‖P_k‖‖x‖² ≫ 1 (tree: ~1e4 ulps).
                # A σ or class mixed up between rows would give O(1) differences.
                _assert_rows_close(row_of(batched, b), row.reshape(1, -1), rtol, floor=1.0)


@pytest.mark.parametrize("name", TOYS)
@pytest.mark.parametrize("sigma", [0.01, 0.1, 1.0, 10.0])
def test_float32_close_to_float64(name, sigma):
    model = load_model(name)
    cond = None if model.classes is None else torch.arange(64) % 2
    x = _noisy_points(model, 64, sigma, seed=9).float().double()  # the same points in both dtypes
    d64 = model(x, sigma, cond)
    d32 = model(x.float(), sigma, cond)
    assert d32.dtype == torch.float32
    # float32 carries ~6e-8 relative on |x| (up to ~30 at σ = 10); the mixture algebra
    # (exponents of size ‖P_k‖‖x‖², sums over K components) may lose about two digits more.
    atol = 2e-5 * max(1.0, float(x.abs().max()))
    torch.testing.assert_close(d32.double(), d64, rtol=0, atol=atol)
    f64 = (x - d64) / sigma
    f32 = (x.float() - d32) / sigma
    torch.testing.assert_close(f32.double(), f64, rtol=0, atol=1.01 * atol / sigma)


def test_sigma_and_x_shape_errors():
    model = load_model("moons")
    x = torch.zeros(4, 2, dtype=F64)
    with pytest.raises(ParameterError) as err:
        model(x, torch.ones(3, dtype=F64))
    assert err.value.parameter == "sigma"
    with pytest.raises(ParameterError) as err:
        model(torch.zeros(4, 3, dtype=F64), 1.0)
    assert err.value.parameter == "x"


def test_scalar_sigma_float_tensor_and_vector_agree():
    model = load_model("rings")
    x = _noisy_points(model, 16, 0.2, seed=11)
    a = model(x, 0.2)
    torch.testing.assert_close(model(x, torch.tensor(0.2, dtype=F64)), a, rtol=0, atol=0)
    torch.testing.assert_close(model(x, torch.full((16,), 0.2, dtype=F64)), a, rtol=0, atol=0)


# --------------------------------------------------------------------------- #
# 4. sample_reference: moments against the mixture's closed form
# --------------------------------------------------------------------------- #
def _closed_form_moments(means, covs, weights):
    pi = weights / weights.sum()
    m = (pi[:, None] * means).sum(0)
    second = (pi[:, None, None] * (covs + means[:, :, None] * means[:, None, :])).sum(0)
    return m, second - torch.outer(m, m)


def _params(model, cls=None):
    """(means, covs, weights) from the model's float64 parameters, restricted to a class."""
    means, eigvals, eigvecs, weights = model._params
    covs = eigvecs @ torch.diag_embed(eigvals) @ eigvecs.transpose(1, 2)
    if cls is not None:
        mask = torch.as_tensor(model._component_class) == cls
        means, covs, weights = means[mask], covs[mask], weights[mask]
    return means, covs, weights


def _assert_moments(samples, mean, cov, n_se: float = 5.0):
    """Empirical mean / covariance within n_se Monte-Carlo standard errors of the closed form."""
    n = samples.shape[0]
    emp_mean = samples.mean(0)
    centred = samples - emp_mean
    emp_cov = centred.T @ centred / (n - 1)
    se_mean = (emp_cov.diagonal() / n).sqrt()
    assert ((emp_mean - mean).abs() <= n_se * se_mean).all(), (emp_mean, mean, se_mean)
    prods = centred[:, :, None] * centred[:, None, :]  # (n, d, d)
    se_cov = (prods.var(0) / n).sqrt()
    assert ((emp_cov - cov).abs() <= n_se * se_cov).all(), (emp_cov, cov, se_cov)


def test_sample_reference_moments_own_mixture():
    means, covs, weights = _random_mixture(3, 2, seed=30)
    model = GaussianMixtureDenoiser(means, covs, weights, torch.tensor([0, 1, 1]), ("a", "b"))
    samples = model.sample_reference(100_000, _gen(12))
    assert samples.shape == (100_000, 2) and samples.dtype == F64
    _assert_moments(samples, *_closed_form_moments(means, covs, weights))
    samples_b = model.sample_reference(100_000, _gen(13), cond="b")
    _assert_moments(samples_b, *_closed_form_moments(means[1:], covs[1:], weights[1:]))
    # class a is one Gaussian: its moments are μ_0, Σ_0
    _assert_moments(model.sample_reference(100_000, _gen(14), cond=0), means[0], covs[0])


@pytest.mark.parametrize("name", TOYS)
def test_sample_reference_moments_toys(name):
    model = load_model(name)
    samples = model.sample_reference(100_000, _gen(15))
    assert samples.shape == (100_000, *model.shape)
    _assert_moments(samples, *_closed_form_moments(*_params(model)))
    if model.classes is not None:
        for c in range(len(model.classes)):
            samples = model.sample_reference(50_000, _gen(16 + c), cond=c)
            _assert_moments(samples, *_closed_form_moments(*_params(model, c)))


def test_sample_reference_is_reproducible():
    model = load_model("tree")
    a = model.sample_reference(500, _gen(3))
    b = model.sample_reference(500, _gen(3))
    c = model.sample_reference(500, _gen(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert torch.equal(model.sample_reference(200, _gen(3), cond="A"), model.sample_reference(200, _gen(3), cond=0))


# --------------------------------------------------------------------------- #
# 5. the tree re-derived from docs/math.md §7
# --------------------------------------------------------------------------- #
def _spec_tree():
    """The tree of docs/math.md §7, written from the text: (class, mean, cov, weight) per component."""
    rng = np.random.RandomState(2)
    scale = np.array([1.3136, 1.3844])
    origin = np.array([0.0030, 0.0325])
    out = {"cls": [], "mean": [], "cov": [], "weight": []}
    branches = [0, 0]

    def grow(cls, depth, start, angle):
        branches[cls] += 1
        u = np.array([np.cos(angle), np.sin(angle)])
        ell = 0.292 * 0.8**depth * (1.0 + 0.2 * rng.standard_normal())
        tau = 0.2 * 0.8**depth / ell
        s = scale * ell * 0.06
        uu = np.outer(u, u)
        cov = (uu + tau**2 * (np.eye(2) - uu)) * np.outer(s, s)
        for t in np.linspace(0.07, 0.93, 8):
            out["cls"].append(cls)
            out["mean"].append((start + u * ell * t) * scale)
            out["cov"].append(cov)
            out["weight"].append(ell * 0.5**depth)
        if depth < 6:
            end = start + u * ell
            for sign in (+1.0, -1.0):
                child = angle + sign * 0.7**depth * (1.0 + 0.2 * rng.standard_normal())
                grow(cls, depth + 1, end, child)

    grow(0, 0, origin, math.pi / 4)
    grow(1, 0, origin, 5 * math.pi / 4)
    cls = np.array(out["cls"])
    return cls, np.array(out["mean"]), np.array(out["cov"]), np.array(out["weight"]), branches


def _canonical(cls, means):
    """An order independent of how components were enumerated: by class, then mean x, then mean y."""
    return np.lexsort((means[:, 1], means[:, 0], cls))


def test_tree_matches_math_spec():
    cls, means, covs, weights, branches = _spec_tree()
    assert branches == [127, 127]
    assert (cls == 0).sum() == 1016 and (cls == 1).sum() == 1016
    model = load_model("tree")
    assert model.n_components == 2032
    m_means, m_covs, m_weights = (t.numpy() for t in _params(model))
    m_cls = np.asarray(torch.as_tensor(model._component_class))
    mine, theirs = _canonical(cls, means), _canonical(m_cls, m_means)
    np.testing.assert_array_equal(m_cls[theirs], cls[mine])
    np.testing.assert_allclose(m_means[theirs], means[mine], rtol=0, atol=1e-14)
    np.testing.assert_allclose(m_covs[theirs], covs[mine], rtol=1e-9, atol=1e-17)
    np.testing.assert_allclose((m_weights / m_weights.sum())[theirs], (weights / weights.sum())[mine], rtol=1e-12)
    # class prior of the unconditional mixture: normalised class weight sums
    prior = np.array([weights[cls == c].sum() for c in (0, 1)]) / weights.sum()
    np.testing.assert_allclose(np.asarray(model.class_prior, dtype=float), prior, rtol=1e-12)


def test_tree_density_from_spec_parameters():
    """log p_σ of the tree (per class and unconditional) by brute force from the spec's own parameters."""
    cls, means, covs, weights, _ = _spec_tree()
    model = load_model("tree")
    means, covs, weights = (torch.tensor(a, dtype=F64) for a in (means, covs, weights))
    cls = torch.tensor(cls)
    for sigma in (0.0, 0.02, 0.5):
        x = _noisy_points(model, 64, max(sigma, 0.01), seed=17)
        lp = {}
        for c in (0, 1):
            mask = cls == c
            lp[c], mean, _ = _brute_force(means[mask], covs[mask], weights[mask], x, sigma)
            torch.testing.assert_close(model.log_prob(x, sigma, c), lp[c], rtol=1e-9, atol=1e-9)
            if sigma:
                _assert_rows_close(model(x, sigma, c), mean, 1e-8)
        # unconditional = Σ_c prior_c p(x | c), prior_c = normalised class weight sums
        prior = torch.stack([weights[cls == c].sum() for c in (0, 1)]) / weights.sum()
        expected = torch.logsumexp(torch.stack([lp[0] + prior[0].log(), lp[1] + prior[1].log()]), 0)
        torch.testing.assert_close(model.log_prob(x, sigma), expected, rtol=1e-9, atol=1e-9)


# --------------------------------------------------------------------------- #
# 6. weak twins for Autoguidance
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("name", TOYS)
def test_weak_model_is_smaller_and_weaker(name):
    model = load_model(name)
    weak = model.weak
    assert weak is not None
    assert weak.shape == model.shape
    assert weak.classes == model.classes
    assert 4 * weak.n_components <= model.n_components
    conds = [None] if model.classes is None else [None, 0, 1]
    for cond in conds:
        x0 = model.sample_reference(20_000, _gen(18), cond=cond)
        nll_exact = -model.log_prob(x0, 0.0, cond)
        nll_weak = -weak.log_prob(x0, 0.0, cond)
        gap = nll_weak - nll_exact  # its mean estimates KL(p || weak) ≥ 0
        se = float(gap.std() / math.sqrt(gap.numel()))
        assert float(gap.mean()) > 5 * se and float(gap.mean()) > 0.05, (name, cond, float(gap.mean()), se)
        # and it still denoises the same shape
        x = x0[:8] + 0.5 * torch.randn(8, *model.shape, generator=_gen(19), dtype=F64)
        assert weak(x, 0.5, cond).shape == x.shape


# --------------------------------------------------------------------------- #
# 7. guided_denoiser: CFG and Autoguidance (docs/math.md §6)
# --------------------------------------------------------------------------- #
class _Counting:
    """Wraps a model and counts calls, to check the advertised number of model calls."""

    def __init__(self, model):
        self.model, self.shape, self.classes, self.calls = model, model.shape, model.classes, 0
        self.weak = None
        if getattr(model, "weak", None) is not None:
            self.weak = _Counting(model.weak)

    def __call__(self, x, sigma, cond=None):
        self.calls += 1
        return self.model(x, sigma, cond)

    def total(self):
        return self.calls + (self.weak.calls if self.weak is not None else 0)


def _tree_batch(n=16, sigma=0.3):
    model = load_model("tree")
    return model, _noisy_points(model, n, sigma, seed=21), sigma


def test_guidance_w1_is_the_model_itself():
    model, x, sigma = _tree_batch()
    counted = _Counting(model)
    for cond in (None, 0, "B", torch.arange(16) % 2):
        counted.calls = 0
        counted.weak.calls = 0
        denoise = guided_denoiser(counted, cond)
        calls = denoise.calls
        out = denoise(x, sigma)
        assert calls == 1 and counted.total() == 1
        assert torch.equal(out, model(x, sigma, cond))


@pytest.mark.parametrize("w", [0.0, 2.5, 7.0])
def test_cfg_formula(w):
    model, x, sigma = _tree_batch()
    for cond in (0, torch.arange(16) % 2):
        counted = _Counting(model)
        denoise = guided_denoiser(counted, cond, cfg=w)
        calls = denoise.calls
        out = denoise(x, sigma)
        d_c, d_u = model(x, sigma, cond), model(x, sigma, None)
        torch.testing.assert_close(out, d_u + w * (d_c - d_u), rtol=1e-12, atol=1e-12)
        assert calls == 2 and counted.total() == 2
        assert counted.weak.calls == 0


@pytest.mark.parametrize("name", ["tree", "moons"])
@pytest.mark.parametrize("w", [0.0, 2.0, 4.5])
def test_autoguidance_formula(name, w):
    model = load_model(name)
    x = _noisy_points(model, 16, 0.3, seed=22)
    cond = None if model.classes is None else 1
    counted = _Counting(model)
    denoise = guided_denoiser(counted, cond, autoguidance=w)
    calls = denoise.calls
    out = denoise(x, 0.3)
    d, d_weak = model(x, 0.3, cond), model.weak(x, 0.3, cond)
    torch.testing.assert_close(out, d_weak + w * (d - d_weak), rtol=1e-12, atol=1e-12)
    assert calls == 2 and counted.total() == 2 and counted.weak.calls == 1


def test_cfg_and_autoguidance_compose():
    model, x, sigma = _tree_batch()
    w_cfg, w_ag = 3.0, 1.8
    cond = torch.arange(16) % 2
    counted = _Counting(model)
    denoise = guided_denoiser(counted, cond, cfg=w_cfg, autoguidance=w_ag)
    calls = denoise.calls
    out = denoise(x, sigma)
    d_c, d_u, d_w = model(x, sigma, cond), model(x, sigma, None), model.weak(x, sigma, cond)
    expected = d_c + (w_cfg - 1) * (d_c - d_u) + (w_ag - 1) * (d_c - d_w)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    assert calls == 3 and counted.total() == 3


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("which", ["cfg", "autoguidance"])
def test_guidance_rejects_non_finite_weights(bad, which):
    model = load_model("tree")
    with pytest.raises(ParameterError) as err:
        guided_denoiser(model, 0, **{which: bad})
    assert err.value.parameter == which


def test_cfg_needs_a_class_and_a_conditional_model():
    with pytest.raises(ParameterError) as err:
        guided_denoiser(load_model("tree"), None, cfg=2.0)
    assert err.value.parameter == "cfg"
    with pytest.raises(ParameterError) as err:
        guided_denoiser(load_model("moons"), None, cfg=2.0)
    assert err.value.parameter == "cfg"


def test_autoguidance_needs_a_weak_model():
    plain = CallableDenoiser(lambda x, sigma: 0.5 * x, shape=(2,))
    with pytest.raises(ParameterError) as err:
        guided_denoiser(plain, None, autoguidance=2.0)
    assert err.value.parameter == "autoguidance"
    denoise = guided_denoiser(plain)  # w = 1 works on any callable
    calls = denoise.calls
    x = torch.ones(3, 2)
    assert calls == 1 and torch.equal(denoise(x, 1.0), 0.5 * x)


# --------------------------------------------------------------------------- #
# 8. registry: load_model
# --------------------------------------------------------------------------- #
def test_load_model_unknown_name():
    with pytest.raises(ParameterError) as err:
        load_model("no-such-model")
    assert err.value.parameter == "model"
    assert "tree" in str(err.value)


@pytest.mark.parametrize("name", TOYS)
def test_load_model_contract(name):
    model = load_model(name)
    assert tuple(model.shape) == (2,)
    assert model.classes == (("A", "B") if name == "tree" else None)
    assert model.dtype == torch.float32 and model.device == torch.device("cpu")
    assert load_model(name, dtype=torch.float64).dtype == torch.float64
    # k-diffusion convention: model(x, sigma) with sigma of shape (B,)
    x = torch.randn(5, 2, generator=_gen(23))
    out = model(x, torch.full((5,), 1.5))
    assert out.shape == x.shape and out.dtype == x.dtype


def test_class_by_name_or_index_and_out_of_range():
    model = load_model("tree")
    x = _noisy_points(model, 8, 0.2, seed=24)
    assert torch.equal(model(x, 0.2, "A"), model(x, 0.2, 0))
    assert torch.equal(model(x, 0.2, "B"), model(x, 0.2, 1))
    assert not torch.allclose(model(x, 0.2, 0), model(x, 0.2, 1))
    for bad in (2, -1, "C", torch.tensor([0, 1, 2, 0, 0, 0, 0, 0]), torch.tensor([0, 1])):
        with pytest.raises(ParameterError) as err:
            model(x, 0.2, bad)
        assert err.value.parameter == "class"
    with pytest.raises(ParameterError) as err:
        load_model("moons")(x, 0.2, 0)
    assert err.value.parameter == "class"
    with pytest.raises(ParameterError) as err:
        model.sample_reference(4, _gen(0), cond=5)
    assert err.value.parameter == "class"
