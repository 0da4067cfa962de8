"""Sample quality of image files (`negaug eval --generated DIR --reference DIR|NAME`): what
torch-fidelity users bring, evaluated by `negaug.metrics.evaluate_samples` with the same trust
checks, feature-space naming and protocol as `negaug eval RUN`.

The reference decides the image format: a built-in dataset (its `--reference-split`, test by
default) or a folder of image files (all of one size; grey when its first image is grey, else
RGB). Generated files are decoded in the reference's mode (PIL's convert: RGB -> L is ITU-R 601
luma) and must have its size: a size mismatch is refused unless `resize` (then bilinear,
antialiased, to the reference's height x width, aspect not kept). Nothing else is changed, and
every conversion is recorded in the protocol.
"""
from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from negaug import data
from negaug.data.base import to_unit_range
from negaug.data.files import IMAGE_EXTENSIONS
from negaug.data.folders import ImageFiles, list_images
from negaug.data.images import read_image
from negaug.experiment.build import check_seed, resolve_device
from negaug.experiment.evaluate import EVAL_SPLITS, MAX_SAMPLE_BYTES
from negaug.files import check_output_path, write_atomically
from negaug.metrics import evaluate_samples
from negaug.metrics import features as feats
from negaug.metrics.evaluate import FEATURE_METRICS, default_metrics

GREY_MODES = ("1", "L", "LA", "I", "F", "I;16", "I;16B", "I;16L", "I;16N")
FEATURE_BASED = (*FEATURE_METRICS, "mmd")


def image_files(folder: str | Path, what: str) -> list[Path]:
    """The image files under `folder` (recursive, sorted, regular files only); a one-line error
    when it is not a folder or holds none."""
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"{what} folder {path} does not exist or is not a folder")
    files = list_images(path)
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found under {what} folder {path}")
    return files


def read_folder(files: list[Path], mode: str, size: tuple[int, int], resize: bool, what: str) -> torch.Tensor:
    """`files` decoded in `mode` ("L" or "RGB") -> (N, C, H, W) float32 in [-1, 1] at `size`
    (H, W); an image of another size is refused unless `resize` (bilinear, antialiased)."""
    channels = 1 if mode == "L" else 3
    needed = len(files) * channels * size[0] * size[1] * 4
    if needed > MAX_SAMPLE_BYTES:
        raise ValueError(f"the {len(files)} {what} images need {needed / 2**30:.0f} GiB as float32; at most "
                         f"{MAX_SAMPLE_BYTES // 2**30} GiB are allowed, use fewer images")
    loader, images = ImageFiles(files, mode), torch.empty(len(files), channels, *size)
    for i in range(len(files)):
        image = loader(i)
        if tuple(image.shape[1:]) != size:
            if not resize:
                raise ValueError(f"{what} image {files[i]} is {image.shape[2]}x{image.shape[1]} pixels but the "
                                 f"reference's are {size[1]}x{size[0]}; pass --resize to resize (bilinear, "
                                 f"antialiased) or give images of that size")
            image = F.interpolate(to_unit_range(image[None]), size=size, mode="bilinear", antialias=True,
                                  align_corners=False).clamp_(-1, 1)[0]
        images[i] = to_unit_range(image)
    return images


def pixel_sha256(images: torch.Tensor) -> str:
    """SHA-256 of images in [-1, 1] as uint8 levels (u = round(127.5 (x + 1))), in file order."""
    levels = torch.round((images + 1) * 127.5).clamp_(0, 255).to(torch.uint8)
    return hashlib.sha256(np.ascontiguousarray(levels.numpy()).tobytes()).hexdigest()


def load_reference(reference: str, split: str, resize: bool, data_root: str | None,
                   download: bool) -> tuple[Any, dict[str, Any]]:
    """(reference: a built-in dataset's split or a folder's images, its description)."""
    path = Path(reference).expanduser()
    if path.is_dir():
        files = image_files(path, "reference")
        first = read_image(files[0], "RGB")  # checked and decoded once: its size is the reference's
        mode, size = ("L" if _is_grey(files[0]) else "RGB"), (first.height, first.width)
        images = read_folder(files, mode, size, resize, "reference")
        return images, {"folder": str(path), "num_files": len(files), "decoded_as": mode,
                        "sha256": pixel_sha256(images)}
    if reference not in data.names():
        raise ValueError(f"--reference {reference!r} is neither a folder nor a built-in dataset "
                         f"({', '.join(data.names())})")
    if split not in EVAL_SPLITS:
        raise ValueError(f"--reference-split must be one of {', '.join(EVAL_SPLITS)}, got {split!r}")
    dataset = data.build(reference, root=data_root, split=split, download=download)
    return dataset, {"dataset": reference, "split": split}


def _is_grey(file: Path) -> bool:
    with Image.open(file) as image:  # the header only; read_image already checked the file
        return image.mode in GREY_MODES


def check_train_data(settings: dict[str, Any], metrics: list[str], reference: Any) -> None:
    """Two plain folders give the offline classifier no labelled training images: refused."""
    if settings.get("train_data") is not None or settings["force"] or not isinstance(reference, torch.Tensor):
        return
    if not any(name in FEATURE_BASED for name in metrics):
        return
    name = settings["feature_extractor"]
    if name == "auto":
        name = "inception" if settings["inception_weights"] or feats.find_inception_weights() else "classifier"
    if name == "classifier":
        raise ValueError("the offline classifier features need labelled training images, which two folders lack; "
                         "pass --feature-extractor inception --inception-weights PATH, or --train-data NAME "
                         "(a built-in dataset whose training split trains the classifier)")


def evaluate_folders(generated: str | Path, reference: str, metrics: list[str] | None = None, seed: int = 0,
                     reference_split: str = "test", resize: bool = False, train_data: str | None = None,
                     feature_extractor: str = "auto", inception_weights: str | None = None, batch_size: int = 250,
                     device: str = "auto", progress: bool = False, force: bool = False,
                     data_root: str | None = None, download: bool = False, out: str | Path | None = None,
                     warn: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Evaluate the image files under `generated` against `reference` (a folder, or a built-in
    dataset's `reference_split`); returns {"generated", "reference", "timestamp", "results"} and
    writes it to `out` (JSON) when given. `train_data`: a built-in dataset whose training split
    trains the offline classifier (default: the built-in reference's own training split)."""
    check_seed("--seed", seed)
    if batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {batch_size}")
    if out is not None:
        out = check_output_path(Path(out).expanduser(), "--out")
        if not out.parent.is_dir():
            raise FileNotFoundError(f"--out {out}: folder {out.parent} does not exist")
    if train_data is not None and train_data not in data.names():
        raise ValueError(f"--train-data must be a built-in dataset ({', '.join(data.names())}), got {train_data!r}")
    files = image_files(generated, "generated")
    ref, described = load_reference(reference, reference_split, resize, data_root, download)
    ref_images = ref if isinstance(ref, torch.Tensor) else ref.get_batch(torch.arange(1))[0]
    mode = "L" if ref_images.shape[1] == 1 else "RGB"
    fake = read_folder(files, mode, tuple(ref_images.shape[2:]), resize, "generated")
    data_name = train_data or described.get("dataset") or "folder"
    settings = dict(feature_extractor=feature_extractor, inception_weights=inception_weights, batch_size=batch_size,
                    device=resolve_device(device, key="--device"), progress=progress, force=force,
                    data_name=data_name, reference_split=reference_split if "dataset" in described else "all",
                    train_data=None if train_data is None else data.build(train_data, root=data_root, split="train",
                                                                          download=download))
    names = list(metrics) if metrics else default_metrics(ref, data_name)
    check_train_data(settings, names, ref)
    results = evaluate_samples(fake, ref, metrics or None, seed, **settings)  # None: defaults, "is" skipped without classes
    folders = {"generated": {"folder": str(Path(generated).expanduser()), "num_files": len(files),
                             "decoded_as": mode, "sha256": pixel_sha256(fake)},
               "reference": described, "resize": f"bilinear antialiased to {tuple(fake.shape[2:])}" if resize else "none (sizes must match)"}
    for result in results.values():
        result["protocol"]["files"] = folders
        if "folder" in described:
            result["protocol"]["reference"] = f"folder:{described['folder']}"
    entry = {**folders, "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "results": results}
    if out is not None:
        write_atomically(out, json.dumps(entry, indent=1, default=str))
    for key, result in results.items():
        for message in result.get("warnings", []) if warn is not None else []:
            warn(f"{key}: {message}")
    return entry
