"""Issue 25: image files, caches, locks, output paths and the last tracebacks. One regression test
per class of failure, each failing on the code before the fix; `test_fuzz_*` at the end."""
from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

import pytest
import torch

from negaug.cli import main
from negaug.experiment import checkpoint as ckpt
from negaug.experiment import runs, train

from test_hardening import TINY, assert_one_line_error, cli, tiny, tree


# --- writes outside what the user named -----------------------------------------------------------

def test_a_symlinked_run_lock_is_refused_never_followed_regression_notes_replaced_by_a_pid(tmp_path, capsys):
    train(tiny(tmp_path, "train.name=r"))
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    lock = tmp_path / "r" / runs.LOCK_FILE
    lock.unlink()
    lock.symlink_to(notes)
    code, _, err = cli(capsys, "train", "--resume", str(tmp_path / "r"), "train.steps=6")
    assert code == 2
    assert_one_line_error(err, "symbolic link", str(lock))
    assert notes.read_text() == "my notes" and lock.is_symlink()


@pytest.mark.parametrize("kind", ["fifo", "symlink"])
def test_an_output_that_is_not_a_regular_file_is_refused_regression_device_replaced(tmp_path, capsys, kind):
    out = tmp_path / "out.png"
    target = tmp_path / "target.png"
    target.write_bytes(b"mine")
    os.mkfifo(out) if kind == "fifo" else out.symlink_to(target)
    code, _, err = cli(capsys, "nda", "show", "--dataset", "dots", "--transforms", "jigsaw", "--out", str(out))
    assert code == 2
    assert_one_line_error(err, "--out", str(out))
    assert (out.is_fifo() if kind == "fifo" else out.is_symlink()) and target.read_bytes() == b"mine"


def test_atomic_writes_never_follow_a_planted_temporary_symlink(tmp_path):
    from negaug.files import write_atomically

    victim = tmp_path / "victim.txt"
    victim.write_text("mine")
    (tmp_path / f".report.md.tmp-{os.getpid()}").symlink_to(victim)
    write_atomically(tmp_path / "report.md", "report")
    assert victim.read_text() == "mine" and (tmp_path / "report.md").read_text() == "report"


@pytest.mark.parametrize("argv, expected", [
    (["repro", "toy", "--tiny", "--out", ""], "--out is empty"),
    (["repro", "toy", "--tiny", "--out", "x", "--runs-dir", "  "], "--runs-dir is empty"),
    (["nda", "show", "--out", " "], "--out is empty"),
    (["nda", "show", "--out", "x.png", "--data-root", ""], "--data-root is empty"),
    (["eval", ""], "RUN is empty"),
    (["anomaly", "runs/x", "--output", ""], "--output is empty"),
    (["train", "--resume", " "], "--resume is empty"),
    (["train", "train.runs_dir=''", "--dry-run"], "train.runs_dir is empty"),
    (["train", "data.root=' '", "--dry-run"], "data.root is empty"),
    (["pretrain", "train.runs_dir=''", "--dry-run"], "train.runs_dir is empty"),
])
def test_empty_or_blank_paths_are_refused_regression_out_empty_wrote_into_the_working_folder(
        tmp_path, capsys, monkeypatch, argv, expected):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "report.md").write_text("mine")
    code, _, err = cli(capsys, *argv)
    assert code == 2
    assert_one_line_error(err, expected)
    assert tree(tmp_path) == {"report.md": b"mine"}


# --- YAML number forms ----------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["1:20", "017", "1:20.5", "-0:30"])
def test_sexagesimal_and_octal_numbers_are_refused_regression_1_20_read_as_80(tmp_path, capsys, value):
    code, _, err = cli(capsys, "train", f"train.steps={value}", f"train.runs_dir={tmp_path}", "--dry-run")
    assert code == 2
    assert_one_line_error(err, "train.steps", "base-60 or octal")
    from negaug.experiment import load_config

    assert load_config("default", ["train.name=1:20"]).train.name == "1:20"  # a string key keeps its text
