"""Dense Predictive Coding with NDA clips as a kind of run (`negaug pretrain dpc-moving-mnist`).

    result = train_dpc(load_dpc_config("dpc-moving-mnist", ["nda.transform=jigsaw"]))
    loaded = load_dpc_run(result.run_dir)          # the DPC model (eval mode) and its config

Per step: a batch of clips (B, T, C, S, S) from the seeded, resumable stream; DPC's InfoNCE over
the predicted blocks (`negaug.video.dpc_nda_loss`), with the NDA clips of the same batch (one draw
per clip, the same on every frame) as extra negatives when nda.transform is set (eq. 8); one Adam
step (`critic.backward_and_step`). The loop, run folder, lock, checkpoints, NaN guard, warnings and
resume are every kind's (`loop.drive`, `loop.run_session`); the state holds the model, Adam, the
fp16 gradient scaler, the stream's position and the NDA stream, so a stopped run resumes
bit-identically on the CPU. `negaug probe RUN` measures the features (`negaug.experiment.dpc_probe`).

eval.every > 0: every eval.every steps held-out DPC (`negaug.video.probe.heldout_dpc`: plain DPC
top-1 and loss, no NDA, fp32, eval mode) on the val clips (the run's data options, split val; the
first eval.num_clips) is logged as {"step", "eval_val"}, and the state with the best top-1 so far
(higher is better; the first of equal values) is kept in checkpoints/best/ (one;
`load_dpc_run(RUN, "best")`, `negaug probe RUN --checkpoint best`), as the other kinds keep theirs.
It draws no random number: the trained weights are those of eval.every=0. Clip datasets without a
val split (ucf101, hmdb51) refuse eval.every > 0 before any folder exists.

train.precision: bf16 / fp16 autocast around the loss (`build.autocast_of`, `build.check_precision`:
fp16 only on a GPU, with a GradScaler); no channels_last (the encoder's convolutions are 3-D,
channels_last is a 4-D layout). train.compile: `nn.Module.compile` of the encoder, the ConvGRU and
the predictor, in place (the checkpoint keys do not change).

Data parallel (torchrun): every rank starts from rank 0's weights, reads its share of each global
batch (`BatchStream`) and draws NDA from its own stream (`state.rank_seed`; rank 0 keeps
train.seed's, so one process draws exactly what it drew before); DPC's negatives are every rank's
targets and NDA targets, gathered with gradient (`dpc_nda_loss(across_ranks=True)`), so the
gradients averaged over ranks in `critic.backward_and_step` are those of one process over the
global batch (the ranks' batches in rank order, each rank's NDA clips drawn and, for a pairing
transform, paired within its own batch). DPC normalises with GroupNorm, not batch norm: a clip's
features never depend on the rest of the batch, so nothing needs synchronising (no SyncBatchNorm,
no refusal on CPUs). The loss in metrics.jsonl is rank 0's (the mean over its rows).
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from negaug import data, distributed, nda
from negaug.experiment import critic, kinds, runs
from negaug.experiment.build import (
    _with_key,
    autocast_of,
    check_precision,
    check_seed,
    check_sinks,
    check_threads,
    resolve_device,
)
from negaug.experiment.config import check_run_name
from negaug.experiment.dpc_config import DPCConfig
from negaug.experiment.health import EncoderHealth, health_section
from negaug.experiment.loop import (
    LoopHooks,
    drive,
    log_warnings,
    open_sinks,
    restore_latest,
    run_session,
    save_checkpoint,
)
from negaug.experiment.state import RunState, rank_seed, rng_devices
from negaug.experiment.stats import Stats
from negaug.experiment.steps import NonFiniteLossError
from negaug.experiment.stream import BatchStream
from negaug.files import check_folder, write_atomically
from negaug.video import DPC, dpc_nda_loss
from negaug.video.probe import heldout_dpc


@dataclass
class DPCRecipe:
    dataset: Any  # the training clips
    negative: nn.Module | None  # the NDA transform of the clips, or None
    device: torch.device
    val_dataset: Any = None  # eval.every > 0: the val clips held-out DPC scores (the first eval.num_clips)


@dataclass
class DPCState(RunState):
    model: DPC
    optimizer: torch.optim.Optimizer
    batches: BatchStream  # the endless, seeded stream of clip batches (this rank's share of each)
    nda_rng: torch.Generator  # NDA draws (this rank's)
    scaler: torch.amp.GradScaler | None = None  # train.precision=fp16 only
    step: int = 0  # optimizer steps done
    stats: Stats = field(default_factory=Stats)
    best: dict[str, Any] | None = None  # {"metric": BEST_METRIC, "value", "step"}: the best val score so far

    def modules(self) -> dict[str, Any]:
        return {"model": self.model}

    def extra_state(self) -> dict[str, Any]:
        return {} if self.best is None else {"best": self.best}  # only with eval.every: other layouts kept

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.best = state.get("best")

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"optimizer": self.optimizer}

    def streams(self) -> dict[str, torch.Generator]:
        return {"nda": self.nda_rng}


BEST_METRIC = "heldout_dpc_top1"  # what checkpoints/best/ keeps the best of (val clips; higher is better)


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


def check_dpc_eval(config: DPCConfig) -> None:
    """eval.every (an integer >= 0) and eval.num_clips (None or >= data.batch_size: held-out DPC
    scores whole batches), and a val split to score: refused in one line otherwise."""
    every, count = config.eval.every, config.eval.num_clips
    if isinstance(every, bool) or not isinstance(every, int) or every < 0:
        raise ValueError(f"eval.every={every} must be an integer >= 0 (0: no evaluation during training)")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < config.data.batch_size):
        raise ValueError(f"eval.num_clips={count} must be null (every val clip) or an integer >= data.batch_size "
                         f"({config.data.batch_size}): held-out DPC scores whole batches")
    if every and config.data.name not in data.CLIPS_WITH_VAL:
        raise ValueError(f"eval.every={every}: clip dataset '{config.data.name}' has no val split to select a best "
                         f"checkpoint on (only {', '.join(data.CLIPS_WITH_VAL)} has one); set eval.every=0")


def build_val_clips(config: DPCConfig) -> Any:
    """The val clips of eval.every (the run's data name, root and options; the first eval.num_clips),
    at least one batch of data.batch_size; None when eval.every is 0."""
    if not config.eval.every:
        return None
    try:
        clips = data.build_clips(config.data.name, root=config.data.root, split="val", **config.data.options)
    except (ValueError, TypeError) as err:
        raise _with_key("data", err) from None
    if config.eval.num_clips is not None:
        clips = clips.subset(torch.arange(min(config.eval.num_clips, len(clips))))
    if len(clips) < config.data.batch_size:
        raise ValueError(f"eval.every: held-out DPC needs at least one batch of data.batch_size={config.data.batch_size} "
                         f"val clips; the val split has {len(clips)} (raise data.options.num_clips or set eval.every=0)")
    return clips


def build_clip_parts(config: DPCConfig) -> tuple[Any, nn.Module | None]:
    """The training clips and the NDA transform (None for "none"), tried on two clips so that an
    option the clips cannot take fails now; errors name their section."""
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
    return dataset, negative


def build_dpc_model(config: DPCConfig, dataset) -> DPC:
    """The DPC of `config.model`, initialised from train.seed (the caller's generator is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.train.seed)
        try:
            settings = config.model
            model = DPC(in_channels=dataset.num_channels, num_blocks=settings.num_blocks, pred_steps=settings.pred_steps,
                        widths=settings.widths, feature_dim=settings.feature_dim, groups=settings.groups,
                        gru_kernel=settings.gru_kernel)
        except (ValueError, TypeError) as err:
            raise _with_key("model", err) from None
    if dataset.num_frames % model.num_blocks:
        raise ValueError(f"model.num_blocks={model.num_blocks} must divide the clips' {dataset.num_frames} frames")
    return model


def check_dpc_precision(config: DPCConfig, device: torch.device, frames_per_block: int) -> None:
    """train.precision=bf16 refused on the CPU for blocks of 2 frames (the values themselves are
    checked by `build.check_precision`, as in every kind): there oneDNN's bf16 3-D convolution gives
    wrong weight gradients (inf, NaN or ~1e11 x the fp32 ones for DPC's 3x3x3 kernels with padding
    1; temporal depths 1 and 3-16 agree with fp32 to 0.5%; measured with torch 2.14.1 on an AMD EPYC
    with avx512_bf16: docs/contrastive.md)."""
    if config.train.precision == "bf16" and device.type == "cpu" and frames_per_block == 2:
        raise ValueError("train.precision=bf16 on the CPU with blocks of 2 frames: oneDNN's bf16 3-D convolution "
                         "gives wrong weight gradients there; use blocks of another length (data.options.num_frames "
                         "/ model.num_blocks), train.precision=fp32, or a GPU")


def compile_dpc(model: DPC) -> None:
    """train.compile: `nn.Module.compile` of the encoder (clips and NDA clips both pass through it),
    the ConvGRU and the predictor, in place (parameters and state_dict keys unchanged)."""
    for module in (model.encoder, model.aggregator, model.predictor):
        module.compile()


def build_dpc(config: DPCConfig) -> tuple[DPCRecipe, DPCState]:
    """The recipe and initial state of a DPC run; raises (naming the key) before any training work."""
    check_dpc_scalars(config)
    check_dpc_eval(config)
    device = resolve_device(config.train.device)
    check_precision(config.train.precision, device)  # every kind's values, before the data is built
    dataset, negative = build_clip_parts(config)
    val_dataset = build_val_clips(config)
    model = build_dpc_model(config, dataset)
    check_dpc_precision(config, device, dataset.num_frames // model.num_blocks)
    model.to(device)
    distributed.broadcast_module(model)  # data parallel: every rank starts from rank 0's weights
    if config.train.compile:
        compile_dpc(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.optim.lr)
    seed = rank_seed(config.train.seed, distributed.rank())  # per-rank streams; rank 0: train.seed's
    batches = BatchStream(dataset, config.data.batch_size, config.train.seed, device,
                          rank=distributed.rank(), world=distributed.world_size())
    state = DPCState(model, optimizer, batches, nda_rng=torch.Generator().manual_seed(seed + 2),
                     scaler=torch.amp.GradScaler("cuda") if config.train.precision == "fp16" else None)
    return DPCRecipe(dataset, negative, device, val_dataset), state


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
    `train.runs_dir/train.name`); returns where it ended. Under torchrun every rank calls it
    (module docstring); rank 0 writes the run folder."""
    return run_session(
        config, run_dir, resume, "negaug pretrain", prepare_dpc,
        lambda config, folder, state, warn: restore_latest(folder, state, warn),
        lambda config, recipe, state, folder, warn: _loop(config, recipe, state, folder, stop_requested, on_log, warn),
        warn, on_start, subfolders=("checkpoints",))


def dpc_step(config: DPCConfig, recipe: DPCRecipe, state: DPCState, step: int) -> None:
    """One Adam step of DPC's loss (with the batch's NDA clips as extra negatives; data parallel:
    every rank's targets and NDA targets too)."""
    clips, _ = state.batches.next()  # (B, T, C, S, S) in [-1, 1]
    state.model.train()
    with autocast_of(config.train.precision, recipe.device):
        loss = dpc_nda_loss(state.model, clips, recipe.negative, state.nda_rng, temperature=config.loss.temperature,
                            nda_weight=config.loss.nda_weight, across_ranks=True)
    loss = loss.float()
    if distributed.any_true(not bool(torch.isfinite(loss))):  # data parallel: on every rank together
        raise NonFiniteLossError(f"non-finite DPC loss at step {step}; lower optim.lr (now {config.optim.lr:g})")
    critic.backward_and_step(loss, state.optimizer, state.scaler)  # data parallel: the gradients' mean over ranks
    state.stats.report("loss", loss)


def _loop(config: DPCConfig, recipe: DPCRecipe, state: DPCState, run_dir: Path,
          stop_requested: Callable[[], bool], on_log, warn: Callable[[str], None]) -> DPCResult:
    """The DPC kind inside THE loop (`loop.drive`)."""
    sinks = open_sinks(config, run_dir, state.step, on_log)
    log, warnings = sinks.log, []
    health = EncoderHealth(start_step=state.step, stall_fix="try another optim.lr or loss.temperature")

    def report(messages: list[str]) -> None:
        warnings.extend(messages)
        log_warnings(messages, state.step, log, warn)

    def close() -> None:
        state.batches.close()
        sinks.close()

    def validate(step: int) -> None:
        found = val_scores(config, recipe, state)
        sinks.emit({"step": step, "eval_val": found})
        _keep_best(config, state, run_dir, found)

    hooks = LoopHooks(desc="dpc", step=lambda step: dpc_step(config, recipe, state, step), emit=sinks.emit,
                      report=report, postfix=lambda record: {"loss": f"{record['loss']:.3f}"},
                      periodic=((config.eval.every, validate),), after_log=health.check_log, close=close)
    last, interrupted, seconds = drive(config, state, recipe.device, hooks, stop_requested,
                                       lambda: save_checkpoint(config, state, run_dir))
    if not interrupted and runs.is_main_process():
        _write_report(config, run_dir, state.step, last, seconds, warnings, state.best)
    return DPCResult(run_dir, state.step, interrupted, seconds, last)


def val_scores(config: DPCConfig, recipe: DPCRecipe, state: DPCState) -> dict[str, Any]:
    """Held-out DPC (`heldout_dpc`: plain DPC, no NDA, fp32, eval mode, no gradient) on the val
    clips in batches of data.batch_size: {"heldout_dpc_top1", "heldout_dpc_loss",
    "heldout_dpc_chance", "protocol"}; the model's training mode is restored after."""
    model, was_training = state.model, state.model.training
    try:
        scores: dict[str, Any] = heldout_dpc(model, recipe.val_dataset, config.data.batch_size)
    finally:
        model.train(was_training)
    scores["protocol"] = {"split": "val", "data": config.data.name, "num_clips": len(recipe.val_dataset),
                          "batch_size": config.data.batch_size, "step": state.step,
                          "what": "plain DPC logits (no NDA, fp32, eval mode) on batches of consecutive val clips"}
    return scores


def _keep_best(config: DPCConfig, state: DPCState, run_dir: Path, scores: dict[str, Any]) -> None:
    """The best checkpoint by held-out DPC top-1 on the val clips (checkpoints/best/, one kept;
    higher is better, the first of equal values), as the other kinds keep theirs."""
    value = float(scores[BEST_METRIC])
    if state.best is None or value > state.best["value"]:
        state.best = {"metric": BEST_METRIC, "value": value, "step": state.step}
        save_checkpoint(config, state, run_dir, folder=run_dir / "checkpoints" / "best", keep=1)


def _write_report(config: DPCConfig, run_dir: Path, step: int, last: dict[str, Any], seconds: float,
                  warnings: list[str], best: dict[str, Any] | None = None) -> None:
    model, negatives = config.model, config.nda.transform
    lines = [f"# DPC run {run_dir.name}", "",
             f"- preset: {config.preset}; data: {config.data.name} ({config.data.split} split) {config.data.options}, "
             f"batch {config.data.batch_size}; seed {config.train.seed}",
             f"- DPC: {model.num_blocks} blocks, the last {model.pred_steps} predicted; widths {model.widths}, "
             f"{model.feature_dim}-d features; InfoNCE temperature {config.loss.temperature}",
             f"- NDA clips: {negatives} {config.nda.options or ''} (weight {config.loss.nda_weight})",
             f"- precision {config.train.precision}{', compiled' if config.train.compile else ''}; "
             f"{distributed.world_size()} process(es), each with data.batch_size clips per step",
             f"- {step} steps, {seconds:.0f} s this session with {torch.get_num_threads()} torch threads", "",
             "## Last logged values", "", "| name | value |", "|---|---|"]
    lines += [f"| {k} | {v:.4g} |" for k, v in last.items() if isinstance(v, float)]
    if best is not None:
        lines += ["", f"- best checkpoint (val clips, every {config.eval.every} steps): {best['metric']} "
                      f"{best['value']:.4f} at step {best['step']} (checkpoints/best/)"]
    lines += health_section(warnings, "the loss fell (DPC logs no embedding similarity and has no k-NN monitor)")
    write_atomically(run_dir / "report.md", "\n".join(lines) + "\n")


@dataclass
class LoadedDPCRun:
    run_dir: Path
    config: DPCConfig
    step: int
    model: DPC  # eval mode
    checkpoint_path: Path
    dataset: Any = None  # the run's training clips (data.split)


def load_dpc_run(run_dir: str | Path, checkpoint_choice: str = "latest", device: str | torch.device = "cpu",
                 warn=None, data_root: str | Path | None = None) -> LoadedDPCRun:
    """The DPC model (eval mode), config and training clips of a run at a checkpoint ("latest",
    "best" (eval.every: the best val top-1) or a path), restored by the state's own `load_state_dict` (weights only: a run of any number of
    processes loads in one) without touching the caller's random generators. The model is built
    in fp32, not compiled, on `device` (how it was trained does not change its weights);
    `data_root` overrides the run's data.root (clips read on another machine)."""
    device = torch.device(device)
    parts: dict[str, Any] = {}

    def accept(found) -> None:
        config = runs.config_of_record(found.record, DPCConfig)
        if data_root is not None:
            config.data.root = str(data_root)
        settings = copy.deepcopy(config)
        settings.train.device, settings.train.precision, settings.train.compile = str(device), "fp32", False
        settings.eval.every = 0  # loading scores nothing: no val clips built
        with torch.random.fork_rng(devices=rng_devices(device)):
            recipe, state = build_dpc(settings)
            state.load_state_dict(found.state, streams=False)
        config.train.device = str(device)
        parts.update(config=config, state=state, dataset=recipe.dataset)

    found = runs.find_checkpoint(Path(run_dir), checkpoint_choice, warn=warn, accept=accept)
    return LoadedDPCRun(Path(run_dir), parts["config"], found.step, parts["state"].model.eval(), found.path,
                        parts["dataset"])


kinds.attach("dpc", train=train_dpc, load=load_dpc_run, prepare=prepare_dpc)
