"""Reproductions of the paper's claims that fit a CPU: `negaug repro NAME`.

    from negaug import repro
    results = repro.run("numerosity", out_dir="results/numerosity", size="quick", seeds=[0])

Experiments (`repro.names()`): numerosity (Appendix A), toy (Figure 3), anomaly (Table 5, small
scale), quality (FID / precision / recall with and without NDA), contrastive (Table 6 and Figure 9
at small scale: MoCo-v2 without NDA and with three NDA arms), video (Table 7 on a synthetic
stand-in: DPC on moving_mnist, linear probes on frozen features), pix2pix (Table 4), lessons (the
seed documents' lessons: vanishing minimax gradient, JS/KL/W1 between parallel segments, mode
collapse on the 5 x 5 grid; not a baseline-vs-NDA comparison), toolkit (feature matching,
minibatch discrimination, MMD, MIX+GAN and RpGAN against the plain GAN with and without NDA on
the 5 x 5 grid and MNIST-5k). Each other experiment trains a
baseline arm and an NDA arm with the same preset, budget and seeds, evaluates both and writes `out_dir/results.json`
(every number with its protocol and settings), `out_dir/report.md` (claim tables, mean ± std over
seeds) and PNG plots. Sizes: "tiny" (CI smoke test, seconds), "quick" (minutes), "full" (the
reported numbers, 3 seeds by default). Trained runs are cached under `runs_dir` (default
`out_dir/runs`) by config hash: anomaly and quality share their two arms when given one runs folder
(video trains in-process and caches its DPC weights the same way, by a hash of its settings).
"""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from negaug.files import check_folder, check_output_path, read_limited
from negaug.registry import Registry
from negaug.repro import (
    ablations,
    anomaly,
    contrastive,
    lessons,
    numerosity,
    pix2pix,
    quality,
    theorem1,
    toolkit,
    toy,
    video,
)
from negaug.repro.common import SIZES, Study, default_seeds

EXPERIMENTS = Registry("experiment")
for _name, _module in {"numerosity": numerosity, "toy": toy, "anomaly": anomaly, "quality": quality,
                       "contrastive": contrastive, "video": video, "pix2pix": pix2pix,
                       "lessons": lessons, "toolkit": toolkit, "theorem1": theorem1}.items():
    EXPERIMENTS.register(_name)(_module.run)
for _name in ablations.TABLES:  # the ablations under the pre-registered protocol (docs/reproduction.md)
    EXPERIMENTS.register(_name)(ablations.table_runner(_name))


def names() -> list[str]:
    return EXPERIMENTS.names()


def run(name: str, out_dir: str | Path, size: str = "quick", seeds: list[int] | None = None,
        runs_dir: str | Path | None = None, on_progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run experiment `name` and write its results; returns the results dict (as in results.json)."""
    experiment = EXPERIMENTS.get(name)
    check_folder(out_dir, "--out")
    if runs_dir is not None:
        check_folder(runs_dir, "--runs-dir")
    for name in ("results.json", "report.md"):  # a symlink or a device there: refused now, not after training
        check_output_path(Path(out_dir) / name, "--out file")
    check_not_over_full_results(Path(out_dir), size)
    study = Study(Path(out_dir), size, seeds if seeds is not None else default_seeds(size, None),
                  runs_dir, on_progress)
    return experiment(study)


def check_not_over_full_results(out_dir: Path, size: str) -> None:
    """A run never overwrites the results of a larger size (tiny < quick < full), e.g. the
    committed results/ of a full or quick run by a smoke test."""
    existing = out_dir / "results.json"
    if size == "full" or not existing.is_file():
        return
    try:
        previous = json.loads(read_limited(existing, 256 * 2**20, "results file")).get("size")
    except (ValueError, AttributeError, OSError, RecursionError):
        previous = None
    if previous in SIZES and SIZES.index(previous) > SIZES.index(size):
        raise ValueError(f"{out_dir} holds the results of a {previous} run; a --{size} run would overwrite them: "
                         f"give another --out (e.g. scratch/{out_dir.name})")


__all__ = ["EXPERIMENTS", "SIZES", "names", "run"]
