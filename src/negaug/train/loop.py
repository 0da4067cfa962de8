"""The NDA-GAN training loop: one plain function, read top to bottom.

    result = negaug.train.train(negaug.config.load_config("default"))

Per generator step: `num_d_steps` discriminator steps on fresh real batches (each against
lam * G + (1 - lam) * NDA), one generator step, the EMA update, then logging, samples,
evaluation and checkpoints on their schedules. Every random draw comes from a seeded stream
stored in the checkpoints, so `resume=True` continues bit-identically on the CPU.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

import negaug
from negaug.config import Config, config_from_dict
from negaug.train import checkpoint as ckpt
from negaug.train import runs
from negaug.train.setup import Components, build
from negaug.train.stats import Stats
from negaug.train.steps import StepContext, discriminator_step, generator_step
from negaug.train.stream import BatchStream


class CheckpointWriteError(RuntimeError):
    """A checkpoint could not be written (e.g. a full disk); earlier checkpoints are intact."""


@dataclass
class TrainResult:
    run_dir: Path
    step: int  # generator steps done
    interrupted: bool = False  # stopped early on request (SIGINT/SIGTERM); a checkpoint was saved
    seconds: float = 0.0
    last_log: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


@dataclass
class _State:
    """Everything besides the components that a checkpoint must restore."""

    step: int
    stream: BatchStream
    ctx: StepContext
    best: dict[str, Any] | None = None  # {"metric", "value", "step"}
    fixed_latent: tuple[torch.Tensor, torch.Tensor | None] | None = None


def train(config: Config, run_dir: str | Path | None = None, resume: bool = False,
          stop_requested: Callable[[], bool] = lambda: False, warn: Callable[[str], None] | None = None,
          on_log: Callable[[dict[str, Any]], None] | None = None) -> TrainResult:
    """Train (or, with resume=True, continue) the run in `run_dir`; returns where it ended."""
    warnings: list[str] = []

    def _warn(message: str) -> None:
        warnings.append(message)
        if warn is not None:
            warn(message)

    if run_dir is not None and not resume:
        config.train.name, config.train.runs_dir = Path(run_dir).name, str(Path(run_dir).parent)
    c = build(config)  # every config check happens here, before a run folder exists
    run_dir = Path(run_dir) if resume else runs.create_run_dir(config)
    state = _initial_state(config, c)
    if resume:
        _restore(run_dir, c, state, _warn)
    runs.write_config(run_dir, config)
    result = _run(config, c, state, run_dir, stop_requested, on_log)
    result.warnings = warnings
    return result


def _initial_state(config: Config, c: Components) -> _State:
    seed = config.train.seed
    ctx = StepContext(
        latent_gen=torch.Generator().manual_seed(seed + 1),
        nda_gen=torch.Generator().manual_seed(seed + 2),
        lam=config.nda.lam, mode=config.nda.mode, positive_prob=config.nda.positive_prob,
        precision=config.train.precision,
        scaler=torch.amp.GradScaler("cuda") if config.train.precision == "fp16" else None,
    )
    stream = BatchStream(c.dataset, config.data.batch_size, seed, c.device, config.data.num_workers)
    fixed_gen = torch.Generator().manual_seed(seed + 3)
    n = config.train.num_sample_images
    fixed_z = c.generator.sample_latent(n, generator=fixed_gen, device=c.device)
    fixed_labels = torch.arange(n, device=c.device) % c.num_classes if c.num_classes else None
    return _State(step=0, stream=stream, ctx=ctx, fixed_latent=(fixed_z, fixed_labels))


def _run(config: Config, c: Components, state: _State, run_dir: Path,
         stop_requested: Callable[[], bool], on_log) -> TrainResult:
    tcfg = config.train
    stats = Stats()
    log = runs.MetricsLog(run_dir / "metrics.jsonl", resume_step=state.step) if runs.is_main_process() else None
    board = _tensorboard(run_dir) if tcfg.tensorboard and log is not None else None
    bar = _progress(tcfg, state.step)
    start, window_start, window_step = time.perf_counter(), time.perf_counter(), state.step
    last: dict[str, Any] = {}
    interrupted = False
    try:
        while state.step < tcfg.steps:
            step = state.step + 1
            c.generator.train()
            c.discriminator.train()
            for _ in range(config.optim.num_d_steps):
                real, labels = state.stream.next()
                discriminator_step(c, state.ctx, real, labels, step, stats)
            generator_step(c, state.ctx, config.data.batch_size, step, stats)
            if c.ema is not None:
                c.ema.update(c.generator, step)
            state.step = step
            bar.update(1)
            if step % tcfg.log_every == 0 or step == tcfg.steps:
                now = time.perf_counter()
                last = {"step": step, **stats.collect(),
                        "it_per_s": (step - window_step) / max(now - window_start, 1e-9),
                        "elapsed_s": now - start}
                window_start, window_step = now, step
                _emit(last, log, board, bar, on_log)
            if config.eval.every and step % config.eval.every == 0:
                _evaluate(config, c, state, run_dir, log, board)
            if tcfg.sample_every and step % tcfg.sample_every == 0:
                save_samples(c, state, run_dir)
            if tcfg.checkpoint_every and step % tcfg.checkpoint_every == 0:
                save_checkpoint(config, c, state, run_dir)
            if stop_requested():
                interrupted = True
                break
        if not (tcfg.checkpoint_every and state.step % tcfg.checkpoint_every == 0):
            save_checkpoint(config, c, state, run_dir)  # the final (or interrupted) state
        if not interrupted and not (tcfg.sample_every and state.step % tcfg.sample_every == 0):
            save_samples(c, state, run_dir)
    finally:
        bar.close()
        if log is not None:
            log.close()
        if board is not None:
            board.close()
    seconds = time.perf_counter() - start
    if not interrupted and runs.is_main_process():
        write_report(config, run_dir, state, last, seconds)
    return TrainResult(run_dir, state.step, interrupted, seconds, last)


def _emit(record, log, board, bar, on_log) -> None:
    if log is not None:
        log.write(record)
    if board is not None:
        for key, value in record.items():
            if key != "step" and isinstance(value, (int, float)):
                board.add_scalar(key, value, record["step"])
    bar.set_postfix({k.split("/")[-1]: f"{record[k]:.3f}" for k in ("loss/d", "loss/g") if k in record})
    if on_log is not None:
        on_log(record)


def _progress(tcfg, initial: int):
    from tqdm.auto import tqdm

    return tqdm(total=tcfg.steps, initial=initial, disable=not tcfg.progress, unit="step",
                dynamic_ncols=True, desc="train")


def _tensorboard(run_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ValueError("train.tensorboard=true needs the tensorboard package: pip install tensorboard") from None
    return SummaryWriter(str(run_dir / "tensorboard"))


# ---------------------------------------------------------------------------------------------
# samples, evaluation, report


def _sampler(c: Components) -> torch.nn.Module:
    """The network to sample from: the EMA with standing batch-norm statistics, else G."""
    if c.ema is None:
        return c.generator
    return c.ema.refresh_batch_norm_stats(num_classes=c.num_classes)


@torch.no_grad()
def save_samples(c: Components, state: _State, run_dir: Path) -> Path | None:
    """A grid (images) or a scatter plot (2-D data) of the fixed latent batch, from the EMA."""
    if not runs.is_main_process():
        return None
    from negaug import viz

    sampler = _sampler(c)
    was_training = sampler.training
    sampler.eval()
    z, labels = state.fixed_latent
    samples = sampler(z, labels).float().cpu()
    sampler.train(was_training)
    path = run_dir / "samples" / f"{ckpt.stem(state.step)}.png"
    if samples.dim() == 4:
        viz.save_grid(samples, path, nrow=int(max(1, round(samples.shape[0] ** 0.5))))
    else:
        viz.save_scatter({"generated": samples}, path)
    return path


def _evaluate(config: Config, c: Components, state: _State, run_dir: Path, log, board) -> None:
    """Evaluate the EMA generator; keep the best checkpoint by eval.best_metric."""
    from negaug.metrics import evaluate_run_generator, find_result

    sampler = _sampler(c)
    was_training = sampler.training
    sampler.eval()
    results = evaluate_run_generator(config, sampler, c.dataset, num_classes=c.num_classes, device=c.device)
    sampler.train(was_training)
    if log is not None:
        log.write({"step": state.step, "eval": results})
    if board is not None:
        for key, result in results.items():
            if isinstance(result.get("value"), (int, float)):
                board.add_scalar(f"eval/{key}", result["value"], state.step)
    metric = config.eval.best_metric
    result = find_result(results, metric) if metric else None
    if metric and result is None:
        raise ValueError(f"eval.best_metric='{metric}' is not among the evaluated metrics ({', '.join(results)})")
    if result is not None:
        value, higher = float(result["value"]), bool(result.get("higher_is_better", False))
        best = state.best
        if best is None or (value > best["value"] if higher else value < best["value"]):
            state.best = {"metric": metric, "value": value, "step": state.step}
            save_checkpoint(config, c, state, run_dir, folder=run_dir / "checkpoints" / "best", keep=1)


def write_report(config: Config, run_dir: Path, state: _State, last: dict[str, Any], seconds: float) -> None:
    lines = [f"# Run {run_dir.name}", "",
             f"- preset: {config.preset}; data: {config.data.name}; model: {config.model.name}; "
             f"loss: {config.loss.name}",
             f"- NDA: {config.nda.transform} (lambda = {config.nda.lam}, mode = {config.nda.mode}); "
             f"PDA: {config.nda.positive}",
             f"- steps: {state.step} generator steps x {config.optim.num_d_steps} D steps, batch "
             f"{config.data.batch_size}, seed {config.train.seed}, {seconds:.0f} s this session",
             "", "## Last logged values", "", "| name | value |", "|---|---|"]
    lines += [f"| {k} | {v:.4g} |" for k, v in last.items() if isinstance(v, float)]
    sample = run_dir / "samples" / f"{ckpt.stem(state.step)}.png"
    if sample.exists():
        lines += ["", "## Samples (EMA generator, fixed latents)", "", f"![samples](samples/{sample.name})"]
    (run_dir / "report.md").write_text("\n".join(lines) + "\n")


# ---------------------------------------------------------------------------------------------
# checkpoints


def save_checkpoint(config: Config, c: Components, state: _State, run_dir: Path,
                    folder: Path | None = None, keep: int | None = None) -> Path | None:
    if not runs.is_main_process():
        return None
    folder = folder or run_dir / "checkpoints"
    tensors = {**ckpt.prefixed("G", c.generator.state_dict()), **ckpt.prefixed("D", c.discriminator.state_dict())}
    meta: dict[str, Any] = {}
    if c.ema is not None:
        ema_tensors, meta["ema_extra"] = runs.flatten_state(c.ema.state_dict())
        tensors.update(ckpt.prefixed("EMA", ema_tensors))
    for name, optimizer in (("opt_g", c.opt_g), ("opt_d", c.opt_d)):
        opt_tensors, meta[name] = ckpt.optimizer_to_flat(name, optimizer)
        tensors.update(opt_tensors)
    tensors["rng.latent"] = state.ctx.latent_gen.get_state()
    tensors["rng.nda"] = state.ctx.nda_gen.get_state()
    tensors["rng.torch"] = torch.get_rng_state()
    if state.ctx.scaler is not None:
        meta["scaler"] = {k: (v.item() if isinstance(v, torch.Tensor) else v) for k, v in state.ctx.scaler.state_dict().items()}
    meta.update(config=config.to_dict(), stream=state.stream.state_dict(), best=state.best,
                negaug_version=negaug.__version__, torch_version=torch.__version__, time=time.time())
    try:
        path = ckpt.save(folder, state.step, tensors, meta)
    except OSError as err:
        raise CheckpointWriteError(f"could not write the checkpoint of step {state.step} to {folder} ({err}); "
                                   f"the previous checkpoint is intact") from None
    best_step = state.best["step"] if state.best else None
    ckpt.prune(folder, keep or config.train.keep_checkpoints, protect={best_step} if best_step else set())
    return path


def _restore(run_dir: Path, c: Components, state: _State, warn) -> None:
    found = ckpt.load_latest(run_dir / "checkpoints", warn=warn)
    if found is None:
        raise FileNotFoundError(f"{run_dir} has no usable checkpoint to resume from; start a new run instead")
    t = found.tensors
    c.generator.load_state_dict(ckpt.unprefixed("G", t))
    c.discriminator.load_state_dict(ckpt.unprefixed("D", t))
    if c.ema is not None:
        extra = dict(found.meta.get("ema_extra", {}))
        c.ema.load_state_dict(runs._unflatten({**extra, **ckpt.unprefixed("EMA", t)}))
    c.opt_g.load_state_dict(ckpt.optimizer_from_flat("opt_g", t, found.meta["opt_g"]))
    c.opt_d.load_state_dict(ckpt.optimizer_from_flat("opt_d", t, found.meta["opt_d"]))
    state.ctx.latent_gen.set_state(t["rng.latent"])
    state.ctx.nda_gen.set_state(t["rng.nda"])
    torch.set_rng_state(t["rng.torch"])
    if state.ctx.scaler is not None and "scaler" in found.meta:
        state.ctx.scaler.load_state_dict(found.meta["scaler"])
    state.stream.load_state_dict(found.meta["stream"])
    state.step, state.best = found.step, found.meta.get("best")


def resume_config(run_dir: str | Path, overrides: list[str] = ()) -> Config:
    """The config of an existing run, with the overrides a resumed run may change."""
    from negaug.config import merge, parse_override

    allowed_sections = ("train.steps", "train.progress", "train.log_every", "train.sample_every",
                        "train.checkpoint_every", "train.keep_checkpoints", "train.tensorboard",
                        "train.device", "eval.")
    base = runs.read_config(Path(run_dir))
    raw = base.to_dict()
    for text in overrides:
        key = text.split("=", 1)[0].strip()
        if not key.startswith(allowed_sections):
            raise ValueError(f"{key} cannot change when resuming (it would not continue the same run); "
                             f"start a new run, or change only train.steps, train.*_every, eval.*")
        raw = merge(raw, parse_override(text))
    return config_from_dict(raw)
