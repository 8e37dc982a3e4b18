"""Shared fixtures: small exact problems whose answers are known in closed form."""

from __future__ import annotations

import pytest
import torch

from stiffviz.models import CallableDenoiser


def linear_drift_model(matrix: torch.Tensor) -> CallableDenoiser:
    """A denoiser whose drift is exactly f(x; σ) = A x (so J = A): D(x; σ) = x − σ A x."""

    def denoise(x: torch.Tensor, sigma) -> torch.Tensor:
        s = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, *([1] * (x.ndim - 1)))
        return x - s * (x @ matrix.to(x.dtype).T)

    return CallableDenoiser(denoise, shape=(matrix.shape[0],))


@pytest.fixture
def float64_generator() -> torch.Generator:
    return torch.Generator().manual_seed(1234)


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module: small models gain nothing from threads, and on a busy
    2-core machine (CI) several threads per process stall each other badly."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
