"""Numbers that mean what they say: feature spaces near chance, references the features were
trained on and sample counts too small for a metric are refused (or, forced, reported with
warnings); KID and precision/recall report the sample sizes they really used."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from negaug import data
from negaug.metrics import (
    default_metrics,
    evaluate_generator,
    evaluate_samples,
    find_metric,
    find_result,
    precision_recall,
    trust,
)
from negaug.metrics.kid import mmd2_unbiased

EPOCHS = 4


@pytest.fixture(autouse=True)
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("negaug_cache")


@pytest.fixture(scope="module")
def digits_test():
    return data.build("digits", split="test")  # 359 images, built by negaug.data.build


# --- the rules, on hand-checked inputs -------------------------------------------------------------

def test_minimum_accuracy_is_a_quarter_of_the_way_from_chance():
    assert trust.minimum_accuracy(4) == pytest.approx(0.4375, abs=1e-12)
    assert trust.minimum_accuracy(10) == pytest.approx(0.325, abs=1e-12)
    assert trust.minimum_accuracy(2) == pytest.approx(0.625, abs=1e-12)


@pytest.mark.parametrize("accuracy, refused", [(0.25, True), (0.43, True), (0.44, False), (0.97, False), (None, True)])
def test_check_feature_network_refuses_near_chance(accuracy, refused):
    meta = {"val_accuracy": accuracy, "num_outputs": 4, "task": "rotation"}
    if refused:
        with pytest.raises(ValueError, match="classifier features.*--force"):
            trust.check_feature_network(meta, trust.Flags(force=False))
        flags = trust.Flags(force=True)
        trust.check_feature_network(meta, flags)
        assert len(flags.warnings) == 1
    else:
        flags = trust.Flags(force=False)
        trust.check_feature_network(meta, flags)
        assert flags.warnings == []


def test_fingerprints_find_exactly_the_shared_images():
    images = torch.arange(5 * 12, dtype=torch.float32).reshape(5, 1, 3, 4) / 60
    reference = images[[0, 1, 2, 3]]
    training = torch.cat([images[[1]], images[[4]], images[[4]] + 1e-6])
    assert trust.shared_fraction(trust.fingerprints(reference), trust.fingerprints(training)) == 0.25
    batched = trust.fingerprints(iter(images.split(2)))  # batches give the same numbers as the whole
    assert torch.equal(batched, trust.fingerprints(images)) and batched.unique().numel() == 5


def test_fid_size_rule_is_one_sample_per_feature_dimension():
    flags = trust.Flags(force=False)
    trust.check_fid_sizes(64, 64, 64, "raw", flags)
    with pytest.raises(ValueError, match="at least 64 samples per set, got 63 generated vs 500 reference"):
        trust.check_fid_sizes(500, 63, 64, "raw", flags)


# --- evaluate_samples / evaluate_generator -----------------------------------------------------------

def test_bare_fid_is_only_the_standard_inception_fid():
    results = {"fid[classifier:mnist5k-1a2b3c4d]": {"metric": "fid", "value": 3.0}}
    assert find_result(results, "fid") is None
    assert find_metric(results, "fid")["value"] == 3.0
    results["fid"] = {"metric": "fid", "value": 9.0}
    assert find_result(results, "fid")["value"] == 9.0 and find_metric(results, "fid")["value"] == 9.0


def test_raw_fid_below_the_feature_dimension_is_refused_then_forced(digits_test):
    fake = digits_test.images[:63]  # 8x8 digits: 64 raw feature dimensions
    with pytest.raises(ValueError, match="needs at least 64 samples"):
        evaluate_samples(fake, digits_test, ["fid"], feature_extractor="raw")
    forced = evaluate_samples(fake, digits_test, ["fid", "kde"], feature_extractor="raw", force=True)
    assert forced["fid[raw]"]["warnings"] == ["FID in the 64-dimensional 'raw' features needs at least 64 samples "
                                              "per set, got 63 generated vs 359 reference"]
    assert "warnings" not in forced["kde"]
    fine = evaluate_samples(digits_test.images[:64], digits_test, ["fid"], feature_extractor="raw")
    assert "warnings" not in fine["fid[raw]"]


def test_classifier_defaults_to_the_reference_training_split_like_the_cli(digits_test, cache_dir):
    """From Python, without train_data=, the classifier trains on the training split of the
    reference (a dataset made by negaug.data.build): the same feature space the CLI builds."""
    options = dict(feature_extractor="classifier", cache_dir=cache_dir, classifier_epochs=EPOCHS)
    fake = digits_test.images[:200]
    implicit = evaluate_samples(fake, digits_test, ["fid"], **options)
    explicit = evaluate_samples(fake, digits_test, ["fid"], train_data=data.build("digits", split="train"), **options)
    assert list(implicit) == list(explicit) and list(implicit)[0].startswith("fid[classifier:digits-")
    (key, result), = implicit.items()
    assert result["value"] == explicit[key]["value"]
    assert result["protocol"]["features"]["trained_on"] == "the reference's training split"
    assert result["protocol"]["features"]["data_name"] == "digits"


def test_classifier_trained_on_the_reference_is_refused(digits_test, cache_dir):
    options = dict(feature_extractor="classifier", cache_dir=cache_dir, classifier_epochs=EPOCHS)
    train = data.build("digits", split="train")
    fake = digits_test.images[:200]
    with pytest.raises(ValueError, match="100% of the reference images are training images"):
        evaluate_samples(fake, train, ["fid"], train_data=train, **options)
    with pytest.raises(ValueError, match="need training images other than the reference"):
        evaluate_samples(fake, digits_test.images, ["fid"], **options)  # a bare tensor: no training split known
    forced = evaluate_samples(fake, digits_test.images, ["fid"], force=True, **options)
    (result,) = forced.values()
    assert result["protocol"]["features"]["trained_on"] == "the reference itself"
    assert any("100% of the reference images" in w for w in result["warnings"])
    assert any("other than the reference" in w for w in result["warnings"])


def test_dots_fid_in_a_chance_level_space_is_refused(cache_dir):
    """Regression: `negaug eval` printed fid 0.58 for pure noise on dots, whose rotation
    classifier had learned nothing (validation accuracy 0.246)."""
    reference = data.build("dots", split="test", count=3, num_samples=300, image_size=16)
    noise = torch.rand(300, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert default_metrics(reference) == ["dots"]
    with pytest.raises(ValueError, match=r"near chance: held-out accuracy 0\.\d+ on which of 4 rotations"):
        evaluate_samples(noise, reference, ["fid"], feature_extractor="classifier", cache_dir=cache_dir,
                         classifier_epochs=1)
    counted = evaluate_samples(noise, reference)  # the default: the dot count, which noise fails
    assert list(counted) == ["dots"] and counted["dots"]["value"] < 0.5 < counted["dots"]["reference_fraction"]


def test_kid_with_subsets_as_large_as_the_data_is_one_estimate(digits_test):
    """Regression: KID at n = subset size reported 100 identical subsets (std 0)."""
    fake = torch.flip(digits_test.images, dims=[3])
    result = evaluate_samples(fake, digits_test, ["kid"], feature_extractor="raw", kid_subset_size=1000)["kid[raw]"]
    assert result["protocol"]["kid_subsets"] == 1 and result["protocol"]["kid_subset_size"] == 359
    assert result["std"] is None and "kid_note" in result["protocol"]
    whole = mmd2_unbiased(digits_test.images.flatten(1)[None], fake.flatten(1)[None])
    torch.testing.assert_close(result["value"], float(whole), rtol=1e-9, atol=0)
    several = evaluate_samples(fake, digits_test, ["kid"], feature_extractor="raw", kid_subset_size=100,
                               kid_subsets=7)["kid[raw]"]
    assert several["protocol"]["kid_subsets"] == 7 and several["std"] > 0


def test_precision_recall_uses_equal_sizes(digits_test):
    """Regression: 10k generated vs 1k test gave recall from radii of a 10x denser set."""
    generator = torch.Generator().manual_seed(1)
    fake = digits_test.images[torch.randint(359, (1000,), generator=generator)]
    fake = fake + 0.05 * torch.randn(fake.shape, generator=generator)
    result = evaluate_samples(fake, digits_test, ["pr"], feature_extractor="raw", seed=5)["pr[raw]"]
    assert result["protocol"]["num_real_used"] == result["protocol"]["num_generated_used"] == 359
    rows = torch.randperm(1000, generator=torch.Generator().manual_seed(5))[:359]
    precision, recall = precision_recall(digits_test.images.flatten(1), fake[rows].flatten(1), 3)
    assert (result["precision"], result["recall"]) == (precision, recall)
    unequal = precision_recall(digits_test.images.flatten(1), fake.flatten(1), 3)
    assert unequal != (precision, recall)  # the sizes matter: what was reported before


def test_evaluate_generator_defaults_to_as_many_samples_as_the_reference():
    reference = data.build("ring", split="test", num_samples=300)
    results = evaluate_generator(lambda z: 2 * z, reference, ["kde"], latent_dim=2)
    assert results["kde"]["protocol"]["num_generated"] == 300 == results["kde"]["protocol"]["num_real"]


# --- held-out split of image folders ----------------------------------------------------------------

def write_folder(root, per_class=(20, 10)):
    for label, count in enumerate(per_class):
        folder = root / f"class{label}"
        folder.mkdir(parents=True)
        for index in range(count):
            pixels = np.full((6, 6, 3), (5 * index + label) % 256, dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{index:03d}.png")
    return root


def test_image_folder_has_a_fixed_held_out_split(tmp_path):
    root = write_folder(tmp_path / "images")
    train = data.build("image_folder", root=root, image_size=6, in_memory=True)
    test = data.build("image_folder", root=root, split="test", image_size=6, in_memory=True)
    everything = data.build("image_folder", root=root, split="all", image_size=6, in_memory=True)
    val = data.build("image_folder", root=root, split="val", image_size=6, in_memory=True)
    assert (len(train), len(val), len(test), len(everything)) == (24, 3, 3, 30)  # val: 10% of the 27 of train+val
    assert torch.bincount(test.labels).tolist() == [2, 1]  # 10% of each class
    fingerprint = trust.fingerprints
    assert trust.shared_fraction(fingerprint(test.images), fingerprint(train.images)) == 0.0
    assert trust.shared_fraction(fingerprint(val.images), fingerprint(train.images)) == 0.0
    again = data.build("image_folder", root=root, split="test", image_size=6, in_memory=True)
    assert torch.equal(again.images, test.images)  # fixed, not drawn anew
    assert data.other_split(test, "train").images.shape == train.images.shape


def test_image_folder_too_small_for_a_test_split_says_so(tmp_path):
    root = write_folder(tmp_path / "few", per_class=(3,))
    with pytest.raises(ValueError, match="too small for a held-out test split"):
        data.build("image_folder", root=root, split="test", image_size=6)


# --- training: the evaluations' feature space is checked before the run starts ----------------------

def test_training_with_a_chance_level_feature_space_stops_before_the_run_folder(tmp_path, monkeypatch):
    from negaug.cli import main

    monkeypatch.setenv("NEGAUG_CACHE", str(tmp_path / "cache"))
    argv = ["train", "dots", "data.options.num_samples=200", "data.image_size=16", "train.steps=4",
            "eval.every=2", "eval.metrics=[fid]", f"train.runs_dir={tmp_path / 'runs'}", "train.progress=false"]
    assert main([*argv, "--dry-run"]) == 2  # the dry run catches it too
    assert main(argv) == 2
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_eval_of_an_image_folder_run_uses_held_out_images_and_data_root(tmp_path, monkeypatch, capsys):
    """Regression: an image_folder run was evaluated against its own training images. Now the
    reference is the held-out 10%, and a moved data folder is found with --data-root."""
    import json

    from negaug.cli import main

    monkeypatch.setenv("NEGAUG_CACHE", str(tmp_path / "cache"))
    root = write_folder(tmp_path / "images", per_class=(40, 40))
    argv = ["train", "default", "data.name=image_folder", f"data.root={root}", "data.image_size=16",
            "data.options.channels=1", "data.batch_size=8", "model.options.width=4", "train.steps=2",
            "train.sample_every=0", "train.checkpoint_every=0", "train.progress=false", "train.name=folder",
            f"train.runs_dir={tmp_path / 'runs'}"]
    assert main(argv) == 0
    run = tmp_path / "runs" / "folder"
    moved = root.rename(tmp_path / "moved")
    capsys.readouterr()
    assert main(["eval", str(run), "--metrics", "kde", "--quiet", "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "does not exist" in err
    assert main(["eval", str(run), "--metrics", "kde", "--quiet", "--no-plots", "--data-root", str(moved)]) == 0
    (entry,) = json.loads((run / "eval.json").read_text())["evaluations"]
    protocol = entry["results"]["kde"]["protocol"]
    assert protocol["reference"] == "image_folder/test" and protocol["num_real"] == 8 == protocol["num_generated"]


def test_lazy_reference_counts_as_shared_only_when_built_like_the_training_data(tmp_path, cache_dir):
    root = write_folder(tmp_path / "images", per_class=(40, 40))
    train = data.build("image_folder", root=root, image_size=8)  # lazy: decoded on demand
    test = data.build("image_folder", root=root, split="test", image_size=8)
    fake = torch.zeros(8, 3, 8, 8)
    options = dict(feature_extractor="classifier", cache_dir=cache_dir, classifier_epochs=1, force=True)

    def overlap_warnings(reference, train_data):
        (result,) = evaluate_samples(fake, reference, ["kid"], train_data=train_data, **options).values()
        return [w for w in result.get("warnings", []) if "training images of the feature network" in w]

    assert overlap_warnings(test, train) == []
    assert overlap_warnings(train, data.build("image_folder", root=root, image_size=8)) != []
