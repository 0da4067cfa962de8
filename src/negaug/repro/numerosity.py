"""Numerosity (paper, Appendix A and Figure 6 left): a GAN trained on images with exactly 6 dots.

Claim (Appendix A): the baseline GAN spreads its samples over several dot counts (2 to 8); with
4-, 5- and 7-dot images as negatives (`other_data` NDA) the counts are "constrained to six".

Protocol: both arms train from the `repro_numerosity` preset (same data, model, loss, budget and
seeds; the baseline sets `nda.transform=none`). Each trained generator (the last checkpoint; the
preset trains without EMA) draws `num_samples` images from seeded latents;
`negaug.metrics.dots.count_dots` counts their dots (connected components far from the per-image
background colour).

Claim table: the share of samples with 4, 5, 6, 7, 8 dots and with any other count, per arm
(mean ± std over seeds), NDA - baseline with its 95% CI, Welch's p and Holm's p over the rows of
the table. Verdict words (full size only) where the paper claims a direction (`DIRECTIONS`): the
share at 6 rises, the shares at the negatives 4, 5 and 7 fall.

The counter is checked twice: on real test images of the trained count (its accuracy), and on
the first `AGREEMENT_SAMPLES` generated images of every arm and seed against a second, independent
counter (`negaug.metrics.dots.count_dot_peaks`: peaks of a blob filter matched to the dot disc);
an arm whose mean agreement is below `MIN_AGREEMENT` is flagged in the report.
"""
from __future__ import annotations

from typing import Any

import torch

from negaug import data
from negaug.data.dots import disc_offsets
from negaug.experiment import load_run
from negaug.experiment.config import load_config
from negaug.metrics.dots import agreement, count_dot_peaks, count_dots, count_histogram
from negaug.repro import common, plots, stats
from negaug.repro.common import BASELINE, NDA, Arm, Study

PRESET = "repro_numerosity"
TARGET = 6
# NDA arms: the paper's negatives (4, 5, 7). More entries add arms with other negative counts
# (e.g. "nda_wide": (3, 4, 5, 7, 8, 9)); each costs one WGAN-GP run per seed.
VARIANTS = {NDA: (4, 5, 7)}
COUNT_THRESHOLD = 1.0  # a dot pixel lies > 1.0 from the background
PEAK_THRESHOLD = 0.5  # the second counter: a blob response above a quarter of a real dot's (2); a 1-pixel speck gives 0.4
CLAIM_COUNTS = (4, 5, 6, 7, 8)  # the claim table's rows, then "other" (every other count)
# The paper's direction per row (Appendix A: with 4-, 5- and 7-dot negatives "the resulting distribution of
# the numerosity ... is constrained to six"): +1 the share rises with NDA, -1 it falls, None no claim (no verdict).
DIRECTIONS = {"share_4": -1, "share_5": -1, "share_6": 1, "share_7": -1, "share_8": None, "share_other": None}
AGREEMENT_SAMPLES = 100  # generated images per arm and seed that both counters count
MIN_AGREEMENT = 0.9  # below this mean agreement an arm's counts are flagged in the report


def count_min_area(image_size: int) -> int:
    """Smallest dot the counter accepts: half the pixels of a real dot at this size (10 at 32 px,
    where a dot has 21 pixels; 2 at 16 px, where it has 5)."""
    return max(1, disc_offsets(dot_radius(image_size)).shape[0] // 2)


def dot_radius(image_size: int) -> float:
    """The dots set's default radius at this size (2.5 px at 32 px, in proportion)."""
    return 2.5 * image_size / 32


SIZES: dict[str, dict[str, Any]] = {
    # tiny: CI smoke test (seconds); quick: a few minutes; full: the reported numbers
    "tiny": {"steps": 3, "width": 8, "batch_size": 16, "num_train": 256, "num_samples": 64},
    "quick": {"steps": 300, "width": 16, "batch_size": 64, "num_train": 10000, "num_samples": 1000},
    "full": {"steps": 2000, "width": 16, "batch_size": 64, "num_train": 10000, "num_samples": 2000},
}
CLAIM = ("with 4-, 5- and 7-dot images as negatives, the dot counts of a GAN trained on 6-dot images are "
         "constrained to 6: the share at 6 rises, the shares at 4, 5 and 7 fall")


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


def count_second(images: torch.Tensor) -> torch.Tensor:
    """The second, independent counter (`count_dot_peaks`) with this experiment's settings: (N,) int64."""
    return count_dot_peaks(images, radius=dot_radius(images.shape[-1]), threshold=PEAK_THRESHOLD)


def count_real(num_samples: int) -> dict[str, Any]:
    """Both counters' accuracy on real test images of the trained count (both should be 1.0)."""
    config = load_config(PRESET)
    options = dict(config.data.options, count=TARGET, num_samples=num_samples)
    real = data.build("dots", split="test", image_size=config.data.image_size, **options)
    counts = count(real.images)
    return {"num_images": num_samples, "accuracy": float((counts == TARGET).float().mean()),
            "histogram": count_histogram(counts),
            "second_counter_accuracy": float((count_second(real.images) == TARGET).float().mean())}


def count_shares(counts: torch.Tensor) -> dict[str, float]:
    """{"share_4": ..., "share_8": ..., "share_other": ...}: the share of (N,) counts at each of
    CLAIM_COUNTS and at any other count (the shares sum to 1)."""
    at = (counts[:, None] == torch.tensor(CLAIM_COUNTS)).float()  # (N, len(CLAIM_COUNTS))
    shares = {f"share_{k}": float(v) for k, v in zip(CLAIM_COUNTS, at.mean(dim=0).tolist())}
    return {**shares, "share_other": float(1 - at.sum(dim=1).mean())}


def evaluate_arm(run_dir, num_samples: int, seed: int) -> dict[str, Any]:
    """Dot counts of `num_samples` generated images: the claim table's shares, histogram, mean
    count, and both counters on the first AGREEMENT_SAMPLES images."""
    run = load_run(run_dir)
    images = common.generate(run.generator, num_samples, seed=10_000 + seed)
    counts = count(images)
    checked = min(AGREEMENT_SAMPLES, num_samples)
    return {
        "num_samples": num_samples,
        **count_shares(counts),
        "fraction_within_one": float(((counts - TARGET).abs() <= 1).float().mean()),
        "mean_count": float(counts.float().mean()),
        "histogram": count_histogram(counts),
        "num_distinct_counts": int(torch.unique(counts).numel()),
        "counter_agreement": agreement(counts[:checked], count_second(images[:checked])),
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


ROWS = (*[(f"share_{k}", f"{k} dots") for k in CLAIM_COUNTS], ("share_other", "any other count"))
DESCRIPTIVE = (("share with 5-7 dots", "fraction_within_one"), ("mean dot count", "mean_count"),
               ("distinct counts seen", "num_distinct_counts"))


def claim_table(size: str, baseline: list[dict], treated: list[dict]) -> dict[str, dict[str, Any]]:
    """One NDA arm against the baseline on the claim table's rows (per-seed entries with the
    `count_shares` keys): `common.compare` per row, Holm over the rows, then "paper_direction"
    ("rises", "falls" or None) and "verdict" (a `stats.verdict_word` at the full size where the
    paper claims a direction, "-" otherwise)."""
    table = common.adjust({key: common.compare([e[key] for e in baseline], [e[key] for e in treated]) for key, _ in ROWS})
    for key, comparison in table.items():
        direction = DIRECTIONS[key]
        comparison["paper_direction"] = None if direction is None else ("rises" if direction > 0 else "falls")
        judged = direction is not None and common.carries_verdicts(size)
        comparison["verdict"] = stats.verdict_word(comparison["difference"], comparison["holm_p"], direction) if judged else "-"
    return table


def headline(table: dict[str, dict[str, Any]]) -> str:
    """What the claim table shows, row by row (full size): 'share at 6: reproduced (paper: rises);
    ...; counts constrained to 6 (every claimed row reproduced): no'."""
    claimed = [key for key in table if DIRECTIONS[key] is not None]
    order = sorted(claimed, key=lambda key: DIRECTIONS[key] < 0)  # the rise first, then the falls
    words = [f"share at {key.split('_')[1]}: {table[key]['verdict']} (paper: {table[key]['paper_direction']})" for key in order]
    whole = all(table[key]["verdict"] == stats.VERDICTS[0] for key in claimed)
    return "; ".join(words) + f"; counts constrained to {TARGET} (every claimed row reproduced): {'yes' if whole else 'no'}"


def counter_agreement(per_seed) -> dict[str, Any]:
    """Per arm: the two counters' agreement on the first AGREEMENT_SAMPLES generated images of each
    seed (mean ± std over seeds), the disagreements pooled over seeds ("primary->second": images),
    and whether the mean is below MIN_AGREEMENT."""
    arms_check = {}
    for name, entries in per_seed.items():
        pooled: dict[str, int] = {}
        for entry in entries:
            for pair, number in entry["counter_agreement"]["disagreements"].items():
                pooled[pair] = pooled.get(pair, 0) + number
        rate = common.spread([e["counter_agreement"]["agreement"] for e in entries])
        arms_check[name] = {"agreement": rate, "images_per_seed": entries[0]["counter_agreement"]["num_images"],
                            "disagreements": dict(sorted(pooled.items(), key=lambda item: -item[1])),
                            "below_minimum": rate["mean"] < MIN_AGREEMENT}
    return arms_check


def summarize(study: Study, per_seed, trained, counter_check) -> dict[str, Any]:
    """comparisons[variant]: {"claim": the claim table, "descriptive": other measures (not judged)}."""
    base = per_seed[BASELINE]
    comparisons = {v: {"claim": claim_table(study.size, base, per_seed[v]),
                       "descriptive": common.adjust({m: common.compare([e[m] for e in base], [e[m] for e in per_seed[v]])
                                                     for _, m in DESCRIPTIVE})} for v in VARIANTS}
    targets = {}
    for v in VARIANTS:
        claim = comparisons[v]["claim"]
        targets[f"{v}_at_least_90_percent_at_{TARGET}"] = claim[f"share_{TARGET}"]["nda"]["mean"] >= 0.9
        claimed = [k for k in claim if DIRECTIONS[k] is not None]
        targets[f"{v}_every_claimed_row_reproduced"] = all(claim[k]["verdict"] == stats.VERDICTS[0] for k in claimed)
    results = {
        "experiment": "numerosity", "paper": "Appendix A, Figure 6 (left)", "claim": CLAIM,
        "size": study.size, "seeds": study.seeds, "target_count": TARGET,
        "negative_counts": {variant: list(counts) for variant, counts in VARIANTS.items()},
        "settings": {"preset": PRESET, **SIZES[study.size], "arms": {a.name: a.overrides for a in arms(study.size)}},
        "protocol": _protocol(counter_check, counter_agreement(per_seed)),
        "per_seed": per_seed, "comparisons": comparisons, "targets": targets,
        "headline": {v: headline(comparisons[v]["claim"]) for v in VARIANTS} if common.carries_verdicts(study.size) else None,
        "runs": common.run_records(trained), "environment": common.environment(),
    }
    results["verdict_withheld"] = counts_in_doubt(results) or None  # the counters disagree: no claim
    return results


def _protocol(counter_check, agreement_check) -> dict[str, Any]:
    return {"counter": f"negaug.metrics.dots.count_dots(threshold={COUNT_THRESHOLD}, "
                       "min_area=half a real dot's pixels): pixels farther than the threshold from the "
                       "per-image median colour, 8-connected components of at least min_area pixels",
            "second_counter": f"negaug.metrics.dots.count_dot_peaks(radius=the dots set's, threshold={PEAK_THRESHOLD}): "
                              "local maxima (window 2 floor(radius) + 1) of the mean colour distance from the per-image "
                              "median over the dot disc minus that over the ring radius < d <= 2 radius",
            "claim_rows": [key for key, _ in ROWS], "paper_directions": DIRECTIONS,
            "generator": "last checkpoint (the preset trains without EMA)", "latent_seed": "10000 + seed",
            "counter_check_on_real_test_images": counter_check,
            "counter_agreement_on_generated_images": agreement_check,
            "agreement_minimum": MIN_AGREEMENT, "statistics": stats.RULES}


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


def _row_label(key: str, label: str) -> str:
    count_of_row = key.split("_")[1]
    if count_of_row == str(TARGET):
        return f"{label} (trained)"
    return f"{label} (a negative)" if any(count_of_row == str(c) for c in VARIANTS[NDA]) else label


def claim_rows(results: dict[str, Any]) -> list[list[str]]:
    """The claim table's report rows: count, paper, baseline, each NDA arm, change [CI] and (full) verdict."""
    judged = common.carries_verdicts(results["size"])
    rows = []
    for key, label in ROWS:
        cells = {v: results["comparisons"][v]["claim"][key] for v in VARIANTS}
        first = cells[next(iter(VARIANTS))]
        row = [_row_label(key, label), first["paper_direction"] or "-", common.fmt(first["baseline"])]
        row += [common.fmt(cells[v]["nda"]) for v in VARIANTS] + [common.verdict(cells[v]) for v in VARIANTS]
        rows.append(row + ([cells[v]["verdict"] for v in VARIANTS] if judged else []))
    return rows


def descriptive_rows(results: dict[str, Any]) -> list[list[str]]:
    rows = []
    for label, m in DESCRIPTIVE:
        cells = {v: results["comparisons"][v]["descriptive"][m] for v in VARIANTS}
        first = cells[next(iter(VARIANTS))]
        rows.append([label, common.fmt(first["baseline"]), *[common.fmt(cells[v]["nda"]) for v in VARIANTS],
                     *[common.verdict(cells[v]) for v in VARIANTS]])
    return rows


def agreement_lines(results: dict[str, Any]) -> list[str]:
    """The counter-check section: accuracy on real images, agreement on generated ones, the flag."""
    real = results["protocol"]["counter_check_on_real_test_images"]
    check = results["protocol"]["counter_agreement_on_generated_images"]
    rows = [[_arm_label(name), str(c["images_per_seed"]), common.fmt(c["agreement"]),
             ", ".join(f"{pair}: {n}" for pair, n in list(c["disagreements"].items())[:6]) or "-"]
            for name, c in check.items()]
    flagged = [_arm_label(name) for name, c in check.items() if c["below_minimum"]]
    flag = (f"**Flag: the two counters agree on fewer than {MIN_AGREEMENT:.0%} of the generated images of "
            f"{', '.join(flagged)}**: the counts of these arms are in doubt; look at the samples before reading the table."
            if flagged else f"The two counters agree on at least {MIN_AGREEMENT:.0%} of the generated images of every arm.")
    return [
        "## The counter, checked", "",
        (f"On {real['num_images']} real {TARGET}-dot test images: `count_dots` (the counter of every table) is "
         f"right on {real['accuracy']:.3f}, the second counter `count_dot_peaks` on {real['second_counter_accuracy']:.3f}."),
        (f"On generated images, both count the first {AGREEMENT_SAMPLES} images of every arm and seed (agreement = "
         "share counted the same, mean ± std over seeds; disagreements pooled over seeds as "
         "`count_dots->count_dot_peaks`: images):"), "",
        common.markdown_table(["arm", "images per seed", "agreement", "most common disagreements"], rows), "", flag, "",
    ]


def counts_in_doubt(results: dict[str, Any]) -> str:
    """Why the counts cannot carry a verdict ('' when they can): an arm whose two counters agree on
    fewer than MIN_AGREEMENT of its generated images."""
    check = results["protocol"]["counter_agreement_on_generated_images"]
    low = {name: c["agreement"]["mean"] for name, c in check.items() if c["below_minimum"]}
    if not low:
        return ""
    rates = ", ".join(f"{_arm_label(name)} {rate:.0%}" for name, rate in low.items())
    return (f"the two dot counters agree on only {rates} of the generated images (minimum "
            f"{MIN_AGREEMENT:.0%}), so the counts are in doubt")


def report(results: dict[str, Any]) -> list[str]:
    variants = list(VARIANTS)
    judged = common.carries_verdicts(results["size"])
    headers = ["dots", "paper (NDA vs baseline)", "baseline", *[_arm_label(v) for v in variants],
               *[f"change ({v}) [95% CI], p, Holm p" for v in variants],
               *([f"verdict ({v})" for v in variants] if judged else [])]
    first = results["per_seed"][BASELINE][0]
    verdicts = [f"**Verdict** ({_arm_label(v)}): {results['headline'][v]}." for v in variants] if judged else []
    doubt = counts_in_doubt(results)
    if judged and doubt:  # the words rest on counts the second counter does not confirm
        verdicts = [f"**No verdict**: {doubt}. The verdict words of the primary counter are in the table below "
                    f"and in results.json; they carry no claim."]
    return [
        "# Numerosity (paper: Appendix A, Figure 6 left)", "",
        (f"Claim: {CLAIM}. Paper: the baseline generates 2 to 8 dots; with NDA the count is constrained to 6 "
         "(WGAN-GP in the paper)."), "",
        (f"Ours: size `{results['size']}`, seeds {results['seeds']}, {first['num_samples']} samples per arm and seed; "
         f"loss `{results['runs'][0]['config']['loss']['name']}`, {results['settings']['steps']} generator steps."), "",
        *[line for v in verdicts for line in (v, "")],
        common.table_heading(results["size"], "share of samples at each dot count, mean ± std over seeds; "
                             "change = NDA arm - baseline, Holm over the rows of this table"), "",
        common.markdown_table(headers, claim_rows(results)), "",
        "## Other measures (described, not judged; Holm over the rows of this table)", "",
        common.markdown_table(["measure", "baseline", *[_arm_label(v) for v in variants], *[f"change ({v})" for v in variants]],
                              descriptive_rows(results)), "",
        *agreement_lines(results),
        "## Count histogram (share of samples, pooled over seeds)", "",
        common.markdown_table(["dots", *[_arm_label(name) for name in results["per_seed"]]], _histogram_rows(results)),
        "", f"Statistics: {stats.RULES}.", "",
        "![count histogram](count_histogram.png)", "", "![samples (seed 0)](samples.png)",
    ]


def _histogram_rows(results: dict[str, Any]) -> list[list[str]]:
    shares = {name: pooled_histogram(entries) for name, entries in results["per_seed"].items()}
    counts = sorted(set().union(*shares.values()))
    return [[str(k) + (" (trained)" if k == TARGET else ""), *[f"{share.get(k, 0.0):.3f}" for share in shares.values()]]
            for k in counts]
