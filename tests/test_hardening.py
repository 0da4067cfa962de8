"""What a careless or hostile user does never overwrites their files, runs code, merges runs or ends
in a traceback (issue 11). One regression test per class of failure; `test_fuzz_*` at the end."""
from __future__ import annotations

import errno
import random
from pathlib import Path

import pytest
import torch
import yaml

from negaug.cli import main
from negaug.experiment import checkpoint as ckpt
from negaug.experiment import load_config, load_run, resume_config, runs, train
from negaug.experiment.build import build

TINY = ["data.batch_size=8", "data.options.classes=[0, 1]", "model.options.width=4", "train.steps=4",
        "train.progress=false", "train.log_every=1", "train.sample_every=0", "train.checkpoint_every=2",
        "train.ema_start=2", "train.ema_decay=0.9", "train.num_sample_images=4", "train.device=cpu"]


def tiny(tmp_path, *extra):
    return load_config("default", [*TINY, f"train.runs_dir={tmp_path}", *extra])


def cli(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(err: str, *fragments: str) -> None:
    lines = [line for line in err.strip().splitlines() if not line.startswith("train:")]
    assert len(lines) == 1 and lines[0].startswith("negaug: error:") and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- 1. run folders stay inside runs_dir and never take over a folder holding files ----------------

@pytest.mark.parametrize("name", ["..", ".", "../x", "/abs/path", "a/b", "' padded'", "x" * 201])
def test_run_names_that_leave_the_runs_folder_are_refused_before_any_write(tmp_path, capsys, monkeypatch, name):
    user = tmp_path / "project"
    (user / "runs").mkdir(parents=True)
    (user / "config.yaml").write_text("mine")
    (user / "report.md").write_text("mine too")
    monkeypatch.chdir(user)
    before = tree(tmp_path)
    code, _, err = cli(capsys, "train", *TINY, f"train.name={name}")
    assert code == 2
    assert_one_line_error(err, "train.name=")
    assert tree(tmp_path) == before


def test_a_new_run_never_writes_into_a_folder_holding_files(tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "config.yaml").write_text("the user's own")
    code, _, err = cli(capsys, "train", *TINY, f"train.runs_dir={tmp_path}", "train.name=mine")
    assert code == 2
    assert_one_line_error(err, "already exists and holds config.yaml")
    assert tree(folder) == {"config.yaml": b"the user's own"}


# --- 2. options belong to the component they were written for --------------------------------------

@pytest.mark.parametrize("overrides, options", [
    (["nda.transform=stitch"], {}),
    (["nda.options.alpha=10", "nda.transform=mixup"], {"alpha": 10}),
    (["nda.transform=mixup", "nda.options.alpha=10"], {"alpha": 10}),
    (["nda.transform=other_data", "nda.options.dataset=dots", "nda.options.dataset_options={count: 3}"],
     {"dataset": "dots", "dataset_options": {"count": 3}}),
    (["nda.options={}"], {}),
    (["nda.options={}", "nda.options.k=4"], {"k": 4}),
    (["nda.options.k=4"], {"k": 4}),
])
def test_a_components_options_do_not_survive_a_change_of_component(overrides, options):
    assert load_config("default", overrides).nda.options == options


def test_every_transform_trains_from_the_command_line_with_the_default_preset(tmp_path, capsys):
    for transform in ("stitch", "cutmix", "mixup", "cutout"):
        code, _, err = cli(capsys, "train", *TINY, "train.steps=1", f"train.runs_dir={tmp_path}",
                           f"train.name={transform}", f"nda.transform={transform}")
        assert code == 0, err


# --- 3. one process per run folder ------------------------------------------------------------------

def test_a_second_run_in_a_folder_in_use_is_refused_and_writes_nothing(tmp_path, capsys):
    folder = tmp_path / "shared"
    folder.mkdir()
    with runs.RunLock(folder):  # another negaug process training there
        code, _, err = cli(capsys, "train", *TINY, f"train.runs_dir={tmp_path}", "train.name=shared")
        assert code == 2
        assert_one_line_error(err, "is in use by another negaug process")
        assert sorted(p.name for p in folder.iterdir()) == [runs.LOCK_FILE]
    train(tiny(tmp_path, "train.name=done", "train.steps=2"))
    with runs.RunLock(tmp_path / "done"):
        with pytest.raises(ValueError, match="in use by another negaug process"):
            train(resume_config(tmp_path / "done", ["train.steps=4"]), run_dir=tmp_path / "done", resume=True)


# --- 4. resume continues the recorded config, whatever happened to config.yaml ---------------------

@pytest.mark.parametrize("edit", ["lam", "width", "broken"])
def test_resume_continues_the_recorded_config_not_an_edited_config_yaml(tmp_path, edit):
    train(tiny(tmp_path, "train.name=r", "train.steps=2"))
    yaml_path = tmp_path / "r" / "config.yaml"
    text = yaml_path.read_text()
    edited = {"lam": text.replace("lam: 0.75", "lam: 0.5"), "width": text.replace("width: 4", "width: 8"),
              "broken": "{not: [yaml"}[edit]
    yaml_path.write_text(edited)
    warnings = []
    config = resume_config(tmp_path / "r", ["train.steps=4"], warn=warnings.append)
    assert config.nda.lam == 0.75 and config.model.options["width"] == 4
    assert len(warnings) == 1 and "differs from the config recorded in the checkpoint" in warnings[0]
    train(config, run_dir=tmp_path / "r", resume=True)
    train(tiny(tmp_path, "train.name=whole", "train.steps=4"))
    assert torch.equal(load_run(tmp_path / "r").raw_generator.stem.weight,
                       load_run(tmp_path / "whole").raw_generator.stem.weight)
    assert "lam: 0.75" in yaml_path.read_text()  # rewritten from the record


def test_concurrent_evaluations_of_one_run_lose_no_entry(tmp_path):
    import threading

    from negaug.experiment.evaluate import append_evaluation

    path = tmp_path / "eval.json"
    threads = [threading.Thread(target=lambda n=n: [append_evaluation(path, {"writer": n, "i": i}) for i in range(15)])
               for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    import json as json_module
    entries = json_module.loads(path.read_text())["evaluations"]
    assert sorted((e["writer"], e["i"]) for e in entries) == [(n, i) for n in range(3) for i in range(15)]


# --- 6. tiny inputs never exhaust memory --------------------------------------------------------------

def test_yaml_aliases_and_oversized_configs_are_refused(tmp_path, capsys):
    bomb = tmp_path / "bomb.yaml"
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]" for i in range(1, 12)]
    bomb.write_text("\n".join(lines) + "\nnda: {options: {k: *a11}}\n")
    code, _, err = cli(capsys, "train", str(bomb), "--dry-run")
    assert code == 2
    assert_one_line_error(err, "aliases (*name) are not allowed")
    big = tmp_path / "big.yaml"
    big.write_text("nda: {options: {k: 2, pad: '" + "x" * 1_100_000 + "'}}\n")
    code, _, err = cli(capsys, "train", str(big), "--dry-run")
    assert code == 2
    assert_one_line_error(err, "larger than 1000000 bytes")


# --- 7. OS errors: one line, exit 2 before the run and 1 during it, no half-written file ------------

def test_a_full_disk_mid_run_stops_with_one_line_and_exit_1(tmp_path, capsys, monkeypatch):
    def full_disk(self, record):
        if record.get("step") == 3:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.path))
        return original(self, record)

    original = runs.MetricsLog.write
    monkeypatch.setattr(runs.MetricsLog, "write", full_disk)
    code, _, err = cli(capsys, "train", *TINY, f"train.runs_dir={tmp_path}", "train.name=full")
    assert code == 1
    assert_one_line_error(err, "metrics.jsonl: No space left on device", "last checkpoint intact", "--resume")
    assert ckpt.list_steps(tmp_path / "full" / "checkpoints") == [2]
    assert not list((tmp_path / "full").rglob(".*.tmp-*"))


def test_an_unwritable_runs_folder_is_one_line_exit_2(tmp_path, capsys, monkeypatch):
    def refused(self, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", refused)
    code, _, err = cli(capsys, "train", *TINY, f"train.runs_dir={tmp_path}/ro", "train.name=x")
    assert code == 2
    assert_one_line_error(err, "Permission denied")


def test_an_output_path_that_is_a_folder_is_one_line_naming_it(tmp_path, capsys):
    code, _, err = cli(capsys, "nda", "show", "--out", str(tmp_path), "--transforms", "jigsaw", "--num-images", "2")
    assert code == 2
    assert_one_line_error(err, f"{tmp_path}: is a folder; give a file name")
    assert list(tmp_path.iterdir()) == []


def test_files_are_written_whole_or_not_at_all(tmp_path, monkeypatch):
    from negaug.files import write_atomically

    target = tmp_path / "report.md"
    target.write_text("the previous report")

    class Boom(Exception):
        pass

    def fail(self, data, *args, **kwargs):
        raise Boom

    monkeypatch.setattr(Path, "write_text", fail)
    with pytest.raises(Boom):
        write_atomically(target, "a new report")
    monkeypatch.undo()
    assert target.read_text() == "the previous report" and sorted(p.name for p in tmp_path.iterdir()) == ["report.md"]


# --- 8. a checkpoint record altered after it was written is a bad checkpoint -------------------------

def test_a_flipped_bit_in_a_checkpoint_record_falls_back_instead_of_changing_the_run(tmp_path):
    train(tiny(tmp_path, "train.name=r"))
    record = tmp_path / "r" / "checkpoints" / "step_0000004.json"
    text = record.read_text()
    assert '"lr": 0.0004' in text
    record.write_text(text.replace('"lr": 0.0004', '"lr": 0.0104', 1))
    warnings = []
    assert load_run(tmp_path / "r", warn=warnings.append).step == 2
    assert len(warnings) == 1 and "step_0000004.json was altered after it was written" in warnings[0]


# --- 9. a diverged state is caught even when the loss is finite ---------------------------------------

def test_non_finite_parameters_buffers_or_moments_stop_the_run(tmp_path, capsys):
    code, _, err = cli(capsys, "train", *TINY, f"train.runs_dir={tmp_path}", "train.name=nan", "train.steps=20",
                       "optim.lr_d=1e10", "model.options.spectral_norm=false")
    assert code == 1
    assert_one_line_error(err, "non-finite values at step", "discriminator.")
    for step in ckpt.list_steps(tmp_path / "nan" / "checkpoints"):  # whatever was saved is finite
        state = ckpt.load_file(tmp_path / "nan" / "checkpoints" / f"{ckpt.stem(step)}.json").state
        assert all(torch.isfinite(v).all() for v in state["discriminator"].values() if v.is_floating_point())


# --- 10. every bad value is caught before any folder exists, naming its key ----------------------------

@pytest.mark.parametrize("override, expected", [
    ("optim.lr_d=.nan", "optim.lr_d=nan must be a finite number"),
    ("optim.lr_g=.inf", "optim.lr_g=inf must be a finite number"),
    ("loss.gradient_penalty=.nan", "loss.gradient_penalty"),
    ("nda.lam=.nan", "nda.lam"),
    ("nda.options={1: 2}", "nda.options: option names must be strings"),
    ("train.seed=100000000000000000000", "train.seed=100000000000000000000 is out of range"),
    ("train.device=meta", "train.device: 'meta' is not a device negaug trains"),
    ("data.batch_size=100000", "data.batch_size=100000 is larger than the dataset"),
    ("eval.best_metric=kde", "eval.best_metric='kde' is not among the evaluated metrics"),
    ("train.steps=-1", "train.steps=-1 must be at least 1"),
    ("eval.num_samples=1000000000000", "eval.num_samples=1000000000000 must be in 0..1000000"),
    ("train.num_sample_images=100000000", "train.num_sample_images=100000000 must be in 0..1024"),
])
def test_bad_values_are_one_line_exit_2_before_any_folder(tmp_path, capsys, override, expected):
    code, _, err = cli(capsys, "train", *TINY, f"train.runs_dir={tmp_path}", "train.name=bad", override)
    assert code == 2
    assert_one_line_error(err, expected)
    assert not (tmp_path / "bad").exists()


def test_a_base_that_refers_to_itself_is_one_line(tmp_path, capsys):
    (tmp_path / "a.yaml").write_text(f"base: {tmp_path}/b.yaml\n")
    (tmp_path / "b.yaml").write_text(f"base: {tmp_path}/a.yaml\n")
    code, _, err = cli(capsys, "train", str(tmp_path / "a.yaml"), "--dry-run")
    assert code == 2
    assert_one_line_error(err, "refers back to")


# --- 11. repro, eval and resume survive what a kill or a typo leaves behind --------------------------

def test_repro_restarts_a_run_killed_before_its_first_checkpoint_record(tmp_path):
    from negaug.repro import common

    study = common.Study(tmp_path, "tiny", [0])
    arm = common.Arm("nda", "default", TINY)
    config = load_config("default", [*TINY, "train.seed=0", "train.progress=false"])
    run_dir = tmp_path / "runs" / f"t-nda-seed0-{common.config_hash(config)[:12]}"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "step_0000002.safetensors").write_bytes(b"killed before its record")
    (run_dir / "config.yaml").write_text("left by the killed run")
    trained = common.train_arm(study, arm, 0, "t")
    assert trained.run_dir == run_dir and load_run(run_dir).step == 4


def test_eval_refuses_sample_counts_it_cannot_hold_and_a_zero_batch(tmp_path, capsys):
    train(tiny(tmp_path, "train.name=r", "train.steps=2"))
    code, _, err = cli(capsys, "eval", str(tmp_path / "r"), "--num-samples", "1000000000")
    assert code == 2
    assert_one_line_error(err, "--num-samples must be from 2 to 1,000,000")
    code, _, err = cli(capsys, "eval", str(tmp_path / "r"), "--batch-size", "0")
    assert code == 2
    assert_one_line_error(err, "--batch-size must be at least 1")
    code, _, err = cli(capsys, "eval", str(tmp_path / "r"), "--device", "cuda:7")
    assert code == 2 and err.count("\n") == 1


def test_a_damaged_metrics_line_does_not_block_a_resume_and_logs_match(tmp_path):
    train(tiny(tmp_path, "train.name=whole", "train.steps=4", "train.log_every=3", "train.checkpoint_every=2"))
    flags = iter([False, True])  # stopped after step 2, as by Ctrl-C: steps 1-2 are logged at step 3
    result = train(tiny(tmp_path, "train.name=r", "train.steps=4", "train.log_every=3", "train.checkpoint_every=2"),
                   stop_requested=lambda: next(flags))
    assert result.interrupted and result.step == 2
    with open(tmp_path / "r" / "metrics.jsonl", "a") as log:
        log.write('{"step": "two"}\n[1, 2]\n{"step": 2, "tor')
    train(resume_config(tmp_path / "r", ["train.steps=4"]), run_dir=tmp_path / "r", resume=True)

    def losses(run):
        return [{k: v for k, v in r.items() if k.startswith(("loss/", "d_out/")) or k == "step"}
                for r in runs.read_metrics(tmp_path / run)]

    assert losses("r") == losses("whole")  # step 3's window spans the resume at step 2: the same means


# --- fuzz -------------------------------------------------------------------------------------------

def _mutations(data: bytes, rng: random.Random, count: int):
    for _ in range(count):
        kind = rng.choice(["flip", "truncate", "zero"])
        mutated = bytearray(data)
        if kind == "flip":
            index = rng.randrange(len(mutated))
            mutated[index] ^= 1 << rng.randrange(8)
        elif kind == "truncate":
            mutated = mutated[: rng.randrange(len(mutated))]
        else:
            start = rng.randrange(len(mutated))
            mutated[start:start + rng.randint(1, 64)] = bytes(min(64, len(mutated) - start))
        yield kind, bytes(mutated)


@pytest.mark.slow
def test_fuzz_damaged_checkpoints_give_the_same_result_a_named_fallback_or_one_line(tmp_path):
    """Seeded bit flips, truncations and zeroed runs in the newest checkpoint's record and tensor
    file: load_run either gives the untouched result, or falls back to step 2 with a warning naming
    the file; never a traceback and never a silently different result."""
    train(tiny(tmp_path, "train.name=r"))
    folder = tmp_path / "r" / "checkpoints"
    good = {p.name: p.read_bytes() for p in folder.iterdir()}
    expected = load_run(tmp_path / "r").raw_generator.stem.weight.clone()
    rng = random.Random(0)
    outcomes = {"same": 0, "fallback": 0}
    for name in ("step_0000004.json", "step_0000004.safetensors"):
        for kind, data in _mutations(good[name], rng, 40):
            (folder / name).write_bytes(data)
            warnings = []
            loaded = load_run(tmp_path / "r", warn=warnings.append)
            if loaded.step == 4:
                assert torch.equal(loaded.raw_generator.stem.weight, expected), (name, kind)
                outcomes["same"] += 1
            else:
                assert loaded.step == 2 and len(warnings) == 1 and name.split(".")[0] in warnings[0], (name, kind)
                outcomes["fallback"] += 1
        (folder / name).write_bytes(good[name])
    assert outcomes["fallback"] >= 60  # most damage is detected, not merely survived


def _random_value(rng: random.Random):
    return rng.choice([None, True, False, 0, 1, -1, 7, 2 ** 70, -(2 ** 40), 0.0, -0.5, 1e-12, 1e30, float("nan"),
                       float("inf"), "", "abc", "..", "/tmp", [], [1, 2], ["x"], {}, {"k": 1}, {"1": [None]}])


def _yaml_text(value) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10 ** 9).replace("\n...\n", "").strip()


def test_fuzz_random_values_for_every_config_key_are_accepted_or_one_line(tmp_path):
    """Every key of the config gets random values of every type: `build` (what --dry-run and a real
    run do first) either accepts the config or raises a one-line ValueError / FileNotFoundError."""
    from negaug.experiment.config import Config

    keys = [f"{section}.{key}" for section, fields in Config().to_dict().items() if isinstance(fields, dict)
            for key in fields]
    rng = random.Random(1)
    base = [*TINY, f"train.runs_dir={tmp_path / 'never'}", "data.name=digits", "model.options.width=4"]
    for _ in range(2):
        for key in keys:
            value = _random_value(rng)
            try:
                build(load_config("default", [*base, f"{key}={_yaml_text(value)}"]))
            except (ValueError, FileNotFoundError) as err:
                message = str(err)
                assert message and "\n" not in message.strip() and len(message) < 1200, (key, value, message)
    assert not (tmp_path / "never").exists()


def test_best_metric_names_a_reported_result_and_is_checked_before_the_run(tmp_path, capsys):
    """Regression: eval.best_metric=toy passed --dry-run and failed at the first evaluation, and
    toy_modes_covered (what the error suggested) was refused."""
    ring = ["train.steps=4", "eval.every=2", "eval.num_samples=200", "train.progress=false", "train.device=cpu",
            "train.sample_every=0", f"train.runs_dir={tmp_path}"]
    code, _, err = cli(capsys, "train", "ring", *ring, "train.name=bad", "eval.best_metric=toy", "--dry-run")
    assert code == 2
    assert_one_line_error(err, "eval.best_metric: unknown result 'toy'", "toy_modes_covered")
    result = train(load_config("ring", [*ring, "train.name=good", "eval.best_metric=toy_modes_covered"]))
    assert result.step == 4 and ckpt.list_steps(tmp_path / "good" / "checkpoints" / "best")


def test_anomaly_on_a_run_of_2d_points_is_one_line(tmp_path, capsys):
    train(load_config("ring", ["train.steps=2", "train.progress=false", "train.sample_every=0", "train.device=cpu",
                               f"train.runs_dir={tmp_path}", "train.name=ring"]))
    code, _, err = cli(capsys, "anomaly", str(tmp_path / "ring"), "--device", "cpu")
    assert code == 2
    assert_one_line_error(err, "was trained on 2-D points")
    assert not (tmp_path / "ring" / "anomaly.json").exists()


# --- found by a red-team pass after the fixes above --------------------------------------------------

def test_files_in_a_run_folder_that_are_not_regular_files_never_hang_or_fill_memory(tmp_path, capsys):
    import os

    train(tiny(tmp_path, "train.name=r"))
    os.symlink("/dev/zero", tmp_path / "r" / "checkpoints" / "step_0000009.json")
    os.mkfifo(tmp_path / "r" / "checkpoints" / "step_0000008.json")
    warnings = []
    assert load_run(tmp_path / "r", warn=warnings.append).step == 4
    assert len(warnings) == 2 and all("not a regular file" in w for w in warnings)
    for name in ("step_0000009.json", "step_0000008.json"):
        (tmp_path / "r" / "checkpoints" / name).unlink()
    os.symlink("/dev/zero", tmp_path / "r" / "eval.json")
    code, _, err = cli(capsys, "eval", str(tmp_path / "r"), "--num-samples", "20", "--no-plots", "--quiet")
    assert code == 2
    assert_one_line_error(err, "eval.json exists and is a symbolic link")  # refused before the work (issue 25)


def test_a_config_yaml_bomb_in_a_run_folder_is_only_reported(tmp_path):
    train(tiny(tmp_path, "train.name=r", "train.steps=2"))
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    (tmp_path / "r" / "config.yaml").write_text("\n".join(lines) + "\ndata: {options: {x: *a8}}\n")
    warnings = []
    config = resume_config(tmp_path / "r", ["train.steps=3"], warn=warnings.append)
    assert config.train.steps == 3 and len(warnings) == 1 and "aliases" in warnings[0]


@pytest.mark.parametrize("argv, expected", [
    (["train", "--dry-run", "data.options.classes=" + "[" * 50 + "]" * 50], "nested more than 16 levels"),
    (["train", "--dry-run", "data.options.classes=" + "[" * 5000 + "]" * 5000], "data"),
    (["train", "--dry-run", "optim.lr_g=1e39"], "optim.lr_g=1e+39 is out of range"),
    (["train", "--dry-run", "train.seed=20000000000000"], "train.seed=20000000000000 must be an integer in"),
    (["train", "--dry-run", "data.image_size=1024"], "image_size=1024 would hold"),
    (["repro", "toy", "--tiny", "--out", "OUT", "--seeds", "1000000000000"], "--seeds must be from 1 to 100"),
    (["repro", "toy", "--tiny", "--out", "OUT", "--threads", "100000000"], "--threads must be from 1 to 256"),
])
def test_tiny_inputs_that_would_exhaust_memory_or_overflow_are_one_line(tmp_path, capsys, argv, expected):
    code, _, err = cli(capsys, *[str(tmp_path / "out") if a == "OUT" else a for a in argv])
    assert code == 2
    assert_one_line_error(err, expected)
    assert not (tmp_path / "out").exists()


def test_eval_refuses_a_checkpoint_of_another_run(tmp_path, capsys):
    train(tiny(tmp_path, "train.name=a", "train.steps=2"))
    train(tiny(tmp_path, "train.name=b", "train.steps=2"))
    code, _, err = cli(capsys, "eval", str(tmp_path / "a"), "--num-samples", "20",
                       "--checkpoint", str(tmp_path / "b" / "checkpoints" / "step_0000002.json"))
    assert code == 2
    assert_one_line_error(err, "is not one of")
    assert not (tmp_path / "a" / "eval.json").exists()


def test_anomaly_never_overwrites_a_histogram_file_it_did_not_write(tmp_path, capsys):
    train(tiny(tmp_path, "train.name=r", "train.steps=2"))
    (tmp_path / "mine_histograms.png").write_text("keep")
    argv = ["anomaly", str(tmp_path / "r"), "--num-images", "8", "--ood", "corruption/gaussian_noise",
            "--device", "cpu", "--output", str(tmp_path / "mine.json")]
    code, _, err = cli(capsys, *argv)
    assert code == 2
    assert_one_line_error(err, "mine_histograms.png exists and was not written by negaug anomaly")
    assert (tmp_path / "mine_histograms.png").read_text() == "keep"
    (tmp_path / "mine_histograms.png").unlink()
    assert cli(capsys, *argv)[0] == 0 and cli(capsys, *argv)[0] == 0  # its own figure is updated


def test_a_relative_base_is_read_next_to_the_file_that_names_it(tmp_path, monkeypatch):
    (tmp_path / "cfgs").mkdir()
    (tmp_path / "cfgs" / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "cfgs" / "b.yaml").write_text("nda: {lam: 0.5}\n")
    (tmp_path / "b.yaml").write_text("nda: {lam: 0.9}\n")
    monkeypatch.chdir(tmp_path)
    assert load_config("cfgs/a.yaml").nda.lam == 0.5
    monkeypatch.chdir(tmp_path / "cfgs")
    assert load_config("a.yaml").nda.lam == 0.5


def test_resuming_a_0_2_cutout_run_says_its_draws_change(tmp_path, monkeypatch):
    """0.3.0 redraws cutout negatives that change too few pixels (min_changed); a run written by
    0.2.0 continues with those draws, and resume says so (jigsaw runs are unaffected)."""
    import negaug

    for transform, expected in (("cutout", 1), ("jigsaw", 0)):
        config = tiny(tmp_path, f"nda.transform={transform}", "nda.options={}", f"train.name={transform}")
        monkeypatch.setattr(negaug, "__version__", "0.2.0")
        train(config)
        monkeypatch.undo()
        warnings = []
        resumed = resume_config(tmp_path / transform, ["train.steps=6"])
        train(resumed, run_dir=tmp_path / transform, resume=True, warn=warnings.append)
        found = [w for w in warnings if "min_changed" in w]
        assert len(found) == expected and all("written by negaug 0.2.0" in w for w in found)


@pytest.mark.parametrize("argv, expected", [
    (["train", "train.runs_dir={file}", "train.steps=2"], "train.runs_dir={file} is a file; give a folder"),
    (["pretrain", "train.runs_dir={file}/sub"], "train.runs_dir={file}/sub is inside {file}, which is a file"),
    (["train", "pix2pix-scenes", "train.runs_dir={file}"], "train.runs_dir={file} is a file"),
    (["repro", "toolkit", "--tiny", "--out", "{file}"], "--out={file} is a file; give a folder"),
    (["repro", "toolkit", "--tiny", "--out", "{dir}/out", "--runs-dir", "{file}"], "--runs-dir={file} is a file"),
])
def test_a_file_where_a_folder_is_expected_is_one_line_before_any_work_regression(tmp_path, capsys, argv, expected):
    """Regression (red team): a file given as train.runs_dir or --out failed later with
    '<path>: Not a directory', after progress lines, naming neither the setting nor the fix."""
    from negaug.cli import main

    afile = tmp_path / "afile"
    afile.write_text("mine")
    fill = {"file": str(afile), "dir": str(tmp_path)}
    code = main([a.format(**fill) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and expected.format(**fill) in err[0], err
    assert afile.read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_resume_without_steps_to_train_is_refused_in_one_line_regression_silent_no_op(tmp_path, capsys):
    """Regression (red team): `--resume RUN train.steps=3` of a run at step 4 trained nothing,
    exited 0 and said 'training 3 steps from step 4'."""
    from negaug.cli import main

    base = ["data.name=ring", "model.name=mlp", "model.options.width=8", "nda.transform=none", "data.batch_size=8",
            "train.steps=4", "train.progress=false", "train.sample_every=0", f"train.runs_dir={tmp_path}", "train.name=r"]
    assert main(["train", *base]) == 0
    capsys.readouterr()
    checkpoints = sorted((tmp_path / "r" / "checkpoints").iterdir())
    for steps in (3, 4):
        assert main(["train", "--resume", str(tmp_path / "r"), f"train.steps={steps}"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"train.steps={steps} is not above the step of the checkpoint (4)" in err[0], err
    assert sorted((tmp_path / "r" / "checkpoints").iterdir()) == checkpoints
    assert main(["train", "--resume", str(tmp_path / "r"), "train.steps=6"]) == 0
    assert "negaug: training 2 steps (to step 6, from step 4)" in capsys.readouterr().out
