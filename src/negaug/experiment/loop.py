"""THE training loop of every kind of run (`drive`, one plain function read top to bottom) and the
NDA-GAN's use of it (`train`); `negaug pretrain` and Pix2Pix run their own steps in the same
`drive` through `LoopHooks`, and `run_session` gives all three the same run folder, lock, resume
and process settings.

    result = negaug.experiment.train(negaug.experiment.load_config("default"))

Per generator step: `num_d_steps` discriminator steps on fresh real batches (each against
lam * G + (1 - lam) * NDA), one generator step, the EMA update, then logging, samples,
evaluation and checkpoints on their schedules. Every random draw comes from a seeded stream of
the `TrainState`, which the checkpoints hold, so `resume=True` continues bit-identically on the CPU.

`train` is where the process-wide settings of a run are made, and undone when it returns: torch's
global generator (seeded with `train.seed`) and, with `train.deterministic`, deterministic
algorithms. The caller's config is never changed.
"""
from __future__ import annotations

import contextlib
import copy
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

import negaug
from negaug import distributed, viz
from negaug.data.images import ImageFileError
from negaug.experiment import checkpoint, kinds, runs
from negaug.experiment.build import Recipe, build
from negaug.experiment.config import Config
from negaug.experiment.evaluate import check_feature_space_of_run, evaluate_generator_of_run
from negaug.experiment.health import HealthMonitor, health_section
from negaug.experiment.pace import StepPace
from negaug.experiment.state import TrainState, WorldSizeError, rank_seed, rng_devices, world_size_message
from negaug.experiment.stats import scalars_of
from negaug.experiment.steps import NonFiniteLossError, discriminator_step, generator_step
from negaug.experiment.wandb_logger import open_wandb
from negaug.files import write_atomically
from negaug.metrics import find_metric


class RunWriteError(RuntimeError):
    """A file of the run could not be written or read mid-run (a full disk, permissions); the
    files already written are whole and the last checkpoint is intact."""


class CheckpointWriteError(RunWriteError):
    """A checkpoint could not be written (e.g. a full disk); earlier checkpoints are intact."""


@dataclass
class TrainResult:
    run_dir: Path
    step: int  # generator steps done
    interrupted: bool = False  # stopped early on request (SIGINT/SIGTERM); a checkpoint was saved
    seconds: float = 0.0
    last_log: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def prepare_run(config: Config) -> tuple[Recipe, TrainState]:
    """The recipe and initial state of a run, after every check a run would otherwise fail later
    (`negaug train --dry-run` runs exactly this): the config, and with eval.every > 0 the
    evaluations' feature space (which trains and caches the offline classifier once)."""
    recipe, state = build(config)
    if config.eval.every > 0:
        check_feature_space_of_run(config, recipe.dataset, progress=config.train.progress)
    return recipe, state


def train(config: Config, run_dir: str | Path | None = None, resume: bool = False,
          stop_requested: Callable[[], bool] = lambda: False, warn: Callable[[str], None] | None = None,
          on_log: Callable[[dict[str, Any]], None] | None = None,
          on_start: Callable[[Path, torch.device, int], None] | None = None) -> TrainResult:
    """Train (or, with resume=True, continue) the run in `run_dir` (default:
    `train.runs_dir/train.name`); returns where it ended. `on_start(run_dir, device, step)` is
    called once the run folder is ready, `on_log(record)` at every log line."""
    if not isinstance(config, Config):
        raise ValueError(f"train needs a Config (negaug.experiment.load_config(...)), got {type(config).__name__}")
    return run_session(
        config, run_dir, resume, "negaug train", prepare_run, restore,
        lambda config, recipe, state, folder, warn: _loop(config, recipe, state, folder, stop_requested, on_log, warn),
        warn, on_start)


def run_session(config, run_dir: str | Path | None, resume: bool, command: str,
                prepare: Callable[[Any], tuple[Any, Any]], restore_state: Callable[..., None],
                loop: Callable[..., Any], warn: Callable[[str], None] | None,
                on_start: Callable[[Path, torch.device, int], None] | None,
                subfolders: tuple[str, ...] = ("samples", "checkpoints"),
                check_existing: Callable[[Path], None] | None = None):
    """What `negaug train` and `negaug pretrain` share around their loops: every check
    (`prepare(config) -> (recipe, state)`) before a run folder exists, the new folder or the
    resumed one (`restore_state(config, run_dir, state, warn)`), the run lock, the process
    settings, config.yaml, and a failed write reported as RunWriteError with the run intact.
    `loop(config, recipe, state, run_dir, warn)` returns a result with a `warnings` list."""
    warnings: list[str] = []

    def record_warning(message: str) -> None:
        warnings.append(message)
        if warn is not None:
            warn(message)

    config, run_dir = _session_target(config, run_dir, resume)
    recipe, state = prepare(config)  # every check happens here, before a run folder exists
    run_dir = Path(run_dir) if resume else runs.run_dir_of(config)
    run_dir = distributed.broadcast_object(run_dir)  # data parallel: rank 0's (a default name holds the time)
    with contextlib.ExitStack() as held:
        # rank 0 alone checks, creates and locks the folder; its error is raised on every rank
        distributed.on_rank_zero(lambda: _claim_run_dir(config, run_dir, resume, command, check_existing, held,
                                                        subfolders))
        held.enter_context(run_process_settings(config, recipe.device))
        if resume:
            restore_state(config, run_dir, state, record_warning)  # every rank reads the checkpoint
            if state.step >= config.train.steps:  # nothing to train: say so before anything is written
                raise ValueError(f"train.steps={config.train.steps} is not above the step of the checkpoint "
                                 f"({state.step}); to train longer, set train.steps to more than {state.step}")
        if on_start is not None:
            on_start(run_dir, recipe.device, state.step)
        result = _run_in_folder(config, recipe, state, run_dir, command, loop, record_warning)
        distributed.barrier()  # data parallel: no rank leaves before rank 0 has written the last files
    result.warnings = warnings
    return result


def _session_target(config, run_dir: str | Path | None, resume: bool):
    """(a copy of the config naming the run folder, the folder to resume or None)."""
    config = copy.deepcopy(config)
    if run_dir is not None and not resume:
        config.train.name, config.train.runs_dir = Path(run_dir).name, str(Path(run_dir).parent)
    if resume and run_dir is None:
        if config.train.name is None:
            raise ValueError("resume=True needs the run folder: pass run_dir, or set train.name (and train.runs_dir)")
        run_dir = Path(config.train.runs_dir) / config.train.name
    return config, run_dir


def _run_in_folder(config, recipe, state, run_dir: Path, command: str, loop: Callable[..., Any],
                   record_warning: Callable[[str], None]):
    """config.yaml, then the kind's loop; a file that cannot be read or written mid-run becomes a
    RunWriteError naming it and the resume that works once it is fixed (the run stays intact)."""
    try:
        if runs.is_main_process():
            runs.write_config(run_dir, config)
        return loop(config, recipe, state, run_dir, record_warning)
    except ImageFileError as err:  # a lazily read image file: named, and the resume that works after fixing it
        raise RunWriteError(f"{err}; the run {run_dir} stopped at step {state.step} "
                            f"{resume_advice(run_dir, command, 'replace the file with a readable copy')}") from None
    except OSError as err:
        where = err.filename or run_dir
        raise RunWriteError(f"{where}: {err.strerror or err}; the run stopped at step {state.step} "
                            f"{resume_advice(run_dir, command, 'free the space')}") from None


def resume_advice(run_dir: Path, command: str, fix: str) -> str:
    """What to do after a mid-run stop, matching what exists: a resume when the run has a
    checkpoint, else a new start (a resume of a run without checkpoints is refused)."""
    if checkpoint.list_steps(Path(run_dir) / "checkpoints"):
        return f"with its last checkpoint intact; {fix}, then continue with {command} --resume {run_dir}"
    return f"before its first checkpoint (a resume has nothing to continue); {fix}, delete {run_dir} and start again"


def _claim_run_dir(config, run_dir: Path, resume: bool, command: str, check_existing: Callable[[Path], None] | None,
                   held: contextlib.ExitStack, subfolders: tuple[str, ...]) -> None:
    """Check the folder of a resumed run (or that a new one may be created), take its lock for as
    long as `held` lasts, and fill a new one."""
    if resume and not run_dir.exists():
        raise FileNotFoundError(f"{run_dir} does not exist; give the run folder that `{command}` created")
    if resume and not (run_dir / "checkpoints").is_dir():
        raise FileNotFoundError(f"{run_dir} is not a negaug run folder (no checkpoints/); give the folder "
                                f"that `{command}` created")
    if resume and check_existing is not None:
        check_existing(run_dir)
    if not resume:
        runs.check_new_run_dir(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
    held.enter_context(runs.RunLock(run_dir))
    if not resume:
        runs.create_run_dir(config, run_dir, subfolders=subfolders)


@contextlib.contextmanager
def run_process_settings(config: Config, device: torch.device) -> Iterator[None]:
    """torch's global generators seeded with `train.seed` (data parallel: each rank's own,
    `rank_seed`) and, with `train.deterministic`,
    deterministic algorithms (exact resume on GPUs), and `train.threads` torch CPU threads (None:
    torch's default, untouched); all restored on exit. On a GPU,
    CUBLAS_WORKSPACE_CONFIG is set if unset and stays set (cuBLAS reads it once per process)."""
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    cudnn_benchmark = torch.backends.cudnn.benchmark
    threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=rng_devices(device)):
        torch.manual_seed(rank_seed(config.train.seed, distributed.rank()))
        if config.train.deterministic:
            if device.type == "cuda":  # must precede the first cuBLAS call of the process
                os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
                torch.backends.cudnn.benchmark = False
            torch.use_deterministic_algorithms(True, warn_only=True)
        if config.train.threads is not None:
            torch.set_num_threads(config.train.threads)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
            torch.backends.cudnn.benchmark = cudnn_benchmark
            torch.set_num_threads(threads)


@dataclass
class LoopHooks:
    """What one kind of run does inside THE loop (`drive`): every kind (GAN, pretraining, Pix2Pix)
    runs the same schedule of logging, warnings, checkpoints and stop handling around its own step."""

    desc: str  # the progress bar's label
    step: Callable[[int], None]  # one training step (raises NonFiniteLossError on a non-finite loss)
    emit: Callable[[dict[str, Any]], None]  # a log record to the run's sinks (metrics.jsonl, TensorBoard, on_log)
    report: Callable[[list[str]], None]  # warnings: to the caller and metrics.jsonl
    postfix: Callable[[dict[str, Any]], dict[str, str]]  # progress-bar fields from a log record
    periodic: tuple[tuple[int, Callable[[int], None]], ...] = ()  # (every, fn(step)): after logging, before checkpoints
    after_log: Callable[[dict[str, Any]], list[str]] = lambda record: []  # e.g. health warnings of a record
    finish: Callable[[], None] = lambda: None  # after the final checkpoint of a run that was not stopped
    close: Callable[[], None] = lambda: None  # the sinks, whatever happened


@dataclass
class RunSinks:
    """Where a run's log records go, the same for every kind: metrics.jsonl (the main process),
    TensorBoard (train.tensorboard: every number of a record as a scalar), Weights & Biases
    (train.wandb: every record) and the caller's on_log."""

    log: Any  # runs.MetricsLog, or None on the ranks > 0 of torchrun
    board: Any = None  # a TensorBoard SummaryWriter, or None
    wandb_run: Any = None
    on_log: Callable[[dict[str, Any]], None] | None = None

    def emit(self, record: dict[str, Any]) -> None:
        _emit(record, self.log, self.board, self.on_log)

    def close(self) -> None:
        for sink in (self.log, self.board, self.wandb_run):
            if sink is not None:
                sink.close()


def open_sinks(config, run_dir: Path, step: int, on_log: Callable[[dict[str, Any]], None] | None) -> RunSinks:
    """The sinks of a run of any kind (`RunSinks`), opened at `step` (a resumed run appends)."""
    settings = config.train
    sinks = RunSinks(runs.MetricsLog(run_dir / "metrics.jsonl", resume_step=step) if runs.is_main_process() else None,
                     on_log=on_log)
    try:
        if getattr(settings, "tensorboard", False) and sinks.log is not None:
            sinks.board = _tensorboard(run_dir)
            # the resolved config, once per session, as preformatted text
            sinks.board.add_text("config", "".join(f"    {line}\n" for line in config.to_yaml().splitlines()), step)
        if getattr(settings, "wandb", False) and sinks.log is not None:
            sinks.wandb_run = open_wandb(run_dir, config.to_dict())
            sinks.on_log = sinks.wandb_run.chain(on_log)  # W&B gets every record
    except BaseException:
        sinks.close()  # what was opened before the failure
        raise
    return sinks


def drive(config, state, device: torch.device, hooks: LoopHooks, stop_requested: Callable[[], bool],
          save: Callable[[], None]) -> tuple[dict[str, Any], bool, float]:
    """THE training loop of every kind, read top to bottom: per step the kind's step (timed for
    the slow-step warning), then on `train.log_every` a finite check of the state and a log record,
    the kind's periodic work, a checkpoint on `train.checkpoint_every`, and the stop request (on
    every rank together); at the end a final checkpoint and, unless stopped, the kind's finish.
    Returns (the last log record, whether it was stopped, seconds)."""
    settings = config.train
    bar = tqdm(total=settings.steps, initial=state.step, disable=not (settings.progress and runs.is_main_process()),
               unit="step", dynamic_ncols=True, desc=hooks.desc)
    pace = StepPace(torch.get_num_threads(), enabled=device.type == "cpu")
    start = window_start = time.perf_counter()
    window_step, last, interrupted = state.step, {}, False
    try:
        while state.step < settings.steps:
            step = state.step + 1
            slow = timed(pace, bar, lambda: hooks.step(step))  # noqa: B023 (called at once)
            state.step = step
            bar.update(1)
            hooks.report(slow)
            if step % settings.log_every == 0 or step == settings.steps:
                check_state_finite(state)
                now = time.perf_counter()
                last = {"step": step, **state.stats.collect(), "it_per_s": (step - window_step) / max(now - window_start, 1e-9),
                        "elapsed_s": now - start, "threads": pace.threads}
                window_start, window_step = now, step
                hooks.emit(last)
                bar.set_postfix({**hooks.postfix(last), **pace.postfix()})
                hooks.report(hooks.after_log(last))
            for every, work in hooks.periodic:
                if every and step % every == 0:
                    work(step)
            if settings.checkpoint_every and step % settings.checkpoint_every == 0:
                save()
            if distributed.any_true(stop_requested()):  # data parallel: every rank stops at the same step
                interrupted = True
                break
        if not (settings.checkpoint_every and state.step % settings.checkpoint_every == 0):
            save()  # the final (or interrupted) state
        if not interrupted:
            hooks.finish()
    finally:
        bar.close()
        hooks.close()
    return last, interrupted, time.perf_counter() - start


def _loop(config: Config, recipe: Recipe, state: TrainState, run_dir: Path,
          stop_requested: Callable[[], bool], on_log, warn: Callable[[str], None]) -> TrainResult:
    """The GAN kind inside `drive`: health warnings, evaluations, samples, TensorBoard and W&B."""
    settings = config.train
    health, health_warnings = HealthMonitor(), []
    health.set_real(real_examples(recipe.dataset, settings.num_sample_images))
    fixed_latent = fixed_latent_batch(config, recipe, state)
    sinks = open_sinks(config, run_dir, state.step, on_log)  # last: nothing can fail before drive closes them
    log, board = sinks.log, sinks.board

    def report_health(found: list[str]) -> None:
        for message in found:
            if message.startswith("evaluation: ") and message in health_warnings:
                continue  # a forced evaluation's warning: once, not at every evaluation
            health_warnings.append(message)
            warn(message)
            if log is not None:
                log.write({"step": state.step, "warning": message})

    def samples(step: int) -> None:
        report_health(health.check_samples(step, save_samples(state, fixed_latent, run_dir, recipe.dataset, board)))

    def finish() -> None:
        if not (settings.sample_every and state.step % settings.sample_every == 0):
            samples(state.step)

    def close() -> None:
        state.batches.close()
        sinks.close()

    hooks = LoopHooks(
        desc="train", step=lambda step: train_step(recipe, state, step, state.stats),
        emit=sinks.emit, report=report_health,
        postfix=lambda record: {k.split("/")[-1]: f"{record[k]:.3f}" for k in ("loss/d", "loss/g") if k in record},
        periodic=((config.eval.every, lambda step: _evaluate(config, recipe, state, run_dir, sinks.emit, report_health)),
                  (settings.sample_every, samples)),
        after_log=health.check_log, finish=finish, close=close)
    last, interrupted, seconds = drive(config, state, recipe.device, hooks, stop_requested,
                                       lambda: save_checkpoint(config, state, run_dir))
    if not interrupted and runs.is_main_process():
        write_report(config, run_dir, state.step, last, seconds, health_warnings)
    return TrainResult(run_dir, state.step, interrupted, seconds, last)


def train_step(recipe: Recipe, state: TrainState, step: int, stats) -> None:
    """Generator step `step`: `num_d_steps` D steps on fresh real batches, one G step, the EMA.
    Data parallel: the gradients are averaged inside each step (`critic.backward_and_step`) and
    G's batch-norm statistics after the G step, so G, D and the EMA stay identical on every rank."""
    state.generator.train()
    state.discriminator.train()
    for _ in range(recipe.num_d_steps if recipe.loss.uses_discriminator else 1):  # mmd: no D
        real, labels = state.batches.next()
        if recipe.loss.uses_discriminator:
            discriminator_step(recipe, state, real, labels, step, stats)
    generator_step(recipe, state, step, stats, real, labels)  # the last real batch (rpgan, fm, mmd)
    distributed.average_batch_norm_stats(state.generator)
    if state.ema is not None:
        state.ema.update(state.generator, step)


def timed(pace: StepPace, bar, step: Callable[[], None]) -> list[str]:
    """Run one training step, timed for `pace`: the slow-step warning once when it starts (shown
    in the progress line from then on), else nothing."""
    began = time.perf_counter()
    step()
    message = pace.record(time.perf_counter() - began)
    if message is None:
        return []
    slow = ", ".join(f"{key}={value}" for key, value in pace.postfix().items())
    bar.set_postfix_str(f"{bar.postfix}, {slow}" if getattr(bar, "postfix", None) else slow)
    return [message]


def log_warnings(messages: list[str], step: int, log, warn: Callable[[str], None]) -> None:
    """Each message to the caller's `warn` and, as {"step", "warning"}, to metrics.jsonl."""
    for message in messages:
        warn(message)
        if log is not None:
            log.write({"step": step, "warning": message})


def _emit(record, log, board, on_log) -> None:
    """A log record to metrics.jsonl, TensorBoard (its numbers) and the caller's on_log."""
    if log is not None:
        log.write(record)
    if board is not None:
        for key, value in scalars_of(record).items():
            board.add_scalar(key, value, record["step"])
    if on_log is not None:
        on_log(record)


def _tensorboard(run_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter  # optional dependency
    except ImportError:
        raise ValueError("train.tensorboard=true needs the tensorboard package: pip install tensorboard") from None
    return SummaryWriter(str(run_dir / "tensorboard"))


# ---------------------------------------------------------------------------------------------
# samples, evaluation, report


def fixed_latent_batch(config: Config, recipe: Recipe, state: TrainState) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The latents (and labels: classes in turn) of every sample grid of the run, from `train.seed`."""
    rng = torch.Generator().manual_seed(config.train.seed + 3)
    n = config.train.num_sample_images
    latents = state.generator.sample_latent(n, generator=rng, device=recipe.device)
    labels = torch.arange(n, device=recipe.device) % recipe.num_classes if recipe.num_classes else None
    return latents, labels


def real_examples(dataset, count: int) -> torch.Tensor:
    """The first `count` (at least 2) samples of `dataset`, the yardstick of sample diversity."""
    count = max(2, min(count, len(dataset)))
    if hasattr(dataset, "get_batch"):
        return dataset.get_batch(torch.arange(count))[0].float()
    return torch.stack([dataset[i][0] for i in range(count)]).float()


@torch.no_grad()
def save_samples(state: TrainState, fixed_latent, run_dir: Path, dataset=None, board=None) -> torch.Tensor:
    """`samples/step_*.png` (and, with a TensorBoard writer, the image "samples") of the fixed
    latent batch, from the EMA (else G); returns the samples (CPU float32), written only by the main process."""
    sampler = state.sampler()
    was_training = sampler.training
    sampler.eval()
    samples = sampler(*fixed_latent).float().cpu()
    sampler.train(was_training)
    if not runs.is_main_process():
        return samples
    picture = sample_picture(samples, dataset, state.step)
    viz.write_png(picture, run_dir / "samples" / f"{checkpoint.stem(state.step)}.png")
    if board is not None:
        board.add_image("samples", picture, state.step, dataformats="HWC")
    return samples


def sample_picture(samples: torch.Tensor, dataset=None, step: int = 0) -> np.ndarray:
    """uint8 (H, W, 3): a grid of images `(N, C, H, W)`, each enlarged to >= 64 px, or a scatter of
    points `(N, 2)` on the fixed axes of the dataset's true modes (`centers`, `std`), modes drawn."""
    if samples.dim() == 4:
        nrow = int(max(1, round(samples.shape[0] ** 0.5)))
        return viz.make_grid(samples, nrow=nrow, scale=viz.readable_scale(samples.shape[-1]))
    return viz.figure_array(sample_scatter_figure(samples, dataset, step))


def sample_scatter_figure(samples: torch.Tensor, dataset=None, step: int = 0):
    """The scatter of 2-D samples at `step`: the same axes at every step when `dataset` has `centers`."""
    modes = getattr(dataset, "centers", None)
    return viz.scatter_figure({"generated": samples}, title=f"samples at step {step}", modes=modes,
                              mode_std=float(dataset.std) if modes is not None else 0.0)


def _evaluate(config: Config, recipe: Recipe, state: TrainState, run_dir: Path,
              emit: Callable[[dict[str, Any]], None], report: Callable[[list[str]], None]) -> None:
    """Evaluate the EMA generator into the run's sinks (metrics.jsonl; "eval/<metric>" to
    TensorBoard and W&B); keep the best checkpoint by eval.best_metric. Warnings of values
    computed with eval.force go to `report` (screen, metrics.jsonl, report.md)."""
    results = evaluate_generator_of_run(config, state.sampler(), recipe.dataset, recipe.num_classes, recipe.device)
    report([f"evaluation: {key}: {message}" for key, result in results.items()
            for message in result.get("warnings", [])])
    emit({"step": state.step, "eval": results})
    metric = config.eval.best_metric
    result = find_metric(results, metric) if metric else None
    if metric and result is None:
        raise ValueError(f"eval.best_metric='{metric}' is not among the evaluated metrics ({', '.join(results)})")
    if result is not None:
        value, higher = float(result["value"]), bool(result.get("higher_is_better", False))
        best = state.best
        if best is None or (value > best["value"] if higher else value < best["value"]):
            state.best = {"metric": metric, "value": value, "step": state.step}
            save_checkpoint(config, state, run_dir, folder=run_dir / "checkpoints" / "best", keep=1)


def write_report(config: Config, run_dir: Path, step: int, last: dict[str, Any], seconds: float,
                 health_warnings: list[str] = ()) -> None:
    lines = [f"# Run {run_dir.name}", "",
             f"- preset: {config.preset}; data: {config.data.name}; model: {config.model.name}; "
             f"loss: {config.loss.name}",
             f"- NDA: {config.nda.transform} (lambda = {config.nda.lam}, mode = {config.nda.mode}); "
             f"PDA: {config.nda.positive}",
             f"- steps: {step} generator steps x {config.optim.num_d_steps} D steps, batch "
             f"{config.data.batch_size}, seed {config.train.seed}, {seconds:.0f} s this session with {torch.get_num_threads()} torch threads",
             "", "## Last logged values", "", "| name | value |", "|---|---|"]
    lines += [f"| {k} | {v:.4g} |" for k, v in last.items() if isinstance(v, float)]
    lines += health_section(health_warnings, "D's loss never sat at its floor, D scored generated images alike in "
                                             "both steps, the samples did not collapse")
    lines += _curves(run_dir)
    sample = run_dir / "samples" / f"{checkpoint.stem(step)}.png"
    if sample.exists():
        which = "EMA generator" if config.train.ema_decay > 0 else "generator"
        lines += ["", f"## Samples ({which}, fixed latents)", "", f"![samples](samples/{sample.name})"]
    write_atomically(run_dir / "report.md", "\n".join(lines) + "\n")


def _curves(run_dir: Path) -> list[str]:
    """Loss and D-output curves of the whole run (every session) as PNGs, with their report lines."""
    records = [r for r in runs.read_metrics(run_dir) if isinstance(r.get("step"), int) and "loss/d" in r]
    if len(records) < 2:
        return []
    steps = [r["step"] for r in records]
    figures = {"curves_losses.png": ("losses", ("loss/d", "loss/g")),
               "curves_d_outputs.png": ("mean D output", ("d_out/real", "d_out/generated", "d_out/negative",
                                                          "d_out/generated_g_step"))}
    lines = ["", "## Curves", ""]
    for name, (label, keys) in figures.items():
        series = {key: ([s for s, r in zip(steps, records) if key in r], [r[key] for r in records if key in r])
                  for key in keys if any(key in r for r in records)}
        viz.save_line_plot(series, run_dir / name, xlabel="generator step", ylabel=label, title=label)
        lines.append(f"![{label}]({name})")
    return lines


# ---------------------------------------------------------------------------------------------
# checkpoints: what they hold is TrainState.state_dict(); `checkpoint` only writes and reads it


def save_checkpoint(config: Config, state: TrainState, run_dir: Path, folder: Path | None = None,
                    keep: int | None = None) -> Path | None:
    check_state_finite(state)  # never save a diverged state: the previous checkpoint stays the newest
    tree = state.state_dict()  # data parallel: a collective (every rank's random streams go to rank 0)
    if not runs.is_main_process():
        return None
    folder = folder or run_dir / "checkpoints"
    record = {"config": config.to_dict(), "negaug_version": negaug.__version__, "torch_version": torch.__version__,
              "time": time.time()}
    try:
        path = checkpoint.save(folder, state.step, tree, record)
    except OSError as err:
        earlier = "the previous checkpoint is intact" if checkpoint.list_steps(folder) else \
            f"no checkpoint was written yet: free the space, delete {run_dir} and start the run again"
        raise CheckpointWriteError(f"could not write the checkpoint of step {state.step} to {folder} ({err}); "
                                   f"{earlier}") from None
    best = getattr(state, "best", None)  # the GAN kind keeps a best checkpoint (eval.best_metric)
    best_step = best["step"] if best else None
    checkpoint.prune(folder, keep or config.train.keep_checkpoints, protect={best_step} if best_step else set())
    return path


# Transforms whose random draws changed when the C kernels were retired (jigsaw, flips and
# other_data draw exactly as before): a format-1 run that uses one resumes with the new draws.
DRAWS_CHANGED_AFTER_FORMAT_1 = ("cutmix", "cutout", "stitch", "mixup", "gaussian_noise", "random_crop", "mixture")
# transforms that redraw negatives changing too few pixels (`min_changed`, on by default since 0.3.0)
MIN_CHANGED_SINCE_0_3 = ("cutmix", "cutout", "stitch", "mixup", "mixture")


def check_state_finite(state: TrainState) -> None:
    """NonFiniteLossError naming the first parameters, buffers or optimizer moments that hold NaN
    or infinity (a huge learning rate can blow up batch-norm statistics with a finite loss)."""
    bad = state.non_finite()
    if bad:
        raise NonFiniteLossError(f"non-finite values at step {state.step} in {', '.join(bad)}; the run diverged "
                                 f"(lower the learning rate); the last checkpoint is the last finite state")


def check_world_size(run_dir: Path) -> None:
    """ValueError (one line) when the newest readable checkpoint record of `run_dir` was written by
    another number of processes than this run has (`state.rank_streams` would refuse each one)."""
    folder = run_dir / "checkpoints"
    for step in reversed(checkpoint.list_steps(folder)):
        try:
            tree = checkpoint.read_record(folder / f"{checkpoint.stem(step)}.json").get("state")
        except ValueError:  # a bad record: load_latest reports it and falls back
            continue
        written = tree.get("distributed", {}).get("world_size", 1) if isinstance(tree, dict) else 1
        if written != distributed.world_size():
            raise WorldSizeError(f"{run_dir}: {world_size_message(written)}")
        return


def restore_latest(run_dir: Path, state, warn):
    """Load into a training state of any kind the newest checkpoint of `run_dir` that fits it (bad
    ones are reported and skipped; another number of processes is refused); returns it."""
    check_world_size(run_dir)
    found = checkpoint.load_latest(run_dir / "checkpoints", warn=warn,
                                   accept=lambda candidate: state.load_state_dict(candidate.state))
    if found is None:
        raise FileNotFoundError(f"{run_dir} has no usable checkpoint to resume from; start a new run instead")
    return found


def restore(config: Config, run_dir: Path, state: TrainState, warn) -> None:
    """The GAN kind's resume: `restore_latest`, then the notes on draws that changed since format 1."""
    found = restore_latest(run_dir, state, warn)
    changed = {config.nda.transform, config.nda.positive} & set(DRAWS_CHANGED_AFTER_FORMAT_1)
    if found.record.get("format_version") == 1 and changed and warn is not None:
        warn(f"{found.path} was written by negaug 0.1.0, whose {', '.join(sorted(changed))} drew other random "
             f"parameters: the resumed run continues with today's draws, not exactly as the run would have")
    redrawn = {config.nda.transform, config.nda.positive} & set(MIN_CHANGED_SINCE_0_3)
    if str(found.record.get("negaug_version", "0.1.0")) in ("0.1.0", "0.2.0") and redrawn and warn is not None:
        warn(f"{found.path} was written by negaug {found.record.get('negaug_version', '0.1.0')}, whose "
             f"{', '.join(sorted(redrawn))} did not redraw negatives that change too few pixels (min_changed): "
             f"the resumed run continues with today's draws wherever such a negative occurs")


kinds.attach("gan", train=train, load=runs.load_run, prepare=prepare_run)
