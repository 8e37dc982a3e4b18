"""digits-unet: EDM preconditioning, safetensors loading, the call contract, denoising quality, training."""

from __future__ import annotations

import json
import math
import pickle

import pytest
import torch

from stiffviz.errors import ParameterError
from stiffviz.models import unet
from stiffviz.models.unet import (
    MAIN_CHECKPOINT,
    NULL_LABEL,
    WEAK_CHECKPOINT,
    EDMDenoiser,
    TinyUNet,
    UNetConfig,
    count_parameters,
    digits_data,
    digits_split,
    load_checkpoint,
    load_digits_unet,
)
from stiffviz.train import train_digits_unet

SIGMA_DATA = 0.7


class StubNet:
    """F(x_in, c_noise, labels) = 3 x_in + c_noise + labels/10, recording its inputs."""

    def __init__(self):
        self.calls = []

    def __call__(self, x_in, c_noise, labels):
        self.calls.append((x_in, c_noise, labels))
        return 3 * x_in + c_noise.view(-1, 1, 1, 1) + labels.to(x_in.dtype).view(-1, 1, 1, 1) / 10


@pytest.fixture(scope="module")
def shipped():
    torch.set_num_threads(2)
    return load_digits_unet(dtype=torch.float32)


def test_preconditioning_matches_edm_formulas():
    stub = StubNet()
    model = EDMDenoiser(stub, SIGMA_DATA)
    x = torch.randn(4, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    sigma = torch.tensor([0.01, 0.5, 2.0, 80.0], dtype=torch.float64)
    out = model(x, sigma, cond=torch.tensor([0, 3, 9, 5]))
    for b in range(4):
        s, sd = float(sigma[b]), SIGMA_DATA
        c_skip = sd**2 / (s**2 + sd**2)
        c_out = s * sd / math.sqrt(s**2 + sd**2)
        c_in = 1 / math.sqrt(s**2 + sd**2)
        c_noise = math.log(s) / 4
        label = [0, 3, 9, 5][b]
        f = 3 * (c_in * x[b]) + c_noise + label / 10
        assert torch.allclose(out[b], c_skip * x[b] + c_out * f, rtol=1e-12, atol=1e-12)
        x_in, noise_in, labels_in = (t[b] for t in stub.calls[-1])
        assert torch.allclose(x_in, c_in * x[b]) and math.isclose(float(noise_in), c_noise) and int(labels_in) == label
    # cond=None feeds the null label.
    model(x, 1.0)
    assert stub.calls[-1][2].tolist() == [NULL_LABEL] * 4


def test_small_sigma_returns_input():
    model = EDMDenoiser(StubNet(), SIGMA_DATA)
    x = torch.randn(3, 1, 8, 8, dtype=torch.float64)
    for s in (1e-4, 1e-8):
        c_skip, c_out = SIGMA_DATA**2 / (s**2 + SIGMA_DATA**2), s * SIGMA_DATA / math.sqrt(s**2 + SIGMA_DATA**2)
        assert abs(c_skip - 1) < 1e-7 and c_out < 2e-4
        assert (model(x, s) - x).abs().max() < 20 * s
    assert torch.equal(model(x, 0.0), x)  # c_noise uses max(σ, 1e-20): no NaN at σ = 0


def test_loads_from_safetensors_without_pickle(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("pickle-based loading was used")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    unet._read_checkpoint.cache_clear()
    model = load_digits_unet()
    for m, path in ((model, MAIN_CHECKPOINT), (model.weak, WEAK_CHECKPOINT)):
        meta = m.metadata
        assert meta["format"] == unet.CHECKPOINT_FORMAT
        config = UNetConfig.from_json(meta["config"])
        rebuilt = TinyUNet(config)
        loaded = m.net.state_dict()
        assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in loaded.items()}
        assert count_parameters(rebuilt) == count_parameters(m.net)
        train_idx, _ = digits_split(json.loads(meta["training"])["holdout"])
        assert math.isclose(m.sigma_data, float(digits_data()[0][train_idx].std()), rel_tol=1e-12)
        assert m.shape == (1, 8, 8) and m.classes == tuple("0123456789")
    assert count_parameters(model.weak.net) < count_parameters(model.net)
    total = MAIN_CHECKPOINT.stat().st_size + WEAK_CHECKPOINT.stat().st_size
    assert total <= 5_000_000
    # A fresh wrapper per call, sharing the cached weights' values.
    again = load_digits_unet()
    assert again is not model and again.net is not model.net
    assert all(torch.equal(a, b) for a, b in zip(again.net.parameters(), model.net.parameters()))


def test_call_contract(shipped):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(5, 1, 8, 8, generator=g)
    sigma = torch.tensor([0.05, 0.3, 1.0, 4.0, 40.0])
    cond = torch.tensor([0, 1, 2, 7, 9])
    batched = shipped(x, sigma, cond)
    assert batched.shape == x.shape and batched.dtype == torch.float32 and torch.isfinite(batched).all()
    rows = torch.cat([shipped(x[i : i + 1], float(sigma[i]), int(cond[i])) for i in range(5)])
    assert torch.allclose(batched, rows, atol=1e-5)
    # float64 runs the network in float64 and stays close to float32.
    out64 = shipped(x.double(), sigma.double(), cond)
    assert out64.dtype == torch.float64
    assert torch.allclose(out64.float(), batched, atol=1e-4)
    # cond=None is the null label (the unconditional model), different from any class.
    uncond = shipped(x, 1.0)
    null = shipped.denoise_labels(x, torch.ones(5), torch.full((5,), NULL_LABEL))
    assert torch.allclose(uncond, null)
    assert (uncond - shipped(x, 1.0, 3)).abs().max() > 1e-2
    assert torch.equal(shipped(x, 1.0, "3"), shipped(x, 1.0, 3))
    assert shipped(x[:0], 1.0).shape == (0, 1, 8, 8)
    with pytest.raises(ParameterError):
        shipped(x, 1.0, 10)  # the null index is not a class
    with pytest.raises(ParameterError):
        shipped(x.view(5, 64), 1.0)


def test_jvp_and_autograd_agree_with_finite_differences(shipped):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 1, 8, 8, generator=g, dtype=torch.float64)
    v = torch.randn(2, 1, 8, 8, generator=g, dtype=torch.float64)
    sigma = torch.tensor([0.4, 2.0], dtype=torch.float64)
    f = lambda z: shipped(z, sigma, 4)  # noqa: E731
    _, tangent = torch.func.jvp(f, (x,), (v,))
    eps = 1e-6
    finite = (f(x + eps * v) - f(x - eps * v)) / (2 * eps)
    assert torch.allclose(tangent, finite, rtol=1e-5, atol=1e-7)
    xr = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad((f(xr) * v).sum(), xr)
    _, vjp = torch.func.vjp(f, x)
    assert torch.allclose(grad, vjp(v)[0], atol=1e-10)
    assert torch.equal(xr.detach(), x)  # the input was not modified


def test_shipped_model_denoises_held_out_digits(shipped):
    x_all, y_all = digits_data()
    train_idx, held_idx = digits_split(json.loads(shipped.metadata["training"])["holdout"])
    assert len(held_idx) > 100
    x0, y = x_all[held_idx].float(), y_all[held_idx]
    constant = x_all[train_idx].float().mean(0, keepdim=True)  # best constant estimator
    g = torch.Generator().manual_seed(3)
    for s in (0.5, 1.0):
        noisy = x0 + s * torch.randn(x0.shape, generator=g)
        mse_const = float((constant - x0).square().mean())
        mse_main = float((shipped(noisy, s, y) - x0).square().mean())
        mse_weak = float((shipped.weak(noisy, s, y) - x0).square().mean())
        mse_uncond = float((shipped(noisy, s) - x0).square().mean())
        assert mse_main < 0.4 * mse_const, (s, mse_main, mse_const)
        assert mse_uncond < 0.5 * mse_const
        assert mse_main < mse_weak < mse_const, (s, mse_main, mse_weak)


def test_sample_reference(shipped):
    g = torch.Generator().manual_seed(4)
    ref = shipped.sample_reference(50, g)
    assert ref.shape == (50, 1, 8, 8) and ref.dtype == torch.float64 and ref.device.type == "cpu"
    x_all, y_all = digits_data()
    sevens = shipped.sample_reference(20, g, cond=7)
    match = (sevens.flatten(1)[:, None] == x_all.flatten(1)[None]).all(2)  # (20, N)
    assert match.any(1).all()
    assert all(bool((y_all[row.nonzero().squeeze(1)] == 7).any()) for row in match)
    assert shipped.sample_reference(5000, g).shape == (5000, 1, 8, 8)  # more than the data: with replacement


def test_training_decreases_loss_and_is_deterministic(tmp_path):
    settings = dict(width=8, steps=80, batch=32, lr=1e-2, seed=7, log_every=10, threads=2, log=None)
    first = train_digits_unet(tmp_path / "a.safetensors", **settings)
    second = train_digits_unet(tmp_path / "b.safetensors", **settings)
    losses = first["losses"]
    assert sum(losses[-10:]) / 10 < 0.8 * losses[0]
    assert first["eval_loss"] < 0.8  # the untrained net (zero output layer) scores ≈ 1
    assert losses == second["losses"]
    a, b = load_checkpoint(tmp_path / "a.safetensors"), load_checkpoint(tmp_path / "b.safetensors")
    assert all(torch.equal(p, q) for p, q in zip(a.net.state_dict().values(), b.net.state_dict().values()))
    other = train_digits_unet(None, **(settings | {"seed": 8}))
    assert other["losses"] != losses


def test_train_command(tmp_path, capsys):
    from stiffviz.cli import main

    main_out, weak_out = tmp_path / "m.safetensors", tmp_path / "w.safetensors"
    code = main(["train", "--steps", "3", "--width", "8", "--weak-steps", "2", "--weak-width", "8", "--batch", "16",
                 "--out", str(main_out), "--weak-out", str(weak_out), "--log-every", "1", "--threads", "2"])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "digits-unet-weak" in printed and "final loss" in printed
    model = load_checkpoint(main_out)
    assert json.loads(model.metadata["training"])["steps"] == 3
    assert load_checkpoint(weak_out)(torch.zeros(2, 1, 8, 8), 1.0).shape == (2, 1, 8, 8)
    assert main(["train", "--steps", "0", "--out", str(main_out)]) == 2
