"""Numerosity (paper, Appendix A and Figure 6 left): a GAN trained on images with exactly 6 dots.

Claim: the baseline GAN spreads its samples over several dot counts; with 4-, 5- and 7-dot
images as negatives (`other_data` NDA) the counts concentrate on 6.

Protocol: both arms train from the `repro_numerosity` preset (same data, model, loss, budget and
seeds; the baseline sets `nda.transform=none`). Each trained EMA generator draws `num_samples`
images from seeded latents; `negaug.metrics.dots.count_dots` counts their dots (connected
components far from the per-image background colour). The counter is checked on real test
images of the trained count (its accuracy is reported).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from negaug.repro import common, plots
from negaug.repro.common import BASELINE, NDA, Arm, Context

PRESET = "repro_numerosity"
TARGET = 6
NEGATIVE_COUNTS = (4, 5, 7)
SIZES: dict[str, dict[str, Any]] = {
    # tiny: CI smoke test (seconds); quick: a few minutes; full: the reported numbers
    "tiny": {"steps": 3, "width": 8, "batch_size": 16, "num_train": 256, "num_samples": 64},
    "quick": {"steps": 600, "width": 32, "batch_size": 64, "num_train": 10000, "num_samples": 1000},
    "full": {"steps": 2000, "width": 32, "batch_size": 64, "num_train": 10000, "num_samples": 2000},
}
CLAIM = "the baseline spreads over several dot counts; NDA with 4-, 5-, 7-dot negatives concentrates on 6"


def arms(size: str) -> list[Arm]:
    s = SIZES[size]
    shared = [f"train.steps={s['steps']}", f"model.options.width={s['width']}",
              f"data.batch_size={s['batch_size']}", f"data.options.num_samples={s['num_train']}",
              f"nda.options.dataset_options.num_samples={s['num_train']}"]
    if size == "tiny":
        shared += ["train.sample_every=0", "train.checkpoint_every=0"]
    return [Arm(BASELINE, PRESET, [*shared, "nda.transform=none"]), Arm(NDA, PRESET, shared)]


def count_real(num_samples: int) -> dict[str, Any]:
    """The counter's accuracy on real test images of the trained count (should be 1.0)."""
    from negaug import data
    from negaug.metrics.dots import count_dots, count_histogram

    real = data.build("dots", split="test", count=TARGET, num_samples=num_samples)
    counts = count_dots(real.images)
    return {"num_images": num_samples, "accuracy": float((counts == TARGET).float().mean()),
            "histogram": count_histogram(counts)}


def evaluate_arm(run_dir, num_samples: int, seed: int) -> dict[str, Any]:
    """Dot counts of `num_samples` generated images: histogram, share at the target, mean count."""
    from negaug.metrics.dots import count_dots, count_histogram
    from negaug.train import load_run

    run = load_run(run_dir)
    images = common.generate(run.generator, num_samples, seed=10_000 + seed)
    counts = count_dots(images)
    return {
        "num_samples": num_samples,
        "fraction_at_target": float((counts == TARGET).float().mean()),
        "fraction_within_one": float(((counts - TARGET).abs() <= 1).float().mean()),
        "mean_count": float(counts.float().mean()),
        "histogram": count_histogram(counts),
        "num_distinct_counts": int(torch.unique(counts).numel()),
        "_images": images[:64],
    }


def run(ctx: Context) -> dict[str, Any]:
    s = SIZES[ctx.size]
    per_seed: dict[str, list[dict[str, Any]]] = {BASELINE: [], NDA: []}
    trained = []
    for seed in ctx.seeds:
        for arm in arms(ctx.size):
            t = common.train_arm(ctx, arm, seed, "numerosity")
            trained.append(t)
            per_seed[arm.name].append({"seed": seed, **evaluate_arm(t.run_dir, s["num_samples"], seed)})
    samples = {name: per_seed[name][0].pop("_images") for name in per_seed}
    for entries in per_seed.values():
        for entry in entries:
            entry.pop("_images", None)
    results = summarize(ctx, per_seed, trained, count_real(min(s["num_samples"], 1000)))
    write_plots(ctx, per_seed, samples)
    common.write_outputs(ctx.out_dir, results, report(results))
    return results


def summarize(ctx: Context, per_seed, trained, counter_check) -> dict[str, Any]:
    metrics = ("fraction_at_target", "fraction_within_one", "mean_count", "num_distinct_counts")
    comparisons = {m: common.compare([e[m] for e in per_seed[BASELINE]], [e[m] for e in per_seed[NDA]])
                   for m in metrics}
    nda_share = comparisons["fraction_at_target"]["nda"]["mean"]
    base_share = comparisons["fraction_at_target"]["baseline"]["mean"]
    return {
        "experiment": "numerosity", "paper": "Appendix A, Figure 6 (left)", "claim": CLAIM,
        "size": ctx.size, "seeds": ctx.seeds, "target_count": TARGET, "negative_counts": list(NEGATIVE_COUNTS),
        "settings": {"preset": PRESET, **SIZES[ctx.size], "arms": {a.name: a.overrides for a in arms(ctx.size)}},
        "protocol": {"counter": "negaug.metrics.dots.count_dots (threshold 0.5 from the per-image median "
                                "colour, 8-connected components of >= 2 px)",
                     "generator": "EMA generator of the last checkpoint", "latent_seed": "10000 + seed",
                     "counter_check_on_real_test_images": counter_check, "spread_rule": common.SPREAD_RULE},
        "per_seed": per_seed, "comparisons": comparisons,
        "targets": {"nda_at_least_90_percent_at_target": nda_share >= 0.9,
                    "nda_clearly_above_baseline": nda_share > base_share
                    and not comparisons["fraction_at_target"]["within_seed_spread"]},
        "runs": common.run_records(trained), "environment": common.environment(),
    }


def pooled_histogram(entries: list[dict[str, Any]]) -> dict[int, float]:
    """Share of all samples (pooled over seeds) at each count."""
    total = sum(e["num_samples"] for e in entries)
    pooled: dict[int, float] = {}
    for entry in entries:
        for count, number in entry["histogram"].items():
            pooled[int(count)] = pooled.get(int(count), 0.0) + number / total
    return dict(sorted(pooled.items()))


def write_plots(ctx: Context, per_seed, samples: dict[str, torch.Tensor]) -> None:
    shares = {name: pooled_histogram(per_seed[name]) for name in (BASELINE, NDA)}
    plots.count_histograms(shares, TARGET, ctx.out_dir / "count_histogram.png",
                           title=f"dot counts of generated images (trained on {TARGET})")
    plots.sample_rows(samples, ctx.out_dir / "samples.png")


def report(results: dict[str, Any]) -> list[str]:
    c = results["comparisons"]
    rows = [[label, common.fmt(c[m]["baseline"]), common.fmt(c[m]["nda"]), common.verdict(c[m])]
            for label, m in (("share of samples with 6 dots", "fraction_at_target"),
                             ("share with 5-7 dots", "fraction_within_one"),
                             ("mean dot count", "mean_count"),
                             ("distinct counts seen", "num_distinct_counts"))]
    hist_rows = _histogram_rows(results)
    check = results["protocol"]["counter_check_on_real_test_images"]
    return [
        "# Numerosity (paper: Appendix A, Figure 6 left)", "",
        f"Claim: {CLAIM}. Paper: the baseline generates 2 to 8 dots; NDA constrains the count to 6 "
        "(WGAN-GP in the paper).", "",
        f"Ours: size `{results['size']}`, seeds {results['seeds']}, "
        f"{results['per_seed'][NDA][0]['num_samples']} samples per arm and seed; loss "
        f"`{results['runs'][0]['config']['loss']['name']}`, {results['settings']['steps']} generator steps. "
        f"Counter accuracy on real 6-dot test images: {check['accuracy']:.3f}.", "",
        "## Claim table (mean ± std over seeds; change = NDA - baseline)", "",
        common.markdown_table(["metric", "baseline", "NDA (4, 5, 7 dots)", "change"], rows), "",
        "## Count histogram (share of samples, pooled over seeds)", "",
        common.markdown_table(["dots", "baseline", "NDA"], hist_rows), "",
        f"Rule: {common.SPREAD_RULE}.", "",
        "![count histogram](count_histogram.png)", "", "![samples (seed 0)](samples.png)",
    ]


def _histogram_rows(results: dict[str, Any]) -> list[list[str]]:
    shares = {name: pooled_histogram(results["per_seed"][name]) for name in (BASELINE, NDA)}
    counts = sorted(set(shares[BASELINE]) | set(shares[NDA]))
    return [[str(k) + (" (trained)" if k == TARGET else ""), f"{shares[BASELINE].get(k, 0.0):.3f}",
             f"{shares[NDA].get(k, 0.0):.3f}"] for k in counts]
