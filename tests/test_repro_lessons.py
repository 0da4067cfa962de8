"""negaug repro lessons: the three demos of the seed documents at tiny sizes (seconds each).

The measurements themselves are checked (the gradient ratio falls as D trains, the W1 estimate
tracks |theta|, the JS estimate is log 2 apart and 0 on top of each other), then a tiny end-to-end
run checks that the report and the figures are written.
"""
from __future__ import annotations

import itertools
import json
import math

import pytest
import torch

from negaug.cli import main
from negaug.repro import lessons, toolkit


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def test_minimax_over_nonsaturating_gradient_ratio_falls_as_d_trains():
    rows = lessons.vanishing_gradient([0, 5, 20, 60], seed=0)
    ratio = [r["grad_minimax"] / r["grad_nonsaturating"] for r in rows]
    # untrained D: D(G(z)) ~ 1/2, where sigmoid(v) ~ 1 - sigmoid(v): the two gradients nearly agree
    assert 0.7 < ratio[0] < 1.3
    assert all(later < earlier for earlier, later in itertools.pairwise(ratio))
    assert ratio[-1] < 0.05 * ratio[0]
    assert rows[-1]["d_accuracy"] > 0.95 and rows[-1]["mean_d_fake"] < 0.05
    assert rows[-1]["grad_nonsaturating"] > 10 * rows[0]["grad_nonsaturating"]  # it does not vanish


def test_gradient_norm_is_minus_sigmoid_times_the_logit_gradient():
    # hand-checked: D(x) = v = x (identity), G(z) = w z + b with w = 0, b = 0, z = 1: v = 0
    # minimax d/dv log(1 - sigmoid(v)) = -sigmoid(0) = -1/2; d v / d b = 1, d v / d w = z = 1
    G = torch.nn.Linear(1, 1)
    with torch.no_grad():
        G.weight.zero_()
        G.bias.zero_()
    D = torch.nn.Flatten(0)  # (B, 1) -> (B,)
    z = torch.ones(1, 1)
    assert lessons.generator_gradient_norm(G, D, "minimax", z) == pytest.approx(0.5 * math.sqrt(2), rel=1e-6)
    assert lessons.generator_gradient_norm(G, D, "nonsaturating", z) == pytest.approx(0.5 * math.sqrt(2), rel=1e-6)


def test_analytic_divergences_of_parallel_segments():
    assert lessons.analytic_divergences(0.0) == {"js": 0.0, "kl": 0.0, "w1": 0.0}
    apart = lessons.analytic_divergences(-0.3)
    assert apart["js"] == pytest.approx(math.log(2)) and math.isinf(apart["kl"]) and apart["w1"] == pytest.approx(0.3)


@pytest.mark.parametrize("theta", [0.0, 0.5, -1.0])
def test_w1_estimate_tracks_abs_theta(theta):
    estimate = lessons.estimate_w1(theta, steps=150, seed=0)
    assert abs(estimate - abs(theta)) < 0.1 + 0.1 * abs(theta)


def test_js_estimate_is_log2_apart_and_zero_on_top():
    apart = lessons.estimate_js(1.0, steps=150, seed=0)
    assert math.log(2) - 0.05 < apart <= math.log(2) + 1e-9
    same = lessons.estimate_js(0.0, steps=150, seed=0)
    assert abs(same) < 0.02


def test_segment_points_lie_on_the_segment():
    points = lessons.segment(0.7, 1000, torch.Generator().manual_seed(0))
    assert points.shape == (1000, 2)
    assert torch.all(points[:, 0] == 0.7)
    assert 0.0 <= float(points[:, 1].min()) and float(points[:, 1].max()) <= 1.0


@pytest.mark.slow
def test_lessons_tiny_writes_report_and_figures(tmp_path, capsys):
    out = tmp_path / "lessons"
    assert main(["repro", "lessons", "--tiny", "--out", str(out)]) == 0
    err = capsys.readouterr().err  # progress: a line per theta, a bar per training run
    assert "theta +0.00 (1 of 2" in err and "theta +1.00 (2 of 2" in err
    assert "train: 100%" in err and err.count("train: 100%") >= len(lessons.GRID_ARMS)
    for name in ("report.md", "results.json", "vanishing_gradient.png", "divergences.png", "mode_collapse.png"):
        assert (out / name).stat().st_size > 0, name
    results = json.loads((out / "results.json").read_text())
    assert [r["d_steps"] for r in results["vanishing_gradient"]] == lessons.SIZES["tiny"]["checkpoints"]
    assert [r["theta"] for r in results["divergences"]] == lessons.SIZES["tiny"]["thetas"]
    assert set(results["modes_covered"]) == set(lessons.GRID_ARMS)
    for entries in results["mode_collapse_per_arm"].values():
        (entry,) = entries
        assert sum(entry["mode_counts"]) <= toolkit.SIZES["tiny"]["grid_samples"]
        assert 0 <= entry["modes_covered"] <= 25 and entry["num_modes"] == 25
    assert len(results["mode_collapse_per_arm"]["mixgan"][0]["g_weights"]) == 3  # model.mixture=3 in negaug train
    report = (out / "report.md").read_text()
    assert "Mode collapse on the 5 x 5 grid" in report and "![divergences" in report


@pytest.mark.slow
def test_toolkit_tiny_trains_every_arm_and_writes_both_tables(tmp_path):
    out = tmp_path / "toolkit"
    assert main(["repro", "toolkit", "--tiny", "--out", str(out), "--runs-dir", str(tmp_path / "runs")]) == 0
    results = json.loads((out / "results.json").read_text())
    arms = {toolkit.arm_name(m, nda) for m in toolkit.METHODS for nda in (False, True)}
    assert set(results["grid"]) == arms and set(results["mnist"]) == arms
    configs = {r["arm"]: r["config"] for r in results["runs"]}
    assert configs["mixgan"]["model"]["mixture"] == 3 and configs["mmd_nda"]["loss"]["name"] == "mmd"
    assert configs["plain"]["nda"]["transform"] == "none" and configs["rpgan_nda"]["nda"]["transform"] != "none"
    for row in results["grid"].values():
        assert 0 <= row["modes_covered"]["mean"] <= 25
    for name, row in results["mnist"].items():
        assert row["fid"]["mean"] > 0 and 0 <= row["precision"]["mean"] <= 1, name
    assert results["grid"]["plain"]["vs_plain"]["modes_covered"]["difference"] == 0
    for task in ("grid", "mnist"):  # each method with NDA against itself without
        assert set(results["nda_effect"][task]) == set(toolkit.METHODS)
        effect = results["nda_effect"][task]["mixgan"][next(iter(results["nda_effect"][task]["mixgan"]))]
        key = next(iter(results["nda_effect"][task]["mixgan"]))
        assert effect["difference"] == (results[task]["mixgan_nda"][key]["mean"] - results[task]["mixgan"][key]["mean"])
    report = (out / "report.md").read_text()
    assert "## 5 x 5 grid (25 modes)" in report and "## MNIST-5k" in report and "MIX+GAN" in report
    assert "## NDA against no NDA, per method (MNIST-5k)" in report
    for name in ("grid_samples.png", "mnist_samples.png"):
        assert (out / name).stat().st_size > 0
    # the lessons' grid arms are the toolkit's: one runs folder, no second training
    assert main(["repro", "lessons", "--tiny", "--out", str(tmp_path / "lessons"), "--runs-dir", str(tmp_path / "runs")]) == 0
    lessons_runs = json.loads((tmp_path / "lessons" / "results.json").read_text())["runs"]
    assert lessons_runs and all(r["cached"] for r in lessons_runs)
