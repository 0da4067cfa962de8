"""Quality gates: tiny seeded NDA-GAN runs must learn, whatever the mode and the discriminator.

Regression for the batch-norm collapse: with a batch-norm D that scored generated images together
with negatives in the D step and alone in the G step, D told the two steps apart by their batch
statistics, its hinge loss sat at 0 and G trained on noise (the default preset drew grey noise).
Each run here (digits at 16 px, DCGAN width 16, hinge, Jigsaw NDA lam 0.25, 300 steps, ~8 s)
is checked by what it learned:
- the generated samples moved towards the data: the Frechet distance in pixel space to real
  digits fell to under half of the untrained generator's and under an absolute bound (the
  collapsed runs ended at 34 (weighted) and 61 (mixture), the correct ones at 15.6-16.4, the
  untrained G at ~100; real-vs-real is 0.8);
- D separates real images from their negatives (AUROC on held-out images, eval mode);
- D scores generated images alike in its own step and in the G step (the collapsed runs:
  -3 vs +18).
"""
import json

import pytest
import torch

from negaug import data
from negaug import nda as nda_lib
from negaug.anomaly.scoring import detection_metrics
from negaug.experiment import load_run, train
from negaug.experiment.config import load_config
from negaug.metrics.fid import fid_from_features
from negaug.models import build as build_models

pytestmark = pytest.mark.slow  # every test here trains 300 steps (~8-20 s each)

STEPS = 300
GATE = ["data.name=digits", "data.image_size=16", "data.batch_size=64", "model.options.width=16",
        f"train.steps={STEPS}", "train.ema_decay=0", "train.progress=false", "train.sample_every=0",
        "train.checkpoint_every=0", "train.log_every=50", "train.device=cpu", "train.seed=0"]
NUM = 500


def pixel_fd(images: torch.Tensor, reference: torch.Tensor) -> float:
    return fid_from_features(images.flatten(1).double(), reference.flatten(1).double())


@pytest.fixture(scope="module")
def digits():
    images = data.build("digits", image_size=16).images
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    return images[order]


@pytest.fixture(scope="module")
def untrained_fd(digits):
    torch.manual_seed(0)
    G, _ = build_models("dcgan", image_size=16, channels=1, width=16)
    with torch.no_grad():
        x = G.eval()(G.sample_latent(NUM, generator=torch.Generator().manual_seed(1)))
    return pixel_fd(x, digits[:NUM])


def gate_measurements(run_dir, digits):
    run = load_run(run_dir)
    G, D = run.raw_generator.eval(), run.discriminator.eval()
    with torch.no_grad():
        x = G(G.sample_latent(NUM, generator=torch.Generator().manual_seed(1)))
        held_out = digits[-NUM:]
        negatives = nda_lib.build("jigsaw", k=2)(held_out, generator=torch.Generator().manual_seed(2))
        auroc = detection_metrics(D(held_out), D(negatives))["auroc"]
    last = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()][-1]
    return pixel_fd(x, digits[:NUM]), auroc, last


@pytest.mark.parametrize("mode", ["weighted", "mixture"])
@pytest.mark.parametrize("d_norm", ["batch_norm", "spectral_norm"])
def test_nda_training_learns_regression_batch_norm_collapse(tmp_path, digits, untrained_fd, mode, d_norm):
    sn = "true" if d_norm == "spectral_norm" else "false"
    config = load_config("default", [*GATE, f"nda.mode={mode}", f"model.options.spectral_norm={sn}",
                                     f"train.runs_dir={tmp_path}", "train.name=gate"])
    result = train(config)
    fd, auroc, last = gate_measurements(result.run_dir, digits)
    assert 100.0 < untrained_fd < 200.0  # the starting point the runs must move away from
    assert 2.0 < fd < 22.0 and fd < 0.5 * untrained_fd, f"samples did not move towards the data: pixel FD {fd:.1f}"
    assert 0.9 < auroc <= 1.0, f"D does not separate real images from jigsaw negatives: AUROC {auroc:.3f}"
    assert last["loss/d"] > 0.05, "D's hinge loss at its floor: D wins by a signal G cannot follow"
    d_step, g_step = last["d_out/generated"], last["d_out/generated_g_step"]
    assert abs(d_step - g_step) < 0.5 + 0.25 * abs(d_step), f"D scores generated images {d_step:.2f} in its step, {g_step:.2f} in G's"


def assert_d_learned(auroc: float, last: dict) -> None:
    """D tells jigsaw negatives from held-out real images, its loss is off its floor, and it scores
    generated images alike in its own step and in G's."""
    assert 0.9 < auroc <= 1.0, f"D does not separate real images from jigsaw negatives: AUROC {auroc:.3f}"
    assert last["loss/d"] > 0.05, "D's hinge loss at its floor"
    d_step, g_step = last["d_out/generated"], last["d_out/generated_g_step"]
    assert abs(d_step - g_step) < 0.5 + 0.25 * abs(d_step), f"D scores generated images {d_step:.2f} in its step, {g_step:.2f} in G's"


@pytest.mark.parametrize("extra", [("train.diffaugment=color,translation,cutout",), ("loss.consistency=10",)],
                         ids=["diffaugment+jigsaw", "consistency+jigsaw"])
def test_training_with_diffaugment_or_consistency_still_learns(tmp_path, digits, untrained_fd, extra):
    """DiffAugment and CR slow the first steps (pixel FD after 300 steps: 34.9 with DiffAugment,
    37.4 with CR weight 10, 14.3 without either, 142 untrained), but the samples must still
    move towards the data, D must still tell jigsaw negatives from real images it sees clean, and
    D must score generated images alike in its step and in G's (where DiffAugment also applies)."""
    config = load_config("default", [*GATE, *extra, f"train.runs_dir={tmp_path}", "train.name=gate"])
    fd, auroc, last = gate_measurements(train(config).run_dir, digits)
    assert 2.0 < fd < 45.0 and fd < 0.4 * untrained_fd, f"samples did not move towards the data: pixel FD {fd:.1f}"
    assert_d_learned(auroc, last)
    if "loss.consistency=10" in extra:
        assert 0.0 < last["loss/consistency"] < 1.0  # D kept near-invariant to flips and shifts


@pytest.mark.parametrize("d_norm", ["batch_norm", "spectral_norm"])
def test_mixgan_training_learns(tmp_path, digits, untrained_fd, d_norm):
    """MIX+GAN (model.mixture=2): the mixture's samples move towards the data, the mixture D
    (sum_j wD_j D_j) separates real images from jigsaw negatives, D scores generated images alike
    in its step and in G's, and neither side's weights collapse onto one component."""
    sn = "true" if d_norm == "spectral_norm" else "false"
    config = load_config("default", [*GATE, "model.mixture=2", f"model.options.spectral_norm={sn}",
                                     f"train.runs_dir={tmp_path}", "train.name=gate"])
    fd, auroc, last = gate_measurements(train(config).run_dir, digits)
    assert 2.0 < fd < 30.0 and fd < 0.4 * untrained_fd, f"samples did not move towards the data: pixel FD {fd:.1f}"
    assert_d_learned(auroc, last)
    for side in ("g", "d"):
        assert min(last[f"mix/{side}_weight{k}"] for k in range(2)) > 0.3
