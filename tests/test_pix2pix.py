"""Pix2Pix with NDA (Table 4): the U-Net and PatchGAN, the paired data, the segmentation metrics,
the NDA negatives' pairing, and `negaug train pix2pix-scenes` / `negaug eval` end to end."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from negaug.cli import main
from negaug.data.paired import (
    IGNORE,
    SCENE_PALETTE,
    PairedDataset,
    build_paired,
    cityscapes,
    nearest_palette_classes,
    render_scenes,
)
from negaug.experiment import checkpoint as ckpt
from negaug.experiment.translate import score_pairs, train_translation, translation_step
from negaug.experiment.translate_build import build_translation
from negaug.experiment.translate_config import (
    is_translation_run,
    is_translation_source,
    load_translation_config,
)
from negaug.metrics.segmentation import (
    confusion_matrix,
    score_translation,
    segmentation_scores,
)
from negaug.models import is_batch_dependent
from negaug.models.pix2pix import PatchDiscriminator, UNetGenerator, build_pix2pix

TINY = ["data.batch_size=4", "data.options={num_samples: 24}", "model.width=4", "train.steps=4",
        "train.progress=false", "train.log_every=1", "train.sample_every=2", "train.checkpoint_every=2",
        "train.num_sample_images=2", "train.device=cpu"]


def tiny(tmp_path, *extra):
    return load_translation_config("pix2pix-scenes", [*TINY, f"train.runs_dir={tmp_path}", *extra])


# --- models -----------------------------------------------------------------------------------

@pytest.mark.parametrize("size, patches, dropout_blocks", [(32, 2, 0), (64, 6, 1), (256, 30, 3)])
def test_generator_and_patch_map_shapes_follow_the_image_size(size, patches, dropout_blocks):
    G, D = build_pix2pix(size, 3, 3, width=4)
    c = torch.randn(2, 3, size, size)
    y = G(c)
    assert y.shape == (2, 3, size, size) and y.abs().max() <= 1
    assert D(y, c).shape == (2, 1, patches, patches) == (2, 1, D.patch_size(size), D.patch_size(size))
    assert G.num_downs == size.bit_length() - 1  # down to a 1x1 bottleneck
    assert sum(isinstance(m, torch.nn.Dropout) for m in G.modules()) == dropout_blocks  # official num_downs - 5
    assert D.receptive_field() == 70  # the 70x70 PatchGAN: at 64 px one score sees the whole image


@pytest.mark.parametrize("norm", ["instance", "batch", "none"])
def test_every_parameter_gets_a_gradient(norm):
    G, D = build_pix2pix(64, 3, 3, width=4, norm=norm)
    c = torch.randn(2, 3, 64, 64)
    (D(G(c), c).mean()).backward()
    missing = [name for name, p in [*G.named_parameters(), *D.named_parameters()] if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


@pytest.mark.parametrize("norm", ["instance", "batch"])
def test_bf16_autocast_and_channels_last_match_fp32(norm):
    """The generic model checks for bf16 and channels_last: same shapes, finite, close to fp32
    (bf16 keeps ~3 significant digits), and every parameter still gets a gradient."""
    torch.manual_seed(0)
    G, D = build_pix2pix(64, 3, 3, width=4, norm=norm)
    G.eval()  # dropout off: the two passes must see the same network
    c = torch.randn(2, 3, 64, 64)
    reference = D(G(c), c)
    G.to(memory_format=torch.channels_last)
    D.to(memory_format=torch.channels_last)
    c_last = c.contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = G(c_last)
        scores = D(y, c_last)
    assert y.shape == (2, 3, 64, 64) and scores.shape == reference.shape
    assert torch.isfinite(scores.float()).all()
    assert 0 < (scores.float() - reference).abs().max() < 0.1 * reference.abs().max() + 0.05
    scores.float().mean().backward()
    assert all(p.grad is not None for p in [*G.parameters(), *D.parameters()])


@pytest.mark.parametrize("norm, dependent", [("instance", False), ("batch", True), ("none", False)])
def test_batch_dependent_is_declared_truthfully(norm, dependent):
    torch.manual_seed(0)
    D = PatchDiscriminator(6, width=4, norm=norm)
    x = torch.randn(4, 6, 64, 64)
    alone = D.model(x[:2])
    together = D.model(x)[:2]
    assert D.batch_dependent is dependent and is_batch_dependent(D) is dependent
    assert (not torch.allclose(alone, together, atol=1e-5)) is dependent
    G = UNetGenerator(64, 3, 3, width=4, norm=norm, dropout=0.0)
    assert (not torch.allclose(G(x[:2, :3]), G(x[:, :3])[:2], atol=1e-5)) is dependent


def test_bad_model_options_are_named():
    with pytest.raises(ValueError, match="power of two"):
        UNetGenerator(48, 3, 3)
    with pytest.raises(ValueError, match="norm"):
        build_pix2pix(64, 3, 3, norm="layer")


# --- data -------------------------------------------------------------------------------------

def test_scenes_are_determined_by_the_seed_and_splits_differ():
    a, b = build_paired("scenes", split="train", num_samples=20), build_paired("scenes", split="train", num_samples=20)
    assert torch.equal(a.conditions, b.conditions) and torch.equal(a.classes, b.classes)
    other = build_paired("scenes", split="train", num_samples=20, seed=1)
    test = build_paired("scenes", split="test", num_samples=20)
    assert not torch.equal(a.conditions, other.conditions) and not torch.equal(a.conditions, test.conditions)
    photos, maps = render_scenes.__wrapped__(40, 64, 7)  # uncached: rendered again, same pixels
    again = render_scenes.__wrapped__(40, 64, 7)
    assert torch.equal(photos, again[0]) and torch.equal(maps, again[1])
    assert torch.equal(render_scenes.__wrapped__(5, 64, 7)[0], photos[:5])  # scene i does not depend on n


def test_scene_label_images_are_the_palette_colours_of_their_classes():
    data = build_paired("scenes", split="test", num_samples=16)
    photos, targets = data.get_batch(torch.arange(16))
    assert photos.shape == targets.shape == (16, 3, 64, 64)
    assert torch.equal(nearest_palette_classes(targets, data.palette), data.class_maps(torch.arange(16)))
    shares = torch.bincount(data.classes.flatten().long(), minlength=8).float() / data.classes.numel()
    assert (shares > 0.005).all() and shares.max() < 0.5  # every class occurs, none dominates
    assert photos.std() > 0.2  # photos, not flat colour fields


def test_nearest_palette_classes_exact_and_tolerance():
    palette = torch.tensor([[0, 0, 0], [255, 0, 0], [0, 0, 255]])
    image = torch.tensor([[[10, 0, 0], [200, 10, 10], [0, 0, 100], [0, 0, 220]]], dtype=torch.uint8)  # (1, 4, 3)
    image = image.permute(0, 2, 1).unsqueeze(2)  # (1, 3, 1, 4)
    assert nearest_palette_classes(image, palette).tolist() == [[[0, 1, 0, 2]]]
    assert nearest_palette_classes(image, palette, tolerance=60).tolist() == [[[0, 1, IGNORE, 2]]]
    as_float = image.float() / 127.5 - 1  # the same pixels as G would output them
    assert nearest_palette_classes(as_float, palette).tolist() == [[[0, 1, 0, 2]]]


def _write_pair(path: Path, photo_rgb, label_rgb, size=8):
    import numpy as np
    from PIL import Image

    pair = np.zeros((size, 2 * size, 3), dtype=np.uint8)
    pair[:, :size] = photo_rgb
    pair[:, size:] = label_rgb
    pair[: size // 2, size:] = (70, 130, 180)  # sky on the top half of the label map
    Image.fromarray(pair).save(path)


def test_cityscapes_pix2pix_layout_reads_photo_left_label_right(tmp_path):
    for split, count in (("train", 3), ("val", 2)):
        (tmp_path / split).mkdir()
        for i in range(count):
            _write_pair(tmp_path / split / f"{i}.png", (10 * i, 20, 30), (128, 64, 128))  # road below
    train = cityscapes(root=str(tmp_path), split="train", image_size=16)
    test = cityscapes(root=str(tmp_path), split="test", image_size=16)
    assert len(train) == 3 and len(test) == 2 and train.image_size == 16 and train.num_classes == 19
    classes = train.class_maps(torch.arange(3))
    assert (classes[:, :8] == 10).all() and (classes[:, 8:] == 0).all()  # sky is class 10, road 0
    assert train.conditions[1, 0, 0, 0] == 10 and train.conditions[0, 1, 0, 0] == 20  # the photo is the left half
    with pytest.raises(FileNotFoundError, match="never downloads"):
        cityscapes(root=str(tmp_path / "absent"))


def test_cityscapes_void_colours_are_ignored(tmp_path):
    (tmp_path / "train").mkdir()
    _write_pair(tmp_path / "train" / "a.png", (0, 0, 0), (81, 0, 81))  # 'ground', a void class
    data = cityscapes(root=str(tmp_path), split="train", image_size=16)
    assert (data.class_maps(torch.arange(1))[:, 8:] == IGNORE).all()


# --- metrics ------------------------------------------------------------------------------------

def test_segmentation_scores_exact_on_a_hand_made_case():
    truth = torch.tensor([[0, 0, 0, 1], [1, 2, 2, IGNORE]])
    predicted = torch.tensor([[0, 0, 1, 1], [0, 2, 3, 0]])
    confusion = confusion_matrix(predicted, truth, 4)
    assert confusion.tolist() == [[2, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 0, 0]]
    scores = segmentation_scores(confusion)
    assert scores["pixel_accuracy"] == pytest.approx(4 / 7, abs=1e-12)
    assert scores["class_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 1 / 2) / 3, abs=1e-12)  # class 3 absent in truth
    # IoU: class 0: 2 / (3 + 3 - 2), 1: 1 / (2 + 2 - 1), 2: 1 / (2 + 1 - 1), 3: 0 / (0 + 1 - 0) (predicted only)
    assert scores["mean_iou"] == pytest.approx((2 / 4 + 1 / 3 + 1 / 2 + 0) / 4, abs=1e-12)
    assert scores["num_classes_in_truth"] == 3 and scores["num_classes_in_union"] == 4


def test_segmentation_scores_perfect_and_constant_predictions():
    truth = torch.tensor([0, 0, 0, 1, 2, 2])
    perfect = segmentation_scores(confusion_matrix(truth, truth, 5))
    assert perfect["pixel_accuracy"] == perfect["class_accuracy"] == perfect["mean_iou"] == 1.0
    constant = segmentation_scores(confusion_matrix(torch.zeros_like(truth), truth, 5))
    assert constant["pixel_accuracy"] == 0.5 and constant["class_accuracy"] == pytest.approx(1 / 3)
    assert constant["mean_iou"] == pytest.approx(0.5 / 3)  # class 0: 3 / 6; classes 1, 2: 0


def test_confusion_is_the_same_batched_or_in_chunks():
    gen = torch.Generator().manual_seed(0)
    truth, predicted = torch.randint(0, 6, (4, 9, 9), generator=gen), torch.randint(0, 6, (4, 9, 9), generator=gen)
    whole = confusion_matrix(predicted, truth, 6)
    parts = sum(confusion_matrix(p, t, 6) for p, t in zip(predicted, truth))
    assert torch.equal(whole, parts) and whole.sum() == truth.numel()


def test_score_translation_of_a_perfect_generator_is_one():
    data = build_paired("scenes", split="test", num_samples=8)
    oracle = lambda photos: data.get_batch(torch.arange(len(photos)))[1]
    scores = score_translation(oracle, data, batch_size=8)
    assert scores["pixel_accuracy"] == scores["class_accuracy"] == scores["mean_iou"] == 1.0
    assert 0 < scores["majority_pixel_accuracy"] < 0.5


# --- NDA in the training step ---------------------------------------------------------------------

def test_negatives_are_nda_of_the_real_target_with_its_true_condition(tmp_path, monkeypatch):
    recipe, state = build_translation(tiny(tmp_path, "nda.transform=jigsaw"))
    seen = []
    original = score_pairs

    def spy(recipe, discriminator, parts):
        seen.append([(x.clone(), c.clone()) for x, c in parts])
        return original(recipe, discriminator, parts)

    monkeypatch.setattr("negaug.experiment.translate.score_pairs", spy)
    stream = state.batches.state_dict()
    rng = state.nda_rng.get_state()
    translation_step(recipe, state, 1)
    state.batches.load_state_dict(stream)
    condition, target = state.batches.next()
    expected = recipe.negative(target, generator=torch.Generator().set_state(rng))
    (real, real_c), (_, fake_c), (negative, negative_c) = seen[0]
    assert torch.equal(real, target) and torch.equal(negative, expected) and not torch.equal(negative, target)
    assert torch.equal(real_c, condition) and torch.equal(fake_c, condition) and torch.equal(negative_c, condition)
    assert len(seen[1]) == 1  # the G step never sees negatives
    assert {"d_out/negative", "loss/d_neg"} <= set(state.stats.collect())


# --- end to end ---------------------------------------------------------------------------------------

def _tensors(path: Path) -> dict[str, torch.Tensor]:
    return ckpt.load_file(path).state


def test_cli_trains_resumes_exactly_and_evaluates(tmp_path, capsys):
    args = [*TINY, f"train.runs_dir={tmp_path}", "nda.transform=jigsaw"]
    assert main(["train", "pix2pix-scenes", *args, "train.name=whole"]) == 0
    assert main(["train", "pix2pix-scenes", *args, "train.name=cut", "train.steps=2"]) == 0
    assert main(["train", "--resume", str(tmp_path / "cut"), "train.steps=4"]) == 0
    whole, cut = _tensors(tmp_path / "whole/checkpoints/step_0000004.json"), _tensors(tmp_path / "cut/checkpoints/step_0000004.json")
    for part in ("generator", "discriminator"):
        for key, value in whole[part].items():
            assert torch.equal(value, cut[part][key]), (part, key)
    folder = tmp_path / "whole"
    assert (folder / "samples/step_0000004.png").is_file() and "Segmentation scores" in (folder / "report.md").read_text()
    assert is_translation_run(folder) and is_translation_source("pix2pix-scenes") and not is_translation_source("default")
    capsys.readouterr()
    assert main(["eval", str(folder), "--device", "cpu"]) == 0
    assert "mean IoU" in capsys.readouterr().out
    entry = json.loads((folder / "eval.json").read_text())["evaluations"][-1]
    logged = [r["eval"] for r in map(json.loads, (folder / "metrics.jsonl").read_text().splitlines()) if "eval" in r][-1]
    assert entry["results"]["segmentation"]["pixel_accuracy"] == logged["pixel_accuracy"]
    # regression (review): --split was ignored for pix2pix runs and the test split scored
    assert main(["eval", str(folder), "--device", "cpu", "--split", "val"]) == 0
    assert "val split" in capsys.readouterr().out
    entry = json.loads((folder / "eval.json").read_text())["evaluations"][-1]
    assert entry["results"]["segmentation"]["protocol"]["split"] == "val"
    # eval.every=0 (the default): no validation scores, no best checkpoint, the checkpoint layout of before
    assert not (folder / "checkpoints/best").exists() and "best" not in whole
    assert not any("eval_val" in r for r in map(json.loads, (folder / "metrics.jsonl").read_text().splitlines()))


@pytest.mark.parametrize("flags", [["--seed", "3"], ["--seed", "0"], ["--download"], ["--force"]])
def test_eval_flags_a_pix2pix_run_would_ignore_are_refused(tmp_path, capsys, flags):
    """Bug: `negaug eval RUN --seed 3` (and --download, --force) on a pix2pix run exited 0 with the
    same scores as without it: the G is scored in eval mode without latents, from local data."""
    assert main(["train", "pix2pix-scenes", *TINY, "train.steps=2", f"train.runs_dir={tmp_path}", "train.name=r"]) == 0
    capsys.readouterr()
    code = main(["eval", str(tmp_path / "r"), "--device", "cpu", *flags])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and f"{flags[0]} apply to GAN runs only" in lines[0], lines
    assert not (tmp_path / "r/eval.json").exists()


def test_a_yaml_file_based_on_the_preset_is_a_pix2pix_run(tmp_path, capsys):
    config = tmp_path / "mine.yaml"
    config.write_text("base: pix2pix-scenes\nmodel: {width: 4}\n")
    assert is_translation_source(str(config))
    assert main(["train", str(config), *TINY, f"train.runs_dir={tmp_path}", "train.name=r", "--dry-run"]) == 0
    assert "kind: pix2pix" in capsys.readouterr().out and not (tmp_path / "r").exists()


@pytest.mark.parametrize("override, expected", [
    ("model.widht=4", "model.widht"), ("nda.lam=0", "nda.lam"), ("loss.gan=wgan-gp", "loss.gan"),
    ("nda.transform=jigsaw nda.options={k: 5}", "nda"), ("data.name=cityscape", "data"),
    ("model.norm=layer", "model"), ("loss.l1_weight=-1", "loss.l1_weight"), ("data.image_size=48", "image_size"),
    ("train.precision=fp16", "train.precision=fp16 needs a GPU; on the CPU use train.precision=bf16"),
    ("train.precision=fp64", "train.precision='fp64' is not one of fp32, bf16, fp16"),
    ("train.compile=maybe", "train.compile"),
    ("eval.best_metric=fid", "eval.best_metric='fid' is not a segmentation score; valid: pixel_accuracy, "
                             "class_accuracy, mean_iou"),
    ("eval.every=-1", "eval.every=-1 must be >= 0"),
])
def test_bad_values_are_one_line_exit_2_before_any_folder(tmp_path, capsys, override, expected):
    code = main(["train", "pix2pix-scenes", *TINY, f"train.runs_dir={tmp_path}", *override.split(" ")])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("negaug: error:") and expected in lines[0], err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_a_short_run_learns_beyond_the_majority_class(tmp_path):
    """Quality gate: 60 steps of L1 + cGAN on 64 px scenes beat predicting the most frequent class
    (about 0.29 of the pixels) and an untrained G clearly (measured: pixel accuracy 0.39)."""
    config = load_translation_config("pix2pix-scenes", [
        "data.options={num_samples: 128}", "data.batch_size=8", "model.width=8", "train.steps=60",
        "train.progress=false", "train.sample_every=0", "train.checkpoint_every=0", "train.device=cpu",
        f"train.runs_dir={tmp_path}", "train.name=q", "eval.num_samples=32"])
    recipe, state = build_translation(config)
    untrained = score_translation(state.generator.eval(), recipe.test_dataset, 32)
    result = train_translation(config)
    print({k: (untrained[k], result.scores[k]) for k in ("pixel_accuracy", "class_accuracy", "mean_iou")})
    assert untrained["pixel_accuracy"] < 0.3
    assert result.scores["pixel_accuracy"] > result.scores["majority_pixel_accuracy"] + 0.07
    assert result.scores["pixel_accuracy"] > untrained["pixel_accuracy"] + 0.1
    assert result.scores["mean_iou"] > untrained["mean_iou"] + 0.05


def test_paired_dataset_checks_shapes():
    with pytest.raises(ValueError, match="class maps"):
        PairedDataset(torch.zeros(2, 3, 8, 8), torch.zeros(2, 4, 4), SCENE_PALETTE, ["a"] * 8)


def test_docs_pix2pix_python_snippet_runs(tmp_path, monkeypatch):
    """docs/pix2pix.md's Python block runs as written, at a tiny size (its config loader is given
    the tiny overrides; everything else is the snippet's own code)."""
    import re
    from pathlib import Path

    import negaug.experiment.translate_config as translate_config

    page = (Path(__file__).resolve().parents[1] / "docs" / "pix2pix.md").read_text()
    (block,) = re.findall(r"```python\n(.*?)```", page, re.S)
    real = translate_config.load_translation_config
    monkeypatch.setattr(translate_config, "load_translation_config",
                        lambda source, overrides=(): real(source, [*TINY, f"train.runs_dir={tmp_path}", *overrides]))
    monkeypatch.chdir(tmp_path)
    printed = []
    exec(block, {"print": lambda *args: printed.append(args)})
    (values,) = printed
    assert all(0.0 <= v <= 1.0 for v in values)


def test_scenes_have_a_validation_split_of_their_own_scenes():
    """Issue 23: the paired scenes get a val split (for anything that selects), drawn from its own
    seed: no scene is in two splits, and train / test are the scenes they were before val existed."""
    from negaug.data.paired import SCENE_SIZES, scenes

    assert SCENE_SIZES == {"train": 2000, "val": 200, "test": 500}
    import hashlib
    for split, digest in (("train", "593bf781b790ce26"), ("test", "7b18bc14762d7bc9")):  # the pairs of d829a1b (before val)
        pairs = scenes(split=split, num_samples=8, image_size=16)
        assert hashlib.sha256(pairs.conditions.numpy().tobytes() + pairs.classes.numpy().tobytes()).hexdigest()[:16] == digest
    parts = {split: scenes(split=split, num_samples=64, image_size=16) for split in ("train", "val", "test")}
    flat = {split: data.conditions.flatten(1) for split, data in parts.items()}  # the photos, uint8
    for a, b in (("train", "val"), ("val", "test"), ("train", "test")):
        assert torch.cdist(flat[a].float(), flat[b].float()).min() > 0, (a, b)
    again = scenes(split="val", num_samples=64, image_size=16)
    assert torch.equal(again.conditions, parts["val"].conditions) and torch.equal(again.classes, parts["val"].classes)


# --- train.precision and train.compile (issue 24: as GAN runs and MoCo-v2 have them) -------------

HASH_BEFORE = {  # config_hash at 54dc103, before train.precision and train.compile existed
    (): "81f2a5067494508ff39c9a58a2ce68ee0af74ad2d700709c172ae88acfbcdc06",
    ("nda.transform=jigsaw", "loss.l1_weight=0"): "070cad53a9e48f3b152ea88d7205b842b1018869427352ec772ef9ff4b308948",
}


def test_precision_and_compile_round_trip_and_keep_the_hash_of_older_runs(tmp_path):
    from negaug.experiment.config import config_from_dict, learning_settings
    from negaug.experiment.translate_config import TranslationConfig
    from negaug.repro.common import config_hash

    config = tiny(tmp_path, "train.precision=bf16", "train.compile=true")
    (tmp_path / "c.yaml").write_text(config.to_yaml())
    again = load_translation_config(str(tmp_path / "c.yaml"))
    assert (again.train.precision, again.train.compile) == ("bf16", True)
    assert learning_settings(again) == learning_settings(config)
    assert learning_settings(config)["train"]["precision"] == "bf16"  # on: in the hash (bf16 learns otherwise)
    for overrides, expected in HASH_BEFORE.items():
        now = load_translation_config("pix2pix-scenes", list(overrides))
        assert "precision" not in learning_settings(now)["train"] and "compile" not in learning_settings(now)["train"]
        assert config_hash(now) == expected  # the cached runs of `negaug repro pix2pix` keep their names
        with_val = load_translation_config("pix2pix-scenes", [*overrides, "eval.every=100", "eval.best_metric=pixel_accuracy"])
        assert config_hash(with_val) == expected  # the eval section is not in the hash
        stored = now.to_dict()  # a record written before the keys existed
        del stored["train"]["precision"], stored["train"]["compile"]
        assert config_hash(config_from_dict(stored, TranslationConfig)) == expected


def _losses(run_dir: Path) -> list[dict]:
    return [r for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if "loss/d" in r]


def test_bf16_trains_finite_losses_close_to_fp32(tmp_path):
    """4 steps with Jigsaw NDA: every logged loss of bf16 within 2% of fp32's (measured: at most
    0.073% over the 4 steps and 7 losses, 1 thread), and not equal to it (autocast changed the arithmetic)."""
    logs = {}
    for precision in ("fp32", "bf16"):
        train_translation(tiny(tmp_path, "nda.transform=jigsaw", "train.sample_every=0", "eval.num_samples=8",
                               f"train.precision={precision}", f"train.name={precision}"))
        logs[precision] = _losses(tmp_path / precision)
    assert [r["step"] for r in logs["bf16"]] == [r["step"] for r in logs["fp32"]] == [1, 2, 3, 4]
    keys = ("loss/d", "loss/g", "loss/g_gan", "loss/l1", "loss/d_real", "loss/d_fake", "loss/d_neg")
    for fp32, bf16 in zip(logs["fp32"], logs["bf16"]):
        for key in keys:
            assert math.isfinite(bf16[key]) and bf16[key] == pytest.approx(fp32[key], rel=2e-2), (fp32["step"], key)
    assert any(bf16[key] != fp32[key] for fp32, bf16 in zip(logs["fp32"], logs["bf16"]) for key in keys)


@pytest.mark.parametrize("norm", ["instance", "batch"])
def test_bf16_autocast_reaches_every_convolution_of_g_and_d_in_channels_last(tmp_path, norm):
    recipe, state = build_translation(tiny(tmp_path, "nda.transform=jigsaw", "train.precision=bf16",
                                           f"model.norm={norm}"))
    seen: dict[str, set] = {"generator": set(), "discriminator": set()}
    handles = [module.register_forward_hook(lambda m, args, out, name=name: seen[name].add(out.dtype))
               for name in seen for module in getattr(state, name).modules()
               if isinstance(module, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    try:
        translation_step(recipe, state, 1)
    finally:
        for handle in handles:
            handle.remove()
    assert seen == {"generator": {torch.bfloat16}, "discriminator": {torch.bfloat16}}
    for network in (state.generator, state.discriminator):
        weights = [m.weight for m in network.modules() if isinstance(m, torch.nn.Conv2d)]
        assert weights and all(w.is_contiguous(memory_format=torch.channels_last) for w in weights)
        assert all(p.dtype == torch.float32 for p in network.parameters())  # fp32 master weights
    assert "scaler" not in state.state_dict()  # bf16 needs no grad scaler


# --- eval.every / eval.best_metric: the best checkpoint on the val split (issue 24) -------------

def _records(run_dir: Path, key: str) -> list[dict]:
    return [r for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if key in r]


def test_eval_every_scores_val_and_keeps_the_best_checkpoint(tmp_path, capsys):
    """eval.every=2 over 6 steps: val scores at steps 2, 4, 6; checkpoints/best/ holds the step with
    the highest mean IoU (the first on ties), whose G rescored on val gives the logged value exactly."""
    from negaug.experiment.translate import load_translation_run

    args = [*TINY, "train.steps=6", f"train.runs_dir={tmp_path}", "train.name=r", "eval.every=2", "eval.num_samples=8"]
    assert main(["train", "pix2pix-scenes", *args]) == 0
    folder = tmp_path / "r"
    records = _records(folder, "eval_val")
    assert [r["step"] for r in records] == [2, 4, 6]
    assert all(r["eval_val"]["protocol"]["split"] == "val" and r["eval_val"]["protocol"]["num_pairs"] == 8 for r in records)
    values = [r["eval_val"]["mean_iou"] for r in records]
    best_step = records[values.index(max(values))]["step"]
    assert [p.name for p in sorted((folder / "checkpoints/best").glob("step_*.json"))] == [f"step_{best_step:07d}.json"]
    loaded = load_translation_run(folder, "best")
    assert loaded.step == best_step
    rescored = score_translation(loaded.generator, build_paired("scenes", split="val", image_size=64, num_samples=24), 8)
    assert rescored["mean_iou"] == max(values)
    latest = _tensors(folder / "checkpoints/step_0000006.json")
    assert latest["best"] == {"metric": "mean_iou", "value": max(values), "step": best_step}
    assert f"mean_iou {max(values):.3f} at step {best_step}" in (folder / "report.md").read_text()
    capsys.readouterr()
    assert main(["eval", str(folder), "--device", "cpu", "--checkpoint", "best", "--split", "val",
                 "--num-samples", "8"]) == 0
    entry = json.loads((folder / "eval.json").read_text())["evaluations"][-1]
    assert entry["step"] == best_step and entry["results"]["segmentation"]["mean_iou"] == max(values)


def test_the_best_checkpoint_survives_resume(tmp_path, monkeypatch):
    """Scripted val scores 0.5, 0.7, 0.7, 0.4 at steps 2..8: the best is step 4 (a tie does not
    replace it), in a run cut at step 4 and resumed to 8 as in one run; the best folder holds the
    weights of step 4's checkpoint (kept from pruning)."""
    import negaug.experiment.translate as translate

    script, real = {2: 0.5, 4: 0.7, 6: 0.7, 8: 0.4}, translate.split_scores

    def scripted(config, recipe, state, dataset, split):
        if split != "val":  # the test split's scores at the end stay real
            return real(config, recipe, state, dataset, split)
        return {"mean_iou": script[state.step], "pixel_accuracy": 0.0, "class_accuracy": 0.0}

    monkeypatch.setattr(translate, "split_scores", scripted)
    args = [*TINY, f"train.runs_dir={tmp_path}", "eval.every=2", "train.sample_every=0"]
    assert main(["train", "pix2pix-scenes", *args, "train.name=cut"]) == 0  # TINY: 4 steps
    assert main(["train", "--resume", str(tmp_path / "cut"), "train.steps=8"]) == 0
    folder = tmp_path / "cut"
    assert [(r["step"], r["eval_val"]["mean_iou"]) for r in _records(folder, "eval_val")] == list(script.items())
    expected = {"metric": "mean_iou", "value": 0.7, "step": 4}
    assert _tensors(folder / "checkpoints/step_0000008.json")["best"] == expected
    best = _tensors(folder / "checkpoints/best/step_0000004.json")
    assert best["best"] == expected
    assert len(list((folder / "checkpoints/best").glob("step_*.json"))) == 1
    kept = _tensors(folder / "checkpoints/step_0000004.json")  # protected from keep_checkpoints=2
    for key, value in kept["generator"].items():
        assert torch.equal(value, best["generator"][key]), key


def test_eval_every_on_a_dataset_without_val_is_refused_before_any_folder(tmp_path, capsys):
    data = tmp_path / "data"
    for split in ("train", "val"):
        (data / split).mkdir(parents=True)
        _write_pair(data / split / "0.png", (10, 20, 30), (128, 64, 128))
    runs = tmp_path / "runs"
    code = main(["train", "pix2pix-scenes", *TINY, f"train.runs_dir={runs}", "data.name=cityscapes",
                 f"data.root={data}", "data.options={}", "data.image_size=16", "eval.every=2"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1, lines
    assert "eval.every=2 scores the val split, which data.name='cityscapes' does not have; set eval.every=0" in lines[0]
    assert not runs.exists()
