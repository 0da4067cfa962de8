"""Digital corruptions (brightness, contrast, saturate, pixelate, JPEG, elastic).
levels: float64 (N, C, H, W) 8-bit levels; each returns the 0..255 values that the benchmark
truncates to 8 bits, computed in the benchmark's dtype and order."""
from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from negaug.anomaly.corruptions import _opencv, _ops
from negaug.anomaly.corruptions.base import register, to_255

ELASTIC = ((0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05), (0.1, 0.03, 0.03))


def rgb_to_hsv(rgb: torch.Tensor) -> torch.Tensor:
    """skimage.color.rgb2hsv, batched, in its float64 arithmetic. rgb: (N, 3, H, W) in [0, 1].
    Where channels tie for the maximum, the last one's hue formula wins (skimage assigns red,
    then green, then blue)."""
    r, g, b = rgb.unbind(1)
    value = rgb.amax(dim=1)
    delta = value - rgb.amin(dim=1)
    saturation = torch.where(delta == 0, torch.zeros_like(value), delta / value)
    hue = torch.zeros_like(value)
    hue = torch.where(r == value, (g - b) / delta, hue)
    hue = torch.where(g == value, 2.0 + (b - r) / delta, hue)
    hue = torch.where(b == value, 4.0 + (r - g) / delta, hue)
    hue = hue / 6.0
    hue = torch.where(hue < 0, hue + 1.0, hue)  # NumPy's `% 1.` of a value in (-1, 1)
    hue = torch.where(delta == 0, torch.zeros_like(hue), hue)
    return torch.stack([hue, saturation, value], dim=1)


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """skimage.color.hsv2rgb, batched, in its float64 arithmetic. hsv: (N, 3, H, W)."""
    hue, saturation, value = hsv.unbind(1)
    sector = torch.floor(hue * 6)
    f = hue * 6 - sector
    p = value * (1 - saturation)
    q = value * (1 - f * saturation)
    t = value * (1 - (1 - f) * saturation)
    sector = sector.long() % 6

    def pick(*by_sector: torch.Tensor) -> torch.Tensor:  # np.choose over the six sectors
        out = by_sector[5]
        for k in range(4, -1, -1):
            out = torch.where(sector == k, by_sector[k], out)
        return out

    return torch.stack([pick(value, q, p, p, t, value), pick(t, value, value, q, p, p),
                        pick(p, p, t, value, value, q)], dim=1)


def _through_hsv(levels: torch.Tensor, channel: int, change) -> torch.Tensor:
    """rgb2hsv, `change` one HSV channel, hsv2rgb (of RGB images)."""
    hsv = rgb_to_hsv(levels / 255)
    hsv[:, channel] = change(hsv[:, channel])
    return to_255(hsv_to_rgb(hsv))


@register("brightness")
def brightness(levels: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """HSV value + c, clipped (skimage's rgb2hsv and hsv2rgb, as the benchmark)."""
    shift = (0.05, 0.1, 0.15, 0.2, 0.3)[severity - 1]
    if levels.shape[1] == 1:  # a grey pixel is hue 0, saturation 0: the round trip returns V exactly
        return to_255((levels / 255 + shift).clamp(0, 1))
    return _through_hsv(levels, 2, lambda value: (value + shift).clamp(0, 1))


@register("contrast")
def contrast(levels: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """Pull every channel towards its own mean over the image. The mean is NumPy's over axes
    (0, 1): a sequential float64 sum over the pixels in raster order (a cumulative sum here)."""
    factor = (0.75, 0.5, 0.4, 0.3, 0.15)[severity - 1]
    x = levels / 255
    flat = x.flatten(2)
    means = (flat.cumsum(dim=2)[..., -1:] / flat.shape[2]).unsqueeze(-1)  # (N, C, 1, 1)
    return to_255((x - means) * factor + means)


@register("saturate", needs_colour=True)
def saturate(levels: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """HSV saturation S -> clip(S a + b) (skimage's rgb2hsv and hsv2rgb, as the benchmark)."""
    scale, offset = ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2))[severity - 1]
    return _through_hsv(levels, 1, lambda saturation: (saturation * scale + offset).clamp(0, 1))


@register("pixelate")
def pixelate(levels: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """PIL BOX resize down to int(size * c) and back up, in Pillow's 8-bit fixed point."""
    factor = (0.95, 0.9, 0.85, 0.75, 0.65)[severity - 1]
    h, w = levels.shape[-2:]
    small = _ops.pil_box_resize(levels, (max(1, int(h * factor)), max(1, int(w * factor))))
    return _ops.pil_box_resize(small, (h, w))


@register("jpeg_compression")
def jpeg_compression(levels: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """JPEG round trip at quality 80 .. 40 through PIL, one image at a time, as the benchmark.

    No batched JPEG codec exists. torchvision's list API (deprecated since 0.29) loops in C++ and
    was only a little faster warm and slower cold (not re-measured on an idle machine, so no
    figure is quoted), so PIL it is: it is the benchmark's own codec. Equal to the benchmark's output
    where PIL links the same libjpeg; a grey image is coded as a greyscale JPEG, not as RGB."""
    quality = (80, 65, 58, 50, 40)[severity - 1]
    images = levels.to(torch.uint8).permute(0, 2, 3, 1).numpy()  # (N, H, W, C)
    out = []
    for image in images:
        buffer = io.BytesIO()
        Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, "JPEG", quality=quality)
        out.append(np.asarray(Image.open(buffer)).reshape(image.shape))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).double()


@register("elastic_transform")
def elastic_transform(levels: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    n, _, h, w = levels.shape
    jitter = torch.rand((n, 3, 2), generator=generator, dtype=torch.float64)
    fields = torch.rand((2, n, h, w), generator=generator, dtype=torch.float64)
    return apply_elastic_transform(levels, severity, jitter, fields)


def apply_elastic_transform(levels: torch.Tensor, severity: int, jitter: torch.Tensor,
                            fields: torch.Tensor) -> torch.Tensor:
    """A random affine warp of three control points, then a smooth random displacement field.

    jitter: U[0, 1) (N, 3, 2), the draw behind the points' U(-c, c) moves; fields: U[0, 1)
    (2, N, H, W), the draws behind the x and y displacement fields' U(-1, 1). Constants in units
    of the image size as in the benchmark (IMSIZE = 32): (displacement scale, its smoothing sigma,
    affine jitter) = size * c. The image is float32 as in the benchmark; the affine warp is
    OpenCV's fixed-point warpAffine, the displacement scipy's map_coordinates (linear, 'reflect').
    """
    size = min(levels.shape[-2:])
    scale, smooth, spread = [size * c for c in ELASTIC[severity - 1]]
    x = levels.float() / 255
    moves = (-spread + (spread - -spread) * jitter).float()  # np.random.uniform(-c, c).astype(float32)
    x = _opencv.warp_affine(x, _opencv.affine_from_points(affine_points(x.shape[-2:]), moves))
    n, _, h, w = x.shape
    displacement = _ops.gaussian_filter((-1 + 2 * fields).reshape(2 * n, h, w), smooth, mode="reflect", truncate=3)
    dx, dy = (displacement * scale).float().double().reshape(2, n, h, w)
    rows = torch.arange(h, dtype=torch.float64).view(1, h, 1)
    cols = torch.arange(w, dtype=torch.float64).view(1, 1, w)
    return to_255(_ops.map_coordinates_reflect(x, rows + dy, cols + dx).float())


def affine_points(shape: tuple[int, int]) -> torch.Tensor:
    """The benchmark's three control points (x, y), float32 (3, 2): the centre +- size // 3."""
    centre = torch.tensor([float(shape[0] // 2), float(shape[1] // 2)], dtype=torch.float32)
    half = min(shape) // 3
    return torch.stack([centre + half, centre + torch.tensor([half, -half]), centre - half])
