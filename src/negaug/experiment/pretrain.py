"""Contrastive pretraining (MoCo-v2 with NDA negatives): one plain function, read top to bottom.

    result = pretrain(load_pretrain_config("mnist", ["nda.transform=jigsaw"]))

Per step: a batch, two positive views of it (`ViewAugment`), with NDA the negatives of both views
(Appendix N: M = 2 per query, encoded by the key encoder), the MoCo loss, an SGD step at the
schedule's learning rate; then logging, k-NN accuracy and checkpoints on their schedules. Every
random draw comes from a seeded stream of the `PretrainState`, which the checkpoints hold, so
`resume=True` continues bit-identically on the CPU. The run folder, lock, checkpoint files, NaN
guard and process-wide settings are those of `negaug train` (`experiment.loop`, `runs`, `checkpoint`).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from negaug import distributed, viz
from negaug.contrastive import dataset_features, knn_accuracy, nda_views
from negaug.experiment import critic, kinds, runs
from negaug.experiment.build import autocast_of, check_sinks
from negaug.experiment.checkpoint import list_steps, read_record, stem
from negaug.experiment.health import ENCODER_HEALTHY, EncoderHealth, health_section
from negaug.experiment.loop import (
    LoopHooks,
    drive,
    log_warnings,
    open_sinks,
    restore_latest,
    run_session,
    save_checkpoint,
)
from negaug.experiment.pretrain_build import (
    PretrainRecipe,
    PretrainState,
    build_pretraining,
    learning_rate,
)
from negaug.experiment.pretrain_config import PretrainConfig
from negaug.experiment.steps import NonFiniteLossError
from negaug.files import write_atomically

FEATURE_BATCH = 512  # images per forward pass when computing k-NN features


@dataclass
class PretrainResult:
    run_dir: Path
    step: int  # optimizer steps done
    interrupted: bool = False  # stopped early on request (SIGINT/SIGTERM); a checkpoint was saved
    seconds: float = 0.0
    last_log: dict[str, Any] = field(default_factory=dict)
    knn: dict[str, Any] | None = None  # the last k-NN accuracy of this session (with its protocol)
    warnings: list[str] = field(default_factory=list)


def prepare_pretraining(config: PretrainConfig) -> tuple[PretrainRecipe, PretrainState]:
    """The recipe and initial state of a run after every check (`negaug pretrain --dry-run`)."""
    if not isinstance(config, PretrainConfig):
        raise TypeError(f"pretrain needs a PretrainConfig (load_pretrain_config), got {type(config).__name__}")
    check_sinks(config)
    return build_pretraining(config)


def pretrain(config: PretrainConfig, run_dir: str | Path | None = None, resume: bool = False,
             stop_requested: Callable[[], bool] = lambda: False, warn: Callable[[str], None] | None = None,
             on_log: Callable[[dict[str, Any]], None] | None = None,
             on_start: Callable[[Path, torch.device, int], None] | None = None) -> PretrainResult:
    """Pretrain (or, with resume=True, continue) the run in `run_dir` (default:
    `train.runs_dir/train.name`); returns where it ended. `on_start(run_dir, device, step)` is
    called once the run folder is ready, `on_log(record)` at every log line and k-NN result."""
    return run_session(
        config, run_dir, resume, "negaug pretrain", prepare_pretraining,
        lambda config, folder, state, warn: restore(folder, state, warn),
        lambda config, recipe, state, folder, warn: _loop(config, recipe, state, folder, stop_requested, on_log, warn),
        warn, on_start, subfolders=("checkpoints",), check_existing=check_pretrain_run)


def check_pretrain_run(run_dir: str | Path) -> None:
    """ValueError when the newest readable checkpoint record of `run_dir` holds a config that is
    not a MoCo pretraining one, naming the run's kind and the commands that fit it."""
    other = kinds.other_kind(run_dir, PretrainConfig)
    if other is not None:
        raise ValueError(f"{run_dir} is a {other.what} run, not a MoCo-v2 pretraining run; "
                         f"{other.how_to_evaluate(run_dir)} (and `{other.train_command} --resume {run_dir}` resumes it)")
    folder = Path(run_dir) / "checkpoints"
    for step in reversed(list_steps(folder)):
        try:
            raw = read_record(folder / f"{stem(step)}.json").get("config")
        except ValueError:  # a bad record: find_checkpoint reports it and falls back
            continue
        if isinstance(raw, dict) and "objective" not in raw:
            raise ValueError(f"{run_dir} is not a `negaug pretrain` run (its config has no 'objective' section); "
                             f"GAN runs are continued by `negaug train --resume`, evaluated by `negaug eval`")
        return


def restore(run_dir: Path, state: PretrainState, warn) -> None:
    """Load the newest checkpoint of `run_dir` that fits `state` (`loop.restore_latest`)."""
    restore_latest(run_dir, state, warn)


def pretrain_step(config: PretrainConfig, recipe: PretrainRecipe, state: PretrainState, step: int) -> None:
    """One optimizer step of MoCo with NDA negatives; its statistics go to `state.stats`."""
    images, _ = state.batches.next()  # (B, C, H, W) on the device
    x_q = recipe.augment(images, generator=state.augment_rng)
    x_k = recipe.augment(images, generator=state.augment_rng)
    nda = None if recipe.negative is None else nda_views(recipe.negative, [x_q, x_k], state.nda_rng)  # (B, 2, C, H, W)
    lr = learning_rate(config, step)
    for group in state.optimizer.param_groups:
        group["lr"] = lr
    state.model.train()
    if config.train.precision == "bf16":
        x_q, x_k = (x.contiguous(memory_format=torch.channels_last) for x in (x_q, x_k))
    with autocast_of(config.train.precision, recipe.device):
        loss, _, stats = state.model(x_q, x_k, nda=nda, generator=state.shuffle_rng)
    loss = loss.float()
    if distributed.any_true(not bool(torch.isfinite(loss))):  # data parallel: on every rank together
        raise NonFiniteLossError(f"non-finite contrastive loss at step {step}; lower optim.lr (now {lr:.3g}) "
                                 f"or raise objective.temperature")
    critic.backward_and_step(loss, state.optimizer, state.scaler)  # data parallel: the gradients' mean over ranks
    distributed.average_batch_norm_stats(state.model)  # both encoders' running statistics, equal on every rank
    state.stats.report("loss", loss)
    for name, value in stats.items():
        state.stats.report(name, value)
    state.stats.report("lr", lr)


def _loop(config: PretrainConfig, recipe: PretrainRecipe, state: PretrainState, run_dir: Path,
          stop_requested: Callable[[], bool], on_log, warn: Callable[[str], None]) -> PretrainResult:
    """The pretraining kind inside THE loop (`loop.drive`): the k-NN monitor on its schedule and at the end."""
    settings = config.train
    sinks = open_sinks(config, run_dir, state.step, on_log)
    log = sinks.log
    knn: dict[str, Any] | None = None
    health, warnings = EncoderHealth(start_step=state.step), []

    def report(messages: list[str]) -> None:
        warnings.extend(messages)
        log_warnings(messages, state.step, log, warn)

    def monitor(step: int) -> None:
        nonlocal knn
        if step < settings.steps:  # the last step's k-NN comes in `finish`, once
            knn = _knn(config, recipe, state, sinks.emit)
            _keep_best(config, state, run_dir, knn)
            report(health.check_knn(step, float(knn["value"]), recipe.num_classes))

    def finish() -> None:
        nonlocal knn
        if recipe.test_dataset is not None:
            knn = _knn(config, recipe, state, sinks.emit)  # always at the end: the run's number
            report(health.check_knn(state.step, float(knn["value"]), recipe.num_classes))

    hooks = LoopHooks(
        desc="pretrain", step=lambda step: pretrain_step(config, recipe, state, step),
        emit=sinks.emit, report=report,
        postfix=lambda record: {"loss": f"{record['loss']:.3f}", "acc": f"{record['accuracy']:.2f}"},
        periodic=((settings.knn_every, monitor),), after_log=health.check_log, finish=finish,
        close=lambda: (state.batches.close(), sinks.close()))
    last, interrupted, seconds = drive(config, state, recipe.device, hooks, stop_requested,
                                       lambda: save_checkpoint(config, state, run_dir))
    if not interrupted and runs.is_main_process():
        write_report(config, run_dir, state.step, last, knn, seconds, warnings)
    return PretrainResult(run_dir, state.step, interrupted, seconds, last, knn)


def knn_of_model(config: PretrainConfig, recipe: PretrainRecipe, state: PretrainState) -> dict[str, Any]:
    """Weighted k-NN accuracy (eval.knn_k, eval.knn_temperature) of the query encoder's features
    (eval mode, no augmentation): the training split is the bank, the test split the queries."""
    encoder = state.model.encoder_q
    bank = dataset_features(encoder, recipe.dataset, FEATURE_BATCH, recipe.device)
    queries = dataset_features(encoder, recipe.test_dataset, FEATURE_BATCH, recipe.device)
    result = knn_accuracy(bank, recipe.dataset.labels, queries, recipe.test_dataset.labels, recipe.num_classes,
                          config.eval.knn_k, config.eval.knn_temperature)
    result["protocol"].update(features="query encoder (before the head), eval mode, no augmentation",
                              bank_split=config.data.split, query_split="val", data=config.data.name,
                              step=state.step)
    return result


def _keep_best(config: PretrainConfig, state: PretrainState, run_dir: Path, knn: dict[str, Any]) -> None:
    """The best checkpoint by the k-NN monitor on the validation split (checkpoints/best/, one kept;
    `negaug probe RUN --checkpoint best`), as GAN runs keep theirs by eval.best_metric."""
    value = float(knn["value"])
    if state.best is None or value > state.best["value"]:
        state.best = {"metric": "knn", "value": value, "step": state.step}
        save_checkpoint(config, state, run_dir, folder=run_dir / "checkpoints" / "best", keep=1)


def _knn(config, recipe, state, emit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """The k-NN monitor now, as a record {"step", "knn"} to the run's sinks; returns its result."""
    result = knn_of_model(config, recipe, state)
    emit({"step": state.step, "knn": result})
    return result


# ---------------------------------------------------------------------------------------------
# report


def head_width(head_hidden: int | None) -> str:
    """The projection head's hidden layer in words (`model.head_hidden`)."""
    if head_hidden is None:
        return "hidden = encoder features (MoCo v2)"
    return "linear (MoCo v1)" if head_hidden == 0 else f"{head_hidden}-d hidden"


def write_report(config: PretrainConfig, run_dir: Path, step: int, last: dict[str, Any],
                 knn: dict[str, Any] | None, seconds: float, warnings: list[str] = ()) -> None:
    model, objective, nda, optim = config.model, config.objective, config.nda, config.optim
    encoder_options = f" {model.options}" if model.options else ""
    nda_options = f" {nda.options}" if nda.options else ""
    lines = [
        f"# Pretraining run {run_dir.name}", "",
        (f"- preset: {config.preset}; data: {config.data.name} ({config.data.split} split), batch "
         f"{config.data.batch_size}; seed {config.train.seed}"),
        f"- encoder: {model.encoder}{encoder_options}; head: {head_width(model.head_hidden)}, {model.dim}-d output",
        (f"- MoCo: objective {objective.name} ("
         f"{'negatives: the batch, queue unused' if objective.name == 'infonce_in_batch' else 'negatives: the queue'}), "
         f"queue {objective.queue_size}, momentum {objective.momentum}, temperature "
         f"{objective.temperature}, Shuffle-BN splits {objective.num_splits}"),
        f"- NDA: {nda.transform}{nda_options} (nda_weight {nda.nda_weight}; negatives of both views)",
        (f"- SGD: lr {optim.lr} ({optim.schedule}, warmup {optim.warmup_steps}), momentum {optim.momentum}, "
         f"weight decay {optim.weight_decay}"),
        f"- {step} steps, {seconds:.0f} s this session with {torch.get_num_threads()} torch threads", "",
    ]
    if knn is not None:
        protocol = knn["protocol"]
        lines += ["## k-NN accuracy", "",
                  (f"**{100 * knn['value']:.2f}%** at step {protocol['step']}: weighted k-NN (k = {protocol['k']}, "
                   f"temperature {protocol['temperature']}) on {protocol['num_bank']} {protocol['bank_split']} "
                   f"features, {protocol['num_queries']} {protocol['query_split']} queries, "
                   f"{protocol['feature_dim']}-d features of the query encoder. Linear probe: "
                   f"`negaug probe {run_dir}`."), ""]
    lines += ["## Last logged values", "", "| name | value |", "|---|---|"]
    lines += [f"| {k} | {v:.4g} |" for k, v in last.items() if isinstance(v, float)]
    lines += health_section(list(warnings), ENCODER_HEALTHY)
    lines += _curves(run_dir)
    write_atomically(run_dir / "report.md", "\n".join(lines) + "\n")


def _curves(run_dir: Path) -> list[str]:
    """Loss / contrastive accuracy and k-NN accuracy curves of the whole run (every session)."""
    records = [r for r in runs.read_metrics(run_dir) if isinstance(r.get("step"), int)]
    logged = [r for r in records if isinstance(r.get("loss"), (int, float))]
    knn = [r for r in records if isinstance(r.get("knn"), dict) and isinstance(r["knn"].get("value"), (int, float))]
    lines = ["", "## Curves", ""]
    if len(logged) >= 2:
        series = {key: ([r["step"] for r in logged if key in r], [r[key] for r in logged if key in r])
                  for key in ("loss", "accuracy") if any(key in r for r in logged)}
        viz.save_line_plot(series, run_dir / "curves_loss.png", xlabel="step", ylabel="value",
                           title="InfoNCE loss and contrastive accuracy")
        lines.append("![loss](curves_loss.png)")
    if len(knn) >= 2:  # one point is no curve (an empty plot): the report's k-NN line holds it
        viz.save_line_plot({"k-NN accuracy": ([r["step"] for r in knn], [r["knn"]["value"] for r in knn])},
                           run_dir / "curves_knn.png", xlabel="step", ylabel="accuracy", title="k-NN accuracy (test)",
                           markers=True)
        lines.append("![k-NN accuracy](curves_knn.png)")
    return lines if len(lines) > 3 else []
