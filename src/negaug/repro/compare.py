"""Does NDA help on *your* data? `negaug compare PRESET --arms "..." "..." --seeds 5 --out DIR`.

The machinery of the reproductions, for any preset or config file and any overrides: each arm is
the preset plus its overrides, trained with every seed (cached by config hash under `runs_dir`, so
a stopped comparison resumes and a rerun only evaluates), evaluated on the **validation split**
(`negaug eval --split val` of each run: the run's own metrics and feature space), and compared
with the first arm: per metric, each arm's difference with its 95% CI, Welch's p and Holm's
correction over the arms (`negaug.repro.stats`). Validation is what a choice should read; report
the chosen arm's test numbers afterwards with `negaug eval RUN` (test split).

    from negaug.repro import compare
    summary = compare.run_comparison("default", ["nda.transform=none", "nda.lam=0.5"], seeds=[0, 1, 2],
                                     out_dir="scratch/compare")

`kind="pretrain"` compares arms of a `negaug pretrain` preset or config (MoCo-v2) the same way:
each run is probed on the validation split (`negaug probe --split val`: linear probe, k-NN,
cosine distances), e.g. `negaug compare mnist --kind pretrain --arms "" "optim.lr=0.12"`.
"""
from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from negaug.experiment import kinds
from negaug.experiment.config import preset_names
from negaug.experiment.evaluate import evaluate_run
from negaug.experiment.pretrain_config import pretrain_preset_names
from negaug.experiment.probe import probe_run
from negaug.files import check_folder
from negaug.repro import common, plots, stats
from negaug.repro.common import Arm, Study

MAX_ARMS = 16
KINDS = ("gan", "pretrain")  # negaug train / negaug pretrain runs


def _evaluate_on_val(kind: str, run_dir: Path, seed: int) -> dict[str, float]:
    """The run's own metrics on the validation split: `negaug eval --split val` of a GAN run, the
    probe (`negaug probe --split val`) of a pretrained encoder."""
    if kind == "pretrain":
        return _values(probe_run(run_dir, seed=seed, split="val")["results"])
    return _values(evaluate_run(run_dir, seed=seed, plots=False, split="val")["results"])


def parse_arms(texts: Sequence[str]) -> list[list[str]]:
    """Each arm: a string of space-separated `section.key=value` overrides ("" = the preset as is)."""
    if not 2 <= len(texts) <= MAX_ARMS:
        raise ValueError(f"--arms needs 2 to {MAX_ARMS} arms (the first is the baseline), got {len(texts)}")
    arms = []
    for text in texts:
        try:
            overrides = shlex.split(text)
        except ValueError as err:
            raise ValueError(f"--arms: cannot split {text!r} into overrides ({err})") from None
        if any("=" not in item for item in overrides):
            raise ValueError(f"--arms: {text!r} is not a list of section.key=value overrides")
        arms.append(overrides)
    if len({tuple(a) for a in arms}) != len(arms):
        raise ValueError("--arms: two arms are the same; give each arm its own overrides")
    return arms


def _label(overrides: list[str]) -> str:
    return " ".join(overrides) or "(preset as is)"


def run_comparison(preset: str, arm_overrides: Sequence[Sequence[str]], seeds: Sequence[int], out_dir: str | Path,
                   runs_dir: str | Path | None = None, on_progress: Callable[[str], None] | None = None,
                   kind: str = "gan") -> dict[str, Any]:
    """Train and evaluate every (arm, seed), then write OUT/results.json, OUT/report.md and
    OUT/comparison.png; returns the summary. Every arm's config is checked before any training."""
    check_folder(out_dir, "--out")
    if runs_dir is not None:
        check_folder(runs_dir, "--runs-dir")
    if kind not in KINDS:
        raise ValueError(f"--kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if kind == "gan" and preset in pretrain_preset_names() and preset not in preset_names():
        raise ValueError(f"'{preset}' is a negaug pretrain preset; compare its arms with --kind pretrain")
    for overrides in arm_overrides:  # a bad key or value fails now, before any run
        kinds.get(kind).load_config(preset, [*overrides, "train.progress=false"])
    study = Study(Path(out_dir), "full", list(seeds), runs_dir, on_progress)
    arms = [Arm(f"arm{i}", preset, list(o), kind) for i, o in enumerate(arm_overrides)]
    per_arm: dict[str, list[dict[str, float]]] = {}
    trained = []
    for arm in arms:
        for seed in study.seeds:
            t = common.train_arm(study, arm, seed, "compare")
            trained.append(t)
            study.progress(f"{_label(arm.overrides)} seed {seed}: evaluating on the validation split")
            per_arm.setdefault(_label(arm.overrides), []).append(_evaluate_on_val(kind, t.run_dir, seed))
    summary = summarize(preset, study, per_arm, trained)
    summary["kind"] = kind
    write_figure(study, summary)
    common.write_outputs(study.out_dir, summary, report(summary))
    return summary


def _values(results: dict[str, dict]) -> dict[str, float]:
    """{result key: value} for each scalar result (pr gives precision and recall)."""
    values = {}
    for key, result in results.items():
        extras = [name for name in ("precision", "recall") if isinstance(result.get(name), (int, float))]
        for name in extras:
            values[name] = float(result[name])
        if not extras and isinstance(result.get("value"), (int, float)):
            values[key] = float(result["value"])
    return values


def summarize(preset: str, study: Study, per_arm, trained) -> dict[str, Any]:
    labels = list(per_arm)
    metrics = sorted(set.intersection(*(set(v) for entries in per_arm.values() for v in entries)))
    base = labels[0]
    tables = {m: common.adjust({label: common.compare([e[m] for e in per_arm[base]], [e[m] for e in per_arm[label]])
                                for label in labels[1:]}) for m in metrics}
    return {"experiment": "compare", "preset": preset, "seeds": study.seeds, "baseline": base, "arms": labels,
            "split": "val", "metrics": metrics,
            "spreads": {m: {label: common.spread([e[m] for e in per_arm[label]]) for label in labels} for m in metrics},
            "comparisons": tables, "statistics": stats.RULES, "per_seed": per_arm,
            "runs": common.run_records(trained), "environment": common.environment()}


def report(summary: dict[str, Any]) -> list[str]:
    command = "probe" if summary.get("kind") == "pretrain" else "eval"
    commit = summary["environment"]["versions"].get("negaug_commit")
    lines = [f"# Comparison of {len(summary['arms'])} arms of `{summary['preset']}` on the validation split", "",
             f"Seeds {summary['seeds']}; baseline: `{summary['baseline']}`; each run's own metrics and feature space "
             f"(`negaug {command} --split val`). Code: commit {commit}.", ""]
    for metric in summary["metrics"]:
        rows = []
        for label in summary["arms"]:
            c = summary["comparisons"][metric].get(label)
            rows.append([f"`{label}`", common.fmt(summary["spreads"][metric][label]),
                         "-" if c is None else stats.format_difference(c)])
        lines += [f"## {metric}", "", common.markdown_table(["arm", "mean ± std", "change [95% CI], p, Holm p"], rows), ""]
    return lines + [f"Statistics: {summary['statistics']}.", "", "![comparison](comparison.png)"]


FIGURE_FIRST = ("fid", "kid", "precision", "recall", "linear_probe", "knn")  # what a reader looks for first


def figure_metrics(metrics: list[str], count: int = 4) -> list[str]:
    """The `count` metrics the figure shows: FID, KID, precision, recall (GAN runs) or the probe and
    k-NN accuracy (pretraining runs) before any other (e.g. cosine distances)."""
    def rank(metric: str) -> int:
        return next((i for i, prefix in enumerate(FIGURE_FIRST) if metric.startswith(prefix)), len(FIGURE_FIRST))
    return sorted(metrics, key=lambda m: (rank(m), m))[:count]


def arm_labels(labels: list[str]) -> dict[str, str]:
    """Short figure labels: each arm's overrides that not every arm shares (so arms that differ
    only at the end of a long override list still get different labels); the full lists are in
    report.md."""
    tokens = [label.split(" ") for label in labels]
    shared = set.intersection(*(set(t) for t in tokens))
    short = {label: " ".join(tok for tok in t if tok not in shared) or "(shared settings only)" for label, t in zip(labels, tokens)}
    return short if len(set(short.values())) == len(short) else {label: label for label in labels}


def write_figure(study: Study, summary: dict[str, Any]) -> None:
    names = arm_labels(summary["arms"])
    values = {metric: {names[label]: summary["spreads"][metric][label]["values"] for label in summary["arms"]}
              for metric in figure_metrics(summary["metrics"])}
    plots.arm_points(values, study.out_dir / "comparison.png", ylabel="value (validation split)",
                     title=f"{summary['preset']}: seeds (dots), means with 95% CI")
