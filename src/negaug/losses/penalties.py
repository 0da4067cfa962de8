"""Regularisers of the discriminator, kept apart from the objectives (they need D, not its outputs)."""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from negaug.registry import check_float

Critic = Callable[..., Tensor]  # D(x, y=None) -> (B,)


def _input_gradient(D: Critic, x: Tensor, y: Tensor | None) -> Tensor:
    """d sum(D(x, y)) / dx with a graph, so the penalty itself can be backpropagated. (B, ...) -> (B, ...)."""
    x = x.detach().requires_grad_(True)
    scores = D(x, y)
    (grad,) = torch.autograd.grad(scores.sum(), x, create_graph=True)
    return grad


def gradient_penalty(
    D: Critic,
    real: Tensor,
    fake: Tensor,
    y: Tensor | None = None,
    weight: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """WGAN-GP penalty (Gulrajani et al. 2017): ``weight * E[(||grad_x D(x_hat, y)||_2 - 1)^2]``.

    ``x_hat = eps * real + (1 - eps) * fake`` with one ``eps ~ U[0, 1]`` per sample, drawn from
    ``generator``. Both batches are detached: the penalty trains D only.

    Args:
        D: the discriminator, ``D(x, y) -> (B,)``.
        real, fake: (B, ...) batches of the same shape (images (B, C, H, W) or points (B, d)).
        y: (B,) labels for a conditional D (the real labels; the pair shares them), or None.
        weight: a factor on the penalty. The default 1 returns the bare penalty, for a loop that
            multiplies by ``loss.gp_weight`` (10 for wgan-gp, as Gulrajani et al.) itself; pass
            one or the other, not both.
        generator: the torch.Generator for ``eps`` (on ``real``'s device).

    With NDA the fake side is whatever batch the loop passes: the generated batch (the penalty
    then acts between data and generator, as in WGAN-GP), the NDA batch, or a lam-mixture of the
    two; the critic is pushed to be 1-Lipschitz along the lines between ``real`` and that batch.
    Batch norm in D breaks the per-sample penalty (Gulrajani et al. use none or layer norm).

    Returns: a scalar tensor >= 0.
    """
    check_float("gradient_penalty weight", weight, low=0.0)
    if real.shape != fake.shape:
        raise ValueError(f"gradient_penalty needs real and fake of the same shape, got {tuple(real.shape)} and {tuple(fake.shape)}")
    eps_shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    eps = torch.rand(eps_shape, generator=generator, device=real.device, dtype=real.dtype)
    x_hat = torch.lerp(fake.detach(), real.detach(), eps)  # eps * real + (1 - eps) * fake
    grad = _input_gradient(D, x_hat, y).flatten(1)  # (B, prod(...))
    norm = torch.linalg.vector_norm(grad, dim=1)  # (B,)
    return weight * (norm - 1.0).square().mean()


def r1_penalty(D: Critic, real: Tensor, y: Tensor | None = None, weight: float = 1.0) -> Tensor:
    """R1 penalty (Mescheder et al. 2018): ``weight / 2 * E_real ||grad_x D(x, y)||_2^2``.

    ``weight`` is Mescheder et al.'s gamma (commonly 0.1 to 10); the default 1 returns the bare
    ``E ||grad||^2 / 2`` for a loop that multiplies by its own R1 weight.
    Args: ``real`` (B, ...) real data; ``y`` (B,) labels or None.
    Returns: a scalar tensor >= 0, to add to the D loss (commonly every k D steps, scaled by k).
    """
    check_float("r1_penalty weight", weight, low=0.0)
    grad = _input_gradient(D, real, y).flatten(1)
    return 0.5 * weight * grad.square().sum(dim=1).mean()


def r2_penalty(D: Critic, fake: Tensor, y: Tensor | None = None, weight: float = 1.0) -> Tensor:
    """R2 penalty (Mescheder et al. 2018; with R1 the regulariser of R3GAN, Huang et al. 2024):
    ``weight / 2 * E_fake ||grad_x D(x, y)||_2^2``, the zero-centred penalty of R1 on fake samples.

    ``fake`` (B, ...) is detached: the penalty trains D only. With NDA the loop passes the fake side
    of eq. 3 (the generated and negative batches, weighted lam and 1 - lam, or the mixed batch).
    Returns: a scalar tensor >= 0.
    """
    check_float("r2_penalty weight", weight, low=0.0)
    grad = _input_gradient(D, fake, y).flatten(1)
    return 0.5 * weight * grad.square().sum(dim=1).mean()


@torch.no_grad()
def clip_weights(D: nn.Module, c: float) -> None:
    """WGAN weight clipping (Arjovsky et al. 2017): clamp every parameter of D to [-c, c], in place.

    Every parameter is clipped, including normalisation gains and biases, as in the original WGAN.
    """
    c = check_float("clip value c", c, low=0.0, open_low=True)  # WGAN uses 0.01
    for p in D.parameters():
        p.clamp_(-c, c)
