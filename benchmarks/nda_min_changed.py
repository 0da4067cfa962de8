"""What `min_changed` fixes and what it costs: negatives that are their source in disguise, and
the time per call, with the option (the default, 1% of the pixels) and without it (min_changed=0),
measured in the same run.

    python benchmarks/nda_min_changed.py [--repeats 15] [--threads 2] [--batch 64]

1. MNIST-5k, all 5000 images (split "all", 32 px, [-1, 1]), in batches of --batch, one generator
   seeded 0 per setting: the share of negatives equal to their source, changing <= 5 pixels, and
   changing fewer than 11 (1% of 32 x 32: the default minimum), a pixel counting as changed when
   some channel moved by more than 1/255 (half an 8-bit level); for pairing transforms also the
   share within 5 pixels of the source or of the partner; the share of images redrawn at least
   once and the share that fell back.
2. Images per second of `t(x, generator)`, with / without the option, round-robin as in
   nda_transforms.py: MNIST batches (redraws happen) and uniform random images (none do: the
   cost of the check alone).
"""
from __future__ import annotations

import argparse
import statistics

import torch
from nda_transforms import pin_malloc_thresholds, seconds_per_call

from negaug import data, nda
from negaug.nda.min_change import changed_pixels

COVERED = ("cutout", "cutmix", "mixup", "mixup:alpha=0.1", "stitch", "mixture")
WITHOUT = {"name": "mixture", "transforms": [
    "jigsaw", *({"name": name, "min_changed": 0} for name in ("stitch", "mixup", "cutout", "cutmix"))]}


def build(label: str, enforce: bool) -> nda.NDATransform:
    """`label`: a name, or "mixup:alpha=0.1" (Beta(0.1, 0.1): gamma near 0 or 1 half the time)."""
    name, _, alpha = label.partition(":alpha=")
    options = {"alpha": float(alpha)} if alpha else {}
    if name == "mixture":
        return nda.build("mixture") if enforce else nda.from_spec(WITHOUT)
    return nda.build(name, **options) if enforce else nda.build(name, min_changed=0, **options)


def fell_back(params: dict) -> torch.Tensor:
    batch = next(iter(params.values())).shape[0]
    out = torch.zeros(batch, dtype=torch.bool)
    for key, value in params.items():
        if key.split(".")[-1] == "fallback":
            out |= value
    return out


def disguise_row(name: str, images: torch.Tensor, batch: int, enforce: bool) -> str:
    transform, generator = build(name, enforce), torch.Generator().manual_seed(0)
    first = build(name, False)
    outs, either, redrawn, fallback = [], [], 0, 0
    for chunk in images.split(batch):
        state = generator.get_state()
        params = transform.sample(chunk.shape, generator, images=chunk)
        outs.append(transform.apply(chunk, params))
        either.append(transform.changed(chunk, outs[-1], params))  # pairing: the fewer of own and partner
        first_params = first.sample(chunk.shape, torch.Generator().set_state(state))
        differs = torch.zeros(chunk.shape[0], dtype=torch.bool)
        for key, value in first_params.items():
            differs |= (params[key] != value).reshape(chunk.shape[0], -1).any(1)
        redrawn += int(differs.sum())
        fallback += int(fell_back(params).sum())
    out = torch.cat(outs)
    changed, n = changed_pixels(images, out), images.shape[0]
    identical = int((out == images).flatten(1).all(1).sum())
    either_changed = torch.cat(either)
    cells = [name, "default (0.01)" if enforce else "0 (off)", f"{identical / n:.2%}", f"{int((changed <= 5).sum()) / n:.2%}",
             f"{int((changed < 11).sum()) / n:.2%}", f"{int((either_changed <= 5).sum()) / n:.2%}",
             f"{redrawn / n:.2%}", f"{fallback / n:.2%}"]
    return "| " + " | ".join(cells) + " |"


def timing_row(name: str, label: str, x: torch.Tensor, repeats: int) -> str:
    with_option, without = build(name, True), build(name, False)
    g_with, g_without = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    seconds = seconds_per_call({"with": lambda: with_option(x, g_with), "without": lambda: without(x, g_without)},
                               repeats, statistics.median)
    batch = x.shape[0]
    cells = [name, label, f"{batch / seconds['without']:,.0f}", f"{batch / seconds['with']:,.0f}",
             f"{seconds['with'] / seconds['without']:.2f}x"]
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    pin_malloc_thresholds()
    torch.set_num_threads(args.threads)
    dataset = data.build("mnist5k", split="all")
    images, _ = dataset.get_batch(torch.arange(len(dataset)))
    print(f"MNIST-5k, {images.shape[0]} images, batches of {args.batch}, seed 0\n")
    print("| transform | min_changed | identical to source | <= 5 px changed | < 11 px changed "
          "| <= 5 px changed of source or partner | redrawn | fell back |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name in COVERED:
        for enforce in (False, True):
            print(disguise_row(name, images, args.batch, enforce))
    print(f"\ntorch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.repeats} round-robin "
          "repeats; images/s of t(x, generator)\n")
    print("| transform | batch | min_changed=0 | default | time ratio |")
    print("|---|---|---:|---:|---:|")
    mnist = images[:256]
    uniform = torch.rand(256, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    for name in COVERED:
        print(timing_row(name, "MNIST 64x1x32x32", mnist[:64], args.repeats))
        print(timing_row(name, "MNIST 256x1x32x32", mnist, args.repeats))
        print(timing_row(name, "rand 256x3x32x32", uniform, args.repeats))


if __name__ == "__main__":
    main()
