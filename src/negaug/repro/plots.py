"""Plots of the reproductions (matplotlib's Agg canvas: no pyplot, no screen, no global state)."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from negaug import viz
from negaug.files import atomic_path

ARM_COLOURS = {"baseline": "tab:gray", "nda": "tab:red", "nda_wide": "tab:purple"}


def _figure(width: float, height: float):
    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format=Path(path).suffix.lstrip(".") or "png")
    return path


def count_histograms(shares: Mapping[str, Mapping[int, float]], target: int, path: Path, title: str = "") -> Path:
    """Side-by-side bars: share of samples (in [0, 1]) per dot count for each arm; the trained
    count marked by a dashed line."""
    figure = _figure(6, 3.5)
    axes = figure.add_subplot()
    counts = sorted({k for share in shares.values() for k in share} | {target})
    x = np.arange(min(counts), max(counts) + 1)
    width = 0.8 / max(1, len(shares))
    for i, (name, share) in enumerate(shares.items()):
        heights = [share.get(int(k), 0.0) for k in x]
        axes.bar(x + (i - (len(shares) - 1) / 2) * width, heights, width, label=name,
                 color=ARM_COLOURS.get(name))
    axes.axvline(target, color="black", linestyle="--", linewidth=1, label=f"trained count ({target})")
    axes.set(xlabel="dots per generated image", ylabel="share of samples", title=title, xticks=x, ylim=(0, 1))
    axes.legend()
    return _save(figure, path)


def sample_rows(samples: Mapping[str, torch.Tensor], path: Path, per_row: int = 16) -> Path:
    """One labelled row of images (N, C, H, W) in [-1, 1] per arm."""
    rows = [(name, images[:per_row]) for name, images in samples.items()]
    return viz.save_labelled_rows(rows, path)


def toy_scatters(real: torch.Tensor, negatives: torch.Tensor, samples: Mapping[str, torch.Tensor],
                 path: Path, limit: float) -> Path:
    """One panel per arm: real points, NDA negatives and generated points, all (N, 2)."""
    figure = _figure(4.2 * len(samples), 4.4)
    for i, (name, points) in enumerate(samples.items()):
        axes = figure.add_subplot(1, len(samples), i + 1)
        for label, data, colour in (("negatives", negatives, "tab:orange"), ("real", real, "tab:blue"),
                                    ("generated", points, ARM_COLOURS.get(name, "tab:red"))):
            data = np.asarray(data.float())
            axes.scatter(data[:, 0], data[:, 1], s=2, alpha=0.4, color=colour, label=label)
        axes.set(title=name, xlim=(-limit, limit), ylim=(-limit, limit), aspect="equal")
        axes.legend(markerscale=4, loc="upper right", fontsize=7)
    return _save(figure, path)


def grouped_bars(values: Mapping[str, Mapping[str, tuple[float, float]]], path: Path, ylabel: str,
                 title: str = "", ylim: tuple[float, float] | None = None) -> Path:
    """values[arm][group] = (mean, std): bars per group, one per arm, with std error bars."""
    groups = list(next(iter(values.values())))
    figure = _figure(max(5.0, 0.45 * len(groups) + 2), 4)
    axes = figure.add_subplot()
    x = np.arange(len(groups))
    width = 0.8 / len(values)
    for i, (arm, by_group) in enumerate(values.items()):
        means = [by_group[g][0] for g in groups]
        stds = [by_group[g][1] for g in groups]
        axes.bar(x + (i - (len(values) - 1) / 2) * width, means, width, yerr=stds, label=arm,
                 color=ARM_COLOURS.get(arm), capsize=2)
    axes.set_xticks(x, groups, rotation=70, fontsize=7)
    axes.set(ylabel=ylabel, title=title)
    if ylim is not None:
        axes.set_ylim(*ylim)
    axes.legend()
    return _save(figure, path)
