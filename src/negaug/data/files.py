"""Datasets read from files on disk, in torchvision's on-disk layouts.

negaug reads the files itself (no md5 checks, no torchvision object kept), so anyone who has the
files in torchvision's layout can use them; torchvision is used only to download, and only when
`download=True`. Default root: `$NEGAUG_DATA`, else `~/.cache/negaug/data`.

| name | files under root | split | default size |
|---|---|---|---|
| mnist, fashion_mnist | MNIST/raw/, FashionMNIST/raw/ idx files (optionally .gz) | train, test | 32 (2 px padding) |
| cifar10, cifar100 | cifar-10-batches-py/, cifar-100-python/ | train, test | 32 |
| svhn | train_32x32.mat, test_32x32.mat, extra_32x32.mat | train, test, extra | 32 |
| stl10 | stl10_binary/*.bin | train (unlabeled + train), train_labeled, test | 32 |
| celeba | celeba/img_align_celeba/, celeba/list_eval_partition.txt | train, valid, test, all | 64 (center crop 140) |
| image_folder | root/<class>/*.png... or root/*.png | all | 64 |
"""
from __future__ import annotations

import functools
import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import torch

from negaug.data.base import (
    LazyImageDataset,
    TensorImageDataset,
    center_crop,
    check_image_size,
    check_split,
    resize_images,
)
from negaug.data.offline import pad_mnist

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".ppm", ".pgm", ".tif", ".tiff", ".gif")


def default_root(root: str | os.PathLike | None) -> Path:
    """`root`, else `$NEGAUG_DATA`, else `~/.cache/negaug/data`."""
    if root is not None:
        return Path(root).expanduser()
    return Path(os.environ.get("NEGAUG_DATA") or Path.home() / ".cache" / "negaug" / "data").expanduser()


def missing(title: str, root: Path, expected: Path, what: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"{title} not found under {root} (no {expected}); pass data.download=true (or --download) "
        f"to fetch it, or put {what} there"
    )


def fetch(title: str, root: Path, factory, **kwargs) -> None:
    """Download with torchvision (only ever called when the user asked for download=True)."""
    try:
        factory(root=str(root), download=True, **kwargs)
    except Exception as err:  # network, disk or checksum failures: one line, cause chained
        first_line = (str(err).splitlines() or [type(err).__name__])[0]
        raise FileNotFoundError(f"downloading {title} to {root} failed: {first_line}") from err


def uint8_dataset(images: np.ndarray | torch.Tensor, labels, num_classes: int, name: str, image_size: int) -> TensorImageDataset:
    """uint8 `(N, C, H, W)` -> uint8-stored dataset at `image_size` (resized in chunks if needed)."""
    images = torch.as_tensor(np.ascontiguousarray(images))
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64).flatten()
    return TensorImageDataset(resize_images(images, image_size), labels, num_classes, name)


# --- MNIST-style idx files ------------------------------------------------------------------------

def read_idx(path: Path) -> np.ndarray:
    """An idx file (MNIST's format: magic 0x00 0x00 dtype ndim, big-endian int32 dims, data)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    dtypes = {8: ">u1", 9: ">i1", 11: ">i2", 12: ">i4", 13: ">f4", 14: ">f8"}
    if data[:2] != b"\x00\x00" or data[2] not in dtypes:
        raise ValueError(f"{path} is not an idx file (bad magic number)")
    ndim = data[3]
    shape = np.frombuffer(data, ">i4", count=ndim, offset=4)
    return np.frombuffer(data, dtypes[data[2]], offset=4 + 4 * ndim).reshape(shape).astype(dtypes[data[2]][1:])


def _idx_file(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.exists():
            return candidate
    return None


def _mnist_like(title: str, folder_name: str, tv_name: str, root, split, download, image_size) -> TensorImageDataset:
    check_split(split, ("train", "test"), folder_name.lower())
    root = default_root(root)
    raw = root / folder_name / "raw"
    prefix = "train" if split == "train" else "t10k"
    stems = (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte")
    if download and not all(_idx_file(raw, s) for s in stems):
        import torchvision.datasets as tvd

        fetch(title, root, getattr(tvd, tv_name), train=split == "train")
    paths = [_idx_file(raw, s) for s in stems]
    if not all(paths):
        raise missing(title, root, raw / stems[0], f"{folder_name}/raw/{stems[0]}")
    images = torch.from_numpy(read_idx(paths[0]).copy())[:, None]  # (N, 1, 28, 28) uint8
    labels = torch.from_numpy(read_idx(paths[1]).astype(np.int64))
    return TensorImageDataset(pad_mnist(images, image_size), labels, 10, folder_name.lower())


def mnist(*, root=None, split: str = "train", download: bool = False, image_size: int | None = None) -> TensorImageDataset:
    """MNIST, (1, 32, 32) by default (2 px background padding, as mnist5k)."""
    return _mnist_like("MNIST", "MNIST", "MNIST", root, split, download, image_size)


def fashion_mnist(*, root=None, split: str = "train", download: bool = False, image_size: int | None = None) -> TensorImageDataset:
    """Fashion-MNIST, (1, 32, 32) by default (2 px background padding)."""
    return _mnist_like("Fashion-MNIST", "FashionMNIST", "FashionMNIST", root, split, download, image_size)


# --- CIFAR pickles --------------------------------------------------------------------------------

def read_cifar_batches(paths: list[Path], label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR python batches: dicts with 'data' (N, 3072) uint8 (R, G, B planes) and labels."""
    images, labels = [], []
    for path in paths:
        with open(path, "rb") as f:
            entry = pickle.load(f, encoding="latin1")  # the official format is a pickle
        images.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.append(np.asarray(entry[label_key], dtype=np.int64))
    return np.concatenate(images), np.concatenate(labels)


def _cifar(title, folder, files, label_key, num_classes, tv_name, root, split, download, image_size):
    check_image_size(image_size)
    name = title.lower().replace("-", "")
    check_split(split, ("train", "test"), name)
    root = default_root(root)
    paths = [root / folder / f for f in files[split]]
    if download and not all(p.exists() for p in paths):
        import torchvision.datasets as tvd

        fetch(title, root, getattr(tvd, tv_name), train=split == "train")
    absent = [p for p in paths if not p.exists()]
    if absent:
        raise missing(title, root, absent[0], folder)
    images, labels = read_cifar_batches(paths, label_key)
    return uint8_dataset(images, labels, num_classes, name, image_size or 32)


def cifar10(*, root=None, split: str = "train", download: bool = False, image_size: int | None = None) -> TensorImageDataset:
    """CIFAR-10, (3, 32, 32), 10 classes, 50,000 / 10,000."""
    files = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
    return _cifar("CIFAR-10", "cifar-10-batches-py", files, "labels", 10, "CIFAR10", root, split, download, image_size)


def cifar100(*, root=None, split: str = "train", download: bool = False, image_size: int | None = None) -> TensorImageDataset:
    """CIFAR-100, (3, 32, 32), 100 fine classes, 50,000 / 10,000."""
    files = {"train": ["train"], "test": ["test"]}
    return _cifar("CIFAR-100", "cifar-100-python", files, "fine_labels", 100, "CIFAR100", root, split, download, image_size)


# --- SVHN .mat ------------------------------------------------------------------------------------

def svhn(*, root=None, split: str = "train", download: bool = False, image_size: int | None = None) -> TensorImageDataset:
    """SVHN cropped digits, (3, 32, 32), 10 classes (label 10 in the files means digit 0)."""
    import scipy.io

    check_image_size(image_size)
    check_split(split, ("train", "test", "extra"), "svhn")
    root = default_root(root)
    path = root / f"{split}_32x32.mat"
    if download and not path.exists():
        import torchvision.datasets as tvd

        fetch("SVHN", root, tvd.SVHN, split=split)
    if not path.exists():
        raise missing("SVHN", root, path, path.name)
    mat = scipy.io.loadmat(str(path))
    images = np.transpose(mat["X"], (3, 2, 0, 1))  # (32, 32, 3, N) -> (N, 3, 32, 32)
    labels = mat["y"].astype(np.int64).flatten() % 10
    return uint8_dataset(images, labels, 10, "svhn", image_size or 32)


# --- STL-10 binaries ------------------------------------------------------------------------------

class BinaryImages:
    """Random access to STL-10 `*_X.bin` files (uint8, (N, 3, 96, 96) stored column-major) via
    memory maps opened on first use, so the object pickles cheaply into DataLoader workers."""

    def __init__(self, paths: list[Path], size: int = 96):
        self.paths, self.size = paths, size
        per_image = 3 * size * size
        self.counts = [p.stat().st_size // per_image for p in paths]
        self.starts = np.cumsum([0] + self.counts)
        self._maps: list[np.ndarray] | None = None

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getstate__(self):
        return {**self.__dict__, "_maps": None}

    def _arrays(self) -> list[np.ndarray]:
        if self._maps is None:
            shape = lambda n: (n, 3, self.size, self.size)  # noqa: E731
            self._maps = [np.memmap(p, np.uint8, "r", shape=shape(n)) for p, n in zip(self.paths, self.counts)]
        return self._maps

    def read(self, start: int, stop: int) -> torch.Tensor:
        """Items [start, stop) as uint8 `(n, 3, 96, 96)` (rows and columns put the right way)."""
        parts = []
        for array, offset in zip(self._arrays(), self.starts[:-1]):
            lo, hi = max(start - offset, 0), min(stop - offset, array.shape[0])
            if lo < hi:
                parts.append(torch.from_numpy(np.ascontiguousarray(array[lo:hi].transpose(0, 1, 3, 2))))
        return torch.cat(parts)

    def __call__(self, i: int) -> torch.Tensor:
        return self.read(i, i + 1)[0]


def stl10(
    *, root=None, split: str = "train", download: bool = False, image_size: int | None = None, in_memory: bool = False
):
    """STL-10 resized from 96 to 32 px (the paper). split="train": unlabeled + train (105,000,
    label 0, num_classes 0, the GAN training set); "train_labeled": 5,000; "test": 8,000, 10 classes.
    Lazy by default; in_memory=True resizes everything once into uint8 (N * 3 KiB at 32 px)."""
    check_image_size(image_size)
    check_split(split, ("train", "train_labeled", "test"), "stl10")
    root, size = default_root(root), image_size or 32
    folder = root / "stl10_binary"
    stems = {"train": ["unlabeled", "train"], "train_labeled": ["train"], "test": ["test"]}[split]
    paths = [folder / f"{s}_X.bin" for s in stems]
    if download and not all(p.exists() for p in paths):
        import torchvision.datasets as tvd

        fetch("STL-10", root, tvd.STL10, split="train+unlabeled" if split == "train" else split.split("_")[0])
    absent = [p for p in paths if not p.exists()]
    if absent:
        raise missing("STL-10", root, absent[0], "stl10_binary")
    source = BinaryImages(paths)
    if split == "train":
        labels, num_classes = torch.zeros(len(source), dtype=torch.int64), 0
    else:
        labels = torch.from_numpy(np.fromfile(folder / f"{stems[0]}_y.bin", dtype=np.uint8).astype(np.int64) - 1)
        num_classes = 10
    if in_memory:  # resize in chunks of 2,000 straight from the memory map
        chunks = [resize_images(source.read(s, min(s + 2000, len(source))), size) for s in range(0, len(source), 2000)]
        return TensorImageDataset(torch.cat(chunks), labels, num_classes, "stl10")
    prepare = functools.partial(resize_images, size=size)
    return LazyImageDataset(source, labels, num_classes, 3, size, prepare, name="stl10")
