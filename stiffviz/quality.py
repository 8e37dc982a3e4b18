"""Sample-quality report of a run against its model's exact distribution (docs/math.md §8).

For the 2-D toys (models with ``sample_reference`` and ``log_prob``): sliced Wasserstein
distance to fresh reference samples, mean NLL under the exact clean density (reported
next to the two-sided measures, since NLL alone rewards collapse), and k-NN precision and
recall. For the digits family (single-channel square images with ``sample_reference``):
class accuracy, Fréchet distance and k-NN precision/recall in a digits classifier's
feature space (:mod:`stiffviz.image_metrics`). Reference samples come from a generator
seeded with ``seed + REFERENCE_SEED_OFFSET`` so the report is deterministic and
independent of the run's own noise. Other models get no report.
"""

from __future__ import annotations

import torch

from .image_metrics import image_quality
from .metrics import knn_precision_recall, mean_nll, sliced_wasserstein

REFERENCE_SEED_OFFSET = 1_000_003


def quality_report(model, samples: torch.Tensor, cond=None, seed: int = 0, n_reference: int | None = None) -> dict:
    """Quality measures of ``samples`` for ``model`` (class ``cond``), as a dict of floats.

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
    if hasattr(model, "log_prob"):
        report["nll"] = mean_nll(samples, lambda x: model.log_prob(x, 0.0, cond))
    report["precision"], report["recall"] = knn_precision_recall(reference, samples)
    return report
