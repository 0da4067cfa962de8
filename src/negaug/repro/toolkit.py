"""The classic GAN toolkit against the plain GAN, with and without NDA, at equal steps
(`negaug repro toolkit`): feature matching, minibatch discrimination, MMD (GMMN, no D), MIX+GAN
and RpGAN + R1 + R2, each trained by `negaug train` like the plain GAN it is compared with.

Two tasks:
- grid: the 5 x 5 grid of Gaussians (25 modes), the `ring` preset's MLP GAN (non-saturating,
  Adam 1e-3) without R1 for every arm but RpGAN's; NDA = the toy negatives between the modes
  (lambda 0.5, the preset's). Measured: modes covered, share of samples within 3 std of a mode,
  share in the negative region (`negaug.metrics.toy.toy_quality`).
- mnist: MNIST-5k, the `default` preset (DCGAN, hinge, spectral-norm D) at a smaller width and
  step count; NDA = Jigsaw-2, lambda 0.25 (the preset's). Measured on the EMA generator against
  the test split: FID, precision and recall (k = 3) in the offline classifier's features (as
  `negaug repro quality`), and digit classes covered.

Each arm keeps its method's own objective; "with NDA" adds the task's negatives to D's fake side
(eq. 3) or, for MMD, as the repulsive term. Every arm and seed is a cached `negaug train` run
(`runs_dir`); the grid arms without NDA are the ones `negaug repro lessons` plots, so both share
their runs when given one runs folder.
"""
from __future__ import annotations

from typing import Any

import torch

from negaug import data, viz
from negaug.experiment import load_run
from negaug.metrics import evaluate_generator
from negaug.metrics.toy import toy_quality
from negaug.repro import common, plots, quality
from negaug.repro.common import Arm, Study

# 4 kernels of 3 numbers: the (B, B, K, C) kernel at B = 256 made 8 x 5 run 15 times slower per step than the plain D
MINIBATCH = ["model.options.minibatch_discrimination=4", "model.options.minibatch_kernel_dim=3"]
METHODS = {  # arm name -> (label, overrides of the method on both tasks)
    "plain": ("plain GAN", []),
    "feature_matching": ("feature matching", ["loss.feature_matching=1.0"]),
    "minibatch": ("minibatch discrimination", MINIBATCH),
    "mmd": ("MMD (GMMN, no D)", ["loss.name=mmd"]),
    "mixgan": ("MIX+GAN (3 G, 3 D)", ["model.mixture=3"]),
    "rpgan": ("RpGAN + R1 + R2 (R3GAN)", ["loss.name=rpgan", "loss.r1_penalty=0.1", "loss.r2_penalty=0.1"]),
}
# per-task settings of a method: GMMN's kernel bandwidths at the scale of the data on the grid (the
# default 0.1-20 spans toy to pixel space; a first quick run with it gave the same 0 / 3.7 modes)
TASK_OVERRIDES = {("mmd", "grid"): ["loss.options.sigmas=[0.1,0.2,0.5,1,2]"]}
SIZES: dict[str, dict[str, Any]] = {
    "tiny": {"grid_steps": 5, "grid_width": 16, "grid_batch": 64, "grid_samples": 500,
             "mnist_steps": 2, "mnist_width": 4, "mnist_batch": 16, "mnist_samples": 128, "mnist_ema_start": 1},
    "quick": {"grid_steps": 3000, "grid_width": 128, "grid_batch": 256, "grid_samples": 5000,
              "mnist_steps": 500, "mnist_width": 16, "mnist_batch": 64, "mnist_samples": 1000, "mnist_ema_start": 200},
    "full": {"grid_steps": 5000, "grid_width": 128, "grid_batch": 256, "grid_samples": 10000,
             "mnist_steps": 2000, "mnist_width": 32, "mnist_batch": 64, "mnist_samples": 1000, "mnist_ema_start": 500},
}
GRID_LABEL, MNIST_LABEL = "grid", "toolkit-mnist"  # run-folder prefixes (the grid's shared with repro lessons)
RECORDING = ["train.sample_every=0", "train.checkpoint_every=0"]


def grid_arm(method: str, nda: bool, size: str) -> Arm:
    """One grid arm: the `ring` preset on the grid, no R1 (a plain GAN that collapses is the
    point) unless the method sets it, NDA only when asked."""
    s = SIZES[size]
    shared = ["data.name=grid", f"train.steps={s['grid_steps']}", f"model.options.width={s['grid_width']}",
              f"data.batch_size={s['grid_batch']}", "loss.r1_penalty=0.0", *RECORDING]
    return Arm(arm_name(method, nda), "ring", [*shared, *([] if nda else ["nda.transform=none"]), *METHODS[method][1],
                                               *TASK_OVERRIDES.get((method, "grid"), [])])


def mnist_arm(method: str, nda: bool, size: str) -> Arm:
    """One MNIST-5k arm: the `default` preset at the size's width and steps."""
    s = SIZES[size]
    shared = [f"train.steps={s['mnist_steps']}", f"model.options.width={s['mnist_width']}",
              f"data.batch_size={s['mnist_batch']}", f"train.ema_start={s['mnist_ema_start']}", *RECORDING]
    return Arm(arm_name(method, nda), "default", [*shared, *([] if nda else ["nda.transform=none"]), *METHODS[method][1],
                                                  *TASK_OVERRIDES.get((method, "mnist"), [])])


def arm_name(method: str, nda: bool) -> str:
    return f"{method}_nda" if nda else method


def grid_points(study: Study, arm: Arm, seed: int) -> tuple[common.TrainedArm, torch.Tensor, Any]:
    """Train (or reuse) a grid arm; its samples (num, 2) from latent seed 10000 + seed, and the
    loaded run (`run.generator`, `run.reference_dataset("test")`)."""
    trained = common.train_arm(study, arm, seed, GRID_LABEL)
    run = load_run(trained.run_dir)
    points = common.generate(run.generator, SIZES[study.size]["grid_samples"], seed=10_000 + seed)
    return trained, points, run


def evaluate_points(dataset, points: torch.Tensor) -> dict[str, Any]:
    """Modes covered (of 25), share within 3 std of a mode, share in the negative region."""
    found = toy_quality(data.toy_negative_region_mask(dataset, points, "both"),
                        data.toy_mode_assignment(dataset, points), dataset.num_classes)
    return {k: found[k] for k in ("modes_covered", "num_modes", "high_quality_fraction", "negative_fraction",
                                  "mode_counts")}


def run_grid(study: Study) -> tuple[dict[str, list[dict]], list, dict[str, torch.Tensor]]:
    per_arm: dict[str, list[dict]] = {}
    trained, shown = [], {}
    for seed in study.seeds:
        for method in METHODS:
            for nda in (False, True):
                t, points, run = grid_points(study, grid_arm(method, nda, study.size), seed)
                trained.append(t)
                per_arm.setdefault(t.name, []).append({"seed": seed, **evaluate_points(run.reference_dataset("test"),
                                                                                       points)})
                shown.setdefault(t.name, points[:2000])
    return per_arm, trained, shown


def run_mnist(study: Study) -> tuple[dict[str, list[dict]], list, dict[str, torch.Tensor]]:
    s = SIZES[study.size]
    options = quality.evaluation_options(study)
    extractor = quality.class_extractor(options)
    reference = data.build("mnist5k", split="test")
    num = min(s["mnist_samples"], len(reference))
    reference = reference.subset(range(len(reference) - num, len(reference)))
    per_arm: dict[str, list[dict]] = {}
    trained, samples = [], {}
    for seed in study.seeds:
        for method in METHODS:
            for nda in (False, True):
                t = common.train_arm(study, mnist_arm(method, nda, study.size), seed, MNIST_LABEL)
                trained.append(t)
                generator = load_run(t.run_dir).generator
                values = quality.flatten(evaluate_generator(generator, reference, quality.METRICS, num_samples=num,
                                                            seed=10_000 + seed, **options))
                images = common.generate(generator, num, seed=20_000 + seed)
                values["classes"], values["class_counts"] = quality.classes_covered(images, extractor)
                per_arm.setdefault(t.name, []).append({"seed": seed, **values})
                samples.setdefault(t.name, images[:16])
    return per_arm, trained, samples


def run(study: Study) -> dict[str, Any]:
    study.progress("toolkit 1/2: the 5 x 5 grid")
    grid, grid_trained, shown = run_grid(study)
    plot_grid(grid, shown, data.build("grid", split="test"), study)
    study.progress("toolkit 2/2: MNIST-5k")
    mnist, mnist_trained, samples = run_mnist(study)
    plots.sample_rows({f"{METHODS[name.removesuffix('_nda')][0]}{' + NDA' if name.endswith('_nda') else ''}": images
                       for name, images in samples.items()}, study.out_dir / "mnist_samples.png")
    results = summarize(study, grid, mnist, [*grid_trained, *mnist_trained])
    common.write_outputs(study.out_dir, results, report(results))
    return results


GRID_KEYS = (("modes covered (of 25)", "modes_covered", 1), ("share near a mode", "high_quality_fraction", 3),
             ("share in negative region", "negative_fraction", 3))
MNIST_KEYS = (("FID (classifier)", "fid", 1), ("precision", "precision", 3), ("recall", "recall", 3),
              ("classes covered (of 10)", "classes", 1))


def summarize(study: Study, grid, mnist, trained) -> dict[str, Any]:
    def table(per_arm, keys):
        out = {}
        for name, entries in per_arm.items():
            row = {key: common.spread([e[key] for e in entries]) for _, key, _ in keys}
            plain = per_arm["plain_nda" if name.endswith("_nda") else "plain"]
            row["vs_plain"] = {key: common.compare([e[key] for e in plain], [e[key] for e in entries])
                               for _, key, _ in keys}
            out[name] = row
        return out

    s = SIZES[study.size]
    return {
        "experiment": "toolkit", "paper": "seed documents 002-004 (classic GAN toolkit) with NDA (Sinha et al. eq. 3)",
        "size": study.size, "seeds": study.seeds,
        "settings": {**s, "methods": {name: overrides for name, (_, overrides) in METHODS.items()},
                     "task_overrides": {f"{method} on {task}": o for (method, task), o in TASK_OVERRIDES.items()},
                     "grid_arms": {a.name: a.overrides for m in METHODS for a in (grid_arm(m, False, study.size),
                                                                                   grid_arm(m, True, study.size))},
                     "mnist_arms": {a.name: a.overrides for m in METHODS for a in (mnist_arm(m, False, study.size),
                                                                                    mnist_arm(m, True, study.size))}},
        "protocol": {"grid": "negaug.metrics.toy.toy_quality on samples of each run's generator (latent seed 10000 + "
                             "seed): a mode is covered at >= 1% of samples within 3 std",
                     "mnist": "EMA generator; FID, precision/recall (k = 3) against the last images of the MNIST-5k "
                              "test split in the features of negaug's offline classifier trained on its training "
                              "split (latent seed 10000 + seed); classes covered: argmax of that classifier, a class "
                              "counts at >= 2% of samples",
                     "comparison": common.SPREAD_RULE},
        "grid": table(grid, GRID_KEYS), "mnist": table(mnist, MNIST_KEYS),
        "nda_effect": {task: nda_effect(per_arm, keys) for task, per_arm, keys in (("grid", grid, GRID_KEYS),
                                                                                 ("mnist", mnist, MNIST_KEYS))},
        "grid_per_seed": grid, "mnist_per_seed": mnist,
        "runs": common.run_records(trained), "environment": common.environment(),
    }


def nda_effect(per_arm: dict[str, list[dict]], keys) -> dict[str, dict[str, Any]]:
    """Per method, each measure with NDA against the same method without (`common.compare`)."""
    return {method: common.adjust({key: common.compare([e[key] for e in per_arm[method]],
                                                       [e[key] for e in per_arm[arm_name(method, True)]])
                                   for _, key, _ in keys})
            for method in METHODS if method in per_arm and arm_name(method, True) in per_arm}


def report(results: dict[str, Any]) -> list[str]:
    s = results["settings"]
    lines = ["# The classic GAN toolkit against the plain GAN, with and without NDA", "",
             f"Size `{results['size']}`, seeds {results['seeds']}; every cell mean ± std over seeds, "
             f"the difference to the plain GAN (same NDA setting) and its Welch p-value in brackets.", "",
             f"Grid: {s['grid_steps']} steps, MLP width {s['grid_width']}, batch {s['grid_batch']}, "
             f"{s['grid_samples']} samples per run. MNIST-5k: {s['mnist_steps']} steps, DCGAN width "
             f"{s['mnist_width']}, batch {s['mnist_batch']}, {s['mnist_samples']} samples per run.", ""]
    if results["size"] == "tiny":
        lines += ["**Size tiny is a smoke test of the code path**: its networks train for a few steps and its MNIST-5k "
                  "metrics are computed in the features of a one-epoch classifier near chance, forced past negaug's "
                  "refusal of such a feature space (`quality.evaluation_options`). Its numbers mean nothing.", ""]
    for task, keys in (("grid", GRID_KEYS), ("mnist", MNIST_KEYS)):
        rows = []
        for method, (label, _) in METHODS.items():
            for nda in (False, True):
                row = results[task].get(arm_name(method, nda))
                if row is None:
                    continue
                cells = [common.fmt(row[key], digits) + ("" if method == "plain" else f" ({_short(row['vs_plain'][key])})")
                         for _, key, digits in keys]
                rows.append([label, "yes" if nda else "no", *cells])
        title = "5 x 5 grid (25 modes)" if task == "grid" else "MNIST-5k"
        lines += [f"## {title}", "", common.markdown_table(["method", "NDA", *(k[0] for k in keys)], rows), ""]
    for task, keys in (("grid", GRID_KEYS), ("mnist", MNIST_KEYS)):
        rows = [[METHODS[method][0], *(common.verdict(effect[key]) for _, key, _ in keys)]
                for method, effect in results["nda_effect"][task].items()]
        title = "5 x 5 grid" if task == "grid" else "MNIST-5k"
        lines += [f"## NDA against no NDA, per method ({title}): difference of means (NDA - none)", "",
                  common.markdown_table(["method", *(k[0] for k in keys)], rows), ""]
    lines += ["![grid samples, first seed](grid_samples.png)", "", "![MNIST-5k samples, first seed](mnist_samples.png)",
              "", f"Protocol: {results['protocol']['grid']}; {results['protocol']['mnist']}. "
                  f"{results['protocol']['comparison']}."]
    return lines


def _short(comparison: dict[str, Any]) -> str:
    p = comparison["welch_p"]
    return f"{comparison['difference']:+.3g}" + ("" if p is None else f", p={p:.2g}")


def plot_grid(per_arm: dict[str, list[dict]], shown: dict[str, torch.Tensor], dataset, study: Study) -> None:
    figure = viz.new_figure(2.6 * len(METHODS), 5.6)
    for row, nda in enumerate((False, True)):
        for col, method in enumerate(METHODS):
            name = arm_name(method, nda)
            if name not in shown:
                continue
            axes = figure.add_subplot(2, len(METHODS), row * len(METHODS) + col + 1)
            axes.scatter(dataset.centers[:, 0], dataset.centers[:, 1], s=12, c="lightgrey", marker="s")
            points = shown[name]
            axes.scatter(points[:, 0], points[:, 1], s=1, alpha=0.4)
            covered = common.spread([e["modes_covered"] for e in per_arm[name]])["mean"]
            label = METHODS[method][0] + (" + NDA" if nda else "")
            axes.set(title=f"{label}\n{covered:.1f} of 25 modes", xlim=(-6, 6), ylim=(-6, 6), aspect="equal")
            axes.title.set_fontsize(7)
            axes.tick_params(labelsize=5)
    viz.save_figure(figure, study.out_dir / "grid_samples.png")
