"""Encoders for contrastive learning and the MoCo-v2 projection head.

Every encoder maps images (B, C, H, W) to features (B, F) and has `feature_dim` = F; any image
size works (global average pooling at the end). Built by name:

    encoder = ENCODERS.build("resnet18_cifar", in_channels=3, width=64)   # F = 8 * width
    head = mlp_head(encoder.feature_dim, hidden=None, out_dim=128)      # MoCo v2: 512 -> 512 -> 128

- "small_cnn": four 3x3 conv + BN + ReLU layers (stride 1, 2, 2, 2), F = 8 * width; at width 32
  a step of MoCo on 32 px images takes well under a second on 2 CPU cores (benchmarks/contrastive_step.py).
- "resnet18_cifar": ResNet-18 as used for CIFAR in MoCo / SimCLR reproductions: a 3x3 stride-1
  stem and no max-pool (the ImageNet stem's 7x7 stride 2 + max-pool discards most of a 32 px image),
  four stages of two basic blocks, widths width * (1, 2, 4, 8); F = 8 * width (512 at width 64).
"""
from __future__ import annotations

from torch import Tensor, nn

from negaug.registry import Registry, check_int

ENCODERS = Registry("contrastive encoder")

MAX_CHANNELS = 64
MAX_WIDTH = 1024


def conv_bn_relu(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


def _check(in_channels: int, width: int, name: str) -> tuple[int, int]:
    return (check_int(f"{name} in_channels", in_channels, 1, MAX_CHANNELS),
            check_int(f"{name} width", width, 1, MAX_WIDTH))


@ENCODERS.register("small_cnn")
class SmallCNN(nn.Module):
    """(B, C, H, W) -> (B, 8 * width): conv-BN-ReLU at strides 1, 2, 2, 2, global average pool."""

    def __init__(self, in_channels: int = 3, width: int = 32):
        super().__init__()
        in_channels, width = _check(in_channels, width, "small_cnn")
        self.feature_dim = 8 * width
        self.layers = nn.Sequential(
            conv_bn_relu(in_channels, width),          # H x W
            conv_bn_relu(width, 2 * width, 2),         # H/2
            conv_bn_relu(2 * width, 4 * width, 2),     # H/4
            conv_bn_relu(4 * width, 8 * width, 2),     # H/8
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 conv-BN, identity (or 1x1 conv-BN) shortcut, ReLU after the sum."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn1(self.conv1(x)).relu_()
        out = self.bn2(self.conv2(out))
        return (out + self.shortcut(x)).relu_()


@ENCODERS.register("resnet18_cifar")
class ResNet18CIFAR(nn.Module):
    """(B, C, H, W) -> (B, 8 * width): CIFAR-style ResNet-18 (3x3 stem, no max-pool)."""

    def __init__(self, in_channels: int = 3, width: int = 64):
        super().__init__()
        in_channels, width = _check(in_channels, width, "resnet18_cifar")
        self.feature_dim = 8 * width
        self.stem = conv_bn_relu(in_channels, width)
        stages, c_in = [], width
        for index, c_out in enumerate((width, 2 * width, 4 * width, 8 * width)):
            stride = 1 if index == 0 else 2
            stages += [BasicBlock(c_in, c_out, stride), BasicBlock(c_out, c_out)]
            c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.stages(self.stem(x)))


def mlp_head(in_dim: int, hidden: int | None = 2048, out_dim: int = 128) -> nn.Sequential:
    """The projection head: Linear(in_dim, hidden) - ReLU - Linear(hidden, out_dim);
    (B, in_dim) -> (B, out_dim). hidden = None: in_dim, MoCo v2's head (`moco/builder.py`:
    `dim_mlp = encoder_q.fc.weight.shape[1]`, 512 -> 512 -> 128 for ResNet-18, 2048 -> 2048 -> 128
    for ResNet-50); hidden = 0: a single Linear (MoCo v1). The default 2048 is negaug's old reading
    of the paper's "feature dimensionality = 2048" (Appendix K, CIFAR; 128 for ImageNet-100), which
    in MoCo's code names `--moco-dim`, the output dimension: hidden = None, out_dim = 2048."""
    in_dim = check_int("head in_dim", in_dim, 1)
    hidden = in_dim if hidden is None else check_int("head hidden", hidden, 0, 1 << 16)
    out_dim = check_int("head out_dim", out_dim, 1, 1 << 16)
    if hidden == 0:
        return nn.Sequential(nn.Linear(in_dim, out_dim))
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_dim))
