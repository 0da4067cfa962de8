"""Feature extractors, the first stage of every feature-based metric.

    extractor = negaug.metrics.features.build("classifier", data=train_set, data_name="mnist5k")
    features, logits = extract_features(extractor, images, batch_size=250)

Registered: "inception" (standard TF-Inception pool3 features via torch-fidelity; needs the
weights file, never downloads it), "classifier" (a small CNN trained on the dataset itself,
cached; the offline default) and "raw" (flattened pixels or points; 2-D toys and tests).

Every extractor is an ``nn.Module`` with ``forward(images (B, C, H, W) in [-1, 1]) ->
(features (B, F) float32, logits (B, K) or None)``, an ``identifier`` that names the feature
space in result keys (only the standard TF-Inception is called plain "inception") and
``protocol() -> dict`` (what produced the features: weights hash, training data hash, ...).
"""
from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from negaug import distributed
from negaug.files import require_regular_file
from negaug.metrics import classifier as clf
from negaug.metrics.protocol import file_sha256
from negaug.metrics.trust import fingerprints
from negaug.registry import Registry, check_bool, check_int, short

FEATURES = Registry("feature extractor")

# Torch hub file names of the TF-Inception port: torch-fidelity's (also what torchmetrics
# downloads) and pytorch-fid's; "6726825d" is the hub hash prefix, the first 8 hex digits of
# the file's SHA-256, so both names hold the same bytes.
INCEPTION_FILENAMES = ("weights-inception-2015-12-05-6726825d.pth", "pt_inception-2015-12-05-6726825d.pth")
INCEPTION_SHA256_PREFIX = "6726825d"


def check_path(name: str, value: Any) -> None:
    if value is not None and not isinstance(value, (str, os.PathLike)):
        raise ValueError(f"{name}={short(value)} must be a path or None")


def build(name: str, **options: Any) -> FeatureExtractor:
    return FEATURES.build(name, **options)


def names() -> list[str]:
    return FEATURES.names()


class FeatureExtractor(nn.Module):
    """Base class: see the module docstring for the contract."""

    name = "base"
    identifier = "base"
    num_features = 0  # 0: as many as the input has (raw)
    num_logits = 0  # 0: no class probabilities (no Inception Score)

    def protocol(self) -> dict[str, Any]:
        return {"extractor": self.name, "identifier": self.identifier}


@FEATURES.register("raw")
class RawFeatures(FeatureExtractor):
    """Flattened input as features: (B, ...) -> (B, prod(...)); no logits."""

    name = identifier = "raw"

    def forward(self, images: Tensor) -> tuple[Tensor, None]:
        return images.flatten(1).float(), None


@FEATURES.register("classifier")
class ClassifierFeatures(FeatureExtractor):
    """Penultimate layer and logits of the cached SmallCNN trained on ``data``.

    Args:
        data: the training images: a dataset with ``images``, ``labels``, ``num_classes``
            (e.g. ``TensorImageDataset``), or a tensor (N, C, S, S) in [-1, 1] (unlabeled).
        data_name: names the cache file and the feature space ("classifier:<data_name>-<weights8>",
            the first 8 hex digits of the weights' SHA-256).
        cache_dir: None: $NEGAUG_CACHE or ~/.cache/negaug.
        progress: tqdm bar (stderr) while training.
        epochs, seed: training settings (part of the cache key).
    """

    name = "classifier"

    def __init__(self, data: Any, data_name: str | None = None, cache_dir: str | Path | None = None,
                 progress: bool = False, epochs: int = clf.ClassifierSettings.epochs, seed: int = 0):
        super().__init__()
        check_int("classifier epochs", epochs, 1, 10_000)
        check_int("classifier seed", seed)
        check_bool("classifier progress", progress)
        check_path("classifier cache_dir", cache_dir)
        if data_name is not None and not isinstance(data_name, str):
            raise ValueError(f"classifier data_name={short(data_name)} must be a string or None")
        images, labels, num_classes = _training_tensors(data)
        data_name = data_name or getattr(data, "name", "") or "data"
        settings = clf.ClassifierSettings(epochs=epochs, seed=seed)
        self.network, self.meta = clf.load_or_train_classifier(
            images, labels, num_classes, data_name, settings, cache_dir, progress)
        # named after the weights, not the cache key: retraining elsewhere (other thread count,
        # other CPU) can give slightly different weights, hence a different feature space
        self.identifier = f"classifier:{data_name}-{self.meta['weights_sha256'][:8]}"
        self.num_features = settings.feature_dim
        # classifier IS only makes sense for class labels, not for the rotation task
        self.num_logits = self.meta["num_outputs"] if self.meta["task"] == "labels" else 0
        self.channels, self.image_size = images.shape[1], images.shape[-1]
        self.training_fingerprints = fingerprints(images)  # to tell whether a reference was trained on

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor | None]:
        if tuple(images.shape[1:]) != (self.channels, self.image_size, self.image_size):
            raise ValueError(f"the classifier was trained on {self.channels}x{self.image_size}x{self.image_size} "
                             f"images; got {tuple(images.shape[1:])}")
        features, logits = self.network(images)
        return features, (logits if self.num_logits else None)

    def protocol(self) -> dict[str, Any]:
        keep = ("key", "data_sha256", "weights_sha256", "data_name", "task", "val_accuracy", "num_train",
                "settings", "classifier_version")
        return {**super().protocol(), **{k: self.meta.get(k) for k in keep}}


MAX_LAZY_TRAIN = clf.ClassifierSettings.max_images  # images decoded from a lazy (on-disk) dataset


def _training_tensors(data: Any) -> tuple[Tensor, Tensor, int]:
    """(images (N, C, S, S) float32, labels (N,) int64, num_classes) of a tensor or a dataset;
    a lazy dataset contributes MAX_LAZY_TRAIN evenly spaced images (decoding all of CelebA is slow)."""
    if isinstance(data, Tensor):
        return data.float(), torch.zeros(data.shape[0], dtype=torch.int64), 0
    if hasattr(data, "to_memory") and not hasattr(data, "images"):
        data = data.subset(torch.linspace(0, len(data) - 1, min(len(data), MAX_LAZY_TRAIN)).long()).to_memory()
    if data is None or not hasattr(data, "images"):
        raise ValueError("the classifier feature extractor needs data=: an image dataset or an image tensor")
    return data.images.float(), data.labels.long(), int(getattr(data, "num_classes", 0))


@FEATURES.register("inception")
class InceptionFeatures(FeatureExtractor):
    """TF-Inception-v3 pool3 features (2048) and logits (1008) through torch-fidelity's port,
    which resizes to 299 px as TensorFlow 1.x did. Images are rounded to uint8 first (as
    saved PNGs would be) and grey images repeated to 3 channels.

    Args:
        weights: the weights file; None: look in $NEGAUG_INCEPTION_WEIGHTS and the torch hub
            cache (see ``resolve_inception_weights``). Never downloads.
    """

    name = "inception"
    num_features, num_logits = 2048, 1008

    def __init__(self, weights: str | Path | None = None):
        super().__init__()
        check_path("inception weights", weights)
        path = resolve_inception_weights(weights)
        self.weights_path, self.weights_sha256 = str(path), file_sha256(path)
        self.standard = self.weights_sha256.startswith(INCEPTION_SHA256_PREFIX)
        self.identifier = "inception" if self.standard else f"inception:{self.weights_sha256[:8]}"
        self.network = load_tf_inception(path)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        pixels = torch.floor((images.clamp(-1, 1) + 1) * 127.5 + 0.5).to(torch.uint8)
        if pixels.shape[1] == 1:
            pixels = pixels.expand(-1, 3, -1, -1)
        features, logits = self.network(pixels)
        return features, logits

    def protocol(self) -> dict[str, Any]:
        return {**super().protocol(), "weights_sha256": self.weights_sha256, "weights_standard": self.standard,
                "weights_path": self.weights_path, "resize": "299 px, TF1 bilinear (torch-fidelity)",
                "quantised": "uint8, rounded"}


def load_tf_inception(path: str | Path) -> nn.Module:
    """torch-fidelity's TF-Inception port with local weights: uint8 (B, 3, H, W) ->
    (pool3 (B, 2048), unbiased logits (B, 1008)). Imported here, not at module import, so that
    torch-fidelity (which installs a top-level ``tests`` package) loads only when used.

    The file is read once with ``torch.load(weights_only=True)``: a file holding anything but
    tensors is refused, not executed. torch-fidelity itself unpickles without that restriction, so
    it gets the state dict re-serialised from the checked tensors, never the file. A file whose
    tensors do not fit the network is a one-line ValueError naming the file."""
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    except ImportError as err:
        raise ValueError("the inception feature extractor needs torch-fidelity: pip install torch-fidelity") from err
    hint = f"use {INCEPTION_FILENAMES[0]} from torch-fidelity's releases"
    try:
        state = torch.load(require_regular_file(path, "Inception weights"), map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError, RuntimeError (not a torch file), ...
        raise ValueError(f"{path} is not a plain TF-Inception state dict ({type(err).__name__}); {hint}") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()):
        raise ValueError(f"{path} is not a plain TF-Inception state dict (not a dict of named tensors); {hint}")
    checked = io.BytesIO()
    torch.save(state, checked)  # only tensors this process just loaded: safe for torch-fidelity's torch.load
    checked.seek(0)
    try:
        return FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"],
                                           feature_extractor_weights_path=checked)
    except RuntimeError as err:  # load_state_dict: missing or unexpected keys, wrong shapes
        first = " ".join(str(err).split())[:200]
        raise ValueError(f"{path} does not hold TF-Inception weights ({first}); {hint}") from None


def inception_search_paths() -> list[Path]:
    """Where the weights are looked for, in order: $NEGAUG_INCEPTION_WEIGHTS, then the torch
    hub checkpoint folder (where torch-fidelity, torchmetrics and pytorch-fid cache them)."""
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    env = os.environ.get("NEGAUG_INCEPTION_WEIGHTS")
    return ([Path(env).expanduser()] if env else []) + [hub / name for name in INCEPTION_FILENAMES]


def find_inception_weights(path: str | Path | None = None) -> Path | None:
    """The weights file to use, or None when absent. A folder is searched for the known names."""
    if path is not None:
        path = Path(path).expanduser()
        candidates = [path / name for name in INCEPTION_FILENAMES] if path.is_dir() else [path]
    else:
        candidates = inception_search_paths()
    return next((c for c in candidates if c.is_file()), None)


def resolve_inception_weights(path: str | Path | None = None) -> Path:
    """Like ``find_inception_weights`` but a missing file raises a one-line FileNotFoundError."""
    found = find_inception_weights(path)
    if found is not None:
        return found
    where = f"{path} does not exist" if path is not None else "no weights file found"
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    raise FileNotFoundError(
        f"TF-Inception weights: {where}; put {INCEPTION_FILENAMES[0]} in {hub}/ or pass "
        f"--inception-weights PATH (negaug never downloads them), or use the offline 'classifier' features")


def iterate_batches(images: Any, batch_size: int, rows: tuple[int, int] | None = None) -> Iterator[Tensor]:
    """Float (B, ...) batches in [-1, 1] from a tensor or a dataset with ``get_batch``; ``rows``:
    only rows [start, stop) (None: all)."""
    start, stop = rows if rows is not None else (0, len(images))
    if isinstance(images, Tensor):
        yield from images[start:stop].split(batch_size)
        return
    for first in range(start, stop, batch_size):
        index = torch.arange(first, min(first + batch_size, stop))
        yield images.get_batch(index)[0]


def extract_features(
    extractor: nn.Module, images: Any, batch_size: int = 250, device: str | torch.device = "cpu",
    progress: bool = False, description: str = "features",
) -> tuple[Tensor, Tensor | None]:
    """Run ``extractor`` over images (N, C, H, W) (tensor or dataset) in batches, without grad.

    Returns features (N, F) float32 and logits (N, K) float32 or None, on the CPU. The result
    does not depend on ``batch_size`` (up to float round-off) since the extractor is in eval mode.

    Under ``torchrun`` every rank runs the same call on the same images: each extracts its share of
    whole batches (`negaug.distributed.batch_shard`) and every rank gets all N rows, gathered in
    order, the very batches one process would run (so the same values).
    """
    extractor = extractor.to(device).eval()
    share = distributed.batch_shard(len(images), batch_size)  # None: one process, all rows
    batches = iterate_batches(images, batch_size, share)
    if progress and distributed.rank() == 0:
        start, stop = share or (0, len(images))
        batches = tqdm(batches, total=-(-(stop - start) // batch_size), desc=description,
                       unit="batch")  # tqdm writes to stderr
    features, logits = [], []
    with torch.inference_mode():
        for batch in batches:
            f, l = extractor(batch.to(device))
            features.append(f.float().cpu())
            if l is not None:
                logits.append(l.float().cpu())
    features, logits = torch.cat(features), (torch.cat(logits) if logits else None)
    if share is None:
        return features, logits
    return distributed.all_gather_cat(features), (distributed.all_gather_cat(logits) if logits is not None else None)
