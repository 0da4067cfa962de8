"""Single-image NDA transforms (Appendix B and Table 1 of the paper): each image is transformed on
its own. Pairing transforms (stitch, cutmix, mixup) live in `pairing.py`, `other_data` in
`other_data.py`, `mixture` and `positive` in `compose.py`.
"""
from __future__ import annotations

import itertools
from typing import Sequence

import torch

from negaug.nda.base import NDATransform, Params, RowWriter, register, select_rows
from negaug.nda.native import crop_resize, cutout_boxes, jigsaw_tiles, normal_noise, patch_boxes_from_uniforms
from negaug.nda.sampling import MAX_REJECTION_ROUNDS


def check_probability(name: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name}={value} is outside [0, 1]")
    return float(value)


def draw_flags(batch: int, p: float, generator: torch.Generator) -> torch.Tensor:
    """(batch,) bool, each True with probability p; no draw at all when p is 0 or 1."""
    if p >= 1.0 or p <= 0.0:
        return torch.full((batch,), p >= 1.0, dtype=torch.bool, device=generator.device)
    return torch.rand(batch, generator=generator, device=generator.device) < p


def _permutation_table(size: int, allow_identity: bool) -> torch.Tensor:
    """int64 (size! or size! - 1, size): every permutation of range(size), the identity first unless excluded."""
    perms = list(itertools.permutations(range(size)))
    return torch.tensor(perms if allow_identity else perms[1:])


@register("jigsaw")
class Jigsaw(RowWriter):
    """Jigsaw-K: cut each image into K x K tiles of (H/K, W/K) and shuffle them with a permutation
    drawn uniformly per image among the (K*K)! - 1 non-identity ones (all of them with
    `allow_identity=True`, the noisy variant of Appendix O). H and W must be divisible by K.

    Parameters: `perm` int64 (B, K*K): output tile j (row-major) shows input tile perm[b, j].
    """

    def __init__(self, k: int = 2, allow_identity: bool = False):
        super().__init__()
        if int(k) != k or k < 2:
            raise ValueError(f"jigsaw k={k} must be an integer >= 2 (k=1 has only the identity permutation)")
        self.k = int(k)
        self.allow_identity = bool(allow_identity)
        # k=2: index a table of the 23 (24) permutations, exactly uniform and one draw per image.
        self._table = _permutation_table(4, allow_identity) if self.k == 2 else None

    def options(self) -> dict:
        return {"k": self.k, "allow_identity": self.allow_identity}

    def check_image_size(self, height: int, width: int, channels: int | None = None) -> None:
        if height % self.k or width % self.k:
            raise ValueError(f"jigsaw k={self.k} must divide the image size, got {height}x{width}; pick a k that divides both")

    def make_params(self, shape: torch.Size, generator: torch.Generator) -> Params:
        if self._table is not None:
            table = self._table.to(generator.device)
            return {"perm": table[torch.randint(len(table), (shape[0],), generator=generator, device=generator.device)]}
        tiles = self.k * self.k
        perm = self._random_perms(shape[0], generator)
        if not self.allow_identity:
            # Redraw only the identity rows (probability 1/(K*K)!): each row is then uniform
            # over the non-identity permutations.
            identity = torch.arange(tiles, device=generator.device)
            for _ in range(MAX_REJECTION_ROUNDS):
                bad = (perm == identity).all(1).nonzero().squeeze(1)
                if bad.numel() == 0:
                    break
                perm[bad] = self._random_perms(bad.numel(), generator)
            assert not (perm == identity).all(1).any(), "jigsaw: identity rejection did not terminate"
        return {"perm": perm}

    def _random_perms(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n uniform permutations of K*K tiles: argsort of float64 keys (ties have probability ~1e-15)."""
        keys = torch.rand(n, self.k * self.k, generator=generator, device=generator.device, dtype=torch.float64)
        return keys.argsort(1)

    def write(self, x: torch.Tensor, params: Params, rows: torch.Tensor | None, out: torch.Tensor | None,
              out_rows: torch.Tensor | None) -> torch.Tensor:
        return jigsaw_tiles(x, params["perm"], self.k, rows, out, out_rows)


class _Flip(NDATransform):
    """Flip each image with probability p (p=1: always, the NDA default; p=0.5: Appendix O's
    noisy variant, or a positive augmentation). Parameters: `flip` bool (B,)."""

    dim: int

    def __init__(self, p: float = 1.0):
        super().__init__()
        self.p = check_probability("p", p)

    def options(self) -> dict:
        return {"p": self.p}

    def make_params(self, shape: torch.Size, generator: torch.Generator) -> Params:
        return {"flip": draw_flags(shape[0], self.p, generator)}

    def transform(self, x: torch.Tensor, params: Params, rows: torch.Tensor | None = None) -> torch.Tensor:
        own = select_rows(x, rows)
        flip = params["flip"]
        if bool(flip.all()):  # the NDA case: one flip, no copy of the rest
            return own.flip(self.dim)
        flipped = flip.nonzero().squeeze(1)
        return own.clone().index_copy_(0, flipped, own.index_select(0, flipped).flip(self.dim))


@register("hflip")
class HorizontalFlip(_Flip):
    __doc__ = "Horizontal flip (left-right). " + _Flip.__doc__
    dim = -1


@register("vflip")
class VerticalFlip(_Flip):
    __doc__ = "Vertical flip (upside down). " + _Flip.__doc__
    dim = -2


@register("gaussian_noise")
class GaussianNoise(NDATransform):
    """Add N(0, std^2) noise per pixel, then clamp to [-1, 1] (the image range).

    `std` is in image units ([-1, 1] range); the paper does not state its value, 0.1 is our choice.
    Parameters: `key` int64 (B,): image b's noise is `negaug.nda.native.normal_noise(key[b])`, a
    counter-based stream (SplitMix64 bits, Box-Muller; float32, |z| <= 5.77). Drawing one key per
    image instead of every pixel from the generator makes the transform 2-4x faster on the CPU
    (torch's Mersenne Twister dominated), and the bits are the same on every device.
    """

    def __init__(self, std: float = 0.1):
        super().__init__()
        if not std > 0:
            raise ValueError(f"gaussian_noise std={std} must be positive")
        self.std = float(std)

    def options(self) -> dict:
        return {"std": self.std}

    def make_params(self, shape: torch.Size, generator: torch.Generator) -> Params:
        keys = torch.randint(-(1 << 63), (1 << 63) - 1, (shape[0],), generator=generator, device=generator.device)
        return {"key": keys}

    def transform(self, x: torch.Tensor, params: Params, rows: torch.Tensor | None = None) -> torch.Tensor:
        own = select_rows(x, rows)
        noise = normal_noise(params["key"], own[0].numel()).view(own.shape)
        return own.add(noise.to(own.dtype), alpha=self.std).clamp_(-1.0, 1.0)


@register("random_crop")
class RandomCrop(RowWriter):
    """Crop a random region of each image and resize it back to H x W (bilinear).

    The crop covers a fraction of the image area drawn uniformly from `scale` (default 0.25 to
    0.75, our choice: the paper does not state it), keeps the image's aspect ratio and lies fully
    inside the image. Parameters: `box` float32 (B, 4) = (top, left, height, width) as fractions
    of H and W. Resampling is bilinear with half-pixel centres (grid_sample's align_corners=False)
    and differentiable.
    """

    def __init__(self, scale: Sequence[float] = (0.25, 0.75)):
        super().__init__()
        low, high = (float(v) for v in scale)
        if not 0.0 < low <= high <= 1.0:
            raise ValueError(f"random_crop scale={tuple(scale)} must satisfy 0 < low <= high <= 1 (fractions of the image area)")
        self.scale = (low, high)

    def options(self) -> dict:
        return {"scale": self.scale}

    def make_params(self, shape: torch.Size, generator: torch.Generator) -> Params:
        low, high = self.scale
        u = torch.rand(shape[0], 3, generator=generator, device=generator.device, dtype=torch.float64)
        side = (low + (high - low) * u[:, 0]).sqrt()  # side fraction: same aspect ratio as the image
        top, left = (1 - side) * u[:, 1], (1 - side) * u[:, 2]
        return {"box": torch.stack([top, left, side, side], 1).float()}

    def write(self, x: torch.Tensor, params: Params, rows: torch.Tensor | None, out: torch.Tensor | None,
              out_rows: torch.Tensor | None) -> torch.Tensor:
        # Separable bilinear (columns, then rows), two taps per pixel: about 3x faster than
        # resampling matrices or grid_sample on the CPU in torch, and a C kernel where built.
        return crop_resize(x, params["box"], rows, out, out_rows)


def patch_bounds(size: int) -> tuple[int, int]:
    """Inclusive bounds of a cutout / cutmix patch side on an axis of `size` pixels:
    ceil(size / 3) .. floor(size / 2) (never empty for size >= 2)."""
    return -(-size // 3), size // 2


def check_patch_size(name: str, height: int, width: int) -> None:
    if height < 2 or width < 2:
        raise ValueError(f"{name} needs images of at least 2x2 pixels for a patch of 1/3 to 1/2 of each side, got {height}x{width}")


def sample_patch_boxes(shape: torch.Size, generator: torch.Generator) -> torch.Tensor:
    """int64 (B, 4) = (top, left, height, width): a patch per image with each side uniform in
    `patch_bounds`, at a uniform position fully inside the image. One float64 uniform u per
    number, floored: side = low + floor(u * count), start = floor(u * (size - side + 1)) (the
    product of u < 1 never rounds up to the count, so no clamp is needed; bias below 2^-40). The
    arithmetic runs in the C kernel where built, else in torch, with the same result."""
    batch, _, height, width = shape
    u = torch.rand(batch, 4, generator=generator, device=generator.device, dtype=torch.float64)
    return patch_boxes_from_uniforms(u, height, width)


@register("cutout")
class Cutout(RowWriter):
    """Replace a random patch of each image (height in [ceil(H/3), floor(H/2)], width likewise,
    uniform position fully inside) with that patch's own per-channel mean (the paper's variant;
    DeVries & Taylor fill with zeros), summed in float64. Parameters: `box` int64 (B, 4) =
    (top, left, height, width).
    """

    def check_image_size(self, height: int, width: int, channels: int | None = None) -> None:
        check_patch_size("cutout", height, width)

    def make_params(self, shape: torch.Size, generator: torch.Generator) -> Params:
        return {"box": sample_patch_boxes(shape, generator)}

    def write(self, x: torch.Tensor, params: Params, rows: torch.Tensor | None, out: torch.Tensor | None,
              out_rows: torch.Tensor | None) -> torch.Tensor:
        return cutout_boxes(x, params["box"], rows, out, out_rows)
