"""Pairing transforms: each image is combined with a *different* image of the same batch.

The partner of image i is `partner[i]`, a uniform random derangement of the batch, so no image
is ever paired with itself (the authors' `randperm` pairing turns about one image per batch into
a real image labelled fake). A batch of one image raises ValueError.

Each transform is written as `combine(images, partners, params)` on the partner images
themselves; `transform(x, params)` gathers x[partner] and calls it, and `mixture` calls it on the
images that chose the transform and their partners.
"""
from __future__ import annotations

import torch

from negaug.nda.base import NDATransform, Params, check_index, register
from negaug.nda.sampling import derangement, sample_beta
from negaug.nda.transforms import check_boxes, check_patch_size, patch_mask, sample_patch_boxes
from negaug.registry import check_float


class PairingTransform(NDATransform):
    """Base of stitch, cutmix and mixup. Parameters: `partner` int64 (B,) plus `make_pair_params`."""

    min_batch_size = 2
    pairs = True

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

    def transform(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        return self.combine_(x, x.index_select(0, params["partner"]), params)


@register("stitch")
class Stitch(PairingTransform):
    """Stitch the first half of each image to the second half of a different image: top/bottom
    (split at row H // 2) or left/right (split at column W // 2), chosen uniformly per image.

    Parameters: `partner` int64 (B,), `split_rows` bool (B,) (True: top of own, bottom of partner).
    """

    def check_image_size(self, height: int, width: int, channels: int | None = None) -> None:
        if height < 2 or width < 2:
            raise ValueError(f"stitch needs images of at least 2x2 pixels to have two halves, got {height}x{width}")

    def make_pair_params(self, shape: torch.Size, generator: torch.Generator) -> Params:
        return {"split_rows": torch.rand(shape[0], generator=generator, device=generator.device) < 0.5}

    def combine(self, images: torch.Tensor, partners: torch.Tensor, params: Params) -> torch.Tensor:
        return self.combine_(images, partners.clone(), params)

    def combine_(self, images: torch.Tensor, partners: torch.Tensor, params: Params) -> torch.Tensor:
        # The partner's image with the own top (or left) half copied over it: one pass over half
        # of the pixels, where a 0/1 mask over whole images takes three (2x faster on 64x64).
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

    Parameters: `partner` int64 (B,), `box` int64 (B, 4) = (top, left, height, width).
    """

    def check_image_size(self, height: int, width: int, channels: int | None = None) -> None:
        check_patch_size("cutmix", height, width)

    def check_params(self, params: Params, shape: torch.Size) -> None:
        super().check_params(params, shape)
        check_boxes("cutmix", params["box"], shape)

    def make_pair_params(self, shape: torch.Size, generator: torch.Generator) -> Params:
        return {"box": sample_patch_boxes(shape, generator)}

    def combine(self, images: torch.Tensor, partners: torch.Tensor, params: Params) -> torch.Tensor:
        return torch.lerp(images, partners, patch_mask(params["box"], *images.shape[-2:], images.dtype))


@register("mixup")
class Mixup(PairingTransform):
    """gamma * own + (1 - gamma) * partner with gamma ~ Beta(alpha, alpha) drawn per image.

    The default alpha = 25 is the authors' (FACTS): the density peaks at 0.5 with std 0.07, as the
    paper asks ("alpha chosen so that the distribution has high density at 0.5"). gamma is clamped
    to [0.001, 0.999] so that a negative is never exactly one of its two images.
    Parameters: `partner` int64 (B,), `gamma` float32 (B,) (the weight of the image itself).
    """

    GAMMA_MARGIN = 1e-3
    # Below this alpha nearly every gamma sits at the clamp margin (a real image labelled fake),
    # and far below it (subnormal alphas) the Beta sampler's log-space draws underflow to NaN.
    MIN_ALPHA = 1e-3

    def __init__(self, alpha: float = 25.0):
        super().__init__()
        self.alpha = check_float("mixup alpha", alpha, low=self.MIN_ALPHA)  # e.g. 25: gamma concentrated near 0.5

    def options(self) -> dict:
        return {"alpha": self.alpha}

    def make_pair_params(self, shape: torch.Size, generator: torch.Generator) -> Params:
        gamma = sample_beta(self.alpha, self.alpha, shape[0], generator)
        return {"gamma": gamma.clamp(self.GAMMA_MARGIN, 1 - self.GAMMA_MARGIN).float()}

    def combine(self, images: torch.Tensor, partners: torch.Tensor, params: Params) -> torch.Tensor:
        gamma = params["gamma"].to(images.dtype).view(-1, 1, 1, 1)
        return torch.lerp(partners, images, gamma)  # partners + gamma * (images - partners)
