"""What every reported number records: library versions and content hashes.

A metric value without its protocol cannot be compared (FACTS: the most common complaint about
GAN libraries is FID numbers nobody can reproduce), so each result carries one.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
from pathlib import Path

import torch

from negaug import __version__

_PACKAGES = ("negaug", "torch", "torchmetrics", "torch-fidelity", "numpy", "scipy")


def library_versions() -> dict[str, str | None]:
    """Installed versions of the packages a metric value can depend on (None: not installed).

    Read from package metadata, so nothing heavy (torch-fidelity) is imported; negaug's own from
    `negaug.__version__`, the code that ran (an editable install's metadata keeps the version it
    was installed with, which recorded "0.2.0" for numbers computed by 0.3.0).
    """
    versions: dict[str, str | None] = {"negaug": __version__}
    for name in _PACKAGES[1:]:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def tensor_sha256(*tensors: torch.Tensor) -> str:
    """SHA-256 of the dtypes, shapes and raw bytes of ``tensors`` (CPU copies, contiguous)."""
    digest = hashlib.sha256()
    for tensor in tensors:
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
        # view as bytes: hashes bfloat16/float64 alike, without a numpy round trip
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def file_sha256(path: str | Path, chunk_bytes: int = 1 << 22) -> str:
    """SHA-256 of a file's bytes, read in chunks (weights files are ~100 MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_bytes), b""):
            digest.update(chunk)
    return digest.hexdigest()
