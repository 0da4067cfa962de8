"""The dots numerosity set (Zhao et al. 2018; Appendix A of the NDA paper): images with exactly k dots.

Rendering, exactly (defaults in brackets):
- background: -1 in every channel (black);
- a dot is a disc around an integer pixel centre: pixel (y, x) belongs to it iff
  (y - cy)^2 + (x - cx)^2 <= radius^2 [radius 2.5 at 32 px: a 5x5 square minus its corners,
  21 pixels; radius and gap scale with image_size unless given];
  every dot lies fully inside the image;
- colour: a fully saturated, fully bright hue, hue ~ U[0, 1): RGB = 2 * hsv_to_rgb(hue, 1, 1) - 1,
  so every dot pixel has one channel at +1 and one at -1; with channels=1, dots are +1 (white);
  hence `image.max(channel) > 0` is exactly the set of dot pixels;
- separation: any two pixels of different dots are at Chebyshev distance >= gap + 1 [gap 2], i.e.
  at least `gap` background pixels between dots along rows, columns and diagonals, so dots are
  separate connected components even with 8-connectivity;
- positions: dots are placed one after another, each uniformly among the centres still allowed
  (random sequential placement, batched over images); an image that runs out of room restarts.
- label = the image's count; `num_classes = max(count) + 1` so labels index classes directly.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import torch

from negaug.data.base import MAX_SAMPLES, TensorImageDataset, check_generated_bytes, check_image_size, check_split
from negaug.registry import check_choice, check_float, check_int, check_list

CHUNK = 1024  # images generated together; fixed, so the output does not depend on memory settings
MAX_RESTARTS = 200


def derive_seed(*parts) -> int:
    """A stable 63-bit seed from any printable parts (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "little") >> 1


def disc_offsets(radius: float) -> torch.Tensor:
    """`(P, 2)` integer (dy, dx) with dy^2 + dx^2 <= radius^2."""
    extent = int(np.floor(radius))
    grid = torch.arange(-extent, extent + 1)
    dy, dx = torch.meshgrid(grid, grid, indexing="ij")
    keep = dy**2 + dx**2 <= radius**2
    return torch.stack([dy[keep], dx[keep]], dim=1)


def forbidden_offsets(radius: float, gap: int) -> torch.Tensor:
    """Boolean table `(2T+1, 2T+1)`, T = 2 * floor(radius) + gap: entry [T + dy, T + dx] is True when
    a second dot centred at offset (dy, dx) would come within Chebyshev distance `gap` of the first."""
    disc = disc_offsets(radius)
    reach = 2 * int(np.floor(radius)) + gap
    square = torch.cartesian_prod(torch.arange(-gap, gap + 1), torch.arange(-gap, gap + 1))
    sums = (disc[:, None, None] - disc[None, :, None] + square[None, None]).reshape(-1, 2)
    table = torch.zeros(2 * reach + 1, 2 * reach + 1, dtype=torch.bool)
    table[sums[:, 0] + reach, sums[:, 1] + reach] = True
    return table


def hue_to_rgb(hue: torch.Tensor) -> torch.Tensor:
    """`(...,)` hue in [0, 1) -> `(..., 3)` RGB in [0, 1] at saturation 1 and value 1."""
    n = torch.tensor([5.0, 3.0, 1.0], device=hue.device)
    k = (n + hue[..., None] * 6) % 6
    return 1 - torch.clamp(torch.minimum(k, 4 - k), 0, 1)


def place_dots(counts: torch.Tensor, image_size: int, radius: float, gap: int, generator: torch.Generator) -> torch.Tensor:
    """Centres `(B, K, 2)` (K = counts.max(), unused slots -1) honouring the separation rule."""
    extent = int(np.floor(radius))
    side = image_size - 2 * extent  # centres lie in [extent, image_size - 1 - extent]
    if side < 1:
        raise ValueError(f"dots of radius {radius} do not fit in {image_size} px images")
    reach = 2 * extent + gap
    blocked = forbidden_offsets(radius, gap).nonzero() - reach  # (M, 2) offsets a new dot must avoid
    num_positions = side * side
    num_images, max_count = counts.shape[0], int(counts.max())
    centres = torch.full((num_images, max_count, 2), -1, dtype=torch.int64)
    pending = torch.arange(num_images)
    for _ in range(MAX_RESTARTS):
        # free[:, p]: centre p still allowed; the extra last column is a sink for out-of-image offsets.
        free = torch.ones(pending.shape[0], num_positions + 1, dtype=torch.bool)
        free[:, -1] = False
        ok = torch.ones(pending.shape[0], dtype=torch.bool)
        for j in range(max_count):
            active = counts[pending] > j
            ok &= ~active | free.any(dim=1)
            keys = torch.rand(free.shape, generator=generator).masked_fill_(~free, -1.0)
            choice = keys.argmax(dim=1)  # uniform over the free centres
            chosen = torch.stack([choice // side, choice % side], dim=1)  # (b, 2) in centre coordinates
            centres[pending, j] = torch.where(active[:, None], chosen + extent, -1)
            target = chosen[:, None] + blocked[None]  # (b, M, 2)
            inside = ((target >= 0) & (target < side)).all(dim=2) & active[:, None]
            index = torch.where(inside, target[..., 0] * side + target[..., 1], num_positions)
            free.scatter_(1, index, False)
        pending = pending[~ok]
        if pending.numel() == 0:
            return centres
    raise ValueError(
        f"cannot fit {max_count} dots of radius {radius} with gap {gap} in {image_size} px images; "
        "lower count, radius or gap, or raise image_size"
    )


def render_dots(centres: torch.Tensor, colours: torch.Tensor, image_size: int, radius: float) -> torch.Tensor:
    """Centres `(B, K, 2)` (-1 = no dot), colours `(B, K, C)` in [-1, 1] -> images `(B, C, S, S)`.

    Writes each dot's pixels (centre + disc offsets) with one scatter; dots never overlap, so the
    order of writes does not matter."""
    num_images, num_dots, channels = colours.shape
    disc = disc_offsets(radius)  # (P, 2)
    pixels = centres[:, :, None] + disc[None, None]  # (B, K, P, 2)
    flat = pixels[..., 0] * image_size + pixels[..., 1]
    sink = image_size * image_size  # an extra pixel, dropped at the end, receives absent dots
    flat = torch.where(centres[:, :, None, 0] >= 0, flat, sink).reshape(num_images, 1, -1)
    values = colours.transpose(1, 2)[..., None].expand(-1, -1, -1, disc.shape[0]).reshape(num_images, channels, -1)
    images = torch.full((num_images, channels, sink + 1), -1.0)
    images.scatter_(2, flat.expand(-1, channels, -1), values)
    return images[..., :sink].reshape(num_images, channels, image_size, image_size)


def generate_dots(
    num_samples: int, counts: Sequence[int], image_size: int, radius: float, gap: int, channels: int,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images `(N, C, S, S)` float32 in [-1, 1] and labels `(N,)` = each image's dot count."""
    choices = torch.as_tensor(list(counts), dtype=torch.int64)
    images = [torch.empty(0, channels, image_size, image_size)]  # num_samples may be 0
    labels = [torch.empty(0, dtype=torch.int64)]
    for start in range(0, num_samples, CHUNK):
        b = min(CHUNK, num_samples - start)
        count = choices[torch.randint(len(choices), (b,), generator=generator)]
        centres = place_dots(count, image_size, radius, gap, generator)
        hue = torch.rand(b, centres.shape[1], generator=generator)
        colours = hue_to_rgb(hue) * 2 - 1 if channels == 3 else torch.ones(b, centres.shape[1], 1)
        images.append(render_dots(centres, colours, image_size, radius))
        labels.append(count)
    return torch.cat(images), torch.cat(labels)


def dots(
    *, root=None, split: str = "train", download: bool = False, image_size: int | None = None,
    count: int | Sequence[int] = 6, radius: float | None = None, gap: int | None = None, channels: int = 3,
    num_samples: int = 10_000, seed: int = 0,
) -> TensorImageDataset:
    """Synthetic dots: `num_samples` images (channels, image_size [32], image_size) with `count` dots
    (an int, or a list to mix counts uniformly, e.g. [4, 5, 7] as negatives for 6). radius and gap
    default to 2.5 px and 2 px at 32 px, in proportion at other sizes (radius 2.5 * S / 32, gap
    max(1, round(2 * S / 32))), so every size shows the same picture. split "train" and "test" are
    independent draws; the generator is seeded from (seed, split, counts, geometry)."""
    check_split(split, ("train", "val", "test"), "dots")
    check_image_size(image_size)
    size = image_size or 32
    counts = check_list("dots count", count, min_length=1) if isinstance(count, (list, tuple)) else [count]
    counts = [check_int("dots count", c, low=1) for c in counts]
    check_choice("dots channels", channels, (1, 3))
    radius = 2.5 * size / 32 if radius is None else check_float("dots radius", radius, 0.5, size / 2)
    gap = max(1, round(2 * size / 32)) if gap is None else check_int("dots gap", gap, 0, size)
    num_samples = check_int("dots num_samples", num_samples, 0, MAX_SAMPLES)
    check_generated_bytes("dots num_samples", num_samples, channels * size * size)
    seed = check_int("dots seed", seed)
    if radius < 0.5:
        raise ValueError(f"dots radius={radius:g} (the default at image_size {size}) must be >= 0.5; "
                         "raise image_size or give radius")
    most = most_dots(size, radius, gap)
    if max(counts) > most:
        raise ValueError(f"cannot fit {max(counts)} dots of radius {radius:g} with gap {gap} in {size} px images "
                         f"(at most {most}); lower count, radius or gap, or raise image_size")
    generator = torch.Generator().manual_seed(derive_seed(seed, split, sorted(counts), size, radius, gap, channels))
    images, labels = generate_dots(num_samples, counts, size, radius, gap, channels, generator)
    return TensorImageDataset(images, labels, max(counts) + 1, "dots")


def most_dots(image_size: int, radius: float, gap: int) -> int:
    """An upper bound on how many dots fit: centres lie on a (S - 2 floor(radius))^2 grid and two of
    them are at Chebyshev distance >= gap + 1 (each centre pixel belongs to its dot)."""
    side = image_size - 2 * int(np.floor(radius))
    return (-(-side // (gap + 1))) ** 2 if side > 0 else 0
