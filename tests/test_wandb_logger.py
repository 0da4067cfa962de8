"""train.wandb=true: an optional Weights & Biases logger, offline by default, refused in one line
without the package, and outside the config hash (a recording key)."""
from __future__ import annotations

import importlib.util
import sys

import pytest

from negaug.experiment import train
from negaug.experiment.config import learning_settings, load_config
from negaug.experiment.wandb_logger import check_wandb

TINY = ["data.batch_size=8", "data.options.classes=[0, 1]", "model.options.width=4", "train.steps=3",
        "optim.num_d_steps=1", "train.progress=false", "train.log_every=1", "train.sample_every=0",
        "train.checkpoint_every=0", "train.num_sample_images=4", "train.device=cpu"]


def tiny(tmp_path, *extra):
    return load_config("default", [*TINY, f"train.runs_dir={tmp_path}", *extra])


def test_wandb_is_a_recording_key_outside_the_config_hash(tmp_path):
    assert learning_settings(tiny(tmp_path, "train.wandb=true")) == learning_settings(tiny(tmp_path))
    assert tiny(tmp_path, "train.wandb=true").train.wandb is True and tiny(tmp_path).train.wandb is False


def test_wandb_without_the_package_is_refused_in_one_line_before_any_folder(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed: import raises ImportError
    check_wandb(False)
    with pytest.raises(ValueError, match=r"^train.wandb=true needs the wandb package: pip install -e '.\[wandb\]'$"):
        train(tiny(tmp_path, "train.name=wb", "train.wandb=true"))
    assert not (tmp_path / "wb").exists()


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("wandb") is None, reason="wandb is not installed (pip install -e '.[wandb]')")
def test_wandb_offline_run_records_every_log_line(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)  # the default: offline, nothing sent
    monkeypatch.setenv("WANDB_DISABLE_GIT", "true")
    result = train(tiny(tmp_path, "train.name=wb", "train.wandb=true"))
    assert result.step == 3
    runs = list((tmp_path / "wb" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, runs
    records = list(runs[0].glob("run-*.wandb"))
    assert len(records) == 1
    content = records[0].read_bytes()
    assert b"loss/d" in content and b"it_per_s" in content  # the metrics.jsonl numbers, by name
