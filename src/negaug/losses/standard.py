"""The classic GAN objectives on raw discriminator logits ``v`` (per-sample terms).

With ``D(x) = sigmoid(v)``: ``-log D = softplus(-v)`` and ``-log(1 - D) = softplus(v)``, the stable
forms used throughout (no sigmoid followed by log, which underflows for |v| > ~17 in float32).
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from negaug.losses.base import LOSSES, GANLoss
from negaug.registry import check_float


class _LogisticDiscriminator(GANLoss):
    """D maximises ``E_P log D + E_Q log(1 - D)`` (eq. 2); optimal ``D* = p / (p + q)``."""

    def real_term(self, d_real: Tensor) -> Tensor:
        return F.softplus(-d_real)  # -log D(x)

    def fake_term(self, d_fake: Tensor) -> Tensor:
        return F.softplus(d_fake)  # -log(1 - D(x))


@LOSSES.register("minimax")
class Minimax(_LogisticDiscriminator):
    """Goodfellow et al. 2014, saturating: G minimises ``E log(1 - D(G(z)))``.

    Its gradient vanishes when D confidently rejects the samples (the reason for "nonsaturating").
    """

    name = "minimax"

    def generator_term(self, d_fake: Tensor) -> Tensor:
        return -F.softplus(d_fake)  # log(1 - D)


@LOSSES.register("nonsaturating")
class NonSaturating(_LogisticDiscriminator):
    """Goodfellow et al. 2014, non-saturating: G maximises ``E log D(G(z))``; same D as minimax."""

    name = "nonsaturating"

    def generator_term(self, d_fake: Tensor) -> Tensor:
        return F.softplus(-d_fake)  # -log D


@LOSSES.register("hinge")
class Hinge(GANLoss):
    """Hinge loss (Lim & Ye 2017; Miyato et al. 2018; BigGAN), the paper's loss.

    D: ``E_P relu(1 - v) + E_Q relu(1 + v)``; G: ``-E v``.
    """

    name = "hinge"

    def real_term(self, d_real: Tensor) -> Tensor:
        return F.relu(1.0 - d_real)

    def fake_term(self, d_fake: Tensor) -> Tensor:
        return F.relu(1.0 + d_fake)

    def generator_term(self, d_fake: Tensor) -> Tensor:
        return -d_fake


@LOSSES.register("lsgan")
class LeastSquares(GANLoss):
    """Least squares GAN (Mao et al. 2017) with targets a=0 (fake), b=1 (real), c=1 (G).

    D: ``0.5 E_P (v - 1)^2 + 0.5 E_Q v^2`` on the raw (linear) output, optimum ``v* = p / (p + q)``;
    G: ``0.5 E (v - 1)^2``.
    """

    name = "lsgan"

    def real_term(self, d_real: Tensor) -> Tensor:
        return 0.5 * (d_real - 1.0).square()

    def fake_term(self, d_fake: Tensor) -> Tensor:
        return 0.5 * d_fake.square()

    def generator_term(self, d_fake: Tensor) -> Tensor:
        return 0.5 * (d_fake - 1.0).square()


class _Wasserstein(GANLoss):
    """Critic maximises ``E_P v - E_Q v`` (Kantorovich-Rubinstein dual); G maximises ``E v``.

    The dual needs a 1-Lipschitz critic: weight clipping (``wgan``) or a gradient penalty
    (``wgan-gp``), both applied by the training loop from the attributes below.
    """

    def real_term(self, d_real: Tensor) -> Tensor:
        return -d_real

    def fake_term(self, d_fake: Tensor) -> Tensor:
        return d_fake

    def generator_term(self, d_fake: Tensor) -> Tensor:
        return -d_fake


@LOSSES.register("wgan")
class WGAN(_Wasserstein):
    """WGAN (Arjovsky et al. 2017): the loop clips every D parameter to ``[-clip_value, clip_value]``
    after each D step (``negaug.losses.clip_weights``)."""

    name = "wgan"

    def __init__(self, clip_value: float = 0.01):
        self.clip_value = check_float("wgan clip_value", clip_value, low=0.0, open_low=True)  # Arjovsky et al.: 0.01


@LOSSES.register("wgan-gp")
class WGANGP(_Wasserstein):
    """WGAN-GP (Gulrajani et al. 2017): the loop adds ``gp_weight * gradient_penalty(D, real, fake)``
    to the D loss."""

    name = "wgan-gp"

    def __init__(self, gp_weight: float = 10.0):
        self.gp_weight = check_float("wgan-gp gp_weight", gp_weight, low=0.0)  # Gulrajani et al.: 10
