"""DCGAN (Radford et al. 2016): all-convolutional G and D with 4x4 kernels, stride 2.

For 32 px, width w (default 64), channels C (shapes for one image):
  G: z (latent_dim) -> ConvT(latent_dim, 4w, 4, 1, 0) BN ReLU -> (4w, 4, 4)
     -> ConvT(4w, 2w, 4, 2, 1) BN ReLU -> (2w, 8, 8) -> ConvT(2w, w, 4, 2, 1) BN ReLU -> (w, 16, 16)
     -> ConvT(w, C, 4, 2, 1) tanh -> (C, 32, 32)
  D: Conv(C, w, 4, 2, 1) LReLU(0.2) -> (w, 16, 16) -> Conv(w, 2w, 4, 2, 1) BN LReLU -> (2w, 8, 8)
     -> Conv(2w, 4w, 4, 2, 1) BN LReLU -> (4w, 4, 4) = features (flattened, F = 64w)
     -> head Linear(F, 1) (the same map as Radford's final Conv(4w, 1, 4, 1, 0)), + projection.
64 px adds one stage (G starts at 8w, D ends at 8w); any power of two >= 8 follows the pattern.
Convolutions followed by batch norm have no bias (BN removes it). With ``spectral_norm=True`` the
D's batch norms are dropped and every D weight is spectrally normalised (SN replaces BN, as in
Miyato et al.); ``d_batch_norm=False`` drops them without SN. Conditional models use
class-conditional BN in G and a projection head in D.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from negaug.models.base import (
    MAX_UNITS,
    MODELS,
    Discriminator,
    Generator,
    check_minibatch_options,
    check_network_options,
    check_power_of_two,
    require_labels,
)
from negaug.models.layers import ClassBatchNorm2d, ProjectionHead, finish
from negaug.registry import check_int


class DCGANGenerator(Generator):
    def __init__(self, image_size: int, channels: int, num_classes: int, latent_dim: int, width: int):
        super().__init__(latent_dim, num_classes)
        stages = check_power_of_two(image_size, 8, "dcgan") - 2  # 4 px -> image_size, doubling
        widths = [width * 2 ** (stages - 1 - i) for i in range(stages)]  # 32 px: [4w, 2w, w]
        self.stem = nn.ConvTranspose2d(latent_dim, widths[0], 4, 1, 0, bias=False)
        self.ups = nn.ModuleList(
            nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False) for c_in, c_out in zip(widths, widths[1:])
        )
        self.norms = nn.ModuleList(ClassBatchNorm2d(c, num_classes) for c in widths)
        self.to_image = nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """z (B, latent_dim), y (B,) -> images (B, C, H, W) in [-1, 1]."""
        y = require_labels(y, self.num_classes)
        x = F.relu(self.norms[0](self.stem(z[:, :, None, None]), y))  # (B, widths[0], 4, 4)
        for up, norm in zip(self.ups, self.norms[1:]):
            x = F.relu(norm(up(x), y))  # doubles H and W, halves the channels
        return self.to_image(x).tanh()


class DCGANDiscriminator(Discriminator):
    def __init__(self, image_size: int, channels: int, num_classes: int, width: int, batch_norm: bool,
                 minibatch: tuple[int, int] = (0, 5)):
        super().__init__()
        stages = check_power_of_two(image_size, 8, "dcgan") - 2
        widths = [width * 2**i for i in range(stages)]  # 32 px: [w, 2w, 4w]
        layers: list[nn.Module] = [nn.Conv2d(channels, widths[0], 4, 2, 1), nn.LeakyReLU(0.2)]
        for c_in, c_out in zip(widths, widths[1:]):
            layers.append(nn.Conv2d(c_in, c_out, 4, 2, 1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(nn.LeakyReLU(0.2))
        self.body = nn.Sequential(*layers)
        # 8 px has no BN layer; minibatch discrimination mixes samples by design
        self.batch_dependent = (batch_norm and len(widths) > 1) or minibatch[0] > 0
        self.num_features = widths[-1] * 4 * 4
        self.projection = ProjectionHead(self.num_features, num_classes, *minibatch)

    def features(self, x: Tensor) -> Tensor:
        """x (B, C, H, W) in [-1, 1] -> (B, 16 * widths[-1])."""
        return self.body(x).flatten(1)


@MODELS.register("dcgan")
def dcgan(
    image_size: int,
    channels: int,
    num_classes: int = 0,
    width: int = 64,
    latent_dim: int = 100,
    spectral_norm: bool = False,
    g_spectral_norm: bool = False,
    d_batch_norm: bool = True,
    init: str = "normal",
    minibatch_discrimination: int = 0,
    minibatch_kernel_dim: int = 5,
) -> tuple[DCGANGenerator, DCGANDiscriminator]:
    """DCGAN G and D. ``width``: base channels (64 as Radford et al.); ``latent_dim``: 100 as
    Radford et al.; ``spectral_norm``: SN instead of BN in D; ``g_spectral_norm``: SN on G's
    weights too (BN kept); ``d_batch_norm``: BN in D when SN is off (false: no normalisation, a
    per-sample critic for gradient penalties, as WGAN-GP); ``init``: "normal" = N(0, 0.02);
    ``minibatch_discrimination``: kernels of a minibatch-discrimination layer in D's head (0: off;
    makes D batch-dependent) with ``minibatch_kernel_dim`` numbers each (Salimans et al. 2016)."""
    check_power_of_two(image_size, 8, "dcgan")
    check_int("dcgan channels", channels, 1, MAX_UNITS)
    flags = {"spectral_norm": spectral_norm, "g_spectral_norm": g_spectral_norm, "d_batch_norm": d_batch_norm}
    check_network_options("dcgan", num_classes, width, latent_dim, init, flags)
    minibatch = check_minibatch_options("dcgan", minibatch_discrimination, minibatch_kernel_dim)
    G = DCGANGenerator(image_size, channels, num_classes, latent_dim, width)
    batch_norm = d_batch_norm and not spectral_norm
    D = DCGANDiscriminator(image_size, channels, num_classes, width, batch_norm=batch_norm, minibatch=minibatch)
    return finish(G, init, g_spectral_norm), finish(D, init, spectral_norm)
