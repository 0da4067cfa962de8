"""Hardening of the library layer, one section per class of defect:

1. dataset and weights files are read without running anything they carry (no unpickling of code);
2. every registry checks the options of every registered component (unknown -> ValueError naming
   the valid ones, never a TypeError from deep inside a constructor);
3. every option value of every transform, model, loss and dataset is checked: a wrong type, a
   non-finite number or an out-of-range value is a one-line ValueError naming the option
   (explicit cases, then a seeded fuzz over every registered component and every option).
"""
from __future__ import annotations

import ast
import importlib
import pickle
import pkgutil
import random
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

import negaug
from negaug import data, losses, models, nda
from negaug.metrics import features as feats
from negaug.registry import Registry

SRC = Path(negaug.__file__).resolve().parent


def one_line_naming(err: BaseException, *words: str) -> None:
    message = str(err)
    assert "\n" not in message, message
    for word in words:
        assert str(word) in message, f"{word!r} not in {message!r}"


# --- 1. files are read without running what they carry ------------------------------------------

class RunsCode:
    """Unpickling this runs Python code that creates `marker`."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


class NumpyWritesFile:
    """A numpy function with a side effect (writes `marker`): numpy's module name is no licence."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return np.savetxt, (str(self.marker), [0.0])


def payloads(marker: Path) -> dict[str, bytes]:
    pixels = np.zeros((2, 3072), dtype=np.uint8)
    return {
        "exec as data": pickle.dumps({"data": RunsCode(marker), "labels": [0, 1]}),
        "exec after a valid array": pickle.dumps({"data": pixels, "labels": [0, 1], "filenames": [RunsCode(marker)]}),
        "numpy function": pickle.dumps({"data": NumpyWritesFile(marker), "labels": [0, 1]}, protocol=2),
        "exec, protocol 0": pickle.dumps({"labels": RunsCode(marker)}, protocol=0),
    }


CIFAR_LAYOUT = {"cifar10": ("cifar-10-batches-py", "test_batch"), "cifar100": ("cifar-100-python", "test")}


@pytest.mark.parametrize("kind", ["exec as data", "exec after a valid array", "numpy function", "exec, protocol 0"])
@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_batch_carrying_code_is_refused_without_running_it(name, kind, tmp_path):
    marker = tmp_path / "marker"
    folder, stem = CIFAR_LAYOUT[name]
    path = tmp_path / "root" / folder / stem
    path.parent.mkdir(parents=True)
    path.write_bytes(payloads(marker)[kind])
    with pytest.raises(ValueError) as info:
        data.build(name, root=tmp_path / "root", split="test")
    assert not marker.exists(), "the payload ran"
    one_line_naming(info.value, path, "not a CIFAR python batch")


def short_string(text: bytes) -> bytes:
    """SHORT_BINSTRING or BINSTRING: Python 2's 8-bit str."""
    return b"U" + bytes([len(text)]) + text if len(text) < 256 else b"T" + struct.pack("<i", len(text)) + text


def integer(value: int) -> bytes:
    return b"J" + struct.pack("<i", value)  # BININT


def python2_cifar_batch(pixels: np.ndarray, labels: list[int]) -> bytes:
    """A batch as the official files are: cPickle protocol 2 from Python 2 and numpy 1 (numpy.core
    globals, keys and pixel bytes as 8-bit strings), assembled opcode by opcode."""
    array = (
        b"cnumpy.core.multiarray\n_reconstruct\n" + b"cnumpy\nndarray\n" + integer(0) + b"\x85" + short_string(b"b")
        + b"\x87R"  # _reconstruct(ndarray, (0,), 'b')
        + b"(" + integer(1) + integer(pixels.shape[0]) + integer(3072) + b"\x86"
        + b"cnumpy\ndtype\n" + short_string(b"u1") + integer(0) + integer(1) + b"\x87R"  # dtype('u1', 0, 1)
        + b"(" + integer(3) + short_string(b"|") + b"NNN" + integer(-1) + integer(-1) + integer(0) + b"tb"
        + b"\x89" + short_string(pixels.tobytes()) + b"tb"  # state (1, shape, dtype, False, bytes)
    )
    label_list = b"](" + b"".join(integer(v) for v in labels) + b"e"
    return (b"\x80\x02}(" + short_string(b"batch_label") + short_string(b"testing batch 1 of 1")
            + short_string(b"data") + array + short_string(b"labels") + label_list + b"u.")


@pytest.mark.parametrize("writer", ["python 2", "protocol 2", "protocol 4", "protocol 5"])
def test_official_cifar_formats_still_read_exactly(writer, tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (3, 3072), dtype=np.uint8)
    labels = [7, 0, 9]
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    if writer == "python 2":
        blob = python2_cifar_batch(pixels, labels)
        assert pickle.loads(blob, encoding="latin1")["labels"] == labels  # what the plain pickle read
    else:
        blob = pickle.dumps({"data": pixels, "labels": labels}, protocol=int(writer[-1]))
    (folder / "test_batch").write_bytes(blob)
    dataset = data.build("cifar10", root=tmp_path, split="test")
    assert torch.equal(dataset.storage, torch.from_numpy(pixels.reshape(3, 3, 32, 32)))
    assert dataset.labels.tolist() == labels


@pytest.mark.parametrize("entry, why", [
    ({"data": np.zeros((2, 3072), np.float32), "labels": [0, 1]}, "uint8"),
    ({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 10]}, "labels"),
    ({"data": np.zeros((2, 3072), np.uint8)}, "labels"),
    ([1, 2, 3], "dict"),
])
def test_cifar_batch_of_the_wrong_shape_is_one_line(entry, why, tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "test_batch").write_bytes(pickle.dumps(entry))
    with pytest.raises(ValueError) as info:
        data.build("cifar10", root=tmp_path, split="test")
    one_line_naming(info.value, folder / "test_batch", why)


def test_cifar_download_never_builds_torchvision_cifar(tmp_path, monkeypatch):
    """torchvision's CIFAR classes unpickle the batches with the plain pickle: only the archive is fetched."""
    import torchvision.datasets as tvd
    import torchvision.datasets.utils as tv_utils

    def refuse(*args, **kwargs):
        raise AssertionError("torchvision's CIFAR class was built")

    def fake_archive(url, download_root, filename=None, md5=None, **kwargs):
        assert url == tvd.CIFAR10.url and md5 == tvd.CIFAR10.tgz_md5
        folder = Path(download_root) / "cifar-10-batches-py"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "test_batch").write_bytes(pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [3, 4]}))

    monkeypatch.setattr(tvd.CIFAR10, "__init__", refuse)
    monkeypatch.setattr(tv_utils, "download_and_extract_archive", fake_archive)
    dataset = data.build("cifar10", root=tmp_path, split="test", download=True)
    assert dataset.labels.tolist() == [3, 4]


def test_broken_idx_and_svhn_files_are_one_line_naming_the_file(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03" + struct.pack(">iii", 10, 28, 28) + b"\x00" * 5)
    (raw / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01" + struct.pack(">i", 10) + b"\x00" * 10)
    with pytest.raises(ValueError) as info:
        data.build("mnist", root=tmp_path, split="test")
    one_line_naming(info.value, raw / "t10k-images-idx3-ubyte")
    scipy.io.savemat(tmp_path / "test_32x32.mat", {"X": np.zeros((4, 4), np.float64)})
    with pytest.raises(ValueError) as info:
        data.build("svhn", root=tmp_path, split="test")
    one_line_naming(info.value, tmp_path / "test_32x32.mat", "not an SVHN .mat file")


def test_inception_weights_carrying_code_never_run(tmp_path):
    marker = tmp_path / "marker"
    path = tmp_path / "weights.pth"
    torch.save({"fc.weight": torch.zeros(1), "payload": RunsCode(marker)}, path)
    with pytest.raises(ValueError) as info:
        feats.build("inception", weights=path)
    assert not marker.exists()
    one_line_naming(info.value, path)


@pytest.mark.parametrize("state", [{"not_inception.weight": torch.zeros(3)}, torch.zeros(3), {"fc.weight": "x"}])
def test_wrong_inception_state_dict_is_one_line_naming_the_file(state, tmp_path):
    path = tmp_path / "weights.pth"
    torch.save(state, path)
    with pytest.raises(ValueError) as info:
        feats.build("inception", weights=path)
    one_line_naming(info.value, path, "TF-Inception")


def _call_name(node: ast.Call) -> str:
    func, parts = node.func, []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    parts.append(func.id if isinstance(func, ast.Name) else "<expression>")  # f().eval() is not eval()
    return ".".join(reversed(parts))


def _keyword(node: ast.Call, name: str):
    return next((k.value for k in node.keywords if k.arg == name), None)


def _safe_yaml_loaders(tree: ast.Module) -> set[str]:
    """Names of the module's own yaml loader classes derived from SafeLoader."""
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef)
            and any("SafeLoader" in ast.unparse(base) for base in node.bases)}


def unsafe_loads(path: Path) -> list[str]:
    """Calls in `path` that can run code hidden in data: plain unpickling, torch.load without
    weights_only=True, np.load(allow_pickle=True), yaml loaders other than safe ones, eval/exec,
    and pickle.Unpickler subclasses without their own find_class."""
    tree = ast.parse(path.read_text(), str(path))
    safe_loaders, found = _safe_yaml_loaders(tree), []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and any(ast.unparse(b).endswith("Unpickler") for b in node.bases):
            if not any(isinstance(f, ast.FunctionDef) and f.name == "find_class" for f in node.body):
                found.append(f"{path.name}:{node.lineno} Unpickler subclass {node.name} without find_class")
        if not isinstance(node, ast.Call):
            continue
        name, where = _call_name(node), f"{path.name}:{node.lineno}"
        weights_only = _keyword(node, "weights_only")
        if name in ("pickle.load", "pickle.loads", "pickle.Unpickler", "marshal.loads", "shelve.open",
                    "dill.load", "dill.loads", "joblib.load", "pd.read_pickle", "pandas.read_pickle",
                    "torch.jit.load", "yaml.unsafe_load", "yaml.full_load", "yaml.load_all", "eval", "exec"):
            found.append(f"{where} {name}")
        elif name == "torch.load" and not (isinstance(weights_only, ast.Constant) and weights_only.value is True):
            found.append(f"{where} torch.load without weights_only=True")
        elif name in ("np.load", "numpy.load") and isinstance(_keyword(node, "allow_pickle"), ast.Constant) \
                and _keyword(node, "allow_pickle").value is not False:
            found.append(f"{where} {name}(allow_pickle=...)")
        elif name == "yaml.load":
            loader = _keyword(node, "Loader") or (node.args[1] if len(node.args) > 1 else None)
            text = ast.unparse(loader) if loader is not None else ""
            if not (text in safe_loaders or text in ("yaml.SafeLoader", "yaml.CSafeLoader")):
                found.append(f"{where} yaml.load with Loader={text or 'default'}")
    return found


def test_no_module_deserialises_unsafely():
    """The class as a whole, now and for new code: no module of negaug calls a loader that can run
    code carried by a file (the restricted CIFAR unpickler overrides find_class)."""
    found = [hit for path in sorted(SRC.rglob("*.py")) for hit in unsafe_loads(path)]
    assert not found, "\n".join(found)


def test_unsafe_load_checker_is_not_vacuous(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("import pickle, torch, yaml, numpy as np\n"
                      "class U(pickle.Unpickler):\n    pass\n"
                      "pickle.load(f)\ntorch.load(p)\ntorch.load(p, weights_only=False)\n"
                      "np.load(p, allow_pickle=True)\nyaml.load(t, Loader=yaml.Loader)\neval('1')\n"
                      "torch.load(p, weights_only=True)\nyaml.load(t, Loader=yaml.SafeLoader)\nnp.load(p)\n")
    assert len(unsafe_loads(sample)) == 7


# --- 2. every registry checks the options of every registered component --------------------------

def all_registries() -> dict[str, Registry]:
    """Every Registry instance defined in a module of negaug (found by importing them all)."""
    found = {}
    for info in pkgutil.walk_packages(negaug.__path__, "negaug."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if isinstance(value, Registry):
                found[value.kind] = value
    return found


REGISTRIES = all_registries()
ENTRIES = [(kind, name) for kind, registry in sorted(REGISTRIES.items()) for name in registry.names()]


def test_every_kind_of_component_has_a_registry_found_here():
    assert {"NDA transform", "model", "loss", "dataset", "feature extractor", "metric", "corruption"} <= set(REGISTRIES)


@pytest.mark.parametrize("kind, name", ENTRIES)
def test_unknown_option_is_a_value_error_naming_the_valid_ones(kind, name):
    registry = REGISTRIES[kind]
    valid = registry.options(name)
    with pytest.raises(ValueError) as info:
        registry.build(name, surely_not_an_option=1)
    one_line_naming(info.value, "surely_not_an_option", "valid: " + (", ".join(sorted(valid)) or "(none)"))
    for option in sorted(o for o in valid if len(o) >= 4)[:1]:  # a typo names the closest option
        with pytest.raises(ValueError) as info:
            registry.build(name, **{option[:-1] + option[-1].upper() * 2: 1})
        one_line_naming(info.value, f"did you mean '{option}'")


def test_classes_without_their_own_init_take_no_options():
    """nn.Module's generic (*args, **kwargs) used to switch the check off: stitch(foo=1) was a TypeError."""
    with pytest.raises(ValueError, match="unknown option 'foo' for feature extractor 'raw'; valid: \\(none\\)"):
        feats.build("raw", foo=1)  # RawFeatures has no __init__ of its own
    with pytest.raises(ValueError, match="unknown option 'foo' for NDA transform 'stitch'; valid: min_changed"):
        nda.build("stitch", foo=1)


def test_missing_required_option_is_a_value_error():
    with pytest.raises(ValueError, match="NDA transform 'other_data' needs option source"):
        nda.build("other_data")


def test_a_factory_taking_kwargs_cannot_be_registered():
    registry = Registry("thing")
    with pytest.raises(TypeError, match="takes \\*\\*kwargs"):
        registry.register("loose")(lambda size=1, **kwargs: None)
    registry.register("strict")(lambda size=1: size)
    assert registry.build("strict", size=3) == 3


# --- 3. option values: wrong types, non-finite numbers, out of range -> ValueError naming the option

def build_model(name, **options):
    shape = {"mlp": {"image_size": None, "channels": None}, "dcgan": {"image_size": 8, "channels": 1},
             "sngan_resnet": {"image_size": 16, "channels": 1}}[name]
    return models.build(name, **{**shape, **options})


BAD_OPTIONS = [  # (what to build, its options, the option the error must name)
    (lambda o: build_model("dcgan", **o), {"width": 0}, "width"),
    (lambda o: build_model("dcgan", **o), {"latent_dim": 0}, "latent_dim"),
    (lambda o: build_model("dcgan", **o), {"spectral_norm": "abc"}, "spectral_norm"),
    (lambda o: build_model("dcgan", **o), {"d_batch_norm": 0}, "d_batch_norm"),
    (lambda o: build_model("dcgan", **o), {"channels": 0}, "channels"),
    (lambda o: build_model("dcgan", **o), {"image_size": 8.0}, "image_size"),
    (lambda o: build_model("dcgan", **o), {"image_size": float("inf")}, "image_size"),
    (lambda o: build_model("dcgan", **o), {"num_classes": "3"}, "num_classes"),
    (lambda o: build_model("dcgan", **o), {"init": None}, "init"),
    (lambda o: build_model("sngan_resnet", **o), {"width": 2**40}, "width"),
    (lambda o: build_model("sngan_resnet", **o), {"g_spectral_norm": "yes"}, "g_spectral_norm"),
    (lambda o: build_model("mlp", **o), {"depth": 0}, "depth"),
    (lambda o: build_model("mlp", **o), {"data_dim": [2]}, "data_dim"),
    (lambda o: build_model("mlp", **o), {"width": 1.5}, "width"),
    (lambda o: models.EMA(torch.nn.Linear(1, 1), **o), {"decay": float("nan")}, "decay"),
    (lambda o: models.EMA(torch.nn.Linear(1, 1), **o), {"start_step": "10"}, "start_step"),
    (lambda o: nda.build("jigsaw", **o), {"allow_identity": "no"}, "allow_identity"),
    (lambda o: nda.build("jigsaw", **o), {"k": [2]}, "k"),
    (lambda o: nda.build("jigsaw", **o), {"k": float("inf")}, "k"),
    (lambda o: nda.build("jigsaw", **o), {"k": 2.5}, "k"),
    (lambda o: nda.build("mixup", **o), {"alpha": float("nan")}, "alpha"),
    (lambda o: nda.build("mixup", **o), {"alpha": float("inf")}, "alpha"),
    (lambda o: nda.build("mixup", **o), {"alpha": 1e-320}, "alpha"),
    (lambda o: nda.build("gaussian_noise", **o), {"std": float("inf")}, "std"),
    (lambda o: nda.build("gaussian_noise", **o), {"std": "0.1"}, "std"),
    (lambda o: nda.build("hflip", **o), {"p": float("nan")}, "p"),
    (lambda o: nda.build("vflip", **o), {"p": True}, "p"),
    (lambda o: nda.build("random_crop", **o), {"scale": 0.5}, "scale"),
    (lambda o: nda.build("random_crop", **o), {"scale": [0.1, 0.2, 0.3]}, "scale"),
    (lambda o: nda.build("random_crop", **o), {"scale": "ab"}, "scale"),
    (lambda o: nda.build("mixture", **o), {"weights": [float("nan")] * 5}, "weights"),
    (lambda o: nda.build("mixture", **o), {"weights": [1e308] * 5}, "weights"),
    (lambda o: nda.build("mixture", **o), {"weights": 5}, "weights"),
    (lambda o: nda.build("mixture", **o), {"transforms": None}, "transforms"),
    (lambda o: nda.build("mixture", **o), {"transforms": [{"name": "jigsaw", "k": "2"}]}, "transforms"),
    (lambda o: nda.build("mixture", **o), {"transforms": [{"name": "jigsaw", 1: 2}]}, "transforms"),
    (lambda o: nda.build("other_data", **o), {"source": "abc"}, "source"),
    (lambda o: nda.build("other_data", **o), {"source": [torch.zeros(3, 4, 4), 1]}, "source"),
    (lambda o: nda.build("other_data", **o), {"source": torch.full((2, 1, 4, 4), float("nan"))}, "source"),
    (lambda o: nda.positive("hflip", **o), {"p": "0.5"}, "p"),
    (lambda o: nda.check_compatible("jigsaw", **o), {"image_size": "32"}, "image_size"),
    (lambda o: losses.build("wgan", **o), {"clip_value": "abc"}, "clip_value"),
    (lambda o: losses.build("wgan", **o), {"clip_value": float("inf")}, "clip_value"),
    (lambda o: losses.build("wgan-gp", **o), {"gp_weight": float("nan")}, "gp_weight"),
    (lambda o: losses.build("wgan-gp", **o), {"gp_weight": True}, "gp_weight"),
    (lambda o: losses.build("fgan-kl", **o), {"generator_loss": ["minimax"]}, "generator_loss"),
    (lambda o: losses.build("fgan-js", **o), {"generator_loss": None}, "generator_loss"),
    (lambda o: losses.check_lam(**o), {"lam": "0.5"}, "lam"),
    (lambda o: losses.check_lam(**o), {"lam": float("nan")}, "lam"),
    (lambda o: losses.clip_weights(torch.nn.Linear(1, 1), **o), {"c": "0.01"}, "c"),
    (lambda o: losses.r1_penalty(lambda x, y: x.sum(1), torch.zeros(2, 2), **o), {"weight": float("inf")}, "weight"),
    (lambda o: data.build("dots", num_samples=2, **o), {"count": 10**30}, "count"),
    (lambda o: data.build("dots", num_samples=2, **o), {"count": True}, "count"),
    (lambda o: data.build("dots", num_samples=2, **o), {"count": "6"}, "count"),
    (lambda o: data.build("dots", num_samples=2, **o), {"count": [2, 10**30]}, "count"),
    (lambda o: data.build("dots", **o), {"num_samples": 1.5}, "num_samples"),
    (lambda o: data.build("dots", **o), {"num_samples": -1}, "num_samples"),
    (lambda o: data.build("dots", num_samples=2, **o), {"radius": float("inf")}, "radius"),
    (lambda o: data.build("dots", num_samples=2, **o), {"gap": 10**30}, "gap"),
    (lambda o: data.build("dots", num_samples=2, **o), {"channels": True}, "channels"),
    (lambda o: data.build("dots", num_samples=2, **o), {"seed": "x"}, "seed"),
    (lambda o: data.build("ring", **o), {"num_modes": 10**30}, "num_modes"),
    (lambda o: data.build("ring", **o), {"std": float("nan")}, "std"),
    (lambda o: data.build("ring", **o), {"radius": "2"}, "radius"),
    (lambda o: data.build("grid", **o), {"spacing": float("inf")}, "spacing"),
    (lambda o: data.build("grid", **o), {"size": 2.0}, "size"),
    (lambda o: data.build("grid", **o), {"num_samples": 2**63}, "num_samples"),
    (lambda o: data.build("digits", **o), {"classes": "abc"}, "classes"),
    (lambda o: data.build("digits", **o), {"classes": 5}, "classes"),
    (lambda o: data.build("digits", **o), {"classes": [1.5]}, "classes"),
    (lambda o: data.build("digits", **o), {"download": "no"}, "download"),
    (lambda o: data.build("digits", **o), {"image_size": True}, "image_size"),
    (lambda o: data.build("digits", **o), {"image_size": 10**9}, "image_size"),
    (lambda o: data.build("digits", **o), {"split": ["train"]}, "split"),
    (lambda o: data.build("digits", **o), {"root": 5}, "root"),
    (lambda o: data.build("image_folder", root=".", **o), {"channels": 3.0}, "channels"),
    (lambda o: data.build("celeba", root=".", **o), {"crop": 1e9}, "crop"),
    (lambda o: data.build("stl10", root=".", **o), {"in_memory": "yes"}, "in_memory"),
]


@pytest.mark.parametrize("case", range(len(BAD_OPTIONS)))
def test_bad_option_value_is_a_one_line_value_error_naming_it(case):
    make, options, option = BAD_OPTIONS[case]
    with pytest.raises(ValueError) as info:
        make(options)
    one_line_naming(info.value, option)


def test_numbers_that_used_to_leak_from_python_or_torch_are_refused_by_name():
    """The messages of the old tracebacks never reach the user."""
    for make in (lambda: data.build("dots", count=10**30, num_samples=2),  # Overflow when unpacking long long
                 lambda: nda.build("jigsaw", k=float("inf")),  # cannot convert float infinity to integer
                 lambda: data.build("ring", num_modes=2**63)):
        with pytest.raises(ValueError) as info:
            make()
        assert "Overflow" not in str(info.value) and "infinity" not in str(info.value)


def test_jigsaw_allow_identity_string_no_keeps_identity_out():
    """allow_identity='no' was truthy: identity jigsaws (real images labelled fake) got through."""
    with pytest.raises(ValueError, match="allow_identity"):
        nda.build("jigsaw", allow_identity="no")
    assert nda.build("jigsaw", allow_identity=False)._table.shape[0] == 23


def test_dots_with_no_samples_is_an_empty_dataset():
    dataset = data.build("dots", num_samples=0, image_size=16)
    assert len(dataset) == 0 and dataset.images.shape == (0, 3, 16, 16)


def test_valid_values_are_unchanged():
    """The checks do not move draws: the same options give the same data as before (seeds)."""
    ring = data.build("ring", num_samples=4, radius=3)  # an int radius enters the seed as given
    assert ring.geometry == 3.0 and torch.equal(ring.points, data.build("ring", num_samples=4, radius=3).points)
    assert nda.build("jigsaw", k=3).k == 3 and nda.build("random_crop", scale=[0.5, 1]).scale == (0.5, 1.0)
    assert nda.build("mixture", weights=[1, 0, 0, 0, 2]).weights == [1.0, 0.0, 0.0, 0.0, 2.0]


# --- the fuzz: every registered transform, model, loss and cheap dataset, every option ------------

VALUES = [
    None, True, False, 0, 1, -1, 2, 3, 4, 7, 8, 16, 2**31, -(2**31), 2**63, -(2**63), 10**30,
    0.0, 0.5, 1.5, 2.0, -0.5, 1e-3, 1e-300, 1e300, float("nan"), float("inf"), float("-inf"),
    np.int64(3), np.float64(0.25), np.float64("nan"), np.bool_(True), torch.tensor(2), torch.zeros(2),
    "", "abc", "no", "1", "jigsaw", "normal", "minimax", "train", "test",
    [], [2], [0, 1], [0.5, 0.5], [1, 2, 3], [0.1, 0.9], ["jigsaw"], ["jigsaw", "stitch"], [None],
    {}, {"a": 1}, {"name": "hflip"}, (0.2, 0.4),
]

IMAGES = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
NDA_BASE = {"other_data": {"source": torch.zeros(5, 3, 8, 8)}}
MODEL_BASE = {
    "dcgan": {"image_size": 8, "channels": 1, "width": 4, "latent_dim": 4},
    "sngan_resnet": {"image_size": 16, "channels": 1, "width": 4, "latent_dim": 4},
    "biggan": {"image_size": 32, "channels": 1, "width": 1, "latent_dim": 8},
    "mlp": {"image_size": None, "channels": None, "width": 4, "depth": 1, "latent_dim": 4},
}
DATA_BASE = {"dots": {"num_samples": 3, "image_size": 16}, "ring": {"num_samples": 8}, "grid": {"num_samples": 8},
             "digits": {}}
DATA_COMMON = ("split", "image_size", "download", "root", "classes")


def use_nda(t):
    out = t(IMAGES, generator=torch.Generator().manual_seed(0))
    assert out.shape == IMAGES.shape and torch.isfinite(out).all()


def use_model(built):
    G, D = built
    y = torch.zeros(2, dtype=torch.int64) if G.num_classes else None
    x = G(G.sample_latent(2, generator=torch.Generator().manual_seed(0)), y)
    scores = D(x, y)
    assert scores.shape == (2,) and torch.isfinite(scores).all()


def use_loss(loss):
    real, fake, neg = torch.tensor([0.5, -1.0]), torch.tensor([-0.3, 2.0]), torch.tensor([0.1, 0.0])
    d_loss, _ = loss.d_loss(real, fake, neg, lam=0.5)
    assert torch.isfinite(d_loss) and torch.isfinite(loss.g_loss(fake))


def use_dataset(dataset):
    if len(dataset):
        batch, labels = dataset.get_batch(torch.arange(min(2, len(dataset))))
        assert torch.isfinite(batch).all() and labels.dtype == torch.int64


KINDS = {"nda": (nda.build, use_nda), "model": (models.build, use_model), "loss": (losses.build, use_loss),
         "dataset": (data.build, use_dataset)}


def fuzz_cases():
    """(kind, name, base options, option to fuzz) for every component and option."""
    cases = []
    for name in nda.names():
        for option in nda.TRANSFORMS.options(name):
            cases.append(("nda", name, NDA_BASE.get(name, {}), option))
    for name in models.names():
        for option in models.base.MODELS.options(name):
            cases.append(("model", name, MODEL_BASE[name], option))
    for name in losses.names():
        for option in losses.base.LOSSES.options(name):
            cases.append(("loss", name, {}, option))
    for name, base in DATA_BASE.items():
        for option in [o for o in data.options(name) if o not in DATA_COMMON] + list(DATA_COMMON):
            cases.append(("dataset", name, base, option))
    return cases


def check_one(kind: str, name: str, options: dict, named: list[str]) -> None:
    """Build `name` with `options` and use it on a small input: ValueErrors must be one line, and
    a refused build must name one of the options in `named`; any other exception fails."""
    build, use = KINDS[kind]
    where = f"{kind} {name} {options!r}"
    try:
        built = build(name, **options)
    except ValueError as err:
        assert "\n" not in str(err) and any(o in str(err) for o in named), f"{where}: does not name {named}: {err}"
        return
    except Exception as err:  # noqa: BLE001 -- the point of the test
        pytest.fail(f"{where}: build raised {type(err).__name__}: {err}")
    try:
        use(built)
    except ValueError as err:
        assert "\n" not in str(err), f"{where}: {err}"
    except Exception as err:  # noqa: BLE001
        pytest.fail(f"{where}: using it raised {type(err).__name__}: {err}")


@pytest.mark.slow
def test_fuzz_every_option_builds_and_works_or_is_a_value_error_naming_it():
    """Every option of every registered transform, model and loss (and the cheap datasets) gets
    every value of VALUES (None, bools, ints from -2^63 to 10^30, floats with NaN and inf, numpy
    and torch scalars, strings, lists, dicts), then seeded random draws set several options at
    once. Either the component builds and works on a small input, or the build raises a one-line
    ValueError naming the option (using it may raise a one-line ValueError too, e.g. a jigsaw k
    that does not divide the image): never a TypeError, OverflowError, RuntimeError..."""
    start, tried = time.perf_counter(), 0
    cases = fuzz_cases()
    for kind, name, base, option in cases:
        for value in VALUES:
            check_one(kind, name, {**base, option: value}, [option])
            tried += 1
    rng = random.Random(0)
    components = sorted({(kind, name) for kind, name, _, _ in cases})
    for kind, name in components:
        base = next(b for k, n, b, _ in cases if (k, n) == (kind, name))
        fuzzed = [o for k, n, _, o in cases if (k, n) == (kind, name)]
        for _ in range(20):
            chosen = rng.sample(fuzzed, min(len(fuzzed), rng.randint(2, 3)))
            check_one(kind, name, {**base, **{o: rng.choice(VALUES) for o in chosen}}, chosen)
            tried += 1
    assert tried > 3000 and time.perf_counter() - start < 60
