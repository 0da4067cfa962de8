"""Sample quality of a run's generator, with the settings of its config: during training
(`evaluate_generator_of_run`) and afterwards (`evaluate_run`, behind `negaug eval`).

Both take the reference from the run's data, never the training images: evaluations during training
read the validation split (they may select the best checkpoint: `negaug.data.SPLITS`), `negaug eval`
the test split unless told `--split val`; the offline classifier feature space trains on the
training split. By
default as many samples are generated as the reference holds. `evaluate_run`
appends one entry per evaluation to RUN/eval.json ({"evaluations": [...]}, newest last; each entry:
step, checkpoint, timestamp, results with their protocols) and writes figures to RUN/eval/.

Under ``torchrun`` (see `join_torchrun`) every process runs the same evaluation: sampling and feature
extraction are sharded over the processes and gathered (`negaug.metrics`), and rank 0 writes.
"""
from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from negaug import data, distributed
from negaug.contrastive.evaluation import MAX_PROBE_EPOCHS
from negaug.experiment.build import build_dataset, check_seed, resolve_device
from negaug.experiment.config import Config
from negaug.experiment.runs import is_main_process, load_run, require_run_dir
from negaug.files import check_output_path, open_no_follow, read_limited, write_atomically
from negaug.metrics import check_feature_space, evaluate_generator, evaluate_samples, generate_samples, record_sampling
from negaug.metrics.plots import save_evaluation_plots

MAX_SAMPLES = 1_000_000
MAX_RESULTS_BYTES = 256 * 2**20  # eval.json / anomaly.json: thousands of evaluations
MAX_SAMPLE_BYTES = 16 * 2**30  # the generated samples are held in memory as float32


EVAL_SPLITS = ("val", "test")  # held-out splits an evaluation may read; selection reads "val"
TRAINING_EVAL_SPLIT = "val"  # evaluations during training (and the best checkpoint) read validation


def reference_of_run(dataset_of_split: Callable[[str], Any], split: str = "test") -> tuple[Any, str]:
    """(reference dataset, its split name): a held-out split ("val" or "test"), never the training images."""
    if split not in EVAL_SPLITS:
        raise ValueError(f"--split must be one of {', '.join(EVAL_SPLITS)} (held-out images), got {split!r}")
    try:
        return dataset_of_split(split), split
    except ValueError as err:
        raise ValueError(f"evaluation needs the data's held-out {split} split, which fails: {err}") from None


def feature_training_set(train_set: Any) -> Any:
    """The images an offline feature network trains on: the whole training split, also for a run
    that trains on a `fraction` of it (so that runs on less data are measured in the same space)."""
    recipe = dict(getattr(train_set, "build_options", None) or {})
    if recipe.get("fraction") is None:
        return train_set
    recipe.pop("fraction")
    return data.build(**recipe)


def settings_of_run(config: Config, train_set: Any, reference_split: str, **overrides: Any) -> dict[str, Any]:
    """The `negaug.metrics.EvalSettings` fields a run's config decides; `overrides` win (None: not given)."""
    count = config.data.options.get("count")
    settings = dict(feature_extractor=config.eval.feature_extractor, inception_weights=config.eval.inception_weights,
                    data_name=config.data.name, reference_split=reference_split,
                    train_data=feature_training_set(train_set),
                    dots_count=count if isinstance(count, int) else None, force=config.eval.force)
    settings.update({key: value for key, value in overrides.items() if value is not None})
    return settings


def evaluate_generator_of_run(config: Config, generator: torch.nn.Module, train_set: Any, num_classes: int = 0,
                              device: Any = "cpu", **options: Any) -> dict[str, dict]:
    """`negaug.metrics.evaluate_generator` with `config.eval`'s metrics, sample count and seed."""
    reference, split = reference_of_run(lambda name: build_dataset(config, split=name), TRAINING_EVAL_SPLIT)
    settings = settings_of_run(config, train_set, split, device=device, **options)
    return evaluate_generator(generator, reference, config.eval.metrics or None, config.eval.num_samples,
                              config.eval.seed, num_classes, **settings)


def check_feature_space_of_run(config: Config, train_set: Any, progress: bool = False) -> list[str]:
    """The feature space of the run's evaluations, built and checked before training starts (a
    near-chance classifier is refused now, not at the first evaluation); warnings when forced."""
    reference, split = reference_of_run(lambda name: build_dataset(config, split=name), TRAINING_EVAL_SPLIT)
    settings = settings_of_run(config, train_set, split, progress=progress)
    return check_feature_space(reference, config.eval.metrics or None, **settings)


def evaluate_run(run_dir: str | Path, metrics: list[str] | None = None, num_samples: int | None = None,
                 seed: int = 0, checkpoint: str = "latest", feature_extractor: str | None = None,
                 inception_weights: str | None = None, batch_size: int = 250, device: str = "auto",
                 plots: bool = True, progress: bool = False, force: bool | None = None,
                 data_root: str | Path | None = None, download: bool = False,
                 warn: Callable[[str], None] | None = None, split: str = "test") -> dict[str, Any]:
    """Evaluate a trained run's (EMA) generator on `num_samples` samples (None: as many as the
    reference `split` holds: "test" for final numbers, "val" for anything that selects); append the entry to RUN/eval.json and return it. metrics /
    feature_extractor / inception_weights / force default to the run's `eval.*` settings; each
    result's "warnings" (values computed with force) are also passed to `warn`. The run's data
    (reference and classifier training images) is read from `data_root` (default: its
    data.root) and fetched when missing only with `download`."""
    _check_evaluation_flags(num_samples, batch_size, seed, split)
    run_dir = require_run_dir(run_dir)
    device = resolve_device(device, key="--device")
    read_evaluations(run_dir / "eval.json")  # a damaged results file fails now, not after the work
    loaded = load_run(run_dir, checkpoint=checkpoint, device=device, warn=warn, data_root=data_root,
                      download=download)
    train_set = loaded.reference_dataset(split=loaded.config.data.split)
    reference, split = reference_of_run(loaded.reference_dataset, split)
    num_samples = len(reference) if num_samples is None else num_samples
    sample_bytes = num_samples * train_set[0][0].numel() * 4
    if sample_bytes > MAX_SAMPLE_BYTES:
        raise ValueError(f"--num-samples={num_samples} needs {sample_bytes / 2**30:.0f} GiB for the samples of "
                         f"this run; at most {MAX_SAMPLE_BYTES // 2**30} GiB are allowed, use fewer samples")
    settings = settings_of_run(loaded.config, train_set, split, feature_extractor=feature_extractor,
                               inception_weights=inception_weights, batch_size=batch_size, device=device,
                               progress=progress, force=force)
    fake, _ = generate_samples(loaded.generator, num_samples, seed, loaded.num_classes, batch_size, device)
    if not torch.isfinite(fake).all():  # NaN weights: every metric would be NaN or a linear-algebra traceback
        raise ValueError(f"the generator of {loaded.run_dir} at step {loaded.step} ({loaded.checkpoint_path}) "
                         f"produces non-finite samples (NaN or inf); evaluate an earlier checkpoint with "
                         f"--checkpoint PATH, or retrain")
    names = metrics or list(loaded.config.eval.metrics) or None
    results = record_sampling(evaluate_samples(fake, reference, names, seed, **settings), loaded.num_classes)
    stem = f"step_{int(loaded.step):07d}"
    main = is_main_process()  # under torchrun every rank computed the same results; rank 0 writes them
    written = save_evaluation_plots(run_dir / "eval", stem, fake, reference, results) if plots and main else []
    entry = {"step": int(loaded.step), "checkpoint": str(loaded.checkpoint_path), "checkpoint_choice": checkpoint,
             "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "results": results,
             "plots": [str(p.relative_to(run_dir)) for p in written]}
    if main:
        append_evaluation(run_dir / "eval.json", entry)
    for key, result in results.items():
        for message in result.get("warnings", []) if warn is not None and main else []:
            warn(f"{key}: {message}")
    return entry


def _check_evaluation_flags(num_samples: int | None, batch_size: int, seed: int, split: str) -> None:
    """The flags of `negaug eval RUN`, each refused in one line naming it."""
    if num_samples is not None and not 2 <= num_samples <= MAX_SAMPLES:
        raise ValueError(f"--num-samples must be from 2 to {MAX_SAMPLES:,} (FID uses 50,000), got {num_samples}")
    if batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {batch_size}")
    check_seed("--seed", seed)
    if split not in EVAL_SPLITS:
        raise ValueError(f"--split must be one of {', '.join(EVAL_SPLITS)} (held-out images), got {split!r}")


def check_probe_flags(epochs: int | None, seed: int, batch_size: int, split: str) -> None:
    """The flags of `negaug probe RUN` of every kind that has a probe, each refused in one line naming it."""
    check_seed("--seed", seed)
    if batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {batch_size}")
    if epochs is not None and not 1 <= epochs <= MAX_PROBE_EPOCHS:
        raise ValueError(f"--epochs must be from 1 to {MAX_PROBE_EPOCHS}, got {epochs}")
    if split not in ("val", "test"):
        raise ValueError(f"--split must be val or test (held-out images), got {split!r}")


def join_torchrun(device: str, key: str = "--device") -> str:
    """Under ``torchrun``: join its process group (NCCL for CUDA, gloo otherwise) and return this
    process's device (``cuda:LOCAL_RANK`` for CUDA), so `negaug eval` / `negaug anomaly` shard their
    work over the processes. Without torchrun: ``device`` unchanged, nothing joined."""
    if not distributed.launched_by_torchrun():
        return device
    resolved = resolve_device(device, key=key)
    if resolved.type == "cuda":
        resolved = torch.device("cuda", distributed.local_rank())
        torch.cuda.set_device(resolved)
    distributed.init_from_env(resolved.type)
    return str(resolved)


def append_evaluation(path: Path, entry: dict[str, Any]) -> None:
    """Add `entry` to the "evaluations" list of `path` (created if absent), atomically; concurrent
    `negaug eval` calls on one run wait for each other (an flock), so no entry is lost."""
    lock_fd = open_no_follow(path.with_name(f".{path.name}.lock"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, "eval lock")
    with os.fdopen(lock_fd, "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        document = read_evaluations(path)
        document["evaluations"].append(entry)
        write_atomically(path, json.dumps(document, indent=1, default=str))


def read_evaluations(path: Path) -> dict[str, Any]:
    """The {"evaluations": [...]} document of `path` ({"evaluations": []} when absent); a file
    that is not one is a one-line ValueError; so is a symlink, a FIFO or a device in its place
    (it would be written later, after the work)."""
    check_output_path(path, "results file")
    if not path.exists():
        return {"evaluations": []}
    try:
        document = json.loads(read_limited(path, MAX_RESULTS_BYTES, "results file"))
        valid = isinstance(document, dict) and isinstance(document.get("evaluations"), list)
    except (ValueError, UnicodeDecodeError, RecursionError):
        valid = False
    if not valid:
        raise ValueError(f"{path} is not a results file written by negaug; move it away and rerun")
    return document


def format_results(entry: dict[str, Any]) -> str:
    """A plain table: one row per result key, with the main extras."""
    lines = [f"step {entry['step']} ({entry['checkpoint']})", f"{'metric':<44} {'value':>12}  details"]
    for key, result in entry["results"].items():
        details = [f"{name}={result[name]:.4g}" for name in ("std", "precision", "recall", "bandwidth", "num_modes")
                   if isinstance(result.get(name), (int, float))]
        protocol = result["protocol"]
        details.append(f"n={protocol['num_generated']} vs {protocol['num_real']} {protocol['reference']}")
        lines.append(f"{key:<44} {result['value']:>12.5g}  {', '.join(details)}")
    return "\n".join(lines)
