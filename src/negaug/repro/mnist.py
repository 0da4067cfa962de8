"""The two DCGAN arms on MNIST-5k shared by the `anomaly` and `quality` experiments.

Both experiments train exactly these configs (the `default` preset: DCGAN width 32, hinge,
Jigsaw-2 NDA with lambda = 0.25; the baseline sets `nda.transform=none`), so with the same
runs folder they share the trained models (cache keyed by the config hash).
"""
from __future__ import annotations

from typing import Any

from negaug.repro.common import BASELINE, NDA, Arm

PRESET = "default"
SIZES: dict[str, dict[str, Any]] = {
    # steps: generator steps of both arms (the default preset trains 2000)
    "tiny": {"steps": 3, "width": 8, "batch_size": 16},
    "quick": {"steps": 700, "width": 32, "batch_size": 64},
    "full": {"steps": 2000, "width": 32, "batch_size": 64},
}
LABEL = "mnist"  # run-folder prefix, shared by both experiments


def arms(size: str) -> list[Arm]:
    s = SIZES[size]
    # nda.lam=0.25: the paper's CIFAR-10 lambda, and the default preset's until Table 8 chose 0.75
    shared = ["nda.lam=0.25", f"train.steps={s['steps']}", f"model.options.width={s['width']}", f"data.batch_size={s['batch_size']}"]
    if size == "tiny":
        shared += ["train.ema_start=1", "train.sample_every=0", "train.checkpoint_every=0"]
    elif size == "quick":
        shared += ["train.ema_start=200"]
    return [Arm(BASELINE, PRESET, [*shared, "nda.transform=none"]), Arm(NDA, PRESET, shared)]
