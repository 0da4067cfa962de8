"""The corruption registry: each corruption module registers its functions here."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from negaug.registry import Registry

SEVERITIES = (1, 2, 3, 4, 5)
CORRUPTIONS = Registry("corruption")
SKIPPED = {"frost": "needs the benchmark's frost photographs, which negaug does not ship"}

CorruptionFn = Callable[[torch.Tensor, int, torch.Generator], torch.Tensor]


@dataclass(frozen=True)
class Corruption:
    name: str
    fn: CorruptionFn  # (x in [0, 1] (N, C, H, W), severity 1..5, generator) -> same shape in [0, 1]
    needs_colour: bool = False


def register(name: str, needs_colour: bool = False) -> Callable[[CorruptionFn], CorruptionFn]:
    def decorator(fn: CorruptionFn) -> CorruptionFn:
        entry = Corruption(name, fn, needs_colour)
        CORRUPTIONS.register(name)(lambda: entry)
        return fn

    return decorator
