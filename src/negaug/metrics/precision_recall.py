"""Improved precision and recall (Kynkäänniemi et al. 2019) with k-NN radii.

Each real feature owns a ball reaching its k-th nearest real neighbour; precision is the share
of generated samples inside at least one real ball. Recall swaps the roles. A mode-collapsed
generator has high precision and low recall.
"""
from __future__ import annotations

import torch
from torch import Tensor


def knn_radii(features: Tensor, k: int = 3, chunk_size: int = 1024) -> Tensor:
    """Distance from each row of ``features`` (N, F) to its k-th nearest other row -> (N,).

    The k + 1-th smallest distance of a row's distances to all rows, its own 0 being the first.
    Rows are processed ``chunk_size`` at a time (memory: chunk_size * N distances).
    """
    if features.shape[0] <= k:
        raise ValueError(f"need more than k={k} samples for k-NN radii, got {features.shape[0]}")
    return torch.cat([
        torch.cdist(chunk, features).kthvalue(k + 1, dim=1).values
        for chunk in features.split(chunk_size)
    ])


def coverage_by_balls(queries: Tensor, centres: Tensor, radii: Tensor, chunk_size: int = 1024) -> Tensor:
    """Whether each query (Q, F) lies in at least one ball (centres (N, F), radii (N,)) -> (Q,) bool."""
    return torch.cat([
        (torch.cdist(chunk, centres) <= radii).any(dim=1)
        for chunk in queries.split(chunk_size)
    ])


def precision_recall(
    features_real: Tensor, features_fake: Tensor, k: int = 3, chunk_size: int = 1024
) -> tuple[float, float]:
    """(precision, recall) of generated features (N_f, F) against real features (N_r, F), in [0, 1]."""
    real, fake = features_real.float(), features_fake.float()
    precision = coverage_by_balls(fake, real, knn_radii(real, k, chunk_size), chunk_size)
    recall = coverage_by_balls(real, fake, knn_radii(fake, k, chunk_size), chunk_size)
    return float(precision.float().mean()), float(recall.float().mean())
