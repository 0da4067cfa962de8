"""GAN objectives with negative data augmentation (the fake side is ``lam*G + (1-lam)*NDA``, eq. 3).

    loss = negaug.losses.build("hinge")
    d_loss, terms = loss.d_loss(D(x), D(G(z).detach()), D(x_neg), lam=0.25)
    g_loss = loss.g_loss(D(G(z)))

Registered: minimax, nonsaturating, hinge, lsgan, wgan, wgan-gp and the f-GAN family fgan-kl,
fgan-reverse-kl, fgan-pearson, fgan-hellinger, fgan-js, fgan-gan, rpgan (relativistic pairing, R3GAN)
and mmd (GMMN: no discriminator, ``MMDLoss.generator_loss``). Penalties (gradient penalty, R1, R2)
and feature matching are separate functions.
"""
from __future__ import annotations

from typing import Any

from negaug.losses import fgan, mmd, relativistic, standard  # noqa: F401  (registers the losses)
from negaug.losses.base import LOSSES, GANLoss, check_lam
from negaug.losses.feature_matching import feature_matching_loss
from negaug.losses.fgan import FGANLoss
from negaug.losses.mmd import MMDLoss, mmd2
from negaug.losses.penalties import (
    clip_weights,
    gradient_penalty,
    r1_penalty,
    r2_penalty,
)
from negaug.losses.relativistic import RelativisticPairing


def build(name: str, **options: Any) -> GANLoss:
    """The loss registered as ``name`` built with ``options``; unknown names/options raise ValueError."""
    return LOSSES.build(name, **options)


def names() -> list[str]:
    return LOSSES.names()


__all__ = [
    "GANLoss", "FGANLoss", "build", "names", "check_lam",
    "gradient_penalty", "r1_penalty", "r2_penalty", "clip_weights",
    "feature_matching_loss", "mmd2", "MMDLoss", "RelativisticPairing",
]
