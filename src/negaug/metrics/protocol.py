"""What every reported number records: library versions and content hashes.

A metric value without its protocol cannot be compared (FACTS: the most common complaint about
GAN libraries is FID numbers nobody can reproduce), so each result carries one.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import subprocess
from pathlib import Path

import torch

from negaug import __version__

_PACKAGES = ("negaug", "torch", "torchmetrics", "torch-fidelity", "numpy", "scipy")


def library_versions() -> dict[str, str | int | bool | None]:
    """Where a number came from: installed versions of the packages a metric value can depend on
    (None: not installed), negaug's git commit and whether the checkout had uncommitted changes
    (`negaug_commit`, `negaug_dirty`; None when negaug does not run from a git checkout), and
    torch's CPU thread count (`torch_threads`).

    Read from package metadata, so nothing heavy (torch-fidelity) is imported; negaug's own from
    `negaug.__version__`, the code that ran (an editable install's metadata keeps the version it
    was installed with, which recorded "0.2.0" for numbers computed by 0.3.0).
    """
    versions: dict[str, str | int | bool | None] = {"negaug": __version__, **source_commit()}
    for name in _PACKAGES[1:]:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    versions["torch_threads"] = torch.get_num_threads()
    return versions


def source_commit() -> dict[str, str | bool | None]:
    """{"negaug_commit": the git commit of the checkout negaug's code is imported from,
    "negaug_dirty": True when its tracked files differ from that commit}; both None outside git.
    The commit is read once per process; the dirty flag each call (files may change while a
    long study runs)."""
    root = _checkout_root()
    if root is None:
        return {"negaug_commit": None, "negaug_dirty": None}
    status = _git(root, "status", "--porcelain", "--untracked-files=no")
    return {"negaug_commit": _commit(root), "negaug_dirty": None if status is None else bool(status.strip())}


@functools.lru_cache(maxsize=1)
def _checkout_root() -> str | None:
    source = Path(__file__).resolve().parents[1]  # src/negaug
    root = _git(str(source), "rev-parse", "--show-toplevel")
    if root is None or not (Path(root.strip()) / "src" / "negaug").is_dir():
        return None  # an installed copy inside some other repository
    return root.strip()


@functools.lru_cache(maxsize=1)
def _commit(root: str) -> str | None:
    head = _git(root, "rev-parse", "HEAD")
    return None if head is None else head.strip()


def _git(cwd: str, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


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
