"""Noise corruptions. levels: float64 (N, C, H, W) 8-bit levels; noise is drawn per pixel and
channel. Each corruption is a draw (from the generator) and an `apply_*` function of the draw, so
the same draw can be replayed, as the benchmark's own arithmetic in float64."""
from __future__ import annotations

import torch

from negaug.anomaly.corruptions.base import register, to_255

GAUSSIAN_STD = (0.04, 0.06, 0.08, 0.09, 0.10)
PHOTONS = (500, 250, 100, 75, 50)  # fewer photons per unit intensity: noisier
IMPULSE_AMOUNT = (0.01, 0.02, 0.03, 0.05, 0.07)
SPECKLE_STD = (0.06, 0.10, 0.12, 0.16, 0.20)


@register("gaussian_noise")
def gaussian_noise(levels: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    normal = torch.randn(levels.shape, generator=generator, dtype=torch.float64)
    return apply_gaussian_noise(levels, severity, normal)


def apply_gaussian_noise(levels: torch.Tensor, severity: int, normal: torch.Tensor) -> torch.Tensor:
    """`x + np.random.normal(scale=c)` with the standard normal draw `normal` (same shape)."""
    return to_255(levels / 255 + GAUSSIAN_STD[severity - 1] * normal)


@register("shot_noise")
def shot_noise(levels: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    counts = torch.poisson(levels / 255 * PHOTONS[severity - 1], generator=generator)
    return apply_shot_noise(levels, severity, counts)


def apply_shot_noise(levels: torch.Tensor, severity: int, counts: torch.Tensor) -> torch.Tensor:
    """`np.random.poisson(x * c) / c` with the Poisson draw `counts` of rate x * c."""
    return to_255(counts / PHOTONS[severity - 1])


@register("impulse_noise")
def impulse_noise(levels: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """Salt and pepper (skimage.util.random_noise(mode='s&p'), which the benchmark uses): each
    value is replaced with probability `amount`, by 0 or 1 equally."""
    hit = torch.rand(levels.shape, generator=generator) < IMPULSE_AMOUNT[severity - 1]
    salt = torch.rand(levels.shape, generator=generator) < 0.5
    return apply_impulse_noise(levels, severity, hit, salt)


def apply_impulse_noise(levels: torch.Tensor, severity: int, hit: torch.Tensor, salt: torch.Tensor) -> torch.Tensor:
    """hit, salt: bool masks like levels (skimage's `flipped` and `salted`)."""
    x = levels / 255
    x = torch.where(hit & salt, torch.ones_like(x), x)
    return to_255(torch.where(hit & ~salt, torch.zeros_like(x), x))


@register("speckle_noise")
def speckle_noise(levels: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    normal = torch.randn(levels.shape, generator=generator, dtype=torch.float64)
    return apply_speckle_noise(levels, severity, normal)


def apply_speckle_noise(levels: torch.Tensor, severity: int, normal: torch.Tensor) -> torch.Tensor:
    """`x + x * np.random.normal(scale=c)`: the product is x * (c * normal), in that order."""
    x = levels / 255
    return to_255(x + x * (SPECKLE_STD[severity - 1] * normal))
