"""Pairing transforms: each image is combined with a *different* image of the same batch.

The partner of image i is `partner[i]`, a uniform random derangement of the batch, so no image
is ever paired with itself (the authors' `randperm` pairing turns about one image per batch into
a real image labelled fake). A batch of one image raises ValueError.

Each also has `min_changed` (default 0.01: 1% of the pixels; an int is a count; 0: off): an image
whose negative changes fewer pixels than that of the image or of its partner (two blank patches in
cutmix, two identical images, a mixup weight near 0 or 1) gets a new partner (any other image of the batch: that row's partner no longer makes `partner` a
permutation) and new own parameters, up to 10 times; one that still fails is combined with its
own opposite image (-1 where the pixel is >= 0, +1 elsewhere) instead of a partner, mixup with
gamma = 0.5 (min_change.py). Parameters then hold `fallback` bool (B,), present only when some
image fell back.

Each transform is written as `combine(images, partners, params)` on the partner images
themselves; `transform(x, params)` gathers x[partner] and calls it, and `mixture` calls it on the
images that chose the transform and their partners.
"""
from __future__ import annotations

import torch

from negaug.nda.base import NDATransform, Params, check_index, register
from negaug.nda.min_change import (
    DEFAULT_MIN_CHANGED,
    changed_from_both,
    check_min_changed,
    fallback_partners,
    redraw_partners,
    replace_rows,
)
from negaug.nda.sampling import derangement, sample_beta
from negaug.nda.transforms import check_boxes, check_patch_size, patch_mask, sample_patch_boxes, smallest_patch
from negaug.registry import check_float


class PairingTransform(NDATransform):
    """Base of stitch, cutmix and mixup. Parameters: `partner` int64 (B,) plus `make_pair_params`."""

    min_batch_size = 2
    pairs = True

    def __init__(self, min_changed: float = DEFAULT_MIN_CHANGED):
        super().__init__()
        self.min_changed = check_min_changed(f"{self.name} min_changed", min_changed)

    def options(self) -> dict:
        return {"min_changed": self.min_changed}

    def make_params(self, shape: torch.Size, generator: torch.Generator, partner: torch.Tensor | None = None) -> Params:
        """`partner`: a derangement drawn by the caller (mixture draws one for all its pairing
        components: each image uses only one component, so sharing it changes no distribution)."""
        params = {"partner": derangement(shape[0], generator) if partner is None else partner}
        params.update(self.make_pair_params(shape, generator))
        return params

    def make_pair_params(self, shape: torch.Size, generator: torch.Generator) -> Params:
        return {}

    def check_params(self, params: Params, shape: torch.Size) -> None:
        check_index(f"{self.name}: partner", params["partner"], shape[0])

    def changed(self, x: torch.Tensor, out: torch.Tensor, params: Params, rows: torch.Tensor | None = None) -> torch.Tensor:
        """The fewer pixels changed of the own image and of the partner (min_change.py)."""
        return changed_from_both(x, out, params["partner"], rows)

    def redraw(self, params: Params, rows: torch.Tensor, shape: torch.Size, generator: torch.Generator) -> Params:
        """A new partner (any other image) and new own parameters for `rows`, in make_params' order."""
        partner = redraw_partners(shape[0], rows, generator)
        fresh = self.make_pair_params(torch.Size((rows.numel(), *shape[1:])), generator)
        return replace_rows(params, rows, {"partner": partner, **fresh})

    def transform(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        return self.combine_(x, x.index_select(0, params["partner"]), params)


@register("stitch")
class Stitch(PairingTransform):
    """Stitch the first half of each image to the second half of a different image: top/bottom
    (split at row H // 2) or left/right (split at column W // 2), chosen uniformly per image.

    Parameters: `partner` int64 (B,), `split_rows` bool (B,) (True: top of own, bottom of partner),
    and `fallback` when `min_changed` needed it (module docstring).
    """

    def check_image_size(self, height: int, width: int, channels: int | None = None) -> None:
        if height < 2 or width < 2:
            raise ValueError(f"stitch needs images of at least 2x2 pixels to have two halves, got {height}x{width}")
        self.check_min_changed(height, width)

    def fallback_changes(self, height: int, width: int) -> int:
        return min((height - height // 2) * width, height * (width - width // 2))  # the partner's half

    def make_pair_params(self, shape: torch.Size, generator: torch.Generator) -> Params:
        return {"split_rows": torch.rand(shape[0], generator=generator, device=generator.device) < 0.5}

    def combine(self, images: torch.Tensor, partners: torch.Tensor, params: Params) -> torch.Tensor:
        return self.combine_(images, partners.clone(), params)

    def combine_(self, images: torch.Tensor, partners: torch.Tensor, params: Params) -> torch.Tensor:
        # The partner's image with the own top (or left) half copied over it: one pass over half
        # of the pixels, where a 0/1 mask over whole images takes three (faster; not timed idle, so no figure).
        partners = fallback_partners(images, partners, params)
        split_rows = params["split_rows"]
        top, left = split_rows.nonzero().squeeze(1), (~split_rows).nonzero().squeeze(1)
        half_height, half_width = images.shape[-2] // 2, images.shape[-1] // 2
        partners[top, :, :half_height] = images[top, :, :half_height]
        partners[left, :, :, :half_width] = images[left, :, :, :half_width]
        return partners


@register("cutmix")
class CutMix(PairingTransform):
    """Replace a random patch of each image (same rule as cutout: each side in
    [ceil(S/3), floor(S/2)], fully inside) with the pixels of a different image at the same place.

    Parameters: `partner` int64 (B,), `box` int64 (B, 4) = (top, left, height, width), and
    `fallback` when `min_changed` needed it (module docstring).
    """

    def check_image_size(self, height: int, width: int, channels: int | None = None) -> None:
        check_patch_size("cutmix", height, width)
        self.check_min_changed(height, width)

    def fallback_changes(self, height: int, width: int) -> int:
        return smallest_patch(height, width)

    def check_params(self, params: Params, shape: torch.Size) -> None:
        super().check_params(params, shape)
        check_boxes("cutmix", params["box"], shape)

    def make_pair_params(self, shape: torch.Size, generator: torch.Generator) -> Params:
        return {"box": sample_patch_boxes(shape, generator)}

    def combine(self, images: torch.Tensor, partners: torch.Tensor, params: Params) -> torch.Tensor:
        partners = fallback_partners(images, partners, params)
        return torch.lerp(images, partners, patch_mask(params["box"], *images.shape[-2:], images.dtype))


@register("mixup")
class Mixup(PairingTransform):
    """gamma * own + (1 - gamma) * partner with gamma ~ Beta(alpha, alpha) drawn per image.

    The default alpha = 25 is the authors' (FACTS): the density peaks at 0.5 with std 0.07, as the
    paper asks ("alpha chosen so that the distribution has high density at 0.5"). gamma is clamped
    to [0.001, 0.999] so that a negative is never exactly one of its two images.
    Parameters: `partner` int64 (B,), `gamma` float32 (B,) (the weight of the image itself), and
    `fallback` when `min_changed` needed it (module docstring). The clamp keeps a negative from
    being exactly its image; `min_changed` keeps it from being nearly so (small alphas).
    """

    GAMMA_MARGIN = 1e-3
    # Below this alpha nearly every gamma sits at the clamp margin (a real image labelled fake),
    # and far below it (subnormal alphas) the Beta sampler's log-space draws underflow to NaN.
    MIN_ALPHA = 1e-3

    def __init__(self, alpha: float = 25.0, min_changed: float = DEFAULT_MIN_CHANGED):
        super().__init__(min_changed)
        self.alpha = check_float("mixup alpha", alpha, low=self.MIN_ALPHA)  # e.g. 25: gamma concentrated near 0.5

    def options(self) -> dict:
        return {"alpha": self.alpha, "min_changed": self.min_changed}

    def check_image_size(self, height: int, width: int, channels: int | None = None) -> None:
        self.check_min_changed(height, width)

    def fallback_changes(self, height: int, width: int) -> int:
        return height * width  # every pixel moves by at least 0.5, half way to the opposite image

    def with_fallback(self, params: Params, rows: torch.Tensor, shape: torch.Size) -> Params:
        """The fallback mixes half and half with the opposite image: every pixel moves by >= 0.5."""
        params = super().with_fallback(params, rows, shape)
        return {**params, "gamma": params["gamma"].index_fill(0, rows, 0.5)}

    def make_pair_params(self, shape: torch.Size, generator: torch.Generator) -> Params:
        gamma = sample_beta(self.alpha, self.alpha, shape[0], generator)
        return {"gamma": gamma.clamp(self.GAMMA_MARGIN, 1 - self.GAMMA_MARGIN).float()}

    def combine(self, images: torch.Tensor, partners: torch.Tensor, params: Params) -> torch.Tensor:
        partners = fallback_partners(images, partners, params)
        gamma = params["gamma"].to(images.dtype).view(-1, 1, 1, 1)
        return torch.lerp(partners, images, gamma)  # partners + gamma * (images - partners)
