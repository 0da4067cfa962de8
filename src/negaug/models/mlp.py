"""MLP GAN for low-dimensional vector data (the 2-D toy datasets: rings and grids of Gaussians).

Data are points (B, data_dim), not images: ``image_size`` and ``channels`` must be None (the toy
datasets report None for both), and the generator's output is unbounded (no tanh), because the
toys live on a scale of a few units.
  G: [z, onehot(y)] -> (Linear(width) ReLU) x depth -> Linear(data_dim)
  D: x -> (Linear(width) LeakyReLU(0.2)) x depth = features (B, width) -> head Linear(width, 1)
     (+ projection on class embeddings when conditional).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from negaug.models.base import (
    MAX_DEPTH,
    MAX_UNITS,
    MODELS,
    Discriminator,
    Generator,
    check_minibatch_options,
    check_network_options,
    require_labels,
)
from negaug.models.layers import ProjectionHead, finish
from negaug.registry import check_int, short


class MLPGenerator(Generator):
    def __init__(self, data_dim: int, num_classes: int, latent_dim: int, width: int, depth: int):
        super().__init__(latent_dim, num_classes)
        layers: list[nn.Module] = []
        c_in = latent_dim + num_classes  # the class enters as a one-hot appended to z
        for _ in range(depth):
            layers += [nn.Linear(c_in, width), nn.ReLU()]
            c_in = width
        layers.append(nn.Linear(c_in, data_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """z (B, latent_dim), y (B,) -> points (B, data_dim), unbounded."""
        y = require_labels(y, self.num_classes)
        if y is not None:
            z = torch.cat([z, F.one_hot(y, self.num_classes).to(z.dtype)], dim=1)
        return self.net(z)


class MLPDiscriminator(Discriminator):
    def __init__(self, data_dim: int, num_classes: int, width: int, depth: int,
                 minibatch: tuple[int, int] = (0, 5)):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = data_dim
        for _ in range(depth):
            layers += [nn.Linear(c_in, width), nn.LeakyReLU(0.2)]
            c_in = width
        self.body = nn.Sequential(*layers)
        self.batch_dependent = minibatch[0] > 0  # linear layers and activations, + minibatch discrimination
        self.num_features = c_in
        self.projection = ProjectionHead(c_in, num_classes, *minibatch)

    def features(self, x: Tensor) -> Tensor:
        """x (B, data_dim) -> (B, width)."""
        return self.body(x)


@MODELS.register("mlp")
def mlp(
    image_size: int | None = None,
    channels: int | None = None,
    num_classes: int = 0,
    data_dim: int = 2,
    width: int = 128,
    depth: int = 3,
    latent_dim: int = 16,
    spectral_norm: bool = False,
    g_spectral_norm: bool = False,
    init: str = "default",
    minibatch_discrimination: int = 0,
    minibatch_kernel_dim: int = 5,
) -> tuple[MLPGenerator, MLPDiscriminator]:
    """MLP G and D for points of ``data_dim`` features. ``width``: hidden units; ``depth``: hidden
    layers; ``init``: "default" (PyTorch's init, which trains toys well) or "normal"/"xavier"/"orthogonal";
    ``minibatch_discrimination`` / ``minibatch_kernel_dim``: as dcgan's (0 kernels: off)."""
    if image_size is not None or channels is not None:
        raise ValueError(
            "model 'mlp' is for vector data (the 2-D toys, data_dim=2): image_size and channels must be "
            f"None, got {short(image_size)} and {short(channels)}; use dcgan or sngan_resnet for images"
        )
    check_int("mlp data_dim", data_dim, 1, MAX_UNITS)
    check_int("mlp depth", depth, 1, MAX_DEPTH)
    flags = {"spectral_norm": spectral_norm, "g_spectral_norm": g_spectral_norm}
    check_network_options("mlp", num_classes, width, latent_dim, init, flags)
    minibatch = check_minibatch_options("mlp", minibatch_discrimination, minibatch_kernel_dim)
    G = MLPGenerator(data_dim, num_classes, latent_dim, width, depth)
    D = MLPDiscriminator(data_dim, num_classes, width, depth, minibatch)
    return finish(G, init, g_spectral_norm), finish(D, init, spectral_norm)
