"""The DPC kind's cross-cutting features (issue 24): train.precision (bf16 autocast on the CPU close
to fp32; fp16 and 2-frame blocks under bf16 refused on the CPU in one line), train.compile (equal to
eager), config hashes unchanged while both are off, no batch norm (nothing to synchronise under
torchrun), and `negaug probe RUN` of a DPC run (entry with exact keys, appended to RUN/probe.json)
or of a kind without a probe (one line naming the command that fits). The torchrun tests are in
tests/test_distributed_dpc.py."""
from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

import pytest
import torch
from torch import nn

from negaug.data import build_clips
from negaug.experiment import checkpoint as ckpt
from negaug.experiment import kinds
from negaug.experiment.config import config_from_dict, learning_settings
from negaug.experiment.dpc_config import DPCConfig, load_dpc_config
from test_kinds import COMMON, TINY, config_of

BLOCKS_OF_2 = ["data.options={num_clips: 32, num_frames: 8, image_size: 16}"]  # 4 blocks of 2 frames


def losses_of(run_dir: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()
            if '"loss"' in line]


def test_bf16_on_the_cpu_trains_finite_and_close_to_fp32_but_not_identical(tmp_path):
    kind = kinds.get("dpc")
    kind.train(config_of("dpc", tmp_path, "fp32", 4))  # TINY: 4 blocks of 3 frames
    kind.train(config_of("dpc", tmp_path, "bf16", 4, ["train.precision=bf16"]))
    fp32, bf16 = losses_of(tmp_path / "fp32"), losses_of(tmp_path / "bf16")
    assert len(fp32) == len(bf16) == 4 and all(torch.isfinite(torch.tensor(bf16)))
    assert bf16 == pytest.approx(fp32, rel=1e-3)  # measured: 8e-5 apart at most, on losses near log(128) = 4.85 (64 target + 64 NDA columns)
    assert bf16 != fp32  # autocast did run: bf16 rounding shows in the 5th digit
    assert ckpt.load_latest(tmp_path / "bf16" / "checkpoints").state.keys() == \
        ckpt.load_latest(tmp_path / "fp32" / "checkpoints").state.keys()  # no scaler outside fp16


@pytest.mark.parametrize("overrides, message", [
    (["train.precision=fp16"], "train.precision=fp16 needs a GPU; on the CPU use train.precision=bf16"),
    (["train.precision=fp8"], "train.precision='fp8' is not one of fp32, bf16, fp16"),
    ([*BLOCKS_OF_2, "train.precision=bf16"], "train.precision=bf16 on the CPU with blocks of 2 frames: oneDNN's "
                                             "bf16 3-D convolution gives wrong weight gradients there"),
    (["train.compile=3"], "train.compile"),
    (["data.name=ucf101", "eval.every=2"], "eval.every=2: clip dataset 'ucf101' has no val split to select a best "
                                           "checkpoint on (only moving_mnist has one); set eval.every=0"),
    (["data.name=hmdb51", "eval.every=1"], "clip dataset 'hmdb51' has no val split"),
    (["eval.every=-1"], "eval.every=-1 must be an integer >= 0"),
    (["eval.every=2", "eval.num_clips=4"], "eval.num_clips=4 must be null (every val clip) or an integer >= "
                                           "data.batch_size (8)"),
])
def test_bad_precision_compile_and_eval_values_fail_in_one_line_before_any_folder(tmp_path, capsys, overrides, message):
    from negaug.cli import main

    preset, tiny = TINY["dpc"]
    argv = ["pretrain", preset, *tiny, *COMMON, *overrides, f"train.runs_dir={tmp_path}", "train.name=r"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "r").exists()


def test_precision_and_compile_off_leave_the_config_hash_of_existing_dpc_configs_unchanged():
    """Cached runs are named by a hash of `learning_settings`: the new keys enter it only when on,
    and a record written before they existed reads back with their defaults."""
    config = load_dpc_config("dpc-moving-mnist")
    assert "precision" not in learning_settings(config)["train"] and "compile" not in learning_settings(config)["train"]
    on = load_dpc_config("dpc-moving-mnist", ["train.precision=bf16", "train.compile=true"])
    assert learning_settings(on)["train"]["precision"] == "bf16" and learning_settings(on)["train"]["compile"] is True
    old = config.to_dict()
    del old["train"]["precision"], old["train"]["compile"]
    read = config_from_dict(old, DPCConfig)
    assert read.train.precision == "fp32" and read.train.compile is False
    assert learning_settings(read) == learning_settings(config)


def test_dpc_has_no_batch_norm_so_data_parallel_runs_synchronise_nothing():
    """Under torchrun a batch-norm network would see per-rank batch statistics (the GAN kind then
    needs SyncBatchNorm or refuses CPUs); DPC normalises with GroupNorm, per clip."""
    _, state = kinds.get("dpc").prepare(config_of("dpc", Path("unused"), "r", 2))
    norms = [type(m) for m in state.model.modules() if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm))]
    assert norms and all(norm is nn.GroupNorm for norm in norms)


@pytest.mark.slow
def test_compiled_dpc_training_matches_eager(tmp_path):
    kind = kinds.get("dpc")
    kind.train(config_of("dpc", tmp_path, "eager", 3))
    kind.train(config_of("dpc", tmp_path, "compiled", 3, ["train.compile=true"]))
    assert losses_of(tmp_path / "compiled") == pytest.approx(losses_of(tmp_path / "eager"), rel=1e-5, abs=1e-6)
    eager = ckpt.load_latest(tmp_path / "eager" / "checkpoints").state["model"]
    compiled = ckpt.load_latest(tmp_path / "compiled" / "checkpoints").state["model"]
    assert compiled.keys() == eager.keys()  # no "_orig_mod." prefixes: checkpoints interchange
    # the encoder's last bias shifts every target alike, which InfoNCE ignores but for relu(z) in the
    # context: its gradient is rounding-sized, and Adam turns rounding into steps of up to lr (1e-3)
    # each (measured: 8e-4 apart after 3 steps; every other tensor within 1.2e-7)
    shift_invariant = "encoder.net.6.bias"
    for key, value in eager.items():
        tolerance = {"rtol": 0, "atol": 3 * 1e-3} if key == shift_invariant else {"rtol": 1e-5, "atol": 1e-6}
        torch.testing.assert_close(compiled[key], value, **tolerance, msg=key)


# ---------------------------------------------------------------------------------------------
# negaug probe RUN


PROTOCOL_KEYS = {"train_split", "test_split", "num_train", "num_test", "data", "data_options", "checkpoint_step",
                 "model", "versions"}


def test_probe_of_a_dpc_run_appends_an_entry_with_exact_keys(tmp_path, capsys):
    from negaug.cli import main

    kinds.get("dpc").train(config_of("dpc", tmp_path, "v", 2))
    assert main(["probe", str(tmp_path / "v"), "--epochs", "2", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "linear_probe/context/motion" in out and "heldout_dpc" in out
    entries = json.loads((tmp_path / "v" / "probe.json").read_text())["evaluations"]
    assert len(entries) == 1
    entry = entries[0]
    assert set(entry) == {"step", "checkpoint", "checkpoint_choice", "timestamp", "kind", "nda_transform", "results"}
    assert entry["step"] == 2 and entry["kind"] == "dpc" and entry["nda_transform"] == "jigsaw"
    probes = {f"linear_probe/{f}/{label}" for f in ("context", "encoder") for label in ("motion", "digit")}
    assert set(entry["results"]) == {*probes, "heldout_dpc"}
    for key in probes:
        result = entry["results"][key]
        assert set(result) == {"value", "train_accuracy", "protocol"} and 0 <= result["value"] <= 1
        assert set(result["protocol"]) == PROTOCOL_KEYS | {"features", "feature_dim", "label", "num_classes", "probe",
                                                           "epochs", "seed", "feature_batch"}
        protocol = result["protocol"]
        assert (protocol["train_split"], protocol["test_split"], protocol["num_train"], protocol["num_test"]) == \
            ("train", "test", 32, 32)
        assert protocol["epochs"] == 2 and protocol["feature_dim"] == 16 and protocol["checkpoint_step"] == 2
        assert protocol["num_classes"] == (8 if key.endswith("motion") else 10)
    heldout = entry["results"]["heldout_dpc"]
    assert set(heldout) == {"value", "loss", "chance", "protocol"}
    assert set(heldout["protocol"]) == PROTOCOL_KEYS | {"batch_size", "what"}
    # 8 clips x 2 predicted blocks x 2 x 2 positions (16 px / 2^3) = 64 columns: chance 1/64
    assert heldout["chance"] == 1 / 64 and heldout["protocol"]["batch_size"] == 8
    again = kinds.get("dpc").probe(tmp_path / "v", epochs=2, device="cpu")  # appended, and seeded
    assert len(json.loads((tmp_path / "v" / "probe.json").read_text())["evaluations"]) == 2
    assert {k: r["value"] for k, r in again["results"].items()} == {k: r["value"] for k, r in entry["results"].items()}


def test_probe_labels_are_motion_and_digit_for_moving_mnist_and_action_otherwise():
    from negaug.data.clips import TensorClipDataset
    from negaug.video.probe import probe_labels

    clips, labels, motion = torch.zeros(3, 4, 1, 8, 8), torch.tensor([0, 2, 1]), torch.tensor([5, 0, 7])
    mnist = probe_labels(TensorClipDataset(clips, labels, 10, "moving_mnist", motion, 8))
    assert list(mnist) == ["motion", "digit"] and mnist["motion"][1] == 8 and mnist["digit"][1] == 10
    assert torch.equal(mnist["motion"][0], motion) and torch.equal(mnist["digit"][0], labels)
    action = probe_labels(TensorClipDataset(clips, labels, 101, "ucf101"))
    assert list(action) == ["action"] and action["action"][1] == 101


def test_probe_refuses_a_test_split_smaller_than_the_runs_batch_before_any_file(tmp_path, capsys):
    from negaug.cli import main

    kinds.get("dpc").train(config_of("dpc", tmp_path, "v", 2))
    record = ckpt.load_latest(tmp_path / "v" / "checkpoints")
    assert record.record["config"]["data"]["batch_size"] == 8
    capsys.readouterr()
    def fewer_test_clips(*args, **kwargs):
        return build_clips(*args, **{**kwargs, **({"num_clips": 5} if kwargs.get("split") == "test" else {})})

    with mock.patch("negaug.data.build_clips", side_effect=fewer_test_clips):
        assert main(["probe", str(tmp_path / "v"), "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert err == "negaug: error: held-out DPC needs at least one batch of 8 clips; the test split has 5\n"
    assert not (tmp_path / "v" / "probe.json").exists()


@pytest.mark.parametrize("flag, message", [
    (["--download"], "--download: clip datasets are never downloaded"),
    (["--epochs", "0"], "--epochs must be from 1 to"),
])
def test_bad_probe_flags_of_a_dpc_run_fail_in_one_line_before_any_file(tmp_path, capsys, flag, message):
    from negaug.cli import main

    kinds.get("dpc").train(config_of("dpc", tmp_path, "v", 2))
    capsys.readouterr()
    assert main(["probe", str(tmp_path / "v"), *flag]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "v" / "probe.json").exists()


@pytest.mark.parametrize("name", [name for name in kinds.names() if kinds.get(name).probe is None])
def test_probe_of_a_kind_without_a_probe_names_the_command_that_fits_in_one_line(tmp_path, capsys, name):
    from negaug.cli import main

    kinds.get(name).train(config_of(name, tmp_path, "r", 2))
    capsys.readouterr()
    assert main(["probe", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert f"is a {kinds.get(name).what} run, not one `negaug probe` measures (it probes pretrain, dpc runs)" in err
    assert f"`negaug eval {tmp_path / 'r'}` evaluates it (and `negaug train --resume {tmp_path / 'r'}` resumes it)" in err
    assert not (tmp_path / "r" / "probe.json").exists()


# ---------------------------------------------------------------------------------------------
# eval.every: held-out DPC on the val clips, checkpoints/best/


def eval_records(run_dir: Path) -> list[dict]:
    return [r for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if "eval_val" in r]


def test_eval_every_logs_val_scores_and_keeps_the_best_checkpoint_which_the_probe_rescores(tmp_path):
    """Issue 24: eval.every=2 scores held-out DPC on the val clips at steps 2, 4, 6 and keeps the
    first of the best top-1 in checkpoints/best/; `negaug probe --checkpoint best --split val`
    scores the same clips in the same batches, so its held-out DPC is the logged value exactly.
    Scoring draws nothing: the final weights are those of eval.every=0."""
    from negaug.cli import main

    kind = kinds.get("dpc")
    kind.train(config_of("dpc", tmp_path, "e", 6, ["eval.every=2"]))
    records = eval_records(tmp_path / "e")
    assert [r["step"] for r in records] == [2, 4, 6]
    for record in records:
        found = record["eval_val"]
        assert set(found) == {"heldout_dpc_top1", "heldout_dpc_loss", "heldout_dpc_chance", "protocol"}
        assert found["heldout_dpc_chance"] == 1 / 64 and 0 <= found["heldout_dpc_top1"] <= 1  # 8 clips x 2 x 2 x 2
        assert (found["protocol"]["split"], found["protocol"]["num_clips"], found["protocol"]["step"]) == ("val", 32, record["step"])
    best_value, best_step = max(((r["eval_val"]["heldout_dpc_top1"], r["step"]) for r in records),
                                key=lambda pair: (pair[0], -pair[1]))  # the first of equal values
    best = ckpt.load_latest(tmp_path / "e" / "checkpoints" / "best")
    assert best.step == best_step and ckpt.list_steps(tmp_path / "e" / "checkpoints" / "best") == [best_step]
    assert best.state["best"] == {"metric": "heldout_dpc_top1", "value": best_value, "step": best_step}
    assert ckpt.load_latest(tmp_path / "e" / "checkpoints").state["best"] == best.state["best"]
    assert f"heldout_dpc_top1 {best_value:.4f} at step {best_step}" in (tmp_path / "e" / "report.md").read_text()
    assert main(["probe", str(tmp_path / "e"), "--checkpoint", "best", "--split", "val", "--epochs", "1",
                 "--device", "cpu"]) == 0
    entry = json.loads((tmp_path / "e" / "probe.json").read_text())["evaluations"][0]
    heldout = entry["results"]["heldout_dpc"]
    assert entry["step"] == best_step and entry["checkpoint_choice"] == "best"
    assert heldout["protocol"]["test_split"] == "val" and heldout["protocol"]["num_test"] == 32
    assert heldout["value"] == best_value
    logged_loss = next(r["eval_val"]["heldout_dpc_loss"] for r in records if r["step"] == best_step)
    assert heldout["loss"] == pytest.approx(logged_loss, rel=1e-6, abs=1e-9)
    kind.train(config_of("dpc", tmp_path, "plain", 6))
    assert eval_records(tmp_path / "plain") == [] and not (tmp_path / "plain" / "checkpoints" / "best").exists()
    plain = ckpt.load_latest(tmp_path / "plain" / "checkpoints")
    assert "best" not in plain.state  # eval.every=0: the checkpoint layout of before
    scored = ckpt.load_latest(tmp_path / "e" / "checkpoints").state["model"]
    assert all(torch.equal(scored[k], v) for k, v in plain.state["model"].items())


def test_the_best_of_a_dpc_run_survives_a_resume(tmp_path):
    from negaug.experiment import runs
    from negaug.experiment.loop import restore_latest

    kind = kinds.get("dpc")
    kind.train(config_of("dpc", tmp_path, "whole", 6, ["eval.every=2"]))
    logged: list[int] = []
    kind.train(config_of("dpc", tmp_path, "parts", 6, ["eval.every=2"]),
               stop_requested=lambda: bool(logged) and logged[-1] >= 2, on_log=lambda r: logged.append(r["step"]))
    first = eval_records(tmp_path / "parts")
    assert [r["step"] for r in first] == [2]
    _, state = kind.prepare(config_of("dpc", tmp_path, "unused", 6, ["eval.every=2"]))
    restore_latest(tmp_path / "parts", state, None)
    assert state.step == 2 and state.best == {"metric": "heldout_dpc_top1",
                                              "value": first[0]["eval_val"]["heldout_dpc_top1"], "step": 2}
    kind.train(runs.resume_config(tmp_path / "parts", cls=DPCConfig), run_dir=tmp_path / "parts", resume=True)
    whole, parts = (ckpt.load_latest(tmp_path / name / "checkpoints" / "best") for name in ("whole", "parts"))
    assert parts.step == whole.step and parts.state["best"] == whole.state["best"]
    assert all(torch.equal(parts.state["model"][k], v) for k, v in whole.state["model"].items())


def test_eval_num_clips_scores_the_first_val_clips():
    recipe, _ = kinds.get("dpc").prepare(config_of("dpc", Path("unused"), "r", 2, ["eval.every=2", "eval.num_clips=16"]))
    everything = build_clips("moving_mnist", split="val", num_clips=32, num_frames=12, image_size=16)
    assert len(recipe.val_dataset) == 16 and torch.equal(recipe.val_dataset.storage, everything.storage[:16])
    none, _ = kinds.get("dpc").prepare(config_of("dpc", Path("unused"), "r", 2))
    assert none.val_dataset is None


def test_the_eval_section_stays_out_of_the_config_hash_of_dpc_configs():
    """A DPC record written before the eval section existed reads back with eval.every=0 and the
    same `learning_settings` (the cache key of repro runs); eval.every changes nothing in them."""
    config = load_dpc_config("dpc-moving-mnist")
    old = config.to_dict()
    del old["eval"]
    read = config_from_dict(old, DPCConfig)
    assert read.eval.every == 0 and read.eval.num_clips is None
    assert learning_settings(read) == learning_settings(config) and "eval" not in learning_settings(config)
    assert learning_settings(load_dpc_config("dpc-moving-mnist", ["eval.every=5"])) == learning_settings(config)


def test_probe_split_val_is_refused_for_a_clip_dataset_without_one():
    from negaug.experiment.dpc import LoadedDPCRun
    from negaug.experiment.dpc_probe import held_out_clips

    config = load_dpc_config("dpc-moving-mnist", ["data.name=ucf101"])
    loaded = LoadedDPCRun(Path("r"), config, 2, nn.Identity(), Path("r/checkpoints/step_0000002.json"))
    with pytest.raises(ValueError, match=r"^--split val: clip dataset 'ucf101' has no validation split \(only "
                                         r"moving_mnist has one\); probe the run on its test clips \(--split test\)$"):
        held_out_clips(loaded, "val")
