"""NDA in your own GAN training loop: your generator, your discriminator, your loop; negaug adds
the negatives (a Jigsaw transform) and a loss with the NDA term (eq. 3 of the paper).

    python examples/nda_in_your_gan_loop.py --out scratch/own_loop            # 1500 steps
    python examples/nda_in_your_gan_loop.py --out scratch/own_loop --steps 5  # a smoke run

Writes OUT/samples.png (64 samples) and prints the offline-classifier FID of 1000 samples
against MNIST-5k's test split (the classifier trains once, in seconds, and is cached).
With the defaults (seed 0) the samples are digit-like. No FID is quoted here: none was measured
with the current feature space (since negaug 0.4.0 the classifier trains on the 3,600-image
training split, on one thread); run the script for yours.
"""
import argparse
from pathlib import Path

import torch
from torch import nn

import negaug


def my_generator(latent_dim: int = 64, width: int = 32) -> nn.Module:
    """z (B, latent_dim) -> images (B, 1, 32, 32) in [-1, 1]."""
    return nn.Sequential(
        nn.Linear(latent_dim, 4 * width * 4 * 4), nn.Unflatten(1, (4 * width, 4, 4)), nn.BatchNorm2d(4 * width), nn.ReLU(),
        nn.ConvTranspose2d(4 * width, 2 * width, 4, 2, 1), nn.BatchNorm2d(2 * width), nn.ReLU(),   # 8 x 8
        nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.BatchNorm2d(width), nn.ReLU(),           # 16 x 16
        nn.ConvTranspose2d(width, 1, 4, 2, 1), nn.Tanh(),                                          # 32 x 32
    )


def my_discriminator(width: int = 32) -> nn.Module:
    """images (B, 1, 32, 32) -> scores (B,). Spectral norm, no batch norm: a score depends only
    on its own image, so real, generated and negative images may share one call."""
    sn = nn.utils.parametrizations.spectral_norm
    return nn.Sequential(
        sn(nn.Conv2d(1, width, 4, 2, 1)), nn.LeakyReLU(0.2),                    # 16 x 16
        sn(nn.Conv2d(width, 2 * width, 4, 2, 1)), nn.LeakyReLU(0.2),            # 8 x 8
        sn(nn.Conv2d(2 * width, 4 * width, 4, 2, 1)), nn.LeakyReLU(0.2),        # 4 x 4
        nn.Flatten(), sn(nn.Linear(4 * width * 16, 1)), nn.Flatten(0),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for samples.png")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--eval-samples", type=int, default=1000, help="0 skips the evaluation")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    rng = torch.Generator().manual_seed(args.seed)

    train_set = negaug.data.build("mnist5k", split="train")          # (1, 32, 32) digits in [-1, 1]
    G, D = my_generator(), my_discriminator()
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.0, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=4e-4, betas=(0.0, 0.999))

    jigsaw = negaug.nda.build("jigsaw", k=2)      # NDA: 2x2 tiles shuffled, never the identity
    hinge = negaug.losses.build("hinge")         # any negaug loss takes the negatives' scores
    lam = 0.25                                   # weight of G's samples on the fake side (paper: 0.25)

    for step in range(1, args.steps + 1):
        real = train_set.get_batch(torch.randint(len(train_set), (64,), generator=rng))[0]
        z = torch.randn(64, 64, generator=rng)
        # discriminator step: real vs the mixture lam * G + (1 - lam) * NDA(real)
        negatives = jigsaw(real, generator=rng)
        d_loss, terms = hinge.d_loss(D(real), D(G(z).detach()), D(negatives), lam=lam)
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
        # generator step: unchanged by NDA
        g_loss = hinge.g_loss(D(G(torch.randn(64, 64, generator=rng))))
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
        if step % 250 == 0 or step == args.steps:
            print(f"step {step}: d_loss {d_loss.item():.3f} g_loss {g_loss.item():.3f}")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    G.eval()
    with torch.no_grad():
        samples = G(torch.randn(64, 64, generator=rng))
        negaug.viz.save_grid(samples, out / "samples.png", scale=negaug.viz.readable_scale(samples.shape[-1]))
    print(f"samples: {out / 'samples.png'}")
    if args.eval_samples:
        test_set = negaug.data.build("mnist5k", split="test")
        # your own generator: a callable of standard normal latents of size latent_dim
        # progress=True: bars on stderr while the feature classifier trains (once, then cached) and features are computed
        results = negaug.metrics.evaluate_generator(G, test_set, ["fid"], num_samples=args.eval_samples,
                                                    latent_dim=64, progress=True)
        for key, result in results.items():
            print(f"{key}: {result['value']:.2f} ({result['protocol']['num_generated']} samples vs "
                  f"{result['protocol']['num_real']} test images)")


if __name__ == "__main__":
    main()
