"""`negaug compare PRESET --arms "OVERRIDES" "OVERRIDES" ... --seeds N --out DIR`: does NDA help on your data?"""
from __future__ import annotations

import argparse
import sys

from negaug.cli import add_threads_flag

HELP = "compare arms of a preset over seeds on the validation split (CIs, Holm-adjusted p)"

EPILOG = """examples:
  negaug compare default --arms "nda.transform=none" "" "nda.lam=0.5" --seeds 5 --out scratch/cmp
  negaug compare my.yaml --arms "nda.transform=none" "nda.transform=cutout" --seeds 3 --out scratch/cmp \\
      --runs-dir scratch/runs
The first arm is the baseline; "" is the preset as it is. Runs are cached in --runs-dir (default
OUT/runs): a stopped comparison resumes, a rerun only evaluates."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("preset", help="a preset name (negaug train --help lists them) or a YAML config file")
    parser.add_argument("--arms", nargs="+", required=True, metavar="OVERRIDES",
                        help='one quoted string of section.key=value overrides per arm; the first is the baseline')
    parser.add_argument("--seeds", type=int, default=3, help="how many seeds every arm trains (default: 3)")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="seeds FIRST..FIRST+N-1 (default 0); e.g. 1000 keeps tuning runs apart from "
                             "the seeds of reported results")
    parser.add_argument("--out", required=True, help="folder for results.json, report.md and comparison.png")
    parser.add_argument("--runs-dir", default=None, help="where trained runs are cached (default OUT/runs)")
    add_threads_flag(parser)


def run(args: argparse.Namespace) -> int:
    from negaug.repro import compare
    from negaug.repro.stats import format_difference

    if not 2 <= args.seeds <= 100:
        raise ValueError(f"--seeds must be from 2 to 100 (a confidence interval needs two), got {args.seeds}")
    if not 0 <= args.first_seed <= 1_000_000:
        raise ValueError(f"--first-seed must be from 0 to 1000000, got {args.first_seed}")
    arms = compare.parse_arms(args.arms)
    summary = compare.run_comparison(args.preset, arms, list(range(args.first_seed, args.first_seed + args.seeds)), args.out, args.runs_dir,
                                     on_progress=lambda message: print(f"[compare] {message}", file=sys.stderr, flush=True))
    for metric in summary["metrics"]:
        for label, c in summary["comparisons"][metric].items():
            print(f"{metric:>28}  {label}: {format_difference(c)}")
    print(f"wrote {args.out}/report.md, results.json and comparison.png")
    return 0
