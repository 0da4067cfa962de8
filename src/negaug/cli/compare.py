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
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 for every arm (default: 3)")
    parser.add_argument("--out", required=True, help="folder for results.json, report.md and comparison.png")
    parser.add_argument("--runs-dir", default=None, help="where trained runs are cached (default OUT/runs)")
    add_threads_flag(parser)


def run(args: argparse.Namespace) -> int:
    from negaug.repro import compare
    from negaug.repro.stats import format_difference

    if not 2 <= args.seeds <= 100:
        raise ValueError(f"--seeds must be from 2 to 100 (a confidence interval needs two), got {args.seeds}")
    arms = compare.parse_arms(args.arms)
    summary = compare.run_comparison(args.preset, arms, list(range(args.seeds)), args.out, args.runs_dir,
                                     on_progress=lambda message: print(f"[compare] {message}", file=sys.stderr, flush=True))
    for metric in summary["metrics"]:
        for label, c in summary["comparisons"][metric].items():
            print(f"{metric:>28}  {label}: {format_difference(c)}")
    print(f"wrote {args.out}/report.md, results.json and comparison.png")
    return 0
