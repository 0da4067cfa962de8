"""A tiny statistics collector: `report(name, value)` anywhere, `collect()` at log time.

Values stay tensors until `collect`, so reporting inside the training step costs no device sync.
"""
from __future__ import annotations

from collections import defaultdict

import torch


class Stats:
    def __init__(self):
        self._sums: dict[str, torch.Tensor | float] = defaultdict(float)
        self._counts: dict[str, int] = defaultdict(int)

    def report(self, name: str, value) -> None:
        if isinstance(value, torch.Tensor):
            value = value.detach().float().mean()
        self._sums[name] = self._sums[name] + value
        self._counts[name] += 1

    def collect(self) -> dict[str, float]:
        """Means since the last collect, as floats; resets."""
        out = {name: float(total) / self._counts[name] for name, total in self._sums.items()}
        self._sums.clear()
        self._counts.clear()
        return out
