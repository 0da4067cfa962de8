"""NDA for contrastive learning (Section 6, Table 6, Figure 9, Theorem 2) on a CPU: MoCo-v2
pretrained without NDA and with Jigsaw, Cutout and Mixup NDA views as extra negatives (eq. 8),
then measured on held-out images.

Two offline tasks. MNIST-5k digits (the `mnist` pretraining preset) is the main task: its
linear-probe accuracy is the pre-registered claim table (docs/reproduction.md). Dot counts
(dots with 3, 4, 5 or 6 dots, labelled by the count, where global structure decides the label;
crops kept large so a positive view keeps every dot) is a supporting synthetic task, not in the
paper. Every arm and seed is a `negaug pretrain` run, cached under runs_dir by config hash.

Measures of each run (every one with its protocol in results.json):
- linear probe and k-NN on the frozen query-encoder features (`negaug.experiment.probe_run`,
  appended to the run's probe.json); Table 6's claim is the linear probe;
- Figure 9's paired measure: the cosine distance 1 - cos(r(x), r(jigsaw(x))) (jigsaw k = 2), mean
  over the test images, in the head's embedding (where InfoNCE compares) and in the encoder's
  features (what the probe uses), next to its scale: the same distance between x and another test
  image; their ratio per seed;
- Theorem 2 at the level of supports: the held-out AUROC of a logistic regression between r(x)
  and r(T(x)) for each NDA transform T of the arms (`negaug.experiment.separation`: test images
  split by a seeded permutation into a fitted and a measured half; every arm on the same images
  and NDA draws), with the same measure of the initial weights of each seed as the reference (an
  untrained CNN already separates some transforms).
Each NDA arm is compared with no NDA on every row (Welch, 95% CI, Holm over the claim table and
over each supporting table; `negaug.repro.stats`). The paper: CIFAR-10 linear probe 91.20 -> 92.26
with Cutout NDA (Table 6); ours is a small CNN on 32 px offline data for a few hundred steps.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from negaug.experiment.pretrain_config import load_pretrain_config
from negaug.experiment.probe import FIGURE9_TRANSFORM, probe_run
from negaug.experiment.separation import initial_separation, nda_separation
from negaug.repro import common, plots, stats
from negaug.repro.common import Arm, Study

PRESET = "mnist"
CLAIM = ("NDA views as extra MoCo-v2 negatives improve the linear-probe accuracy "
         "(Table 6: CIFAR-10 91.20 -> 92.26 with Cutout NDA)")
CLAIM_TASK, CLAIM_KEY = "mnist", "linear_probe"  # the pre-registered claim table (docs/reproduction.md)
TASK_ROLES = {"mnist": "MNIST-5k digits: the main task",
              "dots": "dot counts: a supporting synthetic task (not in the paper)"}
TASKS = {
    "mnist": [],
    "dots": ["data.name=dots", "data.options={count: [3, 4, 5, 6], num_samples: 4000, channels: 1}",
             "augment.crop_scale=[0.85, 1.0]", "augment.flip_prob=0.5"],
}
NDA_ARMS = {"jigsaw": ["nda.transform=jigsaw", "nda.options={k: 2}"], "cutout": ["nda.transform=cutout"],
            "mixup": ["nda.transform=mixup"]}
SIZES = {
    "tiny": {"steps": 3, "width": 4, "batch_size": 32, "queue": 64, "probe_epochs": 2, "tasks": ["mnist"],
             "arms": ["jigsaw"], "separator_epochs": 5},
    "quick": {"steps": 200, "width": 16, "batch_size": 128, "queue": 1024, "probe_epochs": 100,
              "tasks": list(TASKS), "arms": list(NDA_ARMS), "separator_epochs": 100},
    "full": {"steps": 600, "width": 16, "batch_size": 128, "queue": 1024, "probe_epochs": 100,
             "tasks": list(TASKS), "arms": list(NDA_ARMS), "separator_epochs": 100},
}
SEPARATOR = {"split": "test", "fit_fraction": 0.5, "seed": 0}  # the same held-out split and NDA draws for every run


def arms(size: str, task: str) -> list[Arm]:
    """The baseline (no NDA) and one arm per NDA transform, all from the `mnist` preset."""
    s = SIZES[size]
    shared = [f"train.steps={s['steps']}", f"model.options.width={s['width']}", f"data.batch_size={s['batch_size']}",
              f"objective.queue_size={s['queue']}", f"eval.probe_epochs={s['probe_epochs']}", *TASKS[task]]
    if size == "tiny":
        shared += ["train.knn_every=0", "train.checkpoint_every=0", "objective.num_splits=2", "model.head_hidden=16"]
    baseline = Arm(common.BASELINE, PRESET, [*shared, "nda.transform=none"], kind="pretrain")
    return [baseline, *(Arm(name, PRESET, [*shared, *NDA_ARMS[name]], kind="pretrain") for name in s["arms"])]


@dataclass(frozen=True)
class Measure:
    """One row of a task's tables: the per-seed key, its report label, and the direction the paper
    claims for an NDA arm (+1: higher), or None for a descriptive row (difference and CI, no test
    of a claim, outside every Holm family)."""

    key: str
    label: str
    direction: int | None


def measure_rows(transforms: list[str]) -> list[Measure]:
    """The rows of a task: probes, Figure 9's paired measure with its scale and ratio in two
    spaces, and one separator AUROC per NDA transform of the arms."""
    figure9 = FIGURE9_TRANSFORM[0]
    rows = [Measure("linear_probe", "linear-probe accuracy (Table 6)", 1), Measure("knn", "k-NN accuracy", 1)]
    for space, where in (("embedding", "head's embedding"), ("features", "encoder features")):
        rows += [Measure(f"cosine_distance/{space}/{figure9}",
                         f"Figure 9's paired measure: cos. distance x vs {figure9}(x), {where}", 1),
                 Measure(f"cosine_distance/{space}/other_image",
                         f"its scale: cos. distance x vs another test image, {where}", None),
                 Measure(f"distance_ratio/{space}/{figure9}", f"ratio paired / scale, {where}", None)]
    rows += [Measure(f"separator_auroc/features/{name}",
                     f"Theorem 2: held-out AUROC of a linear separator r(x) vs r({name}(x)), encoder features", 1)
             for name in transforms]
    return rows


def arm_transforms(size: str, task: str) -> dict[str, dict]:
    """{transform: options} of the task's NDA arms, read from their resolved configs (what they trained with)."""
    out = {}
    for arm in arms(size, task)[1:]:
        nda = load_pretrain_config(arm.preset, arm.overrides).nda
        out[nda.transform] = dict(nda.options)
    return out


def run(study: Study) -> dict[str, Any]:
    s = SIZES[study.size]
    per_seed: dict[str, dict[str, list[dict[str, Any]]]] = {}
    trained, untrained = [], {}
    for task in s["tasks"]:
        per_seed[task], transforms = {}, arm_transforms(study.size, task)
        for arm in arms(study.size, task):
            for seed in study.seeds:
                done = common.train_arm(study, arm, seed, f"contrastive-{task}")
                trained.append(done)
                study.progress(f"contrastive {task} {arm.name} seed {seed}: probing")
                entry = probe_run(done.run_dir, seed=seed, device="cpu")
                study.progress(f"contrastive {task} {arm.name} seed {seed}: separating r(x) from r(NDA(x))")
                separation = nda_separation(done.run_dir, transforms, epochs=s["separator_epochs"],
                                            device="cpu", **SEPARATOR)
                per_seed[task].setdefault(arm.name, []).append(measures(entry, separation, seed, list(transforms)))
        untrained[task] = initial_separations(study, task, transforms)
    results = summarize(study, per_seed, trained, untrained)
    figures = save_figures(study, results)
    common.write_outputs(study.out_dir, results, report(results, figures))
    return results


def initial_separations(study: Study, task: str, transforms: dict[str, dict]) -> list[dict[str, Any]]:
    """Per seed, the separator AUROCs of the weights every arm of that seed starts from (the reference)."""
    study.progress(f"contrastive {task}: separating r(x) from r(NDA(x)) before training")
    baseline = arms(study.size, task)[0]
    records = []
    for seed in study.seeds:
        config = load_pretrain_config(baseline.preset, [*baseline.overrides, f"train.seed={seed}"])
        found = initial_separation(config, transforms, epochs=SIZES[study.size]["separator_epochs"], device="cpu",
                                   **SEPARATOR)
        records.append({"seed": seed, **{key: r["value"] for key, r in found.items()},
                        "protocols": {key: r["protocol"] for key, r in found.items()}})
    return records


def measures(entry: dict[str, Any], separation: dict[str, Any], seed: int, transforms: list[str]) -> dict[str, Any]:
    """The numbers of one run (`measure_rows`), with their protocols; a ratio is paired / scale of the same run."""
    found = {**entry["results"], **separation}
    out: dict[str, Any] = {"seed": seed, "step": entry["step"], "protocols": {}}
    for row in measure_rows(transforms):
        if row.key.startswith("distance_ratio/"):
            continue
        out[row.key] = found[row.key]["value"]
        out["protocols"][row.key] = found[row.key].get("protocol", {})
    for space in ("embedding", "features"):
        paired = out[f"cosine_distance/{space}/{FIGURE9_TRANSFORM[0]}"]
        out[f"distance_ratio/{space}/{FIGURE9_TRANSFORM[0]}"] = paired / out[f"cosine_distance/{space}/other_image"]
    return out


def summarize(study: Study, per_seed: dict, trained: list, untrained: dict | None = None) -> dict[str, Any]:
    """Tables per task (`judge`), and `untrained[task]`: per-seed separator AUROCs before training,
    summarised as "before_training" (mean ± std over seeds; a reference, compared with nothing)."""
    untrained = untrained or {}
    tables, families, rows_of = {}, {}, {}
    for task, by_arm in per_seed.items():
        rows = measure_rows(list(arm_transforms(study.size, task)))
        baseline = by_arm[common.BASELINE]
        tables[task] = {row.key: {name: common.compare([r[row.key] for r in baseline], [r[row.key] for r in records])
                                  for name, records in by_arm.items() if name != common.BASELINE}
                        | {"baseline": common.spread([r[row.key] for r in baseline])} for row in rows}
        families[task] = judge(tables[task], rows, task, study.size)
        rows_of[task] = [{"key": r.key, "label": r.label, "direction": r.direction} for r in rows]
    return {"experiment": "contrastive", "claim": CLAIM, "size": study.size, "seeds": study.seeds,
            "settings": {"preset": PRESET, **SIZES[study.size], "separator": SEPARATOR,
                         "tasks": {t: {"role": TASK_ROLES[t], "overrides": TASKS[t]} for t in per_seed}},
            "per_seed": per_seed, "rows": rows_of, "tables": tables, "families": families,
            "before_training": {task: {key: common.spread([r[key] for r in records]) for key in records[0]
                                       if key.startswith("separator_auroc/")} for task, records in untrained.items()},
            "before_training_per_seed": untrained,
            "statistics": stats.RULES, "runs": common.run_records(trained), "environment": common.environment()}


def judge(table: dict[str, dict], rows: list[Measure], task: str, size: str) -> dict[str, list[str]]:
    """Holm over each family of `table` (the claim table: MNIST-5k's linear probe; the supporting
    table: every other row with a direction), then each comparison's family and verdict word (at
    the full size only; "-" at smoke sizes, "descriptive" on rows without a direction), in place."""
    families: dict[str, list[str]] = {"claim": [], "supporting": []}
    for row in rows:
        if row.direction is not None:
            families["claim" if (task, row.key) == (CLAIM_TASK, CLAIM_KEY) else "supporting"].append(row.key)
    for keys in families.values():
        stats.adjust_family({f"{key} | {arm}": table[key][arm] for key in keys for arm in table[key] if arm != "baseline"})
    for row in rows:
        family = next((name for name, keys in families.items() if row.key in keys), "descriptive")
        for arm, comparison in table[row.key].items():
            if arm == "baseline":
                continue
            comparison.update(family=family, direction=row.direction)
            if row.direction is None:
                comparison["verdict"] = "descriptive"
            elif common.carries_verdicts(size):
                comparison["verdict"] = stats.verdict_word(comparison["difference"], comparison["holm_p"], row.direction)
            else:
                comparison["verdict"] = "-"
    return families


def save_figures(study: Study, results: dict[str, Any]) -> list:
    """Bars per task, one per arm (mean ± std over seeds): the linear probe; Figure 9's paired
    distance in the head's embedding next to its scale; the separator AUROC per NDA transform."""
    study.out_dir.mkdir(parents=True, exist_ok=True)
    figure9 = FIGURE9_TRANSFORM[0]
    panels = (("linear_probe.png", "linear-probe accuracy", {"": "linear_probe"}),
              ("figure9_distance.png", "cosine distance in the head's embedding",
               {f" x vs {figure9}(x)": f"cosine_distance/embedding/{figure9}",
                " x vs another image (scale)": "cosine_distance/embedding/other_image"}),
              ("separator_auroc.png", "held-out AUROC, r(x) vs r(NDA(x)), features",
               {f" {name}": f"separator_auroc/features/{name}" for name in NDA_ARMS}))
    paths = []
    for name, ylabel, groups in panels:
        values: dict[str, dict[str, tuple[float, float]]] = {}
        for task, table in results["tables"].items():
            for suffix, key in groups.items():
                if key not in table:
                    continue
                for arm, entry in {"baseline": table[key]["baseline"], **table[key]}.items():
                    spread = entry if arm == "baseline" else entry["nda"]
                    label = "no NDA" if arm == "baseline" else f"{arm} NDA"
                    values.setdefault(label, {})[task + suffix] = (spread["mean"], spread["std"])
        paths.append(plots.grouped_bars(values, study.out_dir / name, ylabel, title=ylabel))
    return paths


def report(results: dict[str, Any], figures: list) -> list[str]:
    lines = [f"# Contrastive learning with NDA ({results['size']})", "", f"Claim (paper): {results['claim']}.", "",
             *protocol_lines(results), ""]
    for task, table in results["tables"].items():
        rows = [Measure(**r) for r in results["rows"][task]]
        lines += [f"## {results['settings']['tasks'][task]['role']}", ""]
        for family in ("claim", "supporting"):
            keys = results["families"][task][family]
            if not keys:
                continue
            shown = [r for r in rows if r.key in keys or (family == "supporting" and r.direction is None)]
            count = sum(len(table[k]) - 1 for k in keys)
            comparisons = f"{count} comparison{'s' if count != 1 else ''}"
            what = (f"Table 6's claim, pre-registered; Holm over its {comparisons}" if family == "claim" else
                    f"supporting measures; Holm over the {comparisons} with a direction, "
                    "scale and ratio rows descriptive")
            heading = common.table_heading(results["size"], what) if family == "claim" else f"## Table ({what})"
            lines += ["#" + heading, "", table_markdown(table, shown), ""]
        lines += before_training_lines(results.get("before_training", {}).get(task, {}))
    lines += [f"![{figure.stem}]({figure.name})" for figure in figures] + [""]
    return lines


def before_training_lines(before: dict[str, dict]) -> list[str]:
    """The separator AUROCs of the initial weights (the reference a trained encoder is read against)."""
    if not before:
        return []
    values = "; ".join(f"r(x) vs r({key.rsplit('/', 1)[1]}(x)) {common.fmt(spread)}" for key, spread in before.items())
    return [(f"Before training (the initial weights of each seed, which every arm of that seed starts from), "
             f"the held-out separator AUROC in the encoder features: {values}."), ""]


def table_markdown(table: dict[str, dict], rows: list[Measure]) -> str:
    """One line per (measure, NDA arm): no NDA, the arm, the difference with its CI and p-values, the verdict."""
    lines = []
    for row in rows:
        arms_of_row = [arm for arm in table[row.key] if arm != "baseline"]
        for i, arm in enumerate(arms_of_row):
            c = table[row.key][arm]
            change = (stats.format_difference(c) if row.direction is not None
                      else stats.format_difference({"difference": c["difference"], "ci95": c["ci95"]}))
            lines.append([row.label if i == 0 else "", arm, common.fmt(table[row.key]["baseline"]), common.fmt(c["nda"]),
                          change, c["verdict"]])
    return common.markdown_table(["measure", "NDA arm", "no NDA", "with NDA",
                                  "difference [95% CI], p, Holm p", "verdict (paper: higher)"], lines)


def protocol_lines(results: dict[str, Any]) -> list[str]:
    s, figure9 = results["settings"], FIGURE9_TRANSFORM[0]
    separator = s["separator"]
    tasks = "; ".join(f"{t}: {v['role']}" for t, v in s["tasks"].items())
    return [
        (f"MoCo-v2 (`negaug pretrain {PRESET}`), small CNN width {s['width']}, {s['steps']} steps of "
         f"{s['batch_size']} images, queue {s['queue']}; seeds {results['seeds']}. Tasks: {tasks}."), "",
        (f"- Probes: linear probe ({s['probe_epochs']} epochs) and k-NN on the frozen query-encoder features, "
         "trained on the train split, measured on the test split."),
        (f"- Figure 9's paired measure: 1 - cos(r(x), r({figure9}(x))) ({figure9} k = {FIGURE9_TRANSFORM[1]['k']}), "
         "mean over the test images, in the head's embedding (where InfoNCE compares) and in the encoder's "
         "features (what the probe uses); its scale: the same distance between x and another test image (the "
         "one before it in the split's fixed order, not sorted by class); ratio = paired / scale, per seed."),
        (f"- Theorem 2 (supports): the {separator['split']} images split by a seeded permutation (seed "
         f"{separator['seed']}) into a fitted part ({separator['fit_fraction']:.0%}) and a disjoint measured "
         f"part; a logistic regression ({s['separator_epochs']} epochs) fitted on r(x) vs r(T(x)) of the first, "
         "its AUROC on the second, for each NDA transform T of the arms; every run sees the same images and "
         "NDA draws, and none of them trained its encoder."),
        (f"- Statistics: {results['statistics']}. The claim table is pre-registered (docs/reproduction.md); "
         "dots is a supporting synthetic task, not in the paper. Mean ± std over seeds."),
    ]
