"""Paired images for image-to-image translation (Pix2Pix): a condition image and its target.

    data = negaug.data.paired.build_paired("scenes", split="train", image_size=64)
    photos, label_images = data.get_batch(torch.arange(8))   # (8, 3, 64, 64) each, in [-1, 1]
    classes = data.class_maps(torch.arange(8))               # (8, 64, 64) int64, IGNORE where unlabeled

Direction as in Table 4 of the NDA paper: photo (condition) -> colour-coded label map (target).
A label map's pixel of class k has the colour `palette[k]`; `nearest_palette_classes` maps any
RGB image back to classes (the segmentation metrics read generated label images this way).

- `scenes` (offline, procedural): street-like scenes (sky, buildings with windows, road with
  lane marks, sidewalk, grass, trees, poles, cars) rendered as photos with colour, texture,
  noise and lighting variation, and their label maps; `num_samples` pairs per split, the same for
  the same (seed, split, image_size); a few thousand 64 px pairs in about a second.
- `cityscapes` (files, never downloaded): pix2pix's `cityscapes` folder (`root/train/*.jpg` and
  `root/val/*.jpg`, each photo | colour label side by side, A = photo on the left), or the
  original layout (`root/leftImg8bit/<split>/<city>/*_leftImg8bit.png` with
  `root/gtFine/<split>/<city>/*_gtFine_color.png`). split train or test (= val). Colours are read
  to the nearest of the 19 Cityscapes training classes; pixels farther than COLOUR_TOLERANCE from
  every class colour (void classes, JPEG edges) are IGNORE.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from negaug.data.base import MAX_IMAGE_SIZE, as_index, check_generated_bytes, check_split, to_unit_range
from negaug.data.dots import derive_seed
from negaug.data.files import default_root
from negaug.data.images import ImageFileError, read_image
from negaug.registry import Registry, check_choice, check_int, closest

IGNORE = 255  # class of unlabeled pixels (never counted by the segmentation metrics)
COLOUR_TOLERANCE = 48.0  # RGB distance (0..255 units) beyond which a Cityscapes colour is void

SCENE_CLASSES = ("sky", "building", "road", "sidewalk", "terrain", "vegetation", "pole", "car")
# Cityscapes colours of the same classes, so that scenes and Cityscapes label maps look alike
SCENE_PALETTE = ((70, 130, 180), (70, 70, 70), (128, 64, 128), (244, 35, 232), (152, 251, 152),
                 (107, 142, 35), (153, 153, 153), (0, 0, 142))
CITYSCAPES_CLASSES = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
                      "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
                      "motorcycle", "bicycle")
CITYSCAPES_PALETTE = ((128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
                      (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
                      (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
                      (0, 80, 100), (0, 0, 230), (119, 11, 32))


def nearest_palette_classes(images: torch.Tensor, palette: torch.Tensor, tolerance: float | None = None) -> torch.Tensor:
    """Class of each pixel: the index of the nearest palette colour (Euclidean in RGB).

    images: (B, 3, H, W) float in [-1, 1] (as G outputs) or uint8 in [0, 255]; palette: (K, 3)
    uint8 or ints in [0, 255]. Returns (B, H, W) int64; with `tolerance` (0..255 units), pixels
    farther than it from every colour are IGNORE. Ties go to the lower class index."""
    rgb = (images.float() if images.dtype == torch.uint8 else (images.float().clamp(-1, 1) + 1) * 127.5)
    colours = torch.as_tensor(palette, dtype=torch.float32, device=rgb.device)  # (K, 3)
    distance = (rgb.unsqueeze(1) - colours[None, :, :, None, None]).square().sum(2)  # (B, K, H, W)
    nearest, classes = distance.min(1)
    if tolerance is not None:
        classes = torch.where(nearest > tolerance ** 2, torch.full_like(classes, IGNORE), classes)
    return classes


class PairedDataset:
    """In-memory pairs: conditions uint8 (N, C, S, S), class maps uint8 (N, S, S) (IGNORE =
    unlabeled), a palette (K, 3) uint8. `get_batch(index) -> (conditions, targets)` float32 in
    [-1, 1], the target being the colour-coded label image (IGNORE pixels black)."""

    def __init__(self, conditions: torch.Tensor, classes: torch.Tensor, palette: Sequence[Sequence[int]],
                 class_names: Sequence[str], name: str = ""):
        if conditions.dim() != 4 or conditions.shape[-1] != conditions.shape[-2]:
            raise ValueError(f"conditions must be (N, C, S, S), got {tuple(conditions.shape)}")
        if classes.shape != (conditions.shape[0], *conditions.shape[-2:]):
            raise ValueError(f"class maps must be (N, S, S) = {(conditions.shape[0], *conditions.shape[-2:])}, "
                             f"got {tuple(classes.shape)}")
        self.conditions, self.classes = conditions.to(torch.uint8), classes.to(torch.uint8)
        self.palette = torch.as_tensor(palette, dtype=torch.uint8)  # (K, 3)
        self.class_names = tuple(class_names)
        self.num_classes = len(self.class_names)
        self.num_channels = int(conditions.shape[1])
        self.target_channels = 3
        self.image_size = int(conditions.shape[-1])
        self.name = name
        self._colours = torch.cat([self.palette, torch.zeros(1, 3, dtype=torch.uint8)])  # last row: IGNORE

    def __len__(self) -> int:
        return int(self.conditions.shape[0])

    def class_maps(self, index: torch.Tensor) -> torch.Tensor:
        """(B, S, S) int64 classes of the pairs `index` (IGNORE where unlabeled)."""
        return self.classes[index].long()

    def label_images(self, classes: torch.Tensor) -> torch.Tensor:
        """(B, S, S) classes -> (B, 3, S, S) float32 label images in [-1, 1] (IGNORE: black)."""
        rows = torch.where(classes == IGNORE, torch.full_like(classes, self.num_classes), classes).long()
        return to_unit_range(self._colours[rows].permute(0, 3, 1, 2).contiguous())

    def get_batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(index, dtype=torch.long)
        return to_unit_range(self.conditions[index]), self.label_images(self.class_maps(index))

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        condition, target = self.get_batch(torch.tensor([i]))
        return condition[0], target[0]

    def subset(self, index) -> PairedDataset:
        index = as_index(index, len(self))
        return PairedDataset(self.conditions[index], self.classes[index], self.palette.tolist(), self.class_names,
                             self.name)

    def __repr__(self) -> str:
        return (f"PairedDataset({self.name!r}, {len(self)} pairs, {self.image_size} px, "
                f"{self.num_classes} classes)")


# ---------------------------------------------------------------------------------------------
# scenes: procedural street-like photos and their label maps

# pairs per split unless num_samples is given; each split its own seed, so no scene is in two splits
# (val: for anything that selects, e.g. a best checkpoint; test: reported numbers)
SCENE_SIZES = {"train": 2000, "val": 200, "test": 500}
SCENE_CHUNK = 32  # scenes rendered together; fixed, so the output never depends on memory settings
SKY, BUILDING, ROAD, SIDEWALK, TERRAIN, VEGETATION, POLE, CAR = range(8)
# photo texture: amplitude of the pixel noise of each class (vegetation and terrain are rough)
TEXTURE = (0.015, 0.04, 0.03, 0.04, 0.07, 0.09, 0.02, 0.02)


class _Canvas:
    """A batch of scenes being painted: classes (N, S, S) int64 and photo (N, 3, S, S) in [0, 1];
    `u`, `v` (1, S, S) are the pixel centres' horizontal and vertical positions in [0, 1)."""

    def __init__(self, n: int, size: int, rng: torch.Generator):
        self.n, self.size, self.rng = n, size, rng
        centres = (torch.arange(size, dtype=torch.float32) + 0.5) / size
        self.v, self.u = centres.view(1, size, 1).expand(1, size, size), centres.view(1, 1, size).expand(1, size, size)
        self.classes = torch.zeros(n, size, size, dtype=torch.int64)
        self.photo = torch.zeros(n, 3, size, size)

    def uniform(self, low: float, high: float, *shape: int) -> torch.Tensor:
        """(n, *shape) uniform in [low, high), or (n, 1, 1) per-image scalars without shape."""
        shape = shape or (1, 1)
        return low + (high - low) * torch.rand(self.n, *shape, generator=self.rng)

    def paint(self, mask: torch.Tensor, cls: int, colour: torch.Tensor) -> None:
        """Class `cls` and `colour` ((N, 3) or (N, 3, S, S)) where `mask` (N, S, S) holds."""
        self.classes.masked_fill_(mask, cls)
        colour = colour.view(self.n, 3, 1, 1) if colour.dim() == 2 else colour
        keep = (~mask).unsqueeze(1).to(self.photo.dtype)
        self.photo.mul_(keep).add_((1 - keep) * colour)


def _jitter(canvas: _Canvas, base: Sequence[float], spread: float) -> torch.Tensor:
    """(N, 3) per-image colours: `base` plus a shared brightness and a per-channel jitter."""
    shade = canvas.uniform(-spread, spread, 1)
    return (torch.tensor(base) + shade + canvas.uniform(-spread / 2, spread / 2, 3)).clamp(0, 1)


def _paint_ground(canvas: _Canvas, horizon: torch.Tensor, vanish: torch.Tensor) -> torch.Tensor:
    """Sky above the horizon (a gradient), grass below, the road and its sidewalks converging to
    the vanishing point, dashed lane marks; returns the road's half width at the bottom (N, 1, 1)."""
    u, v = canvas.u, canvas.v
    sky = _jitter(canvas, (0.5, 0.68, 0.9), 0.08).view(-1, 3, 1, 1)
    canvas.paint(v < horizon, SKY, (sky + 0.25 * (v / horizon).unsqueeze(1)).clamp(0, 1))
    canvas.paint(v >= horizon, TERRAIN, _jitter(canvas, (0.35, 0.55, 0.25), 0.08))
    depth = ((v - horizon) / (1 - horizon)).clamp(min=0)  # 0 at the horizon, 1 at the bottom
    half_road, half_side = canvas.uniform(0.3, 0.6), canvas.uniform(0.1, 0.25)
    offset = (u - vanish).abs()
    below = v >= horizon
    canvas.paint(below & (offset < (half_road + half_side) * depth + 0.01), SIDEWALK,
                 _jitter(canvas, (0.62, 0.57, 0.55), 0.08))
    road = below & (offset < half_road * depth + 0.005)
    canvas.paint(road, ROAD, _jitter(canvas, (0.38, 0.38, 0.4), 0.07))
    dashes = ((v * canvas.size / 4).floor() % 2 == 0) & (offset < 0.006 + 0.012 * depth)
    canvas.photo = torch.where((road & dashes).unsqueeze(1), torch.tensor([0.92, 0.9, 0.75]).view(1, 3, 1, 1),
                               canvas.photo)
    return half_road


def _paint_buildings(canvas: _Canvas, horizon: torch.Tensor, slots: int = 5) -> None:
    """Up to `slots` facades standing on the horizon, behind the road, each with its own colour
    and a grid of windows (some lit)."""
    u, v = canvas.u, canvas.v
    for _ in range(slots):
        present = canvas.uniform(0, 1) < 0.8
        left, width = canvas.uniform(-0.1, 0.9), canvas.uniform(0.12, 0.35)
        top = horizon - canvas.uniform(0.05, 1.0) * (horizon - 0.04)
        inside = present & (u >= left) & (u < left + width) & (v >= top) & (v < horizon + 0.03)
        mask = inside & ((canvas.classes == SKY) | (canvas.classes == TERRAIN))
        wall = (canvas.uniform(0.3, 0.75, 1) + canvas.uniform(-0.08, 0.08, 3)).clamp(0, 1)
        period_u, period_v = canvas.uniform(0.06, 0.11), canvas.uniform(0.07, 0.12)
        in_window = (((u - left) / period_u) % 1 > 0.45) & (((v - top) / period_v) % 1 > 0.5)
        glass = torch.where(canvas.uniform(0, 1, 1) < 0.3, torch.tensor([0.85, 0.8, 0.5]), torch.tensor([0.12, 0.16, 0.25]))
        colour = torch.where(in_window.unsqueeze(1), glass.view(-1, 3, 1, 1), wall.view(-1, 3, 1, 1))
        canvas.paint(mask, BUILDING, colour)


def _paint_objects(canvas: _Canvas, horizon: torch.Tensor, vanish: torch.Tensor, half_road: torch.Tensor) -> None:
    """Trees (canopy disc and trunk), poles, then cars on the road (body and darker cabin), each
    in a few slots present at random; later slots occlude earlier ones."""
    u, v = canvas.u, canvas.v
    for _ in range(3):
        present = canvas.uniform(0, 1) < 0.7
        cu, cv, radius = canvas.uniform(0, 1), horizon - canvas.uniform(-0.05, 0.15), canvas.uniform(0.05, 0.12)
        trunk = present & ((u - cu).abs() < 0.015) & (v >= cv) & (v < cv + radius + canvas.uniform(0.05, 0.15))
        canvas.paint(trunk, VEGETATION, _jitter(canvas, (0.35, 0.25, 0.15), 0.05))
        canopy = present & ((u - cu).square() + (v - cv).square() < radius.square())
        canvas.paint(canopy, VEGETATION, _jitter(canvas, (0.15, 0.4, 0.12), 0.06))
    for _ in range(2):
        present = canvas.uniform(0, 1) < 0.6
        cu, half = canvas.uniform(0, 1), canvas.uniform(0.008, 0.02)
        top, bottom = canvas.uniform(0.1, 0.3) * horizon, horizon + canvas.uniform(0.05, 0.3)
        canvas.paint(present & ((u - cu).abs() < half) & (v >= top) & (v < bottom), POLE,
                     _jitter(canvas, (0.5, 0.5, 0.52), 0.1))
    for _ in range(3):
        present = canvas.uniform(0, 1) < 0.7
        depth = canvas.uniform(0.15, 0.95)
        bottom = horizon + depth * (1 - horizon)
        width = 0.06 + 0.3 * depth
        cu = vanish + canvas.uniform(-0.7, 0.7) * half_road * depth
        body = present & ((u - cu).abs() < width / 2) & (v < bottom) & (v >= bottom - 0.35 * width)
        cabin = present & ((u - cu).abs() < width / 3) & (v < bottom - 0.3 * width) & (v >= bottom - 0.6 * width)
        paint = canvas.uniform(0.05, 0.95, 3)
        canvas.paint(body, CAR, paint)
        canvas.paint(cabin, CAR, (0.5 * paint + torch.tensor([0.05, 0.07, 0.1])).clamp(0, 1))


def _light(canvas: _Canvas) -> torch.Tensor:
    """The finished photo (N, 3, S, S) uint8: class textures (pixel noise), a brightness, a colour
    cast, a horizontal light gradient and sensor noise, all drawn per image."""
    amplitude = torch.tensor(TEXTURE)[canvas.classes].unsqueeze(1)  # (N, 1, S, S)
    texture = amplitude * torch.randn(canvas.n, 1, canvas.size, canvas.size, generator=canvas.rng)
    light = canvas.uniform(0.7, 1.2).unsqueeze(1) * canvas.uniform(0.9, 1.1, 3).view(-1, 3, 1, 1)
    light = light * (1 + canvas.uniform(-0.25, 0.25).unsqueeze(1) * (canvas.u - 0.5).unsqueeze(1))
    sensor = canvas.uniform(0.005, 0.04).unsqueeze(1) * torch.randn(canvas.photo.shape, generator=canvas.rng)
    photo = (canvas.photo + texture) * light + sensor
    return torch.floor(photo.clamp(0, 1) * 255 + 0.5).to(torch.uint8)


@functools.lru_cache(maxsize=4)  # a run builds its splits more than once (training, samples, evaluation)
def render_scenes(n: int, image_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` scenes from `seed`: photos (n, 3, S, S) uint8 and class maps (n, S, S) uint8
    (SCENE_CLASSES). Rendered in chunks of SCENE_CHUNK, each from its own seed, so scene i is the
    same whatever n."""
    photos, maps = [], []
    for chunk, start in enumerate(range(0, n, SCENE_CHUNK)):
        rng = torch.Generator().manual_seed(derive_seed("scenes", seed, image_size, chunk))
        canvas = _Canvas(SCENE_CHUNK, image_size, rng)
        horizon, vanish = canvas.uniform(0.35, 0.55), canvas.uniform(0.3, 0.7)
        half_road = _paint_ground(canvas, horizon, vanish)
        _paint_buildings(canvas, horizon)
        _paint_objects(canvas, horizon, vanish, half_road)
        count = min(SCENE_CHUNK, n - start)
        photos.append(_light(canvas)[:count])
        maps.append(canvas.classes[:count].to(torch.uint8))
    return torch.cat(photos), torch.cat(maps)


def scenes(root: str | None = None, split: str = "train", image_size: int | None = None,
           num_samples: int | None = None, seed: int = 0) -> PairedDataset:
    """The offline street scenes (64 px by default): `num_samples` pairs (default 2000 train,
    200 val, 500 test); each split comes from its own seed, so no two share a scene (the train and
    test scenes are those of negaug before val existed)."""
    check_split(split, tuple(SCENE_SIZES), "scenes")
    image_size = 64 if image_size is None else check_int("data.image_size", image_size, 16, MAX_IMAGE_SIZE)
    count = SCENE_SIZES[split] if num_samples is None else check_int("scenes num_samples", num_samples, 1, 1_000_000)
    check_generated_bytes("scenes num_samples", count, 4 * image_size * image_size)  # photo (3) + class map (1)
    seed = check_int("scenes seed", seed, 0, 2**62)
    photos, maps = render_scenes(count, image_size, derive_seed(seed, split))
    return PairedDataset(photos, maps, SCENE_PALETTE, SCENE_CLASSES, name=f"scenes-{split}")


# ---------------------------------------------------------------------------------------------
# Cityscapes (files the user has; never downloaded)

CITYSCAPES_SPLITS = {"train": ("train",), "test": ("val", "test")}  # folder names tried in order
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def _resized(image: Image.Image, size: int, nearest: bool) -> np.ndarray:
    resample = Image.Resampling.NEAREST if nearest else Image.Resampling.BICUBIC
    return np.asarray(image.resize((size, size), resample), dtype=np.uint8)


def _image_files(paths) -> list[Path]:
    """`paths` with an image suffix, sorted; ImageFileError naming one that is not a regular file
    (a FIFO named *.jpg would hang the reader)."""
    found = sorted(p for p in paths if p.suffix.lower() in IMAGE_SUFFIXES)
    for path in found:
        if not path.is_file():
            raise ImageFileError(f"image file {path} is not a regular file; remove it from the Cityscapes folder")
    return found


def _pix2pix_pairs(folder: Path, size: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """pix2pix's layout: each file is photo | label map side by side (A on the left)."""
    photos, labels = [], []
    for path in _image_files(folder.iterdir()):
        image = read_image(path, "RGB")
        width, height = image.size
        if width != 2 * height:
            raise ValueError(f"{path} is {width}x{height}; pix2pix's cityscapes pairs are photo | label "
                             f"side by side (width = 2 x height)")
        photos.append(_resized(image.crop((0, 0, height, height)), size, nearest=False))
        labels.append(_resized(image.crop((height, 0, width, height)), size, nearest=True))
    return photos, labels


def _gtfine_pairs(root: Path, split: str, size: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The original layout: leftImg8bit/<split>/<city>/X_leftImg8bit.png with gtFine/<split>/<city>/X_gtFine_color.png.
    A label map of another size than its photo is a ValueError naming both."""
    photos, labels = [], []
    for photo in _image_files((root / "leftImg8bit" / split).glob("*/*_leftImg8bit.png")):
        label = root / "gtFine" / split / photo.parent.name / photo.name.replace("_leftImg8bit", "_gtFine_color")
        if not label.exists():
            raise FileNotFoundError(f"{photo} has no label map {label}")
        image, label_image = read_image(photo, "RGB"), read_image(_image_files([label])[0], "RGB")
        if label_image.size != image.size:
            raise ValueError(f"label map {label} is {label_image.size[0]}x{label_image.size[1]} but its photo {photo} "
                             f"is {image.size[0]}x{image.size[1]}; a label map must have its photo's size")
        width, height = image.size  # 2:1 photos: the centred square, as a 256x256 crop of pix2pix's resize
        box = ((width - height) // 2, 0, (width + height) // 2, height)
        photos.append(_resized(image.crop(box), size, nearest=False))
        labels.append(_resized(label_image.crop(box), size, nearest=True))
    return photos, labels


def cityscapes(root: str | None = None, split: str = "train", image_size: int | None = None,
               layout: str = "auto") -> PairedDataset:
    """Cityscapes photos and colour label maps from `root` (default: $NEGAUG_DATA/cityscapes or
    ~/.cache/negaug/data/cityscapes); `layout` "pix2pix", "gtfine" or "auto" (whichever is there).
    Images are resized to `image_size` (default 256; labels with nearest neighbours)."""
    check_split(split, tuple(CITYSCAPES_SPLITS), "cityscapes")
    check_choice("cityscapes layout", layout, ("auto", "pix2pix", "gtfine"))
    size = 256 if image_size is None else check_int("data.image_size", image_size, 16, MAX_IMAGE_SIZE)
    folder = default_root(root) if root is not None else default_root(None) / "cityscapes"
    photos: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    for name in CITYSCAPES_SPLITS[split]:
        if layout in ("auto", "pix2pix") and (folder / name).is_dir():
            photos, labels = _pix2pix_pairs(folder / name, size)
        elif layout in ("auto", "gtfine") and (folder / "leftImg8bit" / name).is_dir():
            photos, labels = _gtfine_pairs(folder, name, size)
        if photos:
            break
    if not photos:
        tried = " or ".join(f"{folder}/{name}/*.jpg" for name in CITYSCAPES_SPLITS[split])
        raise FileNotFoundError(f"no Cityscapes {split} pairs found (looked for {tried} and "
                                f"{folder}/leftImg8bit/<split>/); negaug never downloads Cityscapes: get it from "
                                f"cityscapes-dataset.com and give its folder as data.root")
    conditions = torch.from_numpy(np.stack(photos)).permute(0, 3, 1, 2).contiguous()
    colours = torch.from_numpy(np.stack(labels)).permute(0, 3, 1, 2)
    classes = torch.cat([nearest_palette_classes(chunk, torch.tensor(CITYSCAPES_PALETTE), COLOUR_TOLERANCE)
                         for chunk in colours.split(64)])
    return PairedDataset(conditions, classes, CITYSCAPES_PALETTE, CITYSCAPES_CLASSES, name=f"cityscapes-{split}")


PAIRED_DATASETS = Registry("paired dataset")
PAIRED_DATASETS.register("scenes")(scenes)
PAIRED_DATASETS.register("cityscapes")(cityscapes)
OFFLINE_PAIRED = ("scenes",)


def paired_names() -> list[str]:
    return PAIRED_DATASETS.names()


def build_paired(name: str, root: str | None = None, split: str = "train", image_size: int | None = None,
                 **options: Any) -> PairedDataset:
    """Paired dataset `name` (scenes, cityscapes); unknown names or options raise ValueError."""
    factory = PAIRED_DATASETS.get(name)
    valid = [key for key in PAIRED_DATASETS.options(name) if key not in ("root", "split", "image_size")]
    for key in options:
        if key not in valid:
            raise ValueError(f"unknown option '{str(key)[:80]}' for paired dataset '{name}'{closest(str(key), valid)}; "
                             f"valid: {', '.join(sorted(valid)) or 'none'}")
    return factory(root=root, split=split, image_size=image_size, **options)
