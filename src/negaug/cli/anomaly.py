"""`negaug anomaly RUN`: the discriminator of a trained run as an anomaly detector.

Writes RUN/anomaly.json (AUROC, AUPR, FPR@95TPR per OOD set, with the protocol) and
RUN/anomaly_histograms.png (D(clean) - D(ood) per paired set), and prints a summary table.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from tqdm import tqdm

HELP = "anomaly detection with a run's discriminator: AUROC / AUPR / FPR@95TPR on OOD sets"
DEFAULT_OOD = "corruption/all,noise/all"


def add_arguments(parser: argparse.ArgumentParser) -> None:
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
    parser.add_argument("--data-root", default=None, help="where dataset/* OOD sets live (default: the run's data.root)")
    parser.add_argument("--download", action="store_true", help="download missing dataset/* OOD sets (never by default)")
    parser.add_argument("--batch-size", type=int, default=256, help="discriminator batch size (default: 256)")
    parser.add_argument("--device", default="auto", help="device for the discriminator: auto, cpu, cuda, cuda:N (default: auto)")
    parser.add_argument("--output", default=None, help="results file (default: RUN/anomaly.json)")


def run(args: argparse.Namespace) -> int:
    from negaug import anomaly
    from negaug.train.runs import load_run
    from negaug.train.setup import resolve_device

    if args.num_images < 2:
        raise ValueError(f"--num-images must be at least 2, got {args.num_images}")
    run_dir = Path(args.run)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder {run_dir} does not exist; give a folder written by `negaug train`")
    device = resolve_device(args.device)
    loaded = load_run(run_dir, checkpoint=args.checkpoint, device=device,
                      warn=lambda message: print(f"negaug: warning: {message}", file=sys.stderr))
    reference = loaded.reference_dataset(split=args.split)
    clean = anomaly.ood.last_images(reference, args.num_images)
    data = getattr(loaded.config, "data", None)
    plan = anomaly.plan_ood(args.ood, clean.shape[1], exclude_dataset=getattr(data, "name", None))
    data_root = args.data_root if args.data_root is not None else getattr(data, "root", None)
    with tqdm(total=len(plan.names) + 1, desc="anomaly", unit="set", file=sys.stderr) as bar:
        def advance(name: str) -> None:
            bar.set_postfix_str(name)
            bar.update(1)

        results, differences = anomaly.evaluate(
            loaded.discriminator, clean, plan, severity=args.severity, seed=args.seed,
            batch_size=args.batch_size, data_root=data_root, download=args.download, on_progress=advance)
    output = Path(args.output) if args.output else run_dir / "anomaly.json"
    histogram = output.with_name(output.stem + "_histograms.png")
    if differences:
        label = _run_label(loaded)
        title = f"D(clean) - D(ood), {label}" + (f", severity {args.severity}" if any(
            name.startswith("corruption/") for name in differences) else "")
        anomaly.plot_difference_histograms({label: differences}, histogram, title=title)
    results["protocol"].update({
        "run_dir": str(run_dir), "checkpoint": args.checkpoint, "checkpoint_path": str(getattr(loaded, "checkpoint_path", "")),
        "checkpoint_step": int(loaded.step), "reference_dataset": getattr(data, "name", None),
        "reference_split": args.split, "data_root": data_root,
    })
    results["histograms"] = histogram.name if differences else None
    _write_json(output, results)
    print(anomaly.format_results(results))
    for name, why in results["skipped"].items():
        print(f"skipped {name}: {why}")
    print(f"wrote {output}" + (f" and {histogram}" if differences else ""))
    return 0


def _run_label(loaded) -> str:
    return f"{Path(loaded.run_dir).name} (step {loaded.step})"


def _write_json(path: Path, payload: dict) -> None:
    """Write atomically: a killed run never leaves a half-written anomaly.json."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, path)
