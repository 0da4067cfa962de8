"""UCF-101 and HMDB-51 as clips, read from pre-extracted frame folders; never downloaded.

Layout under root (the data root: `root=`, else `$NEGAUG_DATA`, else `~/.cache/negaug/data`), as
DPC's `process_data` scripts (github.com/TengdaHan/DPC) leave it:

    UCF101/frame/<class>/<video>/<frame>.jpg|png       frames in natural name order (image_00001.jpg, ...)
    UCF101/ucfTrainTestlist/classInd.txt, trainlist0K.txt, testlist0K.txt   (the official zip's folder;
                                                        UCF101/splits_classification/ is read too)
    HMDB51/frame/<class>/<video>/<frame>.jpg|png
    HMDB51/testTrainMulti_7030_splits/<class>_test_splitK.txt   (or HMDB51/split/testTrainMulti_7030_splits/)

Splits (`fold` K in 1..3): the official lists when present (UCF: train/test lists; HMDB: per-class
files, 1 = train, 2 = test, 0 = unused). Without lists: UCF-101 applies the rule its lists encode
(fold K tests the groups 7K-6..7K of names v_<Class>_gNN_cNN); otherwise (HMDB-51, other names) a
fixed stratified 70 / 30 split per class (seed 0), which is NOT an official split.
split="all": every video found.

Labels: UCF-101 in classInd.txt order when present, else class folders sorted case-insensitively
(classInd's order); HMDB-51 sorted folder names. `class_names` lists them.

Clips: `num_frames` [40] frames `stride` [3] apart (DPC's 8 blocks of 5 frames, every 3rd frame).
`dataset[i]` and `get_batch(index)` take the centred window (deterministic, for evaluation);
`get_batch(index, generator)` draws a start per clip (training). A video shorter than the window
repeats its last frame. Each frame: shorter side resized to `image_size` [128], centre crop, RGB.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch

from negaug.data.base import (
    IndexLike,
    as_index,
    check_image_size,
    check_split,
    stratified_split,
    to_unit_range,
)
from negaug.data.clips import MAX_FRAMES, ClipDataset
from negaug.data.files import IMAGE_EXTENSIONS, default_root
from negaug.data.folders import ImageFiles, resize_shorter_then_crop
from negaug.registry import check_bool, check_int

FALLBACK_TEST_FRACTION = 0.3  # HMDB-51's official splits hold out 30 of every 100 videos per class
FALLBACK_SPLIT_SEED = 0
UCF_GROUPS_PER_FOLD = 7
UCF_GROUP = re.compile(r"_g(\d+)_c\d+$")
VIDEO_SUFFIX = re.compile(r"\.(avi|mp4|mkv|webm|mov|mpg|mpeg)$", re.IGNORECASE)


def natural_key(name: str) -> list:
    """'image_10.jpg' after 'image_9.jpg': digit runs compare as numbers."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def strip_video_suffix(name: str) -> str:
    """'Class/v_x.avi' -> 'Class/v_x' (only a video file suffix is removed: names may hold dots)."""
    return VIDEO_SUFFIX.sub("", name)


def frame_files(video: Path) -> list[Path]:
    files = [p for p in video.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()]
    if not files:
        raise FileNotFoundError(f"video folder {video} holds no frames ({', '.join(IMAGE_EXTENSIONS)})")
    return sorted(files, key=lambda p: natural_key(p.name))


class FrameFolderClips(ClipDataset):
    """Clips decoded on demand from one folder of frames per video (see the module docstring).

    `videos[i]` is the frame folder of clip i; `labels[i]` its class."""

    def __init__(self, videos: list[Path], labels: torch.Tensor, class_names: list[str], num_frames: int,
                 stride: int, image_size: int, name: str):
        self.videos, self.labels, self.class_names = list(videos), labels.long(), list(class_names)
        self.num_classes, self.num_channels = len(class_names), 3
        self.num_frames, self.stride, self.image_size, self.name = num_frames, stride, image_size, name

    def frame_index(self, available: int, start: int | None) -> torch.Tensor:
        """Indices `(T,)` of the frames to read; start None: the centred window."""
        span = (self.num_frames - 1) * self.stride + 1
        if start is None:
            start = max(0, (available - span) // 2)
        return (start + torch.arange(self.num_frames) * self.stride).clamp_(max=available - 1)

    def load_clip(self, i: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Clip i `(T, 3, S, S)` float32 in [-1, 1]; generator None: centred, else a random start."""
        files = frame_files(self.videos[i])
        start = None
        if generator is not None:
            room = max(1, len(files) - (self.num_frames - 1) * self.stride)
            start = int(torch.randint(room, (1,), generator=generator))
        chosen = [files[j] for j in self.frame_index(len(files), start).tolist()]
        decode = ImageFiles(chosen, "RGB")
        frames = torch.stack([decode(j) for j in range(len(chosen))])  # (T, 3, H, W) uint8
        return to_unit_range(resize_shorter_then_crop(frames, self.image_size))

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.load_clip(int(i)), self.labels[i]

    def get_batch(self, index: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """`index` (B,) -> clips `(B, T, 3, S, S)` float32 in [-1, 1], labels `(B,)`; decodes each
        clip (slow: prefer a DataLoader over the dataset for training at scale)."""
        clips = torch.stack([self.load_clip(int(i), generator) for i in index])
        return clips, self.labels[index]

    def subset(self, index: IndexLike) -> FrameFolderClips:
        index = as_index(index, len(self))
        return FrameFolderClips([self.videos[i] for i in index.tolist()], self.labels[index], self.class_names,
                                self.num_frames, self.stride, self.image_size, self.name)


def first_existing(folder: Path, names: tuple[str, ...]) -> Path | None:
    return next((folder / name for name in names if (folder / name).is_dir()), None)


def check_video_options(name: str, split, download, image_size, num_frames, stride, fold) -> None:
    check_split(split, ("train", "test", "all"), name)
    check_bool(f"{name} download", download)
    if download:
        raise ValueError(f"dataset '{name}' is never downloaded: extract its frames into the layout "
                         "described in negaug/data/action_videos.py and pass root=")
    check_image_size(image_size)
    check_int(f"{name} num_frames", num_frames, 1, MAX_FRAMES)
    check_int(f"{name} stride", stride, 1, MAX_FRAMES)
    check_int(f"{name} fold", fold, 1, 3)


def frames_folder(title: str, root: Path, folder: str, lists: str) -> Path:
    frames = root / folder / "frame"
    if not frames.is_dir():
        raise FileNotFoundError(
            f"{title} frames not found: no {frames}; expected {folder}/frame/<class>/<video>/<frame>.jpg|png "
            f"under the data root (and optionally {folder}/{lists}/ for the official splits); it is never downloaded")
    return frames


def subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def videos_on_disk(frames: Path) -> dict[str, Path]:
    """'<class>/<video>' -> its frame folder, for every video folder under `frames` (hidden ones skipped)."""
    return {f"{c.name}/{v.name}": v for c in subfolders(frames) for v in subfolders(c)}


def pick_videos(title: str, found: dict[str, Path], wanted: list[str], lists: Path) -> list[str]:
    missing = [key for key in wanted if key not in found]
    if missing:
        raise FileNotFoundError(f"{title}: {len(missing)} videos in the split lists of {lists} have no frame "
                                f"folder (first: {missing[0]}); extract them or remove the lists")
    return wanted


def fallback_split(keys: list[str], class_index: dict[str, int], split: str) -> list[str]:
    labels = torch.tensor([class_index[key.split("/")[0]] for key in keys], dtype=torch.int64)
    train, test = stratified_split(labels, FALLBACK_TEST_FRACTION, FALLBACK_SPLIT_SEED)
    return [keys[i] for i in (train if split == "train" else test).tolist()]


def build_clips_dataset(name: str, found: dict[str, Path], keys: list[str], class_names: list[str],
                        num_frames: int, stride: int, image_size: int | None) -> FrameFolderClips:
    class_index = {c: i for i, c in enumerate(class_names)}
    unknown = sorted({key.split("/")[0] for key in keys} - set(class_index))
    if unknown:
        raise ValueError(f"dataset '{name}': class folder {unknown[0]!r} is not in the class list ({len(unknown)} such)")
    keys = sorted(keys, key=natural_key)
    labels = torch.tensor([class_index[key.split("/")[0]] for key in keys], dtype=torch.int64)
    if not keys:
        raise FileNotFoundError(f"dataset '{name}': no videos in this split")
    return FrameFolderClips([found[k] for k in keys], labels, class_names, num_frames, stride, image_size or 128, name)


def ucf_class_names(lists: Path | None, found: dict[str, Path]) -> list[str]:
    index_file = None if lists is None else lists / "classInd.txt"
    if index_file is not None and index_file.is_file():
        rows = [line.split() for line in index_file.read_text().splitlines() if line.strip()]
        return [cls for _, cls in sorted((int(i), cls) for i, cls in rows)]
    return sorted({key.split("/")[0] for key in found}, key=str.lower)


def ucf_split(found: dict[str, Path], lists: Path | None, split: str, fold: int, class_names: list[str]) -> list[str]:
    if split == "all":
        return list(found)
    list_file = None if lists is None else lists / f"{split}list{fold:02d}.txt"
    if list_file is not None and list_file.is_file():
        rows = [line.split()[0] for line in list_file.read_text().splitlines() if line.strip()]
        return pick_videos("UCF-101", found, [strip_video_suffix(row) for row in rows], lists)
    groups = {key: UCF_GROUP.search(key) for key in found}
    if all(groups.values()):  # the official rule: fold K tests groups 7K-6 .. 7K
        low = (fold - 1) * UCF_GROUPS_PER_FOLD + 1
        is_test = {key: low <= int(match.group(1)) < low + UCF_GROUPS_PER_FOLD for key, match in groups.items()}
        return [key for key in found if is_test[key] == (split == "test")]
    return fallback_split(sorted(found, key=natural_key), {c: i for i, c in enumerate(class_names)}, split)


def ucf101(
    *, root=None, split: str = "train", download: bool = False, image_size: int | None = None,
    num_frames: int = 40, stride: int = 3, fold: int = 1,
) -> FrameFolderClips:
    """UCF-101 clips (num_frames, 3, image_size [128], image_size), 101 classes; see the module docstring."""
    check_video_options("ucf101", split, download, image_size, num_frames, stride, fold)
    root = default_root(root)
    found = videos_on_disk(frames_folder("UCF-101", root, "UCF101", "ucfTrainTestlist"))
    lists = first_existing(root / "UCF101", ("ucfTrainTestlist", "splits_classification"))
    class_names = ucf_class_names(lists, found)
    keys = ucf_split(found, lists, split, fold, class_names)
    return build_clips_dataset("ucf101", found, keys, class_names, num_frames, stride, image_size)


def hmdb_split(found: dict[str, Path], lists: Path | None, split: str, fold: int, class_names: list[str]) -> list[str]:
    if split == "all":
        return list(found)
    files = [] if lists is None else sorted(lists.glob(f"*_test_split{fold}.txt"))
    if not files:
        return fallback_split(sorted(found, key=natural_key), {c: i for i, c in enumerate(class_names)}, split)
    wanted_type, suffix = ("1" if split == "train" else "2"), f"_test_split{fold}.txt"
    keys = []
    for split_file in files:
        cls = split_file.name[: -len(suffix)]
        for line in split_file.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[1] == wanted_type:
                keys.append(f"{cls}/{strip_video_suffix(parts[0])}")
    return pick_videos("HMDB-51", found, keys, lists)


def hmdb51(
    *, root=None, split: str = "train", download: bool = False, image_size: int | None = None,
    num_frames: int = 40, stride: int = 3, fold: int = 1,
) -> FrameFolderClips:
    """HMDB-51 clips (num_frames, 3, image_size [128], image_size), 51 classes; see the module docstring."""
    check_video_options("hmdb51", split, download, image_size, num_frames, stride, fold)
    root = default_root(root)
    found = videos_on_disk(frames_folder("HMDB-51", root, "HMDB51", "testTrainMulti_7030_splits"))
    lists = first_existing(root / "HMDB51", ("testTrainMulti_7030_splits", "split/testTrainMulti_7030_splits"))
    class_names = sorted({key.split("/")[0] for key in found})
    keys = hmdb_split(found, lists, split, fold, class_names)
    return build_clips_dataset("hmdb51", found, keys, class_names, num_frames, stride, image_size)
