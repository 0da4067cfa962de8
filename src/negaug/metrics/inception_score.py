"""Inception Score exp(E_x KL(p(y|x) || p(y))) from class probabilities (Salimans et al. 2016).

With TF-Inception logits this is the IS of the literature; with the offline classifier's
softmax it is a "classifier IS", bounded by the classifier's number of classes.
"""
from __future__ import annotations

import torch
from torch import Tensor


def inception_score(probabilities: Tensor, splits: int = 10) -> tuple[float, float]:
    """Mean and standard deviation over ``splits`` consecutive chunks of the score of
    ``probabilities`` (N, K) (rows are distributions: non-negative, summing to 1).

    Computed in float64 with 0 log 0 = 0, so one-hot rows are exact. No shuffling: generated
    samples are i.i.d. already. Range [1, K].
    """
    if probabilities.dim() != 2 or probabilities.shape[0] < splits:
        raise ValueError(f"need (N >= splits={splits}, K) probabilities, got {tuple(probabilities.shape)}")
    probs = probabilities.to(torch.float64)
    scores = []
    for chunk in probs.tensor_split(splits):
        marginal = chunk.mean(dim=0, keepdim=True)  # p(y) within the split
        kl = torch.special.xlogy(chunk, chunk) - torch.special.xlogy(chunk, marginal)
        scores.append(kl.sum(dim=1).mean().exp())
    scores_t = torch.stack(scores)
    return float(scores_t.mean()), float(scores_t.std(unbiased=False))
