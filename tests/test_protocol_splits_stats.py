"""Issue 23's protocol: validation splits, thread-independent feature networks, provenance, and the
statistics fixed before the runs (Welch with a 95% CI, Holm, verdict words)."""
from __future__ import annotations

import subprocess

import pytest
import torch

from negaug import data
from negaug.metrics import classifier as clf
from negaug.metrics.protocol import library_versions
from negaug.repro import stats

# --- validation splits -------------------------------------------------------------------------

def test_mnist5k_splits_are_3600_400_1000_disjoint_and_cover_the_set():
    sizes = {split: len(data.build("mnist5k", split=split)) for split in ("train", "val", "test", "train+val", "all")}
    assert sizes == {"train": 3600, "val": 400, "test": 1000, "train+val": 4000, "all": 5000}
    rows = {split: {bytes(img.numpy()) for img in data.build("mnist5k", split=split).images}
            for split in ("train", "val", "test")}
    # mnist5k holds a few exact duplicate digits; the splits share at most those
    assert len(rows["train"] & rows["val"]) <= 2 and len(rows["val"] & rows["test"]) <= 2


def test_validation_split_is_stratified_and_fixed():
    val = data.build("mnist5k", split="val")
    assert torch.bincount(val.labels).tolist() == [40] * 10
    again = data.build("mnist5k", split="val")
    assert torch.equal(val.images, again.images)


def test_train_plus_val_is_the_old_training_split():
    whole = data.build("mnist5k", split="train+val")
    parts = torch.cat([data.build("mnist5k", split="train").images, data.build("mnist5k", split="val").images])
    assert sorted(map(bytes, whole.images.numpy())) == sorted(map(bytes, parts.numpy()))


def test_generated_sets_draw_validation_independently():
    train = data.build("dots", split="train", num_samples=16)
    val = data.build("dots", split="val", num_samples=16)
    assert val.images.shape == train.images.shape and not torch.equal(train.images, val.images)


def test_unknown_split_names_the_valid_ones():
    with pytest.raises(ValueError, match="valid: train, val, test, all, train\\+val"):
        data.build("mnist5k", split="validation")


# --- the offline classifier does not depend on the thread count --------------------------------

def test_classifier_weights_are_the_same_with_one_and_two_threads():
    images = data.build("digits", split="train", image_size=16).images[:400]
    labels = data.build("digits", split="train", image_size=16).labels[:400]
    images = images.float() / 127.5 - 1
    settings = clf.ClassifierSettings(epochs=1, batch_size=32)
    shas = []
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            model, info = clf.train_classifier(images, labels, 10, settings)
            shas.append(clf.tensor_sha256(*model.state_dict().values()))
            assert info["threads"] == 1
            assert torch.get_num_threads() == threads  # the caller's setting is restored
    finally:
        torch.set_num_threads(before)
    assert shas[0] == shas[1]


# --- provenance --------------------------------------------------------------------------------

def test_versions_record_the_commit_the_dirty_flag_and_threads():
    versions = library_versions()
    assert versions["torch_threads"] == torch.get_num_threads()
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=False,
                          cwd=__file__.rsplit("/tests/", 1)[0])
    if head.returncode != 0:
        pytest.skip("not a git checkout")
    assert versions["negaug_commit"] == head.stdout.strip()
    assert isinstance(versions["negaug_dirty"], bool)


# --- statistics --------------------------------------------------------------------------------

def test_welch_difference_interval_and_p_by_hand():
    # se = sqrt(0.01/3 + 0.01/3) = 0.0816497, df = 4, t = 12.2474; t_0.975,4 = 2.7764451
    result = stats.welch([0.0, 0.1, 0.2], [1.0, 1.1, 1.2])
    assert result["difference"] == pytest.approx(1.0)
    assert result["df"] == pytest.approx(4.0)
    assert result["ci95"] == pytest.approx([1 - 2.7764451 * 0.0816497, 1 + 2.7764451 * 0.0816497], abs=1e-6)
    assert result["p"] == pytest.approx(2.552e-4, rel=1e-3)


def test_welch_with_one_seed_has_no_test_and_equal_constants_have_p_one():
    assert stats.welch([0.3], [0.5])["p"] is None and stats.welch([0.3], [0.5])["ci95"] is None
    assert stats.welch([1.0, 1.0], [1.0, 1.0])["p"] == 1.0
    assert stats.welch([1.0, 1.0], [2.0, 2.0])["p"] == 0.0


def test_holm_by_hand():
    # m = 4 tests: 0.01 * 4 = 0.04; 0.03 * 3 = 0.09; 0.04 * 2 = 0.08 -> 0.09 (monotone); 0.5 * 1
    assert stats.holm([0.01, 0.04, 0.03, None, 0.5]) == pytest.approx([0.04, 0.09, 0.09, None, 0.5])
    assert stats.holm([0.9, 0.8]) == [1.0, 1.0]  # capped at 1... and monotone
    assert stats.holm([]) == []


@pytest.mark.parametrize("difference, p, direction, word", [
    (-2.0, 0.01, -1, "reproduced"), (2.0, 0.01, -1, "opposite"), (-2.0, 0.2, -1, "direction only"),
    (2.0, 0.2, -1, "not reproduced"), (0.0, 1.0, 1, "not reproduced"), (0.1, None, 1, "no test (1 seed)"),
    (0.1, 0.049, 1, "reproduced"), (0.1, 0.05, 1, "direction only"),
])
def test_verdict_words(difference, p, direction, word):
    assert stats.verdict_word(difference, p, direction) == word


def test_format_difference_prints_interval_and_both_p_values():
    comparison = stats.adjust_family({"a": stats.welch([0.0, 0.1, 0.2], [1.0, 1.1, 1.2]),
                                      "b": stats.welch([0.0, 0.1, 0.2], [0.0, 0.1, 0.3])})
    text = stats.format_difference(comparison["a"])
    assert text.startswith("+1.000 [+0.773, +1.227], p=0.00026, Holm p=0.00051")


# --- negaug compare: a user's own answer ------------------------------------------------------

@pytest.mark.slow
def test_compare_tables_equal_the_statistics_of_the_per_seed_values(tmp_path):
    from negaug.repro import compare

    tiny = ["train.steps=20", "train.checkpoint_every=0", "train.sample_every=0", "train.log_every=10"]
    summary = compare.run_comparison("ring", [["nda.transform=none", *tiny], tiny], seeds=[0, 1],
                                     out_dir=tmp_path / "out", runs_dir=tmp_path / "runs")
    assert summary["split"] == "val" and len(summary["arms"]) == 2 and summary["metrics"]
    base, other = summary["arms"]
    for metric in summary["metrics"]:
        expected = stats.welch([e[metric] for e in summary["per_seed"][base]],
                               [e[metric] for e in summary["per_seed"][other]])
        got = summary["comparisons"][metric][other]
        assert got["difference"] == pytest.approx(expected["difference"])
        assert got["holm_p"] == (None if expected["p"] is None else pytest.approx(expected["p"]))  # one arm: Holm = p
    for run in summary["runs"]:  # every run was evaluated on validation, not test
        import json
        entry = json.loads((tmp_path / "runs" / run["run_dir"].split("/")[-1] / "eval.json").read_text())["evaluations"][-1]
        protocols = [r["protocol"] for r in entry["results"].values()]
        assert protocols and all(str(p.get("reference_split") or p.get("reference")).endswith("val") for p in protocols)
    assert (tmp_path / "out" / "report.md").read_text().count("95% CI") >= 1
    assert (tmp_path / "out" / "comparison.png").stat().st_size > 0


@pytest.mark.parametrize("arms, match", [
    (["nda.transform=none"], "2 to 16 arms"), (["a", "nda.lam=0.5"], "section.key=value"),
    (["nda.lam=0.5", "nda.lam=0.5"], "two arms are the same"),
])
def test_compare_refuses_bad_arms_in_one_line(arms, match):
    from negaug.repro import compare

    with pytest.raises(ValueError, match=match):
        compare.parse_arms(arms)


def test_compare_cli_bad_key_exits_2_before_any_folder(tmp_path, capsys):
    from negaug.cli import main

    code = main(["compare", "default", "--arms", "nda.trnsform=none", "", "--out", str(tmp_path / "out")])
    assert code == 2 and not (tmp_path / "out").exists()
    assert "nda.trnsform" in capsys.readouterr().err


# --- the ablation tables (tiny: the pipeline, no verdicts) ---------------------------------------

@pytest.mark.slow
def test_ablation_table_tiny_records_resume_and_print_no_verdict(tmp_path):
    from negaug.repro import ablations, common

    study = common.Study(tmp_path / "out", "tiny", [0, 1], tmp_path / "runs")
    summary = ablations.run_table("appendix_o", study)
    assert list(summary["arms"]) == [s.label for s in ablations.TABLES["appendix_o"]]
    assert all(c["verdict"] == "-" for c in summary["comparisons"]["test_fid"].values())
    assert "carry no verdict" in (tmp_path / "out" / "report.md").read_text()
    records = sorted((tmp_path / "out" / "arms").glob("*.json"))
    assert len(records) == 5 * 2
    for run in (tmp_path / "runs").iterdir():  # the records alone are enough to write the table again
        import shutil
        shutil.rmtree(run)
    again = ablations.run_table("appendix_o", study)
    assert again["arms"] == summary["arms"]
    assert summary["floor"]["val"]["protocol"]["real_images"] == "128 test images"


def test_less_data_100_percent_arms_are_the_lambda_tables_runs():
    from negaug.experiment import kinds
    from negaug.repro import ablations
    from negaug.repro.common import config_hash

    def key(setting):
        spec = ablations.arm(setting, "full")
        return config_hash(kinds.get("gan").load_config(spec.preset, [*spec.overrides, "train.seed=0"]))

    less = {s.label: key(s) for s in ablations.TABLES["less_data"]}
    lam = {s.label: key(s) for s in ablations.TABLES["lambda"]}
    assert less["100% no NDA"] == lam["no augmentation"] and less["100% NDA jigsaw"] == lam["lambda 0.25"]
    assert less["10% no NDA"] != lam["no augmentation"]


# --- Theorem 1 numerically ---------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("name", ["fgan-kl", "fgan-js", "fgan-pearson"])
def test_theorem1_minimiser_is_p_data_with_disjoint_negatives_and_not_with_overlapping(name):
    from negaug.repro import theorem1

    dists = theorem1.distributions()
    fitted, _ = theorem1.fit_generator(name, dists["p"], dists["disjoint"], 0.25, 2000)
    assert 0.5 * (fitted - dists["p"]).abs().sum() < 2e-3
    fitted, _ = theorem1.fit_generator(name, dists["p"], dists["overlapping"], 0.25, 2000)
    assert 0.5 * (fitted - dists["p"]).abs().sum() > 0.3  # measured 0.45


def test_theorem1_closed_form_is_the_registered_losses_supremum():
    from negaug.repro import theorem1

    p = theorem1.distributions()["p"]
    q = torch.full((theorem1.NUM_POINTS,), 1 / theorem1.NUM_POINTS, dtype=torch.float64)
    registered, closed = theorem1.check_closed_form("fgan-pearson", p, q, steps=2000)
    assert registered == pytest.approx(closed, rel=1e-4) and closed == pytest.approx(2.6)  # sum q (p/q - 1)^2 by hand


def test_a_run_cached_under_another_arm_name_is_reused_regression_appendix_o_retrained_lambda_runs(tmp_path):
    """Appendix O's "identity removed" arm is Table 8's "lambda 0.25" (same config): it was trained
    twice because the cache folder was looked up by arm name, not by config."""
    from negaug.repro import common

    study = common.Study(tmp_path / "out", "tiny", [0], tmp_path / "runs")
    tiny = ["train.steps=2", "model.options.width=4", "data.batch_size=8", "train.checkpoint_every=0",
            "train.sample_every=0", "data.options.classes=[0, 1]"]
    first = common.train_arm(study, common.Arm("lambda-0-25", "default", tiny), 0, "ablation")
    again = common.train_arm(study, common.Arm("identity-removed", "default", tiny), 0, "ablation")
    assert not first.cached and again.cached and again.run_dir == first.run_dir
    assert len(list((tmp_path / "runs").iterdir())) == 1


def test_readme_and_default_preset_quote_the_stored_lambda_table():
    """The README's first paragraph and the default preset's comment quote results/lambda: a rerun
    that changes the table must change them too."""
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    table = json.loads((root / "results" / "lambda" / "results.json").read_text())
    test_fid = {label: f"{arm['test_fid']['mean']:.2f}" for label, arm in table["arms"].items()}
    readme = (root / "README.md").read_text()
    for label in ("no augmentation", "lambda 0.75", "lambda 0.5", "lambda 0.25", "lambda 0.15"):
        assert test_fid[label] in readme, label
    assert table["selected_on_validation"] == "lambda 0.75"
    from negaug.experiment.config import load_config

    assert load_config("default").nda.lam == 0.75  # the arm selected on validation
    preset = (root / "src" / "negaug" / "presets" / "default.yaml").read_text()
    assert f"{table['arms']['lambda 0.75']['val_fid']['mean']:.2f}" in preset


@pytest.mark.slow  # two ring arms x two seeds through the CLI, each evaluated on validation (KDE): tens of seconds
def test_compare_cli_first_seed_trains_seeds_apart_from_reported_ones(tmp_path, capsys):
    """Tuning runs use seeds 1000+ (docs/reproduction.md, Protocol): --first-seed picks them."""
    import json

    from negaug.cli import main

    tiny = "train.steps=4 train.checkpoint_every=0 train.sample_every=0 train.log_every=2 eval.num_samples=64"
    code = main(["compare", "ring", "--arms", f"nda.transform=none {tiny}", tiny, "--seeds", "2",
                 "--first-seed", "1000", "--out", str(tmp_path / "out"), "--threads", "1"])
    assert code == 0
    summary = json.loads((tmp_path / "out" / "results.json").read_text())
    assert sorted({r["seed"] for r in summary["runs"]}) == [1000, 1001]
    assert main(["compare", "ring", "--arms", "", "nda.lam=0.5", "--first-seed", "-1", "--out", str(tmp_path / "x")]) == 2
    assert "--first-seed" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_compare_pretrain_kind_probes_on_validation(tmp_path):
    """`negaug compare --kind pretrain`: MoCo-v2 arms probed on the validation split (issue 23:
    the `mnist` pretrain preset is re-checked this way), statistics as for GAN arms."""
    import json

    from negaug.cli import main

    tiny = ("data.batch_size=16 data.image_size=16 data.options.classes=[0,1] model.options.width=4 "
            "model.head_hidden=16 model.dim=8 objective.queue_size=48 objective.num_splits=2 train.steps=4 "
            "train.log_every=2 train.checkpoint_every=0 train.knn_every=0 train.device=cpu eval.probe_epochs=2")
    code = main(["compare", "mnist", "--kind", "pretrain", "--arms", tiny, f"{tiny} optim.lr=0.12", "--seeds", "2",
                 "--first-seed", "1000", "--out", str(tmp_path / "out"), "--threads", "1"])
    assert code == 0
    summary = json.loads((tmp_path / "out" / "results.json").read_text())
    assert summary["kind"] == "pretrain" and {"linear_probe", "knn"} <= set(summary["metrics"])
    for run in summary["runs"]:
        entry = json.loads((tmp_path / "out" / "runs" / run["run_dir"].split("/")[-1] / "probe.json").read_text())
        assert entry["evaluations"][-1]["results"]["knn"]["protocol"]["test_split"] == "val"
    other = summary["arms"][1]
    expected = stats.welch([e["knn"] for e in summary["per_seed"][summary["arms"][0]]],
                           [e["knn"] for e in summary["per_seed"][other]])
    assert summary["comparisons"]["knn"][other]["difference"] == pytest.approx(expected["difference"])
    assert "negaug probe --split val" in (tmp_path / "out" / "report.md").read_text()


def test_pda_table_measures_which_transforms_keep_a_digits_label():
    """Issue 23 (Table 1: 'say which transforms preserve digit semantics'): measured as the share of
    test images the feature classifier still labels correctly after each transform."""
    from negaug.repro import ablations

    result = ablations.labels_kept(["jigsaw", "gaussian_noise"], "tiny", ablations.evaluation_options("tiny"))
    share = result["share"]
    assert set(share) == {"clean", "jigsaw", "gaussian_noise"} and all(0.0 <= v <= 1.0 for v in share.values())
    # mild pixel noise keeps the digit, a 2 x 2 jigsaw breaks it (even for the tiny 1-epoch classifier)
    assert share["gaussian_noise"] > share["jigsaw"] + 0.2 and share["clean"] > share["jigsaw"] + 0.2
    again = ablations.labels_kept(["jigsaw", "gaussian_noise"], "tiny", ablations.evaluation_options("tiny"))
    assert again["share"] == share  # seeded draws


def test_compare_figure_shows_the_main_metrics_and_tells_long_arms_apart():
    """Regressions (review): the figure showed the first 4 metrics in alphabetical order (for a
    pretraining comparison: 4 cosine distances, no probe accuracy), and arms that differ only at
    the end of a long override list got the same shortened label."""
    from negaug.repro.compare import arm_labels, figure_metrics

    metrics = ["cosine_distance/embedding/jigsaw", "cosine_distance/embedding/other_image", "cosine_distance/features/jigsaw",
               "cosine_distance/features/other_image", "knn", "linear_probe"]
    assert figure_metrics(metrics) == ["linear_probe", "knn", "cosine_distance/embedding/jigsaw",
                                       "cosine_distance/embedding/other_image"]
    assert figure_metrics(["recall", "fid[classifier:x]", "precision", "kid[classifier:x]"]) == [
        "fid[classifier:x]", "kid[classifier:x]", "precision", "recall"]
    long = " ".join(f"model.options.k{i}={i}" for i in range(20))
    assert arm_labels([long, f"{long} optim.lr=0.12"]) == {long: "(shared settings only)", f"{long} optim.lr=0.12": "optim.lr=0.12"}
    assert arm_labels(["nda.transform=none", "(preset as is)"]) == {"nda.transform=none": "nda.transform=none",
                                                                   "(preset as is)": "(preset as is)"}


def test_compare_of_a_pretrain_preset_without_kind_names_the_flag(tmp_path, capsys):
    from negaug.cli import main

    assert main(["compare", "mnist", "--arms", "", "optim.lr=0.12", "--out", str(tmp_path / "o")]) == 2
    assert "--kind pretrain" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_less_data_compares_nda_with_no_nda_at_the_same_share():
    """Regression: the less-data table compared every arm with '10% no NDA' (the first arm), so
    '25% no NDA' got a verdict against 10% of the data. NDA is compared within each share."""
    from negaug.repro import ablations

    pairs = ablations.baselines("less_data", ablations.TABLES["less_data"])
    assert pairs == {"10% NDA jigsaw": "10% no NDA", "25% NDA jigsaw": "25% no NDA", "100% NDA jigsaw": "100% no NDA"}
    assert ablations.baselines("pda", ablations.TABLES["pda"]) == {s.label: "no augmentation" for s in ablations.TABLES["pda"][1:]}
