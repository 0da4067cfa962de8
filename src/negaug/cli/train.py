"""`negaug train [PRESET | CONFIG.yaml] [section.key=value ...]` and `--resume RUN`."""
from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys

HELP = "train a GAN with negative data augmentation (default: DCGAN on MNIST-5k, Jigsaw NDA)"

EPILOG = """examples:
  negaug train                                  # the default preset (CPU; about 100 s on 2 idle cores)
  negaug train default nda.transform=none       # the same without NDA (baseline)
  negaug train cifar10 data.root=~/data train.device=cuda
  negaug train my.yaml nda.lam=0.5 train.steps=5000 train.name=lam05
  negaug train --resume runs/lam05 train.steps=8000
  negaug train pix2pix-scenes nda.transform=jigsaw   # Pix2Pix photo -> labels with Jigsaw NDA (Table 4)
presets: {presets}"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from negaug.presets import preset_names

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG.format(presets=", ".join(preset_names() + preset_names("negaug.presets.translate")))
    parser.add_argument("source", nargs="?", default=None,
                        help="a preset name or a YAML config file (default: the 'default' preset)")
    parser.add_argument("overrides", nargs="*", help="section.key=value overrides, e.g. nda.lam=0.5")
    parser.add_argument("--resume", metavar="RUN", help="continue the run in folder RUN from its latest checkpoint")
    parser.add_argument("--dry-run", action="store_true", help="print the resolved configuration and exit")


def is_rank_zero() -> bool:
    """Whether this process speaks for the run: always, except on the ranks > 0 of torchrun."""
    return os.environ.get("RANK", "0") == "0"


def say(text: str, file=None, end: str = "\n") -> None:
    """Print on rank 0 only (torchrun runs one copy of the command per process)."""
    if is_rank_zero():
        print(text, file=file or sys.stdout, end=end, flush=True)


@contextlib.contextmanager
def process_group(device: str, key: str = "train.device"):
    """Under torchrun (WORLD_SIZE > 1): the process group of the command (NCCL on GPUs, each
    process on cuda:LOCAL_RANK; gloo on CPUs) for the block, destroyed after it; yields this
    process's device (`negaug.experiment.evaluate.join_torchrun`). Nothing otherwise (yields
    `device`). A user error inside the block is said once, by rank 0, before any rank exits."""
    from negaug import distributed

    if not distributed.launched_by_torchrun():
        yield device
        return
    import torch

    from negaug.experiment.evaluate import join_torchrun

    try:
        yield join_torchrun(device, key)
    except (ValueError, OSError) as err:  # a user error, raised on every rank by the same check
        from negaug.cli import report_error

        if not os.environ.get("NEGAUG_DEBUG"):
            report_error(err)  # rank 0 says it before any rank exits: torchrun stops the rest at the first exit
        _wait_for_every_rank()
        raise
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _wait_for_every_rank(seconds: float = 30.0) -> None:
    """A barrier that gives up after `seconds` (gloo; a rank elsewhere in the run must not hang this
    one). NCCL has no such barrier: nothing is waited for there."""
    import datetime

    import torch.distributed as dist

    if dist.is_initialized() and dist.get_backend() == "gloo":
        try:
            dist.monitored_barrier(timeout=datetime.timedelta(seconds=seconds))
        except RuntimeError:
            pass


def launcher(command: str) -> str:
    """How to run `command` ("negaug train") again with this process count: as it is in one
    process, under torchrun `torchrun --nproc_per_node N [--nnodes M] -m negaug train` (a
    data-parallel run resumes with the same number of processes)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return command
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    nodes = f" --nnodes {world // per_node}" if per_node and world != per_node else ""
    return f"torchrun --nproc_per_node {per_node}{nodes} -m {command}"


def run_until_stopped(session, command: str):
    """Run `session(stop_requested)` (a training function) with SIGINT/SIGTERM asking it to save a
    checkpoint and stop. Returns (result, None) when it finished, (result or None, exit code) when
    it failed mid-run (1) or was stopped (128 + signal: 130 for Ctrl-C, 143 for SIGTERM)."""
    from negaug.experiment import NonFiniteLossError, RunWriteError

    flag = _StopFlag()
    previous = {sig: signal.signal(sig, flag) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        result = session(lambda: flag.requested)
    except (NonFiniteLossError, RunWriteError) as err:  # mid-run: exit 1
        say(f"negaug: error: {err}", file=sys.stderr)
        return None, 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if result.interrupted:
        say(f"negaug: stopped at step {result.step}; checkpoint saved. Continue with: "
            f"{launcher(command)} --resume {result.run_dir}", file=sys.stderr)
        _wait_for_every_rank()  # every rank stopped at this step: no rank exits before rank 0 has said so
        return result, 128 + (flag.signal or signal.SIGINT)
    return result, None


def _split_source(args) -> tuple[str | None, list[str]]:
    """The first positional may be an override when no preset is given."""
    source, overrides = args.source, list(args.overrides)
    if source is not None and "=" in source:
        source, overrides = None, [source, *overrides]
    return source, overrides


class _StopFlag:
    """SIGINT/SIGTERM ask the loop to save a checkpoint and stop at the end of the step."""

    def __init__(self):
        self.requested = False
        self.signal = 0

    def __call__(self, signum, frame):
        if self.requested:  # a second Ctrl-C: stop at once
            raise KeyboardInterrupt
        self.requested, self.signal = True, signum
        say(f"\nnegaug: {signal.Signals(signum).name} received; saving a checkpoint and stopping", file=sys.stderr)


def threads_note(config, device) -> str:
    """', 2 torch threads (torch's default; train.threads=1 on a shared machine)' on a CPU: called
    inside the run, so it is the count the run uses."""
    if getattr(device, "type", str(device)) != "cpu":
        return ""
    import torch

    hint = " (torch's default; train.threads=1 on a shared machine)" if config.train.threads is None else ""
    return f", {torch.get_num_threads()} torch threads{hint}"


def _announce(config):
    def on_start(run_dir, device, step) -> None:
        start = f" (to step {config.train.steps}, from step {step})" if step else ""
        say(f"negaug: training {config.train.steps - step} steps{start} in {run_dir} on {device}"
            f"{threads_note(config, device)}{_processes()}")

    return on_start


def run(args) -> int:
    from negaug.experiment import (
        kinds,
        load_config,
        prepare_run,
        resume_config,
        train,
    )

    source, overrides = _split_source(args)
    if kinds.of_train_target(source, args.resume or None).name == "pix2pix":
        return _run_translation(args, source, overrides)
    if args.resume:
        if source is not None:
            raise ValueError("--resume takes the run's own config; give only overrides such as train.steps=N")
        config = resume_config(args.resume, overrides,
                               warn=_warn_line)
    else:
        config = load_config(source, overrides)
    with process_group(config.train.device):
        if args.dry_run:
            prepare_run(config)  # the same checks as a real run, so a dry run catches every bad value
            say(config.to_yaml(), end="")
            return 0
        result, code = run_until_stopped(
            lambda stop: train(config, run_dir=args.resume, resume=bool(args.resume), stop_requested=stop,
                               on_start=_announce(config), warn=_warn_line), "negaug train")
    if code is not None:
        return code
    say(f"run folder: {result.run_dir} ({result.step} steps, {result.seconds:.0f} s)")
    say(f"next: negaug eval {result.run_dir}   # sample quality -> {result.run_dir}/eval.json\n"
          f"      negaug anomaly {result.run_dir}   # the discriminator as an anomaly detector\n"
          f"      {launcher('negaug train')} --resume {result.run_dir} train.steps={2 * result.step}   # train longer")
    return 0


def _warn_line(message: str) -> None:
    say(f"negaug: warning: {message}", file=sys.stderr)


def _processes() -> str:
    """' (N processes)' in a data-parallel run, '' otherwise."""
    from negaug import distributed

    return f" ({distributed.world_size()} processes, {distributed.world_size()} x data.batch_size per step)" \
        if distributed.is_distributed() else ""


def train_kind(args, kind, source: str | None, overrides: list[str], command: str, what: str):
    """`negaug train` / `negaug pretrain` of a kind trained through the kinds registry (Pix2Pix,
    DPC): its config (or, with --resume, the run's own), --dry-run, the start line and Ctrl-C;
    under torchrun inside the command's process group (both kinds train data-parallel), rank 0
    speaking for every rank. Returns (result, None) or (None, exit code)."""
    from negaug.experiment import resume_config

    if args.resume:
        if source is not None:
            raise ValueError("--resume takes the run's own config; give only overrides such as train.steps=N")
        config = resume_config(args.resume, overrides, warn=_warn_line, cls=kind.config_class)
    else:
        config = kind.load_config(source, overrides)

    def on_start(run_dir, device, step) -> None:
        start = f" (to step {config.train.steps}, from step {step})" if step else ""
        say(f"negaug: training {what} {config.train.steps - step} steps{start} in {run_dir} on {device}"
            f"{threads_note(config, device)}{_processes()}")

    with process_group(config.train.device):
        if args.dry_run:
            kind.prepare(config)  # the same checks as a real run
            say(config.to_yaml(), end="")
            return None, 0
        return run_until_stopped(
            lambda stop: kind.train(config, run_dir=args.resume, resume=bool(args.resume), stop_requested=stop,
                                    on_start=on_start, warn=_warn_line), command)


def _run_translation(args, source: str | None, overrides: list[str]) -> int:
    """`negaug train` of a Pix2Pix preset, file or run (`negaug.experiment.translate`; torchrun: data parallel)."""
    from negaug.experiment import kinds

    result, code = train_kind(args, kinds.get("pix2pix"), source, overrides, "negaug train", "pix2pix")
    if code is not None:
        return code
    scores = result.scores or {}
    summary = ", ".join(f"{key} {scores[key]:.3f}" for key in ("pixel_accuracy", "class_accuracy", "mean_iou")
                        if key in scores)
    say(f"run folder: {result.run_dir} ({result.step} steps, {result.seconds:.0f} s; test {summary})")
    say(f"next: negaug eval {result.run_dir}   # segmentation scores -> {result.run_dir}/eval.json (one process)\n"
        f"      {launcher('negaug train')} --resume {result.run_dir} train.steps={2 * result.step}   # train longer")
    return 0
