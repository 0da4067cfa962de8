"""`negaug repro NAME [--quick] [--seeds N] --out DIR`: reproduce one of the paper's claims."""
from __future__ import annotations

import argparse
import sys

from negaug.cli import add_threads_flag

# Spelled out so that building the parser does not import torch; a test checks them against negaug.repro.names().
EXPERIMENT_NAMES = ("anomaly", "appendix_o", "contrastive", "lambda", "less_data", "lessons", "numerosity", "pda", "pix2pix",
                    "quality", "theorem1", "toolkit", "toy", "transforms", "video")
HELP = ("reproduce a claim of the paper on the CPU (numerosity, toy, anomaly, quality, contrastive, video, pix2pix, "
        "lessons, toolkit; under the pre-registered protocol: lambda, pda, transforms, appendix_o, less_data, theorem1)")

EPILOG = """examples:
  negaug repro toy --quick --out scratch/toy            # smoke version, minutes, in a scratch folder
  negaug repro numerosity --out results/numerosity      # full version, 3 seeds
  negaug repro anomaly --out results/anomaly --runs-dir results/runs
  negaug repro quality --out results/quality --runs-dir results/runs   # reuses anomaly's runs
  negaug repro contrastive --quick --out scratch/contrastive   # MoCo-v2 with/without NDA, probes
  negaug repro video --quick --out scratch/video   # DPC with / without jigsaw clips, synthetic clips
  negaug repro pix2pix --quick --out scratch/pix2pix   # Table 4: {cGAN, L1+cGAN} x {no NDA, jigsaw} on scenes
  negaug repro lessons --quick --out scratch/lessons   # the seed documents' lessons: gradients, JS/KL/W1, mode collapse
  negaug repro toolkit --quick --out scratch/toolkit   # FM, minibatch, MMD, MIX+GAN, RpGAN vs plain GAN, +/- NDA
  negaug repro lambda --seeds 5 --out results/lambda --runs-dir RUNS   # Table 8 under the protocol (docs/reproduction.md)
  negaug repro theorem1 --out scratch/theorem1   # Theorem 1 numerically, every f-GAN loss, seconds
Trained runs are cached in --runs-dir (default OUT/runs) by config hash; a rerun reuses them."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("name", choices=EXPERIMENT_NAMES, help="the experiment")
    parser.add_argument("--out", required=True, help="folder for results.json, report.md and the plots")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_const", const="quick", dest="size",
                      help="the smoke version (1 seed, small sizes: shows that the pipeline runs, no verdicts)")
    size.add_argument("--tiny", action="store_const", const="tiny", dest="size", help=argparse.SUPPRESS)
    parser.set_defaults(size="full")
    parser.add_argument("--seeds", type=int, default=None,
                        help="number of seeds (0..N-1); default 3 for the full version, 1 for --quick")
    parser.add_argument("--seed-list", default=None, metavar="S1,S2,...",
                        help="explicit seeds instead of --seeds (e.g. to train seeds in parallel processes "
                             "that share --runs-dir; a final run with all seeds then reuses them)")
    parser.add_argument("--runs-dir", default=None, help="where trained runs are cached (default OUT/runs)")
    add_threads_flag(parser)


def run(args) -> int:
    from negaug import repro
    from negaug.repro import common
    from negaug.repro.common import default_seeds

    seeds = parse_seed_list(args.seed_list) if args.seed_list else default_seeds(args.size, args.seeds)
    results = repro.run(args.name, args.out, size=args.size, seeds=seeds, runs_dir=args.runs_dir,
                        on_progress=lambda message: print(f"[repro {args.name}] {message}", file=sys.stderr, flush=True))
    print(f"{args.name}: wrote {args.out}/results.json and {args.out}/report.md")
    if args.size != "full":  # one seed at a smoke size: a yes/no would contradict the full tables
        print(f"  {common.smoke_note(args.size)[2:]}")
        return 0
    if results.get("verdicts"):  # the pre-registered claim rows (docs/reproduction.md), by its verdict words
        for row, word in results["verdicts"].items():
            print(f"  {row}: {word}")
        return 0
    for target, value in results.get("targets", {}).items():  # experiments without pre-registered claim rows
        print(f"  {target}: {'yes' if value else 'no'} (a target, not a pre-registered verdict; see report.md)")
    return 0


def parse_seed_list(text: str) -> list[int]:
    try:
        seeds = [int(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise ValueError(f"--seed-list must be integers separated by commas (e.g. 0,1,2), got '{text}'") from None
    if not seeds or len(set(seeds)) != len(seeds) or len(seeds) > 100 or any(abs(s) > 2**31 - 1 for s in seeds):
        raise ValueError(f"--seed-list needs 1 to 100 distinct seeds within +-{2**31 - 1}, got '{text[:80]}'")
    return seeds
