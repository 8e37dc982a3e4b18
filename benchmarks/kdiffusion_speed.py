"""k-diffusion's own samplers beside stiffviz.kdiffusion's drop-ins, cheap diagnostics on and off.

Workload (issue 9): ``digits-unet``, batch 64, 16 steps on k-diffusion's Karras grid
(``get_sigmas_karras(16, 0.002, 80)``: 16 levels from 80 to 0.002, the last step to 0),
float32, CPU, one thread (``torch.set_num_threads(1)``, for stable timings). For each of
sample_euler, sample_heun, sample_dpm_2 and sample_dpmpp_2m the variants (k-diffusion's
function, the same again as a noise floor, the drop-in with cheap diagnostics on and off) run
interleaved (the order rotated each round), ``--repeats`` times after a warm-up, and the
table prints median CPU times of the process (see ``time_variants``) and the ratios to
k-diffusion. A second table times the same loops around a model that costs nothing
(D = x/(1 + σ²)), so the per-step overhead of each loop shows in microseconds.

k-diffusion's ``sampling.py`` is loaded by path (its package ``__init__`` needs torchvision):
``python -m pip install --no-deps k-diffusion==0.1.1.post1``.

    python -m benchmarks.kdiffusion_speed [--repeats 15] > benchmarks/kdiffusion_speed.txt
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import statistics
import sys
import time
import types
from pathlib import Path

import torch

from stiffviz import kdiffusion, load_model

SAMPLERS = ("sample_euler", "sample_heun", "sample_dpm_2", "sample_dpmpp_2m")
BATCH, STEPS = 64, 16


def load_kdiffusion_sampling() -> types.ModuleType:
    """k_diffusion/sampling.py under a bare package, with ``utils.append_dims`` and stubs for
    the solvers' optional imports (torchsde, torchdiffeq, scipy) where they are missing."""
    root = Path(next(iter(importlib.util.find_spec("k_diffusion").submodule_search_locations)))
    package, utils = types.ModuleType("k_diffusion"), types.ModuleType("k_diffusion.utils")
    package.__path__, package.utils = [str(root)], utils
    utils.append_dims = lambda x, n: x[(...,) + (None,) * (n - x.ndim)]
    sys.modules.update({"k_diffusion": package, "k_diffusion.utils": utils})
    for missing, attribute in (("torchsde", None), ("torchdiffeq", "odeint"), ("scipy", "integrate")):
        if importlib.util.find_spec(missing) is None:
            sys.modules[missing] = types.ModuleType(missing)
            if attribute:
                setattr(sys.modules[missing], attribute, None)
    spec = importlib.util.spec_from_file_location("k_diffusion.sampling", root / "sampling.py")
    module = sys.modules["k_diffusion.sampling"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_model(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """D = x/(1 + σ²): one elementwise op, so a run's time is the loop's own."""
    return x / (1 + sigma.view(-1, 1, 1, 1) ** 2)


def time_variants(variants: dict, repeats: int) -> dict[str, list[float]]:
    """Each variant once to warm up, then ``repeats`` interleaved rounds, the order rotated each round.

    The time is the process's CPU time (``time.process_time``): with one thread it is the run's
    own work, and other processes on the machine do not inflate it as they do wall time.
    """
    for run in variants.values():
        run()
    names = list(variants)
    times = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:
            start = time.process_time()
            variants[name]()
            times[name].append(time.process_time() - start)
    return times


def variants_for(k_sampling, model, x: torch.Tensor, sigmas: torch.Tensor) -> dict:
    out = {}
    for sampler in SAMPLERS:
        theirs, ours = getattr(k_sampling, sampler), getattr(kdiffusion, sampler)
        out[(sampler, "k-diffusion")] = lambda f=theirs: f(model, x, sigmas, disable=True)
        out[(sampler, "k-diffusion again")] = lambda f=theirs: f(model, x, sigmas, disable=True)
        out[(sampler, "diagnostics on")] = lambda f=ours: f(model, x, sigmas, disable=True)
        out[(sampler, "diagnostics off")] = lambda f=ours: f(model, x, sigmas, disable=True, diagnostics=False)
    return out


def table(times: dict, unit: float, unit_name: str, fmt: str) -> list[str]:
    """Medians per sampler and their ratios to k-diffusion; "k-diffusion again" (the same call timed as a
    separate variant) shows the noise floor of a ratio."""
    variants = ("k-diffusion", "k-diffusion again", "diagnostics on", "diagnostics off")
    lines = [f"{'sampler':<16} {'k-diffusion':>12} {'again':>6} {'stiffviz, diag on':>18} {'ratio':>6} "
             f"{'stiffviz, diag off':>19} {'ratio':>6}   ({unit_name}, medians; ratios to k-diffusion)"]  # fmt: skip
    for sampler in SAMPLERS:
        base, again, on, off = (statistics.median(times[(sampler, v)]) for v in variants)
        lines.append(f"{sampler:<16} {base * unit:>12{fmt}} {again / base:>6.3f} {on * unit:>18{fmt}} {on / base:>6.3f} "
                     f"{off * unit:>19{fmt}} {off / base:>6.3f}")  # fmt: skip
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(1)
    k_sampling = load_kdiffusion_sampling()
    sigmas = k_sampling.get_sigmas_karras(STEPS, 0.002, 80.0)
    model = load_model("digits-unet")
    x = torch.randn((BATCH, *model.shape), generator=torch.Generator().manual_seed(0)) * sigmas[0]
    agreement = max(float((getattr(k_sampling, s)(model, x, sigmas, disable=True)
                           - getattr(kdiffusion, s)(model, x, sigmas, disable=True)).abs().max()) for s in SAMPLERS)  # fmt: skip
    with torch.no_grad():
        call = statistics.median(time_variants({"call": lambda: model(x, sigmas[0] * x.new_ones(BATCH))}, 15)["call"])
    times = time_variants(variants_for(k_sampling, model, x, sigmas), args.repeats)
    free = time_variants(variants_for(k_sampling, free_model, x, sigmas), max(args.repeats, 15))
    print(f"digits-unet, batch {BATCH}, {STEPS} steps (get_sigmas_karras({STEPS}, 0.002, 80)), float32, cpu, "
          f"{torch.get_num_threads()} thread, {args.repeats} interleaved repeats, CPU time; "
          f"{platform.processor() or platform.machine()}, torch {torch.__version__}")  # fmt: skip
    print(f"one model call on the batch: {call * 1e3:.2f} ms (median); "
          f"max |x_stiffviz - x_k-diffusion| over the four samplers: {agreement:.2e}")  # fmt: skip
    print()
    print("\n".join(table(times, 1.0, "s per run", ".3f")))
    print()
    print(f"the same loops around a free model (D = x/(1 + sigma^2), {STEPS} steps): the loops' own overhead")
    print("\n".join(table(free, 1e6 / STEPS, "us per step", ".0f")))


if __name__ == "__main__":
    main()
