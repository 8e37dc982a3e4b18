"""Memory at the top: what a maximum run keeps is bounded, and repeated big runs leave RSS flat."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import torch

from stiffviz.app.live import KEEP_SAMPLES, kept, stream_session
from stiffviz.app.requests import DEFAULTS, INPUT_RANGES, ModelLimits, available_models, limits_for, parse_request
from stiffviz.models.gmm import GaussianMixtureDenoiser

TOP_SESSION_BYTES = 160_000_000  # what a maximum run's Session keeps (tree's limits, default diagnostics, compare)
RSS_GROWTH_BYTES = 50_000_000  # RSS growth from the first to the third big run


def two_gaussians() -> GaussianMixtureDenoiser:
    """A 2-D mixture of two Gaussians: the tree's kind of model (exact Jacobians, reference samples), cheap."""
    model = GaussianMixtureDenoiser(torch.tensor([[-1.0, 0.0], [1.0, 0.5]]), torch.eye(2).repeat(2, 1, 1) * 0.3,
                                    torch.tensor([0.5, 0.5]))  # fmt: skip
    model.name = "tree"
    return model


def test_a_maximum_runs_session_keeps_a_bounded_amount(one_thread):
    limits: ModelLimits = limits_for("tree")
    assert limits.max_batch == INPUT_RANGES["batch"][1]  # the tree's are the app's largest 2-D limits
    req = parse_request(DEFAULTS | dict(steps=limits.max_steps, batch=limits.max_batch), available_models())
    *_, session = stream_session(req, two_gaussians())
    runs = list(session.runs.values())
    assert len(runs) == 2 and all(run.samples is not None for run in runs)  # the run and its twin
    for run in runs:
        assert run.samples.shape == (limits.max_batch, 2)  # every sample, for export and quality
        assert run.trace.column("lte").shape == (limits.max_steps, limits.max_batch)  # statistics: the whole batch
        assert {len(x) for x in run.states + run.previews} == {kept((2,), limits.max_batch)} == {KEEP_SAMPLES}
    assert session.kept_bytes() < TOP_SESSION_BYTES


def test_repeated_big_runs_leave_rss_flat():
    """Three runs of the tree at 4,096 samples in a fresh process (as the server does: the allocator
    bound at start-up, its free pages released after each run): RSS after the third is within
    ``RSS_GROWTH_BYTES`` of RSS after the first."""
    script = textwrap.dedent('''
        import torch
        from pathlib import Path
        from stiffviz.app.live import bound_allocator, release_memory, stream_session
        from stiffviz.app.requests import DEFAULTS, available_models, parse_request
        torch.set_num_threads(1)
        bound_allocator()
        def rss():
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        req = parse_request(DEFAULTS | dict(steps=8, batch=4096, solver="euler", compare=False), available_models())
        after = []
        for _ in range(3):
            *_, session = stream_session(req)
            del session
            release_memory()
            after.append(rss())
        print(*after)
    ''')
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    first, second, third = map(int, result.stdout.split())
    assert third - first < RSS_GROWTH_BYTES, (first, second, third)
