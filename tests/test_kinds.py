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
}
COMMON = ["train.progress=false", "train.checkpoint_every=2", "train.device=cpu"]


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
    with pytest.raises(ValueError, match="unknown kind of run 'gam'; valid: gan, pretrain, pix2pix"):
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
