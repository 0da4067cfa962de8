"""Image grids and small plots, shared by training (sample grids), `negaug nda show` and evaluation.

Pixel mapping, everywhere: an image value x in [-1, 1] becomes the byte floor(127.5 * (x + 1) + 0.5)
(values outside are clamped first): -1 -> 0, -0.5 -> 64, 0 -> 128, 0.5 -> 191, 1 -> 255.
Grayscale images are repeated to RGB, so every grid is uint8 `(H, W, 3)`.

Grid layout (as torchvision's make_grid): tiles of (H * scale) x (W * scale) pixels (nearest-neighbour
enlargement), `padding` pixels of `pad_value` around and between tiles, so a grid of R rows and
K = min(nrow, N) columns is `R * (H * scale + padding) + padding` high and
`K * (W * scale + padding) + padding` wide.
Sample grids are enlarged to be seen: `readable_scale(size)` is the nearest-neighbour factor that
shows each image at >= 64 px (28 px MNIST x3, 32 px x2).

Plots use matplotlib's Agg canvas directly (no pyplot, no screen, no global state). Each plot has a
`*_figure` function (returns the Figure, for tests and panels) and a `save_*` one. Everywhere:
- one colour per thing (`COLOURS`, `colours`): a method ("baseline"/"GAN", "nda"/"NDA-GAN"), real,
  generated, negatives, each loss; names without a fixed colour take the next of `OTHER_COLOURS`;
- the legend sits below the axes (`legend_below`), never over data or titles;
- 2-D toys are drawn on fixed axes from the true modes (`toy_limits`), the modes drawn (`draw_modes`).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Circle
from PIL import Image, ImageDraw, ImageFont

from negaug.data.base import to_uint8
from negaug.files import atomic_path

LABEL_MARGIN = 4  # pixels left and right of a row label
DEFAULT_FONT_SIZE = 10  # PIL's default font size (px)


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
        raise ValueError(f"make_grid needs nrow >= 1, padding >= 0 and scale >= 1, got nrow={nrow}, "
                         f"padding={padding}, scale={scale}")
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


def _font(size: int = DEFAULT_FONT_SIZE):
    return ImageFont.load_default(size=size)


def label_font_size(tile_height: int) -> int:
    """Row labels grow with the tiles: PIL's default 10 px up to 40 px tiles, then a quarter of the
    tile height (at most 24 px), so a label stays readable next to enlarged images."""
    return min(24, max(DEFAULT_FONT_SIZE, tile_height // 4))


def label_column_width(labels: Sequence[str], font_size: int = DEFAULT_FONT_SIZE) -> int:
    """Width in pixels of the label column: widest label in PIL's default font (`font_size` px) + 2 * LABEL_MARGIN."""
    font = _font(font_size)
    return max((math.ceil(font.getlength(str(text))) for text in labels), default=0) + 2 * LABEL_MARGIN


def labelled_rows(
    rows: Sequence[tuple[str, torch.Tensor]], padding: int = 2, pad_value: float = 1.0, scale: int = 1
) -> np.ndarray:
    """A figure with one row of images per `(label, images (n, C, H, W))`, the label on the left.

    Layout: a white label column `label_column_width(labels, label_font_size(H * scale))` wide, then
    `make_grid` of all rows with nrow = max n (shorter rows end in blank tiles). Returns uint8 `(H, W, 3)`."""
    if not rows:
        raise ValueError("labelled_rows needs at least one row")
    shapes = {tuple(images.shape[1:]) for _, images in rows}
    if len(shapes) != 1:
        raise ValueError(f"all rows need images of one shape, got {sorted(shapes)}")
    ncols = max(images.shape[0] for _, images in rows)
    filled = [torch.cat([x.float(), x.new_full((ncols - x.shape[0], *x.shape[1:]), pad_value).float()]) for _, x in rows]
    grid = make_grid(torch.cat(filled), nrow=ncols, padding=padding, pad_value=pad_value, scale=scale)
    labels = [str(label) for label, _ in rows]
    font_size = label_font_size(rows[0][1].shape[-2] * scale)
    column = Image.new("RGB", (label_column_width(labels, font_size), grid.shape[0]), "white")
    draw, font, row_height = ImageDraw.Draw(column), _font(font_size), (grid.shape[0] - padding) / len(rows)
    for i, text in enumerate(labels):
        centre_y = padding + (i + 0.5) * row_height - padding / 2
        draw.text((LABEL_MARGIN, centre_y), text, fill="black", font=font, anchor="lm")
    return np.concatenate([np.asarray(column), grid], axis=1)


def save_labelled_rows(rows: Sequence[tuple[str, torch.Tensor]], path: str | Path, **layout) -> Path:
    """`labelled_rows(rows, ...)` written as a PNG (e.g. the paper's Figure 2)."""
    return write_png(labelled_rows(rows, **layout), path)


# --- colours: one per thing, the same in every figure --------------------------------------------

COLOURS = {
    # methods: the arms of `negaug repro` (the paper's "GAN" and "NDA-GAN")
    "baseline": "tab:gray", "nda": "tab:red", "nda_wide": "tab:purple",
    # data: scatters, histograms and D's mean output on each
    "real": "tab:blue", "generated": "tab:green", "negatives": "tab:orange",
    # losses
    "loss/d": "black", "loss/g": "tab:green",
}
ALIASES = {
    "gan": "baseline", "nda-gan": "nda", "no nda": "baseline", "reference": "real", "negative": "negatives",
    "d_out/real": "real", "d_out/generated": "generated", "d_out/generated_g_step": "generated",
    "d_out/negative": "negatives",
}
LINE_STYLES = {"d_out/generated_g_step": "--"}  # D's score of G(z) in G's step: generated's colour, dashed
OTHER_COLOURS = ("tab:cyan", "tab:olive", "tab:pink", "tab:brown", "navy", "teal", "goldenrod", "darkred")
MODE_RADIUS_STD = 3.0  # a true mode is drawn as a circle of 3 std: a "high-quality" sample lies inside
# scatter layers, bottom to top: negatives, generated, the mode markers, real points, the mode circles
SCATTER_ZORDER = {"negatives": 1.0, "generated": 1.5, "real": 2.5}


def canonical(name: str) -> str:
    """The name `COLOURS` knows a thing by: lower case, aliases resolved ("NDA-GAN" -> "nda")."""
    key = str(name).strip().lower()
    return ALIASES.get(key, key)


def colour_of(name: str) -> str | None:
    """The fixed colour of a known name (case-insensitive, aliases resolved), else None."""
    return COLOURS.get(canonical(name))


def colours(names: Sequence[str]) -> dict[str, str]:
    """A colour per name: its fixed colour, or the next of OTHER_COLOURS for names without one."""
    others = iter(OTHER_COLOURS * (1 + len(names) // len(OTHER_COLOURS)))
    return {name: colour_of(name) or next(others) for name in names}


def readable_scale(image_size: int, min_pixels: int = 64) -> int:
    """The smallest integer enlargement that shows an `image_size` px image at >= `min_pixels` px."""
    return max(1, math.ceil(min_pixels / max(1, int(image_size))))


# --- figures ---------------------------------------------------------------------------------------

def new_figure(width: float, height: float) -> Figure:
    """A figure (inches, 100 dpi) on its own Agg canvas with constrained layout (room for outside legends)."""
    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def legend_below(figure: Figure, max_columns: int = 4, marker_size: float | None = None, **options):
    """One legend for the whole figure, below every axes (never over data or titles): the labelled
    artists of all axes, each label once; `marker_size` (points^2): every scatter marker of the
    legend that size and opaque. None when nothing is labelled."""
    entries: dict[str, Any] = {}
    for axes in figure.axes:
        for handle, label in zip(*axes.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    if not entries:
        return None
    legend = figure.legend(list(entries.values()), list(entries), loc="outside lower center",
                           ncols=min(max_columns, len(entries)), **options)
    for handle in legend.legend_handles if marker_size else ():
        if hasattr(handle, "set_sizes"):
            # a marker drawn by its lines ('+' of the true modes) is thin: larger and bolder to be seen
            drawn_by_lines = bool(np.any(np.asarray(handle.get_linewidths()) > 0))
            handle.set_sizes([marker_size * (4 if drawn_by_lines else 1)])
            if drawn_by_lines:
                handle.set_linewidths([2.0])
            handle.set_alpha(1.0)
    return legend


def save_figure(figure: Figure, path: str | Path) -> Path:
    """The figure written as PNG or PDF (by suffix), atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format=path.suffix.lstrip(".") or "png")
    return path


def figure_array(figure: Figure) -> np.ndarray:
    """The rendered figure as uint8 `(H, W, 3)` (width x height inches times 100 dpi)."""
    figure.canvas.draw()
    return np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()


def _numpy(values) -> np.ndarray:
    return np.asarray(torch.as_tensor(values).detach().float().cpu())


def histogram_figure(
    series: Mapping[str, Sequence[float] | np.ndarray | torch.Tensor], bins=30, xlabel: str = "",
    title: str = "", density: bool = True,
) -> Figure:
    """Overlaid step histograms, one per named series (e.g. dot counts of real vs generated images;
    pass integer bin edges such as `np.arange(0.5, 12.5)` for counts)."""
    figure = new_figure(5, 3.5)
    axes = figure.add_subplot()
    for (name, values), colour in zip(series.items(), colours(list(series)).values()):
        axes.hist(_numpy(values), bins=bins, density=density, histtype="step", label=name, color=colour,
                  linewidth=1.5)
    axes.set(xlabel=xlabel, ylabel="density" if density else "count", title=title)
    legend_below(figure)
    return figure


def line_figure(
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]], xlabel: str = "", ylabel: str = "",
    title: str = "", log_y: bool = False, markers: bool = False,
) -> Figure:
    """One line per `name: (x, y)` (training curves, FID against steps), coloured by `colours`;
    `markers`: a dot at each point (a few evaluations, not a dense curve)."""
    figure = new_figure(5, 3.5)
    axes = figure.add_subplot()
    for (name, (x, y)), colour in zip(series.items(), colours(list(series)).values()):
        axes.plot(np.asarray(x, dtype=float), np.asarray(y, dtype=float), label=name, color=colour,
                  linestyle=LINE_STYLES.get(name, "-"), marker="o" if markers else None)
    axes.set(xlabel=xlabel, ylabel=ylabel, title=title, yscale="log" if log_y else "linear")
    legend_below(figure, max_columns=2)
    return figure


def toy_limits(centers: np.ndarray | torch.Tensor, std: float, margin: float = 0.25) -> tuple[float, float]:
    """Square axis limits `(low, high)` for 2-D toy plots, from the true modes alone (so every step
    and every panel share them): the modes' extent widened by `margin` of its span plus 4 std."""
    centers = _numpy(centers).reshape(-1, 2)
    low, high = float(centers.min()), float(centers.max())
    pad = margin * max(high - low, 1e-6) + 4 * float(std)
    return low - pad, high + pad


def draw_modes(axes, centers: np.ndarray | torch.Tensor, std: float) -> None:
    """The true modes: a '+' at each centre and a circle of MODE_RADIUS_STD std around it."""
    centers = _numpy(centers).reshape(-1, 2)
    for x, y in centers:
        axes.add_patch(Circle((x, y), MODE_RADIUS_STD * std, fill=False, edgecolor="black", linewidth=0.8,
                              zorder=3))
    axes.scatter(centers[:, 0], centers[:, 1], marker="+", s=30, color="black", linewidths=0.8, zorder=2,
                 label=f"true modes ({MODE_RADIUS_STD:g} std circles)")


def scatter_figure(
    series: Mapping[str, np.ndarray | torch.Tensor], title: str = "", limits: tuple[float, float] | None = None,
    modes: np.ndarray | torch.Tensor | None = None, mode_std: float = 0.0, axes=None,
) -> Figure:
    """2-D points per name, `(N, 2)` each (toy runs: real, generated, negatives), on square axes.

    With `modes` (M, 2): the true modes are drawn (`draw_modes`) and, unless `limits` is given, the
    limits are `toy_limits(modes, mode_std)`, the same for every sample set. Points outside the
    limits are counted in the title. Layers: `SCATTER_ZORDER` (real above generated, so a mode's
    real points stay visible). `axes`: draw into it (a panel); else a new figure, legend below."""
    own = axes is None
    figure = new_figure(5.2, 5.3) if own else axes.figure  # wider than tall: the square axes fill the height
    axes = figure.add_subplot() if own else axes
    if limits is None and modes is not None:
        limits = toy_limits(modes, mode_std)
    notes = []
    for (name, points), colour in zip(series.items(), colours(list(series)).values()):
        points = _numpy(points).reshape(-1, 2)
        size = float(np.clip(2000 / max(len(points), 1), 2, 10))  # a few points large, many small
        axes.scatter(points[:, 0], points[:, 1], s=size, alpha=0.8 if len(points) <= 500 else 0.4, color=colour,
                     linewidths=0, label=name, zorder=SCATTER_ZORDER.get(canonical(name), 1.5))
        notes += _outside_note(name, points, limits)
    if modes is not None:
        draw_modes(axes, modes, mode_std)
    if limits is not None:
        axes.set(xlim=limits, ylim=limits)
    axes.set(title="\n".join([title, "; ".join(notes)]) if notes else title, aspect="equal")
    if own:
        legend_below(figure, max_columns=1, marker_size=30)
    return figure


def _outside_note(name: str, points: np.ndarray, limits: tuple[float, float] | None) -> list[str]:
    """["k of N <name> off the axes"] when some points lie outside the limits, else []."""
    if limits is None:
        return []
    outside = int((~((points >= limits[0]) & (points <= limits[1])).all(axis=1)).sum())
    return [f"{outside} of {len(points)} {name} off the axes"] if outside else []


def save_histogram(series, path: str | Path, bins=30, xlabel: str = "", title: str = "", density: bool = True) -> Path:
    """`histogram_figure(...)` as a PNG or PDF (by suffix)."""
    return save_figure(histogram_figure(series, bins, xlabel, title, density), path)


def save_line_plot(series, path: str | Path, xlabel: str = "", ylabel: str = "", title: str = "",
                   log_y: bool = False, markers: bool = False) -> Path:
    """`line_figure(...)` as a PNG or PDF (by suffix)."""
    return save_figure(line_figure(series, xlabel, ylabel, title, log_y, markers), path)


def save_scatter(series, path: str | Path, title: str = "", limit: float | None = None, modes=None,
                 mode_std: float = 0.0) -> Path:
    """`scatter_figure(...)` as a PNG or PDF; `limit` L: axes from -L to L."""
    limits = (-limit, limit) if limit is not None else None
    return save_figure(scatter_figure(series, title, limits, modes, mode_std), path)
