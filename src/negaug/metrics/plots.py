"""Figures of an evaluation, written next to eval.json by `negaug eval` (via ``negaug.viz``)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from negaug import viz
from negaug.metrics.evaluate import is_toy, reference_tensor


def save_evaluation_plots(folder: Path, stem: str, fake: Tensor, reference: Any, results: dict[str, dict],
                          num_grid: int = 64) -> list[Path]:
    """Sample grid (images, each enlarged to >= 64 px) or scatter (2-D toys: on the axes of the true
    modes when `reference` is a toy dataset with `centers` and `std`), plus a dot-count histogram when
    "dots" was measured. Returns the paths written (``folder / f"{stem}_<kind>.png"``)."""
    folder.mkdir(parents=True, exist_ok=True)
    if is_toy(reference):
        real, modes = reference_tensor(reference), getattr(reference, "centers", None)  # a tensor has no modes
        paths = [viz.save_scatter({"reference": real[:5000], "generated": fake[:5000]},
                                  folder / f"{stem}_scatter.png", title="2-D samples", modes=modes,
                                  mode_std=float(reference.std) if modes is not None else 0.0)]
    else:
        grid = fake[:num_grid]
        paths = [viz.save_grid(grid, folder / f"{stem}_samples.png", nrow=int(np.ceil(np.sqrt(grid.shape[0]))),
                               scale=viz.readable_scale(grid.shape[-1]))]
    dots = results.get("dots")
    if dots is not None:
        series = {name: _expand(histogram) for name, histogram in
                  (("reference", dots["reference_histogram"]), ("generated", dots["histogram"]))}
        top = max(max(h) for h in (dots["histogram"], dots["reference_histogram"]) if h) + 2
        paths.append(viz.save_histogram(series, folder / f"{stem}_dot_counts.png", bins=np.arange(-0.5, top + 0.5),
                                        xlabel="dots per image", title=f"trained count {dots['target_count']}"))
    return paths


def _expand(histogram: dict) -> Tensor:
    """{count: frequency} -> the counts repeated, for a histogram plot."""
    values = torch.tensor([int(k) for k in histogram], dtype=torch.float32)
    return values.repeat_interleave(torch.tensor([int(v) for v in histogram.values()])) if histogram else values
