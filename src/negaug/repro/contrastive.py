"""NDA for contrastive learning (Section 6, Table 6, Figure 9) on a CPU: MoCo-v2 pretrained
without NDA and with Jigsaw, Cutout and Mixup NDA views as extra negatives, then a linear probe
and k-NN on the frozen features, and the cosine distance between x and jigsaw(x) (Figure 9).

Two offline tasks: MNIST-5k digits (the `mnist` pretraining preset) and dot counts, where global
structure decides the label (dots with 3, 4, 5 or 6 dots; labelled by the count; crops kept large
so a positive view keeps every dot). Every arm and seed is a `negaug pretrain` run, cached under
runs_dir by config hash; each is probed with `negaug.experiment.probe_run` (appended to its
probe.json). The paper's claim (Table 6): CIFAR-10 linear-probe accuracy 91.20 -> 92.26 with
Cutout NDA; ours is a small CNN on 32 px offline data for a few hundred steps.
"""
from __future__ import annotations

from typing import Any

from negaug.experiment.probe import probe_run
from negaug.repro import common, plots
from negaug.repro.common import Arm, Study

PRESET = "mnist"
CLAIM = ("NDA views as extra MoCo-v2 negatives improve the linear-probe accuracy "
         "(Table 6: CIFAR-10 91.20 -> 92.26 with Cutout NDA)")
TASKS = {
    "mnist": [],
    "dots": ["data.name=dots", "data.options={count: [3, 4, 5, 6], num_samples: 4000, channels: 1}",
             "augment.crop_scale=[0.85, 1.0]", "augment.flip_prob=0.5"],
}
NDA_ARMS = {"jigsaw": ["nda.transform=jigsaw", "nda.options={k: 2}"], "cutout": ["nda.transform=cutout"],
            "mixup": ["nda.transform=mixup"]}
SIZES = {
    "tiny": {"steps": 3, "width": 4, "batch_size": 32, "queue": 64, "probe_epochs": 2, "tasks": ["mnist"],
             "arms": ["jigsaw"]},
    "quick": {"steps": 200, "width": 16, "batch_size": 128, "queue": 1024, "probe_epochs": 100,
              "tasks": list(TASKS), "arms": list(NDA_ARMS)},
    "full": {"steps": 600, "width": 16, "batch_size": 128, "queue": 1024, "probe_epochs": 100,
             "tasks": list(TASKS), "arms": list(NDA_ARMS)},
}
MEASURES = (("linear probe", "linear_probe"), ("k-NN", "knn"),
            ("cos. distance x vs jigsaw(x)", "cosine_distance/embedding/jigsaw"))


def arms(size: str, task: str) -> list[Arm]:
    """The baseline (no NDA) and one arm per NDA transform, all from the `mnist` preset."""
    s = SIZES[size]
    shared = [f"train.steps={s['steps']}", f"model.options.width={s['width']}", f"data.batch_size={s['batch_size']}",
              f"objective.queue_size={s['queue']}", f"eval.probe_epochs={s['probe_epochs']}", *TASKS[task]]
    if size == "tiny":
        shared += ["train.knn_every=0", "train.checkpoint_every=0", "objective.num_splits=2", "model.head_hidden=16"]
    baseline = Arm(common.BASELINE, PRESET, [*shared, "nda.transform=none"], kind="pretrain")
    return [baseline, *(Arm(name, PRESET, [*shared, *NDA_ARMS[name]], kind="pretrain") for name in s["arms"])]


def run(study: Study) -> dict[str, Any]:
    s = SIZES[study.size]
    per_seed: dict[str, dict[str, list[dict[str, Any]]]] = {}
    trained = []
    for task in s["tasks"]:
        per_seed[task] = {}
        for arm in arms(study.size, task):
            for seed in study.seeds:
                done = common.train_arm(study, arm, seed, f"contrastive-{task}")
                trained.append(done)
                study.progress(f"contrastive {task} {arm.name} seed {seed}: probing")
                entry = probe_run(done.run_dir, seed=seed, device="cpu")
                per_seed[task].setdefault(arm.name, []).append(measures(entry, seed))
    results = summarize(study, per_seed, trained)
    figures = save_figures(study, results)
    common.write_outputs(study.out_dir, results, report(results, figures))
    return results


def measures(entry: dict[str, Any], seed: int) -> dict[str, Any]:
    """The numbers of one probed run, with their protocols."""
    out: dict[str, Any] = {"seed": seed, "step": entry["step"]}
    for _, key in MEASURES:
        result = entry["results"][key]
        out[key] = result["value"]
        out.setdefault("protocols", {})[key] = result.get("protocol", {})
    return out


def summarize(study: Study, per_seed: dict, trained: list) -> dict[str, Any]:
    tables = {}
    for task, by_arm in per_seed.items():
        baseline = by_arm[common.BASELINE]
        tables[task] = {
            key: common.adjust({name: common.compare([r[key] for r in baseline], [r[key] for r in rows])
                                for name, rows in by_arm.items() if name != common.BASELINE})
            | {"baseline": common.spread([r[key] for r in baseline])}
            for _, key in MEASURES}
    return {"experiment": "contrastive", "claim": CLAIM, "size": study.size, "seeds": study.seeds,
            "settings": {"preset": PRESET, **SIZES[study.size], "tasks": {t: TASKS[t] for t in per_seed}},
            "per_seed": per_seed, "tables": tables, "spread_rule": common.SPREAD_RULE,
            "runs": common.run_records(trained), "environment": common.environment()}


def save_figures(study: Study, results: dict[str, Any]) -> list:
    """Bars per task, one per arm (mean ± std over seeds): the linear probe, and Figure 9's
    cosine distance between x and jigsaw(x)."""
    study.out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for key, name, ylabel in (("linear_probe", "linear_probe.png", "linear-probe accuracy"),
                              ("cosine_distance/embedding/jigsaw", "figure9_distance.png",
                               "cosine distance x vs jigsaw(x)")):
        values: dict[str, dict[str, tuple[float, float]]] = {}
        for task, table in results["tables"].items():
            baseline_first = {"baseline": table[key]["baseline"], **table[key]}
            for arm, entry in baseline_first.items():
                stats = entry if arm == "baseline" else entry["nda"]
                label = "no NDA" if arm == "baseline" else f"{arm} NDA"
                values.setdefault(label, {})[task] = (stats["mean"], stats["std"])
        paths.append(plots.grouped_bars(values, study.out_dir / name, ylabel, title=ylabel))
    return paths


def report(results: dict[str, Any], figures: list) -> list[str]:
    s = results["settings"]
    lines = [f"# Contrastive learning with NDA ({results['size']})", "", f"Claim (paper): {results['claim']}.", "",
             f"MoCo-v2 (`negaug pretrain {PRESET}`), small CNN width {s['width']}, {s['steps']} steps of "
             f"{s['batch_size']} images, queue {s['queue']}; seeds {results['seeds']}; linear probe "
             f"{s['probe_epochs']} epochs and k-NN on the frozen query-encoder features of the test split; "
             "cosine distance in the head's embedding, mean over test images. Mean ± std over seeds; "
             + results["spread_rule"] + ".", ""]
    for task, table in results["tables"].items():
        names = [n for n in table[MEASURES[0][1]] if n != "baseline"]
        rows = []
        for label, key in MEASURES:
            cells = [common.fmt(table[key]["baseline"])]
            cells += [f"{common.fmt(table[key][n]['nda'])} ({common.verdict(table[key][n])})" for n in names]
            rows.append([label, *cells])
        lines += [f"## {task}", "", common.markdown_table(["measure", "no NDA", *names], rows), ""]
    lines += [f"![{figure.stem}]({figure.name})" for figure in figures] + [""]
    return lines
