"""Noise corruptions. x: float (N, C, H, W) in [0, 1]; noise is drawn per pixel and channel."""
from __future__ import annotations

import torch

from negaug.anomaly.corruptions.base import register


@register("gaussian_noise")
def gaussian_noise(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    std = (0.04, 0.06, 0.08, 0.09, 0.10)[severity - 1]
    return x + std * torch.randn(x.shape, generator=generator, dtype=x.dtype)


@register("shot_noise")
def shot_noise(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    photons = (500, 250, 100, 75, 50)[severity - 1]  # fewer photons per unit intensity: noisier
    return torch.poisson(x * photons, generator=generator) / photons


@register("impulse_noise")
def impulse_noise(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """Salt and pepper: each value is replaced with probability `amount`, by 0 or 1 equally
    (skimage.util.random_noise(mode='s&p'), which the benchmark uses)."""
    amount = (0.01, 0.02, 0.03, 0.05, 0.07)[severity - 1]
    hit = torch.rand(x.shape, generator=generator) < amount
    salt = (torch.rand(x.shape, generator=generator) < 0.5).to(x.dtype)
    return torch.where(hit, salt, x)


@register("speckle_noise")
def speckle_noise(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    std = (0.06, 0.10, 0.12, 0.16, 0.20)[severity - 1]
    return x + x * std * torch.randn(x.shape, generator=generator, dtype=x.dtype)
