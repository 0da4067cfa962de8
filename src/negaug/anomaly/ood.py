"""Out-of-distribution sets for anomaly detection, named "<kind>/<name>":

    corruption/<c>   CIFAR-10-C style corruption <c> of the clean images (paired: image i of the set
                     is clean image i corrupted)
    nda/<t>          NDA transform <t> (negaug.nda) of the clean images (paired)
    noise/uniform    i.i.d. U(0, 1) pixels; noise/gaussian: i.i.d. N(0.5, 1) clipped to [0, 1]
                     (the noise sets of Hendrycks et al.'s Outlier Exposure), mapped to [-1, 1]
    dataset/<d>      the last images of dataset <d>'s test split (negaug.data), resized and
                     converted to the clean images' size and channels

`build_ood(name, clean_images, severity, seed)` returns float (N, C, H, W) in [-1, 1];
`plan_ood("corruption/all,nda/jigsaw")` expands a comma-separated request into names, with notes
for what an "all" had to leave out.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field

import torch

from negaug import data, nda
from negaug.anomaly import corruptions
from negaug.anomaly.corruptions._ops import luminance
from negaug.registry import closest

KINDS = ("corruption", "nda", "noise", "dataset")
NOISES = ("gaussian", "uniform")
PAIRED_KINDS = ("corruption", "nda")
CHUNK = 1024  # images corrupted at a time: bounds memory for large sets
_NOT_IN_DATASET_ALL = {  # left out of dataset/all, available by name
    "image_folder": "a folder of the user's images; name it explicitly with --data-root",
    "dots": "synthetic dot-count images; name it explicitly",
}


def _image_dataset_names() -> list[str]:
    return [name for name in data.names() if name not in set(data.TOYS)]


def ood_names() -> list[str]:
    """Every OOD set name that `build_ood` accepts (NDA and dataset names from their registries)."""
    names = [f"corruption/{name}" for name in corruptions.names()]
    names += [f"nda/{name}" for name in nda.names()]
    names += [f"noise/{name}" for name in NOISES]
    names += [f"dataset/{name}" for name in _image_dataset_names()]
    return names


def is_paired(name: str) -> bool:
    """Whether image i of the set is derived from clean image i (so D(clean) - D(ood) is defined)."""
    return name.split("/", 1)[0] in PAIRED_KINDS


@dataclass
class OODPlan:
    names: list[str]  # in request order, no duplicates
    optional: set[str] = field(default_factory=set)  # from an "all": a missing dataset is a note, not an error
    skipped: dict[str, str] = field(default_factory=dict)  # name -> why it is left out


def plan_ood(request: str | list[str], num_channels: int = 3, exclude_dataset: str | None = None) -> OODPlan:
    """Expand "corruption/all,nda/jigsaw,noise/all,dataset/all" into set names.

    Names given one by one must exist (ValueError naming the valid ones); an "all" leaves out what
    cannot apply (frost; saturate on grey images; the in-distribution dataset) with a note.
    """
    items = request.split(",") if isinstance(request, str) else list(request)
    items = [item.strip() for item in items if item.strip()]
    if not items:
        raise ValueError("no OOD set requested; give e.g. --ood corruption/all,noise/all")
    plan = OODPlan(names=[])
    for item in items:
        kind, _, name = item.partition("/")
        if name == "all" and kind in KINDS:
            _expand_all(kind, num_channels, exclude_dataset, plan)
            continue
        _check_name(item, num_channels)
        if item not in plan.names:
            plan.names.append(item)
    return plan


def _expand_all(kind: str, num_channels: int, exclude_dataset: str | None, plan: OODPlan) -> None:
    if kind == "corruption":
        plan.skipped.update({f"corruption/{n}": why for n, why in corruptions.SKIPPED.items()})
    members = [name.split("/", 1)[1] for name in ood_names() if name.startswith(kind + "/")]
    for member in members:
        name = f"{kind}/{member}"
        if kind == "corruption" and not corruptions.supports(member, num_channels):
            plan.skipped[name] = f"needs colour images; these have {num_channels} channel"
        elif kind == "nda" and _required_options(member):
            plan.skipped[name] = f"needs options ({', '.join(_required_options(member))})"
        elif kind == "dataset" and member == exclude_dataset:
            plan.skipped[name] = "the in-distribution dataset itself"
        elif kind == "dataset" and member in _NOT_IN_DATASET_ALL:
            plan.skipped[name] = _NOT_IN_DATASET_ALL[member]
        elif name not in plan.names:
            plan.names.append(name)
            plan.optional.add(name)


def _check_name(name: str, num_channels: int) -> None:
    kind, _, member = name.partition("/")
    if kind == "corruption" and member in corruptions.SKIPPED:
        raise ValueError(f"OOD set '{name}' is not available: {corruptions.SKIPPED[member]}")
    valid = ood_names()
    if name not in valid:
        raise ValueError(f"unknown OOD set '{name}'{closest(name, valid)}; valid: "
                         f"{', '.join(valid)} (or corruption/all, nda/all, noise/all, dataset/all)")
    if kind == "corruption" and not corruptions.supports(member, num_channels):
        raise ValueError(f"OOD set '{name}' needs colour images; the in-distribution images have "
                         f"{num_channels} channel")
    if kind == "nda" and _required_options(member):
        raise ValueError(f"OOD set '{name}' needs options ({', '.join(_required_options(member))}); "
                         f"use another NDA transform")


def _required_options(nda_name: str) -> list[str]:
    """Options NDA transform `nda_name` cannot be built without (other_data: its source images)."""
    options = nda.TRANSFORMS.options(nda_name)
    return [key for key, default in options.items() if default is inspect.Parameter.empty]


def build_ood(name: str, clean_images: torch.Tensor, severity: int = 5, seed: int = 0,
              data_root: str | None = None, download: bool = False) -> torch.Tensor:
    """The OOD set `name` for `clean_images` (N, C, H, W) in [-1, 1]: float (M, C, H, W) in [-1, 1].

    M = N except for datasets shorter than N. severity (1..5) applies to corruptions only; seed
    fixes every random draw (one CPU torch.Generator seeded with it). data_root / download apply
    to dataset/* (nothing is downloaded unless download=True). Runs on the CPU and returns the
    result on the clean images' device.
    """
    _check_name(name, clean_images.shape[1])
    kind, _, member = name.partition("/")
    generator = torch.Generator().manual_seed(int(seed))
    clean = clean_images.detach().float().cpu()
    if kind == "corruption":
        corruptions.check_severity(severity)
        chunks = [corruptions.corrupt(part, member, severity, generator) for part in clean.split(CHUNK)]
    elif kind == "nda":
        transform = nda.build(member)
        with torch.no_grad():
            chunks = [transform(part, generator=generator).clamp(-1, 1) for part in clean.split(CHUNK)]
    elif kind == "noise":
        chunks = [noise_images(clean.shape, member, generator)]
    else:
        chunks = [dataset_images(member, clean.shape, data_root, download)]
    return torch.cat(chunks).to(clean_images.device)


def last_images(dataset, num: int) -> torch.Tensor:
    """The last `num` images of an ImageDataset as float (M, C, H, W) in [-1, 1], M = min(num, len);
    lazily decoded sets decode only those."""
    total = len(dataset)
    dataset = dataset.subset(torch.arange(max(0, total - num), total))
    if not hasattr(dataset, "images"):
        dataset = dataset.to_memory()
    return dataset.images.float()


def noise_images(shape: torch.Size, name: str, generator: torch.Generator) -> torch.Tensor:
    """(N, C, H, W) noise images in [-1, 1]: "uniform" U(0, 1) or "gaussian" clip(N(0.5, 1), 0, 1)
    per pixel and channel, as Outlier Exposure's noise sets, mapped from [0, 1]."""
    if name == "uniform":
        unit = torch.rand(shape, generator=generator)
    else:
        unit = (0.5 + torch.randn(shape, generator=generator)).clamp(0, 1)
    return unit * 2 - 1


def dataset_images(name: str, shape: torch.Size, data_root: str | None, download: bool = False) -> torch.Tensor:
    """The last N = shape[0] test images of dataset `name` as (M, C, H, W) in [-1, 1], M <= N, with
    the channels (grey <-> colour by repetition / ITU-R 601 luminance) and size of `shape`.

    FileNotFoundError (one line, from negaug.data) when the files are not there."""
    num, channels, size = shape[0], shape[1], shape[-1]
    images = last_images(data.build(name, root=data_root, split="test", download=download, image_size=size), num)
    if images.shape[-1] != size:
        images = data.resize_images(images, size)
    if images.shape[1] != channels:
        images = images.repeat(1, 3, 1, 1) if channels == 3 else luminance(images)
    return images
