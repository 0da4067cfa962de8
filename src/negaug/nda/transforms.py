"""Single-image NDA transforms (Appendix B and Table 1 of the paper): each image is transformed on
its own, the whole batch at once. Pairing transforms (stitch, cutmix, mixup) live in `pairing.py`,
`other_data` in `other_data.py`, `mixture` and `positive` in `compose.py`.
"""
from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from negaug.nda.base import NDATransform, Params, check_index, register
from negaug.nda.min_change import (
    DEFAULT_MIN_CHANGED,
    check_min_changed,
    fallback_rows,
    opposite,
)
from negaug.nda.sampling import MAX_REJECTION_ROUNDS
from negaug.registry import check_bool, check_float, check_int, check_list


def check_probability(name: str, value: float) -> float:
    return check_float(name, value, 0.0, 1.0)


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
class Jigsaw(NDATransform):
    """Jigsaw-K: cut each image into K x K tiles of (H/K, W/K) and shuffle them with a permutation
    drawn uniformly per image among the (K*K)! - 1 non-identity ones (all of them with
    `allow_identity=True`, the noisy variant of Appendix O). H and W must be divisible by K.

    Parameters: `perm` int64 (B, K*K): output tile j (row-major) shows input tile perm[b, j].
    """

    def __init__(self, k: int = 2, allow_identity: bool = False):
        super().__init__()
        self.k = check_int("jigsaw k", k, low=2)  # k=1 has only the identity permutation
        self.allow_identity = check_bool("jigsaw allow_identity", allow_identity)
        # k=2: index a table of the 23 (24) permutations, exactly uniform and one draw per image.
        self._table = _permutation_table(4, allow_identity) if self.k == 2 else None

    def options(self) -> dict:
        return {"k": self.k, "allow_identity": self.allow_identity}

    def check_image_size(self, height: int, width: int, channels: int | None = None) -> None:
        if height % self.k or width % self.k:
            raise ValueError(f"jigsaw k={self.k} must divide the image size, got {height}x{width}; pick a k that divides both")

    def check_params(self, params: Params, shape: torch.Size) -> None:
        check_index("jigsaw: perm", params["perm"], self.k * self.k)

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

    def transform(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        batch, channels, height, width = x.shape
        k, tile_h = self.k, height // self.k
        # Viewed as (B, C, K, h, K, w), an image is a list of pieces of w contiguous pixels: row y
        # of tile column j in tile row i. Output tile (i, j) is input tile perm[b, i * K + j], so
        # one index_select of whole pieces moves every tile of the batch.
        source = params["perm"].view(batch, 1, k, 1, k)  # (B, 1, K, 1, K): output tile (i, j)
        source_row, source_col = source.div(k, rounding_mode="floor"), source.remainder(k)
        image = torch.arange(batch * channels, device=x.device).view(batch, channels, 1, 1, 1)
        row_in_tile = torch.arange(tile_h, device=x.device).view(1, 1, 1, tile_h, 1)
        piece = ((image * k + source_row) * tile_h + row_in_tile) * k + source_col  # (B, C, K, h, K)
        return x.reshape(-1, width // k).index_select(0, piece.view(-1)).view(x.shape)


class _Flip(NDATransform):
    """Flip each image with probability p (p=1: always, the NDA default; p=0.5: Appendix O's
    noisy variant, or a positive augmentation). Parameters: `flip` bool (B,)."""

    dim: int

    def __init__(self, p: float = 1.0):
        super().__init__()
        self.p = check_probability(f"{self.name} p", p)

    def options(self) -> dict:
        return {"p": self.p}

    def make_params(self, shape: torch.Size, generator: torch.Generator) -> Params:
        return {"flip": draw_flags(shape[0], self.p, generator)}

    def transform(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        flip = params["flip"]
        if bool(flip.all()):  # the NDA case (p=1): no mask
            return x.flip(self.dim)
        return torch.where(flip.view(-1, 1, 1, 1), x.flip(self.dim), x)


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
    Parameters: `noise` float32 (B, C, H, W), standard normal (`torch.randn` on the generator).
    A clip (B, T, C, H, W) gets the same noise image on every frame (one draw per clip, base.py).
    """

    MAX_STD = 100.0  # in image units: far past the point where every pixel saturates

    def __init__(self, std: float = 0.1):
        super().__init__()
        self.std = check_float("gaussian_noise std", std, 0.0, self.MAX_STD, open_low=True)

    def options(self) -> dict:
        return {"std": self.std}

    def make_params(self, shape: torch.Size, generator: torch.Generator) -> Params:
        return {"noise": torch.randn(shape, generator=generator, device=generator.device)}

    def transform(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        noise = params["noise"]
        if noise.shape[1] != x.shape[1]:  # a clip folded to (B, T * C, H, W): the same noise on every frame
            noise = noise.repeat(1, x.shape[1] // noise.shape[1], 1, 1)
        return x.add(noise.to(x.dtype), alpha=self.std).clamp_(-1.0, 1.0)


@register("random_crop")
class RandomCrop(NDATransform):
    """Crop a random region of each image and resize it back to H x W (bilinear).

    The crop covers a fraction of the image area drawn uniformly from `scale` (default 0.25 to
    0.75, our choice: the paper does not state it), keeps the image's aspect ratio and lies fully
    inside the image. Parameters: `box` float32 (B, 4) = (top, left, height, width) as fractions
    of H and W. Resampling is `grid_sample` (bilinear, half-pixel centres, border padding), so it
    is differentiable.
    """

    def __init__(self, scale: Sequence[float] = (0.25, 0.75)):
        super().__init__()
        sides = check_list("random_crop scale", scale, 2)
        low, high = (check_float("random_crop scale", v, 0.0, 1.0, open_low=True) for v in sides)
        if not low <= high:
            raise ValueError(f"random_crop scale={(low, high)} must satisfy 0 < low <= high <= 1 (fractions of the image area)")
        self.scale = (low, high)

    def options(self) -> dict:
        return {"scale": self.scale}

    def make_params(self, shape: torch.Size, generator: torch.Generator) -> Params:
        low, high = self.scale
        u = torch.rand(shape[0], 3, generator=generator, device=generator.device, dtype=torch.float64)
        side = (low + (high - low) * u[:, 0]).sqrt()  # side fraction: same aspect ratio as the image
        top, left = (1 - side) * u[:, 1], (1 - side) * u[:, 2]
        return {"box": torch.stack([top, left, side, side], 1).float()}

    def transform(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        # Coordinates need float32 at least: a bfloat16 grid would be off by a tenth of a pixel.
        dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        top, left, height, width = params["box"].to(dtype).unbind(1)
        # The affine map from output to input coordinates, both in [-1, 1]:
        # x_in = width * x_out + (2 * left + width - 1), and the same for y.
        theta = torch.zeros(x.shape[0], 2, 3, dtype=dtype, device=x.device)
        theta[:, 0, 0], theta[:, 0, 2] = width, 2 * left + width - 1
        theta[:, 1, 1], theta[:, 1, 2] = height, 2 * top + height - 1
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)  # (B, H, W, 2)
        resized = F.grid_sample(x.to(dtype), grid, mode="bilinear", padding_mode="border", align_corners=False)
        return resized.to(x.dtype)


def patch_bounds(size: int) -> tuple[int, int]:
    """Inclusive bounds of a cutout / cutmix patch side on an axis of `size` pixels:
    ceil(size / 3) .. floor(size / 2) (never empty for size >= 2)."""
    return -(-size // 3), size // 2


def smallest_patch(height: int, width: int) -> int:
    """Pixels of the smallest cutout / cutmix patch of a height x width image."""
    return patch_bounds(height)[0] * patch_bounds(width)[0]


def check_patch_size(name: str, height: int, width: int) -> None:
    if height < 2 or width < 2:
        raise ValueError(f"{name} needs images of at least 2x2 pixels for a patch of 1/3 to 1/2 of each side, got {height}x{width}")


def sample_patch_boxes(shape: torch.Size, generator: torch.Generator) -> torch.Tensor:
    """int64 (B, 4) = (top, left, height, width): a patch per image with each side uniform in
    `patch_bounds`, at a uniform position fully inside the image."""
    u = torch.rand(shape[0], 4, generator=generator, device=generator.device, dtype=torch.float64)
    return boxes_from_uniforms(u, *shape[-2:])


def boxes_from_uniforms(u: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """int64 (B, 4) boxes (top, left, height, width) from float64 uniforms u (B, 4) in [0, 1):
    side = low + floor(u * count) over `patch_bounds`, start = floor(u * (size - side + 1)).
    u * count < count for every u < 1, so no clamp is needed (the bias is below 2^-40)."""
    (low_h, high_h), (low_w, high_w) = patch_bounds(height), patch_bounds(width)
    low = torch.tensor([low_h, low_w], dtype=torch.float64, device=u.device)
    count = torch.tensor([high_h - low_h + 1, high_w - low_w + 1], dtype=torch.float64, device=u.device)
    size = torch.tensor([height, width], dtype=torch.float64, device=u.device)
    sides = (u[:, :2] * count).floor_().add_(low)  # (B, 2): height, width
    starts = (u[:, 2:] * (size - sides + 1)).floor_()  # (B, 2): top, left
    return torch.cat([starts, sides], 1).long()


def check_boxes(name: str, box: torch.Tensor, shape: torch.Size) -> None:
    """ValueError unless every box (top, left, height, width) is a non-empty patch inside the image."""
    height, width = shape[-2:]
    top, left, box_h, box_w = box.unbind(1)
    if bool(((top < 0) | (left < 0) | (box_h < 1) | (box_w < 1) | (top + box_h > height) | (left + box_w > width)).any()):
        raise ValueError(f"{name}: a box is empty or does not fit a {height}x{width} image")


def patch_mask(box: torch.Tensor, height: int, width: int, dtype: torch.dtype) -> torch.Tensor:
    """(B, 1, H, W) of `dtype`: 1 inside each box (top, left, height, width) of box (B, 4), else 0.

    Masks are float so that `torch.lerp(a, b, mask)` selects b inside and a outside: lerp is exact
    at weights 0 and 1, and with its mask faster on the CPU than `torch.where` with a
    broadcast bool mask (bool masks are slow to build)."""
    in_rows, in_cols = patch_rows_and_cols(box, height, width, dtype)
    return in_rows[:, None, :, None] * in_cols[:, None, None, :]


def patch_rows_and_cols(box: torch.Tensor, height: int, width: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, H) and (B, W) of `dtype`: 1 on the rows and on the columns each box covers, else 0."""
    top, left, box_h, box_w = box.unbind(1)
    rows = torch.arange(height, device=box.device)
    cols = torch.arange(width, device=box.device)
    in_rows = (rows >= top[:, None]) & (rows < (top + box_h)[:, None])
    in_cols = (cols >= left[:, None]) & (cols < (left + box_w)[:, None])
    return in_rows.to(dtype), in_cols.to(dtype)


@register("cutout")
class Cutout(NDATransform):
    """Replace a random patch of each image (height in [ceil(H/3), floor(H/2)], width likewise,
    uniform position fully inside) with that patch's own per-channel mean (the paper's variant;
    DeVries & Taylor fill with zeros).

    `min_changed` (default 0.01, i.e. 1% of the pixels; an int is a count, 0 turns the check off):
    a patch over a uniform region (MNIST's background) filled with its own mean changes nothing,
    so the box of an image whose negative changes fewer pixels than this (by more than half an
    8-bit level) is redrawn, up to 10 times; an image that still fails (a uniform image) gets its
    patch filled with its opposite, -1 where the pixel is >= 0 and +1 elsewhere (min_change.py).
    Parameters: `box` int64 (B, 4) = (top, left, height, width); `fallback` bool (B,), present
    only when some image fell back.
    """

    def __init__(self, min_changed: float = DEFAULT_MIN_CHANGED):
        super().__init__()
        self.min_changed = check_min_changed("cutout min_changed", min_changed)

    def options(self) -> dict:
        return {"min_changed": self.min_changed}

    def check_image_size(self, height: int, width: int, channels: int | None = None) -> None:
        check_patch_size("cutout", height, width)
        self.check_min_changed(height, width)

    def fallback_changes(self, height: int, width: int) -> int:
        return smallest_patch(height, width)

    def check_params(self, params: Params, shape: torch.Size) -> None:
        check_boxes("cutout", params["box"], shape)

    def make_params(self, shape: torch.Size, generator: torch.Generator) -> Params:
        return {"box": sample_patch_boxes(shape, generator)}

    def transform(self, x: torch.Tensor, params: Params) -> torch.Tensor:
        box, (height, width) = params["box"], x.shape[-2:]
        in_rows, in_cols = patch_rows_and_cols(box, height, width, x.dtype)  # (B, H), (B, W)
        # The patch sums as row mask @ image @ column mask: one read of the batch.
        sums = in_rows[:, None, None, :] @ x @ in_cols[:, None, :, None]  # (B, C, 1, 1)
        mean = sums / (box[:, 2] * box[:, 3]).view(-1, 1, 1, 1)
        mask = patch_mask(box, height, width, x.dtype)
        out = torch.lerp(x, mean, mask)  # the mean inside the patch
        rows = fallback_rows(params)
        if rows is not None:  # the opposite inside the patch
            own = x.index_select(0, rows)
            out[rows] = torch.lerp(own, opposite(own), mask.index_select(0, rows))
        return out
