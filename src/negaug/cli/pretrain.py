"""`negaug pretrain [PRESET | CONFIG.yaml] [section.key=value ...]` and `--resume RUN`: contrastive
pretraining (MoCo-v2) with NDA negatives, behind `negaug.experiment.pretrain.pretrain`."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from negaug.cli.train import (
    _processes,
    _split_source,
    launcher,
    process_group,
    run_until_stopped,
    say,
    threads_note,
    train_kind,
)

HELP = "contrastive pretraining (MoCo-v2) with NDA views as extra negatives (default: small CNN on MNIST-5k)"

EPILOG = """examples:
  negaug pretrain                                   # the mnist preset: small CNN, CPU, about a minute
  negaug pretrain mnist nda.transform=jigsaw        # the same with jigsaw negatives (Appendix N)
  negaug pretrain cifar10 nda.transform=jigsaw data.root=~/data   # the paper's CIFAR-10 settings (GPU)
  negaug pretrain my.yaml train.steps=2000 train.name=mine
  negaug pretrain --resume runs/mine train.steps=4000
  negaug probe runs/mine                            # linear probe + k-NN -> runs/mine/probe.json
  negaug pretrain dpc-moving-mnist nda.transform=jigsaw   # Dense Predictive Coding on clips, NDA clips (Table 7)
  negaug probe runs/dpc-moving-mnist-<time>               # its motion / digit probes -> probe.json
  torchrun --nproc_per_node 2 -m negaug pretrain mnist    # data parallel (MoCo-v2 and DPC)
presets: {presets}; Dense Predictive Coding (video): {dpc_presets}"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from negaug.presets import preset_names

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG.format(presets=", ".join(preset_names("negaug.presets.pretrain")),
                                  dpc_presets=", ".join(preset_names("negaug.presets.dpc")))
    parser.add_argument("source", nargs="?", default=None,
                        help="a pretraining preset or a YAML config file (default: the 'mnist' preset)")
    parser.add_argument("overrides", nargs="*", help="section.key=value overrides, e.g. nda.transform=jigsaw")
    parser.add_argument("--resume", metavar="RUN", help="continue the run in folder RUN from its latest checkpoint")
    parser.add_argument("--dry-run", action="store_true", help="print the resolved configuration and exit")


def _announce(config):
    def on_start(run_dir, device, step) -> None:
        start = f" (to step {config.train.steps}, from step {step})" if step else ""
        say(f"negaug: pretraining {config.train.steps - step} steps{start} in {run_dir} on {device}"
            f"{threads_note(config, device)}{_processes()}")

    return on_start


def _warn(message: str) -> None:
    say(f"negaug: warning: {message}", file=sys.stderr)


def run(args) -> int:
    from negaug.experiment import kinds, resume_config
    from negaug.experiment.pretrain import (
        check_pretrain_run,
        prepare_pretraining,
        pretrain,
    )
    from negaug.experiment.pretrain_config import PretrainConfig, load_pretrain_config

    source, overrides = _split_source(args)
    if kinds.of_pretrain_target(source, args.resume or None).name == "dpc":
        return _run_dpc(args, source, overrides)
    if args.resume:
        if source is not None:
            raise ValueError("--resume takes the run's own config; give only overrides such as train.steps=N")
        if (Path(args.resume) / "checkpoints").is_dir():
            check_pretrain_run(args.resume)  # a GAN run: say so, not "no usable checkpoint"
        config = resume_config(args.resume, overrides, warn=_warn, cls=PretrainConfig)
    else:
        config = load_pretrain_config(source, overrides)
    with process_group(config.train.device):
        if args.dry_run:
            prepare_pretraining(config)  # the same checks as a real run
            say(config.to_yaml(), end="")
            return 0
        result, code = run_until_stopped(
            lambda stop: pretrain(config, run_dir=args.resume, resume=bool(args.resume), stop_requested=stop,
                                  on_start=_announce(config), warn=_warn), "negaug pretrain")
    if code is not None:
        return code
    knn = f", k-NN accuracy {100 * result.knn['value']:.2f}%" if result.knn else ""
    say(f"run folder: {result.run_dir} ({result.step} steps, {result.seconds:.0f} s{knn})")
    say(f"next: negaug probe {result.run_dir}   # linear probe, k-NN, NDA distances -> {result.run_dir}/probe.json\n"
          f"      {launcher('negaug pretrain')} --resume {result.run_dir} train.steps={2 * result.step}   # train longer")
    return 0


def _run_dpc(args, source: str | None, overrides: list[str]) -> int:
    """`negaug pretrain` of a Dense Predictive Coding preset, config or run (torchrun: data parallel)."""
    from negaug.experiment import kinds

    result, code = train_kind(args, kinds.get("dpc"), source, overrides, "negaug pretrain", "DPC")
    if code is not None:
        return code
    say(f"run folder: {result.run_dir} ({result.step} steps, {result.seconds:.0f} s, last loss "
        f"{result.last_log.get('loss', float('nan')):.3f})")
    say(f"next: negaug probe {result.run_dir}   # motion / digit probes, held-out DPC -> {result.run_dir}/probe.json\n"
        f"      {launcher('negaug pretrain')} --resume {result.run_dir} train.steps={2 * result.step}   # train longer")
    return 0
