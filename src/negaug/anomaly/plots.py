"""Histograms of D(clean) - D(ood) per paired OOD set (the paper's Figures 4 and 8), one panel
per set, several runs overlaid (e.g. baseline vs NDA).

Each run's gaps are divided by a scale of its own discriminator (the std of D on the clean images,
or else of the run's gaps pooled over its sets), so the plotted quantity is the same for any
rescaling a * D + b (a > 0) of one D's scores: raw gaps of differently scaled discriminators made
the baseline look better on most panels while AUROC (scale-free) said NDA won (issue 26)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from negaug import viz

AXIS_LABEL = "(D(clean) - D(ood)) / std of this D"


def plot_difference_histograms(differences: dict[str, dict[str, torch.Tensor]], path: str | Path,
                               bins: int = 40, columns: int = 4, title: str | None = None,
                               scales: dict[str, float] | None = None) -> Path:
    """Save a PNG (or PDF, by suffix) of `difference_histograms_figure(...)`."""
    return viz.save_figure(difference_histograms_figure(differences, bins, columns, title, scales), path)


def scale_free_gaps(differences: dict[str, dict[str, torch.Tensor]],
                    scales: dict[str, float] | None = None) -> dict[str, dict[str, np.ndarray]]:
    """{run: {set: (N,) gap / scale of the run's D}}: the plotted quantity. `scales[run]` is the
    std of that D's scores on the clean images (`results["in_distribution"]["score_std"]`); a run
    without one is divided by the std of its gaps pooled over its sets. Either way a * D + b
    (a > 0) gives the same numbers."""
    out = {}
    for label, per_set in differences.items():
        gaps = {name: _as_array(values) for name, values in per_set.items()}
        scale = (scales or {}).get(label)
        if scale is None and gaps:
            scale = float(np.concatenate(list(gaps.values())).std())
        scale = scale if scale and math.isfinite(scale) and scale > 0 else 1.0  # a constant D: nothing to scale
        out[label] = {name: values / scale for name, values in gaps.items()}
    return out


def difference_histograms_figure(differences: dict[str, dict[str, torch.Tensor]], bins: int = 40,
                                 columns: int = 4, title: str | None = None,
                                 scales: dict[str, float] | None = None) -> Figure:
    """One histogram panel per OOD set, of `scale_free_gaps(differences, scales)`.

    differences: {run_label: {ood_name: (N,) D(clean) - D(ood)}}; runs that lack a set are left
    out of its panel. Each panel shares its bin edges across runs and shows densities, so runs
    with different image counts compare. A run keeps its colour in every panel (`viz.colours`:
    "baseline" grey, "nda" red as in every negaug figure); with several runs, one legend sits below
    the panels. Panels are titled by the corruption name, or the full set name for other kinds
    (nda/gaussian_noise is not corruption/gaussian_noise).
    """
    names = list(dict.fromkeys(name for per_run in differences.values() for name in per_run))
    if not names:
        raise ValueError("no differences to plot (only paired OOD sets, corruption/* and nda/*, have them)")
    columns = min(columns, len(names))
    rows = math.ceil(len(names) / columns)
    figure = viz.new_figure(3.2 * columns, 2.5 * rows + (0.4 if len(differences) > 1 else 0))
    colour = viz.colours(list(differences))
    differences = scale_free_gaps(differences, scales)
    for index, name in enumerate(names):
        axes = figure.add_subplot(rows, columns, index + 1)
        runs = {label: _as_array(per_run[name]) for label, per_run in differences.items() if name in per_run}
        values = np.concatenate(list(runs.values()))
        edges = np.histogram_bin_edges(values, bins=bins)
        for label, diffs in runs.items():
            axes.hist(diffs, bins=edges, density=True, alpha=0.5, label=label, color=colour[label])
        axes.axvline(0.0, color="black", linewidth=0.8)
        axes.set_title(name.removeprefix("corruption/"), fontsize=9)
        axes.tick_params(labelsize=7)
        if index % columns == 0:
            axes.set_ylabel("density", fontsize=8)
        if index >= len(names) - columns:
            axes.set_xlabel(AXIS_LABEL, fontsize=8)
    if len(differences) > 1:
        viz.legend_below(figure, max_columns=len(differences), fontsize=9)
    if title:
        figure.suptitle(title, fontsize=10)
    return figure


def _as_array(values: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().double().numpy()
    return np.asarray(values, dtype=float).reshape(-1)
