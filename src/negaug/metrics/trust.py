"""When a metric value would mislead: the checks every evaluation runs before reporting.

A number is refused (a one-line ValueError naming the fix) when
- its feature network is near chance on its own task (a classifier that learned nothing embeds
  images almost at random: pure noise then gets a "good" FID; dots, whose rotations cannot be
  told apart, are the classic case),
- its reference images are the feature network's training images (the network has memorised
  them, so generated images look far from everything),
- or its sample counts are too small for the metric (FID: fewer samples than feature
  dimensions leaves the covariance singular).
With ``force=True`` (CLI ``--force``) the number is computed anyway and every such problem is
listed in the result's ``"warnings"``; `negaug eval` prints them.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

# a feature network is "near chance" when its held-out accuracy has covered less than this share
# of the way from chance (1 / classes) to perfect: 0.44 for 4 rotations, 0.33 for 10 digits
MIN_ACCURACY_GAIN = 0.25
# a reference may share at most this share of its images with the feature network's training data
MAX_REFERENCE_OVERLAP = 0.01
FINGERPRINT_SEED = 20210101


class Flags:
    """Collects the problems of one evaluation: raises on the first unless ``force``."""

    def __init__(self, force: bool):
        self.force, self.warnings = force, []

    def report(self, problem: str, fix: str) -> None:
        if not self.force:
            raise ValueError(f"{problem}; {fix} (or force it, with a warning: force=True, --force or eval.force=true)")
        if problem not in self.warnings:
            self.warnings.append(problem)


def minimum_accuracy(num_classes: int) -> float:
    """Held-out accuracy below which a ``num_classes``-way feature network counts as near chance."""
    chance = 1.0 / num_classes
    return chance + MIN_ACCURACY_GAIN * (1.0 - chance)


def check_feature_network(meta: dict[str, Any], flags: Flags) -> None:
    """Refuse an offline classifier whose held-out accuracy is near chance (or unknown)."""
    accuracy, num_classes = meta.get("val_accuracy"), int(meta["num_outputs"])
    task = "class labels" if meta.get("task") == "labels" else "which of 4 rotations was applied"
    needed = minimum_accuracy(num_classes)
    if accuracy is None:
        flags.report(f"the classifier features were trained on too few images to measure their accuracy on "
                     f"{task}", "give the classifier more training images (train_data=)")
    elif accuracy < needed:
        flags.report(f"the classifier features are near chance: held-out accuracy {accuracy:.3f} on {task} "
                     f"(chance {1 / num_classes:.3f}, trusted from {needed:.3f}), so distances in them mean "
                     "little", "use the inception feature extractor (with its weights) or a task-specific "
                     "metric (dots: the dots metric)")


def fingerprints(images: Tensor | Iterable[Tensor]) -> Tensor:
    """One float64 number per image (a fixed random projection of its pixels): equal images give
    equal numbers, different ones almost surely not. (N, ...) or batches of it -> (N,)."""
    batches = [images] if isinstance(images, Tensor) else images
    weights, out = None, []
    for batch in batches:
        flat = batch.detach().cpu().flatten(1).double()
        if weights is None:
            weights = torch.rand(flat.shape[1], generator=torch.Generator().manual_seed(FINGERPRINT_SEED),
                                 dtype=torch.float64) + 0.5
        out.append((flat * weights).sum(dim=1))  # per-row reduction: the same number in any batch (a matmul is not)
    return torch.cat(out) if out else torch.empty(0, dtype=torch.float64)


def shared_fraction(reference: Tensor, training: Tensor) -> float:
    """Share of the reference fingerprints (N,) found among the training fingerprints (M,)."""
    if reference.numel() == 0:
        return 0.0
    return float(torch.isin(reference, training).double().mean())


def check_reference_overlap(fraction: float, flags: Flags) -> None:
    if fraction > MAX_REFERENCE_OVERLAP:
        flags.report(f"{fraction:.0%} of the reference images are training images of the feature network, which "
                     "has learned them: the reference must be held-out images",
                     "evaluate against the test split and train the features on the training split (train_data=)")


def check_fid_sizes(num_real: int, num_fake: int, num_features: int, identifier: str, flags: Flags) -> None:
    """FID needs at least as many samples as feature dimensions in each set (else the covariance
    is singular and the value mostly measures the sample count)."""
    smallest = min(num_real, num_fake)
    if smallest < num_features:
        flags.report(f"FID in the {num_features}-dimensional '{identifier}' features needs at least "
                     f"{num_features} samples per set, got {num_generated_text(num_real, num_fake)}",
                     "use more samples (num_samples, --num-samples, eval.num_samples) and a larger reference")


def num_generated_text(num_real: int, num_fake: int) -> str:
    return f"{num_fake} generated vs {num_real} reference"
