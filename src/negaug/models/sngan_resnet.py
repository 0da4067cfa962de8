"""The SNGAN ResNet for 32 px (Miyato et al. 2018, Appendix B.4, Table 4; Gulrajani et al. 2017).

With ``width`` = w (default 128): G has 2w = 256 channels, D has w = 128, as in the paper.
  G: z (latent_dim=128) -> Linear -> (2w, 4, 4) -> UpBlock x3 -> (2w, 32, 32)
     -> BN ReLU Conv3x3(2w, C) tanh -> (C, 32, 32)
     UpBlock: BN ReLU Upsample(x2, nearest) Conv3x3 BN ReLU Conv3x3, + shortcut Upsample Conv1x1.
  D: FirstBlock(C, w) -> (w, 16, 16) -> DownBlock(w, w, down) -> (w, 8, 8) -> DownBlock(w, w) x2
     -> ReLU -> sum over H, W = features (B, w) -> head Linear(w, 1) (+ projection).
     FirstBlock: Conv3x3 ReLU Conv3x3 AvgPool2, + shortcut AvgPool2 Conv1x1.
     DownBlock: ReLU Conv3x3 ReLU Conv3x3 (AvgPool2), + shortcut Conv1x1 (AvgPool2) when the shape
     changes, identity otherwise.
Other powers of two >= 16 add or drop up/down stages. Spectral norm on every D weight by default.
Conditional models use class-conditional BN in the G blocks and a projection head in D.
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


class UpBlock(nn.Module):
    """Pre-activation residual block that doubles H and W: (B, c_in, H, W) -> (B, c_out, 2H, 2W)."""

    def __init__(self, c_in: int, c_out: int, num_classes: int):
        super().__init__()
        self.norm1 = ClassBatchNorm2d(c_in, num_classes)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False)  # followed by BN: a bias is void
        self.norm2 = ClassBatchNorm2d(c_out, num_classes)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.shortcut = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: Tensor, y: Tensor | None) -> Tensor:
        h = F.interpolate(F.relu(self.norm1(x, y)), scale_factor=2.0, mode="nearest")
        h = self.conv2(F.relu(self.norm2(self.conv1(h), y)))
        # A 1x1 conv commutes with nearest upsampling: convolve the 4x smaller map first.
        return h + F.interpolate(self.shortcut(x), scale_factor=2.0, mode="nearest")


class DownBlock(nn.Module):
    """Pre-activation residual block, halving H and W if ``down``: (B, c_in, H, W) -> (B, c_out, H', W')."""

    def __init__(self, c_in: int, c_out: int, down: bool):
        super().__init__()
        self.down = down
        self.conv1 = nn.Conv2d(c_in, c_out, 3, 1, 1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.shortcut = nn.Conv2d(c_in, c_out, 1) if down or c_in != c_out else None

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv2(F.relu(self.conv1(F.relu(x))))
        skip = x if self.shortcut is None else self.shortcut(x)
        if self.down:
            h, skip = F.avg_pool2d(h, 2), F.avg_pool2d(skip, 2)
        return h + skip


class FirstBlock(nn.Module):
    """D's first block (no activation on the input image): (B, C, H, W) -> (B, c_out, H/2, W/2)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, 1, 1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.shortcut = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = F.avg_pool2d(self.conv2(F.relu(self.conv1(x))), 2)
        return h + self.shortcut(F.avg_pool2d(x, 2))  # pool first: 4x cheaper, same result


class ResNetGenerator(Generator):
    def __init__(self, image_size: int, channels: int, num_classes: int, latent_dim: int, width: int):
        super().__init__(latent_dim, num_classes)
        num_up = check_power_of_two(image_size, 16, "sngan_resnet") - 2  # 4 px -> image_size
        self.width = width
        self.stem = nn.Linear(latent_dim, width * 4 * 4)
        self.blocks = nn.ModuleList(UpBlock(width, width, num_classes) for _ in range(num_up))
        self.out_norm = nn.BatchNorm2d(width)  # unconditional, as in Miyato & Koyama's code
        self.to_image = nn.Conv2d(width, channels, 3, 1, 1)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """z (B, latent_dim), y (B,) -> images (B, C, H, W) in [-1, 1]."""
        y = require_labels(y, self.num_classes)
        x = self.stem(z).unflatten(1, (self.width, 4, 4))  # (B, width, 4, 4)
        for block in self.blocks:
            x = block(x, y)
        return self.to_image(F.relu(self.out_norm(x))).tanh()


class ResNetDiscriminator(Discriminator):
    def __init__(self, image_size: int, channels: int, num_classes: int, width: int,
                 minibatch: tuple[int, int] = (0, 5)):
        super().__init__()
        num_down = check_power_of_two(image_size, 16, "sngan_resnet") - 3  # image_size -> 8 px
        blocks: list[nn.Module] = [FirstBlock(channels, width)]
        blocks += [DownBlock(width, width, down=True) for _ in range(num_down - 1)]
        blocks += [DownBlock(width, width, down=False) for _ in range(2)]
        self.blocks = nn.Sequential(*blocks)
        # no normalisation layers: each score depends on its image only, unless minibatch discrimination
        self.batch_dependent = minibatch[0] > 0
        self.num_features = width
        self.projection = ProjectionHead(width, num_classes, *minibatch)

    def features(self, x: Tensor) -> Tensor:
        """x (B, C, H, W) in [-1, 1] -> (B, width): ReLU then global *sum* pooling (Miyato et al.)."""
        return F.relu(self.blocks(x)).sum(dim=(2, 3))


@MODELS.register("sngan_resnet")
def sngan_resnet(
    image_size: int,
    channels: int,
    num_classes: int = 0,
    width: int = 128,
    latent_dim: int = 128,
    spectral_norm: bool = True,
    g_spectral_norm: bool = False,
    init: str = "normal",
    minibatch_discrimination: int = 0,
    minibatch_kernel_dim: int = 5,
) -> tuple[ResNetGenerator, ResNetDiscriminator]:
    """SNGAN ResNet G and D. ``width``: D channels, G gets ``2 * width`` (256 / 128 at the default);
    ``spectral_norm``: SN on D (default on, Miyato et al.); ``g_spectral_norm``: SN on G too (as
    the NDA authors' BigGAN); ``init``: "normal" = N(0, 0.02) as the NDA authors ("xavier" as SNGAN);
    ``minibatch_discrimination`` / ``minibatch_kernel_dim``: as dcgan's (0 kernels: off)."""
    check_power_of_two(image_size, 16, "sngan_resnet")
    check_int("sngan_resnet channels", channels, 1, MAX_UNITS)
    flags = {"spectral_norm": spectral_norm, "g_spectral_norm": g_spectral_norm}
    check_network_options("sngan_resnet", num_classes, width, latent_dim, init, flags)
    minibatch = check_minibatch_options("sngan_resnet", minibatch_discrimination, minibatch_kernel_dim)
    G = ResNetGenerator(image_size, channels, num_classes, latent_dim, 2 * width)
    D = ResNetDiscriminator(image_size, channels, num_classes, width, minibatch)
    return finish(G, init, g_spectral_norm), finish(D, init, spectral_norm)
