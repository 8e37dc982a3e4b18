"""The digits image models and image metrics, against independent computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from stiffviz import ParameterError, load_model, sample
from stiffviz.image_metrics import digits_classifier, frechet_distance, image_quality
from stiffviz.models import guided_denoiser
from stiffviz.models.empirical import digits_images
from stiffviz.quality import quality_report


def _noisy(model, n, sigma, seed=0, cond=None):
    g = torch.Generator().manual_seed(seed)
    x = model.sample_reference(n, g, cond=cond)
    return x + sigma * torch.randn(x.shape, generator=g, dtype=torch.float64)


def test_digits_data_is_sklearn_digits_scaled_to_minus_one_one():
    raw = load_digits()
    images, labels = digits_images(8)
    assert images.shape == (1797, 1, 8, 8) and torch.equal(labels, torch.tensor(raw.target))
    assert torch.allclose(images[:, 0], torch.tensor(raw.images) / 8 - 1)
    up, _ = digits_images(16)
    assert up.shape == (1797, 1, 16, 16) and up.min() >= -1 and up.max() <= 1
    # Smooth upsampling: 2×2 average pooling gives the 8×8 image back closely.
    assert (torch.nn.functional.avg_pool2d(up, 2) - images).abs().mean() < 0.1


@pytest.mark.parametrize("name", ["digits", "digits16"])
@pytest.mark.parametrize("sigma", [0.05, 0.5, 3.0])
def test_denoiser_is_the_posterior_mean_of_the_data(name, sigma):
    """D(x; σ) = Σ_n r_n y_n with r ∝ π_n exp(−‖x − y_n‖²/2σ²), written out here in float64."""
    model = load_model(name)
    images, labels = digits_images(8 if name == "digits" else 16)
    y = images.flatten(1)
    x = _noisy(model, 6, sigma, seed=1)
    for cond in (None, 7):
        d2 = torch.cdist(x.flatten(1), y).square()
        logits = -d2 / (2 * sigma**2)
        if cond is not None:
            logits[:, labels != cond] = -math.inf
        expected = torch.softmax(logits, 1) @ y
        assert torch.allclose(model(x, sigma, cond).flatten(1), expected, atol=1e-10)


@pytest.mark.parametrize("name", ["digits", "digits16"])
def test_jvp_without_autograd_and_jacobian_match_autodiff(name):
    model = load_model(name)
    for twin in (model, model.weak):
        x = _noisy(model, 4, 0.4, seed=2)
        v = torch.randn(x.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
        for cond in (None, 2):
            autodiff = torch.func.jvp(lambda y: twin(y, 0.4, cond), (x,), (v,))[1]
            assert torch.allclose(twin.denoiser_jvp(x, 0.4, v, cond), autodiff, atol=1e-10)
            jac = twin.denoiser_jacobian(x, 0.4, cond)
            assert torch.allclose(torch.einsum("bij,bj->bi", jac, v.flatten(1)), autodiff.flatten(1), atol=1e-10)


def test_smoothed_twin_is_the_exact_denoiser_of_blurred_data():
    """p_σ = Σ π_n N(x; y_n, (σ² + δ²)I): D = x + σ² ∇log p_σ, with the gradient by autograd."""
    weak = load_model("digits").weak
    images, _ = digits_images(8)
    y = images.flatten(1)
    delta, sigma = weak.smoothing, 0.3
    x = _noisy(weak, 5, sigma, seed=4).flatten(1).requires_grad_(True)
    log_p = torch.logsumexp(-torch.cdist(x, y).square() / (2 * (sigma**2 + delta**2)), 1)
    (score,) = torch.autograd.grad(log_p.sum(), x)
    expected = x.detach() + sigma**2 * score
    assert torch.allclose(weak(x.detach().view(5, 1, 8, 8), sigma).flatten(1), expected, atol=1e-10)


def test_sample_reference_draws_real_digits_of_the_class():
    model = load_model("digits")
    images, labels = digits_images(8)
    draws = model.sample_reference(50, torch.Generator().manual_seed(0), cond=4).flatten(1)
    distances = torch.cdist(draws, images.flatten(1))
    nearest = distances.argmin(1)
    assert (distances.min(1).values == 0).all() and (labels[nearest] == 4).all()


def test_bad_class_and_shape():
    model = load_model("digits")
    with pytest.raises(ParameterError, match="class"):
        model(torch.zeros(2, 1, 8, 8), 1.0, 10)
    with pytest.raises(ParameterError, match="x"):
        model(torch.zeros(2, 64), 1.0)


def test_every_diagnostic_runs_on_images_with_per_sample_norms():
    """Norms over all non-batch dimensions; the exact and power-iteration spectra agree."""
    common = dict(solver="heun", steps=6, batch=16, seed=1, dtype="float64", cls=5, cfg=2.0, autoguidance=1.5)
    states = []
    _, exact = sample("digits", eig=True, lte_ref=True, lipschitz=True, stein=True, stein_oracle=True,
                      erk_guid=0.5, on_step=lambda r, x, d: states.append(x), **common)  # fmt: skip
    assert exact.status == "ok" and states[0].shape == (16, 1, 8, 8)
    _, power = sample("digits", eig=True, eig_method="power", eig_iterations=200, lanczos_iterations=64,
                      stein=True, erk_guid=0.5, **common)  # fmt: skip
    late = exact.column("sigma") < 2.0
    a, b = exact.column("eig_max")[late], power.column("eig_max")[late]
    assert np.median(np.abs(a - b) / np.abs(a)) < 1e-6
    # lte is the norm of the flattened embedded error: recompute one step by hand.
    _, plain = sample("digits", steps=3, batch=4, seed=2, dtype="float64")
    model = load_model("digits")
    x0 = 80.0 * torch.randn((4, 1, 8, 8), generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    sigmas = plain.sigmas
    f0 = (x0 - model(x0, sigmas[0])) / sigmas[0]
    x_e = x0 + (sigmas[1] - sigmas[0]) * f0
    f1 = (x_e - model(x_e, sigmas[1])) / sigmas[1]
    error = (sigmas[1] - sigmas[0]) * (f0 + f1) / 2 - (sigmas[1] - sigmas[0]) * f0
    assert np.allclose(plain.steps[0]["lte"], error.flatten(1).norm(dim=1).numpy(), rtol=1e-10)


def test_exact_spectrum_on_images_matches_autograd_eigh():
    from stiffviz.diagnostics.spectrum import ExactSpectrum

    model = load_model("digits")
    denoise = guided_denoiser(model, 3)
    x = _noisy(model, 3, 0.3, seed=5)
    flat = x.flatten(1)
    jac = torch.stack([torch.autograd.functional.jacobian(
        lambda r: ((r - denoise(r.view(1, 1, 8, 8), 0.3).flatten()) / 0.3), row) for row in flat])  # fmt: skip
    values = torch.linalg.eigvalsh(0.5 * (jac + jac.transpose(1, 2)))
    pair = ExactSpectrum(denoise.jacobian).dominant(x, 0.3)
    expected = values.gather(1, values.abs().argmax(1, keepdim=True)).squeeze(1)
    assert pair.vector.shape == x.shape and torch.allclose(pair.value, expected, rtol=1e-9)


# ------------------------------------------------------------------ image metrics
def test_frechet_distance_closed_form():
    """Gaussians with commuting covariances: FD = ‖μ₁ − μ₂‖² + Σ_i (√c₁ᵢ − √c₂ᵢ)²; rotation-invariant."""
    g = torch.Generator().manual_seed(0)
    n, k = 200000, 4
    c1, c2 = torch.tensor([1.0, 2.0, 0.5, 3.0]), torch.tensor([2.0, 0.5, 0.5, 1.0])
    mu1, mu2 = torch.zeros(k), torch.tensor([1.0, -1.0, 0.0, 0.5])
    a = mu1 + c1.sqrt() * torch.randn(n, k, generator=g, dtype=torch.float64)
    b = mu2 + c2.sqrt() * torch.randn(n, k, generator=g, dtype=torch.float64)
    expected = float((mu1 - mu2).square().sum() + (c1.sqrt() - c2.sqrt()).square().sum())
    assert frechet_distance(a, b) == pytest.approx(expected, abs=0.05)
    q, _ = torch.linalg.qr(torch.randn(k, k, generator=g, dtype=torch.float64))
    assert frechet_distance(a @ q, b @ q) == pytest.approx(frechet_distance(a, b), rel=1e-9)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)


def test_classifier_reads_digits():
    images, labels = digits_images(8)
    net = digits_classifier()
    with torch.no_grad():
        assert (net(images.float()).argmax(1) == labels).double().mean() > 0.98
        up, _ = digits_images(16)
        assert (net(up.float()).argmax(1) == labels).double().mean() > 0.97


def test_image_quality_separates_real_digits_from_noise():
    images, labels = digits_images(8)
    threes = images[labels == 3]
    real = image_quality(threes[:90], threes[90:], cond=3)
    noise = image_quality(torch.rand(90, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1, threes, cond=3)
    wrong = image_quality(images[labels == 8][:90], threes, cond=3)
    assert real["accuracy"] > 0.95 and noise["accuracy"] < 0.5 and wrong["accuracy"] < 0.05
    assert real["fd"] < wrong["fd"] and real["fd"] < noise["fd"]
    assert real["recall"] > 0.5 and noise["precision"] < 0.1


def test_quality_report_dispatches_to_image_metrics():
    x, trace = sample("digits", steps=12, batch=64, cls=6, seed=0)
    report = quality_report(load_model("digits"), x, 6, 0)
    assert set(report) == {"accuracy", "fd", "precision", "recall"}
    assert report["accuracy"] > 0.9  # the exact denoiser reproduces training digits of the class
