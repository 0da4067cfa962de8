"""A tiny statistics collector: `report(name, value)` anywhere, `collect()` at log time.

Values stay tensors until `collect`, so reporting inside the training step costs no device sync.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any

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

    def state_dict(self) -> dict[str, dict[str, float | int]]:
        """The sums and counts since the last collect (float32 sums become exact Python floats), so
        that the first log line after a resume averages the same steps as an uninterrupted run's."""
        return {"sums": {name: float(total) for name, total in self._sums.items()}, "counts": dict(self._counts)}

    def load_state_dict(self, state: dict[str, dict[str, float | int]]) -> None:
        self._sums.clear()
        self._counts.clear()
        self._sums.update({str(name): float(total) for name, total in state["sums"].items()})
        self._counts.update({str(name): int(count) for name, count in state["counts"].items()})

    def collect(self) -> dict[str, float]:
        """Means since the last collect, as floats; resets."""
        out = {name: float(total) / self._counts[name] for name, total in self._sums.items()}
        self._sums.clear()
        self._counts.clear()
        return out


def scalars_of(record: dict[str, Any]) -> dict[str, float]:
    """The numbers of a log record for TensorBoard and W&B: top-level ones, and one level into a
    nested result: its numbers (the k-NN monitor's {"knn": {"value": ...}} -> "knn/value";
    Pix2Pix's scores) and the "value" of each metric of an evaluation ({"eval": {"fid[...]":
    {"value": ...}}} -> "eval/fid[...]")."""
    out: dict[str, float] = {}
    for key, value in record.items():
        if key == "step":
            continue
        if isinstance(value, dict):
            for inner, v in value.items():
                v = v.get("value") if isinstance(v, dict) else v
                if _is_number(v):
                    out[f"{key}/{inner}"] = v
        elif _is_number(value):
            out[key] = value
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
