"""The thread policy: runs at once × torch threads ≤ cores, set by the app at start-up and by the CLI."""

from __future__ import annotations

import threading

import pytest
import torch

import app as app_module
from stiffviz import cli, threads
from stiffviz.app.ui import CONCURRENCY_LIMIT
from stiffviz.errors import ParameterError


@pytest.fixture(autouse=True)
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("cores", [1, 2, 3, 8, 16])
@pytest.mark.parametrize("runs", [1, 2, 3, 5])
def test_runs_times_threads_fit_the_cores(cores, runs):
    n = threads.threads_for(runs, cores)
    assert n >= 1
    assert runs * n <= cores or n == 1  # more runs than cores: one thread each
    assert runs * (n + 1) > cores  # and no core left idle that a thread more per run could use


def test_bad_counts_are_named():
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ParameterError, match="runs"):
            threads.threads_for(bad, 4)
        with pytest.raises(ParameterError, match="threads"):
            threads.apply(bad)


def test_threads_started_later_use_the_setting():
    threads.apply(1)
    seen = []
    worker = threading.Thread(target=lambda: (torch.ones(4096).sum(), seen.append(torch.get_num_threads())))
    worker.start()
    worker.join()
    assert seen == [1] and torch.get_num_threads() == 1


def test_app_sets_the_policy_before_building(monkeypatch):
    seen = []

    def build_app(*models, sweep=None):
        seen.append(torch.get_num_threads())
        raise ParameterError("model", "stop here")

    torch.set_num_threads(threads.cores() + 1)
    monkeypatch.setattr(app_module, "build_app", build_app)
    assert app_module.main([]) == 2
    assert seen == [max(1, threads.cores() // CONCURRENCY_LIMIT)]


def test_cli_threads_flag(monkeypatch, tmp_path):
    seen = []
    real_sample = cli.sample

    def sample(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real_sample(*args, **kwargs)

    monkeypatch.setattr(cli, "sample", sample)
    torch.set_num_threads(2)
    assert cli.main(["sample", "--steps", "2", "--batch", "4", "--threads", "1"]) == 0
    assert cli.main(["sample", "--steps", "2", "--batch", "4"]) == 0  # default: torch's own, untouched
    assert seen == [1, 1]
    assert cli.main(["sample", "--threads", "0"]) == 2
