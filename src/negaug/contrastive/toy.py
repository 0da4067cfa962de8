"""A 2-D contrastive problem where Theorem 2's optimum is known.

Data: points on the unit circle, x = (cos a, sin a), a uniform. Positive views: x rotated by a
small angle and its radius scaled by a factor in [1 - radial, 1 + radial] (radius 0.9 to 1.1 by
default). NDA: the same point at radius `nda_radius` (1.6), outside the views' annulus: the
supports of the data (and of its views) and of the NDA are disjoint, as Theorem 2 assumes.

Trained with in-batch InfoNCE, an encoder learns the angle; nothing in the plain objective asks
it to tell radius 1 from radius 1.6, and its invariance to the radial jitter carries over, so x
and NDA(x) end up close. With the NDA views as extra negatives (eq. 8), the optimum maps them to
disjoint regions (Theorem 2): `analysis.cosine_distance(encoder, x, ring_nda(x))` grows.

    encoder = train_toy(with_nda=True, steps=300, seed=0)
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from negaug.contrastive.objectives import info_nce_in_batch
from negaug.registry import check_bool, check_float, check_int


def ring_points(n: int, generator: torch.Generator) -> Tensor:
    """(n, 2) points on the unit circle at uniform angles."""
    angle = torch.rand(n, generator=generator) * (2 * torch.pi)
    return torch.stack([angle.cos(), angle.sin()], 1)


def ring_views(x: Tensor, generator: torch.Generator, angle_std: float = 0.15, radial: float = 0.1) -> Tensor:
    """(n, 2) positive views of x (n, 2): rotated by N(0, angle_std^2) radians, radius scaled by
    U(1 - radial, 1 + radial)."""
    turn = torch.randn(x.shape[0], generator=generator) * angle_std
    scale = 1 + radial * (2 * torch.rand(x.shape[0], generator=generator) - 1)
    cos, sin = turn.cos(), turn.sin()
    rotated = torch.stack([cos * x[:, 0] - sin * x[:, 1], sin * x[:, 0] + cos * x[:, 1]], 1)
    return rotated * scale[:, None]


def ring_nda(x: Tensor, nda_radius: float = 1.6) -> Tensor:
    """(n, 2): x (on the unit circle, or a view of it) moved radially to radius `nda_radius`
    times its own radius: outside the data's support, at the same angle."""
    return x * nda_radius


def toy_encoder(width: int = 64, out_dim: int = 16) -> nn.Sequential:
    """(n, 2) -> (n, out_dim): a ReLU MLP with two hidden layers, no normalisation layer."""
    width, out_dim = check_int("width", width, 1), check_int("out_dim", out_dim, 1)
    return nn.Sequential(nn.Linear(2, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, out_dim))


def train_toy(with_nda: bool, steps: int = 300, batch_size: int = 128, seed: int = 0, lr: float = 3e-3,
              temperature: float = 0.2, nda_radius: float = 1.6) -> nn.Sequential:
    """A toy encoder trained with in-batch InfoNCE on ring views, with one NDA negative per query
    (`ring_nda` of the query's view, encoded by the same encoder) when `with_nda`. Deterministic
    given `seed` (the weights and every draw)."""
    check_bool("with_nda", with_nda)
    steps, batch_size = check_int("steps", steps, 0), check_int("batch_size", batch_size, 2)
    lr = check_float("lr", lr, 0.0, open_low=True)
    with torch.random.fork_rng(devices=[]):  # seeded weights; the global RNG is left as it was
        torch.manual_seed(seed)
        encoder = toy_encoder()
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(encoder.parameters(), lr=lr)
    for _ in range(steps):
        x = ring_points(batch_size, generator)
        view_q, view_k = ring_views(x, generator), ring_views(x, generator)
        nda = encoder(ring_nda(view_q, nda_radius)).unsqueeze(1) if with_nda else None  # (B, 1, F)
        loss, _ = info_nce_in_batch(encoder(view_q), encoder(view_k), nda, temperature=temperature)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return encoder
