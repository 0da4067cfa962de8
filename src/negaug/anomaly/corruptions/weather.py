"""Weather corruptions (snow, fog, spatter). x: float (N, C, H, W) in [0, 1]. Frost is not here:
it blends in photographs of frost that negaug does not ship."""
from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from negaug.anomaly.corruptions import _ops
from negaug.anomaly.corruptions.base import register

WATER_RGB = (175, 238, 238)  # pale turquoise, the benchmark's spatter colour at severities 1-3
MUD_RGB = (63, 42, 20)  # mud brown, severities 4-5


@register("snow")
def snow(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """Motion-blurred flakes (zoomed, thresholded Gaussian noise) over a whitened image."""
    loc, scale, zoom, threshold, radius, sigma, blend = (
        (0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
        (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9), (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
        (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
    )[severity - 1]
    n, _, h, w = x.shape
    flakes = loc + scale * torch.randn((n, 1, h, w), generator=generator, dtype=x.dtype)
    flakes = _ops.clipped_zoom(flakes, zoom)
    flakes = torch.where(flakes < threshold, torch.zeros_like(flakes), flakes).clamp(0, 1)
    angle = torch.rand(n, generator=generator, dtype=torch.float64) * 90 - 135  # U(-135, -45)
    flakes = _ops.motion_blur(flakes, radius, sigma, angle)
    whitened = torch.maximum(x, _ops.luminance(x) * 1.5 + 0.5)
    x = blend * x + (1 - blend) * whitened
    return x + flakes + flakes.flip(-2, -1)  # the benchmark adds the layer and its 180-degree turn


@register("fog")
def fog(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """A diamond-square plasma added, then the image rescaled to keep its maximum."""
    strength, decay = ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75))[severity - 1]
    n, _, h, w = x.shape
    size = 1 << max(5, (max(h, w) - 1).bit_length())  # 32 for CIFAR, as the benchmark
    plasma = _ops.plasma_fractal(n, size, decay, generator)[:, None, :h, :w].to(x.dtype)
    max_value = x.amax(dim=(1, 2, 3), keepdim=True)
    return (x + strength * plasma) * max_value / (max_value + strength)


@register("spatter")
def spatter(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """Water drops with embossed rims (severities 1-3) or mud blots (4-5)."""
    loc, scale, sigma, threshold, intensity, mud = (
        (0.62, 0.1, 0.7, 0.7, 0.5, 0), (0.65, 0.1, 0.8, 0.7, 0.5, 0),
        (0.65, 0.3, 1, 0.69, 0.5, 0), (0.65, 0.1, 0.7, 0.69, 0.6, 1),
        (0.65, 0.1, 0.5, 0.68, 0.6, 1),
    )[severity - 1]
    n, c, h, w = x.shape
    liquid = loc + scale * torch.randn((n, h, w), generator=generator, dtype=torch.float32)
    liquid = _ops.gaussian_filter(liquid, sigma)
    liquid = torch.where(liquid < threshold, torch.zeros_like(liquid), liquid)
    if mud:
        blots = _ops.gaussian_filter((liquid > threshold).float(), intensity)
        blots = torch.where(blots < 0.8, torch.zeros_like(blots), blots)[:, None]
        return x * (1 - blots) + _ops.colour(MUD_RGB, c, x.dtype) * blots
    drops = water_drops(liquid) * intensity
    return x + drops[:, None] * _ops.colour(WATER_RGB, c, x.dtype)


def water_drops(liquid: torch.Tensor) -> torch.Tensor:
    """(N, H, W) in [0, 1]: the liquid layer shaded by an embossed distance-to-rim map.

    The benchmark's OpenCV chain, batched: Canny edges of the 8-bit layer, distance to the nearest
    edge capped at 20, 3x3 box blur, histogram equalisation, an emboss filter, 3x3 box blur; the
    product with the layer is normalised per image by its maximum.
    """
    layer = torch.floor(liquid.clamp(0, 1) * 255)  # the benchmark's uint8 layer
    edges = canny(layer, low=50, high=150)
    dist = torch.from_numpy(_ops.edge_distance(edges.numpy(), cap=20.0))
    dist = torch.floor(box_blur3(dist))
    dist = equalize_histogram(dist.to(torch.uint8)).float()
    emboss = torch.tensor([[-2.0, -1, 0], [-1, 1, 1], [0, 1, 2]])
    dist = torch.round(_ops.filter2d(dist, emboss)).clamp(0, 255)  # to CV_8U: rounded, saturated
    shade = layer * box_blur3(dist)
    peak = shade.amax(dim=(1, 2), keepdim=True).clamp_min(1e-12)  # a dry image has no drops
    return shade / peak


def box_blur3(x: torch.Tensor) -> torch.Tensor:
    """cv2.blur(x, (3, 3)): 3x3 mean, border REFLECT_101. x: (N, H, W)."""
    return _ops.filter2d(x, torch.full((3, 3), 1 / 9))


def equalize_histogram(x: torch.Tensor) -> torch.Tensor:
    """cv2.equalizeHist per image, batched. x: uint8 (N, H, W) -> uint8 (N, H, W)."""
    n = x.shape[0]
    flat = x.reshape(n, -1).long()
    counts = torch.zeros(n, 256, dtype=torch.long).scatter_add_(1, flat, torch.ones_like(flat))
    cdf = counts.cumsum(dim=1)
    first = (counts > 0).long().argmax(dim=1, keepdim=True)  # the lowest level present
    cdf_first = counts.gather(1, first)
    total = flat.shape[1]
    scale = 255.0 / (total - cdf_first).clamp_min(1).double()
    lut = torch.round((cdf - cdf_first).double() * scale).clamp(0, 255)
    lut = torch.where(cdf_first == total, torch.arange(256).double().expand(n, 256), lut)  # one level
    return lut.gather(1, flat).reshape(x.shape).to(torch.uint8)


def canny(x: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Canny edges as cv2.Canny(x, low, high) (3x3 Sobel, L1 magnitude), batched. x: (N, H, W)
    in 0..255; returns bool (N, H, W)."""
    padded = torch.nn.functional.pad(x[:, None], (1, 1, 1, 1), mode="replicate")
    sobel = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]])
    gx = torch.nn.functional.conv2d(padded, sobel.view(1, 1, 3, 3))[:, 0]
    gy = torch.nn.functional.conv2d(padded, sobel.t().reshape(1, 1, 3, 3))[:, 0]
    magnitude = gx.abs() + gy.abs()
    keep = non_maximum(magnitude, gx, gy)
    weak = keep & (magnitude > low)
    strong = keep & (magnitude > high)
    # hysteresis: keep the 8-connected weak components that touch a strong pixel, per image
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = True  # connect within an image, never across the batch axis
    labels, _ = ndimage.label(weak.numpy(), structure=structure)
    labels = torch.from_numpy(labels)
    strong_labels = torch.unique(labels[strong])
    return weak & torch.isin(labels, strong_labels[strong_labels > 0])


def non_maximum(magnitude: torch.Tensor, gx: torch.Tensor, gy: torch.Tensor) -> torch.Tensor:
    """Canny's non-maximum suppression along the gradient direction, quantised to 0, 45, 90 or
    135 degrees; like OpenCV: along rows and columns strictly greater than the neighbour before
    and not less than the one after, along diagonals strictly greater than both."""
    padded = torch.nn.functional.pad(magnitude[:, None], (1, 1, 1, 1))[:, 0]
    h, w = magnitude.shape[-2:]

    def at(dy: int, dx: int) -> torch.Tensor:
        return padded[:, 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]

    tan22, tan67 = 0.4142135623730951, 2.414213562373095
    ax, ay = gx.abs(), gy.abs()
    horizontal = ay < tan22 * ax
    vertical = ay > tan67 * ax
    same_sign = (gx * gy) > 0
    diagonal = ~horizontal & ~vertical
    keep = horizontal & (magnitude > at(0, -1)) & (magnitude >= at(0, 1))
    keep |= vertical & (magnitude > at(-1, 0)) & (magnitude >= at(1, 0))
    keep |= diagonal & same_sign & (magnitude > at(-1, -1)) & (magnitude > at(1, 1))
    keep |= diagonal & ~same_sign & (magnitude > at(-1, 1)) & (magnitude > at(1, -1))
    return keep
