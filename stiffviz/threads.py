"""The thread policy: runs at once × torch threads ≤ cores.

PyTorch's CPU kernels split each operation over an intra-op pool of one thread per core by
default. That is fastest for one run alone on an idle machine, and collapses as soon as
anything else wants a core: a pool's threads meet at a barrier after every operation, so
one preempted thread stalls all the others (on 2 cores, 63 calls of the tree denoiser took
0.47 s with 2 threads idle, 18.4 s with 2 threads next to one busy process, 0.60 s with
1 thread). So every process that runs samplers sets, once at start-up,

    threads per run = max(1, cores // runs at once)

where cores are the CPUs this process may use (``os.sched_getaffinity``) and runs at once
is what the process runs concurrently: the app's ``CONCURRENCY_LIMIT``; 1 for the command
line (``--threads`` overrides); for a sweep of N parallel worker processes, each worker
takes ``threads_for(N)``. torch reads the setting when a thread makes its first parallel
operation, so it must be set before the runs' threads start.

The inter-op pool (``torch.set_num_interop_threads``) only runs ``torch.jit.fork`` tasks,
which stiffviz never creates; it is set to 1 where torch still allows it (before any
inter-op work) so that no idle pool of one thread per core is created either.
"""

from __future__ import annotations

import os

import torch

from .errors import ParameterError


def cores() -> int:
    """The CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def threads_for(runs: int, available: int | None = None) -> int:
    """torch threads per run for ``runs`` runs at once: max(1, cores // runs)."""
    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 1:
        raise ParameterError("runs", f"must be an integer ≥ 1, got {runs!r}")
    return max(1, (available or cores()) // runs)


def apply(threads: int) -> int:
    """Set torch's intra-op threads to ``threads`` (and the inter-op pool to 1 where still
    allowed); returns ``threads``."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ParameterError("threads", f"must be an integer ≥ 1, got {threads!r}")
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set, or inter-op work has started: torch allows it only once
        pass
    return threads


def apply_policy(runs: int, available: int | None = None) -> int:
    """Apply the policy for ``runs`` runs at once: :func:`apply` of :func:`threads_for`."""
    return apply(threads_for(runs, available))
