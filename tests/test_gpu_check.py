"""benchmarks/gpu_check.py (issue 24), tested where it can be: its refusal without CUDA, and its
whole plan as a dry run on the CPU (the CUDA-only checks skipped, each saying why), which writes the
tables and the JSON record; a failing check is a row of the table and exit code 1, not a crash."""
from __future__ import annotations

import importlib
import json
import re
import sys
from pathlib import Path

import pytest
import torch

from negaug.experiment import kinds

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
gpu_check = importlib.import_module("gpu_check")
FEATURES = [f.name for f in gpu_check.FEATURES]


def run(tmp_path: Path, *args: str) -> tuple[int, dict, str]:
    code = gpu_check.main(["--quiet", "--out", str(tmp_path / "out"), *args])
    report = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    return code, report, (tmp_path / "out" / "gpu_check.md").read_text()


def test_without_cuda_it_refuses_in_one_line_and_runs_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main(["--out", str(tmp_path / "out")]) == 2
    captured = capsys.readouterr()
    assert captured.err == ("gpu_check needs a CUDA device (torch.cuda.is_available() is False); nothing was run "
                            "(--dry-run runs the same plan on the CPU at the smallest sizes)\n")
    assert captured.out == "" and not (tmp_path / "out").exists()


def test_the_dry_run_trains_every_kind_with_every_feature_it_supports_and_times_both_models(tmp_path):
    code, report, md = run(tmp_path, "--dry-run", "--parts", "kinds,speed")
    assert code == 0 and report["dry_run"] and report["environment"]["negaug_commit"] is not None
    status = {(r["kind"], r["feature"]): r["status"] for r in report["results"]}
    assert sorted(status) == sorted((k, f) for k in kinds.names() for f in FEATURES)  # every kind x feature
    expected_gan = {"fp32": "ok", "bf16 autocast": "ok", "channels_last": "ok", "fp16 + grad scaler": "skipped",
                    "compile": "skipped"}
    assert {f: status["gan", f] for f in FEATURES} == expected_gan
    # pretraining and pix2pix have every feature; dpc all but channels_last (3-D convolutions)
    assert {f: status["pretrain", f] for f in FEATURES} == expected_gan
    assert {f: status["pix2pix", f] for f in FEATURES} == expected_gan
    assert {f: status["dpc", f] for f in FEATURES} == {**expected_gan, "channels_last": "not supported"}
    for name in ("gan", "pretrain", "pix2pix"):
        channels_last = next(r for r in report["results"] if r["feature"] == "channels_last" and r["kind"] == name)
        assert f"conv weights of the {name} run's networks channels_last" in channels_last["detail"]
    assert [row["preset"] for row in report["speed"]] == ["default", "cifar10"]
    for row in report["speed"]:
        cells = row["cells"]
        assert 0 < cells["fp32 eager"]["ms"] < 10_000 and 0 < cells["bf16 eager"]["ms"] < 10_000
        assert cells["fp32 compiled"]["status"] == cells["bf16 compiled"]["status"] == "skipped"
    assert report["speed"][1]["model_name"] == "biggan" and report["speed"][1]["num_d_steps"] == 1  # the dry size
    assert "| kind | fp32 | bf16 autocast | channels_last | fp16 + grad scaler | compile |" in md
    assert "| pretrain | ok (" in md and "not supported by dpc (3-D convolutions" in md


@pytest.mark.slow
def test_the_dry_run_launches_torchrun_for_the_kinds_that_support_it(tmp_path):
    code, report, md = run(tmp_path, "--dry-run", "--parts", "torchrun,tests")
    rows = {(r["part"], r["kind"]): r for r in report["results"]}
    assert code == 0 and sorted(rows) == [("tests", "-"), ("torchrun", "dpc"), ("torchrun", "gan"), ("torchrun", "pix2pix"),
                                          ("torchrun", "pretrain")]
    for name in ("dpc", "gan", "pretrain", "pix2pix"):
        assert rows["torchrun", name]["status"] == "ok", rows["torchrun", name]
        assert rows["torchrun", name]["detail"] == "exit 0, checkpoint at step 4"
    assert rows["tests", "-"]["status"] == "skipped"  # the CUDA tests would all skip on the CPU
    assert "| torchrun | gan | torchrun, 1 process (no process group) | ok (exit 0, checkpoint at step 4, " in md


def test_a_failing_check_is_an_error_row_and_exit_code_1(tmp_path, monkeypatch):
    broken = gpu_check.Feature("fp8", ("train.precision=fp8",), ("train.precision",))
    monkeypatch.setattr(gpu_check, "FEATURES", (gpu_check.FEATURES[0], broken))
    code, report, md = run(tmp_path, "--dry-run", "--parts", "kinds")
    rows = {(r["kind"], r["feature"]): r for r in report["results"]}
    assert code == 1 and rows["gan", "fp32"]["status"] == "ok"
    assert rows["gan", "fp8"]["status"] == "error" and rows["gan", "fp8"]["detail"].startswith(
        "ValueError: train.precision='fp8' is not one of")
    assert "Traceback" in rows["gan", "fp8"]["traceback"]
    assert {rows[k, "fp8"]["status"] for k in kinds.names()} == {"error"}  # every kind has train.precision
    assert "| gan | ok (" in md and "**error**: ValueError: train.precision='fp8'" in md


def test_no_check_starts_after_the_budget(tmp_path):
    code, report, _ = run(tmp_path, "--dry-run", "--budget-s", "0")
    assert code == 0 and report["results"] and report["speed"]
    assert {r["status"] for r in report["results"]} == {"skipped"}  # every kind launches under torchrun
    skipped = [r["detail"] for r in report["results"] if r["status"] == "skipped" and r["part"] != "tests"]
    assert skipped and all(d == "not started: past the --budget-s 0 s time budget" for d in skipped)
    assert all(c["status"] == "skipped" for row in report["speed"] for c in row["cells"].values())


def test_on_cuda_every_kind_runs_every_feature_but_dpcs_channels_last():
    reasons = {(name, f.name): gpu_check.skip_reason(kinds.get(name), f, "cuda")
               for name in kinds.names() for f in gpu_check.FEATURES}
    assert all(reasons["gan", f] is None for f in FEATURES)
    assert all(reasons["pretrain", f] is None for f in FEATURES)  # issue 24: compile too
    assert all(reasons["pix2pix", f] is None for f in FEATURES)  # issue 24: Pix2Pix has every feature too
    assert [f for f in FEATURES if reasons["dpc", f] is not None] == ["channels_last"]
    assert reasons["dpc", "channels_last"] == "not supported by dpc (3-D convolutions: bf16 runs without channels_last)"


def test_the_cuda_test_files_are_every_file_with_a_cuda_mark():
    tests = Path(__file__).resolve().parent
    mark = re.compile(r"^(@pytest\.mark\.cuda$|pytestmark = .*pytest\.mark\.cuda)", re.MULTILINE)
    marked = sorted(f"tests/{p.name}" for p in tests.glob("test_*.py") if mark.search(p.read_text()))
    assert marked == sorted(gpu_check.CUDA_TEST_FILES)


def test_an_unknown_part_is_named(tmp_path):
    with pytest.raises(SystemExit, match="unknown part 'sped' in --parts; valid: kinds, torchrun, tests, speed"):
        gpu_check.main(["--dry-run", "--parts", "kinds,sped", "--out", str(tmp_path)])
