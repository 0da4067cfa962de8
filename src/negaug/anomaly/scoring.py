"""The discriminator as an anomaly detector: its raw output is the score, in-distribution is the
positive class (a real-looking image should score high), as in the paper's Section 5 and the
authors' code (sklearn's roc_auc_score on raw D logits).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.metrics import average_precision_score, roc_auc_score
from torch import nn

from negaug import distributed


@torch.no_grad()
def score(discriminator: nn.Module, images: torch.Tensor, labels: torch.Tensor | None = None,
          batch_size: int = 256) -> torch.Tensor:
    """Raw discriminator outputs D(x, y) for `images` (N, C, H, W) in [-1, 1]: float32 (N,) on CPU.

    The images must be preprocessed as the training data were (same [-1, 1] scaling and size).
    Runs in eval mode without gradients, in batches on the discriminator's device; the module's
    train/eval mode is restored afterwards. labels: int64 (N,) for a conditional D, or None.
    Under ``torchrun`` (the same call on every rank) each rank scores its share of whole batches and
    every rank returns all N scores in order (`negaug.distributed.batch_shard`).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if images.dim() != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
    if images.numel() and (images.min() < -1.001 or images.max() > 1.001):
        raise ValueError(f"images must be in [-1, 1] as in training, got values in "
                         f"[{images.min().item():.3g}, {images.max().item():.3g}]")
    share = distributed.batch_shard(images.shape[0], batch_size)  # under torchrun: this rank's whole batches
    first, stop = share or (0, images.shape[0])
    parameter = next(discriminator.parameters(), None)
    device = parameter.device if parameter is not None else images.device
    was_training = discriminator.training
    discriminator.eval()
    try:
        scores = []
        for start in range(first, stop, batch_size):
            end = min(start + batch_size, stop)
            x = images[start:end].to(device)
            out = discriminator(x) if labels is None else discriminator(x, labels[start:end].to(device))
            if out.numel() != x.shape[0]:
                raise ValueError(f"the discriminator returned shape {tuple(out.shape)} for a batch of "
                                 f"{x.shape[0]}; expected ({x.shape[0]},)")
            scores.append(out.reshape(-1).float().cpu())
    finally:
        discriminator.train(was_training)
    local = torch.cat(scores) if scores else torch.empty(0)
    return local if share is None else distributed.all_gather_cat(local)


def fpr_at_tpr(scores_in: torch.Tensor, scores_out: torch.Tensor, tpr: float = 0.95) -> float:
    """False-positive rate on OOD at the highest threshold that keeps `tpr` of the in-distribution.

    With in-distribution positive and "score >= t" meaning "in-distribution": t is the k-th
    largest in-distribution score, k = ceil(tpr * N_in), the largest t whose true-positive rate is
    at least `tpr`; the result is the share of OOD scores >= t.
    """
    s_in = _as_numpy(scores_in)
    s_out = _as_numpy(scores_out)
    k = math.ceil(round(tpr * s_in.size, 9))  # round: 0.95 * 20 must be 19, not 19.000000000000004
    threshold = np.sort(s_in)[::-1][max(k, 1) - 1]
    return float(np.mean(s_out >= threshold))


def detection_metrics(scores_in: torch.Tensor, scores_out: torch.Tensor) -> dict[str, float]:
    """AUROC, AUPR and FPR at 95% TPR of separating in-distribution (positive) from OOD scores.

    scores_*: (N,) raw discriminator outputs, higher = more in-distribution. AUPR is the average
    precision with in-distribution positive ("AUPR-In"). Returns
    {"auroc": float, "aupr": float, "fpr_at_95_tpr": float}, each in [0, 1].
    """
    s_in, s_out = _as_numpy(scores_in), _as_numpy(scores_out)
    if s_in.size == 0 or s_out.size == 0:
        raise ValueError(f"need scores on both sides, got {s_in.size} in-distribution and {s_out.size} OOD")
    truth = np.concatenate([np.ones(s_in.size), np.zeros(s_out.size)])
    scores = np.concatenate([s_in, s_out])
    return {
        "auroc": float(roc_auc_score(truth, scores)),
        "aupr": float(average_precision_score(truth, scores)),
        "fpr_at_95_tpr": fpr_at_tpr(s_in, s_out, 0.95),
    }


def _as_numpy(scores: torch.Tensor | np.ndarray) -> np.ndarray:
    array = scores.detach().cpu().double().numpy() if isinstance(scores, torch.Tensor) else np.asarray(scores, float)
    array = array.reshape(-1)
    if not np.all(np.isfinite(array)):
        raise ValueError("scores contain NaN or infinity; the discriminator diverged or the inputs are broken")
    return array
