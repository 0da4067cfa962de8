"""negaug repro: the shared statistics and cache, and every experiment end to end at its tiny size.

The tiny experiments train a few steps at tiny widths, so their numbers say nothing about the
claims; the tests check that the numbers are real (histograms sum to the sample count, shares in
[0, 1], per-seed values match the summary) and that results.json, report.md and the PNGs exist.
"""
from __future__ import annotations

import json
import math

import pytest
import torch

from negaug import repro
from negaug.cli import main
from negaug.repro import common


@pytest.fixture(autouse=True)
def _small(monkeypatch, tmp_path):
    torch.set_num_threads(1)
    monkeypatch.setenv("NEGAUG_CACHE", str(tmp_path / "cache"))  # the tiny classifier stays in the test


# --- statistics and reports -----------------------------------------------------------------------

def test_spread_hand_checked():
    s = common.spread([1.0, 2.0, 3.0])
    assert s["mean"] == 2.0 and s["n"] == 3
    assert s["std"] == pytest.approx(1.0, rel=1e-12)  # ddof = 1: sqrt((1 + 0 + 1) / 2)
    assert common.spread([5.0])["std"] == 0.0


def test_compare_spread_rule_and_welch():
    apart = common.compare([0.0, 0.1, 0.2], [1.0, 1.1, 1.2])
    assert apart["difference"] == pytest.approx(1.0)
    assert not apart["within_seed_spread"] and apart["welch_p"] < 0.001
    close = common.compare([0.0, 0.1, 0.2], [0.05, 0.15, 0.25])
    assert close["within_seed_spread"] and close["welch_p"] > 0.3  # 0.05 < std 0.1
    assert common.compare([0.3], [0.5])["welch_p"] is None  # one seed: no test
    assert not common.compare([0.3], [0.5])["within_seed_spread"]  # no spread to be within


def test_fmt_and_table():
    assert common.fmt(common.spread([1.0, 3.0]), 2) == "2.00 ± 1.41"
    assert common.fmt(common.spread([0.25]), 2) == "0.25"
    assert common.markdown_table(["a", "b"], [[1, 2]]) == "| a | b |\n|---|---|\n| 1 | 2 |"


def test_config_hash_ignores_logging_but_not_training():
    from negaug.experiment.config import load_config

    base = load_config("default")
    renamed = load_config("default", ["train.name=x", "train.log_every=7", "train.progress=false"])
    assert common.config_hash(base) == common.config_hash(renamed)
    assert common.config_hash(base) != common.config_hash(load_config("default", ["nda.lam=0.5"]))
    assert common.config_hash(base) != common.config_hash(load_config("default", ["train.seed=1"]))
    measured = load_config("default", ["eval.every=500", "eval.num_samples=5000", "eval.force=true"])
    assert common.config_hash(base) == common.config_hash(measured)  # evaluating does not change the model


def test_evaluating_during_training_leaves_the_trained_model_unchanged(tmp_path):
    """Why `eval.*` is not part of the config hash: the same weights with and without evaluations."""
    import torch

    from negaug.experiment import load_config, load_run, train

    weights = []
    for every in (0, 2):
        config = load_config("ring", ["train.steps=4", "train.log_every=1", "train.sample_every=0",
                                      "train.checkpoint_every=0", "train.progress=false", f"eval.every={every}",
                                      "eval.metrics=[toy, kde]", "eval.num_samples=64", f"train.name=e{every}",
                                      f"train.runs_dir={tmp_path}", "data.options.num_samples=256"])
        train(config)
        run = load_run(tmp_path / f"e{every}")
        weights.append({k: v.clone() for k, v in run.generator.state_dict().items()})
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_default_seeds():
    assert common.default_seeds("full", None) == [0, 1, 2]
    assert common.default_seeds("quick", None) == [0]
    assert common.default_seeds("quick", 2) == [0, 1]
    with pytest.raises(ValueError):
        common.default_seeds("full", 0)


def test_unknown_experiment_and_size(tmp_path):
    with pytest.raises(ValueError, match="numerosity"):
        repro.run("numerosty", tmp_path)
    with pytest.raises(ValueError, match="tiny, quick, full"):
        repro.run("toy", tmp_path, size="huge")


def test_arms_differ_only_in_nda():
    from negaug.experiment.config import load_config
    from negaug.repro import mnist, numerosity, toy

    for arms in (numerosity.arms("full"), toy.arms("full"), mnist.arms("full")):
        base, *variants = (load_config(a.preset, a.overrides).to_dict() for a in arms)
        assert base["nda"]["transform"] == "none" and base.pop("nda")
        for nda in variants:
            assert nda.pop("nda")["transform"] != "none"
            assert base == nda


# --- experiments at the tiny size ---------------------------------------------------------------

def _outputs(out, pngs):
    results = json.loads((out / "results.json").read_text())
    report = (out / "report.md").read_text()
    for name in pngs:
        assert (out / name).stat().st_size > 1000, name
    assert "## Table (" in report or "## AUROC" in report  # a smoke run judges no claim
    assert "## Claim table" not in report and "met)" not in report and "Targets:" not in report
    assert report.splitlines()[0] == f"> A {results['size']} run shows only that the pipeline runs: its numbers carry no verdict."
    assert "|---|" in report and "baseline" in report
    return results, report


def test_numerosity_tiny(tmp_path, capsys):
    out = tmp_path / "numerosity"
    assert main(["repro", "numerosity", "--tiny", "--out", str(out)]) == 0
    printed = capsys.readouterr().out  # numbers only: one seed's yes/no would contradict the full tables
    assert ": yes" not in printed and ": no" not in printed and "carry no verdict" in printed
    results, report = _outputs(out, ["count_histogram.png", "samples.png"])
    check = results["protocol"]["counter_check_on_real_test_images"]
    assert check["accuracy"] == 1.0 and check["second_counter_accuracy"] == 1.0
    for arm in ("baseline", "nda"):
        (entry,) = results["per_seed"][arm]
        assert sum(entry["histogram"].values()) == entry["num_samples"] == 64
        shares = [entry[f"share_{k}"] for k in (4, 5, 6, 7, 8)] + [entry["share_other"]]
        assert entry["share_6"] == pytest.approx(entry["histogram"].get("6", 0) / 64) and sum(shares) == pytest.approx(1.0)
        assert entry["counter_agreement"]["num_images"] == 64 and 0.0 <= entry["counter_agreement"]["agreement"] <= 1.0
        side = "baseline" if arm == "baseline" else "nda"
        assert results["comparisons"]["nda"]["claim"]["share_6"][side]["values"] == [entry["share_6"]]
    assert {c["verdict"] for c in results["comparisons"]["nda"]["claim"].values()} == {"-"} and results["headline"] is None
    assert "| 6 dots (trained) | rises |" in report and "| 7 dots (a negative) | falls |" in report
    assert "verdict (" not in report and "**Verdict**" not in report and "## The counter, checked" in report
    assert {r["arm"] for r in results["runs"]} == {"baseline", "nda"}
    assert results["runs"][0]["config"]["loss"]["name"] == "wgan-gp"  # the authors' setting
    assert results["runs"][0]["config"]["optim"]["num_d_steps"] == 5


@pytest.mark.slow
def test_toy_tiny_and_cache(tmp_path):
    out = tmp_path / "toy"
    results = repro.run("toy", out, size="tiny", seeds=[0, 1])
    _outputs(out, ["scatter.png"])
    assert len(results["per_seed"]["nda"]) == 2
    for entries in results["per_seed"].values():
        for e in entries:
            assert 0.0 <= e["negative_fraction"] <= 1.0 and 0 <= e["modes_covered"] <= 8
            assert sum(e["mode_counts"]) <= e["num_samples"]
            assert e["negative_fraction"] >= max(e["negative_fraction_between"], e["negative_fraction_center"]) - 1e-9
    assert not any(r["cached"] for r in results["runs"])
    again = repro.run("toy", out, size="tiny", seeds=[0, 1])  # same configs: reused, same numbers
    assert all(r["cached"] for r in again["runs"])
    assert again["per_seed"] == json.loads(json.dumps(results["per_seed"]))


@pytest.mark.slow
def test_anomaly_then_quality_share_runs(tmp_path):
    runs = tmp_path / "runs"
    anomaly = repro.run("anomaly", tmp_path / "anomaly", size="tiny", runs_dir=runs)
    _outputs(tmp_path / "anomaly", ["auroc.png", "difference_histograms.png"])
    sets = anomaly["ood_sets"]
    # the training negative is reported apart, never in an average (issue 23)
    assert "nda/jigsaw" not in sets and anomaly["nda_sets"] == ["nda/jigsaw"]
    assert "noise/uniform" in sets and "dataset/digits" in sets
    assert list(anomaly["headline"]) == ["mean (corruption)", "mean (dataset)"]
    assert anomaly["verdicts"] == {}  # a tiny run judges nothing
    assert {c["verdict"] for c in anomaly["headline"].values()} == {"-"}  # regression (review): none in results.json either
    for arm in ("baseline", "nda"):
        entry = anomaly["per_seed"][arm][0]
        assert all(0.0 <= entry["ood"][s]["auroc"] <= 1.0 for s in [*sets, "nda/jigsaw"])
        corruptions = [s for s in sets if s.startswith("corruption/")]
        mean = sum(entry["ood"][s]["auroc"] for s in corruptions) / len(corruptions)
        assert anomaly["headline"]["mean (corruption)"][arm]["mean"] == pytest.approx(mean)
        assert anomaly["headline"]["mean (dataset)"][arm]["mean"] == pytest.approx(entry["ood"]["dataset/digits"]["auroc"])
    quality = repro.run("quality", tmp_path / "quality", size="tiny", runs_dir=runs)
    _outputs(tmp_path / "quality", ["precision_recall.png", "samples.png"])
    assert all(r["cached"] for r in quality["runs"])  # trained once, by the anomaly experiment
    for arm in ("baseline", "nda"):
        entry = quality["per_seed"][arm][0]
        for which in ("ema", "raw"):
            assert math.isfinite(entry[f"{which}_fid"]) and entry[f"{which}_fid"] > 0
            assert 0.0 <= entry[f"{which}_precision"] <= 1.0 and 0.0 <= entry[f"{which}_recall"] <= 1.0
            assert entry["protocol"][which]["fid"]["num_generated"] == 128
    assert quality["floor"]["raw_fid"] < max(quality["per_seed"][a][0]["raw_fid"] for a in ("baseline", "nda"))


def test_seed_list_parsing():
    from negaug.cli.repro import parse_seed_list

    assert parse_seed_list("0,2") == [0, 2]
    for bad in ("0,0", "a", ","):
        with pytest.raises(ValueError):
            parse_seed_list(bad)


def test_cli_user_error_is_one_line(tmp_path, capsys):
    assert main(["repro", "toy", "--tiny", "--seed-list", "1,1", "--out", str(tmp_path)]) == 2
    assert "distinct seeds" in capsys.readouterr().err


def test_training_lock_waits_for_a_live_holder(tmp_path, monkeypatch):
    """A run locked by a live process (an flock held) is waited for and then reused, never trained twice."""
    import fcntl
    import os

    from negaug.repro import toy

    monkeypatch.setattr(common, "LOCK_POLL_SECONDS", 0.01)
    study = common.Study(tmp_path, "tiny", [0])
    arm = toy.arms("tiny")[0]
    first = common.train_arm(study, arm, 0, "toy")
    done = first.run_dir / common.DONE_FILE
    saved = done.read_text()
    done.unlink()
    holder = os.open(first.run_dir / common.LOCK_FILE, os.O_RDWR)  # someone else trains it
    fcntl.flock(holder, fcntl.LOCK_EX)
    polls = []

    def finish_after_two_polls(seconds):
        polls.append(seconds)
        if len(polls) == 2:
            done.write_text(saved)
            os.close(holder)  # the holder ends: the OS releases its lock

    monkeypatch.setattr(common.time, "sleep", finish_after_two_polls)
    again = common.train_arm(study, arm, 0, "toy")
    assert again.cached and len(polls) == 2


@pytest.mark.parametrize("content", ["999999999", "1", "garbage"])
def test_training_lock_file_without_a_holder_is_taken_over_regression_pid_1_waited_forever(
        tmp_path, monkeypatch, content):
    """`echo 1 > repro_training.lock` (PID 1 is alive) made repro wait forever: only an flock counts."""
    from negaug.repro import toy

    study = common.Study(tmp_path, "tiny", [0])
    arm = toy.arms("tiny")[0]
    first = common.train_arm(study, arm, 0, "toy")
    (first.run_dir / common.DONE_FILE).unlink()
    (first.run_dir / common.LOCK_FILE).write_text(content)

    def never(seconds):
        raise AssertionError("waited for a lock nobody holds")

    monkeypatch.setattr(common.time, "sleep", never)
    again = common.train_arm(study, arm, 0, "toy")
    assert not again.cached  # resumed and finished by us
    assert (first.run_dir / common.DONE_FILE).is_file()


def test_a_damaged_cached_arm_is_reported_and_retrained_regression_older_checkpoint_used_silently(tmp_path):
    """A flipped bit in a cached arm's newest checkpoint: named, trained again from its last good
    checkpoint, and the arm ends with a good checkpoint of its last step, equal to the original."""
    from negaug.experiment import checkpoint as ckpt
    from negaug.repro import toy

    messages = []
    study = common.Study(tmp_path, "tiny", [0], on_progress=messages.append)
    arm = toy.arms("tiny")[0]
    first = common.train_arm(study, arm, 0, "toy")
    folder = first.run_dir / "checkpoints"
    newest = ckpt.list_steps(folder)[-1]
    original = ckpt.load_file(folder / f"{ckpt.stem(newest)}.json").state
    tensors = folder / f"{ckpt.stem(newest)}.safetensors"
    data = bytearray(tensors.read_bytes())
    data[-5] ^= 0x10
    tensors.write_bytes(bytes(data))
    messages.clear()
    again = common.train_arm(study, arm, 0, "toy")
    assert not again.cached
    assert any("damaged" in m and str(tensors) in m for m in messages), messages
    found = ckpt.load_latest(folder)
    assert found.step == newest
    torch.testing.assert_close(found.state["generator"], original["generator"], rtol=0, atol=0)
    assert common.train_arm(study, arm, 0, "toy").cached


def test_classes_covered_counts_argmax_classes_above_the_share():
    """Hand-checked: 100 images whose 'logits' put 60 in class 0, 38 in class 2, 2 in class 5."""
    from negaug.repro.quality import classes_covered

    labels = torch.tensor([0] * 60 + [2] * 38 + [5] * 2)
    images = labels.float().view(-1, 1, 1, 1)  # the stub extractor reads the class from the pixel

    def extractor(x):
        return x.flatten(1), torch.nn.functional.one_hot(x.flatten().long(), 10).float()

    assert classes_covered(images, extractor, min_share=0.02) == (3, [60, 0, 38, 0, 0, 2, 0, 0, 0, 0])
    assert classes_covered(images, extractor, min_share=0.03)[0] == 2  # 2 of 100 < 3%


def test_cli_experiment_names_match_the_registry():
    from negaug import repro
    from negaug.cli import repro as repro_cli

    assert list(repro_cli.EXPERIMENT_NAMES) == repro.names()


def test_a_quick_run_never_overwrites_full_results(tmp_path, capsys):
    """Regression: `negaug repro numerosity --quick --out results/numerosity` replaced the committed full results."""
    from negaug.cli import main

    out = tmp_path / "numerosity"
    out.mkdir()
    (out / "results.json").write_text('{"size": "full", "seeds": [0, 1, 2]}')
    before = (out / "results.json").read_bytes()
    assert main(["repro", "numerosity", "--quick", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds the results of a full run" in err
    assert (out / "results.json").read_bytes() == before and sorted(p.name for p in out.iterdir()) == ["results.json"]


@pytest.mark.slow
def test_contrastive_tiny_and_cache(tmp_path):
    """MoCo-v2 arms are `negaug pretrain` runs, cached by config hash like the GAN arms; the table
    compares each NDA arm with the baseline on the per-seed probe numbers."""
    out = tmp_path / "contrastive"
    assert main(["repro", "contrastive", "--tiny", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    report = (out / "report.md").read_text()
    for figure in ("linear_probe", "figure9_distance", "separator_auroc"):
        assert (out / f"{figure}.png").stat().st_size > 1000
    assert "| linear-probe accuracy (Table 6) | jigsaw |" in report and "## MNIST-5k digits: the main task" in report
    assert "| Figure 9's paired measure: cos. distance x vs jigsaw(x), head's embedding | jigsaw |" in report
    assert report.startswith("> A tiny run") and "| reproduced |" not in report  # numbers, no verdicts
    (baseline,), (jigsaw,) = results["per_seed"]["mnist"]["baseline"], results["per_seed"]["mnist"]["jigsaw"]
    for entry in (baseline, jigsaw):
        assert 0.0 <= entry["linear_probe"] <= 1.0 and 0.0 <= entry["knn"] <= 1.0 and entry["step"] == 3
        assert entry["protocols"]["linear_probe"]["epochs"] == 2
        assert 0.0 <= entry["separator_auroc/features/jigsaw"] <= 1.0
        separator = entry["protocols"]["separator_auroc/features/jigsaw"]
        assert separator["num_fit"] == [500, 500] and separator["num_eval"] == [500, 500]  # halves of 1,000 test images
        assert separator["epochs"] == 5 and separator["options"] == {"k": 2}
        assert entry["distance_ratio/features/jigsaw"] == pytest.approx(
            entry["cosine_distance/features/jigsaw"] / entry["cosine_distance/features/other_image"], rel=1e-12)
    table = results["tables"]["mnist"]["linear_probe"]
    assert table["baseline"]["values"] == [baseline["linear_probe"]] and table["jigsaw"]["nda"]["values"] == [jigsaw["linear_probe"]]
    assert not any(r["cached"] for r in results["runs"])
    again = repro.run("contrastive", tmp_path / "again", size="tiny", runs_dir=out / "runs")
    assert all(r["cached"] for r in again["runs"])
    assert again["per_seed"]["mnist"]["jigsaw"][0]["linear_probe"] == jigsaw["linear_probe"]  # same run, same probe
    key = "separator_auroc/features/jigsaw"
    assert again["per_seed"]["mnist"]["jigsaw"][0][key] == jigsaw[key]  # same split, draws and batch order
    before = results["before_training"]["mnist"][key]
    assert before["n"] == 1 and 0.0 <= before["mean"] <= 1.0 and before == again["before_training"]["mnist"][key]
    assert "Before training (the initial weights of each seed" in report


def test_config_hash_leaves_out_keys_added_later_at_their_neutral_value():
    from negaug.experiment.config import learning_settings, load_config

    base = load_config("default")
    assert "ortho_reg" not in learning_settings(base)["optim"]  # runs cached before the key keep their hash
    assert common.config_hash(base) != common.config_hash(load_config("default", ["optim.ortho_reg=1e-4"]))


@pytest.mark.parametrize("previous, size, refused", [("quick", "tiny", True), ("full", "quick", True),
                                                     ("quick", "quick", False), ("tiny", "quick", False)])
def test_a_smaller_run_never_overwrites_larger_results_regression_tiny_over_quick(tmp_path, capsys, previous, size, refused):
    """Regression (red team): `--tiny` over the committed quick results/toolkit replaced them; only
    results of a full run were protected."""
    from negaug import repro

    out = tmp_path / "toolkit"
    out.mkdir()
    (out / "results.json").write_text(json.dumps({"size": previous}))
    if refused:
        with pytest.raises(ValueError, match=f"holds the results of a {previous} run; a --{size} run would overwrite"):
            repro.check_not_over_full_results(out, size)
    else:
        repro.check_not_over_full_results(out, size)


def test_anomaly_headline_is_the_papers_two_means_without_the_training_negative():
    """Issue 23: the headline averages corruptions and OOD datasets only (Holm over the two); the
    training negative nda/jigsaw (AUROC 1.0 with NDA) is reported apart and moves no average."""
    from negaug.anomaly.evaluate import summarize as summarize_sets
    from negaug.repro.anomaly import _auroc_tables

    def entry(corr, data, jig):
        ood = {"corruption/a": {"auroc": corr}, "corruption/b": {"auroc": corr + 0.1},
               "dataset/x": {"auroc": data}, "nda/jigsaw": {"auroc": jig}}
        full = {n: {**e, "aupr": 0.0, "fpr_at_95_tpr": 0.0} for n, e in ood.items()}
        return {"ood": full, "summary": summarize_sets(full)}

    per_seed = {"baseline": [entry(0.50 + d, 0.60 - d, 0.7) for d in (0.0, 0.01, 0.02)],
                "nda": [entry(0.70 + d, 0.60 + d, 1.0) for d in (0.0, 0.01, 0.02)]}
    headline, ood, apart = _auroc_tables(per_seed)
    assert list(headline) == ["mean (corruption)", "mean (dataset)"]
    assert headline["mean (corruption)"]["baseline"]["mean"] == pytest.approx(0.56)  # (0.5 + 0.6) / 2 + 0.01
    assert headline["mean (corruption)"]["difference"] == pytest.approx(0.20)
    assert headline["mean (corruption)"]["verdict"] == "reproduced"  # equal spreads, +0.2: p tiny
    assert headline["mean (dataset)"]["difference"] == pytest.approx(0.02)
    assert headline["mean (dataset)"]["holm_p"] == pytest.approx(0.0701, abs=5e-4)  # t = 2.449, df 4
    assert headline["mean (dataset)"]["verdict"] == "direction only"
    assert set(ood) == {"corruption/a", "corruption/b", "dataset/x"} and list(apart) == ["nda/jigsaw"]
    assert all("holm_p" in c for c in (*headline.values(), *ood.values()))


def test_toy_judges_only_its_pre_registered_claim_row_and_only_at_the_full_size(tmp_path):
    from negaug.repro import toy
    per_seed = {name: [{"seed": s, "negative_fraction": v, "negative_fraction_between": v / 2,
                        "negative_fraction_center": v / 2, "high_quality_fraction": 0.9, "modes_covered": 8,
                        "mode_counts": [10] * 8}
                       for s, v in enumerate(values)]
                for name, values in (("baseline", [0.20, 0.22, 0.21]), ("nda", [0.05, 0.06, 0.04]))}
    study = common.Study(out_dir=tmp_path, size="full", seeds=[0, 1, 2], runs_dir=tmp_path)
    results = toy.summarize(study, per_seed, [])
    assert results["claim_rows"] == ["negative_fraction"] and results["verdicts"] == {"negative_fraction": "reproduced"}
    # a family of one: Holm p equals Welch p; the descriptive rows form their own family
    claim = results["comparisons"]["negative_fraction"]
    assert claim["holm_p"] == claim["welch_p"] and claim["difference"] == pytest.approx(-0.16)
    assert "verdict" not in results["comparisons"]["modes_covered"]
    report = "\n".join(toy.report(results))
    assert "## Claim table" in report and "| reproduced |" in report and "target >= 3x" not in report
    quick = toy.summarize(common.Study(out_dir=tmp_path, size="quick", seeds=[0, 1, 2], runs_dir=tmp_path), per_seed, [])
    assert quick["verdicts"] == {"negative_fraction": "-"} and "## Claim table" not in "\n".join(toy.report(quick))


def test_full_size_cli_prints_the_pre_registered_verdicts_not_yes_no_targets(tmp_path, monkeypatch, capsys):
    """Issue 26 item 2 at the full size: where an experiment has pre-registered claim rows, the
    command prints their verdict words; targets (not pre-registered) are labelled as such."""
    results = {"verdicts": {"negative_fraction": "not reproduced"}, "targets": {"nda_cuts_negative_mass_3_fold": False}}
    monkeypatch.setattr(repro, "run", lambda *args, **kwargs: results)
    assert main(["repro", "toy", "--out", str(tmp_path / "o")]) == 0
    printed = capsys.readouterr().out
    assert "  negative_fraction: not reproduced" in printed and "3_fold" not in printed
    results.pop("verdicts")
    assert main(["repro", "toy", "--out", str(tmp_path / "o")]) == 0
    assert "  nda_cuts_negative_mass_3_fold: no (a target, not a pre-registered verdict; see report.md)" \
        in capsys.readouterr().out
