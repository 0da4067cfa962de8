"""negaug.viz grids and plots (exact layouts on tiny inputs) and the `negaug nda show` command."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from negaug import data, nda, viz
from negaug.cli import main
from negaug.cli.nda import parse_transform_specs, split_top_level

# --- grids --------------------------------------------------------------------------------------

def test_values_map_to_bytes_as_documented():
    x = torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0, -3.0, 3.0]).reshape(1, 1, 1, 7)
    grid = viz.make_grid(x, nrow=1, padding=0)
    assert grid.shape == (1, 7, 3) and grid.dtype == np.uint8
    assert grid[0, :, 0].tolist() == [0, 64, 128, 191, 255, 0, 255]
    assert (grid[..., 0] == grid[..., 1]).all() and (grid[..., 1] == grid[..., 2]).all()  # grey -> RGB


def test_grid_layout_is_exact():
    a = torch.tensor([[-1.0, 1.0], [0.0, -1.0]])
    images = torch.stack([a, -a, torch.zeros(2, 2)])[:, None]  # (3, 1, 2, 2)
    grid = viz.make_grid(images, nrow=2, padding=1, pad_value=0.5)[..., 0]
    p, a0, b0, z = 191, [[0, 255], [128, 0]], [[255, 0], [128, 255]], [[128, 128], [128, 128]]
    expected = np.full((7, 7), p)  # 2 rows x 2 columns of 2x2 tiles, 1 px padding: 2*3+1 = 7
    expected[1:3, 1:3], expected[1:3, 4:6], expected[4:6, 1:3] = a0, b0, z
    assert grid.tolist() == expected.tolist()  # the missing 4th tile is padding


def test_grid_keeps_rgb_channels_and_scales_by_repetition():
    image = torch.tensor([1.0, -1.0, 0.0]).reshape(1, 3, 1, 1).expand(1, 3, 2, 2)
    grid = viz.make_grid(image, nrow=4, padding=0, scale=3)
    assert grid.shape == (6, 6, 3)
    assert (grid.reshape(-1, 3) == np.array([255, 0, 128])).all()
    with pytest.raises(ValueError):
        viz.make_grid(torch.zeros(1, 2, 4, 4))


def test_save_grid_writes_the_grid_as_png(tmp_path):
    images = torch.rand(5, 3, 4, 4, generator=torch.Generator().manual_seed(0)) * 2 - 1
    path = viz.save_grid(images, tmp_path / "sub" / "grid.png", nrow=3)
    read = np.asarray(Image.open(path))
    assert read.shape == (2 * 6 + 2, 3 * 6 + 2, 3)
    assert (read == viz.make_grid(images, nrow=3)).all()


def test_labelled_rows_layout(tmp_path):
    rows = [("original", torch.zeros(3, 1, 4, 4)), ("jigsaw:k=2", -torch.ones(2, 1, 4, 4))]
    figure = viz.labelled_rows(rows, padding=2, scale=2)
    label_width = viz.label_column_width(["original", "jigsaw:k=2"])
    assert figure.shape == (2 * (8 + 2) + 2, label_width + 3 * (8 + 2) + 2, 3)
    grid = figure[:, label_width:]
    assert (grid[2:10, 2:10] == 128).all() and (grid[12:20, 12:20] == 0).all()
    assert (grid[12:20, 22:30] == 255).all()  # the short row ends in a blank tile
    labels = figure[:, :label_width, 0]
    assert (labels[2:10] < 128).any() and (labels[12:20] < 128).any()  # text drawn in each row band
    read = np.asarray(Image.open(viz.save_labelled_rows(rows, tmp_path / "rows.png", scale=2)))
    assert (read == figure).all()
    with pytest.raises(ValueError, match="one shape"):
        viz.labelled_rows([("a", torch.zeros(1, 1, 4, 4)), ("b", torch.zeros(1, 3, 4, 4))])


def test_plots_write_pngs_of_the_figure_size(tmp_path):
    values = torch.randn(200, generator=torch.Generator().manual_seed(0))
    paths = [
        viz.save_histogram({"real": values, "generated": values + 1}, tmp_path / "hist.png", bins=np.arange(-4, 5)),
        viz.save_line_plot({"loss": ([0, 1, 2], [3.0, 2.0, 1.5])}, tmp_path / "line.png", log_y=True),
    ]
    for path in paths:
        assert Image.open(path).size == (500, 350)
    scatter = viz.save_scatter({"real": torch.randn(50, 2)}, tmp_path / "scatter.png", limit=3)
    assert Image.open(scatter).size == (520, 530)


# --- transform specs ------------------------------------------------------------------------------

def test_transform_specs_parse_names_options_and_brackets():
    specs = parse_transform_specs("jigsaw:k=3, stitch,other_data:dataset=dots:count=[4, 5, 7],mixup:alpha=0.5")
    assert specs == [
        ("jigsaw:k=3", "jigsaw", {"k": 3}),
        ("stitch", "stitch", {}),
        ("other_data:dataset=dots:count=[4, 5, 7]", "other_data", {"dataset": "dots", "count": [4, 5, 7]}),
        ("mixup:alpha=0.5", "mixup", {"alpha": 0.5}),
    ]
    assert split_top_level("a,[b,c],,d", ",") == ["a", "[b,c]", "d"]
    with pytest.raises(ValueError, match="key=value"):
        parse_transform_specs("jigsaw:k")
    with pytest.raises(ValueError, match="empty"):
        parse_transform_specs(" , ")


# --- negaug nda show ------------------------------------------------------------------------------

def show(tmp_path, *extra: str, name: str = "fig.png") -> tuple[int, object]:
    out = tmp_path / name
    code = main(["nda", "show", "--dataset", "digits", "--num-images", "3", "--out", str(out), *extra])
    return code, out


def test_nda_show_writes_originals_then_one_row_per_transform(tmp_path, capsys):
    code, out = show(tmp_path, "--transforms", "jigsaw:k=2,cutout", "--seed", "5")
    assert code == 0 and str(out) in capsys.readouterr().out
    figure = np.asarray(Image.open(out))
    labels = ["original", "jigsaw:k=2", "cutout"]
    tile = 8 * 8 + 2  # digits are 8 px, enlarged 64 / 8 = 8 times, plus 2 px padding
    label_width = viz.label_column_width(labels, font_size=16)  # labels a quarter of the 64 px tiles high
    assert figure.shape == (3 * tile + 2, label_width + 3 * tile + 2, 3)
    # Replay the documented recipe: one generator seeded with --seed picks the images, then draws
    # each transform in order.
    dataset = data.build("digits")
    generator = torch.Generator().manual_seed(5)
    images, _ = dataset.get_batch(torch.randperm(len(dataset), generator=generator)[:3])
    rows = [images, nda.build("jigsaw", k=2)(images, generator=generator), nda.build("cutout")(images, generator=generator)]
    expected = viz.make_grid(torch.cat(rows), nrow=3, scale=8)
    assert (figure[:, label_width:] == expected).all()


def test_nda_show_is_seeded(tmp_path):
    _, first = show(tmp_path, "--transforms", "stitch", name="a.png")
    _, second = show(tmp_path, "--transforms", "stitch", name="b.png")
    _, other = show(tmp_path, "--transforms", "stitch", "--seed", "1", name="c.png")
    assert first.read_bytes() == second.read_bytes() != other.read_bytes()


def test_nda_show_defaults_to_every_image_transform(tmp_path):
    code, out = show(tmp_path)
    assert code == 0
    shown = [n for n in nda.names() if n not in ("other_data", "mixture")]
    assert "jigsaw" in shown and Image.open(out).size[1] == (len(shown) + 1) * (8 * 8 + 2) + 2


def test_nda_show_other_data_from_a_dataset(tmp_path):
    out = tmp_path / "dots.png"
    code = main(["nda", "show", "--dataset", "dots", "--data-option", "num_samples=16", "--num-images", "2",
                 "--transforms", "other_data:dataset=dots:count=[4,5,7]:num_samples=16", "--out", str(out)])
    assert code == 0 and Image.open(out).size[1] == 2 * (32 * 2 + 2) + 2


@pytest.mark.parametrize("arguments, message", [
    (["--dataset", "nope"], "unknown dataset 'nope'"),
    (["--transforms", "jigsw"], "did you mean 'jigsaw'"),
    (["--transforms", "jigsaw:q=3"], "unknown option 'q'"),
    (["--transforms", "jigsaw:k"], "key=value"),
    (["--transforms", "other_data"], "other_data needs a source dataset"),
    (["--dataset", "ring"], "2-D points"),
    (["--dataset", "cifar10", "--root", "{tmp}"], "CIFAR-10 not found under"),
    (["--num-images", "0"], "--num-images"),
    (["--data-option", "bogus=1"], "unknown option 'bogus'"),
])
def test_nda_show_bad_input_is_one_line_and_exit_2(arguments, message, tmp_path, capsys):
    arguments = [a.replace("{tmp}", str(tmp_path)) for a in arguments]
    code = main(["nda", "show", "--out", str(tmp_path / "x.png"), *arguments])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("negaug: error: ") and message in err
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("argv", [["train"], ["eval"], ["anomaly"], ["nda", "show"], ["repro"]])
def test_every_subcommand_help_has_examples(argv, capsys):
    from negaug.cli import main

    with pytest.raises(SystemExit) as stop:
        main([*argv, "--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and f"negaug {' '.join(argv)}" in out.split("examples:")[1]


def test_nda_show_takes_data_root_like_anomaly(tmp_path, capsys):
    from negaug.cli import main

    assert main(["nda", "show", "--data-root", str(tmp_path), "--transforms", "jigsaw", "--num-images", "2",
                 "--out", str(tmp_path / "x.png")]) == 0
