"""The 2-D toy models: exact Gaussian mixtures with a weaker twin for Autoguidance.

* ``tree``: the two-class fractal tree of the Autoguidance paper, built to the exact
  parameters of docs/math.md §7 (127 branches × 8 thin components per class).
* ``rings``, ``moons``, ``swissroll``: mixtures fitted once (per process) with
  scikit-learn's ``GaussianMixture`` to scikit-learn's sample generators, fixed seeds.

Weak versions (``model.weak``), used as D_ref by Autoguidance (docs/math.md §6): a coarse
``GaussianMixture`` fit with few components to samples of the exact model (per class
for ``tree``). They put mass where the data is, but blurred, like an under-trained net.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
from sklearn import datasets
from sklearn.mixture import GaussianMixture

from .gmm import GaussianMixtureDenoiser

TREE_SCALE = np.array([1.3136, 1.3844])
TREE_ORIGIN = np.array([0.0030, 0.0325])
TREE_DEPTH = 7  # depths 0..6
TREE_CLASSES = ("A", "B")
FIT_SAMPLES = 8000
WEAK_COMPONENTS = 8  # per class for the tree; in all for the fitted toys


def _tree_branches(rng: np.random.RandomState, angle: float):
    """Yield (means (8, 2), covs (8, 2, 2), weight) of every branch, depth first (docs/math.md §7)."""

    def branch(depth: int, start: np.ndarray, angle: float):
        u = np.array([math.cos(angle), math.sin(angle)])
        length = 0.292 * 0.8**depth * (1 + 0.2 * rng.randn())
        thickness = 0.2 * 0.8**depth / length
        size = TREE_SCALE * length * 0.06
        t = np.linspace(0.07, 0.93, 8)
        means = (start + u * length * t[:, None]) * TREE_SCALE
        uu = np.outer(u, u)
        cov = (uu + thickness**2 * (np.eye(2) - uu)) * np.outer(size, size)
        yield means, np.broadcast_to(cov, (8, 2, 2)), length * 0.5**depth
        if depth + 1 < TREE_DEPTH:
            for sign in (1, -1):
                child_angle = angle + sign * 0.7**depth * (1 + 0.2 * rng.randn())
                yield from branch(depth + 1, start + u * length, child_angle)

    yield from branch(0, TREE_ORIGIN, angle)


def _weak_fit(samples: np.ndarray, n_components: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    fit = GaussianMixture(n_components, covariance_type="full", random_state=0, reg_covar=1e-5).fit(samples)
    return fit.means_, fit.covariances_, fit.weights_


def _coarse_twin(model: GaussianMixtureDenoiser, n_components: int) -> GaussianMixtureDenoiser:
    """A GaussianMixture fit with ``n_components`` per class to exact samples of ``model``."""
    generator = torch.Generator().manual_seed(1)
    parts = []
    classes = range(len(model.classes)) if model.classes else [None]
    for c in classes:
        fit = _weak_fit(model.sample_reference(FIT_SAMPLES, generator, cond=c).numpy(), n_components)
        prior = 1.0 if c is None else float(model.class_prior[c])
        parts.append((fit, c, prior))
    means = np.concatenate([p[0][0] for p in parts])
    covs = np.concatenate([p[0][1] for p in parts])
    weights = np.concatenate([p[0][2] * p[2] for p in parts])
    component_class = None if model.classes is None else torch.tensor(np.repeat([p[1] for p in parts], n_components))
    return GaussianMixtureDenoiser(
        torch.tensor(means), torch.tensor(covs), torch.tensor(weights), component_class, model.classes, model.name + "-weak"
    )


@lru_cache(maxsize=None)
def tree() -> GaussianMixtureDenoiser:
    """The two-class fractal tree (classes ``A`` and ``B``), 1,016 components per class.

    One generator, ``numpy.random.RandomState(2)``, supplies every random draw: class A's
    tree first, then class B's, each depth first (a branch's length, then for each child,
    its angle followed by that child's subtree).
    """
    rng = np.random.RandomState(2)
    means, covs, weights, cls = [], [], [], []
    for c, angle in enumerate((math.pi / 4, 5 * math.pi / 4)):
        for m, cov, w in _tree_branches(rng, angle):
            means.append(m), covs.append(cov), weights.append(np.full(8, w)), cls.append(np.full(8, c))
    weights = np.concatenate(weights)
    cls = np.concatenate(cls)
    model = GaussianMixtureDenoiser(
        torch.tensor(np.concatenate(means)), torch.tensor(np.concatenate(covs)), torch.tensor(weights),
        torch.tensor(cls), TREE_CLASSES, "tree",
    )
    model.class_prior = torch.tensor([weights[cls == c].sum() for c in range(2)]) / weights.sum()
    model.weak = _coarse_twin(model, WEAK_COMPONENTS)
    return model


def _fitted(name: str, data: np.ndarray, n_components: int) -> GaussianMixtureDenoiser:
    data = (data - data.mean(0)) / data.std(0).mean()  # centred, mean per-axis std 1
    fit = GaussianMixture(n_components, covariance_type="full", random_state=0, reg_covar=1e-4).fit(data)
    model = GaussianMixtureDenoiser(
        torch.tensor(fit.means_), torch.tensor(fit.covariances_), torch.tensor(fit.weights_), name=name
    )
    model.weak = _coarse_twin(model, WEAK_COMPONENTS)
    return model


@lru_cache(maxsize=None)
def rings() -> GaussianMixtureDenoiser:
    """Two concentric rings: ``make_circles(noise=0.03, factor=0.5, random_state=0)``, 48 components."""
    data, _ = datasets.make_circles(FIT_SAMPLES, noise=0.03, factor=0.5, random_state=0)
    return _fitted("rings", data, 48)


@lru_cache(maxsize=None)
def moons() -> GaussianMixtureDenoiser:
    """Two interleaved half-moons: ``make_moons(noise=0.05, random_state=0)``, 32 components."""
    data, _ = datasets.make_moons(FIT_SAMPLES, noise=0.05, random_state=0)
    return _fitted("moons", data, 32)


@lru_cache(maxsize=None)
def swissroll() -> GaussianMixtureDenoiser:
    """The (x, z) plane of ``make_swiss_roll(noise=0.3, random_state=0)``, 64 components."""
    data, _ = datasets.make_swiss_roll(FIT_SAMPLES, noise=0.3, random_state=0)
    return _fitted("swissroll", data[:, [0, 2]], 64)


TOYS = {"tree": tree, "rings": rings, "moons": moons, "swissroll": swissroll}
