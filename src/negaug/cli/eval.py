"""`negaug eval RUN`: sample quality of a trained run's (EMA) generator
(`negaug.experiment.evaluate_run`: RUN/eval.json, figures in RUN/eval/), printed as a table;
`negaug eval --generated DIR --reference DIR|NAME`: of image files
(`negaug.experiment.evaluate_folders`), printed and optionally written to --out."""
from __future__ import annotations

import argparse
import sys

from negaug.cli import add_threads_flag

HELP = ("evaluate a run's generator: FID/KID/IS/precision-recall, KDE, dot counts, toy metrics (pix2pix runs: "
        "segmentation scores) -> RUN/eval.json")
# Spelled out so that building the parser (every `negaug` call) does not import torch;
# tests check them against the registries.
METRIC_NAMES = ("dots", "fid", "is", "kde", "kid", "mmd", "nnd", "pr", "toy")
FEATURE_NAMES = ("classifier", "inception", "raw")
INCEPTION_FILENAME = "weights-inception-2015-12-05-6726825d.pth"


EPILOG = """examples:
  negaug eval runs/default-20261129-225119                 # the run's own eval settings, as many samples as the test split
  negaug eval runs/lam05 --metrics fid pr --num-samples 2000 --checkpoint best
  negaug eval runs/lam05 --feature-extractor inception --inception-weights ~/weights/pt_inception.pth
  negaug eval --generated my_samples/ --reference mnist5k --out my_samples.json   # image files vs a built-in test split
  negaug eval --generated my_samples/ --reference real_images/ --inception-weights ~/weights/pt_inception.pth
A run: appends one entry to RUN/eval.json and writes its figures to RUN/eval/. Folders: prints the
results (and writes them to --out FILE.json when given)."""

# flags of `negaug eval RUN` only, refused with --generated (value when not given)
RUN_ONLY = (("--num-samples", "num_samples", None), ("--split", "split", "test"), ("--checkpoint", "checkpoint", "latest"),
            ("--no-plots", "no_plots", False))
FOLDER_ONLY = (("--reference", "reference", None), ("--reference-split", "reference_split", None),
               ("--resize", "resize", False), ("--train-data", "train_data", None), ("--out", "out", None))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("run", nargs="?", default=None,
                        help="run folder written by `negaug train` (runs/<name>); or give --generated DIR")
    parser.add_argument("--generated", default=None, metavar="DIR",
                        help="evaluate the image files (PNG/JPEG, recursive) under DIR instead of a run")
    parser.add_argument("--reference", default=None, metavar="DIR|NAME",
                        help="with --generated: a folder of real images or a built-in dataset (e.g. mnist5k)")
    parser.add_argument("--reference-split", default=None, choices=["val", "test"],
                        help="split of a built-in --reference (default: test)")
    parser.add_argument("--resize", action="store_true",
                        help="with --generated: resize images of another size than the reference's (bilinear, "
                             "antialiased) instead of refusing them")
    parser.add_argument("--train-data", default=None, metavar="NAME",
                        help="with --generated: built-in dataset whose training split trains the offline classifier "
                             "(default: the built-in reference's)")
    parser.add_argument("--out", default=None, metavar="FILE.json",
                        help="with --generated: also write the results there (default: print only)")
    parser.add_argument("--metrics", nargs="+", default=None, choices=METRIC_NAMES, metavar="METRIC",
                        help=f"any of {', '.join(METRIC_NAMES)} (default: the run's eval.metrics, else by data: "
                             "images fid kid is pr; dots + dots; 2-D toys toy kde)")
    parser.add_argument("--num-samples", type=int, default=None,
                        help="generated samples (default: as many as the test split holds, so both sets are equal)")
    parser.add_argument("--feature-extractor", default=None, choices=["auto", *FEATURE_NAMES],
                        help="auto: inception when its weights are found, else the offline classifier "
                             "(default: the run's eval.feature_extractor)")
    parser.add_argument("--inception-weights", default=None,
                        help=f"TF-Inception weights file ({INCEPTION_FILENAME}); never downloaded")
    parser.add_argument("--seed", type=int, default=None, help="seed of the latents and of KID subsets (default: 0)")
    parser.add_argument("--split", default="test", choices=["val", "test"],
                        help="held-out reference images: test for final numbers, val for anything that selects "
                             "(a setting, a checkpoint) (default: test)")
    parser.add_argument("--checkpoint", default="latest", help="latest, best or a checkpoint path (default: latest)")
    parser.add_argument("--batch-size", type=int, default=250, help="generator / feature batch size (default: 250)")
    parser.add_argument("--data-root", default=None,
                        help="where the run's dataset lives (default: the run's data.root)")
    parser.add_argument("--download", action="store_true", help="download the run's dataset if it is missing")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default: auto: cuda when available)")
    add_threads_flag(parser)
    parser.add_argument("--no-plots", action="store_true", help="skip the figures")
    parser.add_argument("--force", action="store_true", default=None,
                        help="report values that would mislead (near-chance features, a reference the features "
                             "were trained on, too few samples) instead of refusing them, with warnings")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from negaug import distributed
    from negaug.cli.train import process_group
    from negaug.experiment import kinds

    if (args.run is None) == (args.generated is None):
        raise ValueError("give exactly one of RUN (a run folder) and --generated DIR (a folder of image files)")
    if args.generated is not None:
        return _run_folders(args)
    given = [flag for flag, name, unset in FOLDER_ONLY if getattr(args, name) != unset]
    if given:
        raise ValueError(f"{', '.join(given)} apply to --generated DIR only, not to a run")
    if kinds.of_train_target(run_dir=args.run).name == "pix2pix":
        if distributed.launched_by_torchrun():
            raise ValueError("a pix2pix run is evaluated in one process; run negaug eval without torchrun")
        return _run_translation(args)
    with process_group(args.device, "--device") as args.device:  # torchrun: each process samples and extracts its share
        return _run_gan(args)


def _run_gan(args) -> int:
    from negaug import distributed
    from negaug.experiment.evaluate import evaluate_run, format_results

    entry = evaluate_run(args.run, metrics=args.metrics, num_samples=args.num_samples,
                         seed=0 if args.seed is None else args.seed,
                         checkpoint=args.checkpoint, feature_extractor=args.feature_extractor,
                         inception_weights=args.inception_weights, batch_size=args.batch_size, device=args.device,
                         plots=not args.no_plots, progress=not args.quiet, force=args.force,
                         data_root=args.data_root, download=args.download, split=args.split,
                         warn=lambda message: print(f"negaug: warning: {message}", file=sys.stderr))
    if distributed.rank() == 0:
        print(format_results(entry))
    return 0


def _run_folders(args) -> int:
    """`negaug eval --generated DIR --reference DIR|NAME`: image files, no run."""
    from negaug import distributed
    from negaug.experiment.evaluate import format_results
    from negaug.experiment.evaluate_folders import evaluate_folders

    given = [flag for flag, name, unset in RUN_ONLY if getattr(args, name) != unset]
    if given:
        raise ValueError(f"{', '.join(given)} apply to a run only; --generated evaluates every file of its folder "
                         f"(a built-in reference's split: --reference-split)")
    if distributed.launched_by_torchrun():
        raise ValueError("--generated is evaluated in one process; run negaug eval without torchrun")
    if args.reference is None:
        raise ValueError("--generated needs --reference DIR (a folder of real images) or NAME (a built-in dataset)")
    entry = evaluate_folders(args.generated, args.reference, metrics=args.metrics,
                             seed=0 if args.seed is None else args.seed,
                             reference_split=args.reference_split or "test", resize=args.resize,
                             train_data=args.train_data, feature_extractor=args.feature_extractor or "auto",
                             inception_weights=args.inception_weights, batch_size=args.batch_size,
                             device=args.device, progress=not args.quiet, force=bool(args.force),
                             data_root=args.data_root, download=args.download, out=args.out,
                             warn=lambda message: print(f"negaug: warning: {message}", file=sys.stderr))
    table = format_results({"step": 0, "checkpoint": "", **entry}).split("\n", 1)[1]  # the table without its run line
    print(f"{entry['generated']['num_files']} images in {args.generated} vs {args.reference}\n{table}")
    return 0


def _run_translation(args) -> int:
    """`negaug eval` of a Pix2Pix run: segmentation scores of its label maps."""
    from negaug.experiment.translate import evaluate_translation_run, format_scores

    # a Pix2Pix G is scored in eval mode (no latents, no randomness) on data that is never downloaded
    given = [flag for flag, value in (("--metrics", args.metrics), ("--feature-extractor", args.feature_extractor),
                                      ("--inception-weights", args.inception_weights),
                                      ("--seed", args.seed is not None), ("--download", args.download),
                                      ("--force", args.force)) if value]
    if given:
        raise ValueError(f"{args.run} is a pix2pix run, scored by segmentation of its label maps; "
                         f"{', '.join(given)} apply to GAN runs only")
    entry = evaluate_translation_run(args.run, checkpoint_choice=args.checkpoint, num_samples=args.num_samples,
                                     batch_size=args.batch_size, device=args.device, data_root=args.data_root,
                                     warn=lambda message: print(f"negaug: warning: {message}", file=sys.stderr),
                                     split=args.split)
    print(format_scores(entry))
    return 0
