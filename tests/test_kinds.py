"""Every kind of run in `negaug.experiment.kinds` honours the same contracts (issue 24): it trains
and loads through the registry, resumes bit-identically, refuses a second writer, and a run of it
handed to another kind's loader names its kind and command. Parametrised over `kinds.names()`:
a new kind fails `test_every_kind_has_a_tiny_config` until it is given one here, and is then
tested by every other test of this file."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from negaug.experiment import checkpoint as ckpt
from negaug.experiment import kinds, runs
from negaug.experiment.runs import RunLock

# (preset, overrides) of a run of a few steps that checkpoints every 2 steps
TINY = {
    "gan": ("default", ["data.batch_size=8", "data.options.classes=[0, 1]", "model.options.width=4",
                        "optim.num_d_steps=2", "train.log_every=1", "train.sample_every=0", "train.ema_start=2",
                        "train.ema_decay=0.9", "train.num_sample_images=4"]),
    "pretrain": ("mnist", ["data.batch_size=16", "data.image_size=16", "data.options.classes=[0, 1]",
                           "model.options.width=4", "model.head_hidden=16", "model.dim=8", "objective.queue_size=48",
                           "objective.num_splits=2", "train.log_every=2", "train.knn_every=0",
                           "nda.transform=jigsaw", "eval.knn_k=20", "eval.probe_epochs=2"]),
    "pix2pix": ("pix2pix-scenes", ["data.batch_size=4", "data.options={num_samples: 24}", "model.width=4",
                                   "train.log_every=1", "train.sample_every=0", "train.num_sample_images=2",
                                   "nda.transform=jigsaw"]),
    # blocks of 3 frames: bf16 on the CPU refuses blocks of 2 (`dpc.check_dpc_precision`)
    "dpc": ("dpc-moving-mnist", ["data.options={num_clips: 32, num_frames: 12, image_size: 16}", "model.widths=[4, 8]",
                                 "model.feature_dim=16", "data.batch_size=8", "train.log_every=1", "nda.transform=jigsaw"]),
}
COMMON = ["train.progress=false", "train.checkpoint_every=2", "train.device=cpu"]
WITHOUT_DISCRIMINATOR = {"pretrain", "dpc"}  # MoCo and DPC: contrastive, no D


def config_of(kind: str, tmp_path: Path, name: str, steps: int, extra: list[str] | tuple[str, ...] = ()):
    """The tiny config of `kind` (`extra` overrides last: `["train.device=cuda"]` in tests/test_cuda.py)."""
    preset, overrides = TINY[kind]
    return kinds.get(kind).load_config(preset, [*overrides, *COMMON, f"train.runs_dir={tmp_path}",
                                                f"train.name={name}", f"train.steps={steps}", *extra])


def tensors(tree, path=""):
    if isinstance(tree, torch.Tensor):
        return {path: tree}
    if isinstance(tree, dict):
        return {k: v for key, value in tree.items() for k, v in tensors(value, f"{path}.{key}").items()}
    if isinstance(tree, (list, tuple)):
        return {k: v for i, value in enumerate(tree) for k, v in tensors(value, f"{path}[{i}]").items()}
    return {}


def latest(run_dir: Path):
    found = ckpt.load_latest(run_dir / "checkpoints")
    return found.step, tensors(found.state)


def test_every_kind_has_a_tiny_config():
    assert sorted(TINY) == sorted(kinds.names())
    for name in kinds.names():
        kind = kinds.get(name)
        assert kind.train is not None and kind.load is not None, f"{name}: its module never called kinds.attach"
        assert kinds.of_config_class(kind.config_class) is kind


def test_unknown_kind_names_the_valid_ones():
    with pytest.raises(ValueError, match="unknown kind of run 'gam'; valid: gan, pretrain, pix2pix, dpc"):
        kinds.get("gam")


def check_exact_resume(tmp_path: Path, name: str, extra: list[str] | tuple[str, ...] = ()) -> dict:
    """A run of 4 steps of kind `name` loads back through the registry, and one stopped after step 2
    and resumed ends with the same tensors in its step-4 checkpoint; returns that checkpoint's state."""
    kind = kinds.get(name)
    whole = kind.train(config_of(name, tmp_path, "whole", 4, extra))
    assert not whole.interrupted and kinds.of_run(tmp_path / "whole") is kind
    kind.load(tmp_path / "whole")  # a finished run loads back through the registry
    # stopped after step 2 (as Ctrl-C does: a checkpoint, then exit), resumed to the same 4 steps
    logged: list[int] = []
    stopped = kind.train(config_of(name, tmp_path, "parts", 4, extra),
                         stop_requested=lambda: bool(logged) and logged[-1] >= 2,
                         on_log=lambda entry: logged.append(entry["step"]))
    assert stopped.interrupted and ckpt.list_steps(tmp_path / "parts" / "checkpoints")[-1] == 2
    resumed = runs.resume_config(tmp_path / "parts", cls=kind.config_class)
    kind.train(resumed, run_dir=tmp_path / "parts", resume=True)
    (step_a, a), (step_b, b) = latest(tmp_path / "whole"), latest(tmp_path / "parts")
    assert step_a == step_b == 4 and a.keys() == b.keys() and a
    for key in a:
        assert torch.equal(a[key], b[key]), key
    return ckpt.load_latest(tmp_path / "parts" / "checkpoints").state


@pytest.mark.parametrize("name", kinds.names())
def test_every_kind_trains_loads_and_resumes_bit_identically(tmp_path, name):
    check_exact_resume(tmp_path, name)


@pytest.mark.parametrize("name", kinds.names())
def test_every_kind_refuses_a_second_writer(tmp_path, name):
    kind = kinds.get(name)
    kind.train(config_of(name, tmp_path, "r", 2))
    resumed = runs.resume_config(tmp_path / "r", ["train.steps=4"], cls=kind.config_class)
    with RunLock(tmp_path / "r"), pytest.raises(ValueError, match="in use by another negaug process"):
        kind.train(resumed, run_dir=tmp_path / "r", resume=True)
    assert ckpt.list_steps(tmp_path / "r" / "checkpoints") == [2]  # nothing was written by the refused run


@pytest.mark.parametrize("name", kinds.names())
def test_a_run_of_every_kind_names_its_kind_to_the_others(tmp_path, name):
    kind = kinds.get(name)
    kind.train(config_of(name, tmp_path, "r", 2))
    for other in kinds.names():
        if other == name:
            continue
        assert kinds.other_kind(tmp_path / "r", kinds.get(other).config_class) is kind
        with pytest.raises(ValueError, match=re.escape(f"is a {kind.what} run") + ".*" + re.escape(f"`{kind.train_command} --resume")):
            runs.resume_config(tmp_path / "r", cls=kinds.get(other).config_class)


@pytest.mark.parametrize("name", kinds.names())
def test_every_kind_stops_on_a_non_finite_loss_and_saves_nothing_bad(tmp_path, name, monkeypatch):
    """The NaN guard: a batch of NaN images makes the first step's loss non-finite; the run stops
    with NonFiniteLossError naming the step, and no checkpoint holds the poisoned weights."""
    from negaug.experiment.steps import NonFiniteLossError
    from negaug.experiment.stream import BatchStream
    from negaug.experiment.translate_build import PairStream

    for stream in (BatchStream, PairStream):  # every kind's batches come from one of these
        def poisoned(self, clean=stream.next):
            x, y = clean(self)
            return torch.full_like(x, float("nan")), y

        monkeypatch.setattr(stream, "next", poisoned)
    with pytest.raises(NonFiniteLossError, match="step 1"):
        kinds.get(name).train(config_of(name, tmp_path, "nan", 4))
    assert ckpt.list_steps(tmp_path / "nan" / "checkpoints") == []


def test_pretrain_objective_is_chosen_from_the_registry(tmp_path):
    """Issue 24: `negaug pretrain` reaches the contrastive OBJECTIVES registry (objective.name);
    the default (MoCo's queue) keeps the config hash of runs made before the key existed."""
    from negaug.contrastive import OBJECTIVES
    from negaug.repro.common import config_hash

    kind = kinds.get("pretrain")
    plain = config_of("pretrain", tmp_path, "a", 2)
    assert plain.objective.name == "infonce" and sorted(OBJECTIVES.names()) == ["infonce", "infonce_in_batch"]
    from negaug.experiment.config import learning_settings
    assert "name" not in learning_settings(plain)["objective"]  # off: the hash of older runs is kept
    hashed = config_hash(plain)
    plain.objective.name = "infonce_in_batch"
    assert config_hash(plain) != hashed
    in_batch = config_of("pretrain", tmp_path, "b", 2)
    in_batch.objective.name = "infonce_in_batch"
    result = kind.train(in_batch)
    assert not result.interrupted
    _, model, _, _ = kind.load(tmp_path / "b")
    assert model.in_batch and type(model.objective).__name__ == "InfoNCEInBatch"
    with pytest.raises(ValueError, match="objective.name='simclr' is not one of infonce, infonce_in_batch"):
        kind.train(kinds.get("pretrain").load_config("mnist", ["objective.name=simclr", f"train.runs_dir={tmp_path}"]))


def test_moco_in_batch_objective_contrasts_the_other_rows_keys_not_the_queue():
    from negaug.contrastive import ENCODERS, MoCo, info_nce_in_batch

    torch.manual_seed(0)
    model = MoCo(ENCODERS.build("small_cnn", in_channels=1, width=4), dim=8, head_hidden=16, queue_size=32,
                 num_splits=1, objective="infonce_in_batch").eval()
    x_q, x_k, nda = torch.randn(6, 1, 16, 16), torch.randn(6, 1, 16, 16), torch.randn(6, 2, 1, 16, 16)
    loss, logits, stats = model(x_q, x_k, nda=nda)
    assert logits.shape == (6, 6 + 2)  # [the batch's keys, 2 NDA views]: no queue column
    with torch.no_grad():
        q = torch.nn.functional.normalize(model.head_q(model.encoder_q(x_q)), dim=1)
        k = model.encode_keys(x_k)
        expected, _ = info_nce_in_batch(q, k, model.encode_nda(nda), temperature=model.objective.temperature,
                                        normalize=False)
    torch.testing.assert_close(loss, expected)
    assert 0.0 <= float(stats["accuracy"]) <= 1.0


@pytest.mark.parametrize("name, extra", [*((name, []) for name in kinds.names()),
                                         ("gan", ["model.mixture=2", "loss.name=nonsaturating"])],
                         ids=[*kinds.names(), "mixgan"])
def test_training_calls_a_discriminator_only_through_the_critic(tmp_path, name, extra):
    """Issue 24: `negaug.experiment.critic` is the one place training calls D, in every kind and
    every member of a MIX+GAN mixture (so channels_last and autocast reach them all)."""
    import inspect

    calls, outside = [], []

    def hook(module, args):
        if type(module).__name__.endswith("Discriminator"):
            through = any(frame.filename.endswith("negaug/experiment/critic.py") for frame in inspect.stack()[1:])
            (calls if through else outside).append(type(module).__name__)

    handle = torch.nn.modules.module.register_module_forward_pre_hook(hook)
    try:
        config = config_of(name, tmp_path, "r", 2)
        if extra:
            preset, overrides = TINY[name]
            config = kinds.get(name).load_config(preset, [*overrides, *COMMON, *extra, f"train.runs_dir={tmp_path}",
                                                          "train.name=m", "train.steps=2"])
        kinds.get(name).train(config)
    finally:
        handle.remove()
    assert outside == []
    assert (calls == []) == (name in WITHOUT_DISCRIMINATOR)


def test_member_scorer_applies_the_runs_prepare_and_autocast_to_every_member_call():
    """Review: the critic spy test runs in fp32, where channels_last and autocast do nothing; this
    checks that MIX+GAN's members get the run's `prepare` and `autocast` on every call."""
    import contextlib

    from negaug.experiment import critic

    calls = {"prepare": 0, "autocast": 0}

    def prepare(x):
        calls["prepare"] += 1
        return x

    def autocast():
        calls["autocast"] += 1
        return contextlib.nullcontext()

    member = torch.nn.Linear(3, 1)
    scorer = critic.member_scorer(prepare=prepare, autocast=autocast)
    for _ in range(3):
        out = scorer(member, torch.ones(4, 3), None)
    assert out.shape == (4, 1) and out.dtype == torch.float32 and calls == {"prepare": 3, "autocast": 3}


def test_negaug_pretrain_trains_and_resumes_a_dpc_run_from_the_command_line(tmp_path, capsys):
    """Issue 24: DPC (video) is a kind that `negaug pretrain` trains, not only `repro video`."""
    from negaug.cli import main

    preset, overrides = TINY["dpc"]
    args = [preset, *overrides, *COMMON, f"train.runs_dir={tmp_path}", "train.name=v", "train.steps=3"]
    assert main(["pretrain", *args, "--dry-run"]) == 0 and "kind: dpc" in capsys.readouterr().out
    assert not (tmp_path / "v").exists()
    assert main(["pretrain", *args]) == 0
    assert main(["pretrain", "--resume", str(tmp_path / "v"), "train.steps=5"]) == 0
    assert ckpt.list_steps(tmp_path / "v" / "checkpoints")[-1] == 5 and "# DPC run v" in (tmp_path / "v" / "report.md").read_text()
    capsys.readouterr()
    assert main(["pretrain", preset, "model.num_blocks=3", f"train.runs_dir={tmp_path}", "train.name=w"]) == 2
    err = capsys.readouterr().err
    assert "model.num_blocks=3 must divide" in err and err.count("\n") == 1 and not (tmp_path / "w").exists()
    loaded = kinds.get("dpc").load(tmp_path / "v")
    assert loaded.step == 5 and not loaded.model.training


@pytest.mark.parametrize("name", kinds.names())
def test_every_kind_logs_to_tensorboard_and_wandb_when_asked(tmp_path, name, monkeypatch):
    """Issue 24: TensorBoard and W&B are written once (loop.open_sinks) and reach every kind (fake
    writers here: neither package is needed to test the plumbing)."""
    from negaug.experiment import loop

    scalars, records, closed = [], [], []

    class Board:
        def add_text(self, *args):
            pass

        def add_scalar(self, key, value, step):
            scalars.append((key, step))

        def add_image(self, *args, **kwargs):
            pass

        def close(self):
            closed.append("board")

    class Wandb:
        def chain(self, on_log):
            return lambda record: (records.append(record), on_log(record) if on_log else None)

        def close(self):
            closed.append("wandb")

    import sys
    import types

    from negaug.experiment import build

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.ModuleType("torch.utils.tensorboard"))
    monkeypatch.setattr(build, "check_wandb", lambda wanted: None)
    monkeypatch.setattr(loop, "_tensorboard", lambda run_dir: Board())
    monkeypatch.setattr(loop, "open_wandb", lambda run_dir, config: Wandb())
    config = config_of(name, tmp_path, "r", 2)
    config.train.tensorboard, config.train.wandb = True, True
    kinds.get(name).train(config)
    logged_steps = sorted({r["step"] for r in records if "it_per_s" in r})
    assert logged_steps and logged_steps[-1] == 2 and ("it_per_s", 2) in scalars
    assert sorted(closed) == ["board", "wandb"]
    # regression (review): nested results (the k-NN monitor, Pix2Pix's scores) reached neither sink
    nested = {"pretrain": "knn/value", "pix2pix": "eval/mean_iou"}
    if name in nested:
        assert (nested[name], 2) in scalars


@pytest.mark.parametrize("name", kinds.names())
def test_every_kind_refuses_tensorboard_without_the_package_before_any_folder(tmp_path, name, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if not installed
    config = config_of(name, tmp_path, "r", 2)
    config.train.tensorboard = True
    with pytest.raises(ValueError, match="needs the tensorboard package: pip install tensorboard"):
        kinds.get(name).train(config)
    assert not (tmp_path / "r").exists()


def test_scalars_of_a_record_reach_one_level_into_nested_results():
    from negaug.experiment.stats import scalars_of

    record = {"step": 5, "loss": 0.5, "flag": True, "knn": {"value": 0.9, "protocol": {"k": 20}, "metric": "knn"},
              "warning": "text"}
    assert scalars_of(record) == {"loss": 0.5, "knn/value": 0.9}
    evaluation = {"step": 5, "eval": {"fid[classifier:x]": {"value": 8.7, "protocol": {}}, "pr": {"precision": 0.7}}}
    assert scalars_of(evaluation) == {"eval/fid[classifier:x]": 8.7}  # as the GAN loop wrote it before


def test_commands_aimed_at_a_dpc_run_name_its_kind(tmp_path, capsys):
    """Regressions (review): `negaug eval` pasted a sentence as a command, `negaug probe` called a
    DPC run a GAN run (it probes DPC runs now: tests/test_dpc_run.py), and keep_checkpoints=0 left
    a DPC run without any checkpoint."""
    from negaug.cli import main

    kinds.get("dpc").train(config_of("dpc", tmp_path, "v", 2))
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "v")]) == 2
    err = capsys.readouterr().err
    assert "is a Dense Predictive Coding (negaug pretrain) run" in err and f"`negaug probe {tmp_path / 'v'}` evaluates it" in err
    assert "`negaug pretrain --resume" in err and "GAN runs" not in err and err.count("\n") == 1
    preset, overrides = TINY["dpc"]
    for bad in ("train.keep_checkpoints=0", "train.checkpoint_every=-1", "optim.lr=nan"):
        assert main(["pretrain", preset, *overrides, bad, f"train.runs_dir={tmp_path}", "train.name=w"]) == 2
        assert bad.split("=")[0] in capsys.readouterr().err and not (tmp_path / "w").exists()


def test_pretraining_keeps_its_best_checkpoint_by_the_validation_knn(tmp_path):
    """Issue 24 (best checkpoint in every kind that measures during training): MoCo-v2 keeps the
    checkpoint of its best k-NN monitor (validation split) in checkpoints/best, as GAN runs do by
    eval.best_metric; `negaug probe --checkpoint best` reads it."""
    import json

    from negaug.experiment.probe import probe_run

    kind = kinds.get("pretrain")
    config = config_of("pretrain", tmp_path, "r", 6)
    config.train.knn_every = 2
    kind.train(config)
    knn = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines() if '"knn"' in line]
    during = [(r["knn"]["value"], r["step"]) for r in knn if r["step"] < 6]  # the monitor's steps: 2 and 4
    best_value, best_step = max(during, key=lambda pair: (pair[0], -pair[1]))  # the first of equal values
    best = ckpt.load_latest(tmp_path / "r" / "checkpoints" / "best")
    assert best.step == best_step and best.state["best"] == {"metric": "knn", "value": best_value, "step": best_step}
    entry = probe_run(tmp_path / "r", checkpoint="best", split="val", epochs=1)
    assert entry["step"] == best_step


@pytest.mark.parametrize("name", sorted(kinds.names()))  # every kind has train.precision
def test_bf16_runs_of_every_kind_with_mixed_precision_train_finite_and_resume_exactly(tmp_path, name):
    """Issue 24: mixed precision in every kind: GAN, MoCo-v2 pretraining and Pix2Pix train under
    bf16 autocast with channels_last, DPC (3-D convolutions) under bf16 autocast; fp16 needs a GPU
    and is refused here in one line; each resumes exactly."""
    kind = kinds.get(name)
    whole = config_of(name, tmp_path, "whole", 4)
    whole.train.precision = "bf16"
    result = kind.train(whole)
    assert all(v == v for v in result.last_log.values() if isinstance(v, float))  # no NaN
    logged: list[int] = []
    parts = config_of(name, tmp_path, "parts", 4)
    parts.train.precision = "bf16"
    kind.train(parts, stop_requested=lambda: bool(logged) and logged[-1] >= 2, on_log=lambda r: logged.append(r["step"]))
    kind.train(runs.resume_config(tmp_path / "parts", cls=kind.config_class), run_dir=tmp_path / "parts", resume=True)
    (_, a), (_, b) = latest(tmp_path / "whole"), latest(tmp_path / "parts")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    fp16 = config_of(name, tmp_path, "half", 2)
    fp16.train.precision = "fp16"
    with pytest.raises(ValueError, match="train.precision=fp16 needs a GPU"):
        kind.train(fp16)


@pytest.mark.parametrize("name", sorted(kinds.names()))
def test_every_kind_reports_its_health_and_logs_its_warnings(tmp_path, name):
    """Issue 24: health warnings in every kind (GAN and Pix2Pix: `HealthMonitor` on D's terms;
    MoCo-v2 and DPC: `EncoderHealth` on the loss): the report has the section, and a healthy tiny
    run lists no warning of the monitor (the step-pace warning of a loaded machine aside)."""
    kind = kinds.get(name)
    result = kind.train(config_of(name, tmp_path, "r", 4))
    report = (result.run_dir / "report.md").read_text()
    assert "## Health (this session)" in report
    section = report.split("## Health (this session)")[1].split("\n## ")[0]
    lines = [line for line in section.splitlines() if line.startswith("- ")]
    assert lines and all(line.startswith("- no warning: ") or "slower than this run's" in line for line in lines)
