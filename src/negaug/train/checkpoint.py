"""Checkpoints that survive kills and never unpickle.

A checkpoint is two files in `checkpoints/`:
- `step_0001000.safetensors`: every tensor (G, D, EMA, optimizer moments, RNG states), and
- `step_0001000.json`: everything else (step, config, optimizer hyper-parameters, data-stream
  position) plus the SHA-256 and size of the tensor file.

Both are written to a temporary name, flushed to disk and renamed; the JSON goes last and is the
commit marker. A checkpoint whose JSON is missing, unreadable or whose tensor file does not match
the recorded hash is "bad": loading reports it by name and falls back to the previous good one.
safetensors holds raw tensors only, so a file carrying a pickled code payload cannot be loaded.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes

FORMAT_VERSION = 1
_NAME = re.compile(r"^step_(\d{7,})\.json$")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file."""


@dataclass
class Checkpoint:
    step: int
    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any]
    path: Path  # the JSON file


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def stem(step: int) -> str:
    return f"step_{step:07d}"


def save(folder: Path, step: int, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """Write one checkpoint atomically; returns the JSON path. On failure (full disk) the
    temporary files are removed and earlier checkpoints are untouched."""
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    blob = save_safetensors_bytes(tensors)
    tensor_path = folder / f"{stem(step)}.safetensors"
    json_path = folder / f"{stem(step)}.json"
    record = dict(meta, step=step, format_version=FORMAT_VERSION,
                  tensor_file=tensor_path.name, tensor_bytes=len(blob),
                  tensor_sha256=hashlib.sha256(blob).hexdigest())
    try:
        _write_atomic(tensor_path, blob)
        _write_atomic(json_path, json.dumps(record, indent=1).encode())
        _fsync_dir(folder)
    except OSError:
        for leftover in folder.glob(f".{stem(step)}.*.tmp-*"):
            leftover.unlink(missing_ok=True)
        raise
    return json_path


def list_steps(folder: Path) -> list[int]:
    """Steps that have a JSON record, oldest first (good or bad: `load` checks)."""
    if not folder.is_dir():
        return []
    steps = [int(m.group(1)) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return sorted(steps)


def load_file(json_path: Path) -> Checkpoint:
    """Load one checkpoint, verifying it; raises CheckpointError naming the bad file."""
    json_path = Path(json_path)
    if json_path.suffix == ".safetensors":
        json_path = json_path.with_suffix(".json")
    try:
        meta = json.loads(json_path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint record {json_path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"checkpoint record {json_path} is corrupted ({err})") from None
    if not isinstance(meta, dict) or "tensor_file" not in meta:
        raise CheckpointError(f"checkpoint record {json_path} is not a negaug checkpoint")
    tensor_path = json_path.with_name(meta["tensor_file"])
    try:
        blob = tensor_path.read_bytes()
    except OSError:
        raise CheckpointError(f"checkpoint tensors {tensor_path} are missing") from None
    if len(blob) != meta.get("tensor_bytes") or hashlib.sha256(blob).hexdigest() != meta.get("tensor_sha256"):
        raise CheckpointError(
            f"checkpoint tensors {tensor_path} are truncated or corrupted "
            f"({len(blob)} bytes, expected {meta.get('tensor_bytes')}; hash mismatch)"
        )
    try:
        tensors = load_safetensors_bytes(blob)
    except (SafetensorError, ValueError, RuntimeError) as err:
        # e.g. a pickle payload put in place of the file: never unpickled, refused here
        raise CheckpointError(f"checkpoint tensors {tensor_path} are not a safetensors file ({err})") from None
    return Checkpoint(step=int(meta["step"]), tensors=tensors, meta=meta, path=json_path)


def load_latest(folder: Path, warn=None) -> Checkpoint | None:
    """The newest good checkpoint in `folder`; bad ones are reported through `warn(message)`
    and skipped. None when there is none at all."""
    for step in reversed(list_steps(folder)):
        try:
            return load_file(folder / f"{stem(step)}.json")
        except CheckpointError as err:
            if warn is not None:
                warn(f"{err}; falling back to the previous checkpoint")
    return None


def prune(folder: Path, keep: int, protect: set[int] = frozenset()) -> None:
    """Delete all but the `keep` newest checkpoints, never those in `protect`."""
    steps = list_steps(folder)
    for step in steps[: max(len(steps) - keep, 0)]:
        if step in protect:
            continue
        (folder / f"{stem(step)}.json").unlink(missing_ok=True)  # the record first: no half-checkpoint looks good
        (folder / f"{stem(step)}.safetensors").unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# flattening module / optimizer / generator state into tensors + JSON


def optimizer_to_flat(prefix: str, optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Optimizer state as named tensors plus JSON-able param groups and per-param scalars."""
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, per_param in state["state"].items():
        for key, value in per_param.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{prefix}.state.{index}.{key}"] = value
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def optimizer_from_flat(prefix: str, tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict[str, Any]] = {}
    head = f"{prefix}.state."
    for name, value in tensors.items():
        if name.startswith(head):
            index, key = name[len(head):].split(".", 1)
            state.setdefault(int(index), {})[key] = value
    for name, value in meta["scalars"].items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def prefixed(prefix: str, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v for k, v in state_dict.items()}


def unprefixed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    head = f"{prefix}."
    return {k[len(head):]: v for k, v in tensors.items() if k.startswith(head)}
