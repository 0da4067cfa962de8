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

import torch

from negaug import data
from negaug.data.dots import disc_offsets
from negaug.experiment import load_run
from negaug.experiment.config import load_config
from negaug.metrics.dots import count_dots, count_histogram
from negaug.repro import common, plots
from negaug.repro.common import BASELINE, NDA, Arm, Study

PRESET = "repro_numerosity"
TARGET = 6
# NDA arms: the paper's negatives (4, 5, 7). More entries add arms with other negative counts
# (e.g. "nda_wide": (3, 4, 5, 7, 8, 9)); each costs one WGAN-GP run per seed.
VARIANTS = {NDA: (4, 5, 7)}
COUNT_THRESHOLD = 1.0  # a dot pixel lies > 1.0 from the background


def count_min_area(image_size: int) -> int:
    """Smallest dot the counter accepts: half the pixels of a real dot at this size (10 at 32 px,
    where a dot has 21 pixels; 2 at 16 px, where it has 5)."""
    return max(1, disc_offsets(2.5 * image_size / 32).shape[0] // 2)
SIZES: dict[str, dict[str, Any]] = {
    # tiny: CI smoke test (seconds); quick: a few minutes; full: the reported numbers
    "tiny": {"steps": 3, "width": 8, "batch_size": 16, "num_train": 256, "num_samples": 64},
    "quick": {"steps": 300, "width": 16, "batch_size": 64, "num_train": 10000, "num_samples": 1000},
    "full": {"steps": 2000, "width": 16, "batch_size": 64, "num_train": 10000, "num_samples": 2000},
}
CLAIM = "the baseline spreads over several dot counts; NDA with 4-, 5-, 7-dot negatives concentrates on 6"


def arms(size: str) -> list[Arm]:
    """The baseline, then one NDA arm per entry of VARIANTS (only the negatives' counts differ)."""
    s = SIZES[size]
    shared = [f"train.steps={s['steps']}", f"model.options.width={s['width']}",
              f"data.batch_size={s['batch_size']}", f"data.options.num_samples={s['num_train']}",
              f"nda.options.dataset_options.num_samples={s['num_train']}"]
    if size == "tiny":
        shared += ["train.sample_every=0", "train.checkpoint_every=0"]
    variants = [Arm(name, PRESET, [*shared, f"nda.options.dataset_options.count={list(counts)}"])
                for name, counts in VARIANTS.items()]
    return [Arm(BASELINE, PRESET, [*shared, "nda.transform=none"]), *variants]


def count(images: torch.Tensor) -> torch.Tensor:
    """Dots per image (N, C, H, W) in [-1, 1] -> (N,) int64, with this experiment's fixed settings."""
    return count_dots(images, threshold=COUNT_THRESHOLD, min_area=count_min_area(images.shape[-1]))


def count_real(num_samples: int) -> dict[str, Any]:
    """The counter's accuracy on real test images of the trained count (should be 1.0)."""
    config = load_config(PRESET)
    options = dict(config.data.options, count=TARGET, num_samples=num_samples)
    real = data.build("dots", split="test", image_size=config.data.image_size, **options)
    counts = count(real.images)
    return {"num_images": num_samples, "accuracy": float((counts == TARGET).float().mean()),
            "histogram": count_histogram(counts)}


def evaluate_arm(run_dir, num_samples: int, seed: int) -> dict[str, Any]:
    """Dot counts of `num_samples` generated images: histogram, share at the target, mean count."""
    run = load_run(run_dir)
    images = common.generate(run.generator, num_samples, seed=10_000 + seed)
    counts = count(images)
    return {
        "num_samples": num_samples,
        "fraction_at_target": float((counts == TARGET).float().mean()),
        "fraction_within_one": float(((counts - TARGET).abs() <= 1).float().mean()),
        "mean_count": float(counts.float().mean()),
        "histogram": count_histogram(counts),
        "num_distinct_counts": int(torch.unique(counts).numel()),
        "_images": images[:64],
    }


def run(study: Study) -> dict[str, Any]:
    s = SIZES[study.size]
    all_arms = arms(study.size)
    per_seed: dict[str, list[dict[str, Any]]] = {arm.name: [] for arm in all_arms}
    trained = []
    for seed in study.seeds:
        for arm in all_arms:
            t = common.train_arm(study, arm, seed, "numerosity")
            trained.append(t)
            per_seed[arm.name].append({"seed": seed, **evaluate_arm(t.run_dir, s["num_samples"], seed)})
    samples = {name: entries[0]["_images"] for name, entries in per_seed.items()}
    for entries in per_seed.values():
        for entry in entries:
            entry.pop("_images")
    results = summarize(study, per_seed, trained, count_real(min(s["num_samples"], 1000)))
    write_plots(study, per_seed, samples)
    common.write_outputs(study.out_dir, results, report(results))
    return results


METRICS = (("share of samples with 6 dots", "fraction_at_target"), ("share with 5-7 dots", "fraction_within_one"),
           ("mean dot count", "mean_count"), ("distinct counts seen", "num_distinct_counts"))


def summarize(study: Study, per_seed, trained, counter_check) -> dict[str, Any]:
    """comparisons[variant][metric]: baseline vs that NDA arm over seeds; targets on each arm."""
    comparisons = {variant: common.adjust({m: common.compare([e[m] for e in per_seed[BASELINE]], [e[m] for e in per_seed[variant]])
                                           for _, m in METRICS}) for variant in VARIANTS}
    targets = {}
    for variant in VARIANTS:
        at_target = comparisons[variant]["fraction_at_target"]
        targets[f"{variant}_at_least_90_percent_at_target"] = at_target["nda"]["mean"] >= 0.9
        targets[f"{variant}_clearly_above_baseline"] = at_target["difference"] > 0 and not at_target["within_seed_spread"]
    return {
        "experiment": "numerosity", "paper": "Appendix A, Figure 6 (left)", "claim": CLAIM,
        "size": study.size, "seeds": study.seeds, "target_count": TARGET,
        "negative_counts": {variant: list(counts) for variant, counts in VARIANTS.items()},
        "settings": {"preset": PRESET, **SIZES[study.size], "arms": {a.name: a.overrides for a in arms(study.size)}},
        "protocol": {"counter": f"negaug.metrics.dots.count_dots(threshold={COUNT_THRESHOLD}, "
                                "min_area=half a real dot's pixels): pixels farther than the threshold from the "
                                "per-image median colour, 8-connected components of at least min_area pixels",
                     "generator": "last checkpoint (the preset trains without EMA)", "latent_seed": "10000 + seed",
                     "counter_check_on_real_test_images": counter_check, "spread_rule": common.SPREAD_RULE},
        "per_seed": per_seed, "comparisons": comparisons, "targets": targets,
        "runs": common.run_records(trained), "environment": common.environment(),
    }


def pooled_histogram(entries: list[dict[str, Any]]) -> dict[int, float]:
    """Share of all samples (pooled over seeds) at each count."""
    total = sum(e["num_samples"] for e in entries)
    pooled: dict[int, float] = {}
    for entry in entries:
        for value, number in entry["histogram"].items():
            pooled[int(value)] = pooled.get(int(value), 0.0) + number / total
    return dict(sorted(pooled.items()))


def write_plots(study: Study, per_seed, samples: dict[str, torch.Tensor]) -> None:
    shares = {name: pooled_histogram(entries) for name, entries in per_seed.items()}
    plots.count_histograms(shares, TARGET, study.out_dir / "count_histogram.png",
                           title=f"dot counts of generated images (trained on {TARGET})")
    plots.sample_rows(samples, study.out_dir / "samples.png")


def _arm_label(name: str) -> str:
    return "baseline" if name == BASELINE else f"{name} (negatives {', '.join(map(str, VARIANTS[name]))})"


def report(results: dict[str, Any]) -> list[str]:
    variants = list(VARIANTS)
    headers = ["metric", "baseline", *[_arm_label(v) for v in variants], *[f"change ({v})" for v in variants]]
    rows = []
    for label, m in METRICS:
        comparisons = {v: results["comparisons"][v][m] for v in variants}
        rows.append([label, common.fmt(comparisons[variants[0]]["baseline"]), *[common.fmt(comparisons[v]["nda"]) for v in variants],
                     *[common.verdict(comparisons[v]) for v in variants]])
    check = results["protocol"]["counter_check_on_real_test_images"]
    first = results["per_seed"][BASELINE][0]
    return [
        "# Numerosity (paper: Appendix A, Figure 6 left)", "",
        f"Claim: {CLAIM}. Paper: the baseline generates 2 to 8 dots; NDA constrains the count to 6 "
        "(WGAN-GP in the paper).", "",
        f"Ours: size `{results['size']}`, seeds {results['seeds']}, {first['num_samples']} samples per arm and seed; "
        f"loss `{results['runs'][0]['config']['loss']['name']}`, {results['settings']['steps']} generator steps. "
        f"Counter accuracy on real 6-dot test images: {check['accuracy']:.3f}.", "",
        common.table_heading(results["size"], "mean ± std over seeds; change = NDA arm - baseline"), "",
        common.markdown_table(headers, rows), "",
        "## Count histogram (share of samples, pooled over seeds)", "",
        common.markdown_table(["dots", *[_arm_label(name) for name in results["per_seed"]]], _histogram_rows(results)),
        "", f"Rule: {common.SPREAD_RULE}.", "",
        "![count histogram](count_histogram.png)", "", "![samples (seed 0)](samples.png)",
    ]


def _histogram_rows(results: dict[str, Any]) -> list[list[str]]:
    shares = {name: pooled_histogram(entries) for name, entries in results["per_seed"].items()}
    counts = sorted(set().union(*shares.values()))
    return [[str(k) + (" (trained)" if k == TARGET else ""), *[f"{share.get(k, 0.0):.3f}" for share in shares.values()]]
            for k in counts]
