"""negaug repro video: DPC without / with Jigsaw NDA clips on moving_mnist, linear probes.

The tiny size trains 3 steps of a tiny DPC on 32 clips, so its numbers say nothing about the
claim; the tests check the outputs, the cache, determinism and the probe on hand-made features.
"""
from __future__ import annotations

import json

import pytest
import torch

from negaug import repro
from negaug.cli import main
from negaug.repro import common, video


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _probe_values(results):
    return {arm: [{k: v for k, v in e.items() if k != "ms_per_step"} for e in entries]
            for arm, entries in results["per_seed"].items()}


def test_video_tiny_writes_results_report_and_plot(tmp_path):
    out = tmp_path / "video"
    assert main(["repro", "video", "--tiny", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    report = (out / "report.md").read_text()
    assert (out / "probe_accuracy.png").stat().st_size > 1000
    assert "## Table (" in report and "**Verdict**" not in report and "synthetic stand-in" in report and "|---|" in report
    assert set(results["per_seed"]) == {"untrained", "baseline", "nda"}
    for arm, entries in results["per_seed"].items():
        (entry,) = entries
        for kind in video.KINDS:
            for label in video.LABELS:
                assert 0.0 <= entry[f"probe_{kind}_{label}"] <= 1.0
        assert 0.0 <= entry["heldout_dpc_top1"] <= 1.0 and entry["heldout_dpc_loss"] > 0
        # 32 test clips, batches of 8, 2 predicted blocks of 2 x 2 positions: 64 rows per batch
        assert entry["heldout_dpc_chance"] == pytest.approx(1 / 64)
        if arm != "untrained":
            assert results["comparisons"]["probe_context_motion"][arm]["values"] == [entry["probe_context_motion"]]
            assert entry["ms_per_step"] > 0
    assert results["settings"]["arms"]["nda"]["nda"] == {"name": "jigsaw", "k": 2}
    assert results["protocol"]["probe"]["epochs"] == 5 and results["size"] == "tiny"
    assert len(results["loss_curves"]["nda-seed0"]) == 3
    assert "| motion probe, context features |" in report


def test_rerun_reuses_the_cached_arms_without_training(tmp_path, monkeypatch):
    first = repro.run("video", tmp_path / "a", size="tiny", seeds=[0])
    assert [r["cached"] for r in first["runs"]] == [False, False]
    for run in first["runs"]:
        files = sorted(p.name for p in (tmp_path / "a" / "runs").glob(f"video-{run['arm']}-seed0-*/*"))
        assert files == ["model.safetensors", "repro_done.json", "repro_training.lock"]  # the flock stays

    def refuse(*args, **kwargs):
        raise AssertionError("a cached arm was trained again")

    monkeypatch.setattr(video, "train_dpc", refuse)
    again = repro.run("video", tmp_path / "a", size="tiny", seeds=[0])
    assert [r["cached"] for r in again["runs"]] == [True, True]
    assert again["per_seed"] == json.loads(json.dumps(first["per_seed"]))  # cached weights, same numbers
    assert again["loss_curves"] == first["loss_curves"]


def test_same_seed_same_numbers_and_the_global_rng_is_untouched(tmp_path):
    torch.manual_seed(1234)
    state = torch.get_rng_state()
    first = repro.run("video", tmp_path / "a", size="tiny", seeds=[0])
    assert torch.equal(torch.get_rng_state(), state)
    second = repro.run("video", tmp_path / "b", size="tiny", seeds=[0])  # trained again in another folder
    assert not any(r["cached"] for r in second["runs"])
    assert _probe_values(first) == _probe_values(second)
    assert first["loss_curves"] == second["loss_curves"]
    other = repro.run("video", tmp_path / "c", size="tiny", seeds=[1])
    assert other["loss_curves"]["baseline-seed1"] != first["loss_curves"]["baseline-seed0"]


def test_a_tiny_run_never_overwrites_full_results(tmp_path):
    out = tmp_path / "video"
    out.mkdir()
    (out / "results.json").write_text('{"size": "full", "seeds": [0, 1, 2]}')
    before = (out / "results.json").read_bytes()
    with pytest.raises(ValueError, match="holds the results of a full run"):
        repro.run("video", out, size="tiny")
    assert (out / "results.json").read_bytes() == before and [p.name for p in out.iterdir()] == ["results.json"]


def test_arms_differ_only_in_nda():
    base, with_nda = (video.train_settings("full", arm, 0) for arm in ("baseline", "nda"))
    assert base.pop("nda") is None and with_nda.pop("nda") == {"name": "jigsaw", "k": 2}
    assert base == with_nda
    assert video.settings_hash(video.train_settings("full", "nda", 0)) != video.settings_hash(
        video.train_settings("full", "nda", 1))


def test_batch_order_is_a_permutation_per_epoch():
    order = video.batch_order(10, 4, 5, torch.Generator().manual_seed(0))  # 20 indexes: 2 epochs of 10
    assert order.shape == (5, 4)
    flat = order.flatten()
    assert sorted(flat[:10].tolist()) == list(range(10)) and sorted(flat[10:].tolist()) == list(range(10))
    assert torch.equal(order, video.batch_order(10, 4, 5, torch.Generator().manual_seed(0)))


def test_clip_features_equal_dpc_clip_features(tmp_path):
    settings = video.train_settings("tiny", "baseline", 0)
    model = video.build_model(settings)
    clips = video.build_clips(video.data_settings("tiny", "test"))
    features = video.clip_features(model, clips, batch_size=5)  # batches that do not divide 32
    everything, _ = clips.get_batch(torch.arange(len(clips)))
    for kind in video.KINDS:
        torch.testing.assert_close(features[kind], model.clip_features(everything, kind), rtol=1e-5, atol=1e-6)


def test_linear_probe_separable_and_constant_features():
    """One-hot features of the label: every test point right. Constant features: only the bias
    learns, so the probe answers the commonest train label (3 of 5 test labels are class 2)."""
    labels = torch.tensor([0, 1, 2, 2, 1, 0, 2, 2])
    onehot = torch.nn.functional.one_hot(labels, 3).float()
    result = video.linear_probe(onehot, labels, onehot[:5], labels[:5], 3, epochs=50,
                                generator=torch.Generator().manual_seed(0))
    assert result == {"train": 1.0, "test": 1.0}
    constant = torch.ones(8, 4)
    test_labels = torch.tensor([2, 0, 2, 1, 2])
    result = video.linear_probe(constant, labels, constant[:5], test_labels, 3, epochs=50,
                                generator=torch.Generator().manual_seed(0))
    assert result == {"train": 0.5, "test": 0.6}


def test_probe_plot_has_one_bar_per_arm_and_group_and_a_dot_per_seed():
    from negaug.repro import plots

    values = {"baseline": {"a": [0.1, 0.3], "b": [0.5, 0.7]}, "nda": {"a": [0.2, 0.4], "b": [0.6, 0.8]}}
    figure = plots.points_over_bars_figure(values, "accuracy", chance={"a": 0.1, "b": 0.2})
    axes = figure.axes[0]
    heights = sorted(round(p.get_height(), 6) for p in axes.patches)
    assert heights == [0.2, 0.3, 0.6, 0.7]  # the means
    dots = sorted(float(y) for c in axes.collections if hasattr(c, "get_offsets") and c.get_offsets().shape[0] == 2
                  for y in c.get_offsets()[:, 1])
    assert dots == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]


def test_cached_run_of_other_settings_is_refused(tmp_path):
    study = common.Study(tmp_path, "tiny", [0])
    clips = video.build_clips(video.data_settings("tiny", "train"))
    _, arm, _ = video.trained_arm(study, "baseline", 0, clips)
    record = json.loads((arm.run_dir / common.DONE_FILE).read_text())
    record["settings"]["steps"] = 999
    (arm.run_dir / common.DONE_FILE).write_text(json.dumps(record))
    with pytest.raises(ValueError, match="other settings"):
        video.trained_arm(study, "baseline", 0, clips)


def test_a_damaged_cached_video_arm_is_named_and_retrained_regression_loaded_silently(tmp_path):
    """Issue 25: a flipped bit in a cached arm's weights was evaluated without a word."""
    first = repro.run("video", tmp_path / "a", size="tiny", seeds=[0])
    weights = next((tmp_path / "a" / "runs").glob("video-*-seed0-*/model.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0x08
    weights.write_bytes(bytes(data))
    messages = []
    again = repro.run("video", tmp_path / "a", size="tiny", seeds=[0], on_progress=messages.append)
    assert sorted(r["cached"] for r in again["runs"]) == [False, True]
    assert any("damaged" in m and str(weights) in m for m in messages), messages
    def numbers(results):  # all but timings
        return {arm: [{k: v for k, v in entry.items() if "ms_" not in k and "seconds" not in k} for entry in entries]
                for arm, entries in json.loads(json.dumps(results["per_seed"])).items() if isinstance(entries, list)}

    assert numbers(again) == numbers(first)  # retrained to the same weights


def test_video_judges_its_claim_row_alone_by_the_protocols_verdict_words(tmp_path):
    """The motion probe on context features is the claim row (a Holm family of one, direction
    higher); "within the seed spread" is no verdict; one seed or a smoke size gets none."""
    from negaug.repro import common, video

    def entries(motion):
        return [{"seed": s, "probe_context_motion": m, "probe_context_digit": 0.5, "probe_encoder_motion": 0.4,
                 "probe_encoder_digit": 0.3, "heldout_dpc_top1": 0.2, "heldout_dpc_loss": 3.0, "ms_per_step": 100.0,
                 "final_train_loss": 2.0, "heldout_dpc_chance": 0.01} for s, m in enumerate(motion)]
    per_seed = {video.BASELINE: entries([0.80, 0.81, 0.82]), video.NDA: entries([0.70, 0.71, 0.72]),
                video.UNTRAINED: entries([0.30, 0.31, 0.32])}
    study = common.Study(out_dir=tmp_path, size="full", seeds=[0, 1, 2], runs_dir=tmp_path)
    results = video.summarize(study, per_seed, [], {}, {"motion": 0.13, "digit": 0.11})
    claim = results["comparisons"][video.CLAIM_ROW]
    assert results["verdicts"] == {video.CLAIM_ROW: "opposite"} and claim["holm_p"] == claim["welch_p"]
    assert "**opposite**" in video.verdict_sentence(results) and "seed spread" not in video.verdict_sentence(results)
    assert "verdict" not in results["comparisons"]["probe_context_digit"]
    quick = video.summarize(common.Study(out_dir=tmp_path, size="quick", seeds=[0, 1, 2], runs_dir=tmp_path),
                            per_seed, [], {}, {"motion": 0.13, "digit": 0.11})
    assert quick["verdicts"] == {video.CLAIM_ROW: "-"}
