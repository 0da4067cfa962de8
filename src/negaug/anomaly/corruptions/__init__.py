"""CIFAR-10-C style corruptions (Hendrycks & Dietterich, 2019), computed procedurally on batches.

    x_ood = negaug.anomaly.corruptions.corrupt(x, "gaussian_noise", severity=5, generator=g)

Images are float (N, C, H, W) in [-1, 1] (the library convention) at the API. Each corruption
follows the benchmark's make_cifar_c.py (hendrycks/robustness) step by step: the input is taken as
its 8-bit levels (x = level / 127.5 - 1, rounded to the nearest level), divided by 255 in the dtype
the benchmark uses (float64 mostly, float32 where it says so), processed with the benchmark's
per-severity constants for 32 px images and its arithmetic order, clipped to [0, 1], scaled by 255
and TRUNCATED to 8-bit levels, as the benchmark's `np.uint8(...)` does (not rounded). Where the
benchmark's own arithmetic has quirks, they are reproduced and commented (e.g. spatter's uint8 cast
that wraps modulo 256). The scipy, skimage, PIL, OpenCV and ImageMagick calls it makes are
transcribed in torch (`_ops`, `_opencv`); negaug needs neither OpenCV nor ImageMagick. All
randomness comes from the `torch.Generator` passed in; each random corruption draws its noise, then
applies it with an `apply_*` function that can be given the same draw as the benchmark.

Equality with the benchmark, for 8-bit inputs and the same random draw: the tests
(tests/test_corruptions_reference.py) compare with a numpy transcription of the benchmark, and with
OpenCV and ImageMagick themselves where `cv2` and Wand are installed (checked with OpenCV 3.4.18,
of the benchmark's era, 4.14 and 5.0, Intel IPP builds as pip installs them, and ImageMagick 6.9.11
Q16):
- equal bit for bit at every severity: all 18 corruptions. jpeg_compression where PIL links the
  same libjpeg as the benchmark's. elastic_transform follows OpenCV 3.4/4.x's fixed-point
  warpAffine; OpenCV 5.0 replaced it (its output differs from 3.4/4.x by up to 6 levels).
  motion_blur and snow follow ImageMagick 6.9 Q16's 8-bit result (other versions may differ).
- OpenCV-dependent pieces follow IPP builds (distance transform and RGB2GRAY in float32, with FMA).
  An OpenCV built without IPP sums distances in fixed point and RGB2GRAY in another order: spatter
  still matched it on 300 images x 5 severities; snow was not compared with it.
Grey images (C = 1) give the benchmark's result on the RGB copy of the image, except spatter, which
paints with the grey level of its colour. Inputs that are not on 8-bit levels are first rounded to
the nearest level.

18 of the benchmark's 19 corruptions are here; "frost" blends in photographs of frost that we do
not ship, so it is left out (see `SKIPPED`). Grey images (C = 1) work with every corruption except
"saturate", which has no meaning without colour (`supports(name, 1)` is False).
"""
from __future__ import annotations

import torch

from negaug.anomaly.corruptions import blur, digital, noise, weather  # noqa: F401  (register the corruptions)
from negaug.anomaly.corruptions.base import (  # noqa: F401
    CORRUPTIONS,
    SEVERITIES,
    SKIPPED,
    Corruption,
    register,
)


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
    # the uint8 input: (x + 1) * 127.5 is within 1e-5 of a level even in float32
    levels = torch.round((images.detach().cpu().float() + 1) * 127.5).clamp_(0, 255).double()
    out = entry.fn(levels, severity, generator)
    # np.uint8(...) of the benchmark: truncation (every corruption has already clipped to [0, 255])
    out = torch.floor(out.clamp(0, 255))
    assert out.shape == images.shape, f"{name} changed the shape"
    work = torch.float64 if images.dtype == torch.float64 else torch.float32
    return (out.to(work) / 127.5 - 1).to(device=images.device, dtype=images.dtype)
