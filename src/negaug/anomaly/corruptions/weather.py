"""Weather corruptions (snow, fog, spatter). levels: float64 (N, C, H, W) 8-bit levels; each
returns the 0..255 values that the benchmark truncates to 8 bits, computed in the benchmark's
dtype and order. Frost is not here: it blends in photographs of frost that negaug does not ship."""
from __future__ import annotations

import torch

from negaug.anomaly.corruptions import _opencv, _ops
from negaug.anomaly.corruptions.base import register, to_255

SNOW = ((0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9), (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85), (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8))
FOG = ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75))  # (strength, wibble decay)
SPATTER = ((0.62, 0.1, 0.7, 0.7, 0.5, 0), (0.65, 0.1, 0.8, 0.7, 0.5, 0), (0.65, 0.3, 1, 0.69, 0.5, 0),
           (0.65, 0.1, 0.7, 0.69, 0.6, 1), (0.65, 0.1, 0.5, 0.68, 0.6, 1))
WATER_RGB = (175, 238, 238)  # pale turquoise, the benchmark's spatter colour at severities 1-3
MUD_RGB = (63, 42, 20)  # mud brown, severities 4-5
EMBOSS = torch.tensor([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]])


@register("snow")
def snow(levels: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """Motion-blurred flakes (zoomed, thresholded Gaussian noise) over a whitened image."""
    n, _, h, w = levels.shape
    normal = torch.randn((n, 1, h, w), generator=generator, dtype=torch.float64)
    angle = torch.rand(n, generator=generator, dtype=torch.float64) * 90 - 135  # U(-135, -45)
    flakes = snow_flakes(severity, normal)
    radius, sigma = SNOW[severity - 1][4:6]
    blurred = _ops.imagemagick_levels(_ops.motion_blur(flakes, radius, sigma, angle))
    return apply_snow(levels, severity, blurred)


def snow_flakes(severity: int, normal: torch.Tensor) -> torch.Tensor:
    """The 8-bit flake layer (N, 1, H, W) that the benchmark hands to ImageMagick: float64 noise
    loc + scale * normal, zoomed, thresholded, clipped and truncated to 8-bit levels."""
    loc, scale, zoom, threshold = SNOW[severity - 1][:4]
    flakes = _ops.clipped_zoom(loc + scale * normal, zoom)
    flakes = torch.where(flakes < threshold, torch.zeros_like(flakes), flakes)
    return torch.floor(flakes.clamp(0, 1) * 255)


def apply_snow(levels: torch.Tensor, severity: int, blurred: torch.Tensor) -> torch.Tensor:
    """The benchmark's snow after the motion blur, exact given ImageMagick's 8-bit result
    `blurred` (N, 1, H, W): the float32 image whitened towards 1.5 grey + 0.5, plus the flakes
    and their 180-degree turn in float64. The motion blur itself is `_ops.motion_blur` (see
    `blur.motion_blur`)."""
    blend = SNOW[severity - 1][6]
    x = levels.float() / 255
    whitened = torch.maximum(x, _opencv.rgb_to_grey(x) * 1.5 + 0.5)
    x = blend * x + (1 - blend) * whitened  # float32, as NumPy does with Python floats
    flakes = blurred / 255
    return to_255(x.double() + flakes + flakes.flip(-2, -1))


@register("fog")
def fog(levels: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    n, _, h, w = levels.shape
    size = 1 << max(5, (max(h, w) - 1).bit_length())  # 32 for CIFAR, as the benchmark
    uniforms = [torch.rand(shape, generator=generator, dtype=torch.float64) for shape in _ops.plasma_shapes(n, size)]
    return apply_fog(levels, severity, uniforms)


def apply_fog(levels: torch.Tensor, severity: int, uniforms: list[torch.Tensor]) -> torch.Tensor:
    """A diamond-square plasma added, then the image rescaled to keep its maximum, in float64.
    uniforms: the plasma's U[0, 1) draws (see `_ops.plasma_fractal`)."""
    strength, decay = FOG[severity - 1]
    h, w = levels.shape[-2:]
    x = levels / 255
    max_value = x.amax(dim=(1, 2, 3), keepdim=True)
    plasma = _ops.plasma_fractal(uniforms, uniforms[-1].shape[-1] * 2, decay)[:, None, :h, :w]
    return to_255((x + strength * plasma) * max_value / (max_value + strength))


@register("spatter")
def spatter(levels: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    n, _, h, w = levels.shape
    return apply_spatter(levels, severity, torch.randn((n, h, w), generator=generator, dtype=torch.float64))


def apply_spatter(levels: torch.Tensor, severity: int, normal: torch.Tensor) -> torch.Tensor:
    """Water drops with embossed rims (severities 1-3) or mud blots (4-5), in the benchmark's
    float32 (image) and float64 (liquid layer); normal: the standard normal draw (N, H, W).

    A grey image (C = 1) gets the colour's grey level (cvtColor RGB2GRAY): the benchmark has
    colour images only, so here negaug's output is its own.
    """
    loc, scale, sigma, threshold, intensity, mud = SPATTER[severity - 1]
    x = levels.float() / 255
    liquid = _ops.gaussian_filter(loc + scale * normal, sigma)
    liquid = torch.where(liquid < threshold, torch.zeros_like(liquid), liquid)
    if mud:
        blots = _ops.gaussian_filter((liquid > threshold).float(), intensity)
        blots = torch.where(blots < 0.8, torch.zeros_like(blots), blots)[:, None]
        colour = spatter_colour(MUD_RGB, x.shape[1]) * blots
        return to_255(x * (1 - blots) + colour)
    drops = water_drops(liquid) * intensity
    return to_255(x + drops[:, None] * spatter_colour(WATER_RGB, x.shape[1]))


def spatter_colour(rgb: tuple[int, int, int], num_channels: int) -> torch.Tensor:
    """(1, C, 1, 1) float32 `level / 255.` per channel; for C = 1 its float32 grey level."""
    colour = torch.tensor([v / 255 for v in rgb], dtype=torch.float64).float().view(1, 3, 1, 1)
    return colour if num_channels == 3 else _opencv.rgb_to_grey(colour)


def liquid_levels(liquid: torch.Tensor) -> torch.Tensor:
    """`(liquid * 255).astype(np.uint8)` of the benchmark for liquid >= 0: truncation, and a wrap
    modulo 256 above 255 (what NumPy's out-of-range float-to-uint8 cast does on x86): 1.2 becomes
    level 306 - 256 = 50, not 255. int64 levels."""
    return torch.floor(liquid * 255).long() % 256


def water_drops(liquid: torch.Tensor) -> torch.Tensor:
    """(N, H, W) float32: the liquid layer shaded by an embossed distance-to-rim map, normalised
    per image by its maximum. The benchmark's OpenCV chain, batched and bit-exact:

    the 8-bit layer `(liquid * 255).astype(np.uint8)`, which WRAPS modulo 256 where the layer
    exceeds 1 (see `liquid_levels`: a quirk of the benchmark, reproduced), Canny edges, the
    mask-5 chamfer distance to the nearest edge, truncated at 20, 3x3 float box blur, truncation
    to uint8, histogram equalisation, an emboss filter saturated to uint8, an 8-bit 3x3 box blur;
    times the layer.
    """
    layer = liquid_levels(liquid)
    edges = _opencv.canny(layer, 50, 150)
    dist = _opencv.chamfer_distance(edges).clamp(max=20.0)  # threshold(THRESH_TRUNC, 20)
    dist = torch.floor(_opencv.blur3_float(dist)).long()
    dist = _opencv.equalize_hist(dist)
    dist = _opencv.filter2d_uint8(dist, EMBOSS)
    dist = _opencv.blur3_uint8(dist).float()
    shade = layer.float() * dist
    peak = shade.amax(dim=(1, 2), keepdim=True)
    # a dry image (no drop) would divide 0 by 0 in the benchmark, NaN then undefined 8-bit output;
    # here it gets no drops
    return torch.where(peak > 0, shade / peak.clamp_min(1e-12), torch.zeros_like(shade))
