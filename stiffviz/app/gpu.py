"""ZeroGPU: only the sampling runs under ``spaces.GPU``; the figures are drawn outside it.

On a ZeroGPU Space the function decorated by ``spaces.GPU`` runs in a worker process that
holds the GPU, and every argument and yielded value is pickled across. Here that function is
:func:`sampling`: it yields :func:`stiffviz.app.live.produce`'s compact events (the step's trace
record, x_{i+1} and D(x_i; σ_i) of at most ``KEEP_SAMPLES`` samples, and at the end the samples,
the trace's summary and the quality measures), never the Session or a figure. The page's
generator (:func:`stiffviz.app.live.stream_session`) builds the Session and the frames from them
in the main process.

The models are loaded at start-up, in the main process: a server model crosses by its name and
is looked up by ``loader`` (the app's model cache, inherited by the forked worker); a model that
only a session has (the visitor's own data) crosses as the object, which is small.

The GPU time asked for is computed from the request (:func:`duration`):

    duration = MARGIN · Cost.seconds + OVERHEAD_S,

``Cost.seconds`` being the request's model-call equivalents (NFE, diagnostics and compare) times
the model's measured time per call (:func:`stiffviz.app.cost.estimate`).

Stopping: the page's generator closes the events when its stop event is set; ZeroGPU then
closes :func:`sampling` in the worker at its next yield, which stops the sampler's thread there
at its next step (:func:`stiffviz.app.live.session_events`).
"""

from __future__ import annotations

import functools
import sys
from typing import Any, Callable, Iterator

from . import cost
from .live import session_events
from .requests import Request

MARGIN = 1.5  # GPU time asked for, per second of estimated run time
OVERHEAD_S = 10.0  # seconds for the worker to start and take the model onto the GPU


def _resolve(model: Any, loader: Callable[[str], Any]) -> Any:
    return loader(model) if isinstance(model, str) else model


def sampling(request: Request, model: Any, loader: Callable[[str], Any]) -> Iterator[tuple]:
    """The GPU function: the events of ``request``'s runs on ``model`` (a server model's name, looked
    up by ``loader``, or a model object)."""
    yield from session_events(request, _resolve(model, loader))


def duration(request: Request, model: Any, loader: Callable[[str], Any]) -> float:
    """Seconds of GPU time for :func:`sampling` with these arguments (``spaces.GPU``'s ``duration``)."""
    return MARGIN * cost.estimate(request, _resolve(model, loader)).seconds + OVERHEAD_S


@functools.lru_cache(maxsize=None)
def _decorated(spaces: Any) -> Callable[..., Iterator[tuple]]:
    return spaces.GPU(duration=duration)(sampling)


def events(request: Request, model: Any, loader: Callable[[str], Any]) -> Iterator[tuple] | None:
    """The events of the request from ZeroGPU's worker when the ``spaces`` package is importable and
    its decorator is in effect; None otherwise (the page samples in its own process, in a thread)."""
    spaces = sys.modules.get("spaces")
    if spaces is None:
        try:
            import spaces
        except ImportError:
            return None
    decorated = _decorated(spaces)
    return None if decorated is sampling else decorated(request, model, loader)
