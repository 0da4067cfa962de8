"""Offline-feature FID: negaug vs torchmetrics' FrechetInceptionDistance with the same network.

    python benchmarks/fid_offline.py [--num 10000] [--rounds 3] [--batch-size 500] [--threads N]

Real and generated sets: `--num` 32 px mnist5k images each (the 5,000 images repeated, with
independent seeded noise; the "generated" set also shifted by one pixel). Features: the offline
classifier trained on the mnist5k train split (trained or loaded from the cache before timing;
its training time and test accuracy are printed). Both sides get the same images in the same
batches, without gradients; rounds are interleaved so a slow period of the shared machine hits
both alike, and the median per side is reported with the ratio. Targets: negaug <= 30 s on 2 CPU
cores and no slower than torchmetrics; both FID values agree.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
from torch import nn

from negaug import data
from negaug.metrics import features as feats
from negaug.metrics import fid_from_features


class FeaturesOnly(nn.Module):
    """torchmetrics' custom-feature contract: images -> (B, F), with an int `num_features`."""

    def __init__(self, extractor: nn.Module):
        super().__init__()
        self.extractor = extractor.eval()  # torchmetrics does not call .eval() itself (FACTS)
        self.num_features = extractor.num_features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.extractor(images)[0]


def make_sets(num: int) -> tuple[torch.Tensor, torch.Tensor]:
    base = data.build("mnist5k", split="all").images  # (5000, 1, 32, 32) in [-1, 1]
    repeats = base.repeat(-(-num // base.shape[0]), 1, 1, 1)[:num]
    g = torch.Generator().manual_seed(0)
    real = (repeats + 0.05 * torch.randn(repeats.shape, generator=g)).clamp(-1, 1)
    fake = (torch.roll(repeats, 1, dims=3) + 0.1 * torch.randn(repeats.shape, generator=g)).clamp(-1, 1)
    return real, fake


def negaug_fid(extractor: nn.Module, real: torch.Tensor, fake: torch.Tensor, batch_size: int) -> float:
    real_features, _ = feats.extract_features(extractor, real, batch_size)
    fake_features, _ = feats.extract_features(extractor, fake, batch_size)
    return fid_from_features(real_features, fake_features)


def torchmetrics_fid(extractor: nn.Module, real: torch.Tensor, fake: torch.Tensor, batch_size: int) -> float:
    from torchmetrics.image.fid import FrechetInceptionDistance

    metric = FrechetInceptionDistance(feature=FeaturesOnly(extractor))
    with torch.no_grad():
        for batch in real.split(batch_size):
            metric.update(batch, real=True)
        for batch in fake.split(batch_size):
            metric.update(batch, real=False)
        return float(metric.compute())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--cache-dir", default=None, help="classifier cache (default: a fresh temporary folder)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cache_dir = args.cache_dir or tempfile.mkdtemp(prefix="negaug-bench-")
    train, test = data.build("mnist5k", split="train"), data.build("mnist5k", split="test")
    start = time.perf_counter()
    extractor = feats.build("classifier", data=train, data_name="mnist5k", cache_dir=cache_dir)
    _, logits = feats.extract_features(extractor, test)
    accuracy = float((logits.argmax(1) == test.labels).float().mean())
    print(f"classifier {extractor.identifier}: {'loaded' if extractor.meta['cached'] else 'trained'} in "
          f"{time.perf_counter() - start:.1f} s (training {extractor.meta['train_seconds']:.1f} s), "
          f"test accuracy {accuracy:.4f}; torch threads {torch.get_num_threads()}")
    real, fake = make_sets(args.num)
    sides = {"negaug": negaug_fid, "torchmetrics": torchmetrics_fid}
    times: dict[str, list[float]] = {name: [] for name in sides}
    values: dict[str, float] = {}
    for _ in range(args.rounds):
        for name, function in sides.items():
            start = time.perf_counter()
            values[name] = function(extractor, real, fake, args.batch_size)
            times[name].append(time.perf_counter() - start)
    median = {name: statistics.median(t) for name, t in times.items()}
    print(f"\nFID, {args.num} vs {args.num} images of 32 px, median of {args.rounds} rounds")
    print("| implementation | seconds | ratio to torchmetrics | FID |")
    print("|---|---|---|---|")
    for name in sides:
        print(f"| {name} | {median[name]:.2f} | {median[name] / median['torchmetrics']:.2f} | {values[name]:.6f} |")
    difference = abs(values["negaug"] - values["torchmetrics"])
    print(f"\n|FID difference| = {difference:.3g} (relative {difference / abs(values['torchmetrics']):.2g})")


if __name__ == "__main__":
    main()
