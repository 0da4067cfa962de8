"""negaug.data clip datasets: the clip registry's generic suite, moving_mnist's rendering and motion
(exact), and the UCF-101 / HMDB-51 frame-folder readers on tiny fake folders."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.testing import assert_close

from negaug import data
from negaug.data.action_videos import natural_key
from negaug.data.clips import bounce, moving_positions, render_moving_digits

SMALL = {"moving_mnist": {"num_clips": 24, "num_frames": 4},
         "ucf101": {"num_frames": 4, "stride": 2}, "hmdb51": {"num_frames": 4, "stride": 2}}
UCF_CLASSES = ("Archery", "HammerThrow", "Hammering")  # classInd order is case-insensitive: Hammering first
FRAME_VALUE_STEP = 10  # frame j of a fake video is the constant base + FRAME_VALUE_STEP * j (base: 10 or 20 * video)


# --- tiny fake frame folders ----------------------------------------------------------------------

def write_video(folder: Path, num_frames: int, base: int, suffix: str = ".png") -> None:
    """Frames image_00001... each a constant 8x12 RGB image of value base + FRAME_VALUE_STEP * j."""
    folder.mkdir(parents=True)
    for j in range(num_frames):
        pixels = np.full((8, 12, 3), base + FRAME_VALUE_STEP * j, dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"image_{j + 1:05d}{suffix}", quality=100)


def write_ucf(root: Path, with_lists: bool) -> list[str]:
    """3 classes x groups 1, 8, 15 (one clip each); returns the '<class>/<video>' keys."""
    keys = []
    for c, cls in enumerate(UCF_CLASSES):
        for g, group in enumerate((1, 8, 15)):
            key = f"{cls}/v_{cls}_g{group:02d}_c01"
            write_video(root / "UCF101" / "frame" / key, 12, 10 * (3 * c + g), ".jpg" if group == 15 else ".png")
            keys.append(key)
    if with_lists:
        lists = root / "UCF101" / "ucfTrainTestlist"
        lists.mkdir()
        (lists / "classInd.txt").write_text("1 Archery\n2 Hammering\n3 HammerThrow\n")
        test = [k for k in keys if "_g01_" in k]
        (lists / "testlist01.txt").write_text("".join(f"{k}.avi\n" for k in test))
        (lists / "trainlist01.txt").write_text("".join(f"{k}.avi {i % 3 + 1}\n" for i, k in enumerate(keys) if k not in test))
    return keys


def write_hmdb(root: Path) -> None:
    """2 classes x 3 videos; fold-1 lists: video 0 train, 1 test, 2 unused."""
    lists = root / "HMDB51" / "testTrainMulti_7030_splits"
    lists.mkdir(parents=True)
    for c, cls in enumerate(("brush_hair", "cartwheel")):
        names = [f"{cls}_clip.{v}_f_cm_np1" for v in range(3)]  # dots in names, as in real HMDB names
        for v, name in enumerate(names):
            write_video(root / "HMDB51" / "frame" / cls / name, 6, 20 * (3 * c + v))
        (lists / f"{cls}_test_split1.txt").write_text("".join(f"{n}.avi {t} \n" for n, t in zip(names, (1, 2, 0))))


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("negaug_clips")
    write_ucf(root, with_lists=True)
    write_hmdb(root)
    return root


def build(name: str, fake_root: Path, **options):
    options = {**SMALL.get(name, {}), **options}
    if name in data.OFFLINE_CLIPS:
        return data.build_clips(name, **options)
    if name in ("ucf101", "hmdb51"):
        return data.build_clips(name, root=str(fake_root), split="all", **options)
    pytest.skip(f"no fake files for clip dataset '{name}' yet: add them to this file")


# --- the generic suite, every registered clip dataset ---------------------------------------------

@pytest.mark.parametrize("name", data.clip_names())
def test_clips_have_the_contract_shape_range_and_label(name, fake_root):
    dataset = build(name, fake_root)
    x, y = dataset[0]
    assert len(dataset) > 0 and y.dtype == torch.int64 and y.dim() == 0
    assert ((dataset.labels >= 0) & (dataset.labels < dataset.num_classes)).all()
    assert x.dtype == torch.float32
    assert x.shape == (dataset.num_frames, dataset.num_channels, dataset.image_size, dataset.image_size)
    assert -1.0 <= x.min() and x.max() <= 1.0


@pytest.mark.parametrize("name", data.clip_names())
def test_get_batch_matches_getitem(name, fake_root):
    dataset = build(name, fake_root)
    index = torch.tensor([len(dataset) - 1, 0])
    clips, labels = dataset.get_batch(index)
    for row, i in enumerate(index.tolist()):
        assert_close(clips[row], dataset[i][0], rtol=0, atol=0)
        assert labels[row] == dataset[i][1]


@pytest.mark.parametrize("name", data.clip_names())
def test_build_is_deterministic_and_leaves_global_rng_alone(name, fake_root):
    state = torch.get_rng_state()
    first, second = build(name, fake_root), build(name, fake_root)
    assert torch.equal(torch.get_rng_state(), state)
    index = torch.arange(len(first))
    assert torch.equal(first.get_batch(index)[0], second.get_batch(index)[0])
    assert torch.equal(first.labels, second.labels)


@pytest.mark.parametrize("name", data.clip_names())
def test_unknown_option_names_the_valid_ones(name, fake_root):
    with pytest.raises(ValueError, match=r"unknown option 'bogus'.*valid: .*classes"):
        build(name, fake_root, bogus=1)


@pytest.mark.parametrize("name", data.clip_names())
def test_image_size_option_resizes(name, fake_root):
    dataset = build(name, fake_root, image_size=16)
    assert dataset.image_size == 16 and dataset[0][0].shape[-3:] == (dataset.num_channels, 16, 16)


@pytest.mark.parametrize("name", data.clip_names())
def test_classes_option_keeps_only_those_labels(name, fake_root):
    full = build(name, fake_root)
    keep = sorted(set(full.labels.tolist()))[:1]
    kept = build(name, fake_root, classes=keep)
    assert len(kept) == int(torch.isin(full.labels, torch.tensor(keep)).sum()) > 0
    assert set(kept.labels.tolist()) == set(keep) and kept.num_classes == full.num_classes
    with pytest.raises(ValueError, match="outside"):
        build(name, fake_root, classes=[full.num_classes])


def test_image_and_clip_registries_refuse_each_others_names():
    with pytest.raises(ValueError, match=r"video dataset.*build_clips\('moving_mnist'\)"):
        data.build("moving_mnist")
    with pytest.raises(ValueError, match=r"image dataset.*build\('mnist5k'\)"):
        data.build_clips("mnist5k")
    assert not set(data.clip_names()) & set(data.names())


# --- moving_mnist --------------------------------------------------------------------------------

def test_bounce_reflects_off_both_walls_exactly():
    position = torch.tensor([-1.0, 0.0, 3.0, 5.0, 7.0, 12.0, 13.0, -7.0])
    assert_close(bounce(position, 5.0), torch.tensor([1.0, 0.0, 3.0, 5.0, 3.0, 2.0, 3.0, 3.0]), rtol=0, atol=0)
    assert torch.equal(bounce(position, 0.0), torch.zeros(8))


def test_render_places_the_digit_window_and_background_elsewhere():
    digit = torch.arange(1, 10, dtype=torch.uint8).reshape(1, 3, 3)
    positions = torch.tensor([[[0, 0], [2, 1], [3, 3]]])  # (1 clip, 3 frames, (row, col))
    clips = render_moving_digits(digit, positions, image_size=6)
    assert clips.shape == (1, 3, 1, 6, 6)
    for t, (row, col) in enumerate(positions[0].tolist()):
        expected = torch.zeros(6, 6, dtype=torch.uint8)
        expected[row : row + 3, col : col + 3] = digit[0]
        assert torch.equal(clips[0, t, 0], expected)


def test_moving_mnist_frames_hold_one_digit_window_at_the_recorded_positions():
    dataset = data.build_clips("moving_mnist", num_clips=40, num_frames=6, image_size=32)
    size = 14  # default digit_size at 32 px
    for n in range(len(dataset)):
        clip = dataset.storage[n, :, 0]
        first = None
        for t in range(6):
            row, col = dataset.positions[n, t].tolist()
            window = clip[t, row : row + size, col : col + size].clone()
            first = window if first is None else first
            assert torch.equal(window, first)  # the same digit image in every frame
            outside = clip[t].clone()
            outside[row : row + size, col : col + size] = 0
            assert int(outside.max()) == 0


def test_moving_mnist_digits_match_their_labels_and_splits_share_no_digit_image():
    from negaug.data.clips import mnist_digits

    def windows(dataset):
        rows, cols = dataset.positions[:, 0, 0], dataset.positions[:, 0, 1]
        return [dataset.storage[n, 0, 0, r : r + 14, c : c + 14] for n, (r, c) in enumerate(zip(rows.tolist(), cols.tolist()))]

    train = data.build_clips("moving_mnist", split="train", num_clips=200, num_frames=2)
    test = data.build_clips("moving_mnist", split="test", num_clips=200, num_frames=2)
    digits, labels = mnist_digits("train", 14)
    lookup = {bytes(d.numpy()): int(y) for d, y in zip(digits, labels)}
    train_windows = [bytes(w.numpy()) for w in windows(train)]
    assert [lookup[w] for w in train_windows] == train.labels.tolist()
    assert len(set(train_windows)) == 200  # each digit image once before any repeats
    assert not set(train_windows) & {bytes(w.numpy()) for w in windows(test)}


def moving_mnist_sha(dataset) -> str:
    import hashlib

    parts = (dataset.storage, dataset.labels, dataset.motion_labels)
    return hashlib.sha256(b"".join(part.numpy().tobytes() for part in parts)).hexdigest()


@pytest.mark.parametrize("split, options, sha", [
    ("train", {"num_clips": 64, "num_frames": 4}, "fa46728de591185bed671cafd32b0663c9594d28f6ae8c43595c5b2a594d490a"),
    ("train", {"num_clips": 32, "num_frames": 12, "image_size": 16, "seed": 3},
     "1d3b54a6e3fdc99295d0aa6e362de0bef523638478684f49f96f97327c2d03ed"),
    ("test", {"num_clips": 64, "num_frames": 4}, "7169525cfba19d2e7b39d8a463e699477eac8dcd573ab1f22eb46f7787b92c6a"),
    ("test", {"num_clips": 32, "num_frames": 12, "image_size": 16, "seed": 3},
     "f9abd2f27df76f53412e6c4ea92feb4a1e632e2404d7b9c86d53a0ee8ce0cba0"),
])
def test_moving_mnist_train_and_test_clips_are_those_made_before_the_val_split(split, options, sha):
    """Regression (issue 24): the shas were taken at fb093ab, before moving_mnist had a val split;
    existing DPC runs resume and reproduce on the same clips."""
    assert moving_mnist_sha(data.build_clips("moving_mnist", split=split, **options)) == sha


def test_moving_mnist_val_clips_use_mnist5k_val_digits_and_differ_from_train_and_test():
    from negaug.data.clips import mnist_digits

    options = {"num_clips": 400, "num_frames": 2}
    val = data.build_clips("moving_mnist", split="val", **options)
    train = data.build_clips("moving_mnist", split="train", **options)
    test = data.build_clips("moving_mnist", split="test", **options)
    assert len(val) == 400 and val.storage.shape == train.storage.shape
    assert not torch.equal(val.storage, train.storage) and not torch.equal(val.storage, test.storage)
    digits, labels = mnist_digits("val", 14)
    reference = data.build("mnist5k", split="val", image_size=28)
    assert digits.shape == (400, 14, 14) and torch.equal(labels, reference.labels)
    assert torch.bincount(labels, minlength=10).tolist() == torch.bincount(reference.labels, minlength=10).tolist()
    rows, cols = val.positions[:, 0, 0].tolist(), val.positions[:, 0, 1].tolist()
    windows = {bytes(val.storage[n, 0, 0, r : r + 14, c : c + 14].numpy()) for n, (r, c) in enumerate(zip(rows, cols))}
    assert windows == {bytes(d.numpy()) for d in digits}  # 400 clips: every val digit image once
    test_digits = {bytes(d.numpy()) for d in mnist_digits("test", 14)[0]}
    assert not windows & test_digits
    again = data.build_clips("moving_mnist", split="val", **options)
    assert torch.equal(again.storage, val.storage) and torch.equal(again.motion_labels, val.motion_labels)


def test_moving_mnist_motion_follows_the_direction_label_away_from_walls():
    generator = torch.Generator().manual_seed(3)
    positions, direction = moving_positions(400, 4, limit=56, speed=1.0, directions=4, generator=generator)
    step = torch.tensor([[0, 1], [-1, 0], [0, -1], [1, 0]])  # right, up, left, down (rows go down)
    inside = ((positions[:, 0] >= 4) & (positions[:, 0] <= 52)).all(dim=1)
    assert inside.sum() > 300 and set(direction.tolist()) == {0, 1, 2, 3}
    expected = positions[:, :1] + step[direction][:, None] * torch.arange(4)[None, :, None]
    assert torch.equal(positions[inside], expected[inside])


def test_moving_mnist_motion_labels_subset_and_seed():
    dataset = data.build_clips("moving_mnist", num_clips=64, num_frames=4, directions=8, seed=1)
    assert dataset.num_motion_classes == 8 and set(dataset.motion_labels.tolist()) <= set(range(8))
    assert len(set(dataset.motion_labels.tolist())) > 4
    part = dataset.subset(torch.tensor([5, 2]))
    assert torch.equal(part.motion_labels, dataset.motion_labels[[5, 2]])
    assert torch.equal(part.positions, dataset.positions[[5, 2]])
    assert torch.equal(part.storage, dataset.storage[[5, 2]])
    other = data.build_clips("moving_mnist", num_clips=64, num_frames=4, directions=8, seed=2)
    assert not torch.equal(other.storage, dataset.storage)


def test_moving_mnist_option_errors_name_the_option():
    with pytest.raises(ValueError, match="num_frames"):
        data.build_clips("moving_mnist", num_frames=0)
    with pytest.raises(ValueError, match="digit_size"):
        data.build_clips("moving_mnist", image_size=16, digit_size=17)
    with pytest.raises(ValueError, match="unknown split"):
        data.build_clips("moving_mnist", split="valid")


# --- UCF-101 and HMDB-51 frame folders ----------------------------------------------------------

def frame_values(clip: torch.Tensor) -> list[int]:
    """The constant uint8 value of each frame of a fake clip."""
    return [round(float(v)) for v in ((clip.mean(dim=(1, 2, 3)) + 1) * 127.5)]


def test_ucf_official_lists_classind_order_and_stride(fake_root):
    train = data.build_clips("ucf101", root=str(fake_root), split="train", num_frames=4, stride=3, image_size=8)
    test = data.build_clips("ucf101", root=str(fake_root), split="test", num_frames=4, stride=3, image_size=8)
    assert train.class_names == ["Archery", "Hammering", "HammerThrow"] and train.num_classes == 3
    assert [v.name for v in test.videos] == [f"v_{c}_g01_c01" for c in ("Archery", "HammerThrow", "Hammering")]
    assert test.labels.tolist() == [0, 2, 1]
    assert len(train) == 6 and not {v.name for v in train.videos} & {v.name for v in test.videos}
    # 12 frames, window of 4 frames 3 apart spans 10: centred start (12 - 10) // 2 = 1
    assert frame_values(test[0][0]) == [FRAME_VALUE_STEP * j for j in (1, 4, 7, 10)]


def test_ucf_without_lists_uses_the_official_group_rule(tmp_path):
    keys = write_ucf(tmp_path, with_lists=False)
    for fold, group in ((1, 1), (2, 8), (3, 15)):
        test = data.build_clips("ucf101", root=str(tmp_path), split="test", fold=fold, num_frames=2, image_size=8)
        assert sorted(f"{v.parent.name}/{v.name}" for v in test.videos) == sorted(k for k in keys if f"_g{group:02d}_" in k)
    everything = data.build_clips("ucf101", root=str(tmp_path), split="all", num_frames=2, image_size=8)
    assert everything.class_names == ["Archery", "Hammering", "HammerThrow"] and len(everything) == 9


def test_hmdb_split_files_train_test_and_unused(fake_root):
    train = data.build_clips("hmdb51", root=str(fake_root), split="train", num_frames=2, image_size=8)
    test = data.build_clips("hmdb51", root=str(fake_root), split="test", num_frames=2, image_size=8)
    assert [v.name for v in train.videos] == ["brush_hair_clip.0_f_cm_np1", "cartwheel_clip.0_f_cm_np1"]
    assert [v.name for v in test.videos] == ["brush_hair_clip.1_f_cm_np1", "cartwheel_clip.1_f_cm_np1"]
    assert train.labels.tolist() == [0, 1] and train.class_names == ["brush_hair", "cartwheel"]


def test_short_video_repeats_its_last_frame_and_random_starts_are_seeded(fake_root):
    dataset = data.build_clips("hmdb51", root=str(fake_root), split="all", num_frames=4, stride=2, image_size=8)
    assert frame_values(dataset[0][0]) == [0, 20, 40, 50]  # 6 frames: 0, 2, 4, then the last (5)
    first = dataset.get_batch(torch.arange(len(dataset)), torch.Generator().manual_seed(0))[0]
    again = dataset.get_batch(torch.arange(len(dataset)), torch.Generator().manual_seed(0))[0]
    assert torch.equal(first, again)
    long_window = data.build_clips("ucf101", root=str(fake_root), split="all", num_frames=3, stride=2, image_size=8)
    starts = set()
    for seed in range(100):
        clip = long_window.get_batch(torch.tensor([0]), torch.Generator().manual_seed(seed))[0][0]
        values = frame_values(clip)
        assert values == [values[0] + 2 * FRAME_VALUE_STEP * j for j in range(3)]  # stride kept, inside the video
        starts.add(values[0] // FRAME_VALUE_STEP)
    assert starts == set(range(8))  # 12 frames, span 5: every start 0..7 is drawn


def test_frames_sort_naturally():
    assert sorted(["image_10.jpg", "image_9.jpg", "image_100.jpg"], key=natural_key) == [
        "image_9.jpg", "image_10.jpg", "image_100.jpg"]


def test_missing_folder_names_the_layout_and_download_is_refused(tmp_path):
    for name, folder in (("ucf101", "UCF101"), ("hmdb51", "HMDB51")):
        with pytest.raises(FileNotFoundError, match=rf"{folder}/frame/<class>/<video>/<frame>\.jpg") as info:
            data.build_clips(name, root=str(tmp_path))
        assert "\n" not in str(info.value)
        with pytest.raises(ValueError, match="never downloaded"):
            data.build_clips(name, root=str(tmp_path), download=True)


def test_listed_video_without_frames_is_an_error(tmp_path):
    write_ucf(tmp_path, with_lists=True)
    with open(tmp_path / "UCF101" / "ucfTrainTestlist" / "testlist01.txt", "a") as f:
        f.write("Archery/v_Archery_g02_c09.avi\n")
    with pytest.raises(FileNotFoundError, match="1 videos.*v_Archery_g02_c09"):
        data.build_clips("ucf101", root=str(tmp_path), split="test")
