"""Evaluate your own generator with negaug's metrics: any callable that maps standard normal
latents (B, latent_dim) to images (B, C, H, W) in [-1, 1].

    python examples/evaluate_your_generator.py                     # MNIST-5k, 1000 vs 1000 images
    python examples/evaluate_your_generator.py --dataset digits    # scikit-learn's 8x8 digits, faster

Three "generators" are compared on the same feature space: real training images drawn at random
(the best a generator can do), the same images with their 2x2 tiles shuffled (Jigsaw negatives:
what NDA teaches D to reject) and an untrained network. Without Inception weights the features
are a small classifier trained on the dataset's *training* split (once, then cached), and the
reference is the *test* split; each result records both in its protocol.
"""
import argparse

import torch
from torch import nn

import negaug


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="mnist5k", choices=["mnist5k", "digits"])
    args = parser.parse_args()
    train_set = negaug.data.build(args.dataset, split="train")
    test_set = negaug.data.build(args.dataset, split="test")
    pool = train_set.get_batch(torch.arange(len(train_set)))[0]
    jigsaw = negaug.nda.build("jigsaw", k=2)
    channels, size = pool.shape[1], pool.shape[-1]

    def real_images(z: torch.Tensor) -> torch.Tensor:  # a "sampler function": z only sets the batch size
        return pool[torch.randint(len(pool), (z.shape[0],), generator=draws)]

    def jigsaw_images(z: torch.Tensor) -> torch.Tensor:
        return jigsaw(real_images(z), generator=draws)

    torch.manual_seed(0)
    untrained = nn.Sequential(nn.Linear(16, channels * size * size), nn.Tanh(), nn.Unflatten(1, (channels, size, size)))

    for name, generator in (("real training images", real_images), ("jigsaw negatives", jigsaw_images),
                            ("untrained network", untrained)):
        draws = torch.Generator().manual_seed(1)
        # num_samples defaults to the size of the reference (equal sizes); latent_dim: your z size
        # progress=True: bars on stderr (the first call trains the feature classifier, about a minute, then cached)
        results = negaug.metrics.evaluate_generator(generator, test_set, ["fid", "kid", "pr"], latent_dim=16,
                                                    progress=True)
        fid, kid, pr = (negaug.metrics.find_metric(results, m) for m in ("fid", "kid", "pr"))
        print(f"{name:>22}: FID {fid['value']:8.2f}  KID {kid['value']:8.4f}  "
              f"precision {pr['precision']:.3f}  recall {pr['recall']:.3f}")
    features = fid["protocol"]["features"]
    print(f"feature space: {next(iter(results))[4:-1]} (trained on {features['trained_on']}, "
          f"{features['task']} accuracy {features['val_accuracy']:.3f}); reference {fid['protocol']['reference']}, "
          f"{fid['protocol']['num_generated']} vs {fid['protocol']['num_real']} images")


if __name__ == "__main__":
    main()
