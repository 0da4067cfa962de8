"""The anomaly-detection protocol over many OOD sets, and the comparison of two runs.

    results, differences = evaluate(D, test_images[-10000:], "corruption/all,noise/all")
    rows = compare(results_baseline, results_nda)         # one row per OOD set both evaluated
    print(format_comparison(rows, ("BigGAN", "Jigsaw NDA")))

`results` is JSON-able and carries its protocol; `differences[name]` is D(clean) - D(ood), (N,),
for the paired sets (corruptions, NDA transforms): the histograms of the paper's Figures 4 and 8.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from negaug.anomaly.ood import OODPlan, build_ood, is_paired, plan_ood
from negaug.anomaly.scoring import detection_metrics, score
from negaug.metrics.protocol import library_versions

METRICS = ("auroc", "aupr", "fpr_at_95_tpr")
PROTOCOL_KEYS = ("num_in", "severity", "seed", "score", "positive_class")  # must match to compare


def evaluate(discriminator: nn.Module, clean_images: torch.Tensor, ood: str | list[str] | OODPlan, *,
             severity: int = 5, seed: int = 0, batch_size: int = 256, data_root: str | None = None,
             download: bool = False, on_progress: Callable[[str], None] | None = None) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Score `clean_images` (N, C, H, W) in [-1, 1] (in-distribution) and every OOD set of `ood`.

    Returns (results, differences): results as documented in the module; differences maps each
    paired set to D(clean) - D(ood), float32 (N,). A dataset from an "all" request whose files are
    missing is skipped with a note; one named explicitly raises FileNotFoundError.
    on_progress(name) is called after each set is scored (first "in-distribution").
    """
    plan = ood if isinstance(ood, OODPlan) else plan_ood(ood, clean_images.shape[1])
    scores_in = score(discriminator, clean_images, batch_size=batch_size)
    _progress(on_progress, "in-distribution")
    results: dict[str, Any] = {
        "protocol": protocol(len(scores_in), severity, seed, batch_size),
        "in_distribution": {"num_images": len(scores_in), **_moments(scores_in)},
        "ood": {},
        "skipped": dict(plan.skipped),
    }
    differences: dict[str, torch.Tensor] = {}
    for name in plan.names:
        try:
            images = build_ood(name, clean_images, severity=severity, seed=seed, data_root=data_root,
                               download=download)
        except FileNotFoundError as err:
            if name not in plan.optional:
                raise
            results["skipped"][name] = str(err).splitlines()[0]
            _progress(on_progress, name)
            continue
        scores_out = score(discriminator, images, batch_size=batch_size)
        entry = {**detection_metrics(scores_in, scores_out), "num_images": len(scores_out), **_moments(scores_out)}
        if name.startswith("corruption/"):
            entry["severity"] = severity
        if is_paired(name):
            differences[name] = scores_in - scores_out
            entry["difference_mean"] = float(differences[name].mean())
        results["ood"][name] = entry
        _progress(on_progress, name)
    results["summary"] = summarize(results["ood"])
    return results, differences


def protocol(num_in: int, severity: int, seed: int, batch_size: int) -> dict[str, Any]:
    return {
        "score": "raw discriminator output D(x) (no label)",
        "positive_class": "in-distribution",
        "num_in": num_in,
        "severity": severity,
        "seed": seed,
        "batch_size": batch_size,
        "images": "the last num_in images of the reference split; corruptions and NDA transforms are "
                  "of those same images (paired), other sets use their own last images",
        "aupr": "average precision with in-distribution positive (AUPR-In)",
        "fpr_at_95_tpr": "share of OOD scoring >= the threshold that keeps 95% of in-distribution",
        "corruptions": "CIFAR-10-C style, per-severity constants of make_cifar_c.py (Hendrycks & "
                       "Dietterich), computed by negaug; frost omitted",
        "versions": library_versions(),
    }


def summarize(ood_results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Mean of each metric over all sets and per kind (corruption: the paper's CIFAR-10-C average)."""
    groups: dict[str, list[dict[str, Any]]] = {"all": list(ood_results.values())}
    for name, entry in ood_results.items():
        groups.setdefault(name.split("/", 1)[0], []).append(entry)
    return {
        group: {"num_sets": len(entries), **{f"mean_{m}": float(np.mean([e[m] for e in entries])) for m in METRICS}}
        for group, entries in groups.items() if entries
    }


def compare(results_a: dict[str, Any], results_b: dict[str, Any], strict: bool = True) -> list[dict[str, Any]]:
    """Side-by-side metrics of two runs' results, one row per OOD set that both evaluated.

    Row: {"ood": name, "<metric>_a", "<metric>_b", "<metric>_delta" (b - a)} for auroc, aupr and
    fpr_at_95_tpr, and a last row "mean" over those common sets. strict: the protocols (number of
    in-distribution images, severity, seed, score) must agree, else ValueError naming the key.
    """
    if strict:
        for key in PROTOCOL_KEYS:
            a, b = results_a["protocol"].get(key), results_b["protocol"].get(key)
            if a != b:
                raise ValueError(f"results differ in protocol '{key}' ({a!r} vs {b!r}); rerun with the "
                                 f"same settings or pass strict=False")
    common = [name for name in results_a["ood"] if name in results_b["ood"]]
    if not common:
        raise ValueError("the two results share no OOD set")
    rows = [_row(name, results_a["ood"][name], results_b["ood"][name]) for name in common]
    mean = {"ood": "mean"}
    for key in rows[0]:
        if key != "ood":
            mean[key] = float(np.mean([row[key] for row in rows]))
    return rows + [mean]


def _row(name: str, a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"ood": name}
    for metric in METRICS:
        row[f"{metric}_a"], row[f"{metric}_b"] = a[metric], b[metric]
        row[f"{metric}_delta"] = b[metric] - a[metric]
    return row


def format_results(results: dict[str, Any]) -> str:
    """A Markdown table: one row per OOD set, then the means per kind."""
    lines = ["| OOD set | AUROC | AUPR | FPR@95TPR | images |", "|---|---|---|---|---|"]
    for name, entry in results["ood"].items():
        lines.append(f"| {name} | {entry['auroc']:.3f} | {entry['aupr']:.3f} | "
                     f"{entry['fpr_at_95_tpr']:.3f} | {entry['num_images']} |")
    for group, means in results.get("summary", {}).items():
        lines.append(f"| mean ({group}, n={means['num_sets']}) | {means['mean_auroc']:.3f} | "
                     f"{means['mean_aupr']:.3f} | {means['mean_fpr_at_95_tpr']:.3f} | |")
    return "\n".join(lines)


def format_comparison(rows: list[dict[str, Any]], labels: tuple[str, str] = ("A", "B")) -> str:
    """A Markdown table of `compare` rows: AUROC and FPR@95TPR of both runs and the AUROC change."""
    a, b = labels
    lines = [f"| OOD set | AUROC {a} | AUROC {b} | change | FPR@95 {a} | FPR@95 {b} |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['ood']} | {row['auroc_a']:.3f} | {row['auroc_b']:.3f} | "
                     f"{row['auroc_delta']:+.3f} | {row['fpr_at_95_tpr_a']:.3f} | {row['fpr_at_95_tpr_b']:.3f} |")
    return "\n".join(lines)


def _moments(scores: torch.Tensor) -> dict[str, float]:
    return {"score_mean": float(scores.mean()), "score_std": float(scores.std()) if len(scores) > 1 else 0.0}


def _progress(callback: Callable[[str], None] | None, name: str) -> None:
    if callback is not None:
        callback(name)
