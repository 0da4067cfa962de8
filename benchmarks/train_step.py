"""Training-step speed: NDA overhead, negaug vs a minimal hand-written loop, bf16 precision.

    python benchmarks/train_step.py [--iters 30] [--width 64] [--channels 3] [--d-norm spectral|batch]
                                    [--biggan-widths 64,8] [--pix2pix-widths 16,4]

One iteration = one discriminator step + one generator step, DCGAN 32 px, batch 64, hinge loss,
on the CPU. Every row is measured in the same run, interleaved in rounds (so a slow period of the
machine hits all rows alike); the median of the rounds is reported with its ratio to the baseline.
Targets (issue 3): mixture NDA <= 1.05x no NDA; weighted NDA <= 1.25x; negaug <= 1.05x the
minimal loop; bf16 + channels_last >= 1.3x faster than fp32.
`--d-norm spectral` (default, as the default preset) gives D spectral norm: a per-sample D that
`negaug.experiment.steps.score` calls once per step on real, generated and negative samples together;
`--d-norm batch` gives D batch norm: one call per kind of sample (the discriminator contract).
`--biggan-widths 64,8` adds rows for the paper's model, BigGAN at 32 px (SN in G and D; width 64 is
the authors' ch), no NDA and jigsaw NDA weighted, at each width; their ratios are to the DCGAN rows.
`--pix2pix-widths 16,4` adds rows for Pix2Pix (`negaug train pix2pix-scenes`: U-Net + PatchGAN on
the offline scenes at 64 px, batch 16, L1 + cGAN; width 16 is the CPU preset's, 64 the paper's):
one whole translation step (1 D + 1 G update), no NDA and jigsaw NDA.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from negaug import losses, models, nda
from negaug.data import TensorImageDataset
from negaug.experiment.build import Recipe
from negaug.experiment.state import TrainState
from negaug.experiment.stats import Stats
from negaug.experiment.steps import discriminator_step, generator_step
from negaug.experiment.stream import BatchStream

SPECTRAL_NORM = {"spectral": True, "batch": False}


def make_run(width: int, channels: int, transform: str | None, mode: str, precision: str,
             d_norm: str, model: str = "dcgan") -> tuple[Recipe, TrainState]:
    torch.manual_seed(0)
    data = TensorImageDataset(torch.rand(2048, channels, 32, 32) * 2 - 1, torch.zeros(2048, dtype=torch.long))
    G, D = models.build(model, image_size=32, channels=channels, width=width, spectral_norm=SPECTRAL_NORM[d_norm])
    if precision == "bf16":
        G.to(memory_format=torch.channels_last)
        D.to(memory_format=torch.channels_last)
    device = torch.device("cpu")
    recipe = Recipe(data, losses.build("hinge"), nda.build(transform) if transform else None, None,
                    lam=0.25 if transform else 1.0, mode=mode, positive_prob=0.5, batch_size=64, num_d_steps=1,
                    num_classes=0, gp_weight=0.0, r1_weight=0.0, clip_value=0.0, precision=precision, device=device)
    state = TrainState(G, D, None, torch.optim.Adam(G.parameters(), 2e-4, betas=(0.0, 0.999)),
                       torch.optim.Adam(D.parameters(), 2e-4, betas=(0.0, 0.999)), None,
                       BatchStream(data, 64, 0, device), torch.Generator().manual_seed(1), torch.Generator().manual_seed(2),
                       torch.Generator().manual_seed(3))
    return recipe, state


def negaug_runner(width, channels, d_norm, transform=None, mode="weighted", precision="fp32", model="dcgan"):
    recipe, state = make_run(width, channels, transform, mode, precision, d_norm, model)
    stats = Stats()

    def step(i):
        real, labels = state.batches.next()
        discriminator_step(recipe, state, real, labels, i, stats)
        generator_step(recipe, state, i, stats)

    return step


def minimal_runner(width, channels, d_norm):
    """The loop a user writes by hand: same models, same hinge loss, no NDA."""
    torch.manual_seed(0)
    images = torch.rand(2048, channels, 32, 32) * 2 - 1
    G, D = models.build("dcgan", image_size=32, channels=channels, width=width, spectral_norm=SPECTRAL_NORM[d_norm])
    opt_g = torch.optim.Adam(G.parameters(), 2e-4, betas=(0.0, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), 2e-4, betas=(0.0, 0.999))
    gen = torch.Generator().manual_seed(0)

    def step(i):
        real = images[torch.randint(2048, (64,), generator=gen)]
        fake = G(torch.randn(64, G.latent_dim, generator=gen)).detach()
        loss_d = torch.relu(1 - D(real)).mean() + torch.relu(1 + D(fake)).mean()
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        loss_g = -D(G(torch.randn(64, G.latent_dim, generator=gen))).mean()
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()

    return step


def pix2pix_runner(width: int, transform: str):
    """One `negaug train pix2pix-scenes` step at U-Net/PatchGAN width `width` (128 training pairs)."""
    from negaug.experiment.translate import prepare_translation, translation_step
    from negaug.experiment.translate_config import load_translation_config

    config = load_translation_config("pix2pix-scenes", [f"model.width={width}", f"nda.transform={transform}",
                                                        "data.options={num_samples: 128}", "train.device=cpu"])
    recipe, state = prepare_translation(config)
    return lambda i: translation_step(recipe, state, i + 1)


def measure(runners: dict, iters: int, rounds: int) -> dict[str, float]:
    for run in runners.values():  # warm-up
        for i in range(3):
            run(i)
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(rounds):
        for name, run in runners.items():
            start = time.perf_counter()
            for i in range(iters):
                run(i)
            times[name].append((time.perf_counter() - start) / iters)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=10, help="iterations per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--d-norm", choices=sorted(SPECTRAL_NORM), default="spectral",
                        help="D normalisation: spectral (the default preset) or batch")
    parser.add_argument("--biggan-widths", default="", help="comma-separated BigGAN widths to add rows for (e.g. 64,8)")
    parser.add_argument("--pix2pix-widths", default="", help="comma-separated Pix2Pix widths to add rows for (e.g. 16,4)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    w, ch, norm = args.width, args.channels, args.d_norm
    runners = {
        "minimal hand-written loop": minimal_runner(w, ch, norm),
        "negaug, no NDA": negaug_runner(w, ch, norm),
        "negaug, jigsaw NDA, mixture": negaug_runner(w, ch, norm, "jigsaw", "mixture"),
        "negaug, jigsaw NDA, weighted": negaug_runner(w, ch, norm, "jigsaw", "weighted"),
        "negaug, no NDA, bf16 + channels_last": negaug_runner(w, ch, norm, precision="bf16"),
    }
    for bw in (int(v) for v in args.biggan_widths.split(",") if v):
        runners[f"biggan width {bw}, no NDA"] = negaug_runner(bw, ch, norm, model="biggan")
        runners[f"biggan width {bw}, jigsaw NDA, weighted"] = negaug_runner(bw, ch, norm, "jigsaw", "weighted", model="biggan")
    for pw in (int(v) for v in args.pix2pix_widths.split(",") if v):
        runners[f"pix2pix width {pw}, 64 px, batch 16, no NDA"] = pix2pix_runner(pw, "none")
        runners[f"pix2pix width {pw}, 64 px, batch 16, jigsaw NDA"] = pix2pix_runner(pw, "jigsaw")
    ms = measure(runners, args.iters, args.rounds)
    base, plain = ms["minimal hand-written loop"], ms["negaug, no NDA"]
    print(f"DCGAN {ch}x32x32, width {w}, {norm} norm in D, batch 64, 1 D + 1 G step, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, median of {args.rounds} rounds x {args.iters} iterations")
    print("| configuration | ms / iteration | vs minimal loop | vs negaug no NDA | target |")
    print("|---|---|---|---|---|")
    targets = {"negaug, no NDA": "<= 1.05x minimal", "negaug, jigsaw NDA, mixture": "<= 1.05x no NDA",
               "negaug, jigsaw NDA, weighted": "<= 1.25x no NDA",
               "negaug, no NDA, bf16 + channels_last": ">= 1.3x faster than fp32"}
    for name, value in ms.items():
        print(f"| {name} | {value * 1e3:.1f} | {value / base:.3f}x | {value / plain:.3f}x | {targets.get(name, '')} |")
    print(f"bf16 speed-up over fp32: {plain / ms['negaug, no NDA, bf16 + channels_last']:.2f}x")


if __name__ == "__main__":
    main()
