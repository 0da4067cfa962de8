"""`negaug eval RUN`: sample quality of a trained run's (EMA) generator.

Appends one entry per evaluation to RUN/eval.json ({"evaluations": [...]}, newest last; each
entry: step, checkpoint, timestamp, results with their protocols), writes figures to RUN/eval/
(sample grid or 2-D scatter, dot-count histogram) and prints a summary table.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

HELP = "evaluate a run's generator: FID/KID/IS/precision-recall, KDE, dot counts, toy metrics -> RUN/eval.json"
# Spelled out so that building the parser (every `negaug` call) does not import torch;
# tests check them against the registries.
METRIC_NAMES = ("dots", "fid", "is", "kde", "kid", "pr", "toy")
FEATURE_NAMES = ("classifier", "inception", "raw")
INCEPTION_FILENAME = "weights-inception-2015-12-05-6726825d.pth"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="run folder written by `negaug train` (runs/<name>)")
    parser.add_argument("--metrics", nargs="+", default=None, choices=METRIC_NAMES, metavar="METRIC",
                        help=f"any of {', '.join(METRIC_NAMES)} (default: the run's eval.metrics, else by data: "
                             "images fid kid is pr; dots + dots; 2-D toys toy kde)")
    parser.add_argument("--num-samples", type=int, default=10000, help="generated samples (default: 10000, as the paper)")
    parser.add_argument("--feature-extractor", default=None, choices=["auto", *FEATURE_NAMES],
                        help="auto: inception when its weights are found, else the offline classifier "
                             "(default: the run's eval.feature_extractor)")
    parser.add_argument("--inception-weights", default=None,
                        help=f"TF-Inception weights file ({INCEPTION_FILENAME}); never downloaded")
    parser.add_argument("--seed", type=int, default=0, help="seed of the latents and of KID subsets (default: 0)")
    parser.add_argument("--checkpoint", default="latest", help="latest, best or a checkpoint path (default: latest)")
    parser.add_argument("--batch-size", type=int, default=250, help="generator / feature batch size (default: 250)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N (default: cpu)")
    parser.add_argument("--no-plots", action="store_true", help="skip the figures")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from negaug.metrics import evaluate_samples, generate_samples, record_sampling
    from negaug.metrics.plots import save_evaluation_plots
    from negaug.train.runs import load_run

    if args.num_samples < 2:
        raise ValueError(f"--num-samples must be at least 2, got {args.num_samples}")
    run_dir = Path(args.run)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder {run_dir} does not exist; give a folder written by `negaug train`")
    loaded = load_run(run_dir, checkpoint=args.checkpoint, device=args.device,
                      warn=lambda message: print(f"negaug: warning: {message}", file=sys.stderr))
    reference, train, split = _datasets(loaded)
    settings = _settings(args, loaded.config, train, split)
    fake, _ = generate_samples(loaded.generator, args.num_samples, args.seed, loaded.num_classes,
                               args.batch_size, args.device)
    metrics = args.metrics or list(loaded.config.eval.metrics) or None
    results = record_sampling(evaluate_samples(fake, reference, metrics, args.seed, **settings), loaded.num_classes)
    stem = f"step_{int(loaded.step):07d}"
    plots = [] if args.no_plots else save_evaluation_plots(run_dir / "eval", stem, fake, reference, results)
    entry = {"step": int(loaded.step), "checkpoint": str(loaded.checkpoint_path), "checkpoint_choice": args.checkpoint,
             "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "results": results,
             "plots": [str(p.relative_to(run_dir)) for p in plots]}
    append_evaluation(run_dir / "eval.json", entry)
    print(format_results(entry))
    return 0


def _datasets(loaded: Any) -> tuple[Any, Any, str]:
    """(reference = test split, or the training split when the data has none; training split; name)."""
    train = loaded.reference_dataset(split=loaded.config.data.split)
    try:
        return loaded.reference_dataset(split="test"), train, "test"
    except ValueError:
        return train, train, loaded.config.data.split


def _settings(args: argparse.Namespace, config: Any, train: Any, split: str) -> dict[str, Any]:
    count = config.data.options.get("count")
    return dict(
        feature_extractor=args.feature_extractor or config.eval.feature_extractor,
        inception_weights=args.inception_weights or config.eval.inception_weights,
        batch_size=args.batch_size, device=args.device, progress=not args.quiet, data_name=config.data.name,
        reference_split=split, train_data=train, dots_count=count if isinstance(count, int) else None,
    )


def append_evaluation(path: Path, entry: dict[str, Any]) -> None:
    """Add ``entry`` to the "evaluations" list of ``path`` (created if absent), atomically."""
    document: dict[str, Any] = {"evaluations": []}
    if path.exists():
        try:
            document = json.loads(path.read_text())
            assert isinstance(document.get("evaluations"), list)
        except (json.JSONDecodeError, AssertionError, AttributeError):
            raise ValueError(f"{path} is not an eval.json written by negaug; move it away and rerun") from None
    document["evaluations"].append(entry)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(document, indent=1, default=str))
    os.replace(tmp, path)


def format_results(entry: dict[str, Any]) -> str:
    """A plain table: one row per result key, with the main extras."""
    lines = [f"step {entry['step']} ({entry['checkpoint']})", f"{'metric':<44} {'value':>12}  details"]
    for key, result in entry["results"].items():
        details = [f"{name}={result[name]:.4g}" for name in ("std", "precision", "recall", "bandwidth", "num_modes")
                   if isinstance(result.get(name), (int, float))]
        protocol = result["protocol"]
        details.append(f"n={protocol['num_generated']} vs {protocol['num_real']} {protocol['reference']}")
        lines.append(f"{key:<44} {result['value']:>12.5g}  {', '.join(details)}")
    return "\n".join(lines)
