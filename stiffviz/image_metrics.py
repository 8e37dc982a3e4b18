"""Image quality for the digits family: a digits classifier, its accuracy on class-conditional
samples, a Fréchet distance in its feature space, and k-NN precision/recall there (docs/math.md §8).

The classifier is a small MLP (64 → 128 → 64 → 10, ReLU) trained at first use, once per
process (a few seconds, fixed seed), on scikit-learn's 1,797 digits scaled to [−1, 1],
with Gaussian-noise augmentation (σ = 0.1) so slightly noisy samples are still read.
Images of any size H = W = 8k are average-pooled to 8×8 first. Its features are the 64
activations of the last hidden layer. With feature means μ and covariances C,

    FD = ‖μ₁ − μ₂‖² + tr(C₁ + C₂ − 2 (C₁^{1/2} C₂ C₁^{1/2})^{1/2}).
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ParameterError
from .metrics import KNN_K, knn_precision_recall

TRAIN_SEED = 0
TRAIN_EPOCHS = 200
AUGMENT_NOISE = 0.1
FD_MIN_SAMPLES = 2  # a covariance needs two feature vectors


class DigitsClassifier(nn.Module):
    """MLP on 8×8 digits in [−1, 1]; ``features`` is the last hidden layer."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU())
        self.head = nn.Linear(64, 10)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(to_8x8(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))


def to_8x8(images: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) → (B, 1, 8, 8) float32 on the CPU by average pooling, clamped to [−1, 1]."""
    images = images.detach().to("cpu", torch.float32)
    if images.ndim != 4 or images.shape[1] != 1 or images.shape[-1] % 8 or images.shape[-2] != images.shape[-1]:
        raise ValueError(f"expected digit images (B, 1, 8k, 8k), got {tuple(images.shape)}")
    return F.adaptive_avg_pool2d(images, 8).clamp(-1.0, 1.0)


@lru_cache(maxsize=None)
def digits_classifier() -> DigitsClassifier:
    """The classifier, trained on first use (full-batch Adam, fixed seed) and cached."""
    from .models.empirical import digits_images

    images, labels = digits_images(8)
    images = images.float()
    generator = torch.Generator().manual_seed(TRAIN_SEED)
    with torch.random.fork_rng():
        torch.manual_seed(TRAIN_SEED)
        net = DigitsClassifier()
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    with torch.enable_grad():
        for _ in range(TRAIN_EPOCHS):
            noisy = images + AUGMENT_NOISE * torch.randn(images.shape, generator=generator)
            loss = F.cross_entropy(net(noisy), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return net.eval().requires_grad_(False)


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """FD between Gaussian fits of feature sets a (N, k) and b (M, k), in float64 (N, M ≥ 2)."""
    for name, features in (("a", a), ("b", b)):
        if len(features) < FD_MIN_SAMPLES:
            raise ParameterError(name, f"has {len(features)} feature vectors but a covariance needs at least "
                                       f"{FD_MIN_SAMPLES}")  # fmt: skip
    a, b = a.double(), b.double()
    mean_a, mean_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    values, vectors = torch.linalg.eigh(cov_a)
    root_a = vectors @ torch.diag(values.clamp_min(0).sqrt()) @ vectors.T
    middle = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp_min(0).sqrt().sum()
    return float((mean_a - mean_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * middle)


def image_quality(samples: torch.Tensor, reference: torch.Tensor, cond: int | None = None) -> dict[str, float | None]:
    """Accuracy (class-conditional runs only), Fréchet distance and k-NN precision/recall in
    the classifier's feature space, of ``samples`` against real ``reference`` images.

    A measure that too few samples cannot give is None: FD below ``FD_MIN_SAMPLES``,
    precision and recall below ``KNN_K + 1``."""
    net = digits_classifier()
    with torch.no_grad():
        fake, real = net.features(samples), net.features(reference)
        report = {}
        if cond is not None:
            report["accuracy"] = float((net.head(fake).argmax(1) == cond).double().mean())
    report["fd"] = frechet_distance(fake, real) if len(fake) >= FD_MIN_SAMPLES else None
    report["precision"], report["recall"] = knn_precision_recall(real, fake) if len(fake) > KNN_K else (None, None)
    return report
