"""The corruption registry: each corruption module registers its functions here."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from negaug.registry import Registry

SEVERITIES = (1, 2, 3, 4, 5)
CORRUPTIONS = Registry("corruption")
SKIPPED = {"frost": "needs the benchmark's frost photographs, which negaug does not ship"}

# (levels: float64 (N, C, H, W) holding 8-bit levels 0..255, severity 1..5, generator)
#   -> (N, C, H, W) floats on the 0..255 scale: the array the benchmark hands to np.uint8
CorruptionFn = Callable[[torch.Tensor, int, torch.Generator], torch.Tensor]


@dataclass(frozen=True)
class Corruption:
    name: str
    fn: CorruptionFn
    needs_colour: bool = False


def register(name: str, needs_colour: bool = False) -> Callable[[CorruptionFn], CorruptionFn]:
    def decorator(fn: CorruptionFn) -> CorruptionFn:
        entry = Corruption(name, fn, needs_colour)
        CORRUPTIONS.register(name)(lambda: entry)
        return fn

    return decorator


def to_255(x: torch.Tensor) -> torch.Tensor:
    """The benchmark's closing `np.clip(x, 0, 1) * 255`, in x's own dtype."""
    return x.clamp(0, 1) * 255
