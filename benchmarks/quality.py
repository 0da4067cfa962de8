"""Sample quality of the default preset with and without NDA, at equal steps (issue 9's gate).

    python benchmarks/quality.py [--seeds 3] [--steps 2000] [--runs-dir bench-runs] [--out FILE.json]

Arms, all the `default` preset (DCGAN width 32 with a spectral-norm D, hinge, MNIST-5k, 2000
steps) with only the NDA settings changed: no NDA (`nda.transform=none`), Jigsaw NDA in weighted
mode (the preset itself) and in mixture mode (`nda.mode=mixture`). For each arm and seed: offline
FID, precision and recall of the EMA and the raw generator against the 1000 MNIST-5k test images
(features of the offline MNIST-5k classifier, the protocol of `negaug repro quality`), the number
of digit classes that make up >= 2% of 1000 samples, and the training time per step (from the
run's own log). Printed as a table with NDA / baseline ratios. Target: NDA's mean FID at most the
baseline's at equal steps.

Runs are cached in --runs-dir by config hash, with the names `negaug repro quality` and
`negaug repro anomaly` use, so given the same folder they share the trained baseline and weighted
NDA runs. One 2000-step run of the default preset trains in 91 s on 2 idle CPU cores (negaug
0.4.0; docs/speed.md).
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from negaug.repro import common, mnist, quality
from negaug.repro.common import Arm, Study

ARMS = {"baseline": ["nda.transform=none"], "nda": [], "nda-mixture": ["nda.mode=mixture"]}
COLUMNS = (("ema_fid", "FID (EMA G)", 2), ("raw_fid", "FID (raw G)", 2), ("ema_precision", "precision", 3),
           ("ema_recall", "recall", 3), ("ema_classes", "classes", 1), ("ms_per_step", "ms/step", 0))


def ms_per_step(run_dir: Path) -> float:
    """Mean training time per generator step from the run's metrics.jsonl (it_per_s of each window)."""
    rates = [json.loads(line)["it_per_s"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()
             if '"it_per_s"' in line]
    return 1000.0 / statistics.mean(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1")
    parser.add_argument("--seed-list", default=None, metavar="S1,S2,...",
                        help="explicit seeds (e.g. one process per seed sharing --runs-dir)")
    parser.add_argument("--steps", type=int, default=2000, help="generator steps of every arm (the preset: 2000)")
    parser.add_argument("--runs-dir", default="bench-runs", help="where the trained runs are cached")
    parser.add_argument("--out", default=None, help="also write every number to this JSON file")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seed_list.split(",")] if args.seed_list else list(range(args.seeds))
    study = Study(out_dir=Path(args.runs_dir), size="full", seeds=seeds, runs_dir=Path(args.runs_dir),
                  on_progress=lambda message: print(f"[quality] {message}", flush=True))
    options = quality.evaluation_options(study)
    from negaug import data

    reference = data.build("mnist5k", split="test")
    steps = [] if args.steps == mnist.SIZES["full"]["steps"] else [f"train.steps={args.steps}"]
    rows: dict[str, list[dict]] = {}
    for seed in study.seeds:
        for name, overrides in ARMS.items():
            trained = common.train_arm(study, Arm(name, mnist.PRESET, [*overrides, *steps]), seed, mnist.LABEL)
            entry, _ = quality.evaluate_run(trained.run_dir, reference, options, len(reference), seed)
            entry["ms_per_step"] = ms_per_step(trained.run_dir)
            entry["run_dir"], entry["cached"] = str(trained.run_dir), trained.cached
            rows.setdefault(name, []).append(entry)
            print(f"[quality] {name} seed {seed}: " + ", ".join(f"{label} {entry[key]:.{d}f}" for key, label, d in COLUMNS), flush=True)
    print_table(rows, args)
    if args.out:
        Path(args.out).write_text(json.dumps({"steps": args.steps, "seeds": study.seeds, "per_seed": rows}, indent=1, default=str))


def print_table(rows: dict[str, list[dict]], args) -> None:
    seeds = sorted({e["seed"] for entries in rows.values() for e in entries})
    print(f"\nDefault preset, {args.steps} steps, seeds {seeds}; mean ± std over seeds; "
          f"ratio = arm / baseline; torch threads {torch.get_num_threads()}\n")
    print("| arm | " + " | ".join(label for _, label, _ in COLUMNS) + " | FID ratio (EMA) | FID ratio (raw) | time ratio |")
    print("|---" * (len(COLUMNS) + 4) + "|")
    mean = {name: {key: statistics.mean(e[key] for e in entries) for key, _, _ in COLUMNS} for name, entries in rows.items()}
    for name, entries in rows.items():
        cells = []
        for key, _, d in COLUMNS:
            values = [e[key] for e in entries]
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.{d}f} ± {std:.{d}f}")
        base = mean["baseline"]
        ratios = [mean[name]["ema_fid"] / base["ema_fid"], mean[name]["raw_fid"] / base["raw_fid"],
                  mean[name]["ms_per_step"] / base["ms_per_step"]]
        print(f"| {name} | " + " | ".join(cells) + " | " + " | ".join(f"{r:.2f}x" for r in ratios) + " |")
    if any(e.get("cached") for entries in rows.values() for e in entries):
        print("\nms/step comes from each run's own log: runs reused from --runs-dir were timed when they trained, "
              "under that machine's load and thread count, so the time ratio is no speed figure "
              "(benchmarks/train_step.py measures speed).")
    for name in rows:
        if name != "baseline":
            met = mean[name]["ema_fid"] <= mean["baseline"]["ema_fid"]
            print(f"target (mean FID of {name} <= baseline, EMA G): {'met' if met else 'MISSED'}")


if __name__ == "__main__":
    main()
