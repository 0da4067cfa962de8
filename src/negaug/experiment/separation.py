"""Theorem 2 at the level of supports, for a pretrained run: can a linear separator tell the
representations of held-out images from those of their NDA?

    results = nda_separation("runs/mnist-plain", {"jigsaw": {"k": 2}, "cutout": {}})
    results["separator_auroc/features/jigsaw"]["value"]      # AUROC on images it was not fitted on

Theorem 2 says the NDA-CPC optimum maps data and NDA samples to disjoint regions; a run trained
with NDA should separate them better than one trained without. The held-out images (the run's
`split`, "test" by default: none of them trained the encoder) are split once, by a seeded
permutation, into a part the logistic regression is fitted on and a disjoint part its AUROC is
measured on (`split_images`); each part gets its own NDA draws (so a transform that mixes two
images, such as mixup, pairs images within one part). Representations are the query encoder's
features (before the head: what the linear probe classifies), eval mode. The same `seed` gives
every run the same split, the same NDA images and the same classifier batch order, so runs differ
only by their encoders. `initial_separation` measures the weights a run starts from (before any
training step): an untrained CNN may already separate some transforms (jigsaw's seams, mixup's
overlaid strokes), and a trained run is read against that reference.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from negaug import nda as nda_transforms
from negaug.contrastive import representations, separator_auroc
from negaug.experiment.build import build_dataset, check_seed
from negaug.experiment.pretrain_build import build_model
from negaug.experiment.pretrain_config import PretrainConfig
from negaug.experiment.probe import MAX_DISTANCE_IMAGES, load_pretrained
from negaug.metrics.protocol import library_versions

SPACE = "features"  # the query encoder's features, before the head (what the linear probe uses)


def split_images(count: int, fit_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(fit indices, eval indices), disjoint, sorted, covering range(count): a permutation drawn
    from torch.Generator().manual_seed(seed); the first round(count * fit_fraction) are fitted on."""
    if not 0.0 < fit_fraction < 1.0:
        raise ValueError(f"fit_fraction must be strictly between 0 and 1, got {fit_fraction}")
    num_fit = round(count * fit_fraction)
    if num_fit < 1 or count - num_fit < 1:
        raise ValueError(f"{count} images cannot be split into a fitted and a measured part at {fit_fraction}; "
                         f"use a split with more images")
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
    return order[:num_fit].sort().values, order[num_fit:].sort().values


def nda_images(images: torch.Tensor, name: str, options: dict, seed: int, batch_size: int) -> torch.Tensor:
    """NDA of `images` (N, C, H, W) by transform `name`, `batch_size` at a time, draws seeded with `seed`."""
    generator = torch.Generator().manual_seed(seed)
    transform = nda_transforms.build(name, **options)
    return torch.cat([transform(chunk, generator=generator) for chunk in images.split(batch_size)])


def nda_separation(run_dir: str | Path, transforms: dict[str, dict], split: str = "test", seed: int = 0,
                   fit_fraction: float = 0.5, epochs: int = 100, batch_size: int = 256,
                   device: str | torch.device = "cpu") -> dict[str, dict[str, Any]]:
    """{"separator_auroc/features/<name>": {"value": held-out AUROC, "fit_auroc", "protocol"}} of
    the run's latest checkpoint, for each NDA transform `name` with its `options` in `transforms`
    (module docstring)."""
    config, model, found, _ = load_pretrained(run_dir, device=device)
    return separation(config, model, transforms, split, seed, fit_fraction, epochs, batch_size, device,
                      weights=f"checkpoint of step {found.step}")


def initial_separation(config: PretrainConfig, transforms: dict[str, dict], split: str = "test", seed: int = 0,
                       fit_fraction: float = 0.5, epochs: int = 100, batch_size: int = 256,
                       device: str | torch.device = "cpu") -> dict[str, dict[str, Any]]:
    """`nda_separation` of the weights a run of `config` starts from (`build_model` draws them from
    train.seed, so every arm of a seed that shares the model settings starts from them): the
    reference a trained encoder is read against."""
    model = build_model(config, build_dataset(config)).to(device).eval()
    return separation(config, model, transforms, split, seed, fit_fraction, epochs, batch_size, device,
                      weights=f"untrained: the initial weights drawn from train.seed {config.train.seed}")


def separation(config: PretrainConfig, model, transforms: dict[str, dict], split: str, seed: int,
               fit_fraction: float, epochs: int, batch_size: int, device: str | torch.device,
               weights: str) -> dict[str, dict[str, Any]]:
    """The separator AUROC of `model`'s query encoder on the held-out `split` of `config`'s data."""
    check_seed("seed", seed)
    if not transforms:
        raise ValueError("give at least one NDA transform to separate from the data")
    try:
        held_out = build_dataset(config, split=split)
    except ValueError as err:
        raise ValueError(f"the separator needs the data's held-out {split} split, which fails: {err}") from None
    count = min(len(held_out), MAX_DISTANCE_IMAGES)
    images = held_out.get_batch(torch.arange(count))[0]  # (N, C, H, W)
    fit_index, eval_index = split_images(count, fit_fraction, seed)
    parts = {"fit": images[fit_index], "eval": images[eval_index]}

    def encode(x: torch.Tensor) -> torch.Tensor:
        return representations(model.encoder_q, x.to(device), batch_size).float()

    data = {part: encode(x) for part, x in parts.items()}  # (n, F) each
    protocol = {"space": f"{SPACE}: query encoder, frozen, eval mode, before the head", "weights": weights,
                "split": split, "num_images": count, "fit_fraction": fit_fraction, "seed": seed,
                "split_rule": "torch.randperm(num_images, Generator().manual_seed(seed)); the first "
                              "round(num_images * fit_fraction) are fitted on, the rest measured",
                "nda_draws": "each part on its own, batch_size at a time, Generator().manual_seed(seed)",
                "data": config.data.name, "versions": library_versions()}
    out = {}
    for name, options in transforms.items():
        nda = {part: encode(nda_images(x, name, options, seed, batch_size)) for part, x in parts.items()}
        result = separator_auroc(data["fit"], nda["fit"], data["eval"], nda["eval"], epochs, batch_size,
                                 generator=torch.Generator().manual_seed(seed))
        result["protocol"] = {**result["protocol"], **protocol, "transform": name, "options": dict(options)}
        out[f"separator_auroc/{SPACE}/{name}"] = result
    return out
