"""Augmentations of everything the discriminator sees, for training GANs with little data.

    augment = DiffAugment("color,translation,cutout")   # Zhao et al. 2020
    x_seen = augment(x, generator=rng)                   # real, generated and NDA images alike

    transform = ConsistencyTransform()                   # CR-GAN's T: flip + shift (Zhang et al. 2020)
    penalty = consistency_penalty(D(x), D(transform(x, generator=rng)))

Unlike NDA these transforms make *positives*: D is asked to score an image and its augmented
version alike (CR) or only ever sees augmented images (DiffAugment). Every op is batched, draws its
per-sample parameters from an explicit `torch.Generator` (`sample`) and applies them
differentiably (`apply`), so a draw can be replayed.
"""
from negaug.augment.consistency import ConsistencyTransform, consistency_penalty
from negaug.augment.diffaugment import POLICY_OPS, DiffAugment, translate

__all__ = ["POLICY_OPS", "ConsistencyTransform", "DiffAugment", "consistency_penalty", "translate"]
