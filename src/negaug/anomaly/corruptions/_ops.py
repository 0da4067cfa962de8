"""Batched image operations shared by the corruptions. Every image tensor here is float
(N, C, H, W) (or (N, H, W) for single-channel layers) with values in [0, 1], on the CPU.

The CIFAR-10-C reference (make_cifar_c.py of Hendrycks & Dietterich's robustness benchmark) builds
its corruptions from skimage, scipy, OpenCV and ImageMagick calls on one image at a time; these are
batched equivalents of the pieces it uses, each documented with the call it stands for.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, as OpenCV's RGB2GRAY


def gaussian_filter(x: torch.Tensor, sigma: float, mode: str = "nearest", truncate: float = 4.0) -> torch.Tensor:
    """`skimage.filters.gaussian(x, sigma)` over the last two axes only (defaults as skimage's)."""
    if sigma <= 0:
        return x.clone()
    sigmas = (0.0,) * (x.dim() - 2) + (sigma, sigma)
    out = ndimage.gaussian_filter(x.numpy(), sigma=sigmas, mode=mode, truncate=truncate)
    return torch.from_numpy(out)


def luminance(x: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) grey level of (N, C, H, W) images; a single channel is its own grey level."""
    if x.shape[1] == 1:
        return x
    weights = torch.tensor(LUMA, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * weights).sum(dim=1, keepdim=True)


def colour(rgb255: tuple[int, int, int], num_channels: int, dtype: torch.dtype) -> torch.Tensor:
    """A (1, C, 1, 1) colour in [0, 1]; grey images get the colour's luminance."""
    rgb = torch.tensor(rgb255, dtype=dtype) / 255
    if num_channels == 1:
        rgb = (rgb * torch.tensor(LUMA, dtype=dtype)).sum().reshape(1)
    return rgb.view(1, num_channels, 1, 1)


def filter2d(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """`cv2.filter2D(x, -1, kernel)` on every channel: correlation over the last two axes with
    border REFLECT_101 (scipy's "mirror"). x: (..., H, W); kernel: (kh, kw)."""
    weights = kernel.to(torch.float64).numpy().reshape((1,) * (x.dim() - 2) + tuple(kernel.shape))
    out = ndimage.correlate(x.numpy(), weights.astype(x.numpy().dtype), mode="mirror")
    return torch.from_numpy(out)


def clipped_zoom(x: torch.Tensor, zoom: float) -> torch.Tensor:
    """Zoom into the centre by `zoom` >= 1 and crop back to (H, W).

    Stands for the reference's `scipy.ndimage.zoom(centre_crop, zoom, order=1)`: scipy maps output
    pixel o to input o * (in - 1) / (out - 1), which is bilinear interpolation with
    align_corners=True, and its output size is round(in * zoom).
    """
    h, w = x.shape[-2:]
    crop_h, crop_w = math.ceil(h / zoom), math.ceil(w / zoom)
    top, left = (h - crop_h) // 2, (w - crop_w) // 2
    crop = x[..., top:top + crop_h, left:left + crop_w]
    size = (round(crop_h * zoom), round(crop_w * zoom))
    flat = crop.reshape(-1, 1, crop_h, crop_w)
    zoomed = F.interpolate(flat, size=size, mode="bilinear", align_corners=True)
    trim_h, trim_w = (size[0] - h) // 2, (size[1] - w) // 2
    return zoomed[..., trim_h:trim_h + h, trim_w:trim_w + w].reshape(x.shape)


def motion_blur(x: torch.Tensor, radius: float, sigma: float, angle_deg: torch.Tensor) -> torch.Tensor:
    """ImageMagick's MotionBlurImage (the reference calls it through Wand), batched.

    A one-sided line kernel: taps i = 0 .. 2 * ceil(radius) with weights exp(-i^2 / (2 sigma^2))
    (normalised), tap i reading the pixel at offset (ceil(i cos a - 0.5), ceil(i sin a - 0.5))
    (x right, y down) with edge pixels repeated outside the image. x: (N, C, H, W);
    angle_deg: (N,) one angle per image.
    """
    n, h, w = x.shape[0], x.shape[-2], x.shape[-1]
    width = int(2 * math.ceil(radius) + 1)
    taps = torch.arange(width, dtype=torch.float64)
    weights = torch.exp(-taps**2 / (2 * sigma**2))
    weights = (weights / weights.sum()).to(x.dtype)
    angle = torch.deg2rad(angle_deg.to(torch.float64))[:, None]  # (N, 1)
    dx = torch.ceil(taps * torch.cos(angle) - 0.5).long()  # (N, width)
    dy = torch.ceil(taps * torch.sin(angle) - 0.5).long()
    rows, cols = torch.arange(h).view(1, h, 1), torch.arange(w).view(1, 1, w)
    flat = x.reshape(n, -1, h * w)
    out = torch.zeros_like(flat)
    for i in range(width):  # at most 37 taps; each one is one batched gather
        src_rows = (rows + dy[:, i, None, None]).clamp(0, h - 1)  # (N, H, 1)
        src_cols = (cols + dx[:, i, None, None]).clamp(0, w - 1)  # (N, 1, W)
        source = (src_rows * w + src_cols).view(n, 1, h * w).expand_as(flat)
        out += weights[i] * flat.gather(2, source)
    return out.view(x.shape)


def plasma_fractal(n: int, size: int, decay: float, generator: torch.Generator) -> torch.Tensor:
    """(n, size, size) diamond-square height maps in [0, 1] (each map min-max normalised).

    The reference's `plasma_fractal`, batched: `size` is a power of two; at each level the
    random offsets are uniform in [-wibble, wibble] scaled by wibble again (the reference's
    wibble^2 quirk, kept because it sets the fog's texture), and wibble shrinks by `decay`.
    """
    assert size & (size - 1) == 0, "plasma map size must be a power of two"
    maps = torch.zeros(n, size, size, dtype=torch.float64)
    step, wibble = size, 100.0

    def wibbled_mean(total: torch.Tensor) -> torch.Tensor:
        noise = torch.rand(total.shape, generator=generator, dtype=torch.float64) * 2 - 1
        return total / 4 + wibble * wibble * noise

    while step >= 2:
        half = step // 2
        corners = maps[:, 0::step, 0::step]
        square = corners + corners.roll(-1, dims=1)
        square = square + square.roll(-1, dims=2)
        maps[:, half::step, half::step] = wibbled_mean(square)
        centres = maps[:, half::step, half::step]
        corners = maps[:, 0::step, 0::step]
        left_right = centres + centres.roll(1, dims=1) + corners + corners.roll(-1, dims=2)
        maps[:, 0::step, half::step] = wibbled_mean(left_right)
        up_down = centres + centres.roll(1, dims=2) + corners + corners.roll(-1, dims=1)
        maps[:, half::step, 0::step] = wibbled_mean(up_down)
        step, wibble = half, wibble / decay
    flat = maps.reshape(n, -1)
    flat = flat - flat.min(dim=1, keepdim=True).values
    flat = flat / flat.max(dim=1, keepdim=True).values
    return flat.reshape(n, size, size).float()


def box_resize_matrix(in_size: int, out_size: int) -> torch.Tensor:
    """(out_size, in_size) weights of PIL's `Image.resize(..., Image.BOX)` along one axis.

    PIL's box filter gives weight 1 to every input pixel whose centre lies in the output pixel's
    footprint (half-open on the left) and normalises: an average when shrinking, nearest
    neighbour when enlarging.
    """
    scale = in_size / out_size
    support = 0.5 * max(scale, 1.0)
    centres = (torch.arange(out_size, dtype=torch.float64) + 0.5) * scale  # (out,)
    lo = torch.floor(centres - support + 0.5).clamp(min=0)
    hi = torch.floor(centres + support + 0.5).clamp(max=in_size)
    pixels = torch.arange(in_size, dtype=torch.float64)[None]  # (1, in)
    inside = (pixels >= lo[:, None]) & (pixels < hi[:, None])
    offset = (pixels - centres[:, None] + 0.5) / max(scale, 1.0)
    weights = (inside & (offset > -0.5) & (offset <= 0.5)).double()
    return (weights / weights.sum(dim=1, keepdim=True)).float()


def edge_distance(edges: np.ndarray, cap: float) -> np.ndarray:
    """Euclidean distance of each pixel to the nearest edge pixel of its own image, capped.

    edges: bool (N, H, W). One `distance_transform_edt` call for the whole batch: the batch axis
    gets a spacing far larger than `cap`, so a nearest edge in another image is never nearer than
    the cap. Images with no edge at all are at distance `cap` everywhere (the reference's
    cv2.distanceTransform then THRESH_TRUNC at 20 gives the same).
    """
    n, h, w = edges.shape
    if not edges.any():
        return np.full(edges.shape, cap, dtype=np.float32)
    far = 4.0 * (cap + h + w)
    dist = ndimage.distance_transform_edt(~edges, sampling=(far, 1.0, 1.0))
    dist = np.minimum(dist, cap)
    dist[~edges.any(axis=(1, 2))] = cap
    return dist.astype(np.float32)
