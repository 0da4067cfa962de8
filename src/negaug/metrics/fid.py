"""Fréchet distance between Gaussians fitted to two feature sets (FID when the features are
TF-Inception pool features; any other extractor's name goes into the result's key).

Stages: ``feature_statistics(features) -> (mean, cov)`` then ``frechet_distance(stats_a, stats_b)``.
Everything runs in float64 and the matrix square root comes from symmetric eigendecompositions:
a torch Newton-Schulz square root gives NaN with few samples (FACTS, "Metrics libraries").
"""
from __future__ import annotations

import torch
from torch import Tensor


def feature_statistics(features: Tensor, chunk_size: int = 8192) -> tuple[Tensor, Tensor]:
    """Mean (F,) and unbiased covariance (F, F), float64, of ``features`` (N, F), N >= 2.

    Two passes (mean first, then centred products) because accumulating sum(x x^T) and
    subtracting N mu mu^T loses digits when the mean is large; chunks bound the float64 copy.
    """
    if features.dim() != 2 or features.shape[0] < 2:
        raise ValueError(f"need features of shape (N >= 2, F), got {tuple(features.shape)}")
    count = features.shape[0]
    mean = torch.zeros(features.shape[1], dtype=torch.float64, device=features.device)
    for chunk in features.split(chunk_size):
        mean += chunk.to(torch.float64).sum(dim=0)
    mean /= count
    cov = torch.zeros(features.shape[1], features.shape[1], dtype=torch.float64, device=features.device)
    for chunk in features.split(chunk_size):
        centred = chunk.to(torch.float64) - mean
        cov += centred.T @ centred
    return mean, cov / (count - 1)


def _clean_eigenvalues(eigenvalues: Tensor) -> Tensor:
    """Eigenvalues at round-off level (below F * eps * the largest, as in numpy's matrix_rank)
    set to 0. Rank-deficient covariances (N < F, e.g. 2048-d Inception features of a few hundred
    images) have hundreds of them, and summing their square roots (sqrt(1e-15) ~ 3e-8 each)
    would bias the trace term by ~1e-4 instead of ~1e-12."""
    tolerance = eigenvalues.abs().max() * eigenvalues.numel() * torch.finfo(eigenvalues.dtype).eps
    return torch.where(eigenvalues > tolerance, eigenvalues, torch.zeros_like(eigenvalues))


def _psd_sqrt(matrix: Tensor) -> Tensor:
    """Square root of a symmetric positive semi-definite matrix (round-off eigenvalues -> 0)."""
    eigenvalues, eigenvectors = torch.linalg.eigh((matrix + matrix.T) / 2)
    return (eigenvectors * _clean_eigenvalues(eigenvalues).sqrt()) @ eigenvectors.T


def frechet_distance(stats_a: tuple[Tensor, Tensor], stats_b: tuple[Tensor, Tensor]) -> float:
    """||mu_a - mu_b||^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^(1/2)), computed in float64.

    tr((S_a S_b)^(1/2)) = tr((S_a^(1/2) S_b S_a^(1/2))^(1/2)): the right-hand matrix is symmetric
    PSD, so both roots are eigendecompositions; no complex parts, no NaN for singular covariances.
    """
    mean_a, cov_a = (t.to(torch.float64) for t in stats_a)
    mean_b, cov_b = (t.to(torch.float64) for t in stats_b)
    if mean_a.shape != mean_b.shape or cov_a.shape != cov_b.shape:
        raise ValueError(f"feature sizes differ: {tuple(mean_a.shape)} vs {tuple(mean_b.shape)}")
    root_a = _psd_sqrt(cov_a)
    middle = root_a @ cov_b @ root_a
    trace_sqrt = _clean_eigenvalues(torch.linalg.eigvalsh((middle + middle.T) / 2)).sqrt().sum()
    distance = (mean_a - mean_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * trace_sqrt
    return float(distance)


def fid_from_features(features_a: Tensor, features_b: Tensor) -> float:
    """Fréchet distance between two feature sets (N_a, F) and (N_b, F)."""
    return frechet_distance(feature_statistics(features_a), feature_statistics(features_b))
