"""Pairing transforms: each image is combined with a *different* image of the same batch.

The partner of image i is `partner[i]`, a uniform random derangement of the batch, so no image
is ever paired with itself (the authors' `randperm` pairing turns about one image per batch into
a real image labelled fake). A batch of one image raises ValueError.
"""
from __future__ import annotations

import torch

from negaug.nda.base import Params, RowWriter, register
from negaug.nda.native import cutmix_boxes, mixup_blend, stitch_halves
from negaug.nda.sampling import derangement, sample_beta
from negaug.nda.transforms import check_patch_size, sample_patch_boxes


class PairingTransform(RowWriter):
    """Base of stitch, cutmix and mixup. Parameters: `partner` int64 (B,) plus `make_pair_params`."""

    min_batch_size = 2

    def make_params(self, shape: torch.Size, generator: torch.Generator, partner: torch.Tensor | None = None) -> Params:
        """`partner`: a derangement drawn by the caller (mixture draws one for all its pairing
        components: each image uses only one component, so sharing it changes no distribution)."""
        params = {"partner": derangement(shape[0], generator) if partner is None else partner}
        params.update(self.make_pair_params(shape, generator))
        return params

    def make_pair_params(self, shape: torch.Size, generator: torch.Generator) -> Params:
        return {}


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

    def write(self, x: torch.Tensor, params: Params, rows: torch.Tensor | None, out: torch.Tensor | None,
              out_rows: torch.Tensor | None) -> torch.Tensor:
        return stitch_halves(x, params["partner"], params["split_rows"], rows, out, out_rows)


@register("cutmix")
class CutMix(PairingTransform):
    """Replace a random patch of each image (same rule as cutout: each side in
    [ceil(S/3), floor(S/2)], fully inside) with the pixels of a different image at the same place.

    Parameters: `partner` int64 (B,), `box` int64 (B, 4) = (top, left, height, width).
    """

    def check_image_size(self, height: int, width: int, channels: int | None = None) -> None:
        check_patch_size("cutmix", height, width)

    def make_pair_params(self, shape: torch.Size, generator: torch.Generator) -> Params:
        return {"box": sample_patch_boxes(shape, generator)}

    def write(self, x: torch.Tensor, params: Params, rows: torch.Tensor | None, out: torch.Tensor | None,
              out_rows: torch.Tensor | None) -> torch.Tensor:
        return cutmix_boxes(x, params["partner"], params["box"], rows, out, out_rows)


@register("mixup")
class Mixup(PairingTransform):
    """gamma * own + (1 - gamma) * partner with gamma ~ Beta(alpha, alpha) drawn per image.

    The default alpha = 25 is the authors' (FACTS): the density peaks at 0.5 with std 0.07, as the
    paper asks ("alpha chosen so that the distribution has high density at 0.5"). gamma is clamped
    to [0.001, 0.999] so that a negative is never exactly one of its two images.
    Parameters: `partner` int64 (B,), `gamma` float32 (B,) (the weight of the image itself).
    """

    GAMMA_MARGIN = 1e-3

    def __init__(self, alpha: float = 25.0):
        super().__init__()
        if not alpha > 0:
            raise ValueError(f"mixup alpha={alpha} must be positive (e.g. 25: gamma concentrated near 0.5)")
        self.alpha = float(alpha)

    def options(self) -> dict:
        return {"alpha": self.alpha}

    def make_pair_params(self, shape: torch.Size, generator: torch.Generator) -> Params:
        gamma = sample_beta(self.alpha, self.alpha, shape[0], generator)
        return {"gamma": gamma.clamp(self.GAMMA_MARGIN, 1 - self.GAMMA_MARGIN).float()}

    def write(self, x: torch.Tensor, params: Params, rows: torch.Tensor | None, out: torch.Tensor | None,
              out_rows: torch.Tensor | None) -> torch.Tensor:
        return mixup_blend(x, params["partner"], params["gamma"], rows, out, out_rows)
