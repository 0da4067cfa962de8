"""Segmentation scores of generated label maps (the photo -> labels direction of Pix2Pix, Table 4
of the NDA paper): per-pixel accuracy, per-class accuracy and mean IoU from one confusion matrix.

    classes = nearest_palette_classes(G(photos), palette)     # (B, H, W) generated label image -> classes
    confusion = confusion_matrix(classes, true_classes, K)    # (K, K) int64, rows = truth
    scores = segmentation_scores(confusion)                   # {"pixel_accuracy", "class_accuracy", "mean_iou"}

Conventions: ground-truth pixels outside 0..K-1 (IGNORE = 255, void) are not counted; per-pixel
accuracy = correct / counted pixels; per-class accuracy of a class = correct / ground-truth pixels
of the class; its IoU = correct / (ground truth + predicted - correct). The class means follow
``average``:
- "all": pix2pix's Cityscapes evaluation (phillipi/pix2pix, scripts/eval_cityscapes/evaluate.py
  and util.py `get_scores`, after the FCN scores of Long et al.): ``np.nanmean`` over all K
  classes of ``diag / (hist.sum(1) + 1e-12)`` and ``diag / (union + 1e-12)``, so the 1e-12 makes
  a class absent from the ground truth score 0 (not NaN) and it counts in the mean. The default
  of `score_translation` on Cityscapes data, so numbers compare with published tables.
- "present": the class accuracy averages over the classes present in the ground truth, the IoU
  over those in the ground truth or the prediction (a class neither has is 0/0, left out). The
  default elsewhere (the offline street scenes).
With one of 8 classes missing from the ground truth the two differ (0.598 "all" against 0.683
"present" on `tests/test_reference_conventions.py`'s example).
"""
from __future__ import annotations

import torch

from negaug.data.paired import IGNORE, nearest_palette_classes

__all__ = ["IGNORE", "confusion_matrix", "nearest_palette_classes", "score_translation", "segmentation_scores"]


def confusion_matrix(predicted: torch.Tensor, truth: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(K, K) int64 pixel counts [true class, predicted class] over the pixels whose true class is
    in 0..K-1 (one batched `bincount`). predicted (classes 0..K-1) and truth: integer tensors of
    one shape, e.g. (B, H, W)."""
    if predicted.shape != truth.shape:
        raise ValueError(f"predicted {tuple(predicted.shape)} and truth {tuple(truth.shape)} must have one shape")
    truth, predicted = truth.reshape(-1).long(), predicted.reshape(-1).long()
    if predicted.numel() and (predicted.min() < 0 or predicted.max() >= num_classes):
        raise ValueError(f"predicted classes must lie in 0..{num_classes - 1}")
    counted = (truth >= 0) & (truth < num_classes)
    pairs = truth[counted] * num_classes + predicted[counted]
    return torch.bincount(pairs, minlength=num_classes * num_classes).view(num_classes, num_classes)


AVERAGES = ("all", "present")


def segmentation_scores(confusion: torch.Tensor, average: str = "present") -> dict[str, float]:
    """Pixel accuracy, class accuracy and mean IoU (conventions and ``average`` in the module
    docstring) of a (K, K) confusion matrix [truth, prediction], floats in [0, 1], with the number
    of classes each mean ran over."""
    if average not in AVERAGES:
        raise ValueError(f"average='{average}' is not one of {', '.join(AVERAGES)}")
    confusion = confusion.double()
    correct = confusion.diagonal()
    truth, predicted = confusion.sum(1), confusion.sum(0)  # (K,) pixels per true / predicted class
    total = truth.sum()
    if total == 0:
        raise ValueError("no counted pixel: every ground-truth pixel is ignored")
    present = truth > 0
    union = truth + predicted - correct
    seen = union > 0
    if average == "all":  # get_scores: absent classes score 0/(0 + 1e-12) = 0 and count
        present = seen = torch.ones_like(present)
        truth, union = truth + 1e-12, union + 1e-12
    return {"pixel_accuracy": float(correct.sum() / total),
            "class_accuracy": float((correct[present] / truth[present]).mean()),
            "mean_iou": float((correct[seen] / union[seen]).mean()),
            "num_classes_in_truth": int(present.sum()), "num_classes_in_union": int(seen.sum())}


@torch.no_grad()
def default_average(dataset) -> str:
    """"all" (pix2pix's evaluation) for Cityscapes data, "present" for the others."""
    return "all" if str(getattr(dataset, "name", "")).startswith("cityscapes") else "present"


def score_translation(generator: torch.nn.Module, dataset, num_samples: int | None = None, batch_size: int = 64,
                      device: torch.device | str = "cpu", average: str | None = None) -> dict:
    """Segmentation scores of `generator` (photo -> label image) on the first `num_samples` pairs of
    a paired dataset (None: all), the generated label images read to the nearest palette colour.
    The generator is run as given (call `.eval()` first for dropout off). Returns the scores,
    the confusion matrix and the majority-class pixel accuracy of the same pixels (the accuracy of
    predicting the most frequent true class everywhere), with the protocol. ``average``: how the
    class means run (None: `default_average(dataset)`)."""
    average = default_average(dataset) if average is None else average
    count = len(dataset) if num_samples is None else min(int(num_samples), len(dataset))
    if count < 1 or batch_size < 1:
        raise ValueError("score_translation needs at least one pair and batch_size >= 1")
    k = dataset.num_classes
    confusion = torch.zeros(k, k, dtype=torch.int64)
    for index in torch.arange(count).split(batch_size):
        conditions, _ = dataset.get_batch(index)
        generated = generator(conditions.to(device)).float().cpu()
        predicted = nearest_palette_classes(generated, dataset.palette)
        confusion += confusion_matrix(predicted, dataset.class_maps(index), k)
    scores = segmentation_scores(confusion, average)
    truth = confusion.sum(1)
    scores.update(majority_pixel_accuracy=float(truth.max() / truth.sum()), confusion=confusion.tolist(),
                  protocol={"num_pairs": count, "num_pixels": int(truth.sum()), "classes": list(dataset.class_names),
                            "prediction": "nearest palette colour (RGB) of each generated pixel",
                            "mean_iou_over": "all classes (absent: 0, pix2pix's get_scores)" if average == "all"
                            else "classes in the ground truth or the prediction",
                            "class_accuracy_over": "all classes (absent: 0, pix2pix's get_scores)" if average == "all"
                            else "classes in the ground truth", "ignored": f"truth {IGNORE} (void)"})
    return scores
