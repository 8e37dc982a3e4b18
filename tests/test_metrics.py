"""Tests for stiffviz.metrics against closed forms and hand-computed values.

No expected value below was produced by the code under test: each is either a
hand computation or a closed form, with tolerances derived in the comments.
"""

from __future__ import annotations

import math

import pytest
import torch

from stiffviz import metrics
from stiffviz.metrics import knn_precision_recall, mean_nll, sliced_wasserstein


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------- #
# sliced Wasserstein: translations
# --------------------------------------------------------------------------- #
# For y = x + t every projection keeps the order of the points, so each 1-D
# term is exactly W2^2(theta.x, theta.y) = (theta.t)^2, whatever x is.  Hence
# SW^2 / |t|^2 = mean_p u_p^2 with u = theta.t/|t|, and for theta ~ U(S^{d-1})
# u^2 ~ Beta(1/2, (d-1)/2): E[u^2] = 1/d, Var[u^2] = 2(d-1) / (d^2 (d+2)).
# The only error is Monte-Carlo over the P directions: standard error
# sqrt(Var[u^2] / P).  We allow 5 standard errors (two-sided p ~ 6e-7 per
# test; the seeds are fixed, so the tests are deterministic anyway).
def _u2_tolerance(d: int, n_projections: int) -> float:
    var_u2 = 2.0 * (d - 1) / (d * d * (d + 2))
    return 5.0 * math.sqrt(var_u2 / n_projections)


@pytest.mark.parametrize("d", [2, 3, 5])
def test_sw_translation_equal_sizes(d):
    x = torch.randn(64, d, generator=_gen(0)) * 3.0
    t = torch.linspace(-1.0, 2.0, d)
    p = 4096
    sw = sliced_wasserstein(x, x + t, n_projections=p, generator=_gen(1))
    ratio = sw**2 / float(t.pow(2).sum())
    assert abs(ratio - 1.0 / d) < _u2_tolerance(d, p)


def test_sw_translation_is_exact_in_one_dimension():
    # d = 1: theta = +-1, so SW = |t| exactly for any number of projections.
    x = torch.randn(300, generator=_gen(2), dtype=torch.float64)
    assert sliced_wasserstein(x, x - 2.5, n_projections=3) == pytest.approx(2.5, rel=1e-12)
    assert sliced_wasserstein(x[:, None], x[:, None] + 0.75, n_projections=1) == pytest.approx(
        0.75, rel=1e-12
    )


def test_sw_translation_unequal_sizes():
    # x = base repeated 3 times (N = 150), y = base repeated 2 times + t (M = 100):
    # the two empirical measures are exact translates of each other, the
    # breakpoints i/150 and j/100 interleave non-trivially, and the closed form
    # is the same as for equal sizes.
    d = 3
    base = torch.randn(50, d, generator=_gen(3)) * 2.0
    t = torch.tensor([1.0, -2.0, 0.5])
    x = base.repeat(3, 1)
    y = base.repeat(2, 1) + t
    p = 4096
    sw = sliced_wasserstein(x, y, n_projections=p, generator=_gen(4))
    ratio = sw**2 / float(t.pow(2).sum())
    assert abs(ratio - 1.0 / d) < _u2_tolerance(d, p)
    # Swapping the arguments (M > N instead of N > M) gives the same number for
    # the same directions: W2 is symmetric.
    sw_swapped = sliced_wasserstein(y, x, n_projections=p, generator=_gen(4))
    assert sw_swapped == pytest.approx(sw, rel=1e-12)


def test_sw_unequal_sizes_hand_computed():
    # 1-D: x = {0, 1} (N=2), y = {0, 0.5, 1} (M=3).  Quantile functions:
    #   F^-1 = 0 on [0, 1/2), 1 on [1/2, 1)
    #   G^-1 = 0 on [0, 1/3), 0.5 on [1/3, 2/3), 1 on [2/3, 1)
    # W2^2 = (1/2 - 1/3) * 0.5^2 + (2/3 - 1/2) * 0.5^2 = 1/12.
    x = torch.tensor([0.0, 1.0])
    y = torch.tensor([0.0, 0.5, 1.0])
    assert sliced_wasserstein(x, y, n_projections=2) == pytest.approx(math.sqrt(1 / 12), rel=1e-12)


def test_sw_replicated_cloud_is_zero():
    # Repeating every point r times does not change the empirical measure, so the
    # exact 1-D W2 between a cloud and its replicate is 0.
    x = torch.randn(123, 2, generator=_gen(5))
    assert sliced_wasserstein(x, x.repeat(4, 1), generator=_gen(6)) < 1e-12
    assert sliced_wasserstein(x.repeat(2, 1), x.repeat(3, 1), generator=_gen(6)) < 1e-12


def test_sw_flattens_trailing_dims():
    # (N, 2, 2) is read as N points in R^4; a translation gives |t| / sqrt(4)
    # (same Monte-Carlo tolerance as above with d = 4).
    x = torch.randn(64, 2, 2, generator=_gen(7))
    t = torch.tensor([[1.0, 2.0], [-1.0, 0.0]])
    p = 4096
    sw = sliced_wasserstein(x, x + t, n_projections=p, generator=_gen(8))
    assert abs(sw**2 / 6.0 - 1.0 / 4) < _u2_tolerance(4, p)


def test_sw_same_distribution_near_zero():
    # Two independent n-samples of N(0, I): each projection is a pair of N(0, 1)
    # samples, for which E W2^2 between empirical measures is O(log log n / n)
    # (Bobkov & Ledoux 2019), i.e. ~1e-3 for n = 4000, so SW ~ 0.03.  A
    # translation by 0.5 in 2-D would give 0.5/sqrt(2) ~ 0.35.
    x = torch.randn(4000, 2, generator=_gen(9))
    y = torch.randn(4000, 2, generator=_gen(10))
    assert sliced_wasserstein(x, y, generator=_gen(11)) < 0.08


def test_sw_gaussian_scale_closed_form():
    # Each projection of N(0, I) is N(0, 1) and of N(0, s^2 I) is N(0, s^2), and
    # W2(N(0,1), N(0,s^2)) = |1 - s| for every theta, so SW = |1 - s|.
    # Sampling error (linearising W2^2 in the empirical quantile functions):
    # Var[W2^2] ~ 2 (1-s)^2 (1/N + s^2/M) per direction; for s = 2, N = 4000,
    # M = 3000 this is 3.2e-3, sd 0.056 on W2^2 = 1, i.e. sd <= 0.028 on SW
    # (averaging over directions only lowers it).  Tolerance 0.1 ~ 3.5 sd.
    s = 2.0
    x = torch.randn(4000, 2, generator=_gen(12))
    y = s * torch.randn(3000, 2, generator=_gen(13))
    sw = sliced_wasserstein(x, y, n_projections=128, generator=_gen(14))
    assert sw == pytest.approx(abs(1.0 - s), abs=0.1)
    # and s = 0.5: SW = 0.5; Var[W2^2] ~ 1.7e-4, sd <= 0.013 on SW, tol 0.05 ~ 4 sd.
    y_half = 0.5 * torch.randn(3000, 2, generator=_gen(15))
    assert sliced_wasserstein(x, y_half, n_projections=128, generator=_gen(16)) == pytest.approx(
        0.5, abs=0.05
    )


def test_sw_generator_reproducible():
    x = torch.randn(50, 3, generator=_gen(17))
    y = torch.randn(70, 3, generator=_gen(18))
    a = sliced_wasserstein(x, y, n_projections=16, generator=_gen(19))
    b = sliced_wasserstein(x, y, n_projections=16, generator=_gen(19))
    assert a == b


# --------------------------------------------------------------------------- #
# mean NLL
# --------------------------------------------------------------------------- #
def test_mean_nll_exact_for_simple_log_prob():
    # log p(x) = -|x|^2  =>  NLL = mean |x|^2, computed by hand for 3 points.
    x = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]])
    assert mean_nll(x, lambda z: -(z**2).sum(-1)) == pytest.approx((1 + 2 + 4) / 3, rel=1e-12)


def test_mean_nll_gaussian_entropy():
    # For x ~ N(mu, Sigma) the mean NLL under the exact density estimates the
    # entropy H = 1/2 log((2 pi e)^d det Sigma).  -log p(x) = const + chi^2_d / 2,
    # so the estimator's standard error is std(-log p) / sqrt(n); we estimate
    # that std from the sample and allow 5 standard errors.
    d, n = 3, 10000
    chol = torch.tensor([[1.0, 0.0, 0.0], [0.5, 2.0, 0.0], [-0.3, 0.4, 0.7]], dtype=torch.float64)
    sigma = chol @ chol.T
    mu = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    x = mu + torch.randn(n, d, generator=_gen(20), dtype=torch.float64) @ chol.T

    def log_prob(z: torch.Tensor) -> torch.Tensor:
        # log N(z; mu, Sigma) = -1/2 [d log 2 pi + log det Sigma + (z-mu)^T Sigma^-1 (z-mu)]
        w = torch.linalg.solve_triangular(chol, (z - mu).T, upper=False)  # L^-1 (z - mu)
        logdet = 2.0 * torch.log(torch.diagonal(chol)).sum()
        return -0.5 * (d * math.log(2 * math.pi) + logdet + w.pow(2).sum(0))

    entropy = 0.5 * (d * math.log(2 * math.pi * math.e) + math.log(float(torch.det(sigma))))
    se = float((-log_prob(x)).std()) / math.sqrt(n)
    assert abs(mean_nll(x, log_prob) - entropy) < 5 * se
    # The theoretical sd of -log p is sqrt(d/2); the sample std must agree.
    assert se * math.sqrt(n) == pytest.approx(math.sqrt(d / 2), rel=0.05)


def test_mean_nll_inf_and_errors():
    x = torch.zeros(4, 2)
    assert mean_nll(x, lambda z: torch.full((z.shape[0],), -math.inf)) == math.inf
    with pytest.raises(ValueError, match="log_prob"):
        mean_nll(x, lambda z: torch.zeros(3))
    with pytest.raises(ValueError, match="log_prob"):
        mean_nll(x, lambda z: torch.full((4,), math.nan))
    bad = x.clone()
    bad[1, 0] = math.nan
    with pytest.raises(ValueError, match="x: contains non-finite values"):
        mean_nll(bad, lambda z: -(z**2).sum(-1))


# --------------------------------------------------------------------------- #
# k-NN precision / recall
# --------------------------------------------------------------------------- #
def test_pr_identical_distributions():
    real = torch.randn(2000, 2, generator=_gen(21))
    fake = torch.randn(2000, 2, generator=_gen(22))
    precision, recall = knn_precision_recall(real, fake, k=3)
    assert precision > 0.9 and recall > 0.9


def test_pr_disjoint_clouds():
    # Clouds 100 apart in a 2-D unit-variance setting: no k-NN ball (radius a
    # few units at most) can reach the other cloud.
    real = torch.randn(500, 2, generator=_gen(23))
    fake = torch.randn(400, 2, generator=_gen(24)) + torch.tensor([100.0, 0.0])
    assert knn_precision_recall(real, fake, k=3) == (0.0, 0.0)


def test_pr_half_the_modes():
    # Real: 4 modes (500 points each) at the corners of a square of side 20;
    # fake: 1000 points on each of 2 of those modes.  Every fake point sits on
    # a real mode -> precision ~ 1.  The 1000 real points on the uncovered
    # modes are >= 20 away from any fake point while fake radii are << 1, so
    # recall <= 0.5 exactly, and ~0.5 since the covered modes are well covered.
    centres = torch.tensor([[0.0, 0.0], [20.0, 0.0], [0.0, 20.0], [20.0, 20.0]])
    real = torch.cat([c + torch.randn(500, 2, generator=_gen(30 + i)) * 0.5 for i, c in enumerate(centres)])
    fake = torch.cat([c + torch.randn(1000, 2, generator=_gen(40 + i)) * 0.5 for i, c in enumerate(centres[:2])])
    precision, recall = knn_precision_recall(real, fake, k=3)
    assert precision > 0.9
    assert 0.45 < recall <= 0.5


def test_pr_hand_computed_small_case():
    # 1-D, k = 1.  real = {0,1,2,3}: each point's nearest *other* point is 1 away,
    # so all real radii are 1 (if the point itself were counted, they would be 0).
    # fake = {0.5, 4, 10}: 0.5 is within 1 of 0; 4 is exactly 1 from 3 (closed
    # ball -> inside); 10 is 7 from 3 -> outside.  precision = 2/3.
    # Fake radii: 0.5 -> 3.5, 4 -> 3.5, 10 -> 6; the ball [-3, 4] around 0.5
    # holds all real points -> recall = 1.
    real = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
    fake = torch.tensor([[0.5], [4.0], [10.0]])
    precision, recall = knn_precision_recall(real, fake, k=1)
    assert precision == pytest.approx(2 / 3, abs=1e-15)
    assert recall == 1.0
    # recall(real, fake) is precision(fake, real): swap the roles.
    # real' = {0.5, 4, 10} (radii 3.5, 3.5, 6), fake' = {0,1,2,3} -> precision' = 1;
    # real'' = {0,1,2,3} radii 1 -> recall' = 2/3.
    p2, r2 = knn_precision_recall(fake, real, k=1)
    assert p2 == 1.0
    assert r2 == pytest.approx(2 / 3, abs=1e-15)


def test_pr_duplicates_count_as_neighbours():
    # real = {0, 0, 5, 5}, k = 1: each point's nearest other point is its twin at
    # distance 0, so every ball has radius 0 and only exact hits count.
    real = torch.tensor([[0.0], [0.0], [5.0], [5.0]])
    fake = torch.tensor([[0.0], [5.0], [0.1], [2.0]])
    precision, _ = knn_precision_recall(real, fake, k=1)
    assert precision == 0.5


def test_pr_chunking_does_not_change_result(monkeypatch):
    # Force one row per distance block and redo the hand-computed case.
    monkeypatch.setattr(metrics, "_CHUNK_ELEMENTS", 1)
    real = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
    fake = torch.tensor([[0.5], [4.0], [10.0]])
    precision, recall = knn_precision_recall(real, fake, k=1)
    assert precision == pytest.approx(2 / 3, abs=1e-15)
    assert recall == 1.0


def test_pr_large_inputs_chunked():
    # 4096 x 4096 runs blockwise; statistically identical sets give high P/R.
    real = torch.randn(4096, 2, generator=_gen(50))
    fake = torch.randn(4096, 2, generator=_gen(51))
    precision, recall = knn_precision_recall(real, fake)
    assert precision > 0.9 and recall > 0.9


# --------------------------------------------------------------------------- #
# input validation
# --------------------------------------------------------------------------- #
def _nonfinite(value: float) -> torch.Tensor:
    z = torch.zeros(10, 2)
    z[3, 1] = value
    return z


def test_sw_validation():
    x = torch.randn(10, 2)
    with pytest.raises(ValueError, match=r"^y") as info:
        sliced_wasserstein(x, torch.randn(10, 3))
    assert info.value.parameter == "y"
    with pytest.raises(ValueError, match="n_projections"):
        sliced_wasserstein(x, x, n_projections=0)
    with pytest.raises(ValueError, match="n_projections"):
        sliced_wasserstein(x, x, n_projections=-3)
    for value in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError, match="x: contains non-finite values"):
            sliced_wasserstein(_nonfinite(value), x)
        with pytest.raises(ValueError, match="y: contains non-finite values"):
            sliced_wasserstein(x, _nonfinite(value))
    with pytest.raises(ValueError, match="x"):
        sliced_wasserstein(torch.empty(0, 2), x)
    with pytest.raises(ValueError, match="y"):
        sliced_wasserstein(x, torch.empty(0, 2))


def test_pr_validation():
    a = torch.randn(10, 2)
    with pytest.raises(ValueError, match=r"^fake") as info:
        knn_precision_recall(a, torch.randn(10, 3))
    assert info.value.parameter == "fake"
    with pytest.raises(ValueError, match=r"^real.*k\+1=4"):
        knn_precision_recall(a[:3], a, k=3)
    with pytest.raises(ValueError, match=r"^fake.*k\+1=4"):
        knn_precision_recall(a, a[:3], k=3)
    knn_precision_recall(a[:4], a[:4], k=3)  # exactly k+1 points is allowed
    with pytest.raises(ValueError, match=r"^k"):
        knn_precision_recall(a, a, k=0)
    for value in (math.nan, math.inf):
        with pytest.raises(ValueError, match="real: contains non-finite values"):
            knn_precision_recall(_nonfinite(value), a)
        with pytest.raises(ValueError, match="fake: contains non-finite values"):
            knn_precision_recall(a, _nonfinite(value))
