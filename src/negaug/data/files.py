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

import codecs
import functools
import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import torch

try:  # numpy >= 2
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # numpy 1.x
    from numpy.core import multiarray as _multiarray
    from numpy.core import numeric as _numeric

from negaug.data.base import (
    LazyImageDataset,
    TensorImageDataset,
    check_image_size,
    check_split,
    resize_images,
)
from negaug.data.offline import pad_mnist
from negaug.files import check_path_text, require_regular_file
from negaug.registry import check_bool

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".ppm", ".pgm", ".tif", ".tiff", ".gif")


def default_root(root: str | os.PathLike | None) -> Path:
    """`root`, else `$NEGAUG_DATA`, else `~/.cache/negaug/data`."""
    if root is not None:
        check_path_text(root, "root")
        return Path(root).expanduser()
    return Path(os.environ.get("NEGAUG_DATA") or Path.home() / ".cache" / "negaug" / "data").expanduser()


def missing(title: str, root: Path, expected: Path, what: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"{title} not found under {root} (no {expected}); put {what} there, point to it (data.root=DIR, "
        f"--data-root DIR), or fetch it (data.download=true, --download, download=True)"
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
    require_regular_file(path, "dataset file")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    dtypes = {8: ">u1", 9: ">i1", 11: ">i2", 12: ">i4", 13: ">f4", 14: ">f8"}
    if data[:2] != b"\x00\x00" or data[2] not in dtypes:
        raise ValueError(f"{path} is not an idx file (bad magic number)")
    ndim = data[3]
    try:
        shape = np.frombuffer(data, ">i4", count=ndim, offset=4)
        return np.frombuffer(data, dtypes[data[2]], offset=4 + 4 * ndim).reshape(shape).astype(dtypes[data[2]][1:])
    except ValueError as err:  # truncated, or the sizes in the header do not match the data
        raise ValueError(f"{path} is not a valid idx file ({' '.join(str(err).split())})") from None


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

# The official CIFAR python batches are pickles of a dict of strings, lists of ints and one uint8
# array. They are read with an unpickler that resolves only the globals numpy needs to rebuild that
# array (numpy 1 and 2 names, protocols 2 to 5), so a file carrying any other callable (a code
# payload) is refused before anything runs; `pickle.load`, and torchvision's CIFAR classes, would run it.
CIFAR_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _multiarray._reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _numeric._frombuffer,  # protocol 5
    ("numpy._core.numeric", "_frombuffer"): _numeric._frombuffer,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,  # bytes in a protocol-2 pickle written by Python 3
}


class CifarUnpickler(pickle.Unpickler):
    """An unpickler that builds plain containers and numpy arrays only (see CIFAR_GLOBALS)."""

    def find_class(self, module: str, name: str):
        if (module, name) not in CIFAR_GLOBALS:
            raise pickle.UnpicklingError(f"refused to load the global {module}.{name}")
        return CIFAR_GLOBALS[module, name]

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("refused a persistent id")


def not_cifar(path: Path, why: str) -> ValueError:
    why = " ".join(why.split())[:200]
    return ValueError(f"{path} is not a CIFAR python batch ({why}); delete it and fetch the dataset again (download=True)")


def read_cifar_batch(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR python batch: its 'data' (N, 3072) uint8 (R, G, B planes) as (N, 3, 32, 32) and
    its labels (N,) int64. Anything else (a code payload, another object, a broken file) is a
    one-line ValueError naming the file."""
    try:
        with open(require_regular_file(path, "dataset file"), "rb") as f:
            entry = CifarUnpickler(f, encoding="latin1").load()
    except Exception as err:  # UnpicklingError (a refused global), EOFError, MemoryError, ... of a foreign file
        raise not_cifar(path, f"{type(err).__name__}: {err}") from None
    if not isinstance(entry, dict) or "data" not in entry or label_key not in entry:
        raise not_cifar(path, f"not a dict with 'data' and '{label_key}'")
    data = entry["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise not_cifar(path, "'data' is not a uint8 array of (N, 3072) pixels")
    labels = entry[label_key]
    if not (isinstance(labels, list) and all(type(v) is int for v in labels)) and not (
            isinstance(labels, np.ndarray) and labels.dtype.kind in "iu"):
        raise not_cifar(path, f"'{label_key}' is not a list of integers")
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if labels.shape[0] != data.shape[0] or (labels.size and not 0 <= labels.min() <= labels.max() < num_classes):
        raise not_cifar(path, f"'{label_key}' must hold one label in 0..{num_classes - 1} per image")
    return data.reshape(-1, 3, 32, 32), labels


def read_cifar_batches(paths: list[Path], label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR python batches concatenated: (N, 3, 32, 32) uint8 images, (N,) int64 labels."""
    batches = [read_cifar_batch(path, label_key, num_classes) for path in paths]
    return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])


def download_cifar(root: str, download: bool, archive: type) -> None:
    """Fetch and unpack the CIFAR archive (md5-checked) without building torchvision's CIFAR
    class, which would unpickle the batches with the unrestricted pickle. `archive`: that class,
    for its url, file name and md5 only; `download` (always True) is `fetch`'s calling convention."""
    from torchvision.datasets.utils import download_and_extract_archive

    download_and_extract_archive(archive.url, root, filename=archive.filename, md5=archive.tgz_md5)


def _cifar(title, folder, files, label_key, num_classes, tv_name, root, split, download, image_size):
    check_image_size(image_size)
    name = title.lower().replace("-", "")
    check_split(split, ("train", "test"), name)
    root = default_root(root)
    paths = [root / folder / f for f in files[split]]
    if download and not all(p.exists() for p in paths):
        import torchvision.datasets as tvd

        fetch(title, root, download_cifar, archive=getattr(tvd, tv_name))
    absent = [p for p in paths if not p.exists()]
    if absent:
        raise missing(title, root, absent[0], folder)
    images, labels = read_cifar_batches(paths, label_key, num_classes)
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
    images, labels = read_svhn_mat(path, scipy.io.loadmat)
    return uint8_dataset(images, labels, 10, "svhn", image_size or 32)


def read_svhn_mat(path: Path, loadmat) -> tuple[np.ndarray, np.ndarray]:
    """SVHN's .mat file: 'X' (32, 32, 3, N) uint8 -> (N, 3, 32, 32), 'y' (N, 1) in 1..10 -> digit
    (10 means 0). MAT files hold arrays only (scipy runs nothing); a broken or foreign file is a
    one-line ValueError naming it."""
    try:
        mat = loadmat(str(require_regular_file(path, "dataset file")))
        images, labels = mat["X"], mat["y"]
        if images.dtype != np.uint8 or images.shape[:3] != (32, 32, 3) or labels.size != images.shape[3]:
            raise ValueError("'X' is not (32, 32, 3, N) uint8 with one label 'y' per image")
        labels = labels.astype(np.int64).reshape(-1) % 10
    except Exception as err:  # scipy's MatReadError, KeyError, ValueError, ... of a foreign file
        raise ValueError(f"{path} is not an SVHN .mat file ({type(err).__name__}: {' '.join(str(err).split())[:200]})") from None
    return np.transpose(images, (3, 2, 0, 1)), labels


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
    check_bool("stl10 in_memory", in_memory)
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
