"""Positive views for contrastive learning: MoCo-v2's CIFAR augmentation, batched, replayable.

    augment = ViewAugment()                       # the MoCo-v2 / SimCLR CIFAR recipe
    x_q, x_k = augment(x, g), augment(x, g)       # two views of x (B, C, H, W) in [-1, 1]
    params = augment.sample(x.shape, g)           # or draw once, then replay: augment.apply(x, params)

Each image gets, in this order (each op off when its option is None / 0):
1. a random resized crop (`crop_scale`: range of the crop's share of the image area, `crop_ratio`:
   of its width / height), resized back to H x W by bilinear sampling (`affine_grid` +
   `grid_sample`), mirrored left-right with probability `flip_prob` in the same sampling pass.
   The box is drawn as torchvision's RandomResizedCrop does (10 tries of area and log-ratio, the
   first that fits; else the whole image), in fractions of the image, not rounded to pixels;
2. with probability `jitter_prob`, colour jitter: brightness, contrast, then saturation factors
   drawn uniformly from [max(0, 1 - s), 1 + s] (torchvision's ColorJitter without hue, in a fixed
   order rather than a random one), each result clipped to the image range;
3. with probability `grayscale_prob`, grayscale (ITU-R 601 luma 0.299 R + 0.587 G + 0.114 B, copied
   to every channel).
Saturation and grayscale leave 1-channel images unchanged. Without a crop, the flip is an exact
`x.flip(-1)`.

Like the NDA transforms: all randomness is drawn by `sample(shape, generator)` (on the generator's
device, then moved), `apply(x, params)` is deterministic and batched in plain torch ops, and
`augment(x, g) == augment.apply(x, augment.sample(x.shape, g, x.device))`. Image i's view depends
on image i and its own parameters only (no batch statistics).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from negaug.registry import check_float, check_list

LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2, as PIL and torchvision convert RGB to grey
CROP_TRIES = 10  # torchvision's RandomResizedCrop draws up to 10 boxes before its fallback
MAX_JITTER = 100.0


def _check_range(name: str, value: Sequence[float] | None, low: float, high: float | None) -> tuple[float, float] | None:
    if value is None:
        return None
    first, second = (check_float(f"{name}[{i}]", v, low, high, open_low=True) for i, v in enumerate(check_list(name, value, 2)))
    if first > second:
        raise ValueError(f"{name}={list(value)} must be [low, high] with low <= high")
    return first, second


def _probability(name: str, value: float) -> float:
    return check_float(name, value, 0.0, 1.0)


def _uniform(n: int, low: float, high: float, generator: torch.Generator | None, device) -> Tensor:
    return torch.rand(n, generator=generator, device=device) * (high - low) + low


def _bernoulli(n: int, p: float, generator: torch.Generator | None, device) -> Tensor:
    return torch.rand(n, generator=generator, device=device) < p


def luma(u: Tensor) -> Tensor:
    """(B, 1, H, W): the grey level of images u (B, C, H, W) in [0, 1]; C = 1: u itself."""
    if u.shape[1] == 1:
        return u
    if u.shape[1] != 3:
        raise ValueError(f"colour jitter and grayscale need 1 or 3 channels, got {u.shape[1]}")
    weights = torch.tensor(LUMA, dtype=u.dtype, device=u.device).view(1, 3, 1, 1)
    return (u * weights).sum(1, keepdim=True)


class ViewAugment(nn.Module):
    """Random positive views of image batches (module docstring). Defaults: MoCo-v2's CIFAR
    recipe (crop scale (0.2, 1), flip 0.5, jitter (0.4, 0.4, 0.4) with p 0.8, grayscale 0.2)."""

    def __init__(self, crop_scale: Sequence[float] | None = (0.2, 1.0), crop_ratio: Sequence[float] = (3 / 4, 4 / 3),
                 flip_prob: float = 0.5, jitter_prob: float = 0.8, brightness: float = 0.4, contrast: float = 0.4,
                 saturation: float = 0.4, grayscale_prob: float = 0.2):
        super().__init__()
        self.crop_scale = _check_range("crop_scale", crop_scale, 0.0, 1.0)
        self.crop_ratio = _check_range("crop_ratio", crop_ratio, 0.0, None)
        self.flip_prob = _probability("flip_prob", flip_prob)
        self.jitter_prob = _probability("jitter_prob", jitter_prob)
        self.brightness = check_float("brightness", brightness, 0.0, MAX_JITTER)
        self.contrast = check_float("contrast", contrast, 0.0, MAX_JITTER)
        self.saturation = check_float("saturation", saturation, 0.0, MAX_JITTER)
        self.grayscale_prob = _probability("grayscale_prob", grayscale_prob)

    def extra_repr(self) -> str:
        return (f"crop_scale={self.crop_scale}, crop_ratio={self.crop_ratio}, flip_prob={self.flip_prob}, "
                f"jitter_prob={self.jitter_prob}, brightness={self.brightness}, contrast={self.contrast}, "
                f"saturation={self.saturation}, grayscale_prob={self.grayscale_prob}")

    def sample(self, shape: Sequence[int], generator: torch.Generator | None = None, device=None) -> dict[str, Tensor]:
        """Parameters for a batch of `shape` (B, C, H, W), drawn on the generator's device, moved
        to `device`: `box` (B, 4) = (left, top, width, height) as fractions of the image, `flip`,
        `jitter`, `grayscale` (B,) bool, `brightness`, `contrast`, `saturation` (B,) factors.
        Only the enabled ops are drawn."""
        n = int(shape[0])
        where = generator.device if generator is not None else torch.device("cpu")
        params: dict[str, Tensor] = {}
        if self.crop_scale is not None:
            params["box"] = self._sample_boxes(n, generator, where)
        if self.flip_prob > 0:
            params["flip"] = _bernoulli(n, self.flip_prob, generator, where)
        if self.jitter_prob > 0 and (self.brightness or self.contrast or self.saturation):
            params["jitter"] = _bernoulli(n, self.jitter_prob, generator, where)
            for name in ("brightness", "contrast", "saturation"):
                strength = getattr(self, name)
                if strength:
                    params[name] = _uniform(n, max(0.0, 1 - strength), 1 + strength, generator, where)
        if self.grayscale_prob > 0:
            params["grayscale"] = _bernoulli(n, self.grayscale_prob, generator, where)
        return {key: value.to(device) for key, value in params.items()} if device is not None else params

    def _sample_boxes(self, n: int, generator: torch.Generator | None, device) -> Tensor:
        """(n, 4) crop boxes: the first of CROP_TRIES (area, ratio) draws that fits, else the whole image."""
        area = _uniform(n * CROP_TRIES, *self.crop_scale, generator, device).view(n, CROP_TRIES)
        log_low, log_high = math.log(self.crop_ratio[0]), math.log(self.crop_ratio[1])
        ratio = _uniform(n * CROP_TRIES, log_low, log_high, generator, device).exp().view(n, CROP_TRIES)
        width, height = (area * ratio).sqrt(), (area / ratio).sqrt()  # fractions of W and H
        fits = (width <= 1) & (height <= 1)
        found, first = fits.any(1), fits.float().argmax(1)  # argmax: the first box that fits
        width = torch.where(found, width.gather(1, first[:, None])[:, 0], 1.0)
        height = torch.where(found, height.gather(1, first[:, None])[:, 0], 1.0)
        left = torch.rand(n, generator=generator, device=device) * (1 - width)
        top = torch.rand(n, generator=generator, device=device) * (1 - height)
        return torch.stack([left, top, width, height], 1)

    def apply(self, x: Tensor, params: dict[str, Tensor]) -> Tensor:
        """The views (B, C, H, W) of x (B, C, H, W) in [-1, 1] with `params` from `sample`."""
        if x.ndim != 4:
            raise ValueError(f"ViewAugment takes image batches (B, C, H, W), got shape {tuple(x.shape)}")
        for key, value in params.items():
            if value.shape[0] != x.shape[0]:
                raise ValueError(f"params['{key}'] has {value.shape[0]} rows for a batch of {x.shape[0]}")
        params = {key: value.to(x.device) for key, value in params.items()}
        x = self._geometry(x, params)
        if "jitter" in params or "grayscale" in params:
            x = self._colour(x, params)
        return x

    def _geometry(self, x: Tensor, params: dict[str, Tensor]) -> Tensor:
        flip = params.get("flip")
        if "box" not in params:
            return x if flip is None else torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
        left, top, width, height = params["box"].to(x.dtype).unbind(1)
        sign = 1 - 2 * flip.to(x.dtype) if flip is not None else torch.ones_like(width)
        theta = torch.zeros(x.shape[0], 2, 3, dtype=x.dtype, device=x.device)
        theta[:, 0, 0], theta[:, 0, 2] = width * sign, 2 * left + width - 1  # output [-1, 1] -> the box
        theta[:, 1, 1], theta[:, 1, 2] = height, 2 * top + height - 1
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)  # (B, H, W, 2)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    def _colour(self, x: Tensor, params: dict[str, Tensor]) -> Tensor:
        u = (x + 1) / 2  # [0, 1], where the jitter factors are defined
        factor = {key: params[key].to(x.dtype).view(-1, 1, 1, 1) for key in ("brightness", "contrast", "saturation")
                  if key in params}
        jittered = u
        if "brightness" in factor:
            jittered = (jittered * factor["brightness"]).clamp(0, 1)
        if "contrast" in factor:
            mean = luma(jittered).mean((1, 2, 3), keepdim=True)  # (B, 1, 1, 1)
            jittered = (factor["contrast"] * jittered + (1 - factor["contrast"]) * mean).clamp(0, 1)
        if "saturation" in factor and u.shape[1] > 1:
            jittered = (factor["saturation"] * jittered + (1 - factor["saturation"]) * luma(jittered)).clamp(0, 1)
        if "jitter" in params:
            u = torch.where(params["jitter"].view(-1, 1, 1, 1), jittered, u)
        if "grayscale" in params and u.shape[1] > 1:
            u = torch.where(params["grayscale"].view(-1, 1, 1, 1), luma(u).expand_as(u), u)
        return u * 2 - 1

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """A random view of each image of x (B, C, H, W) in [-1, 1]."""
        return self.apply(x, self.sample(x.shape, generator, x.device))
