"""CIFAR-10-C style corruptions (Hendrycks & Dietterich, 2019), computed procedurally on batches.

    x_ood = negaug.anomaly.corruptions.corrupt(x, "gaussian_noise", severity=5, generator=g)

Images are float (N, C, H, W) in [-1, 1] (the library convention) at the API; every corruption
works internally on [0, 1] with the per-severity constants that the benchmark's make_cifar_c.py
publishes for 32 px images, and the result is rounded to 8-bit levels as the stored CIFAR-10-C
images are. All randomness comes from the `torch.Generator` passed in.

18 of the benchmark's 19 corruptions are here; "frost" blends in photographs of frost that we do
not ship, so it is left out (see `SKIPPED`). Grey images (C = 1) work with every corruption except
"saturate", which has no meaning without colour (`supports(name, 1)` is False).
"""
from __future__ import annotations

import torch

from negaug.anomaly.corruptions import blur, digital, noise, weather  # noqa: F401  (register the corruptions)
from negaug.anomaly.corruptions.base import CORRUPTIONS, SEVERITIES, SKIPPED, Corruption, register  # noqa: F401


def names() -> list[str]:
    return CORRUPTIONS.names()


def supports(name: str, num_channels: int) -> bool:
    """Whether corruption `name` applies to images with `num_channels` channels."""
    return num_channels == 3 or not CORRUPTIONS.build(name).needs_colour


def check_severity(severity: int) -> int:
    if isinstance(severity, bool) or int(severity) != severity or severity not in SEVERITIES:
        raise ValueError(f"severity must be an integer from 1 to 5, got {severity!r}")
    return int(severity)


def corrupt(images: torch.Tensor, name: str, severity: int = 5,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """Corrupted copies of `images` (N, C, H, W) in [-1, 1]; same shape, dtype and device.

    generator: a CPU `torch.Generator` (a fresh one seeded 0 when None, so results are
    reproducible); C must be 1 or 3.
    """
    if name in SKIPPED:
        raise ValueError(f"corruption '{name}' is not available: {SKIPPED[name]}")
    entry = CORRUPTIONS.build(name)
    severity = check_severity(severity)
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"corruptions take (N, C, H, W) images with C = 1 or 3, got {tuple(images.shape)}")
    if not supports(name, images.shape[1]):
        raise ValueError(f"corruption '{name}' needs colour images (C = 3), got C = {images.shape[1]}")
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    x = ((images.detach().float().cpu() + 1) / 2).clamp(0, 1)
    out = entry.fn(x, severity, generator).clamp(0, 1)
    out = torch.round(out * 255) / 255  # 8-bit levels, as the stored benchmark images
    assert out.shape == images.shape, f"{name} changed the shape"
    return (out * 2 - 1).to(device=images.device, dtype=images.dtype)
