"""f-GAN objectives (Nowozin et al. 2016): variational f-divergence minimisation.

``D_f(P || Q) = int q f(p / q) >= sup_T E_P[T] - E_Q[f*(T)]`` with P the data and Q the fake side
(the NDA mixture ``lam * G + (1 - lam) * P_nda`` with NDA, eq. 3 and Theorem 1 of the paper). The
critic is ``T = g_f(v)``, ``v`` the raw D output and ``g_f`` the output activation of Nowozin et al.
Table 2, which maps the reals into the domain of ``f*``. The supremum is reached at
``T* = f'(p / q)`` (eq. 5-6), so ``g_f(v*) = f'(p_data / (lam p_G + (1 - lam) p_nda))``.

| name             | f(u)                              | g_f(v)              | f*(t)             | f*(g_f(v)) (stable) |
|------------------|-----------------------------------|---------------------|-------------------|---------------------|
| fgan-kl          | u log u                           | v                   | exp(t - 1)        | exp(v - 1)          |
| fgan-reverse-kl  | -log u                            | -exp(-v)            | -1 - log(-t)      | v - 1               |
| fgan-pearson     | (u - 1)^2                         | v                   | t^2 / 4 + t       | v^2 / 4 + v         |
| fgan-hellinger   | (sqrt(u) - 1)^2                   | 1 - exp(-v)         | t / (1 - t)       | expm1(v)            |
| fgan-js          | -(u+1) log((1+u)/2) + u log u     | log 2 - softplus(-v)| -log(2 - exp(t))  | softplus(v) - log 2 |
| fgan-gan         | u log u - (u+1) log(u+1)          | -softplus(-v)       | -log(1 - exp(t))  | softplus(v)         |

Discriminator loss (to minimise): ``-E_P[g_f(v)] + E_Q[f*(g_f(v))]``.
Generator loss, option ``generator_loss``:
  "nonsaturating" (default, Nowozin et al. Section 3.2 "practical considerations"): maximise
    ``E_Q[g_f(v)]``, i.e. minimise ``-E_G[g_f(v)]``; a generalisation of Goodfellow's non-saturating
    trick that keeps the same stationary points and gives strong gradients early in training.
  "minimax": minimise the saddle objective itself, ``-E_G[f*(g_f(v))]``.
For fgan-gan these are exactly the nonsaturating and minimax losses of the standard GAN.
All terms stay finite with finite gradients in float32 for |v| <= 50 (exp(50) ~ 5e21).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from negaug.losses.base import LOSSES, GANLoss
from negaug.registry import check_choice

LOG2 = math.log(2.0)
GENERATOR_LOSSES = ("nonsaturating", "minimax")


class FGANLoss(GANLoss):
    """f-GAN loss; subclasses give ``activation`` (g_f), ``conjugate`` (f*, the plain formula, for
    reference) and ``conjugate_of_activation`` (f* o g_f in a numerically stable form)."""

    def __init__(self, generator_loss: str = "nonsaturating"):
        self.generator_loss = check_choice(f"{self.name} generator_loss", generator_loss, GENERATOR_LOSSES)

    def activation(self, v: Tensor) -> Tensor:
        raise NotImplementedError

    def conjugate(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def conjugate_of_activation(self, v: Tensor) -> Tensor:
        raise NotImplementedError

    def real_term(self, d_real: Tensor) -> Tensor:
        return -self.activation(d_real)

    def fake_term(self, d_fake: Tensor) -> Tensor:
        return self.conjugate_of_activation(d_fake)

    def generator_term(self, d_fake: Tensor) -> Tensor:
        if self.generator_loss == "nonsaturating":
            return -self.activation(d_fake)
        return -self.conjugate_of_activation(d_fake)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, generator_loss={self.generator_loss!r})"


@LOSSES.register("fgan-kl")
class KL(FGANLoss):
    name = "fgan-kl"

    def activation(self, v: Tensor) -> Tensor:
        return v

    def conjugate(self, t: Tensor) -> Tensor:
        return torch.exp(t - 1.0)

    def conjugate_of_activation(self, v: Tensor) -> Tensor:
        return torch.exp(v - 1.0)


@LOSSES.register("fgan-reverse-kl")
class ReverseKL(FGANLoss):
    name = "fgan-reverse-kl"

    def activation(self, v: Tensor) -> Tensor:
        return -torch.exp(-v)

    def conjugate(self, t: Tensor) -> Tensor:
        return -1.0 - torch.log(-t)

    def conjugate_of_activation(self, v: Tensor) -> Tensor:
        return v - 1.0  # -1 - log(exp(-v)), without the exp that overflows for v << 0


@LOSSES.register("fgan-pearson")
class Pearson(FGANLoss):
    name = "fgan-pearson"

    def activation(self, v: Tensor) -> Tensor:
        return v

    def conjugate(self, t: Tensor) -> Tensor:
        return 0.25 * t.square() + t

    def conjugate_of_activation(self, v: Tensor) -> Tensor:
        return 0.25 * v.square() + v


@LOSSES.register("fgan-hellinger")
class SquaredHellinger(FGANLoss):
    name = "fgan-hellinger"

    def activation(self, v: Tensor) -> Tensor:
        return -torch.expm1(-v)  # 1 - exp(-v), exact near v = 0

    def conjugate(self, t: Tensor) -> Tensor:
        return t / (1.0 - t)

    def conjugate_of_activation(self, v: Tensor) -> Tensor:
        return torch.expm1(v)  # (1 - e^-v) / e^-v, no 0/0 for v >> 0


@LOSSES.register("fgan-js")
class JensenShannon(FGANLoss):
    name = "fgan-js"

    def activation(self, v: Tensor) -> Tensor:
        return LOG2 - F.softplus(-v)

    def conjugate(self, t: Tensor) -> Tensor:
        return -torch.log(2.0 - torch.exp(t))

    def conjugate_of_activation(self, v: Tensor) -> Tensor:
        return F.softplus(v) - LOG2  # -log(2 - 2 sigmoid(v)) = -log 2 - log sigmoid(-v)


@LOSSES.register("fgan-gan")
class GANDivergence(FGANLoss):
    name = "fgan-gan"

    def activation(self, v: Tensor) -> Tensor:
        return -F.softplus(-v)  # log sigmoid(v)

    def conjugate(self, t: Tensor) -> Tensor:
        return -torch.log(1.0 - torch.exp(t))

    def conjugate_of_activation(self, v: Tensor) -> Tensor:
        return F.softplus(v)  # -log(1 - sigmoid(v))
