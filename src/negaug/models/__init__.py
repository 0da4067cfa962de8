"""Generators and discriminators honouring one contract (docs/DESIGN.md), and the EMA of G.

    G, D = negaug.models.build("dcgan", image_size=32, channels=3, num_classes=0, width=64)
    x = G(G.sample_latent(64, generator=g))      # (64, 3, 32, 32) in [-1, 1]
    scores = D(x)                                # (64,) raw scores

Registered: mlp (2-D points), dcgan, sngan_resnet, biggan.
"""
from __future__ import annotations

from typing import Any

from torch import nn

from negaug.models import biggan, dcgan, mlp, sngan_resnet  # noqa: F401  (registers the models)
from negaug.models.base import MODELS, Discriminator, Generator, is_batch_dependent
from negaug.models.biggan import orthogonal_penalty
from negaug.models.ema import EMA, recompute_batch_norm_stats


def build(
    name: str, image_size: int | None, channels: int | None, num_classes: int = 0, **options: Any
) -> tuple[Generator, Discriminator]:
    """``(G, D)`` of the model registered as ``name`` (both in train mode, on the CPU).

    ``image_size``/``channels`` describe the images (None for the ``mlp`` on points, which takes
    ``data_dim``); ``num_classes > 0`` builds conditional models. Unknown names/options raise ValueError.
    """
    return MODELS.build(name, image_size=image_size, channels=channels, num_classes=num_classes, **options)


def names() -> list[str]:
    return MODELS.names()


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


__all__ = ["EMA", "recompute_batch_norm_stats", "Generator", "Discriminator", "is_batch_dependent", "build", "names", "count_parameters",
           "orthogonal_penalty"]
