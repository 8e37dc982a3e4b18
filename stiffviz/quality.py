"""Sample-quality report of a run against its model's exact distribution (docs/math.md §8).

For the 2-D toys (models with ``sample_reference`` and ``log_prob``): sliced Wasserstein
distance to fresh reference samples, mean NLL under the exact clean density (reported
next to the two-sided measures, since NLL alone rewards collapse; none where the clean data
are point masses, ``model.discrete``), and k-NN precision and recall. For the digits family
(single-channel square images with ``sample_reference``):
class accuracy, Fréchet distance and k-NN precision/recall in a digits classifier's
feature space (:mod:`stiffviz.image_metrics`). Reference samples come from a generator
seeded with ``seed + REFERENCE_SEED_OFFSET`` so the report is deterministic and
independent of the run's own noise. Other models get no report.

A measure that cannot be computed from the run's samples is reported as not available
(None) and the rest are still computed: k-NN precision and recall need ``KNN_K + 1`` = 4
samples (each set needs a k-th neighbour besides the point itself), the Fréchet distance 2
(a covariance). ``MIN_SAMPLES`` holds these counts and :func:`not_available` says why.
"""

from __future__ import annotations

import torch

from .image_metrics import FD_MIN_SAMPLES, image_quality
from .metrics import KNN_K, knn_precision_recall, mean_nll, sliced_wasserstein

REFERENCE_SEED_OFFSET = 1_000_003
MIN_SAMPLES = {"precision": KNN_K + 1, "recall": KNN_K + 1, "fd": FD_MIN_SAMPLES}


def quality_report(model, samples: torch.Tensor, cond=None, seed: int = 0,
                   n_reference: int | None = None) -> dict[str, float | None]:  # fmt: skip
    """Quality measures of ``samples`` for ``model`` (class ``cond``), as a dict of floats,
    None for a measure that this few samples cannot give (``MIN_SAMPLES``).

    Returns an empty dict for models without a reference sampler.
    """
    if not hasattr(model, "sample_reference"):
        return {}
    generator = torch.Generator().manual_seed(seed + REFERENCE_SEED_OFFSET)
    reference = model.sample_reference(n_reference or max(len(samples), 512), generator, cond=cond)
    if len(model.shape) == 3:
        cls = None if cond is None else model.classes.index(cond) if isinstance(cond, str) else int(cond)
        return image_quality(samples, reference, cls)
    samples = samples.detach().to("cpu", torch.float64).flatten(1)
    reference = reference.flatten(1)
    report = {"swd": sliced_wasserstein(samples, reference, generator=generator)}
    if hasattr(model, "log_prob") and not getattr(model, "discrete", False):
        report["nll"] = mean_nll(samples, lambda x: model.log_prob(x, 0.0, cond))
    enough = len(samples) >= MIN_SAMPLES["precision"]
    report["precision"], report["recall"] = knn_precision_recall(reference, samples) if enough else (None, None)
    return report


def not_available(report: dict, batch: int) -> str:
    """Why the measures of ``report`` that are None are not available, for a run of ``batch``
    samples ('' when every measure is there)."""
    missing = [name for name, value in report.items() if value is None]
    needs: dict[int, list[str]] = {}
    for name in missing:
        needs.setdefault(MIN_SAMPLES[name], []).append(name)
    if not needs:
        return ""
    parts = [f"{' and '.join(names)} {'need' if len(names) > 1 else 'needs'} at least {n}"
             for n, names in sorted(needs.items())]  # fmt: skip
    return f"{', '.join(parts)} samples; the run has {batch}"
