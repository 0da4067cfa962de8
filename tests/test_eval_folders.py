"""`negaug eval --generated DIR --reference DIR|NAME`: the same numbers as `negaug eval RUN` on the
same images, and its refusals (exit 2, one line, nothing written)."""
from __future__ import annotations

import json
import os
from types import SimpleNamespace

import pytest
import torch
from PIL import Image
from torch import nn
from torch.testing import assert_close

from negaug import data
from negaug.data.base import to_uint8
from negaug.metrics import generate_samples
from negaug.models.base import Generator


@pytest.fixture(autouse=True)
def single_thread(tmp_path, monkeypatch):
    monkeypatch.setenv("NEGAUG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("NEGAUG_INCEPTION_WEIGHTS", str(tmp_path / "no-inception-here"))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class LevelGenerator(Generator):
    """8x8 grey samples on the 256 uint8 levels, so that PNG files hold them exactly."""

    def __init__(self):
        super().__init__(latent_dim=4)
        torch.manual_seed(0)
        self.net = nn.Linear(4, 64)

    def forward(self, z, y=None):
        levels = torch.round((torch.tanh(self.net(z)) + 1) * 127.5)
        return levels.div(127.5).sub(1.0).reshape(-1, 1, 8, 8)  # = negaug.data.to_unit_range of the uint8 levels


def digits_run(tmp_path):
    """A LoadedRun look-alike on the digits (the attributes `negaug eval RUN` uses)."""
    config = SimpleNamespace(data=SimpleNamespace(name="digits", options={}, split="train"),
                             eval=SimpleNamespace(metrics=[], feature_extractor="auto", inception_weights=None,
                                                  force=False))
    return SimpleNamespace(config=config, generator=LevelGenerator().eval(), step=7, run_dir=tmp_path,
                           checkpoint_path=tmp_path / "checkpoints" / "step_0000007.safetensors", num_classes=0,
                           reference_dataset=lambda split: data.build("digits", split=split))


def write_pngs(images, folder):
    folder.mkdir(parents=True)
    for i, image in enumerate(to_uint8(images)):
        Image.fromarray(image[0].numpy(), "L").save(folder / f"{i:04d}.png")


def cli(argv, capsys):
    from negaug.cli import main

    code = main(argv)
    return code, capsys.readouterr()


def test_folder_evaluation_equals_the_run_evaluation_on_the_same_images(tmp_path, monkeypatch, capsys):
    import negaug.experiment.evaluate

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    monkeypatch.setattr(negaug.experiment.evaluate, "load_run", lambda *a, **k: digits_run(run_dir))
    metrics = ["fid", "kid", "is", "pr"]
    code, out = cli(["eval", str(run_dir), "--num-samples", "200", "--metrics", *metrics, "--no-plots", "--quiet"],
                    capsys)
    assert code == 0, out.err
    by_run = json.loads((run_dir / "eval.json").read_text())["evaluations"][0]["results"]
    samples, _ = generate_samples(LevelGenerator().eval(), 200, seed=0)
    write_pngs(samples, tmp_path / "samples")
    code, out = cli(["eval", "--generated", str(tmp_path / "samples"), "--reference", "digits", "--metrics", *metrics,
                     "--out", str(tmp_path / "folders.json"), "--quiet"], capsys)
    assert code == 0, out.err
    entry = json.loads((tmp_path / "folders.json").read_text())
    by_folder = entry["results"]
    assert sorted(by_folder) == sorted(by_run) and all(key.startswith(tuple(metrics)) for key in by_run)
    assert any(key.startswith("fid[classifier:digits-") for key in by_folder)  # named by its feature space
    for key, result in by_run.items():
        assert_close(by_folder[key]["value"], result["value"], rtol=1e-9, atol=1e-12)
        assert by_folder[key]["protocol"]["reference"] == result["protocol"]["reference"] == "digits/test"
    files = by_folder[next(iter(by_folder))]["protocol"]["files"]
    assert files["generated"]["num_files"] == 200 and len(files["generated"]["sha256"]) == 64
    assert files["reference"] == {"dataset": "digits", "split": "test"} and entry["generated"] == files["generated"]


def test_folder_against_folder_records_both_and_resizes_only_when_asked(tmp_path, capsys):
    test_images = data.build("digits", split="test").get_batch(torch.arange(150))[0]
    write_pngs(test_images, tmp_path / "ref")
    write_pngs(test_images[:140].flip(-1), tmp_path / "gen")
    argv = ["eval", "--generated", str(tmp_path / "gen"), "--reference", str(tmp_path / "ref"),
            "--feature-extractor", "raw", "--metrics", "kid", "--out", str(tmp_path / "out.json"), "--quiet"]
    code, out = cli(argv, capsys)
    assert code == 0, out.err
    result = json.loads((tmp_path / "out.json").read_text())["results"]["kid[raw]"]
    assert result["protocol"]["reference"] == f"folder:{tmp_path / 'ref'}"
    assert result["protocol"]["files"]["reference"]["num_files"] == 150
    big = tmp_path / "big"
    big.mkdir()
    Image.new("L", (16, 16), 128).save(big / "a.png")
    Image.new("RGB", (12, 16), (10, 200, 30)).save(big / "b.png")
    argv[2] = str(big)
    code, out = cli(argv + ["--resize"], capsys)
    assert code == 0, out.err
    entry = json.loads((tmp_path / "out.json").read_text())
    assert entry["generated"]["decoded_as"] == "L" and entry["resize"].startswith("bilinear")


@pytest.mark.parametrize("case", ["two_folders_classifier", "size", "neither", "both", "run_flag", "folder_flag",
                                  "unknown_reference", "too_few_for_fid", "fifo", "out_folder",
                                  "empty_generated", "empty_reference"])
def test_folder_evaluation_refusals_are_one_line_and_write_nothing(tmp_path, capsys, case):
    write_pngs(torch.zeros(20, 1, 8, 8), tmp_path / "gen")
    write_pngs(torch.zeros(20, 1, 8, 8), tmp_path / "ref")
    out_file = tmp_path / "out.json"
    base = ["eval", "--generated", str(tmp_path / "gen"), "--out", str(out_file), "--quiet"]
    argv, expected = {
        "two_folders_classifier": (base + ["--reference", str(tmp_path / "ref")], "--train-data NAME"),
        "size": (base + ["--reference", "mnist5k"], "--resize"),
        "neither": (["eval", "--quiet"], "exactly one of RUN"),
        "both": (["eval", str(tmp_path), *base[1:], "--reference", "digits"], "exactly one of RUN"),
        "run_flag": (base + ["--reference", "digits", "--num-samples", "10"], "apply to a run only"),
        "folder_flag": (["eval", str(tmp_path), "--reference", "digits"], "apply to --generated DIR only"),
        "unknown_reference": (base + ["--reference", "mnist5000"], "neither a folder nor a built-in dataset"),
        "too_few_for_fid": (base + ["--reference", "digits", "--metrics", "fid"], "needs at least"),
        "fifo": (base + ["--reference", "digits"], "not a regular file"),
        "empty_generated": (["eval", "--generated", "", "--reference", "digits"], "--generated is empty"),
        "empty_reference": (base + ["--reference", " "], "--reference is empty"),
        "out_folder": (base[:-3] + ["--out", str(tmp_path / "no" / "out.json"), "--reference", "digits"],
                       "does not exist"),
    }[case]
    if case == "fifo":
        os.mkfifo(tmp_path / "gen" / "zz.png")
    code, out = cli(argv, capsys)
    assert code == 2 and out.err.count("\n") == 1 and out.err.startswith("negaug: error:"), out.err
    assert expected in out.err
    assert not out_file.exists() and not (tmp_path / "eval.json").exists()
