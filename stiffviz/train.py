"""Training of ``digits-unet`` (EDM, Karras et al. 2022) on scikit-learn's 8×8 digits, on the CPU.

Per step: a batch of training digits x0 with labels (10 % replaced by the null label 10,
so the same network is also the unconditional model that classifier-free guidance
needs), σ ~ exp(N(P_mean, P_std²)) with P_mean = −1.2, P_std = 1.2, n ~ N(0, σ²I), and

    loss = mean[ λ(σ) ‖D(x0 + n; σ, label) − x0‖² ],   λ(σ) = (σ² + σ_d²) / (σ σ_d)²

(a mean over batch and pixels). Adam with linear warm-up and cosine decay of the learning
rate, gradient norm clipped at 1, and an exponential moving average (EMA) of the weights,
which is what is saved. All randomness comes from ``seed``: the initial weights from
``torch.manual_seed(seed)`` (as is dropout; inside a forked RNG, so the caller's global
state is left alone) and data, labels, σ and noise from one ``torch.Generator`` seeded ``seed``. On the
same CPU, torch build and thread count a run is bit-for-bit reproducible; another CPU or BLAS rounds
sums in another order, so its weights differ (losses agree to a few digits).

A held-out split (``holdout`` of the digits, a permutation seeded 0, see
:func:`stiffviz.models.unet.digits_split`) is kept out of training; the reported
``eval_loss`` and denoising MSEs are measured on it with fixed noise.
"""

from __future__ import annotations

import argparse
import math
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from .errors import ParameterError
from .models.unet import (
    MAIN_CHECKPOINT,
    NULL_LABEL,
    WEAK_CHECKPOINT,
    EDMDenoiser,
    TinyUNet,
    UNetConfig,
    checkpoint_metadata,
    count_parameters,
    digits_data,
    digits_split,
    precondition,
)

P_MEAN, P_STD = -1.2, 1.2
EVAL_SEED = 12345  # fixed noise for the held-out evaluation, independent of the training seed
EVAL_REPEATS = 16  # noise draws per held-out digit

# The shipped checkpoints (``python -m stiffviz train`` with its defaults).
MAIN_DEFAULTS = dict(width=24, steps=3000, dropout=0.1)
WEAK_DEFAULTS = dict(width=8, steps=1000, dropout=0.0)
COMMON_DEFAULTS = dict(batch=128, lr=2e-3, seed=0, label_dropout=0.1, ema_decay=0.999, holdout=0.1)


@contextmanager
def _threads(n: int | None):
    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _print_flush(line: str) -> None:
    print(line, flush=True)


def edm_loss_weight(sigma: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """λ(σ) = (σ² + σ_d²)/(σ σ_d)², which makes the loss an MSE on F's unit-variance target."""
    return (sigma.square() + sigma_data**2) / (sigma * sigma_data).square()


def _lr_factor(step: int, steps: int, warmup: int) -> float:
    return min(1.0, (step + 1) / warmup) * 0.5 * (1.0 + math.cos(math.pi * step / steps))


@torch.no_grad()
def evaluate(model: EDMDenoiser, x0: torch.Tensor, labels: torch.Tensor, mean_image: torch.Tensor) -> dict:
    """EDM loss on (x0, labels) with fixed noise, and the denoising MSE at σ = 0.5 and 1 next to
    that of the best constant estimator (the training mean image)."""
    g = torch.Generator().manual_seed(EVAL_SEED)
    x = x0.repeat(EVAL_REPEATS, 1, 1, 1)
    y = labels.repeat(EVAL_REPEATS)
    sigma = (torch.randn(x.shape[0], generator=g, dtype=x.dtype) * P_STD + P_MEAN).exp()
    noise = torch.randn(x.shape, generator=g, dtype=x.dtype)
    denoised = model.denoise_labels(x + sigma.view(-1, 1, 1, 1) * noise, sigma, y)
    err = (denoised - x).square().mean((1, 2, 3))
    out = {"eval_loss": float((edm_loss_weight(sigma, model.sigma_data) * err).mean())}
    for s in (0.5, 1.0):
        noisy = x + s * noise
        out[f"mse_sigma_{s:g}"] = float((model.denoise_labels(noisy, torch.full_like(sigma, s), y) - x).square().mean())
        out[f"mse_sigma_{s:g}_constant"] = float((mean_image - x).square().mean())
    return out


def train_digits_unet(
    out_path: str | Path | None,
    *,
    width: int,
    steps: int,
    batch: int,
    lr: float,
    seed: int,
    label_dropout: float = 0.1,
    log_every: int = 100,
    ema_decay: float = 0.999,
    holdout: float = 0.1,
    mult: tuple[int, ...] = (1, 2, 2),
    dropout: float = 0.0,
    threads: int | None = None,
    name: str = "digits-unet",
    log=_print_flush,
) -> dict:
    """Train a :class:`TinyUNet` digits denoiser and save its EMA weights to ``out_path`` (safetensors).

    Returns a dict: ``initial_loss`` (first step), ``final_loss`` (mean training loss over the
    last ``log_every`` steps), ``eval_loss`` and ``mse_sigma_*`` (held-out, EMA weights),
    ``parameters``, ``sigma_data``, ``seconds``, ``losses`` (every step) and ``denoiser``
    (an :class:`EDMDenoiser` of the EMA weights). ``out_path=None`` saves nothing.
    """
    for param, value in (("steps", steps), ("batch", batch), ("width", width), ("log_every", log_every)):
        if value < 1:
            raise ParameterError(param, f"must be at least 1, got {value}")
    for param, value, upper in (("label_dropout", label_dropout, 1.0), ("holdout", holdout, 0.99),
                                ("ema", ema_decay, 0.999999), ("dropout", dropout, 0.99)):  # fmt: skip
        if not 0.0 <= value <= upper:
            raise ParameterError(param, f"must lie in [0, {upper:g}], got {value}")
    start = time.perf_counter()
    with _threads(threads), torch.random.fork_rng(devices=[]):
        used_threads = torch.get_num_threads()
        torch.manual_seed(seed)  # initial weights and dropout
        x_all, y_all = digits_data()
        train_idx, held_idx = digits_split(holdout)
        x_train, y_train = x_all[train_idx].float(), y_all[train_idx]
        sigma_data = float(x_all[train_idx].std())
        config = UNetConfig(width=width, mult=tuple(mult), dropout=dropout)
        net = TinyUNet(config)
        ema = TinyUNet(config).requires_grad_(False)
        ema.load_state_dict(net.state_dict())
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        warmup = max(1, min(200, steps // 10))
        g = torch.Generator().manual_seed(seed)
        losses = []
        window_start = time.perf_counter()
        for step in range(steps):
            for group in opt.param_groups:
                group["lr"] = lr * _lr_factor(step, steps, warmup)
            idx = torch.randint(x_train.shape[0], (batch,), generator=g)
            x0, labels = x_train[idx], y_train[idx]
            labels = torch.where(torch.rand(batch, generator=g) < label_dropout, NULL_LABEL, labels)
            sigma = (torch.randn(batch, generator=g) * P_STD + P_MEAN).exp()
            noise = torch.randn(x0.shape, generator=g)
            denoised = precondition(net, x0 + sigma.view(-1, 1, 1, 1) * noise, sigma, labels, sigma_data)
            loss = (edm_loss_weight(sigma, sigma_data).view(-1, 1, 1, 1) * (denoised - x0).square()).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            decay = min(ema_decay, (1 + step) / (10 + step))
            with torch.no_grad():
                for p_ema, p in zip(ema.parameters(), net.parameters()):
                    p_ema.lerp_(p, 1.0 - decay)
            losses.append(loss.detach().item())
            if log and ((step + 1) % log_every == 0 or step + 1 == steps):
                recent = losses[-log_every:]
                log(f"[{name}] step {step + 1:>6}/{steps}  loss {sum(recent) / len(recent):.4f}  "
                    f"lr {opt.param_groups[0]['lr']:.2e}  {time.perf_counter() - window_start:.1f} s")  # fmt: skip
        model = EDMDenoiser(ema, sigma_data, name=name)
        mean_image = x_train.mean(0, keepdim=True)
        eval_idx = held_idx if len(held_idx) else train_idx
        report = evaluate(model, x_all[eval_idx].float(), y_all[eval_idx], mean_image)
    recent = losses[-log_every:]
    result = {
        "name": name,
        "parameters": count_parameters(net),
        "sigma_data": sigma_data,
        "initial_loss": losses[0],
        "final_loss": sum(recent) / len(recent),
        **report,
        "seconds": time.perf_counter() - start,
        "losses": losses,
        "denoiser": model,
    }
    if out_path is not None:
        from safetensors.torch import save_file

        train_settings = dict(width=width, mult=list(mult), steps=steps, batch=batch, lr=lr, seed=seed,
                              label_dropout=label_dropout, ema_decay=ema_decay, holdout=holdout,
                              holdout_split_seed=0, p_mean=P_MEAN, p_std=P_STD,
                              dropout=dropout, threads=used_threads)  # fmt: skip
        scalars = {k: v for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        meta = checkpoint_metadata(config, sigma_data, name=name, training=train_settings,
                                   results=scalars, torch_version=torch.__version__)  # fmt: skip
        Path(out_path).parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().contiguous() for k, v in ema.state_dict().items()}, str(out_path), metadata=meta)
        model.metadata = meta
    return result


# ----------------------------------------------------------------------------- command line
def add_train_parser(commands) -> argparse.ArgumentParser:
    """The ``train`` subcommand (registered by :mod:`stiffviz.cli`)."""
    m, w, c = MAIN_DEFAULTS, WEAK_DEFAULTS, COMMON_DEFAULTS
    p = commands.add_parser(
        "train",
        help="train the digits-unet denoiser and its weaker twin (CPU, a few minutes)",
        description=(
            "Train digits-unet, a small class-conditional EDM denoiser of scikit-learn's 8x8 digits, and a "
            "weaker version of it (narrower, trained for fewer steps) for Autoguidance, on the CPU, with a "
            "fixed seed; save both as safetensors and print their final losses. With the defaults this makes "
            "the checkpoints shipped in stiffviz/data/ (about 5 minutes on one CPU core)."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", default=str(MAIN_CHECKPOINT.relative_to(MAIN_CHECKPOINT.parents[2])), help="main checkpoint file")
    p.add_argument("--weak-out", default=str(WEAK_CHECKPOINT.relative_to(WEAK_CHECKPOINT.parents[2])),
                   help="weak checkpoint file ('' to skip the weak model)")  # fmt: skip
    p.add_argument("--steps", type=int, default=m["steps"], help="optimiser steps of the main model")
    p.add_argument("--width", type=int, default=m["width"], help="channels at 8x8 of the main model (x1, x2, x2 at 8x8, 4x4, 2x2)")
    p.add_argument("--dropout", type=float, default=m["dropout"], help="dropout in the main model's blocks (training only)")
    p.add_argument("--weak-steps", type=int, default=w["steps"], help="optimiser steps of the weak model")
    p.add_argument("--weak-width", type=int, default=w["width"], help="channels at 8x8 of the weak model")
    p.add_argument("--weak-dropout", type=float, default=w["dropout"], help="dropout in the weak model's blocks")
    p.add_argument("--batch", type=int, default=c["batch"], help="batch size")
    p.add_argument("--lr", type=float, default=c["lr"], help="peak Adam learning rate (warm-up, then cosine decay)")
    p.add_argument("--seed", type=int, default=c["seed"], help="seed of weights, data order, labels, sigma and noise")
    p.add_argument("--label-dropout", type=float, default=c["label_dropout"], help="fraction of labels replaced by the null class")
    p.add_argument("--ema", type=float, default=c["ema_decay"], help="EMA decay of the saved weights")
    p.add_argument("--holdout", type=float, default=c["holdout"], help="fraction of digits held out for evaluation")
    p.add_argument("--log-every", type=int, default=250, help="print the mean loss every this many steps")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (bit-identical reruns need the same count, CPU and torch; the tiny convolutions gain little from more)")  # fmt: skip
    return p


def run_train(args: argparse.Namespace) -> int:
    common = dict(batch=args.batch, lr=args.lr, seed=args.seed, label_dropout=args.label_dropout,
                  log_every=args.log_every, ema_decay=args.ema, holdout=args.holdout, threads=args.threads)  # fmt: skip
    jobs = [(args.out, args.width, args.steps, args.dropout, "digits-unet")]
    if args.weak_out:
        jobs.append((args.weak_out, args.weak_width, args.weak_steps, args.weak_dropout, "digits-unet-weak"))
    start = time.perf_counter()
    results = []
    for out, width, steps, dropout, name in jobs:
        results.append(train_digits_unet(out, width=width, steps=steps, dropout=dropout, name=name, **common))
    print(f"{'model':<18} {'params':>8} {'steps':>6} {'final loss':>10} {'eval loss':>10} "
          f"{'mse@0.5':>8} {'mse@1':>8} {'const@0.5':>9} {'seconds':>8}  file")  # fmt: skip
    for (out, _, steps, _, _), r in zip(jobs, results):
        print(f"{r['name']:<18} {r['parameters']:>8} {steps:>6} {r['final_loss']:>10.4f} {r['eval_loss']:>10.4f} "
              f"{r['mse_sigma_0.5']:>8.4f} {r['mse_sigma_1']:>8.4f} {r['mse_sigma_0.5_constant']:>9.4f} "
              f"{r['seconds']:>8.1f}  {out} ({Path(out).stat().st_size / 1e6:.2f} MB)")  # fmt: skip
    print(f"total {time.perf_counter() - start:.1f} s")
    return 0
