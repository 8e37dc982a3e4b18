"""The tiny diffusers model of every family on a device: run time and agreement with the CPU.

Workload (issue 9, GPU item): each kind the tests build (``tests/diffusers_fixtures.py``: DDPM,
DDIM, EulerDiscrete, EDMEuler, FlowMatch pixel UNets, the SD-like latent text pipeline and the
SD3-like transformer), batch 4, Heun on the model's own grid, 16 steps, cheap diagnostics on,
text models with a prompt and CFG 3. Per kind and network dtype (float32, and float16 off the
CPU) it prints the median wall time over ``--repeats`` (after a warm-up) and the largest
difference of the samples from the float32 CPU run, relative to their scale. The engine and
the diagnostics are float32 in every row; only the network runs in float16.

    python -m benchmarks.family_devices [--device cuda] [--repeats 5]

Without ``--device`` it uses CUDA when present, else the CPU (then it checks the script only).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import diffusers
import torch
import transformers

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the tests' tiny-model builders
from diffusers_fixtures import KINDS, build_tiny  # noqa: E402

import stiffviz  # noqa: E402

SETTINGS = dict(batch=4, steps=16, solver="heun", schedule="model", seed=0)
TEXT = dict(prompt="the red cat", negative_prompt="a dog", cfg=3.0)


def run(model, device: str) -> tuple[torch.Tensor, float]:
    """One sample() on ``device``; (samples on the CPU, wall seconds)."""
    extra = TEXT if getattr(model, "text_conditioned", False) else {}
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    samples, trace = stiffviz.sample(model, device=device, **SETTINGS, **extra)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    assert trace.status == "ok", trace.message
    return samples.cpu(), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    diffusers.utils.logging.disable_progress_bar()  # the table only: no loading and saving bars
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    dtypes = ["float32"] + (["float16"] if args.device != "cpu" else [])
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or platform.machine()
    print(f"tiny diffusers families, batch 4, heun 16 steps on the model grid, cheap diagnostics, "
          f"{args.repeats} repeats; {args.device} ({name}), torch {torch.__version__}")  # fmt: skip
    print(f"{'kind':<12} {'weights':<8} {'run s':>8} {'max |Δ|/scale vs cpu float32':>30}")
    with tempfile.TemporaryDirectory() as root:
        for kind in KINDS:
            spec = "diffusers:" + build_tiny(kind, Path(root) / kind)
            reference, _ = run(stiffviz.load_model(spec), "cpu")
            scale = reference.abs().max().item()
            for dtype in dtypes:
                model = stiffviz.load_model(spec, device=args.device, dtype=getattr(torch, dtype))
                run(model, args.device)  # warm-up
                times, samples = [], None
                for _ in range(args.repeats):
                    samples, seconds = run(model, args.device)
                    times.append(seconds)
                error = (samples - reference).abs().max().item() / scale
                print(f"{kind:<12} {dtype:<8} {statistics.median(times):>8.3f} {error:>30.2e}")


if __name__ == "__main__":
    main()
