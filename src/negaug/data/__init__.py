"""Datasets: `negaug.data.build(name, root=None, split="train", download=False, image_size=None, **options)`.

Every dataset yields `(image, label)`: image float32 `(C, H, W)` in [-1, 1], label int64, and has
`num_channels`, `image_size`, `num_classes` (0 = unlabeled), `labels`, `subset(...)`,
`select_classes(...)`, `get_batch(index)`. The 2-D toys (`ring`, `grid`) yield `(point (2,), mode)`
instead, with `dim = 2` and `num_channels = image_size = None`.

Common options: `classes=[...]` keeps only those labels (any labelled dataset; labels keep their
values); `fraction=f` (0 < f <= 1) keeps that share of each class of the *training* split
(stratified, seed 2; the less-data regime), never reducing "val" or "test". Nothing is ever
downloaded unless `download=True`.

Splits (`SPLITS`): "train", "val", "test", "all" and "train+val". Every dataset with a fixed
train / test split holds out a **validation split** carved from its training images (`split_protocol`):
10% of each class, stratified, seed 1 (MNIST-5k: 3,600 train / 400 val / 1,000 test). "train" is
what a model trains on, "val" is what anything that *selects* reads (a preset's settings, the best
checkpoint, a lambda), "test" is read only for the final numbers, and "train+val" is the whole
training split (what "train" meant before negaug 0.4). Procedurally generated sets (dots, ring,
grid) draw "val" independently, like "test"; CelebA uses its own "valid" partition.

Video datasets have their own registry, so that nothing taking images is handed clips:
`negaug.data.build_clips(name, root=None, split="train", download=False, image_size=None, **options)`
(`clip_names()`: moving_mnist (offline), ucf101, hmdb51) yields `(clip, label)`, clip float32
`(T, C, H, W)` in [-1, 1]; `get_batch(index) -> (clips (B, T, C, H, W), labels (B,))` (clips.py).
"""
from __future__ import annotations

from typing import Any

from negaug.data import action_videos as _action_videos
from negaug.data import clips as _clips
from negaug.data import dots as _dots
from negaug.data import files as _files
from negaug.data import folders as _folders
from negaug.data import offline as _offline
from negaug.data import toys as _toys
from negaug.data.base import (
    VAL_FRACTION,
    VAL_SEED,
    ImageDataset,
    LazyImageDataset,
    TensorImageDataset,
    carve_validation,
    check_image_size,
    check_root,
    check_split,
    resize_images,
    stratified_split,
    to_uint8,
    to_unit_range,
)
from negaug.data.clips import ClipDataset, TensorClipDataset
from negaug.data.files import default_root
from negaug.data.toys import (
    ToyDataset,
    toy_mode_assignment,
    toy_negative_region_mask,
    toy_negatives,
)
from negaug.registry import Registry, check_bool, closest, short

DATASETS = Registry("dataset")
for _name, _factory in {
    "mnist5k": _offline.mnist5k,
    "digits": _offline.digits,
    "lfw": _offline.lfw,
    "mnist": _files.mnist,
    "fashion_mnist": _files.fashion_mnist,
    "cifar10": _files.cifar10,
    "cifar100": _files.cifar100,
    "svhn": _files.svhn,
    "stl10": _files.stl10,
    "celeba": _folders.celeba,
    "image_folder": _folders.image_folder,
    "dots": _dots.dots,
    "ring": _toys.ring,
    "grid": _toys.grid,
}.items():
    DATASETS.register(_name)(_factory)

CLIP_DATASETS = Registry("clip dataset")
for _name, _factory in {
    "moving_mnist": _clips.moving_mnist,
    "ucf101": _action_videos.ucf101,
    "hmdb51": _action_videos.hmdb51,
}.items():
    CLIP_DATASETS.register(_name)(_factory)

SPLITS = ("train", "val", "test", "all", "train+val")
GENERATED = ("dots", "ring", "grid")  # procedurally generated: "val" is an independent draw
NATIVE_VAL = {"celeba": "valid"}  # datasets with a validation partition of their own
# other partitions a dataset names itself, passed through as they are
OWN_SPLITS = {"svhn": ("extra",), "stl10": ("train_labeled",), "celeba": ("valid",)}

OFFLINE = ("mnist5k", "digits", "lfw", "dots", "ring", "grid")  # build without any files
TOYS = ("ring", "grid")  # 2-D points, not images
COMMON_OPTIONS = ("classes", "fraction")
FRACTION_SEED = 2
OFFLINE_CLIPS = ("moving_mnist",)  # clip datasets that build without any files
CLIPS_WITH_VAL = ("moving_mnist",)  # clip datasets with a val split (ucf101, hmdb51: train / test only)


def names() -> list[str]:
    return DATASETS.names()


def options(name: str) -> dict[str, Any]:
    """Options of dataset `name` with their defaults (the common ones included)."""
    return {**DATASETS.options(name), "classes": None, "fraction": None}


def build(
    name: str, root: str | None = None, split: str = "train", download: bool = False,
    image_size: int | None = None, **options: Any,
) -> ImageDataset | ToyDataset:
    """Build dataset `name`; unknown names or options raise ValueError naming the valid ones, and
    option values of the wrong type or out of range a ValueError naming the option."""
    if name in CLIP_DATASETS:
        raise ValueError(f"'{name}' is a video dataset of clips (N, T, C, H, W), not images: "
                         f"build it with negaug.data.build_clips('{name}')")
    classes = options.pop("classes", None)
    fraction = options.pop("fraction", None)
    _check_options(DATASETS, name, options)
    check_root(root)
    check_bool("download", download)
    check_image_size(image_size)
    check_split(split, (*SPLITS, *OWN_SPLITS.get(name, ())), name)
    check_fraction(fraction)
    dataset = DATASETS.get(name)(root=root, split=_native_split(name, split), download=download,
                                 image_size=image_size, **options)
    if split in ("train", "val") and name not in GENERATED and name not in NATIVE_VAL:
        dataset = carve_validation(dataset, split)
    dataset = dataset if classes is None else dataset.select_classes(classes)
    if fraction is not None and fraction < 1 and split == "train":
        dataset = dataset.subset(stratified_split(dataset.labels, 1 - fraction, FRACTION_SEED)[0])
    # how to build this dataset again, e.g. its training split for an evaluation's feature network
    dataset.build_options = {"name": name, "root": root, "split": split, "image_size": image_size,
                             **options, **({} if classes is None else {"classes": classes}),
                             **({} if fraction is None else {"fraction": fraction})}
    return dataset


def check_fraction(fraction: Any) -> None:
    if fraction is None:
        return
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise ValueError(f"fraction={short(fraction)} must be a number in (0, 1]: the share of the training "
                         f"split kept, e.g. 0.1")


def _native_split(name: str, split: str) -> str:
    """The split to ask dataset `name` for: "val" and "train" carve from its own training split."""
    if split in OWN_SPLITS.get(name, ()):
        return split
    if name in GENERATED:
        if split == "train+val":
            raise ValueError(f"'{name}' is generated: it has no train+val split; use split='train'")
        return split
    if name in NATIVE_VAL:
        if split == "train+val":
            raise ValueError(f"'{name}' has its own validation partition: use split='train' or 'val'")
        return NATIVE_VAL[name] if split == "val" else split
    return "train" if split in ("train", "val", "train+val") else split


def split_protocol(name: str) -> dict[str, Any]:
    """How the splits of dataset `name` are made (recorded with every number)."""
    if name in GENERATED:
        return {"val": "an independent seeded draw, like test", "train": "its own seeded draw"}
    if name in NATIVE_VAL:
        return {"val": f"the dataset's own '{NATIVE_VAL[name]}' partition"}
    return {"val": f"{VAL_FRACTION:.0%} of each class of the native training split, stratified, seed {VAL_SEED}",
            "train": "the native training split without val", "train+val": "the native training split",
            "test": "the native test split (or the dataset's fixed held-out share)"}


def _check_options(registry: Registry, name: str, options: dict[str, Any]) -> None:
    valid = {**registry.options(name), "classes": None, "fraction": None}
    for key in options:
        if key not in valid:
            raise ValueError(
                f"unknown option {short(key)} for {registry.kind} '{name}'{closest(key, valid)}; valid: {', '.join(sorted(valid))}"
            )


def clip_names() -> list[str]:
    return CLIP_DATASETS.names()


def clip_options(name: str) -> dict[str, Any]:
    """Options of clip dataset `name` with their defaults (the common ones included)."""
    return {**CLIP_DATASETS.options(name), "classes": None}


def build_clips(
    name: str, root: str | None = None, split: str = "train", download: bool = False,
    image_size: int | None = None, **options: Any,
) -> ClipDataset:
    """Build clip dataset `name` (moving_mnist, ucf101, hmdb51): the same rules as `build`."""
    if name in DATASETS:
        raise ValueError(f"'{name}' is an image dataset: build it with negaug.data.build('{name}')")
    classes = options.pop("classes", None)
    _check_options(CLIP_DATASETS, name, options)
    check_root(root)
    check_bool("download", download)
    check_image_size(image_size)
    dataset = CLIP_DATASETS.get(name)(root=root, split=split, download=download, image_size=image_size, **options)
    return dataset if classes is None else dataset.select_classes(classes)


def other_split(dataset: Any, split: str) -> ImageDataset | ToyDataset | None:
    """The `split` of a dataset made by `build` (same options), or None when `dataset` was not
    made by `build` (a tensor, a subset) or is that split already."""
    recipe = dict(getattr(dataset, "build_options", None) or {})
    if not recipe or recipe.get("split") == split:
        return None
    return build(**{**recipe, "split": split})


__all__ = [
    "CLIPS_WITH_VAL",
    "CLIP_DATASETS",
    "DATASETS",
    "OFFLINE",
    "OFFLINE_CLIPS",
    "TOYS",
    "ClipDataset",
    "ImageDataset",
    "LazyImageDataset",
    "TensorClipDataset",
    "TensorImageDataset",
    "ToyDataset",
    "build",
    "build_clips",
    "clip_names",
    "clip_options",
    "default_root",
    "names",
    "options",
    "other_split",
    "resize_images",
    "SPLITS",
    "carve_validation",
    "split_protocol",
    "stratified_split",
    "to_uint8",
    "to_unit_range",
    "toy_mode_assignment",
    "toy_negative_region_mask",
    "toy_negatives",
]
