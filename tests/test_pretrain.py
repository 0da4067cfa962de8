"""`negaug pretrain` / `negaug probe`: the strict config, run folders, exact resume, NaN guard, the
probe's entries, the CLI's one-line errors and exit codes, and a quality gate."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from negaug.cli import main
from negaug.experiment import NonFiniteLossError, load_config
from negaug.experiment import checkpoint as ckpt
from negaug.experiment.config import preset_names
from negaug.experiment.pretrain import pretrain
from negaug.experiment.pretrain_config import (
    PretrainConfig,
    load_pretrain_config,
    pretrain_preset_names,
)
from negaug.experiment.probe import distance_comparison, probe_run

# small_cnn width 4 on 16 px digits of two classes: a step takes milliseconds
TINY = ["data.batch_size=16", "data.image_size=16", "data.options.classes=[0, 1]", "model.options.width=4",
        "model.head_hidden=16", "model.dim=8", "objective.queue_size=48", "objective.num_splits=2",
        "train.steps=6", "train.log_every=2", "train.checkpoint_every=3", "train.knn_every=3",
        "train.progress=false", "train.device=cpu", "nda.transform=jigsaw", "eval.knn_k=20", "eval.probe_epochs=2"]


def tiny(tmp_path, *extra) -> PretrainConfig:
    return load_pretrain_config("mnist", [*TINY, f"train.runs_dir={tmp_path}", *extra])


def cli(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def final_tensors(run_dir: Path) -> dict[str, torch.Tensor]:
    step = ckpt.list_steps(run_dir / "checkpoints")[-1]
    return load_file(run_dir / "checkpoints" / f"{ckpt.stem(step)}.safetensors")


def logged(run_dir: Path) -> list[dict]:
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in line.items() if k not in ("it_per_s", "elapsed_s")} for line in lines]


# --- config --------------------------------------------------------------------------------------


def test_pretraining_presets_live_apart_and_the_cifar10_one_has_the_papers_settings():
    assert pretrain_preset_names() == ["cifar10", "cifar10_mocov2", "mnist"]
    assert preset_names() == ["celeba64", "cifar10", "cifar100", "default", "dots", "repro_numerosity", "repro_toy",
                              "ring", "stl10"]  # negaug train's list is unchanged
    with pytest.raises(ValueError, match="unknown preset 'mnist'"):
        load_config("mnist")
    c10 = load_pretrain_config("cifar10")  # Appendix K's values, the rest main_moco.py's MoCo v2
    assert (c10.model.encoder, c10.data.name, c10.data.batch_size, c10.optim.lr, c10.optim.schedule) == \
        ("resnet18_cifar", "cifar10", 256, 0.3, "cosine")
    assert (c10.objective.temperature, c10.model.head_hidden, c10.model.dim, c10.objective.queue_size,
            c10.objective.momentum, c10.optim.weight_decay) == (0.07, None, 2048, 65536, 0.999, 1e-4)
    assert c10.train.steps == 1000 * (50_000 // 256)  # 1,000 epochs of full batches
    assert load_pretrain_config().preset == "mnist" and load_pretrain_config().model.encoder == "small_cnn"


def test_the_mocov2_preset_is_main_moco_with_its_v2_flags():
    v2 = load_pretrain_config("cifar10_mocov2")
    assert (v2.data.batch_size, v2.optim.lr, v2.optim.momentum, v2.optim.weight_decay, v2.optim.schedule) == \
        (256, 0.03, 0.9, 1e-4, "cosine")
    assert (v2.objective.temperature, v2.objective.momentum, v2.objective.queue_size) == (0.2, 0.999, 65536)
    assert (v2.model.head_hidden, v2.model.dim) == (None, 128)
    assert v2.train.steps == 200 * (50_000 // 256)
    for preset in ("cifar10", "cifar10_mocov2"):
        a = load_pretrain_config(preset).augment
        assert (a.crop_scale, a.flip_prob, a.jitter_prob, a.brightness, a.contrast, a.saturation, a.hue,
                a.jitter_order, a.grayscale_prob, a.blur_prob, a.blur_sigma) == \
            ([0.2, 1.0], 0.5, 0.8, 0.4, 0.4, 0.4, 0.1, "random", 0.2, 0.5, [0.1, 2.0])


def test_new_augment_keys_leave_the_hash_of_runs_without_them_alone():
    from negaug.repro.common import config_hash
    mnist = load_pretrain_config("mnist")
    assert config_hash(mnist) == "511f4c5b5092d5a1be8ebc8be09151ec6ad1eff463d9b6f5dbcdc1f1954e1a14"  # negaug 0.4's
    assert config_hash(load_pretrain_config("mnist", ["augment.blur_sigma=[0.2, 1.0]"])) == config_hash(mnist)
    for change in ("augment.hue=0.1", "augment.jitter_order=random", "augment.blur_prob=0.5"):
        assert config_hash(load_pretrain_config("mnist", [change])) != config_hash(mnist)


def test_pretrain_config_is_strict_and_options_belong_to_their_component(tmp_path):
    with pytest.raises(ValueError, match=r"unknown config key 'objective.queue'.*did you mean 'queue_size'"):
        load_pretrain_config("mnist", ["objective.queue=3"])
    with pytest.raises(ValueError, match=r"optim.lr: expected float, got 'fast'"):
        load_pretrain_config("mnist", ["optim.lr=fast"])
    assert load_pretrain_config("mnist", ["model.encoder=resnet18_cifar"]).model.options == {}  # width was small_cnn's
    path = tmp_path / "mine.yaml"
    path.write_text("base: mnist\nnda: {transform: jigsaw, options: {k: 4}}\n")
    assert load_pretrain_config(str(path)).nda.options == {"k": 4}
    assert load_pretrain_config(str(path), ["nda.transform=cutout"]).nda.options == {}
    assert PretrainConfig().data.batch_size == 256 and load_config("default").data.batch_size == 64


@pytest.mark.parametrize("override, fragment", [
    ("objective.num_splits=16", "objective.num_splits=16"), ("nda.transform=jigsaw3", "nda"),
    ("nda.options.k=5", "nda: jigsaw k=5"), ("model.encoder=vit", "model"), ("augment.flip_prob=2", "augment: flip_prob"),
    ("optim.schedule=step", "optim.schedule"), ("train.name=../x", "train.name="), ("objective.temperature=0", "objective.temperature"),
])
def test_bad_values_are_one_line_exit_2_before_any_folder(tmp_path, capsys, override, fragment):
    code, _, err = cli(capsys, "pretrain", "mnist", *TINY, f"train.runs_dir={tmp_path}", override)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("negaug: error:") and fragment in lines[0], err
    assert list(tmp_path.iterdir()) == []


# --- the loop ------------------------------------------------------------------------------------


def test_run_folder_metrics_report_and_checkpoint_hold_the_moco_state(tmp_path):
    result = pretrain(tiny(tmp_path, "train.name=r"))
    run = tmp_path / "r"
    assert result.step == 6 and not result.interrupted
    assert {p.name for p in run.iterdir()} >= {"config.yaml", "metrics.jsonl", "report.md", "checkpoints"}
    records = logged(run)
    losses = [r for r in records if "loss" in r]
    assert [r["step"] for r in losses] == [2, 4, 6]
    assert {"accuracy", "positive_similarity", "queue_similarity", "nda_similarity", "nda_above_positive",
            "lr"} <= set(losses[0])
    knn = [r for r in records if "knn" in r]
    assert [r["step"] for r in knn] == [3, 6] and knn[-1]["knn"] == result.knn
    assert 0.5 <= result.knn["value"] <= 1 and result.knn["protocol"]["num_bank"] == 720
    assert "k-NN accuracy" in (run / "report.md").read_text() and (run / "curves_loss.png").exists()
    tensors = final_tensors(run)
    assert tensors["model.queue"].shape == (48, 8) and int(tensors["model.queue_ptr"]) == (6 * 16) % 48
    assert 0 < losses[-1]["lr"] < 0.06  # cosine decay from the preset's 0.06


def test_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path):
    whole = pretrain(tiny(tmp_path, "train.name=whole"))
    calls = iter(range(100))
    stopped = pretrain(tiny(tmp_path, "train.name=split"), stop_requested=lambda: next(calls) >= 2)
    assert stopped.interrupted and stopped.step == 3
    resumed = pretrain(tiny(tmp_path, "train.name=split"), resume=True)
    assert resumed.step == whole.step == 6
    a, b = final_tensors(tmp_path / "whole"), final_tensors(tmp_path / "split")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # MoCo, queue, SGD, every RNG
    assert logged(tmp_path / "whole") == logged(tmp_path / "split")


def test_a_diverging_run_stops_without_saving_a_non_finite_state(tmp_path, capsys):
    with pytest.raises(NonFiniteLossError, match="step"):
        pretrain(tiny(tmp_path, "train.name=nan", "optim.lr=1e30", "train.checkpoint_every=1", "train.log_every=1"))
    for step in ckpt.list_steps(tmp_path / "nan" / "checkpoints"):
        tensors = load_file(tmp_path / "nan" / "checkpoints" / f"{ckpt.stem(step)}.safetensors")
        assert all(torch.isfinite(t).all() for t in tensors.values() if t.is_floating_point())
    code, _, err = cli(capsys, "pretrain", "mnist", *TINY, f"train.runs_dir={tmp_path}", "train.name=nan2",
                       "optim.lr=1e30")
    assert code == 1 and "non-finite" in err


# --- probe ---------------------------------------------------------------------------------------


def test_probe_appends_entries_with_their_protocol(tmp_path, capsys):
    pretrain(tiny(tmp_path, "train.name=p"))
    entry = probe_run(tmp_path / "p", device="cpu")
    assert set(entry["results"]) == {"linear_probe", "knn", *(f"cosine_distance/{space}/{name}" for space in
                                     ("features", "embedding") for name in ("jigsaw", "other_image"))}
    probe = entry["results"]["linear_probe"]
    assert 0.5 <= probe["value"] <= 1  # two classes
    protocol = probe["protocol"]
    assert (protocol["epochs"], protocol["seed"], protocol["checkpoint_step"], protocol["feature_dim"]) == (2, 0, 6, 32)
    assert (protocol["num_train"], protocol["num_test"]) == (720, 200)  # mnist5k digits 0 and 1: 360 train / 100 test each
    for space in ("features", "embedding"):
        distance = entry["results"][f"cosine_distance/{space}/jigsaw"]
        assert 0 <= distance["value"] <= 2 and sum(distance["histogram"]) == distance["protocol"]["num_images"] == 200
        assert distance["value"] < entry["results"][f"cosine_distance/{space}/other_image"]["value"]
    assert len(entry["plots"]) == 2 and all((tmp_path / "p" / plot).exists() for plot in entry["plots"])
    code, out, err = cli(capsys, "probe", str(tmp_path / "p"), "--epochs", "1", "--device", "cpu")
    assert code == 0 and "linear_probe" in out and "knn" in out
    assert "[probe] features of 720 training" in err and "[probe] linear probe: 1 epochs" in err  # progress
    entries = json.loads((tmp_path / "p" / "probe.json").read_text())["evaluations"]
    assert [e["results"]["linear_probe"]["protocol"]["epochs"] for e in entries] == [2, 1]
    figure = distance_comparison({"plain": tmp_path / "p", "again": tmp_path / "p"}, tmp_path / "figure9.png")
    assert figure.stat().st_size > 0
    with pytest.raises(ValueError, match="no probe entry"):
        distance_comparison({"none": tmp_path}, tmp_path / "x.png")


def test_probe_and_resume_refuse_a_gan_run_and_a_missing_folder_with_one_line(tmp_path, capsys):
    gan = tmp_path / "gan" / "checkpoints"
    gan.mkdir(parents=True)
    ckpt.save(gan, 1, {"step": 1}, {"config": load_config("default").to_dict()})
    for argv, says in ((["probe", str(tmp_path / "gan")], "is a GAN run, not one `negaug probe` measures"),
                       (["pretrain", "--resume", str(tmp_path / "gan")], "is a GAN run, not a MoCo-v2 pretraining run")):
        code, _, err = cli(capsys, *argv)
        assert code == 2 and says in err and len(err.strip().splitlines()) == 1
        assert "`negaug eval " in err and "`negaug train --resume " in err
    code, _, err = cli(capsys, "probe", str(tmp_path / "nothing"))
    assert code == 2 and "does not exist" in err


# --- CLI -----------------------------------------------------------------------------------------


def test_cli_pretrains_names_the_folder_and_the_next_commands_then_resumes(tmp_path, capsys):
    code, out, _ = cli(capsys, "pretrain", "mnist", *TINY, f"train.runs_dir={tmp_path}", "train.name=c", "train.steps=3")
    assert code == 0 and f"in {tmp_path / 'c'} on cpu" in out and "negaug probe" in out and "k-NN accuracy" in out
    code, out, _ = cli(capsys, "pretrain", "--resume", str(tmp_path / "c"), "train.steps=6")
    assert code == 0 and "from step 3" in out and ckpt.list_steps(tmp_path / "c" / "checkpoints")[-1] == 6
    code, _, err = cli(capsys, "pretrain", "--resume", str(tmp_path / "c"), "objective.temperature=0.5")
    assert code == 2 and "cannot change when resuming" in err
    code, out, _ = cli(capsys, "pretrain", "--dry-run", *TINY)
    assert code == 0 and "queue_size: 48" in out


@pytest.mark.parametrize("command", ["pretrain", "probe"])
def test_help_has_examples_and_does_not_import_torch(command):
    code = ("import sys; from negaug.cli import main\n"
            f"try:\n    main([{command!r}, '--help'])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False"
    assert "examples:" in out and f"negaug {command}" in out.split("examples:")[1]


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_and_exits_130(tmp_path):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    args = [sys.executable, "-m", "negaug", "pretrain", "mnist", *TINY, f"train.runs_dir={tmp_path}", "train.name=i",
            "train.steps=100000", "train.checkpoint_every=100000", "train.knn_every=0"]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics, deadline = tmp_path / "i" / "metrics.jsonl", time.time() + 120
    while not metrics.exists() or not metrics.read_text():
        assert time.time() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "checkpoint saved" in err and "negaug pretrain --resume" in err
    steps = ckpt.list_steps(tmp_path / "i" / "checkpoints")
    assert len(steps) == 1 and 0 < steps[0] < 100000


# --- quality gate --------------------------------------------------------------------------------


@pytest.mark.slow
def test_quality_gate_pretraining_the_mnist_preset_lifts_knn_accuracy_well_above_its_random_init(tmp_path):
    """The mnist preset at width 8 for 30 steps of 128 digits (~4 s on one core). Measured with
    seeds 0 / 1: k-NN accuracy 62.5% / 58.1% at initialisation (random conv features already
    separate digits), 72.6% / 70.2% after training (chance: 10%). The gate asks for at least 62%,
    at least 5 points above the same network untrained, and at most 95% (more at this size would
    mean the test labels leaked)."""
    from negaug.experiment.pretrain import knn_of_model
    from negaug.experiment.pretrain_build import build_pretraining

    config = load_pretrain_config("mnist", ["model.options.width=8", "train.steps=30", "train.knn_every=0",
                                            "train.checkpoint_every=0", "train.progress=false",
                                            f"train.runs_dir={tmp_path}", "train.name=gate"])
    recipe, state = build_pretraining(config)
    untrained = knn_of_model(config, recipe, state)["value"]
    trained = pretrain(config).knn["value"]
    assert 0.62 <= trained <= 0.95, trained
    assert trained >= untrained + 0.05, (untrained, trained)


def test_a_tiny_run_with_mocov2s_augmentation_and_head_trains_and_reports(tmp_path):
    config = tiny(tmp_path, "model.head_hidden=null", "augment.hue=0.1", "augment.jitter_order=random",
                  "augment.blur_prob=0.5", "train.name=v2")
    result = pretrain(config)
    assert result.knn["value"] >= 0
    report = (result.run_dir / "report.md").read_text()
    assert "hidden = encoder features (MoCo v2), 8-d output" in report
    with pytest.raises(ValueError, match="jitter_order"):
        pretrain(tiny(tmp_path, "augment.jitter_order=shuffled", "train.name=bad"))


def test_a_single_knn_point_gets_no_empty_curve_and_two_get_a_curve(tmp_path):
    pretrain(tiny(tmp_path, "train.name=one", "train.knn_every=0"))  # k-NN at the end only: one point
    report = (tmp_path / "one" / "report.md").read_text()
    assert not (tmp_path / "one" / "curves_knn.png").exists() and "curves_knn.png" not in report
    pretrain(tiny(tmp_path, "train.name=two"))  # knn_every=3 of 6 steps: steps 3 and 6
    assert (tmp_path / "two" / "curves_knn.png").exists()
    assert "![k-NN accuracy](curves_knn.png)" in (tmp_path / "two" / "report.md").read_text()


def test_probe_under_torchrun_is_refused_in_one_line_regression_every_rank_appended_an_entry(tmp_path, capsys,
                                                                                              monkeypatch):
    """Each process of `torchrun ... negaug probe` probed and appended its own entry to probe.json:
    the command refuses torchrun (a probe is one process's work) before reading anything."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    code, out, err = cli(capsys, "probe", str(tmp_path / "no-such-run"))
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "negaug probe runs in one process" in err and "without torchrun" in err and "Traceback" not in err
