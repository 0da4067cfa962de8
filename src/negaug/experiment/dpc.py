"""Dense Predictive Coding with NDA clips as a kind of run (`negaug pretrain dpc-moving-mnist`).

    result = train_dpc(load_dpc_config("dpc-moving-mnist", ["nda.transform=jigsaw"]))
    loaded = load_dpc_run(result.run_dir)          # the DPC model (eval mode) and its config

Per step: a batch of clips (B, T, C, S, S) from the seeded, resumable stream; DPC's InfoNCE over
the predicted blocks (`negaug.video.dpc_nda_loss`), with the NDA clips of the same batch (one draw
per clip, the same on every frame) as extra negatives when nda.transform is set (eq. 8); one Adam
step. The loop, run folder, lock, checkpoints, NaN guard, warnings and resume are every kind's
(`loop.drive`, `loop.run_session`); the state holds the model, Adam, the stream's position and
the NDA stream, so a stopped run resumes bit-identically on the CPU. One process (torchrun is
refused). Evaluate the features with `negaug.video` (`negaug repro video` probes motion and digit).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from negaug import data, distributed, nda
from negaug.experiment import critic, kinds, runs
from negaug.experiment.build import _with_key, check_seed, check_sinks, check_threads, resolve_device
from negaug.experiment.config import check_run_name
from negaug.experiment.dpc_config import DPCConfig
from negaug.experiment.loop import (
    LoopHooks,
    drive,
    log_warnings,
    open_sinks,
    restore_latest,
    run_session,
    save_checkpoint,
)
from negaug.experiment.state import non_finite_tensors, restore_streams, stream_states
from negaug.experiment.stats import Stats
from negaug.experiment.steps import NonFiniteLossError
from negaug.experiment.stream import BatchStream
from negaug.files import check_folder, write_atomically
from negaug.video import DPC, dpc_nda_loss


@dataclass
class DPCRecipe:
    dataset: Any  # the training clips
    negative: nn.Module | None  # the NDA transform of the clips, or None
    device: torch.device


@dataclass
class DPCState:
    model: DPC
    optimizer: torch.optim.Optimizer
    batches: BatchStream  # the endless, seeded stream of clip batches
    nda_rng: torch.Generator  # NDA draws
    step: int = 0  # optimizer steps done
    stats: Stats = field(default_factory=Stats)

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "rng": stream_states({"nda": self.nda_rng}, self.batches.device),
                "batches": self.batches.state_dict(), "stats": self.stats.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a `state_dict()`; sets torch's global generators to the run's."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        restore_streams(state["rng"], {"nda": self.nda_rng}, self.batches.device)
        self.batches.load_state_dict(state["batches"])
        self.stats.load_state_dict(state["stats"])
        self.step = int(state["step"])

    def non_finite(self, limit: int = 3) -> list[str]:
        return non_finite_tensors({"model": self.model}, {"optimizer": self.optimizer}, limit)


@dataclass
class DPCResult:
    run_dir: Path
    step: int
    interrupted: bool = False
    seconds: float = 0.0
    last_log: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def check_dpc_scalars(config: DPCConfig) -> None:
    """Ranges that need no registry, each error naming its key."""
    check_seed("train.seed", config.train.seed)
    check_threads("train.threads", config.train.threads)
    check_run_name(config.train.name)
    check_folder(config.train.runs_dir, "train.runs_dir")
    for key, value in (("train.steps", config.train.steps), ("data.batch_size", config.data.batch_size),
                       ("train.log_every", config.train.log_every), ("train.keep_checkpoints", config.train.keep_checkpoints)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{key}={value} must be a positive integer")
    if isinstance(config.train.checkpoint_every, bool) or not isinstance(config.train.checkpoint_every, int) \
            or config.train.checkpoint_every < 0:
        raise ValueError(f"train.checkpoint_every={config.train.checkpoint_every} must be an integer >= 0 (0: at the end)")
    for key, value, low in (("optim.lr", config.optim.lr, 0.0), ("loss.temperature", config.loss.temperature, 0.0)):
        if not math.isfinite(value) or value <= low:
            raise ValueError(f"{key}={value} must be a positive number")
    if not math.isfinite(config.loss.nda_weight) or config.loss.nda_weight < 0:
        raise ValueError(f"loss.nda_weight={config.loss.nda_weight} must be >= 0 (0: NDA clips computed, ignored)")


def build_dpc(config: DPCConfig) -> tuple[DPCRecipe, DPCState]:
    """The recipe and initial state of a DPC run; raises (naming the key) before any training work."""
    check_dpc_scalars(config)
    device = resolve_device(config.train.device)
    try:
        dataset = data.build_clips(config.data.name, root=config.data.root, split=config.data.split, **config.data.options)
    except (ValueError, TypeError) as err:
        raise _with_key("data", err) from None
    negative = None
    if config.nda.transform != "none":
        try:
            negative = nda.build(config.nda.transform, **config.nda.options)
            negative(dataset.get_batch(torch.arange(2))[0], generator=torch.Generator().manual_seed(0))
        except ValueError as err:
            raise _with_key("nda", err) from None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.train.seed)
        try:
            settings = config.model
            model = DPC(in_channels=dataset.num_channels, num_blocks=settings.num_blocks, pred_steps=settings.pred_steps,
                        widths=settings.widths, feature_dim=settings.feature_dim, groups=settings.groups,
                        gru_kernel=settings.gru_kernel).to(device)
        except (ValueError, TypeError) as err:
            raise _with_key("model", err) from None
    if dataset.num_frames % model.num_blocks:
        raise ValueError(f"model.num_blocks={model.num_blocks} must divide the clips' {dataset.num_frames} frames")
    optimizer = torch.optim.Adam(model.parameters(), lr=config.optim.lr)
    state = DPCState(model, optimizer, BatchStream(dataset, config.data.batch_size, config.train.seed, device),
                     nda_rng=torch.Generator().manual_seed(config.train.seed + 2))
    return DPCRecipe(dataset, negative, device), state


def prepare_dpc(config: DPCConfig) -> tuple[DPCRecipe, DPCState]:
    """The recipe and initial state after every check (`negaug pretrain --dry-run`)."""
    if not isinstance(config, DPCConfig):
        raise TypeError(f"train_dpc needs a DPCConfig, got {type(config).__name__}")
    check_sinks(config)
    return build_dpc(config)


def train_dpc(config: DPCConfig, run_dir: str | Path | None = None, resume: bool = False,
              stop_requested: Callable[[], bool] = lambda: False, warn: Callable[[str], None] | None = None,
              on_log: Callable[[dict[str, Any]], None] | None = None,
              on_start: Callable[[Path, torch.device, int], None] | None = None) -> DPCResult:
    """Train (or, with resume=True, continue) the DPC run in `run_dir` (default:
    `train.runs_dir/train.name`); returns where it ended. One process: refuses torchrun."""
    if distributed.launched_by_torchrun():
        raise ValueError("DPC runs train in one process; run negaug pretrain without torchrun")
    return run_session(
        config, run_dir, resume, "negaug pretrain", prepare_dpc,
        lambda config, folder, state, warn: restore_latest(folder, state, warn),
        lambda config, recipe, state, folder, warn: _loop(config, recipe, state, folder, stop_requested, on_log, warn),
        warn, on_start, subfolders=("checkpoints",))


def dpc_step(config: DPCConfig, recipe: DPCRecipe, state: DPCState, step: int) -> None:
    """One Adam step of DPC's loss (with the batch's NDA clips as extra negatives)."""
    clips, _ = state.batches.next()  # (B, T, C, S, S) in [-1, 1]
    state.model.train()
    loss = dpc_nda_loss(state.model, clips, recipe.negative, state.nda_rng, temperature=config.loss.temperature,
                        nda_weight=config.loss.nda_weight)
    if not bool(torch.isfinite(loss)):
        raise NonFiniteLossError(f"non-finite DPC loss at step {step}; lower optim.lr (now {config.optim.lr:g})")
    critic.backward_and_step(loss, state.optimizer, None)
    state.stats.report("loss", loss)


def _loop(config: DPCConfig, recipe: DPCRecipe, state: DPCState, run_dir: Path,
          stop_requested: Callable[[], bool], on_log, warn: Callable[[str], None]) -> DPCResult:
    """The DPC kind inside THE loop (`loop.drive`)."""
    sinks = open_sinks(config, run_dir, state.step, on_log)
    log = sinks.log

    def close() -> None:
        state.batches.close()
        sinks.close()

    hooks = LoopHooks(desc="dpc", step=lambda step: dpc_step(config, recipe, state, step), emit=sinks.emit,
                      report=lambda messages: log_warnings(messages, state.step, log, warn),
                      postfix=lambda record: {"loss": f"{record['loss']:.3f}"}, close=close)
    last, interrupted, seconds = drive(config, state, recipe.device, hooks, stop_requested,
                                       lambda: save_checkpoint(config, state, run_dir))
    if not interrupted:
        _write_report(config, run_dir, state.step, last, seconds)
    return DPCResult(run_dir, state.step, interrupted, seconds, last)


def _write_report(config: DPCConfig, run_dir: Path, step: int, last: dict[str, Any], seconds: float) -> None:
    model, negatives = config.model, config.nda.transform
    lines = [f"# DPC run {run_dir.name}", "",
             f"- preset: {config.preset}; data: {config.data.name} ({config.data.split} split) {config.data.options}, "
             f"batch {config.data.batch_size}; seed {config.train.seed}",
             f"- DPC: {model.num_blocks} blocks, the last {model.pred_steps} predicted; widths {model.widths}, "
             f"{model.feature_dim}-d features; InfoNCE temperature {config.loss.temperature}",
             f"- NDA clips: {negatives} {config.nda.options or ''} (weight {config.loss.nda_weight})",
             f"- {step} steps, {seconds:.0f} s this session with {torch.get_num_threads()} torch threads", "",
             "## Last logged values", "", "| name | value |", "|---|---|"]
    lines += [f"| {k} | {v:.4g} |" for k, v in last.items() if isinstance(v, float)]
    write_atomically(run_dir / "report.md", "\n".join(lines) + "\n")


@dataclass
class LoadedDPCRun:
    run_dir: Path
    config: DPCConfig
    step: int
    model: DPC  # eval mode
    checkpoint_path: Path


def load_dpc_run(run_dir: str | Path, checkpoint_choice: str = "latest", device: str | torch.device = "cpu",
                 warn=None) -> LoadedDPCRun:
    """The DPC model (eval mode) and config of a run at a checkpoint ("latest" or a path), restored
    by the state's own `load_state_dict` without touching the caller's random generators."""
    device = torch.device(device)
    parts: dict[str, Any] = {}

    def accept(found) -> None:
        config = runs.config_of_record(found.record, DPCConfig)
        config.train.device = str(device)
        with torch.random.fork_rng(devices=list(range(torch.cuda.device_count())) if device.type == "cuda" else []):
            _, state = build_dpc(config)
            state.load_state_dict(found.state)
        parts.update(config=config, state=state)

    found = runs.find_checkpoint(Path(run_dir), checkpoint_choice, warn=warn, accept=accept)
    return LoadedDPCRun(Path(run_dir), parts["config"], found.step, parts["state"].model.eval(), found.path)


kinds.attach("dpc", train=train_dpc, load=load_dpc_run, prepare=prepare_dpc)
