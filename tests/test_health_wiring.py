"""Review regressions: the health monitors of Pix2Pix and DPC runs are wired into their loops (a
warning reaches metrics.jsonl and report.md with advice that names the kind's own keys), and a
resumed DPC or MoCo-v2 session does not judge its already trained loss. The monitors' thresholds are lowered
(monkeypatched) so that a few tiny steps trip them."""
from __future__ import annotations

import functools
import importlib

from negaug.experiment import dpc as dpc_kind
from negaug.experiment import kinds
from negaug.experiment import translate as translate_kind
from negaug.experiment.health import EncoderHealth, HealthMonitor
from negaug.experiment.runs import read_metrics
from test_kinds import config_of


def warnings_of(run_dir) -> list[str]:
    return [r["warning"] for r in read_metrics(run_dir) if "warning" in r and "slower than this run's" not in r["warning"]]


def health_of(run_dir) -> str:
    return (run_dir / "report.md").read_text().split("## Health (this session)")[1].split("\n## ")[0]


def test_pix2pix_runs_its_d_floor_monitor_with_pix2pix_advice_regression(tmp_path, monkeypatch):
    # every logged D loss counts as "at the floor" from the first log line on
    monkeypatch.setattr(translate_kind, "HealthMonitor", functools.partial(HealthMonitor, floor_steps=1, floor_value=1e9))
    result = kinds.get("pix2pix").train(config_of("pix2pix", tmp_path, "r", 3))
    found = warnings_of(result.run_dir)
    assert len(found) == 1 and found[0].startswith("step 2: D has beaten G for 1 steps"), found
    assert "loss.d_scale" in found[0] and "spectral" not in found[0] and "gradient penalty" not in found[0]
    assert f"- {found[0]}" in health_of(result.run_dir)


def test_dpc_runs_its_loss_monitor_with_dpc_advice_and_a_resumed_session_is_not_judged_regression(tmp_path, monkeypatch):
    monkeypatch.setattr(dpc_kind, "EncoderHealth", functools.partial(EncoderHealth, judge_after=2, stall_fraction=0.0))
    kind = kinds.get("dpc")
    result = kind.train(config_of("dpc", tmp_path, "r", 2))  # stall_fraction 0: any loss "has not fallen"
    found = warnings_of(result.run_dir)
    assert len(found) == 1 and found[0].startswith("step 2: the loss has not fallen"), found
    assert "loss.temperature" in found[0] and "augmented views" not in found[0]
    assert f"- {found[0]}" in health_of(result.run_dir)
    resumed = kind.train(config_of("dpc", tmp_path, "r", 4), run_dir=result.run_dir, resume=True)
    assert warnings_of(resumed.run_dir) == found  # nothing new: a resumed session's first loss is trained already
    assert "- no warning: " in health_of(resumed.run_dir)


def test_a_resumed_pretraining_session_is_not_judged_on_its_trained_loss_regression(tmp_path, monkeypatch):
    pretrain_kind = importlib.import_module("negaug.experiment.pretrain")  # the package exports a function of that name
    monkeypatch.setattr(pretrain_kind, "EncoderHealth", functools.partial(EncoderHealth, judge_after=2, stall_fraction=0.0))
    kind = kinds.get("pretrain")
    result = kind.train(config_of("pretrain", tmp_path, "r", 2, ["train.log_every=1"]))
    stalls = [w for w in warnings_of(result.run_dir) if "the loss has not fallen" in w]
    assert len(stalls) == 1 and stalls[0].startswith("step 2:") and "augmented views" in stalls[0], stalls
    kind.train(config_of("pretrain", tmp_path, "r", 4, ["train.log_every=1"]), run_dir=result.run_dir, resume=True)
    assert [w for w in warnings_of(result.run_dir) if "the loss has not fallen" in w] == stalls
