"""The cheap per-step diagnostics' cost on a latent text-to-image model: sample() with them on and off.

Workload (issue 9): the tiny latent Stable-Diffusion-like model of the tests (UNet2DConditionModel
with 4 latent channels at 8×8, AutoencoderKL, CLIP text encoder; tests/diffusers_fixtures.py),
a prompt with classifier-free guidance (2 network calls per NFE), batch 4, Heun 16 steps on the
model's own grid (31 NFE), float32, on the CPU with 1 thread. The diagnostics (secant ρ̂,
z = hρ̂, embedded LTE, alignment) are computed in latent space from the solver's own stages; they
cost no network call, so the ratio should stay near 1 (target ≤ 1.05). The two cases run
interleaved; the table prints medians over ``--repeats``.

    python -m benchmarks.latent_speed [--repeats 21]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time

import torch

from stiffviz import load_model, sample
from tests.diffusers_fixtures import build_tiny

BATCH, STEPS, PROMPT, CFG = 4, 16, "the red cat", 7.5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=21)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        model = load_model("diffusers:" + build_tiny("latent-text", folder))
    settings = dict(schedule="model", solver="heun", steps=STEPS, batch=BATCH, prompt=PROMPT, cfg=CFG)
    times = {True: [], False: []}
    for diagnostics in (True, False):  # warm-up
        sample(model, diagnostics=diagnostics, **settings)
    for _ in range(args.repeats):
        for diagnostics in (True, False):
            start = time.perf_counter()
            sample(model, diagnostics=diagnostics, **settings)
            times[diagnostics].append(time.perf_counter() - start)
    on, off = statistics.median(times[True]), statistics.median(times[False])
    print(f"tiny latent UNet2DConditionModel {model.shape} + CLIP, prompt with cfg {CFG} (2 calls/NFE), batch {BATCH}, "
          f"heun {STEPS} steps ({2 * STEPS - 1} NFE), float32, 1 CPU thread, {args.repeats} interleaved repeats; "
          f"{platform.machine()}, torch {torch.__version__}")  # fmt: skip
    print(f"{'cheap diagnostics':<18} {'run s (median)':>15} {'ms/step':>8}")
    print(f"{'off':<18} {off:>15.4f} {off / STEPS * 1e3:>8.2f}")
    print(f"{'on':<18} {on:>15.4f} {on / STEPS * 1e3:>8.2f}")
    print(f"ratio on/off: {on / off:.3f} (target ≤ 1.05)")


if __name__ == "__main__":
    main()
