"""`negaug probe RUN`: how good a pretrained run's frozen representation is, by the run's kind
(`negaug.experiment.kinds.prober_of_run`): a MoCo-v2 run gets a linear probe and k-NN accuracy of
its encoder and the cosine distances between data and NDA representations
(`negaug.experiment.probe.probe_run`, histograms in RUN/probe/); a DPC run gets linear probes of
its clip features (motion, digit or action labels) and held-out DPC top-1
(`negaug.experiment.dpc_probe.probe_dpc_run`). Appended to RUN/probe.json, printed as a table."""
from __future__ import annotations

import argparse
import sys

from negaug.cli import add_threads_flag

HELP = "linear probes of a `negaug pretrain` run (MoCo-v2: + k-NN, data-vs-NDA distances; DPC) -> RUN/probe.json"

EPILOG = """examples:
  negaug probe runs/mnist-20261130-101500            # the run's eval.probe_epochs (100) on its latest checkpoint
  negaug probe runs/mine --epochs 20 --device cpu
  negaug probe runs/c10 --data-root ~/data --checkpoint runs/c10/checkpoints/step_0097500.json
  negaug probe runs/dpc-moving-mnist-20261207-101500   # a DPC run: motion and digit probes, held-out DPC
Appends one entry to RUN/probe.json (MoCo-v2: and the distance histograms to RUN/probe/)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("run", help="run folder written by `negaug pretrain` (runs/<name>)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="linear-probe epochs on the frozen features (default: MoCo-v2: the run's "
                             "eval.probe_epochs; DPC: 100)")
    parser.add_argument("--split", default="test", choices=["val", "test"],
                        help="held-out images the probe is scored on: test for final numbers, val for anything "
                             "that selects (default: test; DPC runs: val only on moving_mnist, the clip dataset with a "
                             "val split)")
    parser.add_argument("--checkpoint", default="latest",
                        help="latest, best (runs that kept one: MoCo-v2 train.knn_every, DPC eval.every) or a "
                             "checkpoint path (default: latest)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default: auto: cuda when available)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the probe's batch order and NDA draws (default: 0)")
    parser.add_argument("--batch-size", type=int, default=256,
                        help="feature batch size (MoCo-v2: also the probe's; default: 256)")
    parser.add_argument("--data-root", default=None, help="where the run's dataset lives (default: the run's data.root)")
    parser.add_argument("--download", action="store_true", help="download the run's dataset if it is missing")
    add_threads_flag(parser)


def run(args: argparse.Namespace) -> int:
    from negaug import distributed
    from negaug.experiment import kinds

    if distributed.launched_by_torchrun():  # every process would probe and append its own entry
        raise ValueError("negaug probe runs in one process (a probe takes seconds to minutes); run it without torchrun")
    kind = kinds.prober_of_run(args.run)
    entry = kind.probe(args.run, epochs=args.epochs, checkpoint=args.checkpoint, device=args.device, seed=args.seed,
                       batch_size=args.batch_size, data_root=args.data_root, download=args.download, split=args.split,
                       warn=lambda message: print(f"negaug: warning: {message}", file=sys.stderr),
                       on_progress=lambda message: print(f"[probe] {message}", file=sys.stderr, flush=True))
    print(kind.format_probe(entry))
    print(f"appended to {args.run}/probe.json")
    return 0
