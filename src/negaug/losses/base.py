"""The GANLoss contract and the loss registry.

A GAN objective is three per-sample functions of raw discriminator outputs ``v`` (logits, shape (B,)):
the discriminator's loss on a real sample, on a "fake" sample, and the generator's loss. NDA enters in
exactly one place, ``GANLoss.d_loss``: the fake side is the mixture ``lam * G + (1 - lam) * P_nda``
of eq. 3 of the paper, whatever the objective.
"""
from __future__ import annotations

import torch
from torch import Tensor

from negaug.registry import Registry, check_float

LOSSES = Registry("loss")


def _as_float(v: Tensor) -> Tensor:
    # Under bf16/fp16 autocast D returns half-precision logits; exp/softplus/squares of them lose
    # most of their digits, so the objective is always evaluated in at least float32.
    return v.float() if v.dtype in (torch.float16, torch.bfloat16) else v


def check_lam(lam: float) -> float:
    """``lam`` (the weight of generated samples on the fake side, eq. 3) must lie in (0, 1]."""
    if isinstance(lam, float) and 0.0 < lam <= 1.0:  # the per-step call: no more work than this
        return lam
    try:
        return check_float("lam", lam, 0.0, 1.0, open_low=True)
    except ValueError as err:
        raise ValueError(f"{err}; lam is the share of generated samples on the fake side "
                         "(1 = no NDA, the paper uses 0.25 or 0.5)") from None


class GANLoss:
    """A GAN objective as pure functions of raw discriminator outputs.

    Subclasses define the per-sample terms ``real_term``, ``fake_term`` (the discriminator's loss on
    a real / a fake sample) and ``generator_term`` (the generator's loss on a generated sample).
    Every objective here has the form ``E_P[real_term] + E_Q[fake_term]``, linear in the fake
    distribution Q, which is what makes the two NDA realisations below the same objective.

    Attributes the training loop reads (they never change the loss values themselves):
      ``clip_value``: WGAN weight-clipping bound, apply ``clip_weights(D, clip_value)`` after each
        D step (None: no clipping).
      ``gp_weight``: weight of ``gradient_penalty`` added to the D loss (0: no penalty).
      ``pairs_with_real``: the generator loss needs D's scores of a real batch too (relativistic
        losses: ``g_loss(d_fake, d_real)``).
      ``uses_discriminator``: False for objectives without a D (``mmd``): the loop skips the D step.
    """

    name: str = "base"
    clip_value: float | None = None
    gp_weight: float = 0.0
    pairs_with_real: bool = False
    uses_discriminator: bool = True

    def real_term(self, d_real: Tensor) -> Tensor:
        raise NotImplementedError

    def fake_term(self, d_fake: Tensor) -> Tensor:
        raise NotImplementedError

    def generator_term(self, d_fake: Tensor) -> Tensor:
        raise NotImplementedError

    def d_loss(
        self, d_real: Tensor, d_fake: Tensor, d_neg: Tensor | None = None, lam: float | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Discriminator loss (to minimise) on raw outputs; the fake side is ``lam*G + (1-lam)*NDA``.

        Args:
            d_real: D's raw outputs on real images, (B_real,), any real value.
            d_fake: D's raw outputs on generated images, (B_fake,).
            d_neg: D's raw outputs on NDA negatives, (B_neg,), or None (no NDA).
            lam: weight of generated samples on the fake side, in (0, 1]; required with ``d_neg``
                (a forgotten ``lam`` would silently give the negatives weight 0), ignored without.

        Returns:
            ``(loss, terms)``: the scalar loss ``d_real + lam * d_fake + (1 - lam) * d_neg`` and the
            unweighted batch means of each part, detached, under the keys "d_real", "d_fake" and
            (when ``d_neg`` is given) "d_neg", so that a non-finite loss can be traced to a term.

        "Weighted" NDA (this function, as the authors' code): the generated and negative batches are
        separate and their means are weighted by ``lam`` and ``1 - lam``. With ``d_neg=None`` or
        ``lam == 1`` the loss is exactly (bit for bit) the plain loss ``d_real + d_fake``.

        "Mixture" NDA: the loop builds one fake batch of B images in which each image is generated
        with probability ``lam`` and a negative otherwise (or exactly ``round(lam * B)`` are
        generated), and calls ``d_loss(d_real, d_fake_mixed)``. Because the fake side is the mean of
        a per-sample term, its expectation is ``lam * E_G[fake_term] + (1 - lam) * E_NDA[fake_term]``,
        the same objective (eq. 3); with exactly ``lam * B`` generated images it is equal batch for
        batch. The two differ only in variance and in what D's batch statistics see.
        """
        if d_neg is not None and lam is None:
            raise ValueError("d_loss(d_real, d_fake, d_neg) needs lam=: the weight of generated samples on the "
                             "fake side (the paper uses 0.25 or 0.5; 1 gives the negatives weight 0)")
        lam = 1.0 if lam is None else check_lam(lam)
        real = self.real_term(_as_float(d_real)).mean()
        fake = self.fake_term(_as_float(d_fake)).mean()
        terms = {"d_real": real.detach(), "d_fake": fake.detach()}
        if d_neg is None:
            return real + fake, terms
        neg = self.fake_term(_as_float(d_neg)).mean()
        terms["d_neg"] = neg.detach()  # logged even when lam == 1: how D rates negatives it never trains on
        if lam == 1.0:
            return real + fake, terms
        return real + (lam * fake + (1.0 - lam) * neg), terms

    def g_loss(self, d_fake: Tensor, d_real: Tensor | None = None) -> Tensor:
        """Generator loss (to minimise) on D's raw outputs for generated images, (B,) -> scalar.
        ``d_real`` (D's outputs on a real batch) is ignored here; relativistic losses use it.

        Negatives never enter the generator step: NDA changes only what D learns.
        """
        return self.generator_term(_as_float(d_fake)).mean()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"
