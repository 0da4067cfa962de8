"""The paper's ablations that fit a CPU, under the pre-registered protocol (docs/reproduction.md,
"Protocol"): `negaug repro lambda | pda | transforms | appendix_o | less_data`.

Every table compares arms of the `default` preset (DCGAN width 32, spectral-norm D, hinge) on
MNIST-5k trained with the same budget and seeds; only the named settings differ. Each arm is
judged on the **validation** split (400 images: what a user would select on) and reported on the
**test** split (1,000 images): FID, KID and precision/recall of the EMA generator in the features
of the offline classifier trained on the training split (3,600 images), next to the real-vs-real
floor of held-out images. Each comparison is an arm against the table's baseline (no
augmentation): Welch's difference with its 95% CI, Holm-adjusted over the table, and a verdict
word against the paper's direction (`negaug.repro.stats`).

- `lambda` (Table 8): Jigsaw with lambda in {1 (no NDA), 0.75, 0.5, 0.25, 0.15}.
- `pda` (Table 1): jigsaw, stitch, cutout, cutmix, mixup, random_crop, hflip, gaussian_noise,
  each as positive augmentation (PDA: real images replaced with probability 0.5) and as NDA.
- `transforms` (Table 2 beyond Jigsaw): stitch, cutout, cutmix, mixup, jigsaw and the Appendix B
  mixture policy as NDA.
- `appendix_o` (Appendix O): Jigsaw with the identity permutation removed vs allowed; vflip NDA
  with p = 1 vs p = 0.5.
- `less_data` (Appendix E's question): 10%, 25% and 100% of the training split, without and with
  Jigsaw NDA: validation FID over training steps and the discriminator's output gap between its
  training images and held-out validation images (does NDA delay D's overfitting?).

Trained runs are cached by config hash under `runs_dir` (so tables share arms: the baseline and
Jigsaw lambda 0.25 appear in several), and each evaluated run also leaves a small record in
`OUT/arms/` that a rerun reuses without its checkpoints: a stopped study resumes where it stopped.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from negaug import data, nda
from negaug.experiment import kinds, load_run
from negaug.files import write_atomically
from negaug.metrics import evaluate_generator, evaluate_samples, features, find_metric
from negaug.repro import common, plots, stats
from negaug.repro.common import Arm, Study

PRESET = "default"
LABEL = "ablation"  # run-folder prefix
SIZES: dict[str, dict[str, Any]] = {
    # steps: generator steps (the default preset trains 2000); eval_every: validation FID during training
    "tiny": {"steps": 4, "width": 8, "batch_size": 16, "eval_every": 2, "num_val": 128, "num_test": 128},
    "quick": {"steps": 300, "width": 32, "batch_size": 64, "eval_every": 100, "num_val": 400, "num_test": 1000},
    "full": {"steps": 2000, "width": 32, "batch_size": 64, "eval_every": 250, "num_val": 400, "num_test": 1000},
}
METRICS = ["fid", "kid", "pr"]
PAPER_BASELINE = 18.64  # CIFAR-10 BigGAN FID without augmentation (Tables 1, 2, 8)


@dataclass(frozen=True)
class Setting:
    """One arm of a table: its label, its overrides over the study preset, the paper's FID."""

    label: str
    overrides: tuple[str, ...]
    paper_fid: float | None = None


BASELINE = Setting("no augmentation", ("nda.transform=none",), PAPER_BASELINE)
TABLE1 = {"jigsaw": (98.09, 12.61), "cutout": (79.72, 14.69), "stitch": (108.69, 13.97), "mixup": (70.64, 17.29),
          "cutmix": (90.81, 15.01), "random_crop": (20.02, 15.05), "hflip": (16.65, 124.32),
          "gaussian_noise": (44.41, 18.72)}  # transform: (PDA FID, NDA FID), CIFAR-10


def _nda(name: str) -> tuple[str, ...]:
    return () if name == "jigsaw" else (f"nda.transform={name}",)


TABLES: dict[str, list[Setting]] = {
    "lambda": [BASELINE, Setting("lambda 0.75", ("nda.lam=0.75",), 16.61), Setting("lambda 0.5", ("nda.lam=0.5",), 14.95),
               Setting("lambda 0.25", (), 12.61),
               Setting("lambda 0.15", ("nda.lam=0.15",), 13.01)],
    "pda": [BASELINE] + [s for name, (pda, nda) in TABLE1.items() for s in (
        Setting(f"PDA {name}", ("nda.transform=none", f"nda.positive={name}"), pda),
        Setting(f"NDA {name}", _nda(name), nda))],
    "transforms": [BASELINE, Setting("NDA jigsaw", (), 12.61), Setting("NDA stitch", _nda("stitch"), 13.97),
                   Setting("NDA cutout", _nda("cutout"), 14.69), Setting("NDA cutmix", _nda("cutmix"), 15.01),
                   Setting("NDA mixup", _nda("mixup"), 17.29), Setting("NDA mixture (Appendix B)", _nda("mixture"))],
    "appendix_o": [BASELINE, Setting("jigsaw, identity removed", (), 12.61),
                   Setting("jigsaw, identity allowed", ("nda.options.allow_identity=true",), 12.59),
                   Setting("vflip p = 1", ("nda.transform=vflip",), 14.74),
                   Setting("vflip p = 0.5", ("nda.transform=vflip", "nda.options.p=0.5"), 15.84)],
    # 100% adds no fraction key, so those arms are the lambda table's (same config, same cached runs)
    "less_data": [Setting(f"{share}% {kind}", (*(("nda.transform=none",) if kind == "no NDA" else ()),
                                             *((f"data.options.fraction={share / 100}",) if share < 100 else ())))
                  for share in (10, 25, 100) for kind in ("no NDA", "NDA jigsaw")],
}
PAPER = {"lambda": "Table 8", "pda": "Table 1", "transforms": "Table 2 (CIFAR-10 row)", "appendix_o": "Appendix O",
         "less_data": "Appendix E's question (no table in the paper)"}
# pre-registered seeds per table (docs/reproduction.md): 5 for lambda and less data, 3 for the rest
PREREGISTERED_SEEDS = {"lambda": 5, "less_data": 5, "pda": 3, "transforms": 3, "appendix_o": 3}


def arm(setting: Setting, size: str) -> Arm:
    s = SIZES[size]
    # nda.lam=0.25: the preset's lambda when the tables were pre-registered (the default is 0.75 since
    # Table 8 chose it); pinned, so every table keeps the paper's 0.25 and its cached runs
    shared = [f"train.steps={s['steps']}", f"model.options.width={s['width']}", f"data.batch_size={s['batch_size']}",
              f"eval.every={s['eval_every']}", "eval.metrics=[fid]", f"eval.num_samples={s['num_val']}", "nda.lam=0.25"]
    if size == "tiny":
        shared += ["train.ema_start=1", "train.sample_every=0", "train.checkpoint_every=0", "eval.force=true"]
    elif size == "quick":
        shared += ["train.ema_start=100"]
    return Arm(_slug(setting.label), PRESET, [*shared, *setting.overrides])


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in label.lower()).strip("-").replace("--", "-")


# ---------------------------------------------------------------------------------------------
# evaluation of one trained run (cached as a small record)


def evaluation_options(size: str) -> dict[str, Any]:
    """The feature space: the offline classifier trained on the MNIST-5k training split (3,600)."""
    train = data.build("mnist5k", split="train")
    return {"feature_extractor": "classifier", "train_data": train, "data_name": "mnist5k",
            "classifier_epochs": 1 if size == "tiny" else 5, "force": size == "tiny"}


def references(size: str) -> dict[str, torch.Tensor]:
    s = SIZES[size]
    return {"val": data.build("mnist5k", split="val").images[: s["num_val"]],
            "test": data.build("mnist5k", split="test").images[: s["num_test"]]}


def _flatten(results: dict[str, dict]) -> dict[str, Any]:
    fid, kid, pr = (find_metric(results, name) for name in METRICS)
    return {"fid": fid["value"], "kid": kid["value"], "precision": pr["precision"], "recall": pr["recall"],
            "protocol": fid["protocol"]}


def evaluate_trained(run_dir: Path, size: str, seed: int, options: dict[str, Any]) -> dict[str, Any]:
    """Validation and test metrics of the run's EMA generator, its validation-FID curve from the
    training log, and D's mean output on its training images minus on validation images."""
    loaded = load_run(run_dir)
    record: dict[str, Any] = {"seed": seed, "step": int(loaded.step)}
    for split, reference in references(size).items():
        values = _flatten(evaluate_generator(loaded.generator, reference, METRICS, num_samples=len(reference),
                                             seed=10_000 + seed, **options))
        record[f"{split}_protocol"] = values.pop("protocol")
        record.update({f"{split}_{key}": value for key, value in values.items()})
    record["val_fid_curve"] = validation_curve(run_dir)
    record["d_gap_train_minus_val"] = discriminator_gap(loaded, SIZES[size]["num_val"])
    return record


def validation_curve(run_dir: Path) -> list[list[float]]:
    """[[step, validation FID], ...] from the evaluations the run logged during training."""
    points = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        entry = json.loads(line)
        if "eval" in entry:
            fid = next((r["value"] for k, r in entry["eval"].items() if k.startswith("fid")), None)
            if fid is not None:
                points.append([int(entry["step"]), float(fid)])
    return points


@torch.no_grad()
def discriminator_gap(loaded, num: int) -> float:
    """mean D(x) over (up to `num`) training images the run saw minus over as many validation images."""
    train = loaded.reference_dataset(loaded.config.data.split).images[:num]
    val = loaded.reference_dataset("val").images[:num]
    score = loaded.discriminator

    def mean_score(images: torch.Tensor) -> float:
        x = images.float() / 127.5 - 1 if images.dtype == torch.uint8 else images
        return float(torch.cat([score(chunk).reshape(-1) for chunk in x.split(200)]).mean())

    return mean_score(train) - mean_score(val)


def evaluated_arm(study: Study, setting: Setting, seed: int, options: dict[str, Any]) -> dict[str, Any]:
    """The record of one (arm, seed): read from OUT/arms/ when present for the same config hash,
    else trained (or taken from the run cache) and evaluated, then written there."""
    arm_spec = arm(setting, study.size)
    config = kinds.get("gan").load_config(arm_spec.preset, [*arm_spec.overrides, f"train.seed={seed}", "train.progress=false"])
    key = common.config_hash(config)[:12]
    path = study.out_dir / "arms" / f"{arm_spec.name}-seed{seed}-{key}.json"
    if path.is_file():
        record = json.loads(path.read_text())
        study.progress(f"{setting.label} seed {seed}: evaluated before ({path.name})")
        return record
    trained = common.train_arm(study, arm_spec, seed, LABEL)
    study.progress(f"{setting.label} seed {seed}: evaluating {trained.run_dir.name}")
    record = {"label": setting.label, "config_hash": key, "overrides": list(setting.overrides),
              "run_dir": str(trained.run_dir), "train_seconds": round(trained.seconds, 1),
              **evaluate_trained(trained.run_dir, study.size, seed, options),
              "versions": common.environment()}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, json.dumps(common._finite(record), indent=1) + "\n")
    return record


def floors(size: str, options: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Real-vs-real floors with held-out images only (none the classifier trained on): test
    images against the validation reference, validation images against the test reference."""
    refs = references(size)
    out = {}
    # validation FID compares as many samples as validation images: the first of the test images;
    # for test FID no other held-out images are left than the (fewer) validation images
    for split, real in (("val", refs["test"][: len(refs["val"])]), ("test", refs["val"])):
        other = "test" if split == "val" else "val"
        values = _flatten(evaluate_samples(real, refs[split], METRICS, seed=0, **options))
        values["protocol"] = {"real_images": f"{len(real)} {other} images", "reference": f"{len(refs[split])} {split} images"}
        out[split] = values
    return out


# ---------------------------------------------------------------------------------------------
# one table


def run_table(name: str, study: Study) -> dict[str, Any]:
    settings = TABLES[name]
    options = evaluation_options(study.size)
    records = {s.label: [evaluated_arm(study, s, seed, options) for seed in study.seeds] for s in settings}
    summary = summarize(name, study, settings, records, floors(study.size, options))
    if name == "pda":
        summary["label_kept"] = labels_kept(list(TABLE1), study.size, options)
    write_figures(name, study, summary)
    common.write_outputs(study.out_dir, summary, report(name, summary))
    return summary


def labels_kept(transforms: Sequence[str], size: str, options: dict[str, Any]) -> dict[str, Any]:
    """Which transforms keep a digit's meaning, measured: the share of the test images that the
    offline classifier (the feature network) still assigns their true class after the transform
    (one seeded draw per image), next to the clean images' share. A transform that keeps the
    label is a candidate positive (PDA); one that loses it pushes images off the data (NDA)."""
    extractor = features.build("classifier", data=options["train_data"], data_name=options["data_name"],
                               epochs=options["classifier_epochs"])
    test = data.build("mnist5k", split="test")
    images, labels = test.images[: SIZES[size]["num_test"]], test.labels[: SIZES[size]["num_test"]]

    def share(batch: torch.Tensor) -> float:
        with torch.no_grad():
            logits = torch.cat([extractor(chunk)[1] for chunk in batch.split(500)])
        return float((logits.argmax(1) == labels).float().mean())

    generator = torch.Generator().manual_seed(0)
    kept = {"clean": share(images)}
    for name in transforms:
        with torch.no_grad():
            kept[name] = share(nda.build(name)(images, generator=generator).clamp(-1, 1))
    return {"share": kept, "protocol": {"images": f"the first {len(images)} MNIST-5k test images",
                                        "classifier": "the offline classifier of the FID features",
                                        "draws": "one per image, torch.Generator seeded 0, transforms in table order"}}


CHANGE = {"default": "arm - no augmentation", "less_data": "NDA - no NDA with the same share of the training data"}

MEASURES = (("val_fid", "FID, validation (selection)"), ("test_fid", "FID, test"), ("test_kid", "KID, test"),
            ("test_precision", "precision, test"), ("test_recall", "recall, test"))


def baselines(name: str, settings: Sequence[Setting]) -> dict[str, str]:
    """{arm: the arm it is compared with}: the table's first arm (no augmentation), except in
    less_data, where NDA is compared with no NDA at the same share of the training data."""
    if name == "less_data":
        return {s.label: s.label.replace("NDA jigsaw", "no NDA") for s in settings if "NDA jigsaw" in s.label}
    return {s.label: settings[0].label for s in settings[1:]}


def summarize(name: str, study: Study, settings: Sequence[Setting], records, floor) -> dict[str, Any]:
    pairs = baselines(name, settings)
    arms = {s.label: {key: common.spread([r[key] for r in records[s.label]]) for key, _ in MEASURES} for s in settings}
    comparisons = {}
    for key, _ in MEASURES:
        comparisons[key] = common.adjust({arm: common.compare([r[key] for r in records[base]], [r[key] for r in records[arm]])
                                          for arm, base in pairs.items()})
    for s in (s for s in settings if s.label in pairs):
        c = comparisons["test_fid"][s.label]
        direction = -1 if s.paper_fid is None or s.paper_fid < PAPER_BASELINE else 1
        c["paper_direction"] = "lower FID" if direction < 0 else "higher FID"
        # smoke sizes print numbers, never verdicts
        c["verdict"] = stats.verdict_word(c["difference"], c["holm_p"], direction) if study.size == "full" else "-"
    selected = min(settings, key=lambda s: arms[s.label]["val_fid"]["mean"]).label
    return {"experiment": name, "paper": PAPER[name], "size": study.size, "seeds": study.seeds,
            "preregistered_seeds": PREREGISTERED_SEEDS[name],
            "settings": {"preset": PRESET, **SIZES[study.size],
                         "arms": {s.label: {"overrides": list(s.overrides), "paper_fid_cifar10": s.paper_fid} for s in settings}},
            "protocol": {"generator": "EMA generator of the last checkpoint, eval mode", "latent_seed": "10000 + seed",
                         "features": "offline classifier trained on the MNIST-5k training split (3,600 images)",
                         "selection": "the arm with the lowest mean validation FID", "statistics": stats.RULES,
                         "splits": data.split_protocol("mnist5k")},
            "arms": arms, "comparisons": comparisons, "compared_with": pairs, "selected_on_validation": selected, "floor": floor,
            "per_seed": records, "environment": common.environment()}


def report(name: str, summary: dict[str, Any]) -> list[str]:
    s, arms, comparisons = summary["settings"], summary["arms"], summary["comparisons"]
    labels = list(arms)
    rows = []
    for label in labels:
        c = comparisons["test_fid"].get(label)
        rows.append([label + (" (selected on val)" if label == summary["selected_on_validation"] else ""),
                     common.fmt(arms[label]["val_fid"], 2), common.fmt(arms[label]["test_fid"], 2),
                     "-" if c is None else stats.format_difference(c, 2), "-" if c is None else c["verdict"],
                     common.fmt(arms[label]["test_precision"]), common.fmt(arms[label]["test_recall"]),
                     "-" if s["arms"][label]["paper_fid_cifar10"] is None else f"{s['arms'][label]['paper_fid_cifar10']:.2f}"])
    floor = summary["floor"]
    versions = summary["environment"]["versions"]
    lines = [f"# {PAPER[name]} on MNIST-5k: {name}", "",
             f"The `{PRESET}` preset (DCGAN width {s['width']}, spectral-norm D, hinge), {s['steps']} generator steps, "
             f"batch {s['batch_size']}; seeds {summary['seeds']} (pre-registered: {summary['preregistered_seeds']}); "
             f"EMA generator; {s['num_val']} validation / {s['num_test']} test images against as many samples, in "
             f"the features of the offline classifier trained on the 3,600 training images. Code: negaug "
             f"{versions.get('negaug')} commit {versions.get('negaug_commit')}"
             f"{' (uncommitted changes)' if versions.get('negaug_dirty') else ''}.", "",
             f"## Table (mean ± std over seeds; change = {CHANGE.get(name, CHANGE['default'])} on test FID)", "",
             common.markdown_table(["arm", "FID val", "FID test", "change in test FID [95% CI], p, Holm p", "verdict",
                                    "precision test", "recall test", "paper FID (CIFAR-10)"], rows), "",
             f"Real-vs-real floor (held-out images only): FID {floor['test']['fid']:.2f} test "
             f"({floor['test']['protocol']['real_images']} vs {floor['test']['protocol']['reference']}), "
             f"{floor['val']['fid']:.2f} validation ({floor['val']['protocol']['real_images']} vs "
             f"{floor['val']['protocol']['reference']}).", "",
             f"Selected on validation: **{summary['selected_on_validation']}**.", "",
             f"Statistics: {stats.RULES}.", ""]
    if summary["size"] != "full":
        lines.insert(0, common.smoke_note(summary["size"]) + "\n")
    if name == "pda" and "label_kept" in summary:
        kept = summary["label_kept"]["share"]
        lines += ["## Which transforms keep a digit's meaning (measured)", "",
                  f"Share of the test images the offline classifier still labels correctly after the transform "
                  f"(clean images: {kept['clean']:.3f}); one draw per image:", "",
                  common.markdown_table(["transform", "label kept", "PDA test FID", "NDA test FID"],
                                        [[t, f"{kept[t]:.3f}", common.fmt(arms[f"PDA {t}"]["test_fid"], 2),
                                          common.fmt(arms[f"NDA {t}"]["test_fid"], 2)] for t in TABLE1]), "",
                  "![PDA vs NDA per transform](pda_bars.png)", ""]
    if name == "less_data":
        gaps = d_gap_summary(summary)
        lines += ["## The discriminator's overfitting", "",
                  "Mean D output on (up to 400) of the run's own training images minus on 400 validation images "
                  "(raw D outputs; a larger gap = D tells its training images from unseen ones):", "",
                  common.markdown_table(["arm", "D(train) - D(val)"], [[label, common.fmt(g)] for label, g in gaps.items()]), ""]
    return lines + [f"![{name}]({name}.png)", "", f"![validation FID over steps]({name}_curves.png)"]


def write_figures(name: str, study: Study, summary: dict[str, Any]) -> None:
    arms, floor = summary["arms"], summary["floor"]
    values = {"validation FID": {label: arms[label]["val_fid"]["values"] for label in arms},
              "test FID": {label: arms[label]["test_fid"]["values"] for label in arms}}
    plots.arm_points(values, study.out_dir / f"{name}.png", ylabel="FID (classifier features)",
                     title=f"{PAPER[name]} on MNIST-5k: seeds (dots), means with 95% CI (bars)",
                     floor={"validation FID": floor["val"]["fid"], "test FID": floor["test"]["fid"]})
    if name == "pda":
        bars = {use: {t: (arms[f"{use} {t}"]["test_fid"]["mean"], arms[f"{use} {t}"]["test_fid"]["std"]) for t in TABLE1}
                for use in ("PDA", "NDA")}
        base = arms[BASELINE.label]["test_fid"]["mean"]
        plots.grouped_bars(bars, study.out_dir / "pda_bars.png",
                           ylabel=f"test FID, mean ± std over seeds\n(no augmentation: {base:.2f})",
                           title="Table 1 on MNIST-5k: each transform as PDA and as NDA")
    curves = {label: [r["val_fid_curve"] for r in summary["per_seed"][label]] for label in arms}
    panels = None
    if name == "less_data":  # one panel per share of the data: no NDA against NDA
        panels = {f"{share} of the training images": [label for label in arms if label.startswith(share + " ")]
                  for share in dict.fromkeys(label.split(" ")[0] for label in arms)}
    plots.curves_with_spread(curves, study.out_dir / f"{name}_curves.png", xlabel="generator step",
                             ylabel="validation FID (mean ± std over seeds, log scale)", panels=panels)


def table_runner(name: str):
    def run(study: Study) -> dict[str, Any]:
        return run_table(name, study)
    run.__doc__ = f"{PAPER[name]} under the protocol (module docstring)."
    return run


def d_gap_summary(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """less_data: D's train-minus-validation output gap per arm (mean ± std over seeds)."""
    return {label: common.spread([r["d_gap_train_minus_val"] for r in records]) for label, records in summary["per_seed"].items()}


__all__ = ["TABLES", "run_table", "table_runner"]
