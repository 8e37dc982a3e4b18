"""Image models' speed: denoiser calls per second and whole-run time, side by side.

Workload (issue 4): ``digits`` (exact empirical denoiser) and ``digits-unet`` (the shipped
neural denoiser), batch 64, Heun 16 steps (31 NFE); on the CPU with 2 threads in float32,
and on CUDA as well when it is available, in float32 and with float16 network weights (the
engine and diagnostics stay float32). Cases run interleaved, the table prints medians over
``--repeats``.

    python -m benchmarks.image_speed [--repeats 7]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from stiffviz import load_model, sample

MODELS = ("digits", "digits-unet")
BATCH, STEPS = 64, 16


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _time(fn, device: str) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    cases = [(m, "cpu", "float32") for m in MODELS]
    if "cuda" in devices:  # the exact digits model has no weights: float16 is for the network
        cases += [(m, "cuda", "float32") for m in MODELS] + [("digits-unet", "cuda", "float16")]
    models = {case: load_model(case[0], device=case[1], dtype=getattr(torch, case[2])) for case in cases}
    calls = {case: [] for case in cases}
    runs = {case: [] for case in cases}
    for (m, d, _), model in models.items():  # warm-up
        sample(model, solver="heun", steps=STEPS, batch=BATCH, device=d)
    for _ in range(args.repeats):
        for (m, d, _), model in models.items():
            x = torch.randn((BATCH, *model.shape), generator=torch.Generator().manual_seed(0)).to(d)
            with torch.no_grad():
                calls[(m, d, _)].append(_time(lambda: [model(x, s) for s in (10.0, 1.0, 0.1, 0.01)], d) / 4)
            runs[(m, d, _)].append(_time(lambda: sample(model, solver="heun", steps=STEPS, batch=BATCH, device=d), d))
    print(f"batch {BATCH}, heun {STEPS} steps ({2 * STEPS - 1} NFE), float32 engine, {args.threads} CPU threads, "
          f"{args.repeats} interleaved repeats; {platform.machine()}, torch {torch.__version__}"
          + (f", {torch.cuda.get_device_name()}" if "cuda" in devices else ", no CUDA device"))  # fmt: skip
    print(f"{'model':<12} {'device':<6} {'weights':<8} {'ms/call':>9} {'calls/s':>9} {'run s':>8} {'images/s':>9}")
    for case in cases:
        call, run = statistics.median(calls[case]), statistics.median(runs[case])
        print(f"{case[0]:<12} {case[1]:<6} {case[2]:<8} {call * 1e3:>9.2f} {1 / call:>9.0f} {run:>8.3f} {BATCH / run:>9.0f}")


if __name__ == "__main__":
    main()
