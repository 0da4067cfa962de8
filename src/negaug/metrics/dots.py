"""Numerosity of dots images (paper, Appendix A): count the dots in each image.

A pixel belongs to a dot when its colour is far from the background colour; dots are the
connected components of those pixels, labelled for the whole batch in one
``scipy.ndimage.label`` call on the stacked (N, H, W) mask with a structure that connects
pixels within an image (8-neighbourhood) but never across images. Components smaller than
``min_area`` pixels are specks (generator noise), not dots. Overlapping or touching dots are
one component, hence one dot: what a viewer would count, too.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor


def background_colour(images: Tensor) -> Tensor:
    """Per-image background estimate: the per-channel median over pixels -> (N, C, 1, 1).

    Dots cover a minority of the pixels, so the median is the background, also for generated
    images whose background drifts from the training set's exact colour.
    """
    return images.flatten(2).median(dim=2).values[:, :, None, None]


def dot_mask(images: Tensor, background: Tensor | None = None, threshold: float = 1.0) -> Tensor:
    """Pixels whose colour is more than ``threshold`` (Euclidean, in [-1, 1] units) from the
    background: images (N, C, H, W) in [-1, 1] -> (N, H, W) bool. ``background``: (C,) or
    (N, C, 1, 1); None estimates it per image. The default 1 is halfway to the nearest dot
    colour of the dots set (saturated hues on black are at distance >= 2), so blurry edges of
    generated dots do not bridge the 2 px gaps."""
    if background is None:
        background = background_colour(images)
    background = torch.as_tensor(background, dtype=images.dtype, device=images.device)
    if background.dim() == 1:
        background = background[None, :, None, None]
    return (images - background).square().sum(dim=1).sqrt() > threshold


def count_components(mask: Tensor, min_area: int = 1) -> Tensor:
    """Connected components of at least ``min_area`` pixels per image: (N, H, W) bool -> (N,) int64."""
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = True  # 8-connected in-plane, never connected to the neighbouring images
    labels, num = ndimage.label(mask.cpu().numpy(), structure=structure)
    area = np.bincount(labels.ravel(), minlength=num + 1)  # area[0] is the background
    image_of_label = np.zeros(num + 1, dtype=np.int64)
    image_index, _, _ = np.nonzero(labels)
    image_of_label[labels[labels > 0]] = image_index  # every pixel of a label lies in one image
    keep = area[1:] >= min_area
    counts = np.bincount(image_of_label[1:][keep], minlength=mask.shape[0])
    return torch.from_numpy(counts).long()


def count_dots(
    images: Tensor, background: Tensor | None = None, threshold: float = 1.0, min_area: int = 2
) -> Tensor:
    """Number of dots in each image (N, C, H, W) in [-1, 1] -> (N,) int64."""
    return count_components(dot_mask(images, background, threshold), min_area)


def count_histogram(counts: Tensor) -> dict[int, int]:
    """{count: number of images with that many dots}, sorted by count, zeros omitted."""
    values, frequency = torch.unique(counts.long(), return_counts=True)
    return {int(v): int(f) for v, f in zip(values.tolist(), frequency.tolist())}


def fraction_with_count(counts: Tensor, target: int) -> float:
    """Share of images with exactly ``target`` dots, in [0, 1]."""
    return float((counts == target).float().mean())
