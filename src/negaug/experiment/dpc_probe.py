"""How good a DPC run's clip representation is: `negaug probe RUN` on a Dense Predictive Coding run.

    entry = probe_dpc_run("runs/dpc-moving-mnist-20261207-101500")   # appended to RUN/probe.json

The run's DPC at its checkpoint, frozen (eval mode; fp32 whatever the run trained in), gives
features of the training clips (data.split) and of the held-out clips (the same data options,
the test split: moving_mnist's test clips come from other digit images; `--split val`: the val
clips, for anything that selects, where the dataset has them (moving_mnist)) without NDA or
augmentation; on them (`negaug.video.probe`, the probe of `negaug repro video`):
- `linear_probe/<features>/<label>`: logistic regression on standardised features, `epochs`
  epochs (default DEFAULT_EPOCHS, `repro video`'s full size), fitted on the training clips,
  top-1 on the test clips; features `context` (the ConvGRU state after all blocks, DPC's
  evaluation input) and `encoder` (relu(z) pooled); labels `motion` (moving_mnist: the direction,
  8 classes) and `digit` (moving_mnist) or `action` (ucf101, hmdb51);
- `heldout_dpc`: plain DPC's top-1 on batches of data.batch_size consecutive held-out clips (the
  run's batch: the number of negatives), with its loss and chance.
`--split val` of a clip dataset without a val split (ucf101, hmdb51) is refused; `--checkpoint
best` reads the best val checkpoint of a run trained with eval.every. Every number carries its
protocol (splits and sizes, epochs, seeds, checkpoint step, library versions).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from negaug import data
from negaug.data.dots import derive_seed
from negaug.experiment import kinds
from negaug.experiment.build import resolve_device
from negaug.experiment.dpc import LoadedDPCRun, load_dpc_run
from negaug.experiment.evaluate import append_evaluation, check_probe_flags, read_evaluations
from negaug.experiment.runs import require_run_dir
from negaug.metrics.protocol import library_versions
from negaug.video.probe import PROBE, clip_features, heldout_dpc, probe_labels, probe_summary

DEFAULT_EPOCHS = 100  # `negaug repro video`'s full size
FEATURES = {"context": "the ConvGRU state after all blocks, mean over positions (DPC's evaluation input)",
            "encoder": "relu(z) of every block, mean over blocks and positions"}


def probe_dpc_run(run_dir: str | Path, epochs: int | None = None, checkpoint: str = "latest", device: str = "auto",
                  seed: int = 0, batch_size: int = 256, data_root: str | Path | None = None, download: bool = False,
                  warn: Callable[[str], None] | None = None, split: str = "test",
                  on_progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The linear probes and held-out DPC of a DPC run (module docstring), with the flags of
    `negaug probe` (`batch_size`: clips per forward pass of the feature extraction); the entry is
    appended to RUN/probe.json and returned. Every flag is checked before any work."""
    run_dir = require_run_dir(run_dir, "negaug pretrain")
    check_probe_flags(epochs, seed, batch_size, split)
    if download:
        raise ValueError("--download: clip datasets are never downloaded (moving_mnist is generated offline; "
                         "ucf101 and hmdb51 need their frame folders under --data-root)")
    device = resolve_device(device, key="--device")
    read_evaluations(run_dir / "probe.json")  # a damaged results file fails now, not after the work
    loaded = load_dpc_run(run_dir, checkpoint, device, warn, data_root)
    test_set = held_out_clips(loaded, split)
    epochs = DEFAULT_EPOCHS if epochs is None else epochs
    results = dpc_probe_results(loaded, test_set, split, epochs, seed, batch_size, on_progress or (lambda message: None))
    entry = {"step": loaded.step, "checkpoint": str(loaded.checkpoint_path), "checkpoint_choice": checkpoint,
             "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "kind": "dpc",
             "nda_transform": loaded.config.nda.transform, "results": results}
    append_evaluation(run_dir / "probe.json", entry)
    return entry


def held_out_clips(loaded: LoadedDPCRun, split: str = "test"):
    """The `split` clips of the run's data (its name, root and options; test or val), at least one
    batch of data.batch_size of them (held-out DPC's batch)."""
    settings = loaded.config.data
    if split == "val" and settings.name not in data.CLIPS_WITH_VAL:
        raise ValueError(f"--split val: clip dataset '{settings.name}' has no validation split (only "
                         f"{', '.join(data.CLIPS_WITH_VAL)} has one); probe the run on its test clips (--split test)")
    try:
        clips = data.build_clips(settings.name, root=settings.root, split=split, **settings.options)
    except (ValueError, TypeError) as err:
        raise ValueError(f"the probe needs the clips' held-out {split} split, which fails: {err}") from None
    if len(clips) < settings.batch_size:
        raise ValueError(f"held-out DPC needs at least one batch of {settings.batch_size} clips; the {split} split "
                         f"has {len(clips)}")
    return clips


def dpc_probe_results(loaded: LoadedDPCRun, test_set, split: str, epochs: int, seed: int, batch_size: int,
                      on_progress: Callable[[str], None]) -> dict[str, dict[str, Any]]:
    """{"linear_probe/<features>/<label>": {"value": test top-1, "train_accuracy", "protocol"},
    "heldout_dpc": {"value": top-1, "loss", "chance", "protocol"}}."""
    config, train_set = loaded.config, loaded.dataset
    on_progress(f"held-out DPC on {len(test_set)} {split} clips")
    heldout = heldout_dpc(loaded.model, test_set, config.data.batch_size)
    on_progress(f"features of {len(train_set)} training and {len(test_set)} {split} clips")
    train_features = clip_features(loaded.model, train_set, batch_size)  # {"context": (N, D), "encoder": (N, D)}
    test_features = clip_features(loaded.model, test_set, batch_size)
    train_labels, test_labels = probe_labels(train_set), probe_labels(test_set)
    on_progress(f"linear probes: {epochs} epochs on {len(train_set)} frozen features, {len(train_labels)} labels x "
                f"{len(FEATURES)} features")
    summary = probe_summary(train_features, test_features, train_labels, test_labels, epochs,
                            lambda kind, label: torch.Generator().manual_seed(derive_seed("dpc-probe", seed, kind, label)))
    common = {"train_split": config.data.split, "test_split": split, "num_train": len(train_set),
              "num_test": len(test_set), "data": config.data.name, "data_options": dict(config.data.options),
              "checkpoint_step": loaded.step, "model": "the run's DPC, frozen, eval mode, fp32; clips without NDA "
              "or augmentation", "versions": library_versions()}
    results: dict[str, dict[str, Any]] = {}
    for key, accuracy in summary.items():
        kind, label = key.split("/")
        results[f"linear_probe/{key}"] = {
            "value": accuracy["test"], "train_accuracy": accuracy["train"],
            "protocol": {**common, "features": f"{kind}: {FEATURES[kind]}", "feature_dim": int(train_features[kind].shape[1]),
                         "label": label, "num_classes": train_labels[label][1], "probe": PROBE, "epochs": epochs,
                         "seed": f"derive_seed('dpc-probe', {seed}, '{kind}', '{label}')", "feature_batch": batch_size}}
    results["heldout_dpc"] = {
        "value": heldout["heldout_dpc_top1"], "loss": heldout["heldout_dpc_loss"], "chance": heldout["heldout_dpc_chance"],
        "protocol": {**common, "batch_size": config.data.batch_size,
                     "what": f"plain DPC logits (no NDA) on batches of consecutive {split} clips (a last partial batch "
                             "dropped); top-1 = share of predicted positions whose true block scores highest of all"}}
    return results


def format_dpc_probe(entry: dict[str, Any]) -> str:
    """A plain table of a DPC probe entry."""
    lines = [f"step {entry['step']} ({entry['checkpoint']})", f"{'result':<32} {'value':>10}  details"]
    for key, result in entry["results"].items():
        protocol = result["protocol"]
        if key == "heldout_dpc":
            details = (f"loss {result['loss']:.3f}, chance {result['chance']:.4f}; batches of {protocol['batch_size']} "
                       f"of {protocol['num_test']} {protocol['test_split']} clips")
        else:
            details = (f"train {result['train_accuracy']:.4f}; {protocol['epochs']} epochs on {protocol['num_train']} "
                       f"frozen {protocol['feature_dim']}-d features, {protocol['num_classes']} classes")
        lines.append(f"{key:<32} {result['value']:>10.4f}  {details}")
    return "\n".join(lines)


kinds.attach_probe("dpc", probe=probe_dpc_run, format_probe=format_dpc_probe)
