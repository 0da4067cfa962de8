"""Sample quality on 2-D toy mixtures (rings / grids of Gaussians).

- negative fraction: share of samples inside the regions the NDA negatives cover (lower is better);
- high-quality fraction: share within ``num_std`` standard deviations of some mode (3, as in
  Srivastava et al. 2017, VEEGAN, and Metz et al. 2017, unrolled GAN);
- modes covered: modes receiving at least ``min_share`` of all samples as high-quality samples.
  VEEGAN counts a mode when it gets 20 of 2,500 samples (0.8%); we use a share so the rule does
  not depend on the sample count, 1% by default.

The geometry (which points are in a negative region, which mode a point belongs to) belongs to
the dataset (``negaug.data.toy_negative_region_mask`` / ``toy_mode_assignment``); the functions
here take their outputs, so they work with any mask or assignment.
"""
from __future__ import annotations

import torch
from torch import Tensor


def mode_counts(assignment: Tensor, num_modes: int) -> Tensor:
    """Samples per mode: assignment (N,) int64 in [-1, num_modes) (-1: near no mode) -> (num_modes,)."""
    assigned = assignment[assignment >= 0]
    return torch.bincount(assigned.long().cpu(), minlength=num_modes)


def toy_quality(
    negative_mask: Tensor, assignment: Tensor, num_modes: int, min_share: float = 0.01
) -> dict:
    """Toy metrics from a negative-region mask (N,) bool and a mode assignment (N,) int64.

    Returns {"negative_fraction", "high_quality_fraction" in [0, 1], "modes_covered" (int),
    "num_modes", "mode_counts" (list of num_modes ints), "min_share"}.
    """
    if negative_mask.shape != assignment.shape or negative_mask.dim() != 1:
        raise ValueError(f"mask {tuple(negative_mask.shape)} and assignment {tuple(assignment.shape)} must be (N,)")
    total = assignment.numel()
    counts = mode_counts(assignment, num_modes)
    return {
        "negative_fraction": float(negative_mask.float().mean()),
        "high_quality_fraction": float((assignment >= 0).float().mean()),
        # a mode without samples is never covered, even with min_share = 0
        "modes_covered": int((counts >= max(1.0, min_share * total)).sum()),
        "num_modes": int(num_modes),
        "mode_counts": counts.tolist(),
        "min_share": float(min_share),
    }
