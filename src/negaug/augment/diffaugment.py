"""DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training").

The same random, differentiable transform is applied to every image D sees, real and generated,
in D's step and in G's, so D cannot overfit the few real images and G's gradient passes through
the augmentation. The ops and their ranges follow the authors' `DiffAugment_pytorch.py`
(github.com/mit-han-lab/data-efficient-gans), for images in [-1, 1]:

- color: brightness + U(-0.5, 0.5); saturation: the deviation from the per-pixel channel mean
  times U(0, 2); contrast: the deviation from the per-image mean times U(0.5, 1.5);
- translation: an integer shift t of up to int(size / 8 + 0.5) pixels in each direction, zero
  fill; the output pixel (i, j) is the input pixel (i + t_y, j + t_x), so a shift +t moves the
  content t pixels up / left, as theirs;
- cutout: a square of int(size / 2 + 0.5) pixels set to 0, centred anywhere in the image (it may be
  clipped).

Sizes are rounded half up as the authors' latest `DiffAugment_pytorch.py` does (`int(size * ratio +
0.5)`; their first version floored, size // 8; the two agree at every size divisible by 8, resp. 2).
A draw replayed through `apply` gives the authors' image for the same numbers: the shifts are
drawn rows first, then columns (their translation_x, translation_y), the cutout centres likewise.
Differences from the authors' code: every draw comes from an explicit generator (theirs use the
global RNG) and parameters are sampled apart from their application (`sample` / `apply`).
"""
from __future__ import annotations

import torch
from torch import Tensor

from negaug.registry import closest

Params = dict[str, Tensor]  # name -> (B,) per-sample parameters on the CPU

POLICY_OPS = ("color", "translation", "cutout")  # the names a policy string may hold
TRANSLATION_RATIO = 0.125  # the largest shift is int(size * 0.125 + 0.5) pixels (the authors' ratio)
CUTOUT_RATIO = 0.5  # the cutout square is int(size * 0.5 + 0.5) pixels


def reference_size(size: int, ratio: float) -> int:
    """int(size * ratio + 0.5): `size` times `ratio` rounded half up, as DiffAugment_pytorch.py
    (28 px: a shift of 4 where 28 // 8 = 3; 33 px: a cutout of 17 where 33 // 2 = 16)."""
    return int(size * ratio + 0.5)


def translate(x: Tensor, shift_y: Tensor, shift_x: Tensor, padding: str = "zeros") -> Tensor:
    """Shift each image by whole pixels: out[b, :, i, j] = x[b, :, i - shift_y[b], j - shift_x[b]].

    x: (B, C, H, W); shift_y, shift_x: (B,) integers with |shift| < H (resp. W). Pixels shifted in
    from outside are 0 (`padding="zeros"`) or the mirror image across the border without repeating
    the edge pixel (`"reflect"`, as torch's reflect padding). Differentiable in x (two gathers).
    """
    if padding not in ("zeros", "reflect"):
        raise ValueError(f"padding='{padding}' is not one of zeros, reflect")
    batch, channels, height, width = x.shape
    shift_y, shift_x = shift_y.to(x.device).long(), shift_x.to(x.device).long()
    rows = torch.arange(height, device=x.device) - shift_y[:, None]  # (B, H) source row of each row
    cols = torch.arange(width, device=x.device) - shift_x[:, None]  # (B, W)
    if padding == "reflect":
        rows = (height - 1) - ((height - 1) - rows.abs()).abs()  # k < 0 -> -k; k > H-1 -> 2(H-1) - k
        cols = (width - 1) - ((width - 1) - cols.abs()).abs()
    inside = ((rows >= 0) & (rows < height))[:, :, None] & ((cols >= 0) & (cols < width))[:, None, :]  # (B, H, W)
    rows, cols = rows.clamp(0, height - 1), cols.clamp(0, width - 1)
    out = x.gather(2, rows[:, None, :, None].expand(batch, channels, height, width))
    out = out.gather(3, cols[:, None, None, :].expand(batch, channels, height, width))
    return out if padding == "reflect" else out * inside[:, None].to(x.dtype)


def cutout(x: Tensor, center_y: Tensor, center_x: Tensor, size_y: int, size_x: int) -> Tensor:
    """Zero a size_y x size_x rectangle of each image: rows center_y - size_y // 2 up to (not
    including) that + size_y, the part inside the image. x: (B, C, H, W); centres (B,) integers."""
    top = (center_y.to(x.device).long() - size_y // 2)[:, None]  # (B, 1)
    left = (center_x.to(x.device).long() - size_x // 2)[:, None]
    rows = torch.arange(x.shape[2], device=x.device)
    cols = torch.arange(x.shape[3], device=x.device)
    in_rows = (rows >= top) & (rows < top + size_y)  # (B, H)
    in_cols = (cols >= left) & (cols < left + size_x)  # (B, W)
    keep = ~(in_rows[:, :, None] & in_cols[:, None, :])  # (B, H, W)
    return x * keep[:, None].to(x.dtype)


def adjust_color(x: Tensor, brightness: Tensor, saturation: Tensor, contrast: Tensor) -> Tensor:
    """x + brightness, then saturation and contrast factors, each (B,) (the authors' order).
    Saturation scales the deviation from the channel mean of each pixel (a no-op for one channel),
    contrast the deviation from the mean of the whole image."""
    def per_sample(value: Tensor) -> Tensor:
        return value.to(device=x.device, dtype=x.dtype).view(-1, 1, 1, 1)

    x = x + per_sample(brightness)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * per_sample(saturation) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * per_sample(contrast) + mean


def parse_policy(policy: str) -> tuple[str, ...]:
    """"color,translation" -> ("color", "translation"); ValueError naming the valid ops."""
    ops = tuple(name.strip() for name in policy.split(","))
    for name in ops:
        if name not in POLICY_OPS:
            raise ValueError(f"unknown DiffAugment op '{name}'{closest(name, POLICY_OPS)} in policy '{policy}'; "
                             f"valid: {', '.join(POLICY_OPS)} (comma-separated, e.g. color,translation,cutout)")
    if len(set(ops)) < len(ops):
        raise ValueError(f"DiffAugment policy '{policy}' names an op twice; give each of {', '.join(POLICY_OPS)} at most once")
    return ops


class DiffAugment:
    """The DiffAugment policy `policy` ("color,translation,cutout" or a part of it, in any order:
    the ops run in the order given). Call it on (B, C, H, W) images in [-1, 1]."""

    def __init__(self, policy: str):
        self.ops = parse_policy(policy)
        self.policy = ",".join(self.ops)

    def __repr__(self) -> str:
        return f"DiffAugment('{self.policy}')"

    def sample(self, batch: int, height: int, width: int, generator: torch.Generator) -> Params:
        """The per-sample parameters of a batch, drawn on the CPU in a fixed order (op by op)."""
        params: Params = {}
        for op in self.ops:
            if op == "color":
                params["brightness"] = torch.rand(batch, generator=generator) - 0.5  # U(-0.5, 0.5)
                params["saturation"] = torch.rand(batch, generator=generator) * 2  # U(0, 2)
                params["contrast"] = torch.rand(batch, generator=generator) + 0.5  # U(0.5, 1.5)
            elif op == "translation":
                max_y, max_x = reference_size(height, TRANSLATION_RATIO), reference_size(width, TRANSLATION_RATIO)
                params["shift_y"] = torch.randint(-max_y, max_y + 1, (batch,), generator=generator)
                params["shift_x"] = torch.randint(-max_x, max_x + 1, (batch,), generator=generator)
            else:  # cutout: the centre ranges over the image, one more position for even sizes (authors)
                size_y, size_x = reference_size(height, CUTOUT_RATIO), reference_size(width, CUTOUT_RATIO)
                params["center_y"] = torch.randint(0, height + 1 - size_y % 2, (batch,), generator=generator)
                params["center_x"] = torch.randint(0, width + 1 - size_x % 2, (batch,), generator=generator)
        return params

    def apply(self, x: Tensor, params: Params) -> Tensor:
        """x (B, C, H, W) augmented with `params` (from `sample`); differentiable in x."""
        for op in self.ops:
            if op == "color":
                x = adjust_color(x, params["brightness"], params["saturation"], params["contrast"])
            elif op == "translation":  # out[i, j] = x[i + t_y, j + t_x], as the authors'
                x = translate(x, -params["shift_y"], -params["shift_x"], padding="zeros")
            else:
                x = cutout(x, params["center_y"], params["center_x"],
                           reference_size(x.shape[2], CUTOUT_RATIO), reference_size(x.shape[3], CUTOUT_RATIO))
        return x

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        if x.dim() != 4:
            raise ValueError(f"DiffAugment needs images (B, C, H, W), got shape {tuple(x.shape)}")
        return self.apply(x, self.sample(x.shape[0], x.shape[2], x.shape[3], generator))
