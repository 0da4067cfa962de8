"""Datasets: `negaug.data.build(name, root=None, split="train", download=False, image_size=None, **options)`.

Every dataset yields `(image, label)`: image float32 `(C, H, W)` in [-1, 1], label int64, and has
`num_channels`, `image_size`, `num_classes` (0 = unlabeled), `labels`, `subset(...)`,
`select_classes(...)`, `get_batch(index)`. The 2-D toys (`ring`, `grid`) yield `(point (2,), mode)`
instead, with `dim = 2` and `num_channels = image_size = None`.

Common options: `classes=[...]` keeps only those labels (any labelled dataset; labels keep their
values). Nothing is ever downloaded unless `download=True`.

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
    ImageDataset,
    LazyImageDataset,
    TensorImageDataset,
    check_image_size,
    check_root,
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

OFFLINE = ("mnist5k", "digits", "lfw", "dots", "ring", "grid")  # build without any files
TOYS = ("ring", "grid")  # 2-D points, not images
COMMON_OPTIONS = ("classes",)
OFFLINE_CLIPS = ("moving_mnist",)  # clip datasets that build without any files


def names() -> list[str]:
    return DATASETS.names()


def options(name: str) -> dict[str, Any]:
    """Options of dataset `name` with their defaults (the common ones included)."""
    return {**DATASETS.options(name), "classes": None}


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
    _check_options(DATASETS, name, options)
    check_root(root)
    check_bool("download", download)
    check_image_size(image_size)
    dataset = DATASETS.get(name)(root=root, split=split, download=download, image_size=image_size, **options)
    dataset = dataset if classes is None else dataset.select_classes(classes)
    # how to build this dataset again, e.g. its training split for an evaluation's feature network
    dataset.build_options = {"name": name, "root": root, "split": split, "image_size": image_size,
                             **options, **({} if classes is None else {"classes": classes})}
    return dataset


def _check_options(registry: Registry, name: str, options: dict[str, Any]) -> None:
    valid = {**registry.options(name), "classes": None}
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
    "stratified_split",
    "to_uint8",
    "to_unit_range",
    "toy_mode_assignment",
    "toy_negative_region_mask",
    "toy_negatives",
]
