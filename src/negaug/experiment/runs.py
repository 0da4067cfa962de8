"""Self-describing run folders.

    runs/<name>/config.yaml      the resolved configuration
    runs/<name>/metrics.jsonl    one JSON object per logged step (losses, mean D outputs, it/s, evals)
    runs/<name>/samples/         sample grids from a fixed latent batch
    runs/<name>/checkpoints/     step_XXXXXXX.{safetensors,json}; best/ holds the best by eval metric
    runs/<name>/report.md        a summary written when training ends
"""
from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from negaug import data
from negaug.experiment import kinds
from negaug.experiment.build import build_dataset, build_models, new_state
from negaug.experiment.checkpoint import Accept, Checkpoint, list_steps, load_file, load_latest, read_record, stem, use
from negaug.experiment.config import (
    MAX_CONFIG_BYTES,
    Config,
    ConfigBase,
    check_resumable,
    config_from_dict,
    learning_settings,
    merge,
    parse_override,
    unwrap,
)
from negaug.experiment.state import rng_devices
from negaug.files import UnsafeOutputError, open_no_follow, read_text_limited, write_atomically
from negaug.presets import yaml_load


def is_main_process() -> bool:
    """Rank 0 (or no distributed run): only it writes files."""
    dist = torch.distributed
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def default_run_name(config: ConfigBase) -> str:
    stem = Path(config.preset or "run").stem
    return f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"


LOCK_FILE = ".negaug-run.lock"
# Files another negaug layer may put into a run folder before training starts (negaug repro's lock).
FOREIGN_FILES_ALLOWED = ("repro_training.lock",)


def run_dir_of(config: ConfigBase) -> Path:
    return Path(config.train.runs_dir) / (config.train.name or default_run_name(config))


class RunLock:
    """The exclusive right to write a run folder, held while a process trains in it.

    `fcntl.flock` on `RUN/.negaug-run.lock`: the operating system releases it when the process
    ends, also by SIGKILL, so a killed run never leaves a stale lock. A second process asking for
    a held lock gets a one-line ValueError."""

    def __init__(self, run_dir: Path):
        self.run_dir, self._fd = Path(run_dir), None

    def __enter__(self) -> RunLock:
        path = self.run_dir / LOCK_FILE
        try:
            fd = open_no_follow(path, os.O_RDWR | os.O_CREAT, "run lock")  # a planted symlink is refused, never followed
        except UnsafeOutputError:
            raise
        except OSError as err:
            raise ValueError(f"cannot write the run folder {self.run_dir} ({err.strerror}); "
                             f"choose a writable train.runs_dir") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise ValueError(f"run folder {self.run_dir} is in use by another negaug process (pid {holder}); "
                             f"wait for it to end or choose another train.name") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def check_new_run_dir(run_dir: Path) -> None:
    """A new run goes into a folder that does not exist or holds nothing but negaug's own locks:
    never over a user's files or another run."""
    if not run_dir.exists():
        return
    if not run_dir.is_dir():
        raise ValueError(f"run folder {run_dir} is a file; choose another train.name")
    found = sorted(p.name for p in run_dir.iterdir() if p.name not in (LOCK_FILE, *FOREIGN_FILES_ALLOWED))
    if found:
        hint = f"continue it with --resume {run_dir}" if list_steps(run_dir / "checkpoints") else "delete it"
        raise ValueError(f"run folder {run_dir} already exists and holds {', '.join(found[:3])}"
                         f"{', ...' if len(found) > 3 else ''}; {hint}, or choose another train.name")


def create_run_dir(config: ConfigBase, run_dir: Path, subfolders: tuple[str, ...] = ("samples", "checkpoints")) -> None:
    """Fill the new run folder `run_dir` (created and locked by the caller)."""
    check_new_run_dir(run_dir)  # again, under the lock: another process may have started there
    for sub in subfolders:
        (run_dir / sub).mkdir(parents=True, exist_ok=True)
    write_config(run_dir, config)


def write_config(run_dir: Path, config: ConfigBase) -> None:
    write_atomically(run_dir / "config.yaml", config.to_yaml())


SPLITS_SINCE = (0, 4)  # negaug 0.4.0 holds a validation split out of "train"


def config_of_record(record: dict[str, Any], cls: type[ConfigBase] = Config) -> Any:
    """The config a checkpoint record holds, read as the negaug that wrote it meant it: before
    0.4.0, data.split "train" was the whole training split, which is "train+val" now, so an old
    run resumes (and is evaluated) on the images it trained on."""
    config = config_from_dict(record["config"], cls)
    if _version_tuple(record.get("negaug_version")) < SPLITS_SINCE and config.data.split == "train" \
            and config.data.name in data.DATASETS and config.data.name not in (*data.GENERATED, *data.NATIVE_VAL):
        config.data.split = "train+val"
    return config


def _version_tuple(text: Any) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in str(text).split(".")[:2])
    except ValueError:
        return SPLITS_SINCE  # unknown: read as today's


def read_config(run_dir: Path, cls: type[ConfigBase] = Config) -> Any:
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a negaug run folder (no config.yaml); "
                                f"give the folder that `{cls.COMMAND}` created under runs/")
    try:
        raw = yaml_load(read_text_limited(path, MAX_CONFIG_BYTES, "config"))
    except (yaml.YAMLError, ValueError, RecursionError) as err:
        raise ValueError(f"{path} is not valid YAML ({' '.join(str(err).split())[:160]}); restore it from the "
                         f"run's checkpoint record (checkpoints/*.json, key 'config')") from None
    return config_from_dict(raw, cls)


class MetricsLog:
    """Append-only metrics.jsonl; on resume, lines past the checkpoint step are dropped so a
    resumed run's log reads like an uninterrupted one."""

    def __init__(self, path: Path, resume_step: int | None = None):
        self.path = path
        if resume_step is not None and path.exists():
            kept = [line for line in _read_log(path).splitlines()
                    if line.strip() and _step_of(line) <= resume_step]
            write_atomically(path, "".join(line + "\n" for line in kept))
        fd = open_no_follow(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, "metrics log")
        self._handle = os.fdopen(fd, "a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self._handle.write(json.dumps(record) + "\n")
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()


MAX_LOG_BYTES = 1 << 30


def _read_log(path: Path) -> str:
    """metrics.jsonl as text; a log that is not a regular file or is absurdly large is treated as
    empty (it is negaug's own append-only record, rebuilt from the checkpoints' step on resume)."""
    try:
        return read_text_limited(path, MAX_LOG_BYTES, "metrics log")
    except ValueError:
        return ""


def _step_of(line: str) -> int:
    """The step of a metrics.jsonl line; a torn or damaged line (killed mid-write, edited) counts as
    past every checkpoint, so a resume drops it instead of stopping."""
    try:
        step = json.loads(line).get("step", 0)
        return step if type(step) is int else 1 << 62
    except (ValueError, AttributeError, RecursionError):
        return 1 << 62


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    records = []
    for line in _read_log(path).splitlines():
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def recorded_config(run_dir: Path, cls: type[ConfigBase] = Config) -> Any:
    """The config (a `cls`) recorded in the run's newest checkpoint whose record verifies. It, not
    the editable config.yaml (a copy for people), is what a resumed run continues with."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise FileNotFoundError(f"{run_dir} does not exist; give the run folder that `{cls.COMMAND}` created "
                                f"(train.runs_dir/train.name, e.g. runs/<name>)")
    if not (run_dir / "checkpoints").is_dir():
        raise FileNotFoundError(f"{run_dir} is not a negaug run folder (no checkpoints/); give the folder "
                                f"that `{cls.COMMAND}` created")
    folder = run_dir / "checkpoints"
    for step in reversed(list_steps(folder)):
        try:
            return config_of_record(read_record(folder / f"{stem(step)}.json"), cls)
        except (KeyError, ValueError):  # CheckpointError is a ValueError
            continue
    other = kinds.other_kind(run_dir, cls)
    if other is not None:
        raise ValueError(f"{run_dir} is a {other.what} run, not one of `{cls.COMMAND}`; resume it with "
                         f"`{other.train_command} --resume {run_dir}`")
    raise FileNotFoundError(f"{run_dir} has no usable checkpoint to resume from; start a new run instead")


def resume_config(run_dir: str | Path, overrides: list[str] | tuple[str, ...] = (),
                  warn: Callable[[str], None] | None = None, cls: type[ConfigBase] = Config) -> Any:
    """The config (a `cls`, default: Config) of an existing run as its newest checkpoint recorded
    it, with the overrides a resumed run may change (`config.check_resumable`). A config.yaml that
    differs from it (edited or broken) is reported through `warn` and rewritten when the run resumes."""
    config = recorded_config(Path(run_dir), cls)
    raw = config.to_dict()
    for text in overrides:
        check_resumable(text.split("=", 1)[0].strip(), cls)
        raw = merge(raw, parse_override(text))
    resumed = config_from_dict(unwrap(raw), cls)
    if warn is not None:
        try:
            edited = read_config(Path(run_dir), cls)
            if edited.data.split == "train" and config.data.split == "train+val":
                edited.data.split = config.data.split  # written before 0.4.0: the same images (config_of_record)
            before, after = _flat(learning_settings(config)), _flat(learning_settings(edited))
            changed = [key for key in {**before, **after} if before.get(key) != after.get(key)]  # both ways
        except (ValueError, FileNotFoundError, OSError) as err:
            changed = [f"unreadable: {str(err).splitlines()[0][:300]}"]
        if changed:
            warn(f"{Path(run_dir) / 'config.yaml'} differs from the config recorded in the checkpoint "
                 f"({', '.join(changed[:3])}); resuming with the recorded one, and config.yaml is rewritten")
    return resumed


def _flat(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, dict) and key != "options" and not key.endswith("_options"):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


# ---------------------------------------------------------------------------------------------
# loading a trained run for evaluation


@dataclass
class LoadedRun:
    run_dir: Path
    config: Config
    step: int
    generator: torch.nn.Module  # the EMA generator when the run has one, in eval mode
    discriminator: torch.nn.Module  # eval mode
    raw_generator: torch.nn.Module  # the trained G itself
    checkpoint_path: Path
    num_classes: int

    def reference_dataset(self, split: str = "test"):
        """The dataset the run was trained on, in the given split, preprocessed as in training."""
        return build_dataset(self.config, split=split)


def use_data_folder(config: Config, data_root: str | Path | None, download: bool = False) -> None:
    """Read the run's datasets from `data_root` (None: the run's data.root) and fetch missing
    ones when `download` (eval / anomaly on another machine than the one that trained)."""
    if data_root is not None:
        config.data.root = str(data_root)
    if download:
        config.data.download = True


def require_run_dir(run_dir: str | Path, writer: str = "negaug train") -> Path:
    """`run_dir` as a Path; FileNotFoundError (one line) when it is not an existing folder."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder {run_dir} does not exist; give a folder written by `{writer}`")
    return run_dir


def find_checkpoint(run_dir: Path, which: str = "latest", warn=None, accept: Accept | None = None) -> Checkpoint:
    """The checkpoint `which` ("latest", "best" or a file) of a run that `accept` takes; for
    latest and best, bad ones are reported through `warn` and the previous good one is used."""
    run_dir = require_run_dir(run_dir)
    folder = run_dir / "checkpoints"
    if which == "latest":
        found = load_latest(folder, warn=warn, accept=accept)
    elif which == "best":
        found = load_latest(folder / "best", warn=warn, accept=accept)
        if found is None:
            raise FileNotFoundError(f"{run_dir} has no usable best checkpoint (GAN runs: set eval.every and "
                                    f"eval.best_metric when training; pretraining runs: train.knn_every; pix2pix "
                                    f"and dpc runs: eval.every); "
                                    f"use --checkpoint latest")
    else:
        path = Path(which)
        if path.resolve().parent not in (folder.resolve(), (folder / "best").resolve()):
            raise ValueError(f"checkpoint {which} is not one of {run_dir}'s (checkpoints/ or checkpoints/best/); "
                             f"evaluate the run it belongs to")
        found = use(load_file(path), accept)
    if found is None:
        raise FileNotFoundError(f"{run_dir} has no usable checkpoint in {folder}; train it first "
                                f"(or resume it with `negaug train --resume {run_dir}`)")
    return found


def load_run(run_dir: str | Path, checkpoint: str = "latest", device: str | torch.device = "cpu",
             warn=None, data_root: str | Path | None = None, download: bool = False) -> LoadedRun:
    """G (the EMA if any), D and the config of a run at a checkpoint ("latest", "best" or a path),
    restored by the training state's own `load_state_dict`, without unpickling anything and
    without touching the caller's random generators. A checkpoint whose state does not fit its
    config is reported through `warn`, and the previous good one is used. `data_root` /
    `download` override the run's data.root / data.download (see `use_data_folder`)."""
    run_dir, device = Path(run_dir), torch.device(device)
    parts: dict[str, Any] = {}

    def restore(found: Checkpoint) -> None:
        config = config_of_record(found.record)
        use_data_folder(config, data_root, download)
        dataset = build_dataset(config)
        generator, discriminator, num_classes = build_models(config, dataset)
        with torch.random.fork_rng(devices=rng_devices(device)):
            state = new_state(config, dataset, generator, discriminator, device)
            state.load_state_dict(found.state, streams=False)  # the weights: any number of processes may load them
            sampler = state.sampler()  # the EMA with standing batch-norm statistics for eval mode
        parts.update(config=config, generator=generator, discriminator=discriminator, sampler=sampler,
                     num_classes=num_classes)

    other = kinds.other_kind(run_dir, Config)
    if other is not None:  # a pretraining or pix2pix run: say so, not "no usable checkpoint"
        raise ValueError(f"{run_dir} is a {other.what} run, not a GAN run; {other.how_to_evaluate(run_dir)} "
                         f"(and `{other.train_command} --resume {run_dir}` resumes it)")
    found = find_checkpoint(run_dir, checkpoint, warn=warn, accept=restore)
    for module in (parts["generator"], parts["discriminator"], parts["sampler"]):
        module.eval()
    return LoadedRun(run_dir, parts["config"], found.step, parts["sampler"], parts["discriminator"],
                     parts["generator"], found.path, parts["num_classes"])
