"""Figures a user looks at: legends clear of titles and data, one colour per thing in every figure,
2-D toys on fixed axes with their true modes, sample grids large enough to see.

Every plot function of negaug has a `*_figure` twin returning the matplotlib Figure; these tests
render it and inspect its artists (window extents in pixels, colours, limits)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.colors import to_rgba
from matplotlib.container import BarContainer
from matplotlib.patches import Circle, Rectangle
from PIL import Image

from negaug import anomaly, data, viz
from negaug.experiment.loop import sample_picture, sample_scatter_figure
from negaug.repro import plots

LONG = "a rather long series name that fills the width"


def layout_problems(figure) -> list[str]:
    """What a reader cannot see: a legend over any axes (its data, title, tick labels or axis labels),
    over the figure's title, or any of these cut off by the figure's edge (1 px slack)."""
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    canvas = figure.bbox.padded(1)
    boxes = {f"axes {i} ({ax.get_title()!r})": ax.get_tightbbox(renderer) for i, ax in enumerate(figure.axes)}
    if figure._suptitle is not None:
        boxes["suptitle"] = figure._suptitle.get_window_extent(renderer)
    legends = list(figure.legends) + [ax.get_legend() for ax in figure.axes if ax.get_legend() is not None]
    problems = []
    for j, legend in enumerate(legends):
        box = legend.get_window_extent(renderer)
        problems += [f"legend {j} overlaps {name}" for name, other in boxes.items() if box.overlaps(other)]
        boxes[f"legend {j}"] = box
    problems += [f"{name} is cut off by the figure's edge" for name, box in boxes.items()
                 if not (canvas.x0 <= box.x0 and box.x1 <= canvas.x1 and canvas.y0 <= box.y0 and box.y1 <= canvas.y1)]
    return problems


def ring_dataset():
    return data.build("ring", split="test", num_samples=600)


def ring_points(seed: int, spread: float, n: int = 300) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    ring = ring_dataset()
    points = ring.points[:n] + spread * torch.randn(n, 2, generator=g)
    points[:5] *= 4  # a few points far off
    return points


def figures():
    """(name, builder) of every kind of figure negaug writes, with long labels and many groups."""
    g = torch.Generator().manual_seed(0)
    ring = ring_dataset()
    negatives = data.toy_negatives(ring, 300, generator=g, kind="both")
    groups = [f"corruption/some_corruption_{i}" for i in range(30)]
    bars = {arm: {k: (0.9, 0.1) for k in groups} for arm in ("baseline", "nda")}
    names = ["corruption/fog", "corruption/snow", "nda/jigsaw", "nda/cutout", "noise/uniform"]
    differences = {run: {n: torch.randn(100, generator=g) + i for n in names} for i, run in enumerate(("baseline", "nda"))}
    return {
        "histogram": lambda: viz.histogram_figure({"reference": torch.randn(100, generator=g), LONG: torch.randn(100)},
                                                  title="a title", xlabel="dots per image"),
        "line": lambda: viz.line_figure({k: ([1, 2, 3], [0.5, 0.1, -1.0]) for k in
                                         ("d_out/real", "d_out/generated", "d_out/negative", "d_out/generated_g_step")},
                                        xlabel="generator step", ylabel="mean D output", title="mean D output"),
        "scatter": lambda: viz.scatter_figure({"reference": ring.points, "generated": ring_points(0, 0.3)},
                                              title="2-D samples", modes=ring.centers, mode_std=ring.std),
        "ring samples (loop)": lambda: sample_scatter_figure(ring_points(1, 0.3, n=64), ring, step=1200),
        "count histograms": lambda: plots.count_histograms_figure({"baseline": {3: 0.9, 4: 0.1}, "nda": {6: 0.95}}, 6,
                                                                  title="dot counts of generated images (trained on 6)"),
        "grouped bars": lambda: plots.grouped_bars_figure(bars, ylabel="AUROC", title="D as anomaly detector", ylim=(0, 1)),
        "toy scatters": lambda: plots.toy_scatters_figure(ring.points, negatives, {"baseline": ring_points(2, 0.3),
                                                                                   "nda": ring_points(3, 0.05)},
                                                          ring.centers, ring.std),
        "difference histograms": lambda: anomaly.difference_histograms_figure(differences, title="D(clean) - D(ood)"),
        "difference histograms, one run": lambda: anomaly.difference_histograms_figure(
            {"run (step 7)": differences["nda"]}, title="D(clean) - D(ood), run (step 7), severity 3"),
    }


@pytest.mark.parametrize("name", list(figures()))
def test_every_figure_keeps_its_legend_clear_of_titles_and_data(name):
    figure = figures()[name]()
    assert layout_problems(figure) == []


def test_layout_check_sees_a_legend_over_the_data_and_a_title_cut_off():
    figure = viz.new_figure(4, 3)
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], label="line")
    axes.legend(loc="center")
    figure.suptitle("x" * 200)
    problems = layout_problems(figure)
    assert any("legend 0 overlaps axes 0" in p for p in problems)
    assert "suptitle is cut off by the figure's edge" in problems


def test_difference_histograms_legend_no_longer_covers_the_title():
    # regression: the legend sat at "outside upper center", on top of the suptitle
    figure = figures()["difference histograms"]()
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    legend, title = figure.legends[0].get_window_extent(renderer), figure._suptitle.get_window_extent(renderer)
    assert not legend.overlaps(title) and legend.y1 < min(ax.get_window_extent(renderer).y0 for ax in figure.axes)


# --- one colour per thing ----------------------------------------------------------------------------

def bar_colours(figure) -> dict[str, tuple]:
    """{legend label: face colour} of the labelled bar containers of the first axes."""
    return {c.get_label(): c.patches[0].get_facecolor() for c in figure.axes[0].containers if isinstance(c, BarContainer)}


def test_each_method_has_one_colour_in_every_figure():
    counts = plots.count_histograms_figure({"baseline": {5: 1.0}, "nda": {6: 1.0}}, 6)
    bars = plots.grouped_bars_figure({"baseline": {"a": (0.5, 0.1)}, "nda": {"a": (0.7, 0.1)}}, ylabel="AUROC")
    differences = anomaly.difference_histograms_figure({"baseline": {"nda/jigsaw": torch.randn(20)},
                                                        "nda": {"nda/jigsaw": torch.randn(20) + 1}})
    hist = {p.get_label(): p.get_facecolor()[:3] for p in differences.axes[0].patches
            if isinstance(p, Rectangle) and not p.get_label().startswith("_")}
    for method, colour in (("baseline", "tab:gray"), ("nda", "tab:red")):
        assert bar_colours(counts)[method] == to_rgba(colour)
        assert bar_colours(bars)[method] == to_rgba(colour)
        assert hist[method] == to_rgba(colour)[:3]
    assert viz.colour_of("GAN") == viz.colour_of("baseline") and viz.colour_of("NDA-GAN") == viz.colour_of("nda")


def test_real_generated_and_negatives_keep_their_colours_across_figures():
    ring = ring_dataset()
    panels = plots.toy_scatters_figure(ring.points[:50], ring.points[:50] * 0.2, {"baseline": ring.points[:50],
                                                                                  "nda": ring.points[:50]},
                                       ring.centers, ring.std)
    loop = sample_scatter_figure(ring.points[:50], ring, step=3)
    lines = viz.line_figure({"d_out/real": ([0, 1], [1, 1]), "d_out/generated": ([0, 1], [0, 0]),
                             "d_out/negative": ([0, 1], [-1, -1]), "d_out/generated_g_step": ([0, 1], [0.1, 0.1])})
    line_colour = {line.get_label(): to_rgba(line.get_color()) for line in lines.axes[0].lines}
    for axes in [*panels.axes, *loop.axes]:
        for points in axes.collections:
            if points.get_label() in ("real", "generated", "negatives"):
                assert tuple(points.get_facecolor()[0][:3]) == to_rgba(viz.COLOURS[points.get_label()])[:3]
    assert line_colour["d_out/generated"] == line_colour["d_out/generated_g_step"] == to_rgba(viz.COLOURS["generated"])
    assert line_colour["d_out/real"] == to_rgba(viz.COLOURS["real"])
    assert line_colour["d_out/negative"] == to_rgba(viz.COLOURS["negatives"])
    assert [line.get_linestyle() for line in lines.axes[0].lines] == ["-", "-", "-", "--"]


def test_names_without_a_fixed_colour_get_distinct_unreserved_ones():
    names = ["nda", "run a", "run b", "baseline", "run c"]
    assigned = viz.colours(names)
    assert assigned["nda"] == "tab:red" and assigned["baseline"] == "tab:gray"
    others = [assigned[n] for n in ("run a", "run b", "run c")]
    assert others == list(viz.OTHER_COLOURS[:3])
    assert not set(viz.OTHER_COLOURS) & set(viz.COLOURS.values())


# --- 2-D toys: fixed axes, true modes ------------------------------------------------------------------

def test_ring_samples_are_drawn_on_the_same_axes_at_every_step():
    ring = ring_dataset()
    early = sample_scatter_figure(ring_points(0, 1.5, n=64), ring, step=200).axes[0]  # spread wide
    late = sample_scatter_figure(ring_points(1, 0.01, n=64), ring, step=8000).axes[0]  # on the modes
    expected = viz.toy_limits(ring.centers, ring.std)
    assert early.get_xlim() == late.get_xlim() == early.get_ylim() == late.get_ylim() == pytest.approx(expected)
    # ring of radius 2: the modes' span (4) widened by a quarter of it plus 4 std each side
    assert expected == pytest.approx((-3.08, 3.08), abs=1e-6)


def test_every_toy_panel_shares_the_axes_of_the_true_modes():
    ring = ring_dataset()
    figure = plots.toy_scatters_figure(ring.points, ring.points[:10], {"baseline": ring_points(0, 1.0),
                                                                       "nda": ring_points(1, 0.01)},
                                       ring.centers, ring.std)
    limits = {(ax.get_xlim(), ax.get_ylim()) for ax in figure.axes}
    assert len(limits) == 1 and limits.pop()[0] == pytest.approx(viz.toy_limits(ring.centers, ring.std))


def test_the_true_modes_are_drawn_as_markers_and_3_std_circles():
    ring = ring_dataset()
    axes = sample_scatter_figure(ring.points[:64], ring, step=1).axes[0]
    circles = [p for p in axes.patches if isinstance(p, Circle)]
    assert len(circles) == ring.num_classes == 8
    np.testing.assert_allclose(sorted(c.center for c in circles), sorted(ring.centers.tolist()), atol=1e-6)
    assert [c.radius for c in circles] == pytest.approx([3 * ring.std] * 8)
    markers = [c for c in axes.collections if c.get_label().startswith("true modes")]
    assert len(markers) == 1
    np.testing.assert_allclose(markers[0].get_offsets(), ring.centers.numpy(), atol=1e-6)


def test_points_off_the_fixed_axes_are_counted_in_the_title():
    ring = ring_dataset()
    points = torch.cat([ring.points[:10], torch.tensor([[10.0, 0.0], [0.0, -50.0]])])
    axes = sample_scatter_figure(points, ring, step=5).axes[0]
    assert axes.get_title() == "samples at step 5\n2 of 12 generated off the axes"
    assert sample_scatter_figure(ring.points[:10], ring, step=5).axes[0].get_title() == "samples at step 5"


def test_toy_limits_contain_every_mode_with_a_margin():
    centers = data.build("grid", split="test", num_samples=10).centers  # 5 x 5 at {-4, ..., 4}
    low, high = viz.toy_limits(centers, std=0.05)
    assert (low, high) == pytest.approx((-4 - 2 - 0.2, 4 + 2 + 0.2))


# --- sample grids large enough to see -------------------------------------------------------------------

@pytest.mark.parametrize("size, scale", [(8, 8), (28, 3), (32, 2), (63, 2), (64, 1), (128, 1)])
def test_readable_scale_is_the_smallest_that_reaches_64_px(size, scale):
    assert viz.readable_scale(size) == scale
    assert size * scale >= 64 and (scale == 1 or size * (scale - 1) < 64)


@pytest.mark.parametrize("size", [28, 32])
def test_sample_grid_tiles_are_at_least_64_px(size):
    images = torch.zeros(4, 3, size, size)
    picture = sample_picture(images)  # 2 x 2 tiles, 2 px padding
    tile = size * viz.readable_scale(size)
    assert picture.shape == (2 * (tile + 2) + 2, 2 * (tile + 2) + 2, 3) and tile >= 64


def test_repro_sample_rows_are_enlarged_and_labels_grow(tmp_path):
    rows = {"baseline": torch.zeros(16, 1, 28, 28), "nda": torch.zeros(16, 1, 28, 28)}
    width, height = Image.open(plots.sample_rows(rows, tmp_path / "samples.png")).size
    assert height == 2 * (84 + 2) + 2
    assert width == viz.label_column_width(["baseline", "nda"], font_size=21) + 16 * (84 + 2) + 2
    assert [viz.label_font_size(h) for h in (8, 40, 84, 200)] == [10, 10, 21, 24]


def test_grouped_bar_labels_never_overlap():
    groups = ["precision, ema G", "recall, ema G", "precision, raw G", "recall, raw G"]  # repro quality's
    figure = plots.grouped_bars_figure({arm: {g: (0.6, 0.05) for g in groups} for arm in ("baseline", "nda")},
                                       ylabel="mean ± std over seeds")
    figure.canvas.draw()
    boxes = [label.get_window_extent() for label in figure.axes[0].get_xticklabels()]
    assert len(boxes) == 4
    for left, right in zip(boxes, boxes[1:]):
        assert left.x1 < right.x0, "neighbouring x labels overlap"


def test_the_toy_legend_shows_the_mode_marker_large_and_bold():
    ring = ring_dataset()
    figure = plots.toy_scatters_figure(ring.points, ring.points[:50] * 0.5, {"nda": ring_points(0, 0.05)},
                                       ring.centers, ring.std)
    handles = dict(zip([t.get_text() for t in figure.legends[0].get_texts()], figure.legends[0].legend_handles))
    modes = next(h for label, h in handles.items() if label.startswith("true modes"))
    assert modes.get_sizes()[0] >= 100 and modes.get_linewidths()[0] >= 1.5
    assert handles["real"].get_sizes()[0] == 30  # filled markers keep the common size


def test_long_panel_titles_break_after_a_slash_and_short_ones_stay_whole():
    from negaug.repro.plots import panel_title
    assert panel_title("linear_probe") == "linear_probe"
    assert panel_title("fid/val") == "fid/val"
    assert panel_title("cosine_distance/embedding/other_image") == "cosine_distance\n/embedding/other_image"
    assert panel_title("a_very_long_name_without_any_slash_at_all") == "a_very_long_name_without_any_slash_at_all"
    assert panel_title("aaaa/bbbb/cccc", width=9) == "aaaa/bbbb\n/cccc"
