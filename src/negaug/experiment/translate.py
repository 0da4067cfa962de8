"""Pix2Pix with NDA (Table 4 of the paper): one plain training function, read top to bottom.

    result = train_translation(load_translation_config("pix2pix-scenes", ["nda.transform=jigsaw"]))

Per step (as pix2pix's `optimize_parameters`): a batch of pairs (condition c, target y), one
forward of G (dropout on), one D update, one G update on the same G(c).
- D: real pairs (y, c) against the fake side lam * (G(c), c) + (1 - lam) * (NDA(y), c): the
  negative is a transform of the REAL target paired with its TRUE condition (eq. 3; weighted as
  the authors' code, `GANLoss.d_loss`), every patch score a sample; times loss.d_scale (0.5).
- G: the GAN loss of (G(c), c) + loss.l1_weight * |G(c) - y| (0: cGAN only); negatives never enter.
D is called in one function, `score_pairs` (through `negaug.experiment.critic`). Every random draw comes from a seeded stream of the
`TranslationState`, which the checkpoints hold, so `resume=True` continues bit-identically on the
CPU. Run folder, lock, checkpoints, NaN guard and process settings are those of `negaug train`,
and so are the cross-cutting features, through the same shared helpers: train.precision (bf16 /
fp16 autocast via `critic.score` and around G, channels_last, a grad scaler), train.compile, and
data parallelism under torchrun (`negaug.distributed`: rank 0's weights, per-rank streams,
averaged gradients and batch-norm statistics, rank 0 writes).
At the end the test split is scored (`negaug.metrics.segmentation`) into metrics.jsonl and report.md.
With eval.every > 0 the val split is scored every eval.every steps (records {"step", "eval_val"})
and the state with the best eval.best_metric so far is kept in checkpoints/best/ (one;
`negaug eval RUN --checkpoint best`, `load_translation_run(RUN, "best")`), as GAN runs keep theirs.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from negaug import distributed, viz
from negaug.experiment import checkpoint, critic, kinds, runs
from negaug.experiment.build import check_sinks, resolve_device
from negaug.experiment.evaluate import append_evaluation, read_evaluations
from negaug.experiment.health import HealthMonitor, health_section
from negaug.experiment.loop import (
    LoopHooks,
    drive,
    log_warnings,
    open_sinks,
    restore_latest,
    run_session,
    save_checkpoint,
)
from negaug.experiment.steps import NonFiniteLossError
from negaug.experiment.translate_build import (
    TranslationRecipe,
    TranslationState,
    build_translation,
)
from negaug.experiment.translate_config import TranslationConfig
from negaug.files import write_atomically
from negaug.metrics.segmentation import score_translation

SCORES = (("pixel_accuracy", "per-pixel acc."), ("class_accuracy", "per-class acc."), ("mean_iou", "mean IoU"))


@dataclass
class TranslationResult:
    run_dir: Path
    step: int
    interrupted: bool = False
    seconds: float = 0.0
    last_log: dict[str, Any] = field(default_factory=dict)
    scores: dict[str, Any] | None = None  # the test-split segmentation scores at the end
    warnings: list[str] = field(default_factory=list)


def prepare_translation(config: TranslationConfig) -> tuple[TranslationRecipe, TranslationState]:
    """The recipe and initial state of a run after every check (`negaug train --dry-run`)."""
    if not isinstance(config, TranslationConfig):
        raise TypeError(f"train_translation needs a TranslationConfig, got {type(config).__name__}")
    check_sinks(config)
    return build_translation(config)


def train_translation(config: TranslationConfig, run_dir: str | Path | None = None, resume: bool = False,
                      stop_requested: Callable[[], bool] = lambda: False, warn: Callable[[str], None] | None = None,
                      on_log: Callable[[dict[str, Any]], None] | None = None,
                      on_start: Callable[[Path, torch.device, int], None] | None = None) -> TranslationResult:
    """Train (or, with resume=True, continue) the Pix2Pix run in `run_dir` (default:
    `train.runs_dir/train.name`); returns where it ended. Under torchrun (a process group joined,
    as `negaug train` does) data parallel: each rank its share of every batch, gradients averaged,
    rank 0 writes the run folder."""
    return run_session(
        config, run_dir, resume, "negaug train", prepare_translation,
        lambda config, folder, state, warn: restore(folder, state, warn),
        lambda config, recipe, state, folder, warn: _loop(config, recipe, state, folder, stop_requested, on_log, warn),
        warn, on_start)


def restore(run_dir: Path, state: TranslationState, warn) -> None:
    restore_latest(run_dir, state, warn)


def score_pairs(recipe: TranslationRecipe, discriminator: torch.nn.Module,
                parts: list[tuple[torch.Tensor, torch.Tensor]]) -> list[torch.Tensor]:
    """Raw patch scores, float32 flattened to (B_i * P,), of each part (images, conditions), through
    `critic.score` (its grouping rule: a batch-dependent D never mixes real, generated and
    negative pairs in one call) with the run's channels_last and autocast."""
    scores = critic.score(discriminator, parts, prepare=recipe.prepare, autocast=recipe.autocast)
    return [out.reshape(-1) for out in scores]  # each (B_i, 1, P_h, P_w)


def translation_step(recipe: TranslationRecipe, state: TranslationState, step: int) -> None:
    """One D update and one G update on a batch of pairs; statistics go to `state.stats`. Data
    parallel: gradients averaged in `critic.backward_and_step`, batch-norm statistics after the
    G update, the finite checks decided on every rank together."""
    condition, target = state.batches.next()  # (B, C, S, S) each, in [-1, 1]
    negatives = recipe.negative(target, generator=state.nda_rng) if recipe.negative is not None else None
    with recipe.autocast():
        generated = state.generator(recipe.prepare(condition)).float()  # fp32: a no-op
    parts = [(target, condition), (generated.detach(), condition)]
    if negatives is not None:
        parts.append((negatives, condition))  # the true condition: only the target is wrong
    d_real, d_generated, *rest = score_pairs(recipe, state.discriminator, parts)
    d_neg = rest[0] if rest else None
    loss_d, terms = recipe.loss.d_loss(d_real, d_generated, d_neg, lam=recipe.lam if d_neg is not None else None)
    loss_d = recipe.d_scale * loss_d
    _check_finite(loss_d, step, "discriminator")
    critic.backward_and_step(loss_d, state.opt_d, state.scaler)
    state.discriminator.requires_grad_(False)
    try:
        (d_fake,) = score_pairs(recipe, state.discriminator, [(generated, condition)])
        loss_gan = recipe.loss.g_loss(d_fake)
        l1 = (generated - target).abs().mean()
        loss_g = loss_gan + recipe.l1_weight * l1 if recipe.l1_weight > 0 else loss_gan
        _check_finite(loss_g, step, "generator")
        critic.backward_and_step(loss_g, state.opt_g, state.scaler)
    finally:
        state.discriminator.requires_grad_(True)
    for network in (state.generator, state.discriminator):
        distributed.average_batch_norm_stats(network)  # data parallel: equal running statistics on every rank
    for name, value in {"loss/d": loss_d, "loss/g": loss_g, "loss/g_gan": loss_gan, "loss/l1": l1,
                        "d_out/real": d_real, "d_out/generated": d_generated, **{f"loss/{k}": v for k, v in terms.items()},
                        **({"d_out/negative": d_neg} if d_neg is not None else {})}.items():
        state.stats.report(name, value.detach())


def _check_finite(loss: torch.Tensor, step: int, where: str) -> None:
    if distributed.any_true(not bool(torch.isfinite(loss))):  # data parallel: every rank stops together
        raise NonFiniteLossError(f"non-finite {where} loss at step {step}; lower the learning rate "
                                 f"(optim.lr_g, optim.lr_d)")


def _loop(config: TranslationConfig, recipe: TranslationRecipe, state: TranslationState, run_dir: Path,
          stop_requested: Callable[[], bool], on_log, warn: Callable[[str], None]) -> TranslationResult:
    """The Pix2Pix kind inside THE loop (`loop.drive`): samples on their schedule, the test split's
    segmentation scores at the end."""
    settings = config.train
    sinks = open_sinks(config, run_dir, state.step, on_log)
    log, warnings = sinks.log, []
    health = HealthMonitor(floor_fix="lower optim.lr_d or loss.d_scale")  # Pix2Pix has no spectral norm or penalty
    scores: dict[str, Any] | None = None

    def report(messages: list[str]) -> None:
        warnings.extend(messages)
        log_warnings(messages, state.step, log, warn)

    def step_once(step: int) -> None:
        state.generator.train()
        state.discriminator.train()
        translation_step(recipe, state, step)

    def validate(step: int) -> None:
        found = split_scores(config, recipe, state, recipe.val_dataset, "val")
        sinks.emit({"step": step, "eval_val": found})
        _keep_best(config, state, run_dir, found)

    def finish() -> None:
        nonlocal scores
        if not (settings.sample_every and state.step % settings.sample_every == 0):
            save_samples(config, recipe, state, run_dir)
        scores = test_scores(config, recipe, state)
        sinks.emit({"step": state.step, "eval": scores})

    hooks = LoopHooks(
        desc="pix2pix", step=step_once, emit=sinks.emit,
        report=report, postfix=lambda record: {k.split("/")[-1]: f"{record[k]:.3f}" for k in ("loss/d", "loss/g")},
        periodic=((settings.sample_every, lambda step: save_samples(config, recipe, state, run_dir)),
                  (config.eval.every, validate)),
        after_log=health.check_log, finish=finish, close=lambda: (state.batches.close(), sinks.close()))
    last, interrupted, seconds = drive(config, state, recipe.device, hooks, stop_requested,
                                       lambda: save_checkpoint(config, state, run_dir))
    if not interrupted and runs.is_main_process():
        write_report(config, run_dir, state.step, last, scores, seconds, warnings, best=state.best)
    return TranslationResult(run_dir, state.step, interrupted, seconds, last, scores)


def test_scores(config: TranslationConfig, recipe: TranslationRecipe, state: TranslationState) -> dict[str, Any]:
    """Segmentation scores of G (eval mode: dropout off) on eval.split, with the run's step."""
    return split_scores(config, recipe, state, recipe.test_dataset, config.eval.split)


def split_scores(config: TranslationConfig, recipe: TranslationRecipe, state: TranslationState,
                 dataset, split: str) -> dict[str, Any]:
    """Segmentation scores of G (eval mode: dropout off) on `dataset` (the `split` split; its first
    eval.num_samples pairs), with the run's step; G's training mode is restored after."""
    generator = state.generator
    was_training = generator.training
    generator.eval()
    try:
        scores = score_translation(generator, dataset, config.eval.num_samples, config.eval.batch_size, recipe.device)
    finally:
        generator.train(was_training)
    scores["protocol"].update(split=split, data=config.data.name, step=state.step, generator="eval mode (dropout off)")
    return scores


def _keep_best(config: TranslationConfig, state: TranslationState, run_dir: Path, scores: dict[str, Any]) -> None:
    """The best checkpoint by eval.best_metric on the val split (checkpoints/best/, one kept;
    higher is better), as GAN runs keep theirs and pretraining runs by their k-NN monitor."""
    metric = config.eval.best_metric
    value = float(scores[metric])
    if state.best is None or value > state.best["value"]:
        state.best = {"metric": metric, "value": value, "step": state.step}
        save_checkpoint(config, state, run_dir, folder=run_dir / "checkpoints" / "best", keep=1)


@torch.no_grad()
def save_samples(config: TranslationConfig, recipe: TranslationRecipe, state: TranslationState, run_dir: Path) -> None:
    """samples/step_*.png: one row per test pair, condition | output (eval mode) | target."""
    if not runs.is_main_process():
        return
    count = min(config.train.num_sample_images, len(recipe.test_dataset))
    conditions, targets = recipe.test_dataset.get_batch(torch.arange(count))
    generator = state.generator
    was_training = generator.training
    generator.eval()
    outputs = generator(conditions.to(recipe.device)).float().cpu()
    generator.train(was_training)
    rows = torch.stack([conditions, outputs, targets], 1).flatten(0, 1)  # (3 * count, C, S, S)
    picture = viz.make_grid(rows, nrow=3, scale=viz.readable_scale(rows.shape[-1]))
    viz.write_png(picture, run_dir / "samples" / f"{checkpoint.stem(state.step)}.png")


def write_report(config: TranslationConfig, run_dir: Path, step: int, last: dict[str, Any],
                 scores: dict[str, Any] | None, seconds: float, warnings: list[str] = (),
                 best: dict[str, Any] | None = None) -> None:
    model, loss, nda = config.model, config.loss, config.nda
    objective = f"cGAN ({loss.gan})" + (f" + {loss.l1_weight:g} x L1" if loss.l1_weight > 0 else " only")
    negatives = (f"{nda.transform} {nda.options or ''} of the real target with its true condition, "
                 f"lambda = {nda.lam}" if nda.transform != "none" else "none")
    lines = [f"# Pix2Pix run {run_dir.name}", "",
             (f"- preset: {config.preset}; data: {config.data.name} ({config.data.split} split), "
              f"{config.data.image_size} px, batch {config.data.batch_size}; seed {config.train.seed}"),
             (f"- U-Net width {model.width}, PatchGAN n_layers {model.d_layers}, {model.norm} norm, "
              f"dropout {model.dropout}; objective: {objective}; D loss x {loss.d_scale}"),
             f"- NDA: {negatives}", f"- {step} steps, {seconds:.0f} s this session with {torch.get_num_threads()} torch threads"]
    if best is not None:
        lines.append(f"- best checkpoint (val split, every {config.eval.every} steps): {best['metric']} "
                     f"{best['value']:.3f} at step {best['step']} (checkpoints/best/)")
    lines.append("")
    if scores is not None:
        protocol = scores["protocol"]
        lines += [f"## Segmentation scores ({protocol['split']} split, {protocol['num_pairs']} pairs)", "",
                  "| measure | value |", "|---|---|"]
        lines += [f"| {label} | {scores[key]:.3f} |" for key, label in SCORES]
        lines += [f"| majority-class pixel acc. (reference) | {scores['majority_pixel_accuracy']:.3f} |", ""]
    lines += ["## Last logged values", "", "| name | value |", "|---|---|"]
    lines += [f"| {k} | {v:.4g} |" for k, v in last.items() if isinstance(v, float)]
    lines += health_section(list(warnings), "D's loss never sat at its floor")
    sample = run_dir / "samples" / f"{checkpoint.stem(step)}.png"
    if sample.exists():
        lines += ["", "## Samples (condition | output | target)", "", f"![samples](samples/{sample.name})"]
    write_atomically(run_dir / "report.md", "\n".join(lines) + "\n")


# ---------------------------------------------------------------------------------------------
# a trained run: loading and `negaug eval`


@dataclass
class LoadedTranslationRun:
    run_dir: Path
    config: TranslationConfig
    step: int
    generator: torch.nn.Module  # eval mode
    checkpoint_path: Path


def load_translation_run(run_dir: str | Path, checkpoint_choice: str = "latest", device: str | torch.device = "cpu",
                         warn=None, data_root: str | Path | None = None) -> LoadedTranslationRun:
    """G and the config of a Pix2Pix run at a checkpoint ("latest", "best" or a path), restored by the
    training state's own `load_state_dict` without touching the caller's random generators. G is
    loaded to be scored: the returned config's train.device is `device`, train.precision fp32 and
    train.compile false (an fp16 run loads on a CPU); the weights only, so a run of any number of
    processes loads in one."""
    device = torch.device(device)
    parts: dict[str, Any] = {}

    def accept(found) -> None:
        config = runs.config_of_record(found.record, TranslationConfig)
        if data_root is not None:
            config.data.root = str(data_root)
        config.train.device, config.train.precision, config.train.compile = str(device), "fp32", False
        with torch.random.fork_rng(devices=list(range(torch.cuda.device_count())) if device.type == "cuda" else []):
            _, state = build_translation(config)
            state.load_state_dict(found.state, streams=False)
        parts.update(config=config, state=state)

    found = runs.find_checkpoint(Path(run_dir), checkpoint_choice, warn=warn, accept=accept)
    generator = parts["state"].generator.eval()
    return LoadedTranslationRun(Path(run_dir), parts["config"], found.step, generator, found.path)


def evaluate_translation_run(run_dir: str | Path, checkpoint_choice: str = "latest", num_samples: int | None = None,
                             batch_size: int = 64, device: str = "auto", data_root: str | Path | None = None,
                             warn=None, split: str | None = None) -> dict[str, Any]:
    """Segmentation scores of a Pix2Pix run's G (eval mode) on `split` ("val" for anything that
    selects, "test" for reported numbers; None: the run's eval.split); the entry is appended to
    RUN/eval.json (as `negaug eval` does for GAN runs) and returned."""
    if split is not None and split not in ("val", "test"):
        raise ValueError(f"--split must be val or test (held-out pairs), got {split!r}")
    if num_samples is not None and num_samples < 1:
        raise ValueError(f"--num-samples must be at least 1, got {num_samples}")
    if batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {batch_size}")
    run_dir = runs.require_run_dir(run_dir)
    device = resolve_device(device, key="--device")
    read_evaluations(run_dir / "eval.json")  # a damaged results file fails now, not after the work
    loaded = load_translation_run(run_dir, checkpoint_choice, device, warn=warn, data_root=data_root)
    config = loaded.config
    config.eval.num_samples, config.eval.batch_size = num_samples, batch_size
    if split is not None:
        config.eval.split = split
    recipe, _ = build_translation(config)
    scores = score_translation(loaded.generator, recipe.test_dataset, num_samples, batch_size, device)
    scores["protocol"].update(split=config.eval.split, data=config.data.name, step=loaded.step,
                              generator="eval mode (dropout off)")
    entry = {"step": int(loaded.step), "checkpoint": str(loaded.checkpoint_path), "checkpoint_choice": checkpoint_choice,
             "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "results": {"segmentation": scores}}
    append_evaluation(run_dir / "eval.json", entry)
    return entry


def format_scores(entry: dict[str, Any]) -> str:
    scores = entry["results"]["segmentation"]
    protocol = scores["protocol"]
    lines = [f"step {entry['step']} ({entry['checkpoint']})",
             f"segmentation of generated label maps, {protocol['split']} split, {protocol['num_pairs']} pairs"]
    lines += [f"{label:<40} {scores[key]:>8.4f}" for key, label in SCORES]
    lines.append(f"{'majority-class pixel acc. (reference)':<40} {scores['majority_pixel_accuracy']:>8.4f}")
    return "\n".join(lines)


kinds.attach("pix2pix", train=train_translation, load=load_translation_run, prepare=prepare_translation)
