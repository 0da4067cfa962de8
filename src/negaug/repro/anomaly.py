"""Anomaly detection with the discriminator (paper, Table 5, at MNIST-5k scale).

Claim: a discriminator trained with Jigsaw NDA separates in-distribution images from OOD images
better than one trained without: average AUROC 0.57 (BigGAN) vs 0.63 (Jigsaw NDA) over OOD
datasets; 0.56 vs 0.63 over CIFAR-10-C corruptions at severity 5.

Protocol (pre-registered in docs/reproduction.md): the two DCGAN arms of `negaug.repro.mnist`
(Table 8's no-NDA and lambda-0.25 runs when they share a runs folder); score = raw D(x) of the
last checkpoint; in-distribution = the last 1,000 MNIST-5k test images (positive class). The
claim's two averages are the headline family (Holm over the two, direction: NDA higher): the mean
AUROC over every procedural corruption that applies to grey images (severity 5; the CIFAR-10-C
analogue) and the mean over the OOD datasets (`dataset/digits`, `dataset/lfw`; Table 5's OOD
datasets). Noise sets are further OOD rows. Per-set rows are descriptive, Holm over the OOD sets.
NDA transforms of the test images are reported apart and enter no average: Jigsaw is the training
negative itself, so its row shows what D was taught, not how it generalises.
"""
from __future__ import annotations

from typing import Any

from negaug import anomaly
from negaug.experiment import load_run
from negaug.repro import common, mnist, plots, stats
from negaug.repro.common import BASELINE, NDA, Study

OOD = {"tiny": "corruption/gaussian_noise,corruption/fog,dataset/digits,nda/jigsaw,noise/uniform",
       "quick": "corruption/all,dataset/digits,dataset/lfw,noise/all,nda/all",
       "full": "corruption/all,dataset/digits,dataset/lfw,noise/all,nda/all"}
HEADLINE = {"mean (corruption)": "corruptions at severity 5 (paper's CIFAR-10-C: 0.56 -> 0.63)",
            "mean (dataset)": "OOD datasets (paper: 0.57 -> 0.63)"}
APART = "nda"  # kinds reported apart: transforms of the test images, the training negative among them
NUM_IN = {"tiny": 64, "quick": 1000, "full": 1000}  # MNIST-5k's test split holds 1000 images
SEVERITY = 5
CLAIM = ("Jigsaw NDA raises the discriminator's mean AUROC against corrupted images and OOD datasets "
         "(paper: 0.56 -> 0.63 and 0.57 -> 0.63)")


def evaluate_arm(run_dir, ood: str, num_in: int, seed: int) -> tuple[dict[str, Any], dict]:
    run = load_run(run_dir)
    clean = run.reference_dataset("test").images[-num_in:]
    return anomaly.evaluate(run.discriminator, clean, ood, severity=SEVERITY, seed=seed)


def run(study: Study) -> dict[str, Any]:
    per_seed: dict[str, list[dict[str, Any]]] = {BASELINE: [], NDA: []}
    differences: dict[str, dict] = {}
    scales: dict[str, float] = {}  # each arm's D: its std on the clean images (a scale-free histogram)
    trained = []
    for seed in study.seeds:
        for arm in mnist.arms(study.size):
            t = common.train_arm(study, arm, seed, mnist.LABEL)
            trained.append(t)
            results, diffs = evaluate_arm(t.run_dir, OOD[study.size], NUM_IN[study.size], seed)
            per_seed[arm.name].append({"seed": seed, **results})
            if seed == study.seeds[0]:
                differences[arm.name] = diffs
                scales[arm.name] = results["in_distribution"]["score_std"]
    summary = summarize(study, per_seed, trained)
    write_plots(study, summary, differences, scales)
    common.write_outputs(study.out_dir, summary, report(summary))
    return summary


def _auroc_tables(per_seed) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(headline, OOD sets, NDA sets): comparisons of the per-seed AUROCs of both arms, each table
    Holm-adjusted on its own; headline = the two means of the claim, with verdict words."""
    first = per_seed[BASELINE][0]

    def table(names, read) -> dict[str, Any]:
        return common.adjust({name: common.compare([read(e, name) for e in per_seed[BASELINE]],
                                                   [read(e, name) for e in per_seed[NDA]]) for name in names})

    sets = list(first["ood"])
    ood = table([n for n in sets if not n.startswith(f"{APART}/")], lambda e, n: e["ood"][n]["auroc"])
    apart = table([n for n in sets if n.startswith(f"{APART}/")], lambda e, n: e["ood"][n]["auroc"])
    groups = [g for g in HEADLINE if g.removeprefix("mean (").rstrip(")") in first["summary"]]
    headline = table(groups, lambda e, g: e["summary"][g.removeprefix("mean (").rstrip(")")]["mean_auroc"])
    for comparison in headline.values():
        comparison["verdict"] = stats.verdict_word(comparison["difference"], comparison["holm_p"], +1)
    return headline, ood, apart


def _smoke_without_verdicts(headline: dict[str, Any], size: str) -> dict[str, Any]:
    """A tiny or quick run judges nothing: its headline rows carry "-" for a verdict."""
    if not common.carries_verdicts(size):
        for comparison in headline.values():
            comparison["verdict"] = "-"
    return headline


def summarize(study: Study, per_seed, trained) -> dict[str, Any]:
    headline, ood, apart = _auroc_tables(per_seed)
    headline = _smoke_without_verdicts(headline, study.size)
    wins = sum(c["difference"] > 0 for c in ood.values())
    verdicts = {name: c["verdict"] for name, c in headline.items()} if common.carries_verdicts(study.size) else {}
    return {
        "experiment": "anomaly", "paper": "Table 5 (small scale: MNIST-5k, DCGAN)", "claim": CLAIM,
        "size": study.size, "seeds": study.seeds,
        "settings": {"preset": mnist.PRESET, **mnist.SIZES[study.size], "ood": OOD[study.size],
                     "num_in": NUM_IN[study.size], "severity": SEVERITY,
                     "arms": {a.name: a.overrides for a in mnist.arms(study.size)}},
        "protocol": {"evaluation": per_seed[BASELINE][0]["protocol"], "discriminator": "last checkpoint",
                     "in_distribution": "the last num_in images of the MNIST-5k test split",
                     "headline": HEADLINE, "apart": f"{APART}/* sets: transforms of the test images, in no average",
                     "statistics": stats.RULES},
        "per_seed": per_seed, "headline": headline, "auroc": {**ood, **apart},
        "ood_sets": list(ood), "nda_sets": list(apart), "verdicts": verdicts,
        "nda_better_on_sets": f"{wins} of {len(ood)}",
        "targets": {"nda_auroc_higher_on_average": all(c["difference"] > 0 for c in headline.values())},
        "runs": common.run_records(trained), "environment": common.environment(),
    }


def write_plots(study: Study, summary, differences, scales: dict[str, float]) -> None:
    table = {**summary["headline"], **summary["auroc"]}  # the claim's two means first
    bars = {arm: {name: (table[name][arm]["mean"], table[name][arm]["std"]) for name in table} for arm in (BASELINE, NDA)}
    plots.grouped_bars(bars, study.out_dir / "auroc.png", ylabel="AUROC (mean ± std over seeds)",
                       title="D as anomaly detector: MNIST-5k test vs OOD", ylim=(0, 1))
    if differences.get(BASELINE):
        anomaly.plot_difference_histograms(differences, study.out_dir / "difference_histograms.png",
                                           title="D(clean) - D(ood) in units of each D's std on clean images, "
                                                 "first seed", scales=scales)


def report(summary: dict[str, Any]) -> list[str]:
    s, full = summary["settings"], common.carries_verdicts(summary["size"])

    def rows(names) -> list[list[str]]:
        return [[name, common.fmt(c[BASELINE]), common.fmt(c[NDA]), common.verdict(c)]
                for name, c in ((n, summary["auroc"][n]) for n in names)]

    head = [[f"{name}: {HEADLINE[name]}", common.fmt(c[BASELINE]), common.fmt(c[NDA]), common.verdict(c),
             c["verdict"] if full else "-"] for name, c in summary["headline"].items()]
    runs = summary["runs"]
    return [
        "# Anomaly detection with D (paper: Table 5, small scale)", "",
        f"Claim: {CLAIM}.", "",
        f"Ours: MNIST-5k, DCGAN width {s['width']}, {s['steps']} generator steps, hinge, Jigsaw-2 NDA "
        f"lambda 0.25; seeds {summary['seeds']}; {s['num_in']} test images as in-distribution; "
        f"corruptions at severity {s['severity']}; score = raw D(x); code "
        f"{str(summary['environment']['versions'].get('negaug_commit'))[:7]} (evaluation), runs: "
        f"{len(runs)} ({sum(r['cached'] for r in runs)} reused).", "",
        common.table_heading(summary["size"], "the paper's two averages, Holm over 2; change = NDA - baseline"), "",
        common.markdown_table(["mean AUROC over", "baseline", "Jigsaw NDA", "change [95% CI]", "verdict"], head), "",
        "## Per OOD set (descriptive; Holm over these rows)", "",
        common.markdown_table(["OOD set", "baseline", "Jigsaw NDA", "change [95% CI]"], rows(summary["ood_sets"])), "",
        f"NDA higher on {summary['nda_better_on_sets']} OOD sets.", "",
        "## NDA transforms of the test images (in no average; Jigsaw is the training negative; Holm over these rows)", "",
        common.markdown_table(["set", "baseline", "Jigsaw NDA", "change [95% CI]"], rows(summary["nda_sets"])), "",
        f"Rules: {stats.RULES}.", "",
        "![AUROC per OOD set](auroc.png)", "", "![D(clean) - D(ood) per D's std](difference_histograms.png)",
    ]
