"""Concurrency: the thread policy (stiffviz.threads) on an idle machine and next to competing work.

Three tables, each variant timed ``--repeats`` times, interleaved, medians in seconds:

1. The tree denoiser, 63 calls D(x; σ) at batch 1,024 (a Heun 32-step run's NFE): the
   project's chunked mixture (rows in chunks of 2¹⁹/K, ``stiffviz.models.gmm``) against the
   straightforward one (the whole batch in one block), with 1 and 2 torch threads, idle and
   next to one busy process (a subprocess spinning one core).
2. The app's default example (``DEFAULTS``: tree, Heun 6 steps, batch 1,024, ERK-Guid,
   eigenpairs, compare; streamed as the app streams it) with the app's policy, idle and next
   to one busy process. Target: loaded ≤ 2× idle.
3. ``digits-unet``, 16 Heun steps at batch 64 (class 3): one run alone, and two at once in one
   process (two threads, as the app's two run slots), with the policy's threads and with
   torch's default (one per core each). Target with the policy: each of the two ≤ 2.5× alone.

The machine's load average is printed before and after: other work on the machine shows
there. ``python -m benchmarks.concurrency [--repeats 5] [--runs 2]`` (``--runs``: the app's
runs at once, for the policy's threads).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from typing import Callable

import torch

from stiffviz import load_model, sample
from stiffviz.app.live import stream_session
from stiffviz.app.requests import DEFAULTS, available_models, parse_request
from stiffviz.models import gmm
from stiffviz.threads import cores, threads_for

CALLS, BATCH = 63, 1024


def _moments_whole(self: gmm._Group) -> tuple[torch.Tensor, torch.Tensor]:
    """The straightforward mixture: ``_Group.moments`` over the whole batch in one block."""
    d, K = self.x.shape[1], self.a.shape[0]
    right = torch.cat([self.x.new_ones(K, 1), self.a, self.precision.reshape(K, d * d)], 1)
    logits = self.logits(self.x)
    top = logits.amax(1, keepdim=True)
    m = (logits - top).clamp_min(-80.0).exp() @ right
    norm = m[:, :1]
    precision = (m[:, 1 + d :] / norm).view(-1, d, d)
    return top.squeeze(1) + norm.squeeze(1).log(), m[:, 1 : 1 + d] / norm - torch.bmm(precision, self.x.unsqueeze(-1)).squeeze(-1)


@contextlib.contextmanager
def busy(on: bool):
    """One competing process spinning a core while the block runs (nothing when ``on`` is false)."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if on else None
    try:
        time.sleep(0.3 if on else 0.0)  # let it get scheduled
        yield
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()


@contextlib.contextmanager
def mixture(chunked: bool):
    original = gmm._Group.moments
    gmm._Group.moments = original if chunked else _moments_whole
    try:
        yield
    finally:
        gmm._Group.moments = original


def in_thread(fn: Callable[[], None], threads: int) -> float:
    """Seconds ``fn`` takes in a fresh thread with ``threads`` torch threads (as the app's runs)."""
    return at_once([fn], threads)[0]


def at_once(fns: list[Callable[[], None]], threads: int) -> list[float]:
    """Run every fn in its own fresh thread at the same time; each one's seconds."""
    torch.set_num_threads(threads)  # fresh threads read it on their first parallel operation
    times = [0.0] * len(fns)
    barrier = threading.Barrier(len(fns))

    def work(i: int) -> None:
        barrier.wait()
        start = time.perf_counter()
        fns[i]()
        times[i] = time.perf_counter() - start

    workers = [threading.Thread(target=work, args=(i,)) for i in range(len(fns))]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return times


def tree_calls() -> None:
    model = load_model("tree")
    x = 80.0 * torch.randn(BATCH, 2, generator=torch.Generator().manual_seed(0))
    sigmas = torch.logspace(2, -2.7, CALLS).tolist()
    with torch.no_grad():
        for s in sigmas:
            model(x, s)


def default_example() -> None:
    request = parse_request(DEFAULTS, available_models(), load_model)
    for _ in stream_session(request, load_model(request.model)):
        pass


def unet_run() -> None:
    sample(load_model("digits-unet"), solver="heun", steps=16, batch=64, cls=3, seed=0)


def load() -> str:
    return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())


def table(title: str, rows: dict[str, list[float]], notes: dict[str, str]) -> None:
    print(f"\n{title}")
    print(f"{'variant':<58} {'median s':>9} {'min s':>7}  note")
    for label, times in rows.items():
        print(f"{label:<58} {statistics.median(times):>9.3f} {min(times):>7.3f}  {notes.get(label, '')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--runs", type=int, default=2, help="the app's runs at once (CONCURRENCY_LIMIT)")
    args = parser.parse_args()
    policy = threads_for(args.runs)
    print(f"{platform.processor() or platform.machine()}, {cores()} cores, torch {torch.__version__}; policy: "
          f"{args.runs} runs at once x {policy} thread(s); {args.repeats} interleaved repeats; {load()}")  # fmt: skip
    for fn in (tree_calls, default_example, unet_run):  # warm-up (models loaded, caches filled)
        in_thread(fn, policy)

    tree: dict[str, list[float]] = {}
    example: dict[str, list[float]] = {"idle": [], "next to one busy process": []}
    unet: dict[str, list[float]] = {"alone": [], "two at once, each (policy)": [],
                                    f"two at once, each ({cores()} threads each, torch's default)": []}  # fmt: skip
    for _ in range(args.repeats):
        for loaded in (False, True):
            for chunked in (True, False):
                for threads in (1, 2):
                    label = (f"{'chunked' if chunked else 'whole batch'}, {threads} thread(s), "
                             f"{'next to one busy process' if loaded else 'idle'}")  # fmt: skip
                    with mixture(chunked), busy(loaded):
                        tree.setdefault(label, []).append(in_thread(tree_calls, threads))
            with busy(loaded):
                example["next to one busy process" if loaded else "idle"].append(in_thread(default_example, policy))
        unet["alone"].append(in_thread(unet_run, policy))
        unet["two at once, each (policy)"] += at_once([unet_run, unet_run], policy)
        unet[f"two at once, each ({cores()} threads each, torch's default)"] += at_once([unet_run, unet_run], cores())

    table(f"1. tree denoiser, {CALLS} calls at batch {BATCH}", tree, {})
    idle, loaded = (statistics.median(example[k]) for k in ("idle", "next to one busy process"))
    table(f"2. default example (app run, {policy} thread(s))", example,
          {"next to one busy process": f"{loaded / idle:.2f}x idle (target <= 2)"})  # fmt: skip
    alone = statistics.median(unet["alone"])
    table("3. digits-unet, heun 16 steps, batch 64", unet,
          {label: f"{statistics.median(t) / alone:.2f}x alone" + (" (target <= 2.5)" if "policy" in label else "")
           for label, t in unet.items() if label != "alone"})  # fmt: skip
    print(f"\n{load()}")


if __name__ == "__main__":
    main()
