"""`train.threads` (how a run is executed, never what it learns) and the slow-step warning."""
import json

import pytest
import torch

from negaug.experiment import load_config, train
from negaug.experiment.config import learning_settings
from negaug.experiment.pace import FIX, StepPace, is_oversubscribed, slowdown
from negaug.experiment.pretrain_config import load_pretrain_config
from negaug.experiment.translate_config import load_translation_config
from negaug.repro.common import config_hash

TINY = ["data.batch_size=8", "data.options.classes=[0, 1]", "model.options.width=4", "train.steps=3",
        "optim.num_d_steps=1", "train.progress=false", "train.log_every=1", "train.sample_every=0",
        "train.checkpoint_every=0", "train.ema_decay=0", "train.num_sample_images=4", "train.device=cpu"]


# --- the slow-step rule: a pure function of step times ---------------------------------------------

def test_slowdown_needs_both_windows_and_skips_the_warm_up():
    assert slowdown([1.0] * 74, warmup=5, baseline=20, window=50) is None  # one step short
    # slow warm-up steps are no yardstick: 5 slow, then steady -> ratio 1
    assert slowdown([10.0] * 5 + [1.0] * 70, warmup=5, baseline=20, window=50) == pytest.approx(1.0)


def test_a_sustained_slowdown_warns_and_a_short_one_or_a_mild_one_does_not():
    steady = [1.0] * 25
    assert slowdown(steady + [4.0] * 50) == pytest.approx(4.0)
    assert is_oversubscribed(slowdown(steady + [4.0] * 50))
    assert not is_oversubscribed(slowdown(steady + [2.9] * 50))  # below 3x
    # a few slow steps (a checkpoint, an evaluation) inside the window: the median ignores them
    assert not is_oversubscribed(slowdown(steady + [1.0] * 30 + [50.0] * 20))
    assert is_oversubscribed(slowdown(steady + [1.0] * 20 + [50.0] * 30))


def test_step_pace_warns_once_names_the_fix_and_shows_it_in_the_progress_line():
    pace = StepPace(threads=2, warmup=1, baseline=2, window=4)
    messages = [pace.record(s) for s in [9.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]]
    assert messages == [None] * 7 and pace.postfix() == {}
    messages = [pace.record(5.0) for _ in range(6)]
    assert [m is not None for m in messages] == [False, False, True, False, False, False]
    assert FIX in messages[2] and "5.0x slower" in messages[2] and "2 torch threads" in messages[2]
    assert pace.postfix() == {"slow": "5.0x: train.threads=1"}
    assert StepPace(threads=1, enabled=False).record(100.0) is None


# --- train.threads --------------------------------------------------------------------------------

@pytest.mark.parametrize("load", [lambda o: load_config("default", o), lambda o: load_pretrain_config("mnist", o),
                                  lambda o: load_translation_config("pix2pix-scenes", o)])
def test_threads_leave_the_settings_and_their_hash_alone(load):
    plain, one = load([]), load(["train.threads=1"])
    assert one.train.threads == 1 and plain.train.threads is None
    assert learning_settings(plain) == learning_settings(one)
    assert config_hash(plain) == config_hash(one)


def test_threads_are_checked(tmp_path):
    for bad in ("0", "-2", "1000"):
        with pytest.raises(ValueError, match=r"train.threads=.*must be an integer from 1"):
            train(load_config("default", [*TINY, f"train.runs_dir={tmp_path}", f"train.threads={bad}"]))


def test_a_run_uses_its_threads_records_them_and_restores_the_caller_s(tmp_path):
    before, seen = torch.get_num_threads(), []
    torch.set_num_threads(2)  # the caller's, whatever OMP_NUM_THREADS says
    try:
        config = load_config("default", [*TINY, f"train.runs_dir={tmp_path}", "train.name=r", "train.threads=1"])
        train(config, on_log=lambda record: seen.append(torch.get_num_threads()))
        assert seen == [1, 1, 1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    records = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert [r["threads"] for r in records] == [1, 1, 1]
    assert "with 1 torch threads" in (tmp_path / "r" / "report.md").read_text()


# --- --threads on every command that computes -------------------------------------------------------

def test_every_computing_command_takes_threads():
    from negaug.cli import _parser
    parser = _parser()
    commands = {"eval": ["RUN"], "anomaly": ["RUN"], "probe": ["RUN"], "repro": ["toy", "--out", "o"],
                "compare": ["default", "--arms", "", "--out", "o"]}
    for command, rest in commands.items():
        assert parser.parse_args([command, *rest, "--threads", "2"]).threads == 2, command


def test_threads_flag_is_checked_and_the_caller_s_threads_come_back(tmp_path, capsys):
    from negaug.cli import main
    before = torch.get_num_threads()
    assert main(["eval", str(tmp_path / "missing"), "--threads", "0"]) == 2
    assert "--threads must be from 1 to 256, got 0" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "missing"), "--threads", "3"]) == 2  # fails inside the command
    assert torch.get_num_threads() == before


def test_negaug_train_names_the_threads_it_runs_with(tmp_path, capsys):
    from negaug.cli import main
    args = ["train", *TINY, f"train.runs_dir={tmp_path}"]
    assert main([*args, "train.name=a", "train.threads=1"]) == 0
    assert ", 1 torch threads" in capsys.readouterr().out
    assert main([*args, "train.name=b"]) == 0
    assert f", {torch.get_num_threads()} torch threads (torch's default; train.threads=1" in capsys.readouterr().out


def _fake_step_clock(monkeypatch, seconds_of_step):
    """The loop's clock made of the steps' own durations (`seconds_of_step(step)`), so that the
    step-pace tests do not depend on how busy the machine running them is (regression: the steady
    run warned on a loaded machine)."""
    import functools

    from negaug.experiment import loop
    now = [0.0]
    monkeypatch.setattr(loop.time, "perf_counter", lambda: now[0])
    monkeypatch.setattr(loop, "StepPace", functools.partial(StepPace, warmup=1, baseline=3, window=4))
    step_once = loop.train_step

    def timed_step(recipe, state, step, stats):
        step_once(recipe, state, step, stats)
        now[0] += seconds_of_step(step)
    monkeypatch.setattr(loop, "train_step", timed_step)


def test_a_run_whose_steps_slow_down_warns_in_its_log(tmp_path, monkeypatch):
    _fake_step_clock(monkeypatch, lambda step: 0.2 if step >= 9 else 0.01)  # another process takes the cores
    config = load_config("default", [*TINY, f"train.runs_dir={tmp_path}", "train.name=r", "train.steps=16"])
    result = train(config)
    warnings = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()
                if "warning" in line]
    # steps 7-10: two slow of four, the median (mean of the middle two) is over 3x: step 10
    assert len(warnings) == 1 and warnings[0]["step"] == 10
    assert "train.threads=1" in warnings[0]["warning"] and warnings[0]["warning"] in result.warnings


def test_a_steady_run_does_not_warn(tmp_path, monkeypatch):
    _fake_step_clock(monkeypatch, lambda step: 0.01)
    result = train(load_config("default", [*TINY, f"train.runs_dir={tmp_path}", "train.name=r", "train.steps=16"]))
    assert not any("slower" in w for w in result.warnings)
