"""The offline feature network: a small CNN trained on the dataset itself, cached on disk.

TF-Inception weights cannot be downloaded on offline machines, and Inception features are a
poor fit for 28-32 px digits anyway; the usual practice for MNIST-like data is a classifier
trained on the data. Labelled data trains it on the labels; unlabeled data (or data with one
class only, such as dots of one count) on predicting which of 4 rotations was applied, a
self-supervised task. On rotation-symmetric data such as dots that accuracy stays at chance
(25%) and the features are those of a barely trained conv net: still a fixed, deterministic
embedding, but there the dot count is the metric to read. The accuracy is recorded, so a
reader can judge. At most ``max_images`` (5,000) images train it, so that training stays
short (MNIST-5k: about 4 s on the idle 2-core machine, `benchmarks/fid_offline.py`).

Training runs on one CPU thread whatever the caller's setting (`single_thread`): with 2 threads
the same data and seed gave other weights than with 1 (parallel reductions sum in another order),
and FIDs that differed by 0.14 under the same identifier. One thread makes the weights, and so the
feature space, the same on every machine of the same kind (tested with 1 and 2 caller threads).

The trained weights live in ``<cache>/classifiers/<data>-<key16>.safetensors`` plus a JSON
metadata file; ``key`` hashes the training images, labels, settings and CLASSIFIER_VERSION, so
other data or settings train a new network and the same ones reuse it.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import Tensor, nn
from tqdm.auto import tqdm

from negaug import distributed
from negaug.files import read_limited, write_atomically
from negaug.metrics.protocol import library_versions, tensor_sha256

CLASSIFIER_VERSION = 2  # bump when the architecture or the training changes: old caches go stale
# 2: trained on one thread (thread-independent weights); the training split holds out validation
TRAINING_THREADS = 1


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """torch's intra-op threads set to TRAINING_THREADS inside, restored after (even on error)."""
    before = torch.get_num_threads()
    torch.set_num_threads(TRAINING_THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass(frozen=True)
class ClassifierSettings:
    epochs: int = 5  # passes over the training images
    batch_size: int = 128
    lr: float = 2e-3  # Adam
    width: int = 16  # channels of the first conv; doubled once
    feature_dim: int = 128  # size of the penultimate layer = the features
    seed: int = 0  # initialisation, shuffling, rotations, validation split
    val_fraction: float = 0.1  # held out to report accuracy
    max_images: int = 5000  # a seeded random subset of larger sets: bounds the CPU training time


def _conv_block(in_channels: int, out_channels: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(out_channels), nn.ReLU()]


class SmallCNN(nn.Module):
    """4 conv-BN-ReLU blocks (two stride-2) -> 4x4 average pool -> fc -> features -> fc -> logits.

    Any square input size; images (B, C, H, W) in [-1, 1]. BatchNorm makes 4-5 epochs enough
    (mnist5k: 97.5% test accuracy after 4 epochs, 91.7% without BN)."""

    def __init__(self, channels: int, num_classes: int, width: int = 16, feature_dim: int = 128):
        super().__init__()
        self.body = nn.Sequential(
            *_conv_block(channels, width, 1), *_conv_block(width, width, 2),
            *_conv_block(width, 2 * width, 1), *_conv_block(2 * width, 2 * width, 2),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(),
            nn.Linear(2 * width * 16, feature_dim), nn.ReLU(),
        )
        self.head = nn.Linear(feature_dim, num_classes)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """-> features (B, feature_dim) >= 0, logits (B, num_classes)."""
        features = self.body(x)
        return features, self.head(features)


def rotate_batch(images: Tensor, turns: Tensor) -> Tensor:
    """Rotate image i by turns[i] * 90 degrees: images (B, C, S, S), turns (B,) in 0..3."""
    rotations = torch.stack([torch.rot90(images, k, dims=(2, 3)) for k in range(4)])  # (4, B, C, S, S)
    return rotations[turns, torch.arange(images.shape[0])]


def _task_batch(images: Tensor, labels: Tensor, task: str, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    if task == "labels":
        return images, labels
    turns = torch.randint(4, (images.shape[0],), generator=generator)
    return rotate_batch(images, turns), turns


def _accuracy(model: SmallCNN, images: Tensor, labels: Tensor, task: str, batch_size: int) -> float:
    generator = torch.Generator().manual_seed(1)
    correct = 0
    with torch.inference_mode():
        for start in range(0, images.shape[0], batch_size):
            x, y = _task_batch(images[start:start + batch_size], labels[start:start + batch_size], task, generator)
            correct += int((model(x)[1].argmax(dim=1) == y).sum())
    return correct / max(1, images.shape[0])


def train_classifier(
    images: Tensor, labels: Tensor, num_classes: int, settings: ClassifierSettings, progress: bool = False
) -> tuple[SmallCNN, dict]:
    """Train a SmallCNN on images (N, C, S, S) in [-1, 1] and labels (N,); returns it in eval
    mode with {"task", "val_accuracy", "train_seconds", "num_train", "threads"}. Deterministic
    given ``settings.seed`` and independent of the caller's thread count (trained on one thread);
    the global RNG is left as it was."""
    with single_thread():
        return _train_classifier(images, labels, num_classes, settings, progress)


def _train_classifier(images: Tensor, labels: Tensor, num_classes: int, settings: ClassifierSettings,
                      progress: bool) -> tuple[SmallCNN, dict]:
    # labels only teach something when at least two classes occur (dots label every image 6)
    task = "labels" if num_classes >= 2 and labels.unique().numel() >= 2 else "rotation"
    generator = torch.Generator().manual_seed(settings.seed)
    order = torch.randperm(images.shape[0], generator=generator)[:settings.max_images]
    num_val = int(round(settings.val_fraction * order.numel()))
    val, train = order[:num_val], order[num_val:]
    with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's RNG
        torch.manual_seed(settings.seed)
        model = SmallCNN(images.shape[1], num_classes if task == "labels" else 4,
                         settings.width, settings.feature_dim)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    start_time = time.perf_counter()
    steps = _epoch_batches(train, settings, generator)
    if progress:
        steps = tqdm(steps, desc="training feature classifier", unit="batch")
    model.train()
    for batch in steps:
        x, y = _task_batch(images[batch], labels[batch], task, generator)
        loss = F.cross_entropy(model(x)[1], y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    model.eval()
    info = {"task": task, "train_seconds": time.perf_counter() - start_time, "num_train": int(train.numel()),
            "threads": TRAINING_THREADS,
            "val_accuracy": _accuracy(model, images[val], labels[val], task, 512) if num_val else None}
    return model, info


def _epoch_batches(train: Tensor, settings: ClassifierSettings, generator: torch.Generator) -> list[Tensor]:
    """Index batches for all epochs, reshuffled each epoch."""
    batches = []
    for _ in range(settings.epochs):
        batches.extend(train[torch.randperm(train.numel(), generator=generator)].split(settings.batch_size))
    return batches


def default_cache_dir() -> Path:
    """$NEGAUG_CACHE, else ~/.cache/negaug."""
    return Path(os.environ.get("NEGAUG_CACHE") or Path.home() / ".cache" / "negaug")


def classifier_key(images: Tensor, labels: Tensor, num_classes: int, settings: ClassifierSettings) -> tuple[str, str]:
    """(cache key, data hash): SHA-256 over the data hash, the settings and CLASSIFIER_VERSION."""
    data_sha256 = tensor_sha256(images.float(), labels.long())
    recipe = json.dumps({"data": data_sha256, "num_classes": num_classes, "version": CLASSIFIER_VERSION,
                         "settings": asdict(settings)}, sort_keys=True)
    return hashlib.sha256(recipe.encode()).hexdigest(), data_sha256


def load_or_train_classifier(
    images: Tensor, labels: Tensor, num_classes: int, data_name: str = "data",
    settings: ClassifierSettings | None = None, cache_dir: str | Path | None = None, progress: bool = False,
) -> tuple[SmallCNN, dict]:
    """The cached classifier for this data and settings, trained (and cached) on a miss.

    Returns (model in eval mode, metadata dict with "key", "data_sha256", "weights_sha256",
    "data_name", "task", "val_accuracy", "settings", "cached" (True when reused), ...).

    Under ``torchrun`` only rank 0 reads, trains and writes the cache; the other ranks receive its
    weights and metadata (no shared file system needed, no two writers)."""
    settings = settings or ClassifierSettings()
    if distributed.is_distributed():
        return _classifier_of_rank_zero(images, labels, num_classes, data_name, settings, cache_dir, progress)
    return _load_or_train_here(images, labels, num_classes, data_name, settings, cache_dir, progress)


def _load_or_train_here(images: Tensor, labels: Tensor, num_classes: int, data_name: str,
                        settings: ClassifierSettings, cache_dir: str | Path | None,
                        progress: bool) -> tuple[SmallCNN, dict]:
    key, data_sha256 = classifier_key(images, labels, num_classes, settings)
    stem = Path(cache_dir or default_cache_dir()) / "classifiers" / f"{_safe(data_name)}-{key[:16]}"
    note = None
    if stem.with_suffix(".json").exists() or stem.with_suffix(".safetensors").exists():
        try:
            model, meta = _load_verified(stem, key, images.shape[1], settings)
            return model, {**meta, "cached": True}
        except CacheDamaged as err:  # truncated, replaced, edited: never used, trained again
            note = f"the cached feature classifier {err}; trained it again"
    model, info = train_classifier(images, labels, num_classes, settings, progress)
    meta = {"key": key, "data_sha256": data_sha256, "data_name": data_name, "num_classes": num_classes,
            "num_outputs": model.head.out_features, "settings": asdict(settings),
            "weights_sha256": tensor_sha256(*model.state_dict().values()),
            "classifier_version": CLASSIFIER_VERSION, "versions": library_versions(), **info}
    _save(stem, model, meta)
    return model, {**meta, "cached": False, **({"cache_note": note} if note else {})}


MAX_CACHE_BYTES = 256 * 2**20  # a SmallCNN is about 1 MB


class CacheDamaged(ValueError):
    """A cache entry that cannot be trusted; the message names its file and what is wrong."""


def _load_verified(stem: Path, key: str, channels: int, settings: ClassifierSettings) -> tuple[SmallCNN, dict]:
    """The cache entry `stem` (.json + .safetensors) as (model in eval mode, metadata), only when
    its metadata names `key` and its weights hash to the recorded `weights_sha256`; CacheDamaged
    naming the file otherwise (a truncated, replaced or edited entry gives no other feature space
    under the same identifier)."""
    json_path, weights_path = stem.with_suffix(".json"), stem.with_suffix(".safetensors")
    try:
        meta = json.loads(read_limited(json_path, MAX_CACHE_BYTES, "classifier metadata"))
        if not isinstance(meta, dict) or meta.get("key") != key or type(meta.get("num_outputs")) is not int \
                or not isinstance(meta.get("weights_sha256"), str):
            raise ValueError("its metadata is not that of this cache entry")
        model = SmallCNN(channels, meta["num_outputs"], settings.width, settings.feature_dim)
        model.load_state_dict(load_safetensors(read_limited(weights_path, MAX_CACHE_BYTES, "classifier weights")))
    except (OSError, ValueError, RuntimeError, SafetensorError, RecursionError) as err:
        reason = " ".join(str(err).split())[:160] or type(err).__name__
        raise CacheDamaged(f"{weights_path} is damaged ({reason})") from None
    if tensor_sha256(*model.state_dict().values()) != meta["weights_sha256"]:
        raise CacheDamaged(f"{weights_path} does not match the weights hash recorded in {json_path.name}")
    return model.eval(), meta


def _classifier_of_rank_zero(images: Tensor, labels: Tensor, num_classes: int, data_name: str,
                             settings: ClassifierSettings, cache_dir: str | Path | None,
                             progress: bool) -> tuple[SmallCNN, dict]:
    """Rank 0's cached-or-trained classifier on every rank; an error on rank 0 is raised on all."""
    found: tuple | None = None
    if distributed.rank() == 0:
        try:
            model, meta = _load_or_train_here(images, labels, num_classes, data_name, settings, cache_dir, progress)
            found = ("ok", {k: v.cpu() for k, v in model.state_dict().items()}, meta)
        except Exception as err:
            distributed.broadcast_object(("error", f"{type(err).__name__}: {err}", None))  # the others wait
            raise
    status, state, meta = distributed.broadcast_object(found)
    if status != "ok":
        raise ValueError(f"the feature classifier failed on rank 0: {state}")
    if distributed.rank() == 0:
        return model, meta
    with torch.random.fork_rng(devices=[]):  # the weights are overwritten: leave the caller's RNG alone
        model = SmallCNN(images.shape[1], meta["num_outputs"], settings.width, settings.feature_dim)
    model.load_state_dict(state)
    return model.eval(), meta


def _save(stem: Path, model: SmallCNN, meta: dict) -> None:
    """Weights first, JSON last, each via rename: a reader never sees half a cache entry."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    blob = save_safetensors({k: v.contiguous() for k, v in model.state_dict().items()})
    write_atomically(stem.with_suffix(".safetensors"), blob)
    write_atomically(stem.with_suffix(".json"), json.dumps(meta, indent=1))


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "data"
