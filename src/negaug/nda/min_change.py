"""Negatives that are never positives in disguise: a minimum number of changed pixels.

A negative that equals its source image, or changes only a few of its pixels, is a real image
labelled fake. Without a check, on MNIST-5k (all 5000 images, 32 px, batches of 64, seed 0) 1.6%
of cutout negatives equal their source (a patch over the uniform background filled with its own
mean) and 1.5% of cutmix negatives change at most 5 pixels (0.8% none: two blank patches);
benchmarks/nda_min_changed.py measures it. Transforms with a `min_changed` option (cutout, cutmix,
mixup, stitch; a mixture honours its components') enforce it whenever they draw (`forward`, and
`sample(shape, generator, images=x)`):

1. draw the parameters of the whole batch and apply them, as without the option;
2. count, per image, the changed pixels: positions (h, w) where some channel moved by more than
   CHANGE_TOLERANCE (half an 8-bit level of [-1, 1] images, so a change that survives saving);
   a pairing transform counts against both its images and keeps the fewer, since a mixup with a
   weight near 0 is its partner in disguise (a real image labelled fake all the same);
3. redraw the parameters of the images below the minimum only (pairing transforms: a new partner,
   any other image of the batch, and new own parameters), from the same generator, and apply them
   to those images; at most MAX_REDRAWS rounds;
4. an image still below the minimum (a uniform image, two identical images) falls back
   deterministically: its `fallback` parameter is set, and the transform then uses the image's
   `opposite` (each pixel moved to the far end of [-1, 1]) in place of the partner image (cutmix,
   mixup with gamma = 0.5, stitch) or of the patch mean (cutout). Every pixel the fallback touches
   moves by at least 1, so a minimum up to `fallback_changes(H, W)` of the own image always holds
   (checked when the image size is known). A fallen-back negative does not use its partner, and
   is not checked against it.

Clips (B, T, C, H, W) are checked folded to (B, T * C, H, W) (base.py): a position (h, w) counts
as changed when some channel of some frame moved, and the minimum is a fraction of H * W, as for
one image; a redraw or a fallback applies to the whole clip (one draw per clip).

The batch keeps its size and order: negative i is still made from real image i (whose label it
takes in conditional runs). The final parameters replay: `apply(x, sample(x.shape, g, images=x))`
equals `forward(x, g)`. Images that pass on the first draw keep it, so a batch where every image
passes gets exactly the draw it got without the option; after a redraw the generator has advanced
further, so later draws differ from a run without the option.
"""
from __future__ import annotations

import math
import numbers
from typing import Any

import torch
from torch import nn

from negaug.registry import check_float, check_int

Params = dict[str, torch.Tensor]  # as in base.py, which imports this module

CHANGE_TOLERANCE = 1 / 255  # half an 8-bit level in [-1, 1] units: smaller changes round away
MAX_REDRAWS = 10  # rounds before the fallback: no MNIST-5k image needs it (mixup alpha=0.1: 0.04%)
DEFAULT_MIN_CHANGED = 0.01  # 1% of the pixels: 11 of a 32x32 image; a cutout patch has >= 121


def check_min_changed(name: str, value: Any) -> float:
    """`value` as a minimum of changed pixels: an integer count >= 0 (kept an int), or a float
    fraction of the image's pixels in [0, 1) (0: no check). A float >= 1 is refused rather than
    read as a count."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return check_int(name, value, low=0)
    try:
        return check_float(name, value, 0.0, 1.0, open_high=True)
    except ValueError as err:
        raise ValueError(f"{err} (a fraction of the pixels; give an integer for a count)") from None


def required_pixels(min_changed: float, height: int, width: int) -> int:
    """The number of pixels `min_changed` asks of a height x width image (a fraction is rounded up)."""
    if isinstance(min_changed, int):
        return min_changed
    return math.ceil(round(min_changed * height * width, 9))  # 0.1 * 30 is 3.0000000000000004


def check_fits(name: str, min_changed: float, height: int, width: int, guaranteed: int) -> None:
    """ValueError when the fallback, which changes `guaranteed` pixels, cannot meet `min_changed`."""
    required = required_pixels(min_changed, height, width)
    if required > guaranteed:
        raise ValueError(f"{name} min_changed={min_changed} asks for {required} changed pixels of a {height}x{width} "
                         f"image, more than the {guaranteed} its fallback always changes; give at most {guaranteed} "
                         f"(a fraction <= {guaranteed / (height * width):.3g})")


def changed_pixels(x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """int64 (B,): pixels (h, w) of each image where some channel of `out` differs from `x`
    (both (B, C, H, W)) by more than CHANGE_TOLERANCE."""
    # In-place ops and a float sum of 0/1 (exact below 2^24 pixels): faster on the CPU
    # than a bool mask summed to int64; grayscale skips the channel reduction.
    with torch.no_grad():  # a count: no graph, even when x requires grad
        diff = (out - x).abs_()
    diff = diff[:, 0] if diff.shape[1] == 1 else diff.amax(1)
    return diff.gt_(CHANGE_TOLERANCE).flatten(1).sum(1, dtype=torch.float32).long()


def changed_from_both(x: torch.Tensor, out: torch.Tensor, partner: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
    """int64 (R,): the fewer of the pixels that `out` (R, C, H, W) changes of its own image and of
    its partner, x[rows] and x[partner[rows]] (rows None: all of x), so that a mix with a weight
    near 0 or 1, which is its partner or itself in disguise, fails either way."""
    own = x if rows is None else x.index_select(0, rows)
    partners = x.index_select(0, partner if rows is None else partner.index_select(0, rows))
    return torch.minimum(changed_pixels(own, out), changed_pixels(partners, out))


def opposite(x: torch.Tensor) -> torch.Tensor:
    """-1 where x >= 0, +1 where x < 0 (x's shape and dtype): every pixel moves by at least 1."""
    return (x < 0).to(x.dtype).mul_(2).sub_(1)


def fallback_rows(params: Params) -> torch.Tensor | None:
    """Indices of the images whose `fallback` flag is set, or None when none is (or no flag)."""
    fallback = params.get("fallback")
    if fallback is None or not bool(fallback.any()):
        return None
    return fallback.nonzero().squeeze(1)


def fallback_partners(images: torch.Tensor, partners: torch.Tensor, params: Params) -> torch.Tensor:
    """`partners` (R, C, H, W), the rows flagged `fallback` replaced by their own image's opposite
    (a new tensor then: the caller's is not written)."""
    rows = fallback_rows(params)
    if rows is None:
        return partners
    return partners.index_copy(0, rows, opposite(images.index_select(0, rows)))


def replace_rows(params: Params, rows: torch.Tensor, fresh: Params) -> Params:
    """`params` with `rows` of each key of `fresh` (R, ...) replaced; new tensors, inputs kept."""
    updated = dict(params)
    for key, value in fresh.items():
        updated[key] = params[key].index_copy(0, rows, value.to(params[key].device, params[key].dtype))
    return updated


def redraw_partners(batch: int, rows: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """int64 (R,) on the generator's device: for each of `rows`, a uniform partner among the other
    batch - 1 images (a fallen-through row keeps partner != row, not a permutation of the batch)."""
    draw = torch.randint(batch - 1, (rows.numel(),), generator=generator, device=generator.device)
    return draw + (draw >= rows.to(generator.device)).long()


def rows_output(transform: nn.Module, x: torch.Tensor, params: Params, rows: torch.Tensor) -> torch.Tensor:
    """`transform`'s negatives of x[rows] (R, C, H, W) under the batch's `params` (on x's device)."""
    own = {key: value.index_select(0, rows) for key, value in params.items()}
    images = x.index_select(0, rows)
    if transform.pairs:  # combine_ may write into the fresh gather of the partners
        return transform.combine_(images, x.index_select(0, own["partner"]), own)
    return transform.transform(images, own)


def enforce_min_changed(transform: nn.Module, x: torch.Tensor, out: torch.Tensor, params: Params,
                        generator: torch.Generator, shape: torch.Size | None = None) -> tuple[torch.Tensor, Params]:
    """(negatives, params) where every negative changes at least its required pixels of x: rows
    below it are redrawn (only they), then fall back (module docstring). `out` is written in place.
    `shape`: the shape the params were drawn for (default x.shape; (B, C, H, W) when x is a clip
    batch folded to (B, T * C, H, W)). One host sync per round (the count of rows to redraw sizes
    the generator's draw)."""
    shape = x.shape if shape is None else shape
    required = transform.required_changed(params, shape)  # (B,) int64 on x's device
    bad = (transform.changed(x, out, params) < required).nonzero().squeeze(1)
    for _ in range(MAX_REDRAWS):
        if bad.numel() == 0:
            return out, params
        params = transform.redraw(params, bad, shape, generator)
        redone = rows_output(transform, x, params, bad)
        out[bad] = redone
        bad = bad[transform.changed(x, redone, params, bad) < required.index_select(0, bad)]
    if bad.numel():
        params = transform.with_fallback(params, bad, shape)
        out[bad] = rows_output(transform, x, params, bad)
    return out, params
