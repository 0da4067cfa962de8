"""Kernel distance (KID when the features are TF-Inception features): the unbiased estimate of
MMD^2 with the cubic polynomial kernel k(x, y) = (x.y / F + 1)^3, averaged over random subsets
(Binkowski et al. 2018; the same estimator as torch-fidelity's ``mmd_est="unbiased"``).

The value is the raw MMD^2, torch-fidelity's and clean-fid's scale (gamma = 1/F, coef0 = 1,
degree 3, subsets of 1,000, mean and population std over the subsets); papers often print it
multiplied by 1000.

Unbiased means that for two samples of one distribution the expected value is 0: single
estimates can be slightly negative, which is expected and kept.
"""
from __future__ import annotations

import torch
from torch import Tensor


def polynomial_kernel(x: Tensor, y: Tensor, degree: int = 3, coef0: float = 1.0) -> Tensor:
    """(x y^T / F + coef0)^degree for batches x (S, M, F), y (S, M', F) -> (S, M, M')."""
    return (x @ y.transpose(-1, -2) / x.shape[-1] + coef0) ** degree


def mmd2_unbiased(x: Tensor, y: Tensor) -> Tensor:
    """Unbiased MMD^2 per subset for x, y (S, M, F) with the same M -> (S,), float64.

    Within-set sums drop the diagonal (k(x_i, x_i)); the cross term keeps all M^2 pairs.
    """
    x, y = x.to(torch.float64), y.to(torch.float64)
    size = x.shape[1]
    k_xx, k_yy, k_xy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    off_diagonal = (
        k_xx.sum(dim=(1, 2)) - k_xx.diagonal(dim1=1, dim2=2).sum(dim=1)
        + k_yy.sum(dim=(1, 2)) - k_yy.diagonal(dim1=1, dim2=2).sum(dim=1)
    )
    return off_diagonal / (size * (size - 1)) - 2 * k_xy.sum(dim=(1, 2)) / size**2


def kernel_distance(
    features_real: Tensor,
    features_fake: Tensor,
    num_subsets: int = 100,
    subset_size: int = 1000,
    generator: torch.Generator | None = None,
    subsets_per_batch: int = 8,
) -> tuple[float, float]:
    """Mean and standard deviation over ``num_subsets`` of the unbiased MMD^2 between random
    subsets (without replacement) of ``subset_size`` rows of (N_r, F) and (N_f, F) features.

    ``subset_size`` is capped at the smaller set, so a few hundred samples still give a value.
    Subsets are drawn on the CPU from ``generator``: the value does not depend on the device.
    Kernel matrices are built ``subsets_per_batch`` at a time (memory: 3 * that * M^2 float64).
    """
    size = min(subset_size, features_real.shape[0], features_fake.shape[0])
    if size < 2:
        raise ValueError("kernel distance needs at least 2 real and 2 generated samples")
    values = []
    for start in range(0, num_subsets, subsets_per_batch):
        count = min(subsets_per_batch, num_subsets - start)
        rows_real = _subset_rows(features_real.shape[0], count, size, generator)
        rows_fake = _subset_rows(features_fake.shape[0], count, size, generator)
        values.append(mmd2_unbiased(
            features_real[rows_real.to(features_real.device)],
            features_fake[rows_fake.to(features_fake.device)],
        ))
    mmd = torch.cat(values)
    return float(mmd.mean()), float(mmd.std(unbiased=False))


def _subset_rows(total: int, count: int, size: int, generator: torch.Generator | None) -> Tensor:
    """``count`` independent subsets of ``size`` distinct indices in [0, total) -> (count, size)."""
    # argsort of uniform noise = one random permutation per row, batched
    noise = torch.rand(count, total, generator=generator)
    return noise.argsort(dim=1)[:, :size]
