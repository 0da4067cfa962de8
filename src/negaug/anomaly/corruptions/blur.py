"""Blur corruptions. x: float (N, C, H, W) in [0, 1]."""
from __future__ import annotations

import numpy as np
import torch

from negaug.anomaly.corruptions import _ops
from negaug.anomaly.corruptions.base import register


@register("gaussian_blur")
def gaussian_blur(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    sigma = (0.4, 0.6, 0.7, 0.8, 1.0)[severity - 1]
    return _ops.gaussian_filter(x, sigma)


@register("glass_blur")
def glass_blur(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """Blur, locally scramble pixels, blur again.

    The benchmark "swaps" pixel (h, w) with (h + dy, w + dx), dy, dx in {-1, 0}, sweeping from the
    bottom-right corner, but it swaps two NumPy views, which copies the source into (h, w) and
    leaves the source unchanged; and the source, up and left, is not yet visited in the sweep. So
    each pass is exactly a gather, out[h, w] = in[h + dy, w + dx] for rows and columns 2 .. H - 1
    (0-based), which is what this does for all images at once.
    """
    sigma, iterations = ((0.05, 1), (0.25, 1), (0.4, 1), (0.25, 2), (0.4, 2))[severity - 1]
    n, _, h, w = x.shape
    x = torch.floor(_ops.gaussian_filter(x, sigma) * 255) / 255  # the benchmark's np.uint8 step
    rows = torch.arange(h).view(1, h, 1)
    cols = torch.arange(w).view(1, 1, w)
    swept = (rows >= 2) & (cols >= 2)  # the benchmark's range(32 - 1, 1, -1) on rows and columns
    for _ in range(iterations):
        dy = torch.randint(-1, 1, (n, h, w), generator=generator) * swept
        dx = torch.randint(-1, 1, (n, h, w), generator=generator) * swept
        x = scramble(x, dy, dx)
    return _ops.gaussian_filter(x, sigma)


def scramble(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """out[n, :, h, w] = x[n, :, h + dy[n, h, w], w + dx[n, h, w]]; dy, dx: int (N, H, W)."""
    n, c, h, w = x.shape
    rows = torch.arange(h).view(1, h, 1)
    cols = torch.arange(w).view(1, 1, w)
    source = ((rows + dy) * w + (cols + dx)).view(n, 1, h * w).expand(n, c, h * w)
    return x.reshape(n, c, h * w).gather(2, source).view(n, c, h, w)


def disk_kernel(radius: float, alias_blur: float) -> torch.Tensor:
    """The benchmark's defocus kernel: a normalised disk, anti-aliased by a 3x3 Gaussian
    (cv2.GaussianBlur, ksize 3, sigma `alias_blur`), trimmed to its non-zero support."""
    half = 8 if radius <= 8 else int(np.ceil(radius))
    coords = torch.arange(-half, half + 1, dtype=torch.float64)
    disk = ((coords[:, None] ** 2 + coords[None, :] ** 2) <= radius**2).double()
    disk = disk / disk.sum()
    ksize = 3 if radius <= 8 else 5
    taps = torch.arange(ksize, dtype=torch.float64) - ksize // 2
    gauss = torch.exp(-taps**2 / (2 * alias_blur**2))
    gauss = gauss / gauss.sum()
    kernel = _ops.filter2d(disk[None, None], torch.outer(gauss, gauss))[0, 0]
    keep_rows = kernel.abs().sum(dim=1) > 0
    keep_cols = kernel.abs().sum(dim=0) > 0
    return kernel[keep_rows][:, keep_cols].float()


@register("defocus_blur")
def defocus_blur(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    radius, alias_blur = ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1))[severity - 1]
    return _ops.filter2d(x, disk_kernel(radius, alias_blur))


@register("motion_blur")
def motion_blur(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    radius, sigma = ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5))[severity - 1]
    angle = torch.rand(x.shape[0], generator=generator, dtype=torch.float64) * 90 - 45  # U(-45, 45)
    return _ops.motion_blur(x, radius, sigma, angle)


@register("zoom_blur")
def zoom_blur(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """The mean of the image and its centre zooms by 1, 1.01, ... (the benchmark's float
    `np.arange`, so 7, 12, 16, 21 and 26 zooms)."""
    end = (1.06, 1.11, 1.16, 1.21, 1.26)[severity - 1]
    zooms = np.arange(1, end, 0.01)
    total = x.clone()
    for zoom in zooms:
        total += _ops.clipped_zoom(x, float(zoom))
    return total / (len(zooms) + 1)
