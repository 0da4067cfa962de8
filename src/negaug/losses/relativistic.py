"""The relativistic pairing GAN (RpGAN; Jolicoeur-Martineau 2019) as R3GAN uses it (Huang et al.
2024, "The GAN is dead; long live the GAN!"): each real sample is paired with a fake one and D
scores the pair's difference.

    D: E softplus(D(fake) - D(real))       G: E softplus(D(real) - D(fake))

R3GAN adds zero-centred gradient penalties on both sides, R1 (real) and R2 (fake): in negaug
they are `loss.r1_penalty` and `loss.r2_penalty` (`negaug.losses.r1_penalty` / `r2_penalty`).

With NDA (eq. 3: the fake side is lam * G + (1 - lam) * NDA) the negatives enter the pairs: the
i-th real sample is paired with the i-th generated sample (weight lam) and with the i-th negative
(weight 1 - lam). In weighted mode the i-th negative is made from the i-th real image, so D learns
to rank each image above its own corruption. Pairs are element-wise: the batches have one size.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from negaug.losses.base import LOSSES, GANLoss, _as_float, check_lam


def _pairs(name: str, d_real: Tensor, d_other: Tensor) -> None:
    if d_real.shape != d_other.shape:
        raise ValueError(f"rpgan pairs each real sample with one {name} sample: got {tuple(d_real.shape)} "
                         f"real and {tuple(d_other.shape)} {name} scores")


@LOSSES.register("rpgan")
class RelativisticPairing(GANLoss):
    """RpGAN: ``d_loss = lam E sp(D(g) - D(x)) + (1 - lam) E sp(D(n) - D(x))``, ``g_loss = E sp(D(x) - D(g))``
    (sp = softplus), element-wise pairs."""

    name = "rpgan"
    pairs_with_real = True  # the G step scores a real batch too

    def d_loss(self, d_real: Tensor, d_fake: Tensor, d_neg: Tensor | None = None,
               lam: float | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """Scalar loss and the detached pair means "d_fake" (real vs generated) and "d_neg" (real
        vs negative); shapes (B,) each, pairs by position."""
        if d_neg is not None and lam is None:
            raise ValueError("rpgan d_loss(d_real, d_fake, d_neg) needs lam=: the weight of generated pairs")
        lam = 1.0 if lam is None else check_lam(lam)
        d_real, d_fake = _as_float(d_real), _as_float(d_fake)
        _pairs("generated", d_real, d_fake)
        fake = F.softplus(d_fake - d_real).mean()
        terms = {"d_fake": fake.detach()}
        if d_neg is None:
            return fake, terms
        d_neg = _as_float(d_neg)
        _pairs("negative", d_real, d_neg)
        neg = F.softplus(d_neg - d_real).mean()
        terms["d_neg"] = neg.detach()
        return (fake if lam == 1.0 else lam * fake + (1.0 - lam) * neg), terms

    def g_loss(self, d_fake: Tensor, d_real: Tensor | None = None) -> Tensor:
        """``E softplus(D(x) - D(G(z)))`` over pairs; ``d_real`` (B,) is required."""
        if d_real is None:
            raise ValueError("rpgan's generator loss needs D's scores of a real batch: g_loss(d_fake, d_real)")
        d_fake, d_real = _as_float(d_fake), _as_float(d_real)
        _pairs("generated", d_real, d_fake)
        return F.softplus(d_real - d_fake).mean()
