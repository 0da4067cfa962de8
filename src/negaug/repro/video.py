"""Video (paper, Section 5 and Table 7): Dense Predictive Coding without and with Jigsaw NDA clips.

Claim (paper): NDA clips (Jigsaw) as extra negatives of DPC's contrastive loss give a better video
representation: higher action-recognition accuracy on UCF-101 and HMDB-51 after DPC pre-training.

Ours is a synthetic stand-in that fits a CPU, not that experiment:
- data: `negaug.data.build_clips("moving_mnist")`, one bouncing MNIST digit per clip; train and
  test clips come from disjoint digit images (data seed 0 for every training seed);
- model: `negaug.video.DPC` (4 blocks, the last 2 predicted), trained in-process with Adam; the NDA
  arm adds `jigsaw` k=2 clips of the same batch (one draw per clip, the same on every frame) to
  the denominator (`negaug.video.dpc_nda_loss`, eq. 8 with weight 1); the baseline is plain DPC;
- evaluation (`negaug.video.probe`, the probe `negaug probe` runs on a DPC run): a linear probe
  (logistic regression on standardised frozen features, Adam, fixed epochs, seeded shuffling)
  fitted on the train clips and scored on the test clips, for two
  labels: `motion` (the direction of the first frames, 8 classes: the stand-in for an action) and
  `digit` (10 classes: appearance), on two features: `context` (the GRU state after all blocks,
  averaged over positions: DPC's evaluation input) and `encoder` (relu(z) averaged over blocks and
  positions). Also plain DPC's held-out top-1 (the positive among all predicted positions of a test
  batch) and the time per training step. An untrained model of each seed is a reference.

Randomness: the seed sets the model's initialisation (under `torch.random.fork_rng`, so the global
RNG is left as it was), the batch order, the NDA draws and the probes' shuffling, each from its own
`torch.Generator`. A trained arm is cached under `runs_dir` in `video-<arm>-seed<S>-<hash>/`
(`model.safetensors`, then `repro_done.json` with its settings and loss curve), keyed by a hash of
every setting that changes the trained weights; a rerun reuses it.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from negaug import data, nda
from negaug.data.dots import derive_seed
from negaug.files import read_limited, read_text_limited, write_atomically
from negaug.metrics.protocol import library_versions
from negaug.repro import common, plots, stats
from negaug.repro.common import BASELINE, NDA, Study, TrainedArm
from negaug.video import DPC, dpc_nda_loss
from negaug.video.probe import (  # noqa: F401  (clip_features, linear_probe, PROBE, KINDS: this module's API too)
    EVAL_BATCH,
    KINDS,
    PROBE,
    clip_features,
    heldout_dpc,
    linear_probe,
    probe_labels,
    probe_summary,
)

TRAIN_VERSION = 1  # bump when the training changes: cached arms go stale
UNTRAINED = "untrained"  # the reference: each seed's model before training
ARMS: dict[str, dict[str, Any] | None] = {BASELINE: None, NDA: {"name": "jigsaw", "k": 2}}
NUM_BLOCKS, PRED_STEPS = 4, 2
LEARNING_RATE = 1e-3
DATA_SEED = 0
LABELS = {"motion": "motion_labels", "digit": "labels"}
CLAIM_ROW = "probe_context_motion"  # the claim: higher with NDA (the motion label stands in for an action)
SIZES: dict[str, dict[str, Any]] = {
    # tiny: CI smoke test (seconds); quick: a few minutes; full: the reported numbers (3 seeds)
    "tiny": {"steps": 3, "batch_size": 8, "num_train": 32, "num_test": 32, "image_size": 16, "num_frames": 8,
             "widths": [4, 8], "feature_dim": 16, "probe_epochs": 5},
    "quick": {"steps": 300, "batch_size": 32, "num_train": 4000, "num_test": 2000, "image_size": 32,
              "num_frames": 16, "widths": [16, 32], "feature_dim": 64, "probe_epochs": 100},
    "full": {"steps": 800, "batch_size": 32, "num_train": 4000, "num_test": 2000, "image_size": 32,
             "num_frames": 16, "widths": [16, 32], "feature_dim": 64, "probe_epochs": 100},
}
CLAIM = ("Jigsaw NDA clips as extra negatives improve DPC's video representation (paper: action recognition "
         "on UCF-101 and HMDB-51)")
METRICS = (("motion probe, context features", "probe_context_motion"),
           ("digit probe, context features", "probe_context_digit"),
           ("motion probe, encoder features", "probe_encoder_motion"),
           ("digit probe, encoder features", "probe_encoder_digit"),
           ("held-out DPC top-1", "heldout_dpc_top1"), ("held-out DPC loss", "heldout_dpc_loss"),
           ("ms per training step", "ms_per_step"))


# ---------------------------------------------------------------------------------------------
# settings


def data_settings(size: str, split: str) -> dict[str, Any]:
    s = SIZES[size]
    return {"name": "moving_mnist", "split": split, "num_clips": s["num_train" if split == "train" else "num_test"],
            "num_frames": s["num_frames"], "image_size": s["image_size"], "seed": DATA_SEED}


def train_settings(size: str, arm: str, seed: int) -> dict[str, Any]:
    """Every setting that changes the trained weights of `arm` (JSON types only: the cache key)."""
    s = SIZES[size]
    model = {"in_channels": 1, "num_blocks": NUM_BLOCKS, "pred_steps": PRED_STEPS, "widths": list(s["widths"]),
             "feature_dim": s["feature_dim"], "groups": 4, "gru_kernel": 1}
    return {"version": TRAIN_VERSION, "seed": seed, "nda": ARMS[arm], "steps": s["steps"],
            "batch_size": s["batch_size"], "optimizer": {"name": "adam", "lr": LEARNING_RATE},
            "loss": {"temperature": 1.0, "nda_weight": 1.0}, "model": model, "data": data_settings(size, "train")}


def settings_hash(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def build_clips(settings: dict[str, Any]) -> data.TensorClipDataset:
    options = {k: v for k, v in settings.items() if k not in ("name", "split")}
    return data.build_clips(settings["name"], split=settings["split"], **options)


def build_model(settings: dict[str, Any]) -> DPC:
    """The DPC of `settings`, initialised from its seed; the global RNG is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings["seed"])
        return DPC(**settings["model"])


def generator(*parts: Any) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed("repro-video", *parts))


# ---------------------------------------------------------------------------------------------
# training (cached)


def batch_order(num_items: int, batch_size: int, steps: int, generator: torch.Generator) -> torch.Tensor:
    """`(steps, batch_size)` indexes: consecutive seeded permutations of range(num_items), cut into
    batches (every clip once per epoch; a batch may straddle two epochs)."""
    needed = steps * batch_size
    epochs = -(-needed // num_items)
    order = torch.cat([torch.randperm(num_items, generator=generator) for _ in range(epochs)])
    return order[:needed].view(steps, batch_size)


def train_dpc(settings: dict[str, Any], clips) -> tuple[DPC, dict[str, Any]]:
    """Train the DPC of `settings` on `clips`; returns (model in eval mode, record): the loss of every
    step, the seconds and ms per step (batch loading and NDA draws included)."""
    model = build_model(settings)
    transform = None if settings["nda"] is None else nda.from_spec(settings["nda"])
    optimizer = torch.optim.Adam(model.parameters(), lr=settings["optimizer"]["lr"])
    order = batch_order(len(clips), settings["batch_size"], settings["steps"], generator("order", settings["seed"]))
    nda_generator = generator("nda", settings["seed"])
    losses = []
    start = time.perf_counter()
    for index in order:
        batch, _ = clips.get_batch(index)
        loss = dpc_nda_loss(model, batch, transform, nda_generator, **settings["loss"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    seconds = time.perf_counter() - start
    return model.eval(), {"losses": [round(v, 6) for v in losses], "seconds": seconds,
                          "ms_per_step": 1000 * seconds / max(1, settings["steps"]),
                          "torch_threads": torch.get_num_threads()}


def trained_arm(study: Study, arm: str, seed: int, clips) -> tuple[DPC, TrainedArm, dict[str, Any]]:
    """Arm `arm` trained with `seed`, from the cache when a finished run of the same settings exists."""
    settings = train_settings(study.size, arm, seed)
    key = settings_hash(settings)
    run_dir = study.runs_dir / f"video-{arm}-seed{seed}-{key[:12]}"
    done = run_dir / common.DONE_FILE
    if done.is_file():
        try:
            model, record = load_run(run_dir, settings)
            study.progress(f"video {arm} seed {seed}: reusing {run_dir}")
            return model, TrainedArm(arm, seed, run_dir, settings, 0.0, True), record
        except DamagedRun as err:  # named, and trained again: never evaluated from damaged weights
            study.progress(f"warning: the cached run of video {arm} seed {seed} is damaged ({err}); training it again")
            done.unlink(missing_ok=True)
    if not done.is_file():
        with common.training_lock(study, run_dir):  # waits while another live process trains this run
            if not done.is_file():
                study.progress(f"video {arm} seed {seed}: training {settings['steps']} steps -> {run_dir}")
                model, record = train_dpc(settings, clips)
                save_run(run_dir, model, {"settings": settings, "settings_hash": key, **record,
                                          "versions": library_versions()})
                return model, TrainedArm(arm, seed, run_dir, settings, record["seconds"], False), record
    study.progress(f"video {arm} seed {seed}: reusing {run_dir}")
    model, record = load_run(run_dir, settings)
    return model, TrainedArm(arm, seed, run_dir, settings, 0.0, True), record


def save_run(run_dir: Path, model: DPC, record: dict[str, Any]) -> None:
    """Weights first, the record (the run's done marker) last, each written atomically."""
    weights = {name: tensor.contiguous() for name, tensor in model.state_dict().items()}
    blob = save_safetensors(weights)
    write_atomically(run_dir / "model.safetensors", blob)
    record = {**record, "weights_sha256": hashlib.sha256(blob).hexdigest()}
    write_atomically(run_dir / common.DONE_FILE, json.dumps(record, indent=1) + "\n")


def load_run(run_dir: Path, settings: dict[str, Any]) -> tuple[DPC, dict[str, Any]]:
    record = json.loads(read_text_limited(run_dir / common.DONE_FILE, 64 * 2**20, "run record"))
    if record.get("settings") != settings:
        raise ValueError(f"{run_dir} holds a run of other settings than its name says; remove the folder")
    model = build_model(settings)
    try:
        blob = read_limited(run_dir / "model.safetensors", 2**30, "weights")
        if hashlib.sha256(blob).hexdigest() != record.get("weights_sha256", hashlib.sha256(blob).hexdigest()):
            raise ValueError("its hash is not the one recorded in " + common.DONE_FILE)
        model.load_state_dict(load_safetensors(blob))
    except (OSError, ValueError, RuntimeError, SafetensorError) as err:
        raise DamagedRun(f"{run_dir / 'model.safetensors'}: {' '.join(str(err).split())[:160]}") from None
    return model.eval(), record


class DamagedRun(ValueError):
    """A cached run whose weights are missing, truncated or not those recorded; names the file."""


# ---------------------------------------------------------------------------------------------
# evaluation


def evaluate_model(model: DPC, train, test, size: str, seed: int) -> dict[str, Any]:
    """Held-out DPC and the four probes (context / encoder features x motion / digit labels), by
    `negaug.video.probe` (the probe `negaug probe` runs on a DPC run)."""
    s = SIZES[size]
    results: dict[str, Any] = heldout_dpc(model, test, s["batch_size"])
    summary = probe_summary(clip_features(model, train), clip_features(model, test), probe_labels(train),
                            probe_labels(test), s["probe_epochs"], lambda kind, label: generator("probe", seed, kind, label))
    for key, accuracy in summary.items():
        kind, label = key.split("/")
        results[f"probe_{kind}_{label}"] = accuracy["test"]
        results[f"probe_{kind}_{label}_train"] = accuracy["train"]
    return results


# ---------------------------------------------------------------------------------------------
# the experiment


def run(study: Study) -> dict[str, Any]:
    train, test = (build_clips(data_settings(study.size, split)) for split in ("train", "test"))
    per_seed: dict[str, list[dict[str, Any]]] = {UNTRAINED: [], BASELINE: [], NDA: []}
    trained, curves = [], {}
    for seed in study.seeds:
        untrained = build_model(train_settings(study.size, BASELINE, seed))
        per_seed[UNTRAINED].append({"seed": seed, **evaluate_model(untrained, train, test, study.size, seed)})
        for arm in ARMS:
            model, t, record = trained_arm(study, arm, seed, train)
            trained.append(t)
            curves[f"{arm}-seed{seed}"] = record["losses"]
            study.progress(f"video {arm} seed {seed}: evaluating")
            per_seed[arm].append({"seed": seed, "ms_per_step": record["ms_per_step"],
                                  "final_train_loss": _tail_mean(record["losses"]),
                                  **evaluate_model(model, train, test, study.size, seed)})
    results = summarize(study, per_seed, trained, curves, _chance(test))
    plots.points_over_bars(
        {arm: {label: [e[m] for e in entries] for label, m in PROBE_GROUPS} for arm, entries in per_seed.items()},
        study.out_dir / "probe_accuracy.png", ylabel="test accuracy of the linear probe",
        title=f"DPC on moving_mnist, {SIZES[study.size]['steps']} steps (bars: mean; dots: seeds)",
        chance={label: results["chance"][m.rsplit("_", 1)[1]] for label, m in PROBE_GROUPS})
    common.write_outputs(study.out_dir, results, report(results))
    return results


PROBE_GROUPS = tuple((label.replace(" probe, ", "\n").replace(" features", ""), m)
                     for label, m in METRICS if m.startswith("probe_"))


def _tail_mean(losses: list[float]) -> float:
    """Mean training loss over the last tenth of the steps (at least one)."""
    tail = losses[-max(1, len(losses) // 10):]
    return sum(tail) / len(tail)


def _chance(test) -> dict[str, float]:
    """Accuracy of always answering the commonest test label (a probe's floor)."""
    return {label: float(torch.bincount(getattr(test, attribute)).max()) / len(test)
            for label, attribute in LABELS.items()}


def summarize(study: Study, per_seed, trained, curves, chance) -> dict[str, Any]:
    metrics = [m for _, m in METRICS]

    def table(names: list[str]) -> dict[str, dict[str, Any]]:  # one Holm family
        return common.adjust({m: common.compare([e[m] for e in per_seed[BASELINE]], [e[m] for e in per_seed[NDA]])
                              for m in names})
    claim = table([CLAIM_ROW])  # the pre-registered claim row, judged alone; the others descriptive
    claim[CLAIM_ROW]["verdict"] = stats.verdict_word(claim[CLAIM_ROW]["difference"], claim[CLAIM_ROW]["holm_p"], +1) \
        if common.carries_verdicts(study.size) and len(study.seeds) >= 2 else "-"
    comparisons = {**claim, **table([m for m in metrics if m != CLAIM_ROW])}
    reference = {m: common.spread([e[m] for e in per_seed[UNTRAINED]]) for m in metrics if m != "ms_per_step"}
    learned = common.compare([e["probe_context_motion"] for e in per_seed[UNTRAINED]],
                             [e["probe_context_motion"] for e in per_seed[BASELINE]])
    ratios = [n["ms_per_step"] / b["ms_per_step"] for b, n in zip(per_seed[BASELINE], per_seed[NDA])]

    def clearly_above(c):  # needs a spread: one seed never passes
        return c["welch_p"] is not None and c["difference"] > 0 and not c["within_seed_spread"]
    return {
        "experiment": "video", "paper": "Section 5, Table 7 (synthetic stand-in)", "claim": CLAIM,
        "size": study.size, "seeds": study.seeds,
        "settings": {**SIZES[study.size], "arms": {arm: train_settings(study.size, arm, 0) for arm in ARMS},
                     "test_data": data_settings(study.size, "test")},
        "protocol": _protocol(study.size), "chance": chance,
        "per_seed": per_seed, "comparisons": comparisons, "reference_untrained": reference,
        "claim_rows": [CLAIM_ROW], "verdicts": {CLAIM_ROW: claim[CLAIM_ROW]["verdict"]},
        "step_time_ratio_nda_over_baseline": common.spread(ratios),
        "targets": {"baseline_motion_probe_clearly_above_untrained": clearly_above(learned),
                    "nda_context_motion_probe_clearly_above_baseline": clearly_above(comparisons["probe_context_motion"]),
                    "nda_context_digit_probe_clearly_above_baseline": clearly_above(comparisons["probe_context_digit"])},
        "loss_curves": curves, "runs": common.run_records(trained), "environment": common.environment(),
    }


def _protocol(size: str) -> dict[str, Any]:
    s = SIZES[size]
    return {
        "features": {"context": "DPC.clip_features(kind='context'): the ConvGRU state after all 4 blocks, mean "
                                "over positions", "encoder": "relu(z) of the 4 blocks, mean over blocks and positions",
                     "extracted": "eval mode, no gradient, frozen weights (the last training step)"},
        "probe": {**PROBE, "epochs": s["probe_epochs"], "fit_on": f"the {s['num_train']} train clips",
                  "scored_on": f"the {s['num_test']} test clips (other digit images)",
                  "seed": "derive_seed('repro-video', 'probe', seed, kind, label)"},
        "labels": {"motion": "moving_mnist motion_labels: direction of the first frames, 8 classes",
                   "digit": "moving_mnist labels: the digit, 10 classes"},
        "heldout_dpc": f"plain DPC logits (no NDA) on test batches of {s['batch_size']} consecutive clips; top-1 = "
                       "share of predicted positions whose true block scores highest of all",
        "step_time": "wall time of the training loop / steps (batch loading and NDA draws included), measured "
                     "while training, on a CPU that other jobs may share; a cached arm keeps its time",
        "untrained_reference": "each seed's model before training, evaluated the same way",
        "chance": "share of the commonest test label", "spread_rule": common.SPREAD_RULE,
        "targets": "clearly above = a positive difference outside the seed spread, with >= 2 seeds per arm",
    }


# ---------------------------------------------------------------------------------------------
# report


def report(results: dict[str, Any]) -> list[str]:
    s, comparisons = results["settings"], results["comparisons"]
    reference = results["reference_untrained"]
    digits = {"ms_per_step": 1}
    rows = [[label, common.fmt(reference[m]) if m in reference else "",
             common.fmt(comparisons[m]["baseline"], digits.get(m, 3)), common.fmt(comparisons[m]["nda"], digits.get(m, 3)),
             common.verdict(comparisons[m])] for label, m in METRICS]
    ratio = results["step_time_ratio_nda_over_baseline"]
    paper = (f"Claim: {CLAIM}. Paper (Table 7): DPC pre-trained with Jigsaw NDA clips as extra negatives, then "
             "fine-tuned, reaches a higher action-recognition top-1 on UCF-101 and HMDB-51 than plain DPC.")
    stand_in = ("**Ours is a synthetic stand-in, not that experiment**: moving_mnist clips (one bouncing MNIST digit; "
                f"{s['num_train']} train and {s['num_test']} test clips of {s['num_frames']} frames at "
                f"{s['image_size']} px, test clips from other digit images), a CPU-sized DPC (3D-conv encoder of "
                f"widths {s['widths']} and feature size {s['feature_dim']}, 4 blocks, 2 predicted) and linear probes "
                "on frozen features instead of fine-tuning. The direction label (motion, 8 classes) stands in for an "
                "action, the digit (10 classes) for appearance.")
    ours = (f"Ours: size `{results['size']}`, seeds {results['seeds']}, {s['steps']} Adam steps (lr {LEARNING_RATE}) "
            f"of batch {s['batch_size']} per arm and seed; NDA arm: jigsaw k=2, one draw per clip, weight 1 (eq. 8). "
            f"Probe: logistic regression, {s['probe_epochs']} epochs of Adam (lr {PROBE['lr']}, batch "
            f"{PROBE['batch_size']}, weight decay {PROBE['weight_decay']}) on standardised features.")
    chance = (f"Chance (commonest test label): motion {results['chance']['motion']:.3f}, digit "
              f"{results['chance']['digit']:.3f}; held-out DPC top-1 chance "
              f"{results['per_seed'][BASELINE][0]['heldout_dpc_chance']:.4f}. Step time NDA / baseline: "
              f"{common.fmt(ratio, 2)}x (per seed: {', '.join(f'{r:.2f}' for r in ratio['values'])}).")
    headers = ["metric", "untrained (reference)", "baseline (plain DPC)", "NDA (jigsaw)", "change"]
    seed_headers = ["arm", "seed", "motion (context)", "digit (context)", "motion (encoder)", "digit (encoder)",
                    "held-out top-1", "final train loss", "ms/step"]
    return [
        "# Video: DPC without and with Jigsaw NDA clips (paper: Section 5, Table 7; a synthetic stand-in)", "",
        paper, "", stand_in, "", ours, "",
        common.table_heading(results["size"], "mean ± std over seeds; change = NDA - baseline"), "",
        common.markdown_table(headers, rows), "", chance, "",
        *([f"**Verdict**: {verdict_sentence(results)}", ""] if common.carries_verdicts(results["size"]) else []),
        "## Per seed", "", common.markdown_table(seed_headers, _seed_rows(results)), "",
        f"Statistics: {common.SPREAD_RULE}. The claim row (the motion probe on context features) is a family of "
        "its own; the other rows are descriptive (Holm over their own table).", "",
        "![probe accuracies per arm, one dot per seed](probe_accuracy.png)",
    ]


def verdict_sentence(results: dict[str, Any]) -> str:
    """The claim row's verdict (`stats.verdict_word`: Welch, Holm over a family of one) and the
    digit probe's difference, which is descriptive."""
    motion, digit = results["comparisons"][CLAIM_ROW], results["comparisons"]["probe_context_digit"]
    if len(results["seeds"]) < 2:
        return "not assessed: one seed has no spread (run the full size)."
    return (f"motion probe (context features, the action stand-in; the claim row) "
            f"{stats.format_difference(motion)}: **{motion['verdict']}** on this stand-in; digit probe "
            f"{stats.format_difference(digit)} (descriptive).")


def _seed_rows(results: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for arm, entries in results["per_seed"].items():
        for e in entries:
            trained = arm != UNTRAINED
            rows.append([arm, e["seed"], *[f"{e[m]:.3f}" for _, m in PROBE_GROUPS], f"{e['heldout_dpc_top1']:.3f}",
                         f"{e['final_train_loss']:.3f}" if trained else "", f"{e['ms_per_step']:.0f}" if trained else ""])
    return rows
