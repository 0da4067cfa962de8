"""Plots of the reproductions, through `negaug.viz`: one colour per arm in every figure
(`viz.COLOURS`: baseline grey, nda red), one legend below the axes, toys on the axes of their
true modes. Each plot has a `*_figure` function (the Figure, for tests) and a writer."""
from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from scipy import stats as scipy_stats

from negaug import viz


def count_histograms(shares: Mapping[str, Mapping[int, float]], target: int, path: Path, title: str = "") -> Path:
    """`count_histograms_figure(...)` as a PNG."""
    return viz.save_figure(count_histograms_figure(shares, target, title), path)


def count_histograms_figure(shares: Mapping[str, Mapping[int, float]], target: int, title: str = "") -> Figure:
    """Side-by-side bars: share of samples (in [0, 1]) per dot count for each arm; the trained
    count marked by a dashed line."""
    figure = viz.new_figure(6, 3.8)
    axes = figure.add_subplot()
    counts = sorted({k for share in shares.values() for k in share} | {target})
    x = np.arange(min(counts), max(counts) + 1)
    width = 0.8 / max(1, len(shares))
    colour = viz.colours(list(shares))
    for i, (name, share) in enumerate(shares.items()):
        heights = [share.get(int(k), 0.0) for k in x]
        axes.bar(x + (i - (len(shares) - 1) / 2) * width, heights, width, label=name, color=colour[name])
    axes.axvline(target, color="black", linestyle="--", linewidth=1, label=f"trained count ({target})")
    axes.set(xlabel="dots per generated image", ylabel="share of samples", title=title, xticks=x, ylim=(0, 1))
    viz.legend_below(figure)
    return figure


def sample_rows(samples: Mapping[str, torch.Tensor], path: Path, per_row: int = 16) -> Path:
    """One labelled row of images (N, C, H, W) in [-1, 1] per arm, enlarged to >= 64 px."""
    rows = [(name, images[:per_row]) for name, images in samples.items()]
    return viz.save_labelled_rows(rows, path, scale=viz.readable_scale(rows[0][1].shape[-1]))


def toy_scatters(real: torch.Tensor, negatives: torch.Tensor, samples: Mapping[str, torch.Tensor],
                 path: Path, modes: torch.Tensor, mode_std: float) -> Path:
    """`toy_scatters_figure(...)` as a PNG."""
    return viz.save_figure(toy_scatters_figure(real, negatives, samples, modes, mode_std), path)


def toy_scatters_figure(real: torch.Tensor, negatives: torch.Tensor, samples: Mapping[str, torch.Tensor],
                        modes: torch.Tensor, mode_std: float) -> Figure:
    """One panel per arm: NDA negatives, real and generated points (all (N, 2)) and the true modes
    `modes` (M, 2) of std `mode_std`, every panel on the same axes (`viz.toy_limits`); each kind
    of point has one colour in every panel."""
    figure = viz.new_figure(4.2 * len(samples), 4.9)
    for i, (name, points) in enumerate(samples.items()):
        axes = figure.add_subplot(1, len(samples), i + 1)
        viz.scatter_figure({"negatives": negatives, "real": real, "generated": points}, title=name,
                           modes=modes, mode_std=mode_std, axes=axes)
    viz.legend_below(figure, marker_size=30)
    return figure


def grouped_bars(values: Mapping[str, Mapping[str, tuple[float, float]]], path: Path, ylabel: str,
                 title: str = "", ylim: tuple[float, float] | None = None) -> Path:
    """`grouped_bars_figure(...)` as a PNG."""
    return viz.save_figure(grouped_bars_figure(values, ylabel, title, ylim), path)


def grouped_bars_figure(values: Mapping[str, Mapping[str, tuple[float, float]]], ylabel: str, title: str = "",
                        ylim: tuple[float, float] | None = None) -> Figure:
    """values[arm][group] = (mean, std): bars per group, one per arm, with std error bars."""
    groups = list(next(iter(values.values())))
    many = len(groups) > 6  # e.g. the 29 OOD sets of the anomaly experiment: rotated labels
    # upright labels wrapped at 12 characters, about 1.2 inches each, so neighbours never overlap
    width_inches = max(5.0, 0.45 * len(groups) + 2, 0.0 if many else 1.2 * len(groups) + 1.5)
    figure = viz.new_figure(width_inches, 4.4)
    axes = figure.add_subplot()
    x = np.arange(len(groups))
    width = 0.8 / len(values)
    colour = viz.colours(list(values))
    for i, (arm, by_group) in enumerate(values.items()):
        means = [by_group[g][0] for g in groups]
        stds = [by_group[g][1] for g in groups]
        axes.bar(x + (i - (len(values) - 1) / 2) * width, means, width, yerr=stds, label=arm,
                 color=colour[arm], capsize=2)
    labels = groups if many else [textwrap.fill(group, 12) for group in groups]
    axes.set_xticks(x, labels, rotation=70 if many else 0, fontsize=7 if many else 10)
    axes.set(ylabel=ylabel, title=title)
    if ylim is not None:
        axes.set_ylim(*ylim)
    viz.legend_below(figure, max_columns=4 if width_inches >= 7 else 3)
    return figure


def points_over_bars(values: Mapping[str, Mapping[str, Sequence[float]]], path: Path, ylabel: str, title: str = "",
                     chance: Mapping[str, float] | None = None) -> Path:
    """`points_over_bars_figure(...)` as a PNG."""
    return viz.save_figure(points_over_bars_figure(values, ylabel, title, chance), path)


def points_over_bars_figure(values: Mapping[str, Mapping[str, Sequence[float]]], ylabel: str, title: str = "",
                            chance: Mapping[str, float] | None = None) -> Figure:
    """values[arm][group] = per-seed values: per group one bar per arm at the mean, each seed a black
    dot on its bar (spread evenly across the bar, no randomness); `chance[group]` a dashed line."""
    groups = list(next(iter(values.values())))
    figure = viz.new_figure(max(5.0, 1.3 * len(groups) + 1.5), 4.4)
    axes = figure.add_subplot()
    x = np.arange(len(groups))
    width = 0.8 / len(values)
    colour = viz.colours(list(values))
    for i, (arm, by_group) in enumerate(values.items()):
        centres = x + (i - (len(values) - 1) / 2) * width
        axes.bar(centres, [float(np.mean(by_group[g])) for g in groups], width, label=arm, color=colour[arm])
        for centre, group in zip(centres, groups):
            seeds = np.asarray(by_group[group], dtype=float)
            offsets = np.linspace(-0.25, 0.25, seeds.size) * width if seeds.size > 1 else np.zeros(1)
            axes.scatter(centre + offsets, seeds, s=12, color="black", zorder=3,
                         label="seeds" if i == 0 and group == groups[0] else None)
    for j, group in enumerate(groups if chance else ()):
        axes.hlines(chance[group], j - 0.45, j + 0.45, colors="black", linestyles="--", linewidth=1,
                    label="chance" if j == 0 else None)
    axes.set_xticks(x, groups, fontsize=8)
    axes.set(ylabel=ylabel, title=title, ylim=(0, 1))
    viz.legend_below(figure)
    return figure


def panel_title(name: str, width: int = 22) -> str:
    """A panel's title broken after '/' where it is longer than `width` characters, so that the
    titles of neighbouring panels (e.g. cosine_distance/embedding/other_image) do not overlap."""
    if len(name) <= width or "/" not in name:
        return name
    lines, line = [], ""
    for part in name.split("/"):
        piece = part if not line else f"/{part}"
        if line and len(line) + len(piece) > width:
            lines.append(line)
            piece = f"/{part}"
            line = ""
        line += piece
    return "\n".join([*lines, line])


def arm_points(values: Mapping[str, Mapping[str, Sequence[float]]], path: Path, ylabel: str, title: str = "",
               floor: Mapping[str, float] | None = None) -> Path:
    """`arm_points_figure(...)` as a PNG."""
    return viz.save_figure(arm_points_figure(values, ylabel, title, floor), path)


def arm_points_figure(values: Mapping[str, Mapping[str, Sequence[float]]], ylabel: str, title: str = "",
                      floor: Mapping[str, float] | None = None) -> Figure:
    """values[panel][arm] = per-seed values: one panel per key (e.g. validation and test FID), one
    column per arm: each seed a dot, the mean a bar with its 95% t-interval; `floor[panel]` a
    dashed line (the real-vs-real floor). The y axis starts at 0 and is shared."""
    panels = list(values)
    arms = list(next(iter(values.values())))
    figure = viz.new_figure(max(6.0, 0.7 * len(arms) * len(panels) + 2), 4.6)
    colour = viz.colours(arms)
    top = max(max(v) for by_arm in values.values() for v in by_arm.values() if len(v))
    for index, panel in enumerate(panels):
        axes = figure.add_subplot(1, len(panels), index + 1)
        for x, arm in enumerate(arms):
            seeds = np.asarray(values[panel][arm], dtype=float)
            mean = float(seeds.mean())
            half = (float(scipy_stats.t.ppf(0.975, seeds.size - 1) * seeds.std(ddof=1) / np.sqrt(seeds.size))
                    if seeds.size > 1 else 0.0)
            axes.bar(x, mean, 0.6, color=colour.get(arm) or "C0", alpha=0.5, yerr=half, capsize=3)
            axes.scatter(np.full(seeds.size, x) + np.linspace(-0.15, 0.15, seeds.size), seeds, s=10, color="black", zorder=3)
        if floor and panel in floor:
            axes.axhline(floor[panel], color="black", linestyle="--", linewidth=1)
            axes.text(len(arms) - 0.5, floor[panel], " real-vs-real floor", va="bottom", ha="right", fontsize=7)
        # long override lists (negaug compare's arm labels) wrap instead of pushing the axes out
        labels = [textwrap.shorten(arm, 90, placeholder=" ...") for arm in arms]
        axes.set_xticks(range(len(arms)), [textwrap.fill(label, 30) for label in labels], rotation=35, ha="right", fontsize=7)
        axes.set(title=panel_title(panel), ylim=(0, top * 1.1), ylabel=ylabel if index == 0 else None)
    figure.suptitle(title, fontsize=9)
    return figure


def curves_with_spread(curves: Mapping[str, Sequence[Sequence[Sequence[float]]]], path: Path, xlabel: str,
                       ylabel: str, title: str = "", panels: Mapping[str, Sequence[str]] | None = None) -> Path:
    """`curves_with_spread_figure(...)` as a PNG."""
    return viz.save_figure(curves_with_spread_figure(curves, xlabel, ylabel, title, panels), path)


def curves_with_spread_figure(curves: Mapping[str, Sequence[Sequence[Sequence[float]]]], xlabel: str, ylabel: str,
                              title: str = "", panels: Mapping[str, Sequence[str]] | None = None) -> Figure:
    """curves[arm] = per seed [[x, y], ...]: the mean over seeds at each x (points every seed has) as
    a line with markers and a band of ± one std. `panels` {title: [arms]}: one panel each (shared
    axes), e.g. no NDA vs NDA at each share of the data; None: every arm in one panel."""
    panels = panels or {title: list(curves)}
    figure = viz.new_figure(max(7.0, 3.6 * len(panels)), 4.4)
    colour = viz.colours(list(curves))
    first = None
    for index, (name, arms) in enumerate(panels.items()):
        axes = figure.add_subplot(1, len(panels), index + 1, sharey=first)
        first = first or axes
        _spread_lines(axes, {arm: curves[arm] for arm in arms}, colour)
        axes.set(xlabel=xlabel, ylabel=ylabel if index == 0 else None, title=name)
        axes.set_yscale("log")
    if len(panels) > 1 and title:
        figure.suptitle(title, fontsize=9)
    viz.legend_below(figure, max_columns=3)
    return figure


def _spread_lines(axes, curves: Mapping[str, Sequence[Sequence[Sequence[float]]]], colour: Mapping[str, Any]) -> None:
    for arm, per_seed in curves.items():
        common_x = sorted(set.intersection(*(set(x for x, _ in seed) for seed in per_seed))) if per_seed else []
        if not common_x:
            continue
        table = np.array([[dict((x, y) for x, y in seed)[x] for x in common_x] for seed in per_seed])
        mean, std = table.mean(0), table.std(0, ddof=1) if len(table) > 1 else np.zeros(len(common_x))
        line, = axes.plot(common_x, mean, marker="o", markersize=3, label=arm, color=colour.get(arm))
        axes.fill_between(common_x, mean - std, mean + std, alpha=0.15, color=line.get_color())
