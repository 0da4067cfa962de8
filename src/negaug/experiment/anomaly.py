"""A trained run's discriminator as an anomaly detector (behind `negaug anomaly RUN`).

Appends one entry per call to RUN/anomaly.json ({"evaluations": [...]}, newest last; each entry:
AUROC, AUPR, FPR@95TPR per OOD set, with the protocol), as `negaug eval` does to eval.json, and
writes RUN/anomaly_histograms.png (D(clean) - D(ood) per paired set).
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from negaug import anomaly
from negaug.anomaly.ood import last_images
from negaug.experiment.build import check_seed, resolve_device
from negaug.experiment.evaluate import MAX_RESULTS_BYTES, append_evaluation, read_evaluations
from negaug.experiment.runs import is_main_process, load_run, require_run_dir
from negaug.files import check_output_path, read_limited

DEFAULT_OOD = "corruption/all,noise/all"


@dataclass
class AnomalyReport:
    results: dict[str, Any]  # as written to the results file
    output: Path  # the results file
    histograms: Path | None  # the histogram figure, None when no paired set was scored


def check_histogram_path(output: Path) -> None:
    """The histogram figure goes next to the results file as `<stem>_histograms.png`; a file of that
    name that an earlier call did not write there is never overwritten."""
    figure = check_output_path(output.with_name(output.stem + "_histograms.png"), "histogram figure")
    if not figure.exists():
        return
    try:
        entries = json.loads(read_limited(output, MAX_RESULTS_BYTES, "results file")).get("evaluations", []) \
            if output.exists() else []
        ours = any(isinstance(e, dict) and e.get("histograms") == figure.name for e in entries)
    except (ValueError, AttributeError, OSError):
        ours = False
    if not ours:
        raise ValueError(f"{figure} exists and was not written by negaug anomaly for {output.name}; move it away "
                         f"or choose another --output")


def detect_anomalies(run_dir: str | Path, ood: str = DEFAULT_OOD, severity: int = 5, num_images: int = 10000,
                     seed: int = 0, checkpoint: str = "latest", split: str = "test", data_root: str | None = None,
                     download: bool = False, batch_size: int = 256, device: str = "auto",
                     output: str | Path | None = None, on_plan: Callable[[int], None] | None = None,
                     on_progress: Callable[[str], None] | None = None,
                     warn: Callable[[str], None] | None = None) -> AnomalyReport:
    """Score the last `num_images` images of the run's `split` and each OOD set of `ood` with the
    run's D. on_plan(number of sets + 1) is called once the sets are known, on_progress(name) after
    each is scored. data_root defaults to the run's data.root."""
    if num_images < 2:
        raise ValueError(f"--num-images must be at least 2, got {num_images}")
    check_seed("--seed", seed)
    run_dir = require_run_dir(run_dir)
    output = Path(output) if output else run_dir / "anomaly.json"
    check_histogram_path(output)
    read_evaluations(output)  # a damaged results file fails now, not after the scoring
    loaded = load_run(run_dir, checkpoint=checkpoint, device=resolve_device(device, key="--device"), warn=warn,
                      data_root=data_root, download=download)
    data = loaded.config.data
    reference = loaded.reference_dataset(split=split)
    if getattr(reference, "image_size", None) is None:
        raise ValueError(f"negaug anomaly scores images; the run {run_dir} was trained on 2-D points "
                         f"('{data.name}'): use negaug eval for it")
    clean = last_images(reference, num_images)
    plan = anomaly.plan_ood(ood, clean.shape[1], exclude_dataset=data.name)
    data_root = data_root if data_root is not None else data.root
    if on_plan is not None:
        on_plan(len(plan.names) + 1)
    results, differences = anomaly.evaluate(loaded.discriminator, clean, plan, severity=severity, seed=seed,
                                            batch_size=batch_size, data_root=data_root, download=download,
                                            on_progress=on_progress)
    histograms = output.with_name(output.stem + "_histograms.png") if differences else None
    if histograms is not None and is_main_process():  # under torchrun: the scores are gathered, rank 0 writes
        label = f"{run_dir.name} (step {loaded.step})"
        corrupted = any(name.startswith("corruption/") for name in differences)
        title = f"D(clean) - D(ood) in units of D's std on clean images, {label}" + (f", severity {severity}" if corrupted else "")
        anomaly.plot_difference_histograms({label: differences}, histograms, title=title,
                                           scales={label: results["in_distribution"]["score_std"]})
    results["protocol"].update({
        "run_dir": str(run_dir), "checkpoint": checkpoint, "checkpoint_path": str(loaded.checkpoint_path),
        "checkpoint_step": int(loaded.step), "reference_dataset": data.name, "reference_split": split,
        "data_root": data_root,
    })
    results["histograms"] = histograms.name if histograms is not None else None
    if is_main_process():
        append_evaluation(output, results)
    return AnomalyReport(results, output, histograms)
