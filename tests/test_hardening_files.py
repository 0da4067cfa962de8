"""Issue 25: image files, caches, locks, output paths and the last tracebacks. One regression test
per class of failure, each failing on the code before the fix; `test_fuzz_*` at the end."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from negaug.cli import main
from negaug.experiment import checkpoint as ckpt
from negaug.experiment import runs, train
from test_hardening import TINY, assert_one_line_error, cli, tiny, tree

# --- writes outside what the user named -----------------------------------------------------------

def test_a_symlinked_run_lock_is_refused_never_followed_regression_notes_replaced_by_a_pid(tmp_path, capsys):
    train(tiny(tmp_path, "train.name=r"))
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    lock = tmp_path / "r" / runs.LOCK_FILE
    lock.unlink()
    lock.symlink_to(notes)
    code, _, err = cli(capsys, "train", "--resume", str(tmp_path / "r"), "train.steps=6")
    assert code == 2
    assert_one_line_error(err, "symbolic link", str(lock))
    assert notes.read_text() == "my notes" and lock.is_symlink()


@pytest.mark.parametrize("kind", ["fifo", "symlink"])
def test_an_output_that_is_not_a_regular_file_is_refused_regression_device_replaced(tmp_path, capsys, kind):
    out = tmp_path / "out.png"
    target = tmp_path / "target.png"
    target.write_bytes(b"mine")
    os.mkfifo(out) if kind == "fifo" else out.symlink_to(target)
    code, _, err = cli(capsys, "nda", "show", "--dataset", "dots", "--transforms", "jigsaw", "--out", str(out))
    assert code == 2
    assert_one_line_error(err, "--out", str(out))
    assert (out.is_fifo() if kind == "fifo" else out.is_symlink()) and target.read_bytes() == b"mine"


def test_atomic_writes_never_follow_a_planted_temporary_symlink(tmp_path):
    from negaug.files import write_atomically

    victim = tmp_path / "victim.txt"
    victim.write_text("mine")
    (tmp_path / f".report.md.tmp-{os.getpid()}").symlink_to(victim)
    write_atomically(tmp_path / "report.md", "report")
    assert victim.read_text() == "mine" and (tmp_path / "report.md").read_text() == "report"


@pytest.mark.parametrize("argv, expected", [
    (["repro", "toy", "--tiny", "--out", ""], "--out is empty"),
    (["repro", "toy", "--tiny", "--out", "x", "--runs-dir", "  "], "--runs-dir is empty"),
    (["nda", "show", "--out", " "], "--out is empty"),
    (["nda", "show", "--out", "x.png", "--data-root", ""], "--data-root is empty"),
    (["eval", ""], "RUN is empty"),
    (["anomaly", "runs/x", "--output", ""], "--output is empty"),
    (["train", "--resume", " "], "--resume is empty"),
    (["train", "train.runs_dir=''", "--dry-run"], "train.runs_dir is empty"),
    (["train", "data.root=' '", "--dry-run"], "data.root is empty"),
    (["pretrain", "train.runs_dir=''", "--dry-run"], "train.runs_dir is empty"),
])
def test_empty_or_blank_paths_are_refused_regression_out_empty_wrote_into_the_working_folder(
        tmp_path, capsys, monkeypatch, argv, expected):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "report.md").write_text("mine")
    code, _, err = cli(capsys, *argv)
    assert code == 2
    assert_one_line_error(err, expected)
    assert tree(tmp_path) == {"report.md": b"mine"}


# --- YAML number forms ----------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["1:20", "017", "1:20.5", "-0:30"])
def test_sexagesimal_and_octal_numbers_are_refused_regression_1_20_read_as_80(tmp_path, capsys, value):
    code, _, err = cli(capsys, "train", f"train.steps={value}", f"train.runs_dir={tmp_path}", "--dry-run")
    assert code == 2
    assert_one_line_error(err, "train.steps", "base-60 or octal")
    from negaug.experiment import load_config

    assert load_config("default", ["train.name=1:20"]).train.name == "1:20"  # a string key keeps its text


# --- caches verified like checkpoints -------------------------------------------------------------

def _tiny_classifier(cache, seed=0):
    from negaug.metrics import classifier as clf

    gen = torch.Generator().manual_seed(0)
    images = torch.rand(64, 1, 8, 8, generator=gen) * 2 - 1
    labels = torch.arange(64) % 2
    settings = clf.ClassifierSettings(epochs=1, batch_size=32, width=4, feature_dim=8, seed=seed)
    return clf.load_or_train_classifier(images, labels, 2, "tiny", settings, cache)


@pytest.mark.parametrize("damage", ["truncate", "replace", "garbage_json", "fifo"])
def test_a_damaged_classifier_cache_is_retrained_with_a_note_regression_safetensors_traceback(tmp_path, damage):
    model, meta = _tiny_classifier(tmp_path)
    weights = next((tmp_path / "classifiers").glob("tiny-*.safetensors"))
    if damage == "truncate":
        os.truncate(weights, 1000)
    elif damage == "replace":  # a valid file of other weights: would be another feature space under the same name
        other = tmp_path / "other"
        _tiny_classifier(other, seed=1)
        weights.write_bytes(next((other / "classifiers").glob("tiny-*.safetensors")).read_bytes())
    elif damage == "garbage_json":
        weights.with_suffix(".json").write_text("{not json")
    else:  # never read (it would hang), never replaced: one line naming it
        weights.unlink()
        os.mkfifo(weights)
        with pytest.raises(ValueError, match=weights.name):
            _tiny_classifier(tmp_path)
        return
    again, again_meta = _tiny_classifier(tmp_path)
    assert again_meta["cached"] is False and str(weights) in again_meta["cache_note"]
    assert again_meta["weights_sha256"] == meta["weights_sha256"]
    reused, reused_meta = _tiny_classifier(tmp_path)
    assert reused_meta["cached"] is True and "cache_note" not in reused_meta


# --- data files: checked before a run folder exists, named, never silently altered -----------------

def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares width x height 8-bit grey pixels (a decompression bomb's header)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def _folder(root: Path, per_class=(40, 40), suffix=".png") -> Path:
    import numpy as np
    from PIL import Image

    for c, count in enumerate(per_class):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(count):
            Image.fromarray(np.full((12, 12, 3), 40 * c + i, dtype=np.uint8)).save(root / f"class{c}" / f"{i:03d}{suffix}")
    return root


FOLDER_RUN = ["data.name=image_folder", "data.image_size=16", "data.batch_size=8", "model.options.width=4",
              "train.sample_every=0", "train.checkpoint_every=2", "train.progress=false", "train.name=f"]


def test_a_decompression_bomb_is_one_line_naming_it_before_any_folder_regression_pil_traceback(tmp_path, capsys):
    root = _folder(tmp_path / "images", per_class=(4, 4))
    bomb = root / "class0" / "bomb.png"
    bomb.write_bytes(_png_header(20000, 20000))
    code, _, err = cli(capsys, "train", *FOLDER_RUN, f"data.root={root}", "data.options.in_memory=true",
                       f"train.runs_dir={tmp_path / 'runs'}")
    assert code == 2
    assert_one_line_error(err, str(bomb), "more pixels than negaug decodes")
    assert not (tmp_path / "runs").exists()


def test_a_fifo_named_jpg_in_a_cityscapes_folder_is_one_line_regression_hangs_forever(tmp_path):
    import signal

    from negaug.data.paired import build_paired

    (tmp_path / "train").mkdir()
    os.mkfifo(tmp_path / "train" / "a.jpg")
    signal.signal(signal.SIGALRM, lambda *_: pytest.fail("hung on a FIFO"))
    signal.alarm(20)
    try:
        with pytest.raises(ValueError, match="a.jpg is not a regular file"):
            build_paired("cityscapes", root=str(tmp_path), split="train", image_size=16)
    finally:
        signal.alarm(0)


def test_a_label_map_of_another_size_than_its_photo_is_refused_regression_accepted_silently(tmp_path):
    from PIL import Image

    from negaug.data.paired import build_paired

    for folder, name, size in (("leftImg8bit", "x_leftImg8bit.png", (64, 32)), ("gtFine", "x_gtFine_color.png", (32, 16))):
        (tmp_path / folder / "train" / "city").mkdir(parents=True)
        Image.new("RGB", size, (128, 64, 128)).save(tmp_path / folder / "train" / "city" / name)
    with pytest.raises(ValueError, match="x_gtFine_color.png is 32x16 but its photo .* is 64x32"):
        build_paired("cityscapes", root=str(tmp_path), split="train", image_size=16)


def test_16_bit_pngs_are_scaled_not_clipped_regression_99_percent_white(tmp_path):
    import numpy as np
    from PIL import Image

    from negaug import data

    (tmp_path / "a").mkdir()
    ramp = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)  # 0 .. 65520
    Image.fromarray(ramp).save(tmp_path / "a" / "ramp.png")
    assert Image.open(tmp_path / "a" / "ramp.png").mode.startswith("I")
    images, _ = data.build("image_folder", root=tmp_path, split="all", image_size=64, channels=1).get_batch(torch.tensor([0]))
    pixels = (images[0, 0] + 1) * 127.5
    expected = torch.from_numpy(np.rint(ramp / 257.0))
    torch.testing.assert_close(pixels.double(), expected, atol=1.0, rtol=0)
    assert (pixels > 254.5).float().mean() < 0.01


def test_a_truncated_jpeg_mid_run_names_the_file_and_a_resume_that_works_regression_named_the_run(tmp_path, capsys):
    root = _folder(tmp_path / "images", suffix=".jpg")
    runs_dir = tmp_path / "runs"
    assert main(["train", *FOLDER_RUN, f"data.root={root}", f"train.runs_dir={runs_dir}", "train.steps=2"]) == 0
    broken = root / "class1" / "005.jpg"
    good = broken.read_bytes()
    broken.write_bytes(good[: len(good) // 2])
    capsys.readouterr()
    code, _, err = cli(capsys, "train", "--resume", str(runs_dir / "f"), "train.steps=20")
    assert code == 1
    line = err.strip().splitlines()[-1]
    assert str(broken) in line and "--resume" in line and "Traceback" not in err, err
    assert ckpt.load_latest(runs_dir / "f" / "checkpoints") is not None
    broken.write_bytes(good)  # the advice: replace the file, then resume
    assert main(["train", "--resume", str(runs_dir / "f"), "train.steps=20"]) == 0


def test_symlinked_class_folders_leading_out_of_data_root_are_not_followed_regression_link_to_root(tmp_path):
    from negaug import data

    root = _folder(tmp_path / "images", per_class=(10, 10))
    outside = _folder(tmp_path / "elsewhere", per_class=(10,))
    (root / "zz_everything").symlink_to(outside / "class0", target_is_directory=True)
    dataset = data.build("image_folder", root=root, split="all", image_size=8)
    assert dataset.class_names == ["class0", "class1"] and len(dataset) == 20
    followed = data.build("image_folder", root=root, split="all", image_size=8, follow_symlinks=True)
    assert followed.class_names == ["class0", "class1", "zz_everything"]


@pytest.mark.parametrize("value, expected", [
    ("5", "dataset_options must be a mapping"), ("[1, 2]", "dataset_options must be a mapping"),
    ("{image_size: 8}", "dataset_options.image_size cannot be set"), ("{download: true}", "dataset_options.download"),
    ("{root: /x}", "dataset_options.root"), ("{count: 'x'}", "count"),
])
def test_nested_dataset_options_are_checked_by_name_regression_typeerror_traceback(tmp_path, capsys, value, expected):
    code, _, err = cli(capsys, "train", "nda.transform=other_data", "nda.options.dataset=dots",
                       f"nda.options.dataset_options={value}", f"train.runs_dir={tmp_path}", "--dry-run")
    assert code == 2
    assert_one_line_error(err, expected)


@pytest.mark.parametrize("argv", [
    ["train", "pix2pix-scenes", "data.options.num_samples=1000000"],
    ["train", "dots", "data.options.num_samples=10000000"],
])
def test_generated_sets_are_bounded_in_memory_regression_dry_run_exhausts_memory(tmp_path, capsys, argv):
    code, _, err = cli(capsys, *argv, f"train.runs_dir={tmp_path}", "--dry-run")
    assert code == 2
    assert_one_line_error(err, "num_samples", "GiB of memory")


# --- clear errors where there was a traceback or a dead end ---------------------------------------

def test_eval_of_a_generator_with_nan_weights_is_one_line_regression_linalgerror_traceback(tmp_path, capsys):
    train(tiny(tmp_path, "train.name=nan"))
    folder = tmp_path / "nan" / "checkpoints"
    found = ckpt.load_latest(folder)
    for tensor in found.state["ema"].values():
        if tensor.is_floating_point():
            tensor.fill_(float("nan"))
    record = {key: found.record[key] for key in ("config", "negaug_version", "torch_version", "time")}
    ckpt.save(folder, found.step, found.state, record)  # a forged but well-formed checkpoint
    code, _, err = cli(capsys, "eval", str(tmp_path / "nan"), "--metrics", "fid", "--feature-extractor", "raw",
                       "--num-samples", "16", "--no-plots", "--quiet")
    assert code == 2
    assert_one_line_error(err, "produces non-finite samples")


def _pretrain_run(tmp_path) -> Path:
    from negaug.experiment.pretrain import pretrain
    from test_pretrain import tiny as tiny_pretrain

    pretrain(tiny_pretrain(tmp_path, "train.name=p"))
    return tmp_path / "p"


@pytest.mark.parametrize("argv, expected", [
    (["train", "--resume", "{run}", "train.steps=99"], "negaug pretrain --resume"),
    (["eval", "{run}"], "negaug probe"),
    (["anomaly", "{run}"], "negaug probe"),
])
def test_a_run_of_another_kind_names_its_kind_and_command_regression_no_usable_checkpoint(
        tmp_path, capsys, argv, expected):
    run = _pretrain_run(tmp_path)
    capsys.readouterr()
    code, _, err = cli(capsys, *[a.replace("{run}", str(run)) for a in argv])
    assert code == 2
    assert_one_line_error(err, "contrastive pretraining", expected)


def test_eval_checkpoint_must_be_in_checkpoints_or_best_regression_a_copy_in_samples_accepted(tmp_path, capsys):
    import shutil

    train(tiny(tmp_path, "train.name=r"))
    run = tmp_path / "r"
    step = ckpt.list_steps(run / "checkpoints")[-1]
    for suffix in (".json", ".safetensors"):
        shutil.copy(run / "checkpoints" / f"{ckpt.stem(step)}{suffix}", run / "samples" / f"{ckpt.stem(step)}{suffix}")
    code, _, err = cli(capsys, "eval", str(run), "--checkpoint", str(run / "samples" / f"{ckpt.stem(step)}.json"),
                       "--metrics", "kde", "--num-samples", "16", "--no-plots", "--quiet")
    assert code == 2
    assert_one_line_error(err, "checkpoints/ or checkpoints/best/")


@pytest.mark.parametrize("call, culprit", [
    (lambda: __import__("negaug").nda.build("jigsaw")(torch.rand(4, 3, 8, 8), generator=5), "generator"),
    (lambda: __import__("negaug").data.build("dots", num_samples=8).get_batch("a"), "get_batch index"),
    (lambda: __import__("negaug").data.build("dots", num_samples=8).get_batch(torch.tensor([99])), "get_batch index 99"),
    (lambda: __import__("negaug").data.build("dots", num_samples=8).subset([99]), "index 99"),
    (lambda: __import__("negaug").metrics.evaluate_samples("x", torch.rand(4, 2), ["toy"]), "evaluate_samples fake"),
    (lambda: __import__("negaug").metrics.evaluate_samples(torch.rand(4, 2), torch.rand(4, 2), ["kde"], seed="a"),
     "evaluate_samples seed"),
    (lambda: __import__("negaug").experiment.load_config(5), "load_config source"),
    (lambda: __import__("negaug").experiment.load_config("default", "train.steps=3"), "load_config overrides"),
    (lambda: __import__("negaug").experiment.train("default"), "train needs a Config"),
    (lambda: __import__("negaug").viz.make_grid(torch.rand(2, 1, 4, 4), scale=0), "scale=0"),
])
def test_every_error_names_its_culprit_regression_cosmetic_rows(call, culprit):
    with pytest.raises(ValueError, match=culprit):
        call()


def test_a_truncated_image_error_names_the_file_regression_image_file_is_truncated(tmp_path):
    from PIL import Image

    from negaug.data.images import read_image

    Image.new("RGB", (64, 64), (10, 20, 30)).save(tmp_path / "a.jpg")
    data = (tmp_path / "a.jpg").read_bytes()
    (tmp_path / "a.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"a\.jpg cannot be decoded"):
        read_image(tmp_path / "a.jpg", "RGB")


# --- fuzz: image files and the two caches ---------------------------------------------------------

def _mutations(data: bytes, rng, count: int):
    from test_hardening import _mutations as checkpoint_mutations

    yield from (mutated for _, mutated in checkpoint_mutations(data, rng, count))
    yield bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 300)))  # random bytes


def test_fuzz_damaged_image_files_build_or_are_one_line_naming_the_file(tmp_path):
    import random

    from negaug import data

    rng = random.Random(25)
    for suffix in (".png", ".jpg"):
        root = _folder(tmp_path / suffix.strip("."), per_class=(3, 3), suffix=suffix)
        victim = root / "class1" / f"001{suffix}"
        good = victim.read_bytes()
        for damaged in _mutations(good, rng, 12):
            victim.write_bytes(damaged)
            try:
                dataset = data.build("image_folder", root=root, split="all", image_size=8, in_memory=True)
            except ValueError as err:
                assert str(victim) in str(err) and "\n" not in str(err), err
                continue
            images, _ = dataset.get_batch(torch.arange(len(dataset)))
            assert torch.isfinite(images).all() and images.abs().max() <= 1


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I", "I;16", "F"])
def test_fuzz_image_modes_are_read_from_their_real_mode(tmp_path, mode):
    import numpy as np
    from PIL import Image

    from negaug.data.images import read_image

    grey = np.tile(np.arange(16, dtype=np.uint8) * 17, (16, 1))  # 0 .. 255 across
    scale = {"I": 257, "I;16": 257, "F": 1 / 255}.get(mode)
    if scale is None:
        image = Image.fromarray(grey, "L").convert(mode)
    else:
        image = Image.fromarray((grey.astype(np.float64) * scale).astype(np.float32 if mode == "F" else np.int32 if mode == "I" else np.uint16),
                                mode if mode != "I;16" else None)
    path = tmp_path / ("x.tiff" if mode in ("CMYK", "F", "I") else "x.png")
    image.save(path)
    out = np.asarray(read_image(path, "L"), dtype=np.float64)
    if mode == "1":  # thresholded to black and white
        assert set(np.unique(out)) <= {0.0, 255.0}
    elif mode != "CMYK":  # CMYK -> L is PIL's colour conversion, not the identity
        np.testing.assert_allclose(out, grey, atol=2)


def test_fuzz_damaged_classifier_caches_give_the_same_weights_or_one_line(tmp_path):
    import random

    rng = random.Random(7)
    _, meta = _tiny_classifier(tmp_path)
    weights = next((tmp_path / "classifiers").glob("tiny-*.safetensors"))
    for path in (weights, weights.with_suffix(".json")):
        good = path.read_bytes()
        for damaged in list(_mutations(good, rng, 4)):
            path.write_bytes(damaged)
            _, again = _tiny_classifier(tmp_path)
            assert again["weights_sha256"] == meta["weights_sha256"]
            assert again["cached"] or str(weights) in again["cache_note"]


def test_fuzz_damaged_repro_run_caches_are_retrained_to_the_same_checkpoint(tmp_path):
    import random

    from negaug.repro import common, toy

    rng = random.Random(3)
    study = common.Study(tmp_path, "tiny", [0])
    arm = toy.arms("tiny")[0]
    first = common.train_arm(study, arm, 0, "toy")
    folder = first.run_dir / "checkpoints"
    newest = ckpt.list_steps(folder)[-1]
    expected = ckpt.load_file(folder / f"{ckpt.stem(newest)}.json").record["tensor_sha256"]
    for suffix in (".safetensors", ".json"):
        path = folder / f"{ckpt.stem(newest)}{suffix}"
        for damaged in list(_mutations(path.read_bytes(), rng, 2)):
            path.write_bytes(damaged)
            common.train_arm(study, arm, 0, "toy")
            assert ckpt.load_latest(folder).step == newest
            assert ckpt.load_file(folder / f"{ckpt.stem(newest)}.json").record["tensor_sha256"] == expected


# --- found by attacking the result again --------------------------------------------------------

@pytest.mark.parametrize("name", ["eval.json", "report.md"])
def test_a_symlinked_results_file_is_refused_before_the_work(tmp_path, capsys, name):
    """Re-attack: eval.json / repro's report.md as a symlink was refused only after the work."""
    victim = tmp_path / "victim.txt"
    victim.write_text("mine")
    if name == "eval.json":
        train(tiny(tmp_path, "train.name=r"))
        (tmp_path / "r" / name).symlink_to(victim)
        argv = ["eval", str(tmp_path / "r"), "--metrics", "kde", "--num-samples", "16", "--no-plots", "--quiet"]
    else:
        (tmp_path / "out").mkdir()
        (tmp_path / "out" / name).symlink_to(victim)
        argv = ["repro", "toy", "--tiny", "--out", str(tmp_path / "out")]
    code, _, err = cli(capsys, *argv)
    assert code == 2
    assert_one_line_error(err, "symbolic link", name)
    assert victim.read_text() == "mine" and not (tmp_path / "out" / "runs").exists()


def test_a_fifo_as_celebas_partition_file_is_one_line(tmp_path):
    """Re-attack: list_eval_partition.txt as a FIFO hung the CelebA reader."""
    import signal

    from negaug import data

    (tmp_path / "celeba" / "img_align_celeba").mkdir(parents=True)
    os.mkfifo(tmp_path / "celeba" / "list_eval_partition.txt")
    signal.signal(signal.SIGALRM, lambda *_: pytest.fail("hung on a FIFO"))
    signal.alarm(20)
    try:
        with pytest.raises(ValueError, match="list_eval_partition.txt is not a regular file"):
            data.build("celeba", root=tmp_path)
    finally:
        signal.alarm(0)


def test_a_hard_linked_run_lock_is_refused(tmp_path, capsys):
    """Re-attack: O_NOFOLLOW does not see a hard link; the PID written into the lock replaced the
    linked file's content."""
    train(tiny(tmp_path, "train.name=r"))
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    lock = tmp_path / "r" / runs.LOCK_FILE
    lock.unlink()
    os.link(notes, lock)
    code, _, err = cli(capsys, "train", "--resume", str(tmp_path / "r"), "train.steps=6")
    assert code == 2
    assert_one_line_error(err, "hard link", str(lock))
    assert notes.read_text() == "my notes"


@pytest.mark.parametrize("where", ["metrics", "checkpoint"])
def test_a_full_disk_before_the_first_checkpoint_advises_a_new_start_regression_resume_that_fails(
        tmp_path, capsys, monkeypatch, where):
    import errno

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "full"))

    if where == "metrics":
        monkeypatch.setattr(runs.MetricsLog, "write", full_disk)
    else:
        monkeypatch.setattr(ckpt, "save", full_disk)
    code, _, err = cli(capsys, "train", *TINY, f"train.runs_dir={tmp_path}", "train.name=full")
    assert code == 1
    line = err.strip().splitlines()[-1]
    assert "No space left on device" in line and "start" in line and "--resume" not in line, err
    assert ckpt.list_steps(tmp_path / "full" / "checkpoints") == []
    code, _, err = cli(capsys, "train", "--resume", str(tmp_path / "full"), "train.steps=6")
    assert code == 2  # what the old advice suggested: there is nothing to resume
