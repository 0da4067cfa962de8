"""Image grids and small plots, shared by training (sample grids), `negaug nda show` and evaluation.

Pixel mapping, everywhere: an image value x in [-1, 1] becomes the byte floor(127.5 * (x + 1) + 0.5)
(values outside are clamped first): -1 -> 0, -0.5 -> 64, 0 -> 128, 0.5 -> 191, 1 -> 255.
Grayscale images are repeated to RGB, so every grid is uint8 `(H, W, 3)`.

Grid layout (as torchvision's make_grid): tiles of (H * scale) x (W * scale) pixels (nearest-neighbour
enlargement), `padding` pixels of `pad_value` around and between tiles, so a grid of R rows and
K = min(nrow, N) columns is `R * (H * scale + padding) + padding` high and
`K * (W * scale + padding) + padding` wide.
Plots use matplotlib's Agg canvas directly (no pyplot, no screen, no global state).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont

from negaug.data.base import to_uint8
from negaug.files import atomic_path

LABEL_MARGIN = 4  # pixels left and right of a row label


def _tiles(images: torch.Tensor, scale: int) -> torch.Tensor:
    """`(N, C, H, W)` in [-1, 1] -> uint8 `(N, 3, H * scale, W * scale)`."""
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be (N, 1 or 3, H, W), got {tuple(images.shape)}")
    tiles = to_uint8(images.detach().float().cpu()).expand(-1, 3, -1, -1)
    if scale > 1:
        tiles = tiles.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
    return tiles


def make_grid(
    images: torch.Tensor, nrow: int = 8, padding: int = 2, pad_value: float = 1.0, scale: int = 1
) -> np.ndarray:
    """Images `(N, C, H, W)` in [-1, 1], C in {1, 3} -> uint8 `(rows * (H*scale + p) + p, cols * (W*scale + p) + p, 3)`.

    Tiles fill rows left to right: cols = min(nrow, N) tiles per row (as torchvision), rows =
    ceil(N / cols); missing tiles of the last row are `pad_value`."""
    if nrow < 1 or padding < 0 or scale < 1:
        raise ValueError("make_grid needs nrow >= 1, padding >= 0 and scale >= 1")
    tiles = _tiles(images, scale)  # (N, 3, h, w)
    num, _, h, w = tiles.shape
    nrow = max(1, min(nrow, num))
    rows = max(1, math.ceil(num / nrow))
    fill = int(to_uint8(torch.tensor(pad_value)))
    blank = torch.full((rows * nrow - num, 3, h, w), fill, dtype=torch.uint8)
    tiles = F.pad(torch.cat([tiles, blank]), (0, padding, 0, padding), value=fill)  # pad right and bottom
    grid = tiles.reshape(rows, nrow, 3, h + padding, w + padding).permute(0, 3, 1, 4, 2)
    grid = grid.reshape(rows * (h + padding), nrow * (w + padding), 3)
    grid = F.pad(grid.permute(2, 0, 1), (padding, 0, padding, 0), value=fill).permute(1, 2, 0)  # top and left
    return grid.contiguous().numpy()


def write_png(array: np.ndarray, path: str | Path) -> Path:
    """uint8 `(H, W, 3)` -> PNG file (parent folders created)."""
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(array)).save(tmp, format="PNG")
    return Path(path)


def save_grid(images: torch.Tensor, path: str | Path, nrow: int = 8, **grid_options) -> Path:
    """`make_grid(images, nrow, ...)` written as a PNG."""
    return write_png(make_grid(images, nrow=nrow, **grid_options), path)


def _font():
    return ImageFont.load_default()


def label_column_width(labels: Sequence[str]) -> int:
    """Width in pixels of the label column: widest label in PIL's default font + 2 * LABEL_MARGIN."""
    font = _font()
    return max((math.ceil(font.getlength(str(text))) for text in labels), default=0) + 2 * LABEL_MARGIN


def labelled_rows(
    rows: Sequence[tuple[str, torch.Tensor]], padding: int = 2, pad_value: float = 1.0, scale: int = 1
) -> np.ndarray:
    """A figure with one row of images per `(label, images (n, C, H, W))`, the label on the left.

    Layout: a white label column `label_column_width(labels)` wide, then `make_grid` of all rows with
    nrow = max n (shorter rows end in blank tiles). Returns uint8 `(H, W, 3)`."""
    if not rows:
        raise ValueError("labelled_rows needs at least one row")
    shapes = {tuple(images.shape[1:]) for _, images in rows}
    if len(shapes) != 1:
        raise ValueError(f"all rows need images of one shape, got {sorted(shapes)}")
    ncols = max(images.shape[0] for _, images in rows)
    filled = [torch.cat([x.float(), x.new_full((ncols - x.shape[0], *x.shape[1:]), pad_value).float()]) for _, x in rows]
    grid = make_grid(torch.cat(filled), nrow=ncols, padding=padding, pad_value=pad_value, scale=scale)
    labels = [str(label) for label, _ in rows]
    column = Image.new("RGB", (label_column_width(labels), grid.shape[0]), "white")
    draw, font, row_height = ImageDraw.Draw(column), _font(), (grid.shape[0] - padding) / len(rows)
    for i, text in enumerate(labels):
        centre_y = padding + (i + 0.5) * row_height - padding / 2
        draw.text((LABEL_MARGIN, centre_y), text, fill="black", font=font, anchor="lm")
    return np.concatenate([np.asarray(column), grid], axis=1)


def save_labelled_rows(rows: Sequence[tuple[str, torch.Tensor]], path: str | Path, **layout) -> Path:
    """`labelled_rows(rows, ...)` written as a PNG (e.g. the paper's Figure 2)."""
    return write_png(labelled_rows(rows, **layout), path)


# --- plots -----------------------------------------------------------------------------------------

def _figure(figsize: tuple[float, float]):
    figure = Figure(figsize=figsize, dpi=100)
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path: str | Path) -> Path:
    path = Path(path)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format=path.suffix.lstrip(".") or "png")
    return path


def save_histogram(
    series: Mapping[str, Sequence[float] | np.ndarray | torch.Tensor], path: str | Path, bins=30,
    xlabel: str = "", title: str = "", density: bool = True,
) -> Path:
    """Overlaid step histograms, one per named series (e.g. dot counts of real vs generated images;
    pass integer bin edges such as `np.arange(0.5, 12.5)` for counts). PNG or PDF by suffix."""
    figure = _figure((5, 3.5))
    axes = figure.add_subplot()
    for name, values in series.items():
        axes.hist(np.asarray(torch.as_tensor(values).float()), bins=bins, density=density, histtype="step", label=name)
    axes.set(xlabel=xlabel, ylabel="density" if density else "count", title=title)
    axes.legend()
    return _save(figure, path)


def save_line_plot(
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]], path: str | Path,
    xlabel: str = "", ylabel: str = "", title: str = "", log_y: bool = False,
) -> Path:
    """One line per `name: (x, y)` (training curves, FID against steps)."""
    figure = _figure((5, 3.5))
    axes = figure.add_subplot()
    for name, (x, y) in series.items():
        axes.plot(np.asarray(x, dtype=float), np.asarray(y, dtype=float), label=name)
    axes.set(xlabel=xlabel, ylabel=ylabel, title=title, yscale="log" if log_y else "linear")
    axes.legend()
    return _save(figure, path)


def save_scatter(
    series: Mapping[str, np.ndarray | torch.Tensor], path: str | Path, title: str = "", limit: float | None = None
) -> Path:
    """2-D points per name, `(N, 2)` each (toy runs: real, generated, negatives); square axes."""
    figure = _figure((4.5, 4.5))
    axes = figure.add_subplot()
    for name, points in series.items():
        points = np.asarray(torch.as_tensor(points).float())
        axes.scatter(points[:, 0], points[:, 1], s=2, alpha=0.5, label=name)
    if limit is not None:
        axes.set(xlim=(-limit, limit), ylim=(-limit, limit))
    axes.set(title=title, aspect="equal")
    axes.legend(markerscale=4)
    return _save(figure, path)
