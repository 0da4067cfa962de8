"""Numerosity of dots images (paper, Appendix A): count the dots in each image.

Two counters that share only the background estimate (the per-image median colour), so each can
check the other on generated images:

- ``count_dots`` (the primary one): threshold, then connected components. A pixel belongs to a
  dot when its colour is far from the background colour; dots are the connected components of
  those pixels, labelled for the whole batch in one ``scipy.ndimage.label`` call on the stacked
  (N, H, W) mask with a structure that connects pixels within an image (8-neighbourhood) but
  never across images. Components smaller than ``min_area`` pixels are specks (generator noise),
  not dots. Overlapping or touching dots are one component, hence one dot: what a viewer would
  count, too.
- ``count_dot_peaks`` (the check): a blob filter matched to the known dot disc, then
  non-maximum suppression. No per-pixel threshold, no components: a dot is a local maximum of
  the mean ink (colour distance from the background) over a disc minus the mean over the ring
  around it. Touching dots whose centres both stand out count as two here and as one above;
  a blurred or faint dot whose pixels all lie below the threshold above is still a peak here.
- ``agreement`` compares the two counts of the same images.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import Tensor

from negaug.data.dots import disc_offsets


def background_colour(images: Tensor) -> Tensor:
    """Per-image background estimate: the per-channel median over pixels -> (N, C, 1, 1).

    Dots cover a minority of the pixels, so the median is the background, also for generated
    images whose background drifts from the training set's exact colour.
    """
    return images.flatten(2).median(dim=2).values[:, :, None, None]


def colour_distance(images: Tensor, background: Tensor | None = None) -> Tensor:
    """Euclidean colour distance (in [-1, 1] units) of every pixel from the background: images
    (N, C, H, W) -> (N, H, W) >= 0. ``background``: (C,) or (N, C, 1, 1); None estimates it per
    image (``background_colour``)."""
    if background is None:
        background = background_colour(images)
    background = torch.as_tensor(background, dtype=images.dtype, device=images.device)
    if background.dim() == 1:
        background = background[None, :, None, None]
    return (images - background).square().sum(dim=1).sqrt()


def dot_mask(images: Tensor, background: Tensor | None = None, threshold: float = 1.0) -> Tensor:
    """Pixels whose colour is more than ``threshold`` (Euclidean, in [-1, 1] units) from the
    background: images (N, C, H, W) in [-1, 1] -> (N, H, W) bool. ``background``: (C,) or
    (N, C, 1, 1); None estimates it per image. The default 1 is halfway to the nearest dot
    colour of the dots set (saturated hues on black are at distance >= 2), so blurry edges of
    generated dots do not bridge the 2 px gaps."""
    return colour_distance(images, background) > threshold


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


def count_dot_peaks(images: Tensor, radius: float, background: Tensor | None = None, threshold: float = 0.5) -> Tensor:
    """Dots per image (N, C, H, W) in [-1, 1] -> (N,) int64: peaks of a blob filter matched to the dot disc.

    A dot is a pixel whose ``blob_response`` exceeds ``threshold`` and is the largest in the
    (2 floor(radius) + 1)^2 window around it (ties go to the first pixel in raster order, as
    ``max_pool2d``'s indices do, so a flat top counts once). At a real dot's centre the response is the dot's distance from the
    background (>= 2 for the dots set's colours on black). The default 0.5, a quarter of that,
    keeps blurred or faint generated dots (whose pixels may all fall below ``dot_mask``'s
    threshold) and drops a one-pixel speck (2 / 5 = 0.4 at 16 px, where a disc has 5 pixels).
    ``background`` as in ``dot_mask``."""
    if images.dim() != 4:
        raise ValueError(f"count_dot_peaks expects images (N, C, H, W), got shape {tuple(images.shape)}")
    if not radius >= 0.5:
        raise ValueError(f"count_dot_peaks needs the dots' radius >= 0.5 px (a one-pixel disc), got {radius}")
    response = blob_response(images, radius, background)  # (N, H, W)
    window = 2 * int(np.floor(radius)) + 1
    _, argmax = F.max_pool2d(response[:, None], window, stride=1, padding=window // 2, return_indices=True)
    own = torch.arange(response[0].numel(), device=response.device).view(response.shape[1:])
    peaks = (argmax[:, 0] == own) & (response > threshold)  # (N, H, W)
    return peaks.flatten(1).sum(dim=1).long()


def blob_response(images: Tensor, radius: float, background: Tensor | None = None) -> Tensor:
    """Centre-surround filter of the ink map: (N, C, H, W) -> (N, H, W).

    Ink is each pixel's colour distance from the background (``colour_distance``, continuous: no
    threshold); the response at a pixel is the mean ink over the disc of ``radius`` centred there
    (``negaug.data.dots.disc_offsets``, the pixels the dots set draws) minus the mean ink over the
    ring radius < d <= 2 radius around it. Both means count only pixels inside the image
    (normalised convolution), so the border needs no padding value."""
    ink = colour_distance(images, background)[:, None]  # (N, 1, H, W)
    disc = _disc_mask(radius, 2 * radius)
    ring = _disc_mask(2 * radius, 2 * radius) & ~disc
    kernels = torch.stack([disc, ring]).to(device=images.device, dtype=ink.dtype)[:, None]  # (2, 1, k, k)
    pad = kernels.shape[-1] // 2
    sums = F.conv2d(ink, kernels, padding=pad)  # (N, 2, H, W)
    area = F.conv2d(torch.ones_like(ink[:1]), kernels, padding=pad)  # (1, 2, H, W): pixels inside the image
    means = sums / area
    return means[:, 0] - means[:, 1]


def _disc_mask(radius: float, extent_radius: float) -> Tensor:
    """(k, k) bool, k = 2 floor(extent_radius) + 1: the ``disc_offsets(radius)`` pixels around the centre."""
    extent = int(np.floor(extent_radius))
    mask = torch.zeros(2 * extent + 1, 2 * extent + 1, dtype=torch.bool)
    offsets = disc_offsets(radius) + extent
    mask[offsets[:, 0], offsets[:, 1]] = True
    return mask


def agreement(first: Tensor, second: Tensor) -> dict:
    """How two counters' (N,) counts of the same images agree: {"num_images", "agreement" (share
    of images with equal counts, in [0, 1]), "disagreements": {"a->b": number of images counted a
    by the first and b by the second}, sorted by (a, b)}."""
    if first.shape != second.shape or first.dim() != 1 or first.numel() == 0:
        raise ValueError("agreement needs two non-empty (N,) count tensors of one shape, got "
                         f"{tuple(first.shape)} and {tuple(second.shape)}")
    differ = first != second
    pairs, number = torch.unique(torch.stack([first[differ], second[differ]], dim=1).long(), dim=0, return_counts=True)
    return {"num_images": int(first.numel()), "agreement": int((~differ).sum()) / first.numel(),
            "disagreements": {f"{a}->{b}": int(n) for (a, b), n in zip(pairs.tolist(), number.tolist())}}


def count_histogram(counts: Tensor) -> dict[int, int]:
    """{count: number of images with that many dots}, sorted by count, zeros omitted."""
    values, frequency = torch.unique(counts.long(), return_counts=True)
    return {int(v): int(f) for v, f in zip(values.tolist(), frequency.tolist())}


def fraction_with_count(counts: Tensor, target: int) -> float:
    """Share of images with exactly ``target`` dots, in [0, 1]."""
    return float((counts == target).float().mean())
