"""Datasets of image files decoded on demand: CelebA and any folder of images.

- `celeba`: aligned 178x218 faces, center-cropped to 140x140 and resized to 64 (the usual GAN
  protocol; the paper trains at 64 px), unlabeled. split = train | valid | test | all from
  `list_eval_partition.txt` (162,770 / 19,867 / 19,962 images).
- `image_folder`: `root/<class>/**/*.png|jpg|...` (classes = sorted subfolder names, like
  torchvision's ImageFolder) or, when no subfolder holds images, `root/*.png|jpg|...` (unlabeled).
  Each image: shorter side resized to `image_size`, then center-cropped to a square. split =
  train | test (a fixed 90 / 10 split of each class, so evaluation has held-out images) | all.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from negaug.data.base import (
    LazyImageDataset,
    center_crop,
    check_image_size,
    check_split,
    resize_images,
    stratified_split,
    to_unit_range,
)
from negaug.data.files import IMAGE_EXTENSIONS, default_root, fetch, missing
from negaug.data.images import ImageFileError, read_image
from negaug.files import read_text_limited
from negaug.registry import check_bool, check_choice, check_int

FOLDER_TEST_FRACTION = 0.1  # held out of every class of an image folder, for evaluation
FOLDER_SPLIT_SEED = 0
CELEBA_WIDTH = 178  # aligned images are 178 x 218: the largest square crop


class ImageFiles:
    """`files[i]` decoded to a uint8 `(C, H, W)` tensor, C = 1 (mode "L") or 3 (mode "RGB")."""

    def __init__(self, files: list[Path], mode: str):
        self.files, self.mode = files, mode

    def __call__(self, i: int) -> torch.Tensor:
        """ImageFileError naming the file when it cannot be read (`negaug.data.images.read_image`)."""
        array = np.asarray(read_image(self.files[i], self.mode), dtype=np.uint8)
        return torch.from_numpy(array.reshape(array.shape[0], array.shape[1], -1).copy()).permute(2, 0, 1)


def crop_then_resize(images: torch.Tensor, crop: int, size: int) -> torch.Tensor:
    """`(N, C, H, W)` -> central crop x crop window -> antialiased resize to size x size."""
    return resize_images(center_crop(images, crop), size)


def resize_shorter_then_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """`(N, C, H, W)` -> shorter side resized to `size` (aspect kept) -> central size x size crop."""
    height, width = images.shape[-2:]
    scale = size / min(height, width)
    target = (max(size, round(height * scale)), max(size, round(width * scale)))
    if target != (height, width):
        x = F.interpolate(to_unit_range(images), size=target, mode="bilinear", antialias=True, align_corners=False)
        images = x.clamp_(-1, 1)
    return center_crop(images, size)


def list_images(folder: Path, root: Path | None = None) -> list[Path]:
    """The image files under `folder`, sorted. With `root`, entries that are symlinks leading out
    of `root` are left out (never followed out of data.root). An entry with an image suffix that
    is not a regular file (a FIFO, a device) is an ImageFileError naming it: reading it would hang."""
    found = []
    for path in folder.rglob("*"):
        if path.suffix.lower() not in IMAGE_EXTENSIONS or path.is_dir() or (root is not None and not _inside(path, root)):
            continue
        if not path.is_file():
            raise ImageFileError(f"image file {path} is not a regular file; remove it from the image folder")
        found.append(path)
    return sorted(found)


def _inside(path: Path, root: Path) -> bool:
    """Whether `path`, symlinks resolved, stays inside `root` (resolved)."""
    try:
        path.resolve().relative_to(root.resolve())
    except (ValueError, OSError, RuntimeError):
        return False
    return True


def celeba(
    *, root=None, split: str = "train", download: bool = False, image_size: int | None = None,
    crop: int = 140, in_memory: bool = False,
):
    """CelebA (aligned), (3, 64, 64) by default: center crop `crop` px, then resize. Unlabeled."""
    check_image_size(image_size)
    check_split(split, ("train", "valid", "test", "all"), "celeba")
    check_int("celeba crop", crop, 1, CELEBA_WIDTH)
    check_bool("celeba in_memory", in_memory)
    root = default_root(root)
    folder, partition = root / "celeba" / "img_align_celeba", root / "celeba" / "list_eval_partition.txt"
    if download and not (folder.is_dir() and partition.exists()):
        import torchvision.datasets as tvd

        fetch("CelebA", root, tvd.CelebA, split="all", target_type=[])
    for expected in (folder, partition):
        if not expected.exists():
            raise missing("CelebA", root, expected, "celeba/img_align_celeba and celeba/list_eval_partition.txt")
    text = read_text_limited(partition, 64 * 2**20, "CelebA partition file")  # a FIFO there never hangs
    rows = [line.split() for line in text.splitlines() if len(line.split()) == 2]
    wanted = {"train": "0", "valid": "1", "test": "2"}.get(split)
    files = [folder / name for name, part in rows if wanted is None or part == wanted]
    labels = torch.zeros(len(files), dtype=torch.int64)
    prepare = functools.partial(crop_then_resize, crop=crop, size=image_size or 64)
    dataset = LazyImageDataset(ImageFiles(files, "RGB"), labels, 0, 3, image_size or 64, prepare, name="celeba")
    return dataset.to_memory() if in_memory else dataset


def image_folder(
    *, root=None, split: str = "train", download: bool = False, image_size: int | None = None,
    channels: int = 3, in_memory: bool = False, follow_symlinks: bool = False,
):
    """Your own images: labels from subfolders (sorted names -> 0, 1, ...) or 0 for a flat folder.

    `root` is required; (channels, image_size, image_size) with channels 3 (RGB) or 1 (grey),
    image_size 64 by default. split "train" / "test": a fixed held-out split (FOLDER_TEST_FRACTION
    of each class, chosen by a fixed seed from the sorted file list), so that evaluation never
    uses the training images as its reference; "all": every image. Symlinks that lead out of
    `root` (a class folder linking to /) are not followed unless `follow_symlinks`."""
    check_image_size(image_size)
    if root is None:
        raise ValueError("dataset 'image_folder' needs root=DIR (data.root=DIR or --root DIR)")
    if download:
        raise ValueError("dataset 'image_folder' cannot be downloaded; point root at a folder of images")
    check_choice("image_folder channels", channels, (1, 3))
    check_bool("image_folder in_memory", in_memory)
    check_split(split, ("train", "test", "all"), "image_folder")
    check_bool("image_folder follow_symlinks", follow_symlinks)
    root = default_root(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist; pass root=DIR holding your images")
    inside = None if follow_symlinks else root  # a class folder linking to / is not a class of the whole disk
    classes = sorted(d for d in root.iterdir() if d.is_dir() and (inside is None or _inside(d, root)))
    per_class = [(d, list_images(d, inside)) for d in classes]
    subfolders = [d for d, group in per_class if group]
    if subfolders:
        groups = [group for _, group in per_class if group]
        files = [f for group in groups for f in group]
        labels = torch.repeat_interleave(torch.arange(len(subfolders)), torch.tensor([len(g) for g in groups]))
    else:
        files = [p for p in list_images(root, inside) if p.parent == root]
        labels = torch.zeros(len(files), dtype=torch.int64)
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found under {root}")
    size = image_size or 64
    prepare = functools.partial(resize_shorter_then_crop, size=size)
    loader = ImageFiles(files, "RGB" if channels == 3 else "L")
    dataset = LazyImageDataset(loader, labels, len(subfolders), channels, size, prepare, name="image_folder")
    if split != "all":  # file order kept within each split
        train_index, test_index = stratified_split(dataset.labels, FOLDER_TEST_FRACTION, FOLDER_SPLIT_SEED)
        dataset = dataset.subset(train_index if split == "train" else test_index)
    if split == "test" and len(dataset) == 0:
        raise ValueError(f"image folder {root} is too small for a held-out test split ({len(files)} images); "
                         "add images (10 or more per class hold one out)")
    dataset = dataset.to_memory() if in_memory else dataset
    dataset.class_names = [d.name for d in subfolders]
    return dataset
