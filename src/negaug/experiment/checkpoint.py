"""Checkpoint files that survive kills and never unpickle: atomic, verified I/O of a state dict.

What a checkpoint holds is defined by `TrainState.state_dict()` (`negaug.experiment.state`); this
module only writes and reads it. A checkpoint is two files in `checkpoints/`:
- `step_0001000.safetensors`: every tensor of the nested state dict, named by its path
  (`opt_g.state.0.exp_avg`), and
- `step_0001000.json`: the rest of the state (the tree, with each tensor replaced by its name),
  the caller's record (config, versions) and the SHA-256 and size of the tensor file.

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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes

from negaug.files import create_new_file, read_limited

MAX_RECORD_BYTES = 64 * 1024 * 1024  # a record is a few KB (its config, the optimizer's scalars)
FORMAT_VERSION = 2  # 1: the flat layout of negaug <= 0.1.0 train/loop.py, still read
_NAME = re.compile(r"^step_(\d{7,})\.json$")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file."""


@dataclass
class Checkpoint:
    step: int
    state: dict[str, Any]  # the nested state dict that was saved
    record: dict[str, Any]  # what the caller recorded next to it (config, versions, time)
    path: Path  # the JSON file


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = create_new_file(path.with_name(f".{path.name}.tmp-{os.getpid()}"))  # never through a planted symlink
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


def save(folder: Path, step: int, state: dict[str, Any], record: dict[str, Any]) -> Path:
    """Write the nested `state` (tensors, dicts, lists, numbers, strings) and the JSON-able
    `record` as checkpoint `step`, atomically; returns the JSON path. On failure (full disk) the
    temporary files are removed and earlier checkpoints are untouched. The caller is the folder's
    only writer (it holds the run's lock), so temporary files left by a killed writer are removed."""
    folder.mkdir(parents=True, exist_ok=True)
    for leftover in folder.glob(".step_*.tmp-*"):
        leftover.unlink(missing_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    tree = _encode(state, "", tensors)
    blob = save_safetensors_bytes({k: v.detach().contiguous().cpu() for k, v in tensors.items()})
    tensor_path = folder / f"{stem(step)}.safetensors"
    json_path = folder / f"{stem(step)}.json"
    record = dict(record, step=step, state=tree, format_version=FORMAT_VERSION,
                  tensor_file=tensor_path.name, tensor_bytes=len(blob),
                  tensor_sha256=hashlib.sha256(blob).hexdigest())
    record["record_sha256"] = _record_hash(record)
    try:
        _write_atomic(tensor_path, blob)
        _write_atomic(json_path, json.dumps(record, indent=1).encode())
        _fsync_dir(folder)
    except OSError:
        for leftover in folder.glob(f".{stem(step)}.*.tmp-*"):
            leftover.unlink(missing_ok=True)
        raise
    return json_path


def _record_hash(record: dict[str, Any]) -> str:
    """SHA-256 of the record without its own hash: a flipped bit anywhere in the JSON (a learning
    rate, a step) makes the checkpoint bad instead of silently changing the run."""
    body = {key: value for key, value in record.items() if key != "record_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def list_steps(folder: Path) -> list[int]:
    """Steps that have a JSON record, oldest first (good or bad: `load` checks)."""
    if not folder.is_dir():
        return []
    steps = [int(m.group(1)) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return sorted(steps)


def read_record(json_path: Path) -> dict[str, Any]:
    """The verified JSON record of a checkpoint (without reading its tensors); CheckpointError
    naming the file when it is missing, unreadable, altered, or of a format this negaug cannot read."""
    json_path = Path(json_path)
    try:
        data = read_limited(json_path, MAX_RECORD_BYTES, "checkpoint record")
    except ValueError as err:  # a FIFO, a device, a folder, an oversized file
        raise CheckpointError(str(err)) from None
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint record {json_path} does not exist") from None
    except OSError as err:
        raise CheckpointError(f"checkpoint record {json_path} cannot be read ({err.strerror})") from None
    try:
        meta = json.loads(data)
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise CheckpointError(f"checkpoint record {json_path} is corrupted ({type(err).__name__}: "
                              f"{str(err)[:100]})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("tensor_file"), str) \
            or type(meta.get("step")) is not int or meta["tensor_file"] != json_path.with_suffix(".safetensors").name:
        raise CheckpointError(f"checkpoint record {json_path} is not a negaug checkpoint (or names another "
                              f"tensor file than its own)")
    if meta.get("format_version") not in (1, FORMAT_VERSION):
        raise CheckpointError(f"checkpoint record {json_path} has format {str(meta.get('format_version'))[:20]}, "
                              f"which this negaug cannot read (it reads 1 and {FORMAT_VERSION}); use the negaug "
                              f"that wrote it")
    if meta.get("format_version") == FORMAT_VERSION and meta.get("record_sha256") != _record_hash(meta):
        raise CheckpointError(f"checkpoint record {json_path} was altered after it was written (hash mismatch)")
    return meta


def load_file(json_path: Path) -> Checkpoint:
    """Load one checkpoint, verifying it; raises CheckpointError naming the bad file."""
    json_path = Path(json_path)
    if json_path.suffix == ".safetensors":
        json_path = json_path.with_suffix(".json")
    meta = read_record(json_path)
    tensor_path = json_path.with_name(meta["tensor_file"])
    try:
        blob = read_limited(tensor_path, meta["tensor_bytes"], "checkpoint tensors") \
            if type(meta.get("tensor_bytes")) is int else b""
    except (OSError, ValueError) as err:
        raise CheckpointError(f"checkpoint tensors {tensor_path} are missing, truncated or corrupted "
                              f"({str(err)[:120]})") from None
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
    try:
        state = _state_from_v1(tensors, meta) if meta.get("format_version") == 1 else _decode(meta.pop("state"), tensors)
        if isinstance(state, dict) and "step" in state and state["step"] != meta["step"]:
            raise ValueError(f"the state's step {state['step']!r} is not the record's {meta['step']}")
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise CheckpointError(f"checkpoint record {json_path} does not describe its tensors ({err!r})") from None
    return Checkpoint(step=meta["step"], state=state, record=meta, path=json_path)


Accept = Callable[[Checkpoint], None]  # e.g. loads the state into a TrainState; raises if it does not fit


def use(found: Checkpoint, accept: Accept | None) -> Checkpoint:
    """`accept(found)`, with a state that does not fit (a missing entry, a wrong shape) turned into
    a CheckpointError naming the file."""
    if accept is not None:
        try:
            accept(found)
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError) as err:
            reason = str(err).splitlines()[0] if str(err) else ""
            raise CheckpointError(f"checkpoint {found.path} does not fit this run "
                                  f"({type(err).__name__}: {reason[:200]})") from None
    return found


def load_latest(folder: Path, warn=None, accept: Accept | None = None) -> Checkpoint | None:
    """The newest good checkpoint in `folder` that `accept` takes (when given); bad ones are
    reported through `warn(message)` and skipped. None when there is none at all."""
    for step in reversed(list_steps(folder)):
        try:
            return use(load_file(folder / f"{stem(step)}.json"), accept)
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
    _remove_orphan_tensors(folder, protect)


def _remove_orphan_tensors(folder: Path, protect: set[int]) -> None:
    """Delete tensor files older than the newest record that have no record of their own: what a
    kill between unlinking a pruned checkpoint's record and its tensors leaves behind."""
    steps = set(list_steps(folder))
    if not steps:
        return
    newest = max(steps)
    for path in folder.glob("step_*.safetensors"):
        digits = path.name[len("step_"):-len(".safetensors")]
        if digits.isdigit() and int(digits) < newest and int(digits) not in steps and int(digits) not in protect:
            path.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# a nested state dict <-> (a JSON tree, named tensors)


def _encode(value: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    """The JSON tree of `value`; its tensors go to `tensors` under their path. Dicts whose keys are
    not all strings (an optimizer's per-parameter state) and tuples keep their types."""
    if isinstance(value, torch.Tensor):
        if path in tensors:
            raise ValueError(f"two tensors of the state would be saved as '{path}'")
        tensors[path] = value
        return {"__tensor__": path}
    if isinstance(value, dict):
        if all(isinstance(key, str) for key in value):
            return {key: _encode(item, f"{path}.{key}" if path else key, tensors) for key, item in value.items()}
        return {"__items__": [[key, _encode(item, f"{path}.{key}", tensors)] for key, item in value.items()]}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(item, f"{path}.{i}", tensors) for i, item in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(item, f"{path}.{i}", tensors) for i, item in enumerate(value)]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot save {type(value).__name__} at '{path}' in a checkpoint")


def _decode(tree: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(tree, list):
        return [_decode(item, tensors) for item in tree]
    if not isinstance(tree, dict):
        return tree
    if "__tensor__" in tree:
        return tensors[tree["__tensor__"]]
    if "__items__" in tree:
        return {key: _decode(item, tensors) for key, item in tree["__items__"]}
    if "__tuple__" in tree:
        return tuple(_decode(item, tensors) for item in tree["__tuple__"])
    return {key: _decode(item, tensors) for key, item in tree.items()}


def _state_from_v1(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    """The state dict of a format-1 checkpoint (tensors named G.*, D.*, EMA.*, opt_*.state.*, rng.*)."""
    def prefixed(prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}

    def optimizer(name: str) -> dict[str, Any]:
        per_param: dict[int, dict[str, Any]] = {}
        for key, value in [*prefixed(f"{name}.state").items(), *meta[name]["scalars"].items()]:
            index, field = key.split(".", 1)
            per_param.setdefault(int(index), {})[field] = value
        return {"state": per_param, "param_groups": meta[name]["param_groups"]}

    state = {"step": int(meta["step"]), "generator": prefixed("G"), "discriminator": prefixed("D"),
             "opt_g": optimizer("opt_g"), "opt_d": optimizer("opt_d"), "batches": meta["stream"],
             "best": meta.get("best"), "rng": {key: tensors[f"rng.{key}"] for key in ("latent", "nda", "torch")}}
    if prefixed("EMA"):
        state["ema"] = prefixed("EMA")
    if "scaler" in meta:
        state["scaler"] = meta["scaler"]
    return state
