"""Quality reports of small batches: what cannot be computed is not available, the rest is."""

from __future__ import annotations

import pytest
import torch

import stiffviz
from stiffviz.errors import ParameterError
from stiffviz.image_metrics import digits_classifier, frechet_distance
from stiffviz.metrics import knn_precision_recall, mean_nll, sliced_wasserstein
from stiffviz.quality import MIN_SAMPLES, REFERENCE_SEED_OFFSET, not_available, quality_report

pytestmark = pytest.mark.usefixtures("one_thread")


def toy_reference(model, n: int, seed: int):
    """The report's reference draw, rebuilt from its documented seed (the generator then draws the projections)."""
    generator = torch.Generator().manual_seed(seed + REFERENCE_SEED_OFFSET)
    return model.sample_reference(max(n, 512), generator), generator


@pytest.mark.parametrize("batch", [1, 2, 3, 4, 5])
def test_a_toy_batch_too_small_for_knn_keeps_its_other_measures(batch):
    model = stiffviz.load_model("tree")
    samples, _ = stiffviz.sample(model, steps=4, batch=batch, seed=batch)
    report = quality_report(model, samples, None, seed=batch)
    reference, generator = toy_reference(model, batch, batch)
    x = samples.double()
    assert report["swd"] == pytest.approx(sliced_wasserstein(x, reference, generator=generator), rel=1e-12)
    assert report["nll"] == pytest.approx(mean_nll(x, lambda y: model.log_prob(y, 0.0, None)), rel=1e-12)
    if batch < 4:  # k = 3: a k-th neighbour besides the point itself needs 4 points
        assert report["precision"] is None and report["recall"] is None
        assert not_available(report, batch) == f"precision and recall need at least 4 samples; the run has {batch}"
        with pytest.raises(ParameterError, match=f"fake: has {batch} points but k=3 needs at least k"):
            knn_precision_recall(reference, x)  # the measure itself still refuses, by name
    else:
        assert (report["precision"], report["recall"]) == knn_precision_recall(reference, x)
        assert not_available(report, batch) == ""


def test_one_digit_keeps_its_accuracy_and_two_give_a_frechet_distance():
    model = stiffviz.load_model("digits")
    one, _ = stiffviz.sample(model, steps=4, batch=1, cls=3)
    report = quality_report(model, one, 3, 0)
    net = digits_classifier()
    assert report["accuracy"] == float(net(one).argmax(1).item() == 3)
    assert report["fd"] is None and report["precision"] is None and report["recall"] is None
    assert not_available(report, 1) == "fd needs at least 2, precision and recall need at least 4 samples; the run has 1"
    with pytest.raises(ParameterError, match="a: has 1 feature vectors but a covariance needs at least 2"):
        frechet_distance(net.features(one), net.features(one.repeat(5, 1, 1, 1)))
    two, _ = stiffviz.sample(model, steps=4, batch=2, cls=3)
    report = quality_report(model, two, 3, 0)
    assert isinstance(report["fd"], float) and report["fd"] >= 0 and report["precision"] is None


def test_frechet_distance_of_two_points_against_the_closed_form():
    """Features a = {0, 2e₁}, b = {0, 2e₂}: means e₁ and e₂, covariances (unbiased) 2e₁e₁ᵀ and 2e₂e₂ᵀ,
    whose product is 0: FD = ‖e₁ − e₂‖² + tr(C_a) + tr(C_b) = 2 + 2 + 2 = 6."""
    a = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
    b = torch.tensor([[0.0, 0.0], [0.0, 2.0]])
    assert frechet_distance(a, b) == pytest.approx(6.0, abs=1e-12)


def test_min_samples_are_the_measures_own_limits():
    """Each count in MIN_SAMPLES is the smallest the measure itself accepts."""
    real = torch.randn(50, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    n = MIN_SAMPLES["precision"]
    assert n == MIN_SAMPLES["recall"]
    knn_precision_recall(real, real[:n])
    with pytest.raises(ParameterError, match="fake"):
        knn_precision_recall(real, real[: n - 1])
    frechet_distance(real, real[: MIN_SAMPLES["fd"]])
    with pytest.raises(ParameterError, match="b"):
        frechet_distance(real, real[: MIN_SAMPLES["fd"] - 1])
