"""Blur corruptions. levels: float64 (N, C, H, W) 8-bit levels; each returns the 0..255 values
that the benchmark truncates to 8 bits, computed in the benchmark's dtype and order."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from negaug.anomaly.corruptions import _ops
from negaug.anomaly.corruptions.base import register, to_255

GLASS = ((0.05, 1), (0.25, 1), (0.4, 1), (0.25, 2), (0.4, 2))  # (sigma, iterations)
DEFOCUS = ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1))  # (radius, alias_blur)
MOTION = ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5))  # (radius, sigma)


@register("gaussian_blur")
def gaussian_blur(levels: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    sigma = (0.4, 0.6, 0.7, 0.8, 1.0)[severity - 1]
    return to_255(_ops.gaussian_filter(levels / 255, sigma))


@register("glass_blur")
def glass_blur(levels: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    n, _, h, w = levels.shape
    shifts = torch.randint(-1, 1, (GLASS[severity - 1][1], 2, n, h, w), generator=generator)
    return apply_glass_blur(levels, severity, shifts)


def apply_glass_blur(levels: torch.Tensor, severity: int, shifts: torch.Tensor) -> torch.Tensor:
    """Blur, locally scramble pixels, blur again, in float64 as the benchmark.

    shifts: int (iterations, 2, N, H, W) in {-1, 0}: (dy, dx) per pixel and pass (the benchmark's
    `dx, dy = np.random.randint(-1, 1, size=(2,))` at pixel (h, w)). The benchmark "swaps" pixel
    (h, w) with (h + dy, w + dx), sweeping from the bottom-right corner, but it swaps two NumPy
    views, which copies the source into (h, w) and leaves the source unchanged; and the source, up
    and left, is not yet visited in the sweep. So each pass is exactly a gather,
    out[h, w] = in[h + dy, w + dx] for rows and columns 2 .. H - 1 (0-based).
    """
    sigma = GLASS[severity - 1][0]
    h, w = levels.shape[-2:]
    x = torch.floor(_ops.gaussian_filter(levels / 255, sigma) * 255)  # the benchmark's np.uint8 step
    rows = torch.arange(h).view(1, h, 1)
    cols = torch.arange(w).view(1, 1, w)
    swept = (rows >= 2) & (cols >= 2)  # the benchmark's range(32 - 1, 1, -1) on rows and columns
    for dy, dx in shifts:
        x = scramble(x, dy * swept, dx * swept)
    return to_255(_ops.gaussian_filter(x / 255, sigma))


def scramble(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """out[n, :, h, w] = x[n, :, h + dy[n, h, w], w + dx[n, h, w]]; dy, dx: int (N, H, W)."""
    n, c, h, w = x.shape
    rows = torch.arange(h).view(1, h, 1)
    cols = torch.arange(w).view(1, 1, w)
    source = ((rows + dy) * w + (cols + dx)).view(n, 1, h * w).expand(n, c, h * w)
    return x.reshape(n, c, h * w).gather(2, source).view(n, c, h, w)


def disk_kernel(radius: float, alias_blur: float) -> torch.Tensor:
    """The benchmark's float32 defocus kernel, trimmed to its non-zero support: a normalised
    disk, anti-aliased by `cv2.GaussianBlur(ksize 3 (5 past radius 8), sigma alias_blur)`.

    OpenCV's float32 Gaussian taps (exp in double, cast, normalised by their double sum, cast) and
    its separable rows-then-columns pass in float32 (border REFLECT_101), in that order.
    """
    half = 8 if radius <= 8 else int(np.ceil(radius))
    coords = torch.arange(-half, half + 1, dtype=torch.float64)
    disk = ((coords[:, None] ** 2 + coords[None, :] ** 2) <= radius**2).float()
    disk = disk / disk.sum()
    ksize = 3 if radius <= 8 else 5
    taps = [float(np.float32(math.exp(-0.5 / alias_blur**2 * (i - (ksize - 1) * 0.5) ** 2))) for i in range(ksize)]
    total = 0.0
    for tap in taps:
        total += tap
    gauss = torch.tensor([tap * (1.0 / total) for tap in taps], dtype=torch.float64).float()
    pad = ksize // 2
    padded = F.pad(disk[None, None], (pad, pad, pad, pad), mode="reflect")[0, 0]
    size = disk.shape[0]
    rows = sum(padded[:, i:i + size] * gauss[i] for i in range(ksize))  # float32, tap by tap
    kernel = sum(rows[i:i + size] * gauss[i] for i in range(ksize))
    keep_rows = kernel.abs().sum(dim=1) > 0
    keep_cols = kernel.abs().sum(dim=0) > 0
    return kernel[keep_rows][:, keep_cols]


@register("defocus_blur")
def defocus_blur(levels: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """`cv2.filter2D` of the float64 image with the float32 kernel, border REFLECT_101. (OpenCV
    filters a 17x17 kernel in float64 through a DFT; we correlate directly: the two differ by
    ~1e-16, which moves no 8-bit level on any image we tested.)"""
    return to_255(_ops.filter2d(levels / 255, disk_kernel(*DEFOCUS[severity - 1])))


@register("motion_blur")
def motion_blur(levels: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """ImageMagick's motion blur (the benchmark calls it through Wand): `_ops.motion_blur`, then
    ImageMagick's 16-bit quanta truncated to 8 bits. Equal to Wand + ImageMagick 6.9.11 (Q16)
    (tests/test_corruptions_reference.py, where Wand is installed)."""
    radius, sigma = MOTION[severity - 1]
    angle = torch.rand(levels.shape[0], generator=generator, dtype=torch.float64) * 90 - 45  # U(-45, 45)
    return _ops.imagemagick_levels(_ops.motion_blur(levels, radius, sigma, angle))


@register("zoom_blur")
def zoom_blur(levels: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """The mean of the image and its centre zooms by 1, 1.01, ... (the benchmark's float
    `np.arange`, which gives 7, 12, 16, 21 and 26 zooms), summed in float32 as the benchmark."""
    end = (1.06, 1.11, 1.16, 1.21, 1.26)[severity - 1]
    zooms = np.arange(1, end, 0.01)
    x = (levels / 255).float()
    exact = x.double()  # the float32 image's values, zoomed in float64 as scipy does
    total = torch.zeros_like(x)
    for zoom in zooms:
        total += _ops.clipped_zoom(exact, float(zoom), torch.float32)
    return to_255((x + total) / (len(zooms) + 1))
