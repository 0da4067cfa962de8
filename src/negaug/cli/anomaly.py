"""`negaug anomaly RUN`: the discriminator of a trained run as an anomaly detector
(`negaug.experiment.detect_anomalies`: RUN/anomaly.json and RUN/anomaly_histograms.png),
printed as a table."""
from __future__ import annotations

import argparse
import sys

from tqdm import tqdm

from negaug.cli import add_threads_flag

HELP = "anomaly detection with a run's discriminator: AUROC / AUPR / FPR@95TPR on OOD sets"
DEFAULT_OOD = "corruption/all,noise/all"  # as negaug.experiment.anomaly.DEFAULT_OOD (no torch import here)


EPILOG = """examples:
  negaug anomaly runs/default-20261129-225119                        # corruptions + noise, severity 5
  negaug anomaly runs/lam05 --ood corruption/fog,nda/jigsaw,dataset/svhn --data-root ~/data --download
  negaug anomaly runs/lam05 --severity 3 --num-images 2000 --output scratch/anomaly_s3.json
Appends one entry to RUN/anomaly.json (or --output) and writes <output>_histograms.png next to it."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("run", help="run folder written by `negaug train` (runs/<name>)")
    parser.add_argument("--ood", default=DEFAULT_OOD,
                        help="comma-separated OOD sets: corruption/<name>|all, nda/<name>|all, "
                             f"noise/uniform|gaussian|all, dataset/<name>|all (default: {DEFAULT_OOD})")
    parser.add_argument("--severity", type=int, default=5, help="corruption severity 1-5 (default: 5, as the paper)")
    parser.add_argument("--num-images", type=int, default=10000,
                        help="images per set: the last N of the reference split and of each dataset (default: 10000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random draw (default: 0)")
    parser.add_argument("--checkpoint", default="latest", help="latest, best or a checkpoint path (default: latest)")
    parser.add_argument("--split", default="test", help="split of the training dataset used as in-distribution (default: test)")
    parser.add_argument("--data-root", default=None, help="where the run's dataset and dataset/* OOD sets live (default: the run's data.root)")
    parser.add_argument("--download", action="store_true", help="download the run's dataset and dataset/* OOD sets if missing (never by default)")
    parser.add_argument("--batch-size", type=int, default=256, help="discriminator batch size (default: 256)")
    parser.add_argument("--device", default="auto", help="device for the discriminator: auto, cpu, cuda, cuda:N (default: auto)")
    add_threads_flag(parser)
    parser.add_argument("--output", default=None, help="results file (default: RUN/anomaly.json)")


def run(args: argparse.Namespace) -> int:
    from negaug.cli.train import process_group

    with process_group(args.device, "--device") as args.device:  # torchrun: each process scores its share of every set
        return _detect(args)


def _detect(args: argparse.Namespace) -> int:
    from negaug import anomaly, distributed
    from negaug.experiment.anomaly import detect_anomalies

    main = distributed.rank() == 0

    bars: list[tqdm] = []  # made once the sets are known, so an early error prints only itself

    def advance(name: str) -> None:
        bars[0].set_postfix_str(name)
        bars[0].update(1)

    try:
        report = detect_anomalies(
            args.run, ood=args.ood, severity=args.severity, num_images=args.num_images, seed=args.seed,
            checkpoint=args.checkpoint, split=args.split, data_root=args.data_root, download=args.download,
            batch_size=args.batch_size, device=args.device, output=args.output,
            on_plan=lambda total: bars.append(tqdm(total=total, desc="anomaly", unit="set", file=sys.stderr,
                                                   disable=not main)),
            on_progress=advance, warn=lambda message: print(f"negaug: warning: {message}", file=sys.stderr))
    finally:
        for bar in bars:
            bar.close()
    if not main:
        return 0
    print(anomaly.format_results(report.results))
    for name, why in report.results["skipped"].items():
        print(f"skipped {name}: {why}")
    print(f"wrote {report.output}" + (f" and {report.histograms}" if report.histograms else ""))
    return 0
