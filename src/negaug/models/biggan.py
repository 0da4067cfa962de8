"""BigGAN (Brock et al. 2019) as in BigGAN-PyTorch, the code the NDA authors forked, for 32..256 px.

With ``width`` = ch (default 64, BigGAN-PyTorch's G_ch = D_ch):
  32 px  G: z chunk -> Linear -> (4ch, 4, 4) -> GBlock x3 (4ch -> 4ch, up) -> (4ch, 32, 32)
            -> BN ReLU Conv3x3 tanh -> (C, 32, 32)
         D: DBlock(C, 4ch, down) DBlock(4ch, 4ch, down) DBlock(4ch, 4ch) x2 -> ReLU, sum over H, W
            -> (B, 4ch) -> projection head.
  64 px  G channels 16ch (4 px) -> 16ch, 8ch, 4ch, 2ch; D channels ch, 2ch, 4ch, 8ch (down), 16ch.
  128 / 256 px: BigGAN-PyTorch's G_arch / D_arch tables for those sizes.
  GBlock: CBN ReLU Upsample Conv3x3 CBN ReLU Conv3x3, + shortcut Upsample Conv1x1.
  DBlock: ReLU Conv3x3 ReLU Conv3x3 (AvgPool2), + shortcut Conv1x1 (AvgPool2) when the shape
  changes; the first block has no input ReLU and pools before its shortcut conv.
Conditioning (``shared_embedding``, ``hierarchical``, both on by default as in the BigGAN paper):
z is split into one chunk per G block plus one for the first linear layer; every batch norm of a
block gets gain 1 + W_g c and bias W_b c from c = [shared class embedding (latent_dim), its z chunk].
Unconditional models (num_classes = 0) embed one class, as the NDA authors' unconditional runs feed
label 0 for every image, so the z chunks still reach every batch norm and D's projection head
keeps its class-0 embedding. With ``shared_embedding``
off, each class has its own gains and biases (``ClassBatchNorm2d``; the NDA authors' CIFAR scripts
run this way, with ``hierarchical`` off too).
Optional self-attention (SAGAN) after the G and D block whose output has ``attention`` px (0: none;
the authors use none). Spectral norm on G and D by default; G's embedding is never normalised
(BigGAN-PyTorch: "applying SN to G's embedding seems to randomly cripple G").
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from negaug.models.base import (
    MAX_UNITS,
    MODELS,
    Discriminator,
    Generator,
    check_network_options,
    check_power_of_two,
    require_labels,
)
from negaug.models.layers import ClassBatchNorm2d, ProjectionHead, finish, init_weights
from negaug.models.sngan_resnet import DownBlock, FirstBlock
from negaug.registry import check_int

# Channel multipliers of ch, from BigGAN-PyTorch's G_arch / D_arch. G: the 4 px input of the first
# block, then each block's output. D: each block's output, and whether the block halves H and W.
G_CHANNELS = {32: [4, 4, 4, 4], 64: [16, 16, 8, 4, 2], 128: [16, 16, 8, 4, 2, 1], 256: [16, 16, 8, 8, 4, 2, 1]}
D_CHANNELS = {32: [4, 4, 4, 4], 64: [1, 2, 4, 8, 16], 128: [1, 2, 4, 8, 16, 16], 256: [1, 2, 4, 8, 8, 16, 16]}
D_DOWN = {32: [True, True, False, False], 64: [True] * 4 + [False], 128: [True] * 5 + [False],
          256: [True] * 6 + [False]}


class ConditionalBatchNorm2d(nn.Module):
    """BigGAN's ccbn: batch norm without affine, then per-sample gain ``1 + W_g c`` and bias ``W_b c``
    from a conditioning vector c (B, cond_dim). ``forward(x (B, C, H, W), c) -> (B, C, H, W)``."""

    def __init__(self, num_features: int, cond_dim: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(num_features, affine=False)
        self.gain = nn.Linear(cond_dim, num_features, bias=False)
        self.bias = nn.Linear(cond_dim, num_features, bias=False)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        gain = 1 + self.gain(cond)[:, :, None, None]  # (B, C, 1, 1)
        return self.norm(x) * gain + self.bias(cond)[:, :, None, None]


class SelfAttention(nn.Module):
    """SAGAN self-attention as in BigGAN-PyTorch: x + gamma * attention(x), gamma starting at 0;
    keys and values are max-pooled 2x2. (B, C, H, W) -> (B, C, H, W); H and W even."""

    def __init__(self, ch: int):
        super().__init__()
        self.key_ch, self.value_ch = max(ch // 8, 1), max(ch // 2, 1)
        self.theta = nn.Conv2d(ch, self.key_ch, 1, bias=False)
        self.phi = nn.Conv2d(ch, self.key_ch, 1, bias=False)
        self.g = nn.Conv2d(ch, self.value_ch, 1, bias=False)
        self.o = nn.Conv2d(self.value_ch, ch, 1, bias=False)
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        query = self.theta(x).flatten(2)  # (B, key_ch, HW)
        key = F.max_pool2d(self.phi(x), 2).flatten(2)  # (B, key_ch, HW/4)
        value = F.max_pool2d(self.g(x), 2).flatten(2)  # (B, value_ch, HW/4)
        attn = torch.softmax(query.transpose(1, 2) @ key, dim=-1)  # (B, HW, HW/4)
        out = (value @ attn.transpose(1, 2)).view(b, self.value_ch, h, w)
        return x + self.gamma * self.o(out)


class GBlock(nn.Module):
    """BigGAN's up block: (B, c_in, H, W), conditioning -> (B, c_out, 2H, 2W)."""

    def __init__(self, c_in: int, c_out: int, norm1: nn.Module, norm2: nn.Module):
        super().__init__()
        self.norm1, self.norm2 = norm1, norm2
        self.conv1 = nn.Conv2d(c_in, c_out, 3, 1, 1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.shortcut = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: Tensor, cond: Tensor | None) -> Tensor:
        h = F.interpolate(F.relu(self.norm1(x, cond)), scale_factor=2.0, mode="nearest")
        h = self.conv2(F.relu(self.norm2(self.conv1(h), cond)))
        # A 1x1 conv commutes with nearest upsampling: convolve the 4x smaller map first.
        return h + F.interpolate(self.shortcut(x), scale_factor=2.0, mode="nearest")


class BigGANGenerator(Generator):
    def __init__(self, image_size: int, channels: int, num_classes: int, latent_dim: int, width: int,
                 hierarchical: bool, shared_embedding: bool, attention: int, shared_dim: int = 0):
        chs = [width * m for m in G_CHANNELS[image_size]]
        num_slots = len(chs) if hierarchical else 1  # one z chunk per block, one for the first layer
        super().__init__(latent_dim // num_slots * num_slots, num_classes)  # BigGAN: 128 -> 125 at 64 px
        self.chunk_size = self.latent_dim // num_slots if hierarchical else 0
        self.bottom_channels = chs[0]
        # The shared embedding has shared_dim features (BigGAN-PyTorch: shared_dim, 0 = dim_z as given).
        shared_dim = shared_dim or latent_dim
        self.shared = nn.Embedding(max(num_classes, 1), shared_dim) if shared_embedding else None
        cond_dim = shared_dim + self.chunk_size

        def norm(c: int) -> nn.Module:
            return ConditionalBatchNorm2d(c, cond_dim) if shared_embedding else ClassBatchNorm2d(c, num_classes)

        self.stem = nn.Linear(self.latent_dim // num_slots, chs[0] * 4 * 4)
        self.blocks = nn.ModuleList(GBlock(chs[i], chs[i + 1], norm(chs[i]), norm(chs[i + 1])) for i in range(len(chs) - 1))
        resolutions = [8 * 2**i for i in range(len(self.blocks))]
        self.attention_after = resolutions.index(attention) if attention else None
        self.attention = SelfAttention(chs[self.attention_after + 1]) if attention else None
        self.out_norm = nn.BatchNorm2d(chs[-1])  # unconditional, as in BigGAN-PyTorch
        self.to_image = nn.Conv2d(chs[-1], channels, 3, 1, 1)

    def conditions(self, z: Tensor, y: Tensor | None) -> tuple[Tensor, list]:
        """The first layer's input and each block's conditioning: [shared embedding, z chunk] (B,
        cond_dim), or the labels for per-class batch norm."""
        if self.shared is None:
            return z, [y] * len(self.blocks)
        labels = y if y is not None else torch.zeros(z.shape[0], dtype=torch.long, device=z.device)
        embedded = self.shared(labels).to(z.dtype)  # (B, latent_dim given at construction)
        if not self.chunk_size:
            return z, [embedded] * len(self.blocks)
        first, *chunks = z.split(self.chunk_size, dim=1)
        return first, [torch.cat([embedded, chunk], dim=1) for chunk in chunks]

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """z (B, latent_dim), y (B,) -> images (B, C, H, W) in [-1, 1]."""
        y = require_labels(y, self.num_classes)
        first, conds = self.conditions(z, y)
        x = self.stem(first).unflatten(1, (self.bottom_channels, 4, 4))  # (B, chs[0], 4, 4)
        for i, (block, cond) in enumerate(zip(self.blocks, conds)):
            x = block(x, cond)
            if i == self.attention_after:
                x = self.attention(x)
        return self.to_image(F.relu(self.out_norm(x))).tanh()


class BigGANDiscriminator(Discriminator):
    def __init__(self, image_size: int, channels: int, num_classes: int, width: int, attention: int):
        super().__init__()
        chs, downs = [width * m for m in D_CHANNELS[image_size]], D_DOWN[image_size]
        blocks: list[nn.Module] = [FirstBlock(channels, chs[0])]
        blocks += [DownBlock(chs[i - 1], chs[i], down=downs[i]) for i in range(1, len(chs))]
        resolution = image_size
        self.blocks = nn.Sequential()
        for block, down, c in zip(blocks, downs, chs):
            self.blocks.append(block)
            resolution //= 2 if down else 1
            if attention == resolution and not any(isinstance(m, SelfAttention) for m in self.blocks):
                self.blocks.append(SelfAttention(c))
        self.batch_dependent = False  # no normalisation layers: each score depends on its image only
        self.num_features = chs[-1]
        self.num_classes = num_classes
        # Unconditional: one class, as in the authors' runs (label 0 for every image), so the score
        # is w . phi + b + embed(0) . phi with w and embed(0) spectrally normalised apart.
        self.projection = ProjectionHead(chs[-1], max(num_classes, 1))

    def head(self, features: Tensor, y: Tensor | None = None) -> Tensor:
        """(B, F) features, (B,) labels (ignored when unconditional) -> (B,) raw scores."""
        y = require_labels(y, self.num_classes)
        if y is None:
            y = torch.zeros(features.shape[0], dtype=torch.long, device=features.device)
        return self.projection(features, y)

    def features(self, x: Tensor) -> Tensor:
        """x (B, C, H, W) in [-1, 1] -> (B, num_features): ReLU then global sum pooling."""
        return F.relu(self.blocks(x)).sum(dim=(2, 3))


def raw_weight(module: nn.Module) -> Tensor:
    """The trained weight of a conv or linear layer: the one before spectral normalisation, if any."""
    if parametrize.is_parametrized(module, "weight"):
        return module.parametrizations.weight.original
    return module.weight


def orthogonal_penalty(module: nn.Module) -> Tensor:
    """BigGAN's orthogonal regularisation (Brock et al. 2019, eq. 3): the sum over every conv,
    transposed conv and linear weight W of ``module`` (flattened from its first dimension, as
    BigGAN-PyTorch: (out, in * kh * kw) for a conv; before spectral norm) of
    ||W W^T * (1 - I)||_F^2, a scalar float32 tensor. Embeddings (the shared class embedding, the
    projection) are left out, as BigGAN-PyTorch leaves out G's shared embedding.
    BigGAN-PyTorch's `utils.ortho(model, strength)` adds ``strength * 2 (W W^T * (1 - I)) W`` to
    the gradient: the gradient of ``strength / 2`` times this penalty."""
    total = torch.zeros((), device=next(module.parameters()).device)
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            w = raw_weight(m).flatten(1).float()  # (weight.shape[0], rest)
            gram = w @ w.T  # (out, out)
            total = total + (gram - torch.diag(torch.diagonal(gram))).square().sum()
    return total


def spectral_norm_except_embeddings(module: nn.Module) -> nn.Module:
    """Spectral norm on every conv and linear weight of ``module`` (G's class embedding stays plain)."""
    for m in list(module.modules()):
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            _spectral_norm(m)
    return module


def check_attention(attention: int, image_size: int) -> None:
    resolutions = [8 * 2**i for i in range(len(G_CHANNELS[image_size]) - 1)]
    check_int("biggan attention", attention, 0, image_size)
    if attention and attention not in resolutions:
        raise ValueError(f"biggan attention={attention}: use 0 (none) or one of G's block resolutions "
                         f"{', '.join(map(str, resolutions))} at {image_size} px")


@MODELS.register("biggan")
def biggan(
    image_size: int,
    channels: int,
    num_classes: int = 0,
    width: int = 64,
    latent_dim: int = 128,
    attention: int = 0,
    hierarchical: bool = True,
    shared_embedding: bool = True,
    spectral_norm: bool = True,
    g_spectral_norm: bool = True,
    init: str = "normal",
    shared_dim: int = 0,
) -> tuple[BigGANGenerator, BigGANDiscriminator]:
    """BigGAN G and D. ``width``: BigGAN's ch (G and D); ``latent_dim``: dim_z, rounded down to a
    multiple of the number of z chunks when ``hierarchical``; ``attention``: resolution of the
    self-attention block (0: none); ``shared_embedding``: CBN gains from [shared embedding, z chunk]
    (off: per-class gains); ``spectral_norm`` / ``g_spectral_norm``: SN on D / G (both on, as the NDA
    authors); ``init``: "normal" = N(0, 0.02) as the NDA authors (BigGAN-PyTorch's default: "orthogonal");
    ``shared_dim``: features of the shared class embedding (0: latent_dim as given, BigGAN-PyTorch's
    default; its ImageNet-128 model: latent_dim=120, shared_dim=128)."""
    check_int("biggan shared_dim", shared_dim, 0, MAX_UNITS)
    if shared_dim and not shared_embedding:
        raise ValueError("biggan shared_dim sizes the shared embedding, which shared_embedding=false has none of; "
                         "set shared_embedding=true or shared_dim=0")
    check_power_of_two(image_size, 32, "biggan")
    if image_size not in G_CHANNELS:
        raise ValueError(f"model 'biggan' is defined for image_size {', '.join(map(str, G_CHANNELS))}, got {image_size}")
    check_int("biggan channels", channels, 1, MAX_UNITS)
    flags = {"spectral_norm": spectral_norm, "g_spectral_norm": g_spectral_norm,
             "hierarchical": hierarchical, "shared_embedding": shared_embedding}
    check_network_options("biggan", num_classes, width, latent_dim, init, flags)
    check_attention(attention, image_size)
    if hierarchical and not shared_embedding:
        raise ValueError("biggan hierarchical=true needs shared_embedding=true (the z chunks join the shared embedding)")
    if hierarchical and latent_dim < len(G_CHANNELS[image_size]):
        raise ValueError(f"biggan latent_dim={latent_dim} is smaller than the {len(G_CHANNELS[image_size])} z chunks")
    G = BigGANGenerator(image_size, channels, num_classes, latent_dim, width, hierarchical, shared_embedding, attention,
                        shared_dim)
    D = BigGANDiscriminator(image_size, channels, num_classes, width, attention)
    init_weights(G, init)
    if g_spectral_norm:
        spectral_norm_except_embeddings(G)
    return G, finish(D, init, spectral_norm)
