"""Pix2Pix with NDA (Table 4) on the offline street scenes: photo -> label map with the cGAN and
the L1 + cGAN objectives, each without NDA and with Jigsaw NDA (the jigsaw of the real label map,
paired with its true photo, on D's fake side with weight 1 - lambda), scored by per-pixel
accuracy, per-class accuracy and mean IoU of the generated label maps on the test split.

The paper's numbers are Cityscapes at 256 px with the official code ("best results"); ours are a
U-Net of width 16 on 64 px synthetic scenes for a few hundred to a few thousand steps: the
comparison is the direction of the NDA effect per objective, not the values.
"""
from __future__ import annotations

from typing import Any

from negaug.experiment.runs import read_metrics
from negaug.experiment.translate import evaluate_translation_run
from negaug.repro import common
from negaug.repro.common import Arm, Study

PRESET = "pix2pix-scenes"
CLAIM = ("Jigsaw NDA improves Pix2Pix photo -> labels on Cityscapes (Table 4): cGAN 0.80/0.24/0.27 -> "
         "0.84/0.34/0.28, L1+cGAN 0.72/0.23/0.18 -> 0.75/0.28/0.22 (per-pixel acc./per-class acc./mIoU)")
PAPER = {"cgan": (0.80, 0.24, 0.27), "cgan-nda": (0.84, 0.34, 0.28),
         "l1-cgan": (0.72, 0.23, 0.18), "l1-cgan-nda": (0.75, 0.28, 0.22)}
OBJECTIVES = {"cgan": ["loss.l1_weight=0"], "l1-cgan": ["loss.l1_weight=100"]}
NDA = ["nda.transform=jigsaw", "nda.options={k: 2}", "nda.lam=0.25"]
SIZES = {
    "tiny": {"steps": 4, "width": 4, "batch_size": 4, "num_samples": 32},
    "quick": {"steps": 300, "width": 16, "batch_size": 16, "num_samples": None},
    "full": {"steps": 1500, "width": 16, "batch_size": 16, "num_samples": None},
}
MEASURES = (("per-pixel acc.", "pixel_accuracy", 0), ("per-class acc.", "class_accuracy", 1),
            ("mean IoU", "mean_iou", 2))


def arms(size: str) -> list[tuple[str, Arm]]:
    """(objective, arm) for the four arms of Table 4."""
    s = SIZES[size]
    shared = [f"train.steps={s['steps']}", f"model.width={s['width']}", f"data.batch_size={s['batch_size']}",
              "train.sample_every=0", f"train.checkpoint_every={max(s['steps'] // 3, 1)}"]
    if s["num_samples"] is not None:
        shared.append(f"data.options={{num_samples: {s['num_samples']}}}")
    out = []
    for objective, settings in OBJECTIVES.items():
        out.append((objective, Arm(objective, PRESET, [*shared, *settings, "nda.transform=none"], kind="pix2pix")))
        out.append((objective, Arm(f"{objective}-nda", PRESET, [*shared, *settings, *NDA], kind="pix2pix")))
    return out


def run(study: Study) -> dict[str, Any]:
    per_seed: dict[str, list[dict[str, Any]]] = {}
    trained = []
    for _, arm in arms(study.size):
        for seed in study.seeds:
            done = common.train_arm(study, arm, seed, "pix2pix")
            trained.append(done)
            scores = _scores_of(done.run_dir)
            per_seed.setdefault(arm.name, []).append({"seed": seed, **{key: scores[key] for _, key, _ in MEASURES},
                                                      "majority_pixel_accuracy": scores["majority_pixel_accuracy"],
                                                      "protocol": scores["protocol"]})
    tables = {objective: common.adjust({key: common.compare([r[key] for r in per_seed[objective]],
                                                            [r[key] for r in per_seed[f"{objective}-nda"]])
                                        for _, key, _ in MEASURES}) for objective in OBJECTIVES}
    results = {"experiment": "pix2pix", "claim": CLAIM, "size": study.size, "seeds": study.seeds,
               "settings": {"preset": PRESET, **SIZES[study.size], "nda": NDA, "objectives": OBJECTIVES},
               "paper": PAPER, "per_seed": per_seed, "tables": tables, "spread_rule": common.SPREAD_RULE,
               "runs": common.run_records(trained), "environment": common.environment()}
    common.write_outputs(study.out_dir, results, report(results))
    return results


def _scores_of(run_dir) -> dict[str, Any]:
    """The test-split scores the run logged at its end (metrics.jsonl), else a fresh evaluation."""
    logged = [r["eval"] for r in read_metrics(run_dir) if isinstance(r.get("eval"), dict)]
    if logged:
        return logged[-1]
    return evaluate_translation_run(run_dir, device="cpu")["results"]["segmentation"]


def report(results: dict[str, Any]) -> list[str]:
    s = results["settings"]
    lines = [f"# Pix2Pix with NDA ({results['size']})", "", f"Claim (paper): {results['claim']}.", "",
             f"`negaug train {PRESET}`: offline street scenes, 64 px, 8 classes, photo -> label map; U-Net width "
             f"{s['width']}, 70x70 PatchGAN (covers the image at 64 px), instance norm, batch {s['batch_size']}, "
             f"{s['steps']} steps; NDA: jigsaw 2x2 of the real label map with its true photo, lambda = 0.25. "
             f"Scores on the test split (generated pixels read to the nearest palette colour). Seeds "
             f"{results['seeds']}; mean ± std over seeds; " + results["spread_rule"] + ".", "",
             common.markdown_table(["arm", *(label for label, _, _ in MEASURES), "paper (Cityscapes)"],
                                   [[name, *(common.fmt(common.spread([r[key] for r in rows])) for _, key, _ in MEASURES),
                                     " / ".join(f"{v:.2f}" for v in results["paper"][name])]
                                    for name, rows in results["per_seed"].items()]), "",
             "NDA minus no NDA, per objective:", "",
             common.markdown_table(["objective", *(label for label, _, _ in MEASURES)],
                                   [[objective, *(common.verdict(table[key]) for _, key, _ in MEASURES)]
                                    for objective, table in results["tables"].items()]), ""]
    majority = [r["majority_pixel_accuracy"] for rows in results["per_seed"].values() for r in rows]
    lines += [(f"Majority-class pixel accuracy of the test split (predict the most frequent class everywhere): "
               f"{majority[0]:.3f}."), ""]
    return lines
