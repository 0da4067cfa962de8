"""Pix2Pix (Isola et al. 2017): a U-Net generator and a PatchGAN discriminator for paired
image-to-image translation, written after the official PyTorch code (junyanz/pytorch-CycleGAN-and-pix2pix,
`models/networks.py`: `UnetGenerator`, `UnetSkipConnectionBlock`, `NLayerDiscriminator`).

    G = UNetGenerator(image_size=64, in_channels=3, out_channels=3, width=64, norm="instance")
    D = PatchDiscriminator(in_channels=3 + 3, width=64, norm="instance")
    y = G(c)                          # (B, 3, 64, 64) in [-1, 1] from the condition c (B, 3, 64, 64)
    patches = D(y, c)                 # (B, 1, 6, 6) raw scores, one per overlapping patch

Generator: log2(image_size) stride-2 4x4 convolutions down to 1x1, mirrored by transposed
convolutions, each decoder level concatenated with the encoder level of the same size (skips).
Widths width, 2w, 4w, 8w, 8w, ...; the innermost block has no norm, the outermost none either
(tanh output). Dropout(0.5) in the decoder blocks at 8w between the innermost and the 4w level
(the official code's `num_downs - 5` blocks: 3 at 256 px, 1 at 64 px, 0 at 32 px) is pix2pix's
only noise source: G takes no latent. At 256 px this is the official `unet_256`.

Discriminator (`n_layers=3`, the "70x70 PatchGAN"): 4x4 convolutions with strides 2, 2, 2, 1, 1 on
the channel concatenation [condition, output] (as the official `torch.cat((real_A, fake_B), 1)`); each output score sees a 70x70 window of the input.
The map is 30x30 at 256 px, 6x6 at 64 px and 2x2 at 32 px: below 70 px every score sees the whole
image (padding included), so the "patch" discriminator is a (weight-shared) whole-image one there.
Losses average over patches.

Norm ("instance" by default here): instance norm (affine=False, no running statistics, as the
official `--norm instance`) makes every sample's output independent of the batch, so
`batch_dependent = False`. "batch" is the official default, where pix2pix trains with batch size
1 (batch norm over one image's pixels then equals instance norm with an affine map); with larger
batches it couples the samples, so `batch_dependent = True`. "none" has no norm.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from negaug.models.base import check_power_of_two
from negaug.registry import check_choice, check_float, check_int

NORMS = ("instance", "batch", "none")
MAX_WIDTH = 1024
MIN_IMAGE_SIZE = 32  # D's map is 2x2 at 32 px and empty below 24 px; G needs a power of two


def norm_layer(norm: str, channels: int) -> nn.Module:
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    return nn.Identity()


def init_pix2pix(module: nn.Module, gain: float = 0.02) -> None:
    """The official init ('normal', gain 0.02): conv weights N(0, gain), biases 0; batch-norm
    weights N(1, gain), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)


class UNetBlock(nn.Module):
    """One U-Net level: down (conv 4x4 stride 2), the inner levels, up (transposed conv), and the
    skip: ``forward(x (B, outer, H, W)) -> (B, 2 * outer, H, W)`` (outermost: (B, out, H, W))."""

    def __init__(self, outer: int, inner: int, submodule: nn.Module | None, norm: str,
                 dropout: float = 0.0, in_channels: int | None = None, outermost: bool = False):
        super().__init__()
        self.outermost = outermost
        bias = norm != "batch"  # batch norm has its own bias
        down_in = outer if in_channels is None else in_channels
        down = nn.Conv2d(down_in, inner, 4, stride=2, padding=1, bias=bias)
        if outermost:
            up = nn.ConvTranspose2d(2 * inner, outer, 4, stride=2, padding=1)
            layers = [down, submodule, nn.ReLU(True), up, nn.Tanh()]
        elif submodule is None:  # innermost: 1x1 bottleneck, no norm on the way down
            up = nn.ConvTranspose2d(inner, outer, 4, stride=2, padding=1, bias=bias)
            layers = [down, nn.ReLU(True), up, norm_layer(norm, outer)]
        else:
            up = nn.ConvTranspose2d(2 * inner, outer, 4, stride=2, padding=1, bias=bias)
            layers = [down, norm_layer(norm, inner), submodule,
                      nn.ReLU(True), up, norm_layer(norm, outer)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
        self.model = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        if self.outermost:
            return self.model(x)
        # The skip carries LeakyReLU(x), as in the official code, whose in-place LeakyReLU
        # overwrites x before `torch.cat([x, model(x)])` reads it.
        h = F.leaky_relu(x, 0.2)
        return torch.cat([h, self.model(h)], 1)


class UNetGenerator(nn.Module):
    """``G(c (B, in_channels, S, S)) -> (B, out_channels, S, S)`` in [-1, 1]; S a power of two >= 32."""

    def __init__(self, image_size: int = 256, in_channels: int = 3, out_channels: int = 3, width: int = 64,
                 norm: str = "instance", dropout: float = 0.5, init_gain: float = 0.02):
        super().__init__()
        num_downs = check_power_of_two(image_size, MIN_IMAGE_SIZE, "pix2pix")
        check_int("pix2pix in_channels", in_channels, 1, 64)
        check_int("pix2pix out_channels", out_channels, 1, 64)
        check_int("pix2pix width", width, 1, MAX_WIDTH)
        check_choice("pix2pix norm", norm, NORMS)
        check_float("pix2pix dropout", dropout, 0.0, 1.0, open_high=True)
        check_float("pix2pix init_gain", init_gain, 0.0, 1.0, open_low=True)
        self.image_size, self.in_channels, self.out_channels = image_size, in_channels, out_channels
        self.norm, self.num_downs = norm, num_downs
        block = UNetBlock(8 * width, 8 * width, None, norm)  # innermost: 2x2 -> 1x1 -> 2x2
        for _ in range(num_downs - 5):  # the levels at 8w, with dropout
            block = UNetBlock(8 * width, 8 * width, block, norm, dropout=dropout)
        for outer in (4 * width, 2 * width, width):
            block = UNetBlock(outer, 2 * outer, block, norm)
        self.model = UNetBlock(out_channels, width, block, norm, in_channels=in_channels, outermost=True)
        init_pix2pix(self, init_gain)

    def forward(self, condition: Tensor) -> Tensor:
        return self.model(condition)


class PatchDiscriminator(nn.Module):
    """``D(x (B, C_x, H, W), condition (B, C_c, H, W)) -> (B, 1, H', W')`` raw patch scores of the
    pair, concatenated along channels (C_x + C_c == in_channels). With n_layers=3, H' = H/8 - 2."""

    def __init__(self, in_channels: int = 6, width: int = 64, n_layers: int = 3, norm: str = "instance",
                 init_gain: float = 0.02):
        super().__init__()
        check_int("pix2pix discriminator in_channels", in_channels, 2, 128)
        check_int("pix2pix width", width, 1, MAX_WIDTH)
        check_int("pix2pix d_layers", n_layers, 1, 6)
        check_choice("pix2pix norm", norm, NORMS)
        self.in_channels, self.n_layers, self.norm = in_channels, n_layers, norm
        self.batch_dependent = norm == "batch"  # read by the training step (how to call D)
        bias = norm != "batch"
        layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        channels = width
        for n in range(1, n_layers + 1):
            out = width * min(2 ** n, 8)
            stride = 2 if n < n_layers else 1
            layers += [nn.Conv2d(channels, out, 4, stride=stride, padding=1, bias=bias), norm_layer(norm, out),
                       nn.LeakyReLU(0.2, True)]
            channels = out
        layers.append(nn.Conv2d(channels, 1, 4, stride=1, padding=1))
        self.model = nn.Sequential(*layers)
        init_pix2pix(self, init_gain)

    def patch_size(self, image_size: int) -> int:
        """Side of the score map for a square input of side `image_size`."""
        size = image_size
        for _ in range(self.n_layers):
            size = size // 2
        return size - 2

    def receptive_field(self) -> int:
        """Input pixels seen by one score (70 for n_layers=3)."""
        field = 1
        for stride in reversed([2] * self.n_layers + [1, 1]):
            field = (field - 1) * stride + 4
        return field

    def forward(self, x: Tensor, condition: Tensor) -> Tensor:
        """Scores (B, 1, h, w) of the pairs (condition (B, C_in, H, W), x (B, C_out, H, W)), the input
        concatenated as [condition, x], as pytorch-CycleGAN-and-pix2pix (``torch.cat((real_A,
        fake_B), 1)``), so its official D weights load and score alike."""
        return self.model(torch.cat([condition, x], 1))


def build_pix2pix(image_size: int, in_channels: int, out_channels: int, width: int = 64, norm: str = "instance",
                  dropout: float = 0.5, d_layers: int = 3, d_width: int | None = None,
                  init_gain: float = 0.02) -> tuple[UNetGenerator, PatchDiscriminator]:
    """``(G, D)`` of Pix2Pix for `image_size` px images (both in train mode, on the CPU); the
    discriminator has `d_width` (default: `width`) base channels. Raises ValueError naming the option."""
    generator = UNetGenerator(image_size, in_channels, out_channels, width, norm, dropout, init_gain)
    discriminator = PatchDiscriminator(in_channels + out_channels, width if d_width is None else d_width,
                                       d_layers, norm, init_gain)
    if discriminator.patch_size(image_size) < 1:
        raise ValueError(f"pix2pix d_layers={d_layers} leaves no patch at {image_size} px; use fewer layers")
    return generator, discriminator
