"""How good a pretrained run's representation is (behind `negaug probe RUN`).

    entry = probe_run("runs/mnist-20261130-101500")    # appended to RUN/probe.json

The query encoder of the run's checkpoint, frozen (eval mode: batch norm uses its running
statistics and updates nothing), gives features of the training and test splits without
augmentation; on them:
- `linear_probe`: a linear classifier trained for `epochs` epochs (default: the run's
  eval.probe_epochs, the paper's 100) on the cached training features, top-1 test accuracy;
- `knn`: weighted k-NN accuracy (the run's eval.knn_k, eval.knn_temperature);
- `cosine_distance/<space>/<transform>`: Theorem 2 made visible (the paper's Figure 9): the
  cosine distance 1 - cos(r(x), r(NDA(x))) between the representations of each test image and of
  its negative, for the run's NDA transform and for jigsaw (k = 2), and `.../other_image` (another
  test image: the scale), in the encoder's `features` and in the head's `embedding`; histograms in
  RUN/probe/. Theorem 2 says NDA training pushes NDA samples away from the data: compare a run
  trained with and one without NDA (`distance_comparison` draws Figure 9 from their probe.json).
Every number carries its protocol (feature dimension, split sizes, epochs, seed, checkpoint step).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from negaug import nda as nda_transforms
from negaug import viz
from negaug.contrastive import (
    cosine_distance,
    dataset_features,
    knn_accuracy,
    linear_probe,
)
from negaug.experiment import kinds
from negaug.experiment.build import build_dataset, resolve_device
from negaug.experiment.checkpoint import Checkpoint
from negaug.experiment.evaluate import append_evaluation, check_probe_flags, read_evaluations
from negaug.experiment.pretrain import check_pretrain_run, prepare_pretraining, pretrain
from negaug.experiment.pretrain_build import build_model
from negaug.experiment.pretrain_config import PretrainConfig
from negaug.experiment.runs import config_of_record, find_checkpoint, require_run_dir, use_data_folder
from negaug.experiment.state import rng_devices
from negaug.metrics.protocol import library_versions

FIGURE9_TRANSFORM = ("jigsaw", {"k": 2})  # the paper's Figure 9 compares representations of x and jigsaw(x)
HISTOGRAM_BINS = 40  # of the cosine distances, over [0, 2]
MAX_DISTANCE_IMAGES = 10_000  # test images whose NDA distances are measured


def load_pretrained(run_dir: str | Path, checkpoint: str = "latest", device: str | torch.device = "cpu",
                    warn: Callable[[str], None] | None = None, data_root: str | Path | None = None,
                    download: bool = False) -> tuple[PretrainConfig, Any, Checkpoint, Any]:
    """(config, MoCo model in eval mode, checkpoint, training split) of a `negaug pretrain` run,
    restored without unpickling anything and without touching the caller's random generators.
    `data_root` / `download` override the run's data.root / data.download."""
    run_dir, device = require_run_dir(run_dir, "negaug pretrain"), torch.device(device)
    check_pretrain_run(run_dir)
    parts: dict[str, Any] = {}

    def restore(found: Checkpoint) -> None:
        config = config_of_record(found.record, PretrainConfig)
        use_data_folder(config, data_root, download)
        dataset = build_dataset(config)
        with torch.random.fork_rng(devices=rng_devices(device)):
            model = build_model(config, dataset)
        model.load_state_dict(found.state["model"])
        parts.update(config=config, model=model.to(device).eval(), dataset=dataset)

    found = find_checkpoint(run_dir, checkpoint, warn=warn, accept=restore)
    return parts["config"], parts["model"], found, parts["dataset"]


def probe_run(run_dir: str | Path, epochs: int | None = None, checkpoint: str = "latest", device: str = "auto",
              seed: int = 0, batch_size: int = 256, data_root: str | Path | None = None, download: bool = False,
              warn: Callable[[str], None] | None = None, split: str = "test",
              on_progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Linear probe, k-NN accuracy and NDA cosine distances of a pretrained run (module docstring),
    measured on the held-out `split` ("test" for final numbers, "val" for anything that selects);
    the entry is appended to RUN/probe.json and returned. `data_root` / `download` override the
    run's data.root / data.download (probing on another machine than the one that trained);
    `on_progress(message)` before each stage (features, probe, distances)."""
    run_dir = require_run_dir(run_dir, "negaug pretrain")
    check_probe_flags(epochs, seed, batch_size, split)
    device = resolve_device(device, key="--device")
    read_evaluations(run_dir / "probe.json")  # a damaged results file fails now, not after the work
    config, model, found, train_set = load_pretrained(run_dir, checkpoint, device, warn, data_root, download)
    test_set = _held_out_split(config, split)
    epochs = config.eval.probe_epochs if epochs is None else epochs
    results, distances = probe_results(config, model, train_set, test_set, epochs, seed, batch_size, device,
                                       on_progress or (lambda message: None))
    protocol = {"encoder": "query encoder, frozen, eval mode (batch norm frozen), test and train images without "
                           "augmentation; probe and k-NN on its features (before the head)",
                "train_split": config.data.split, "test_split": split, "num_train": len(train_set),
                "num_test": len(test_set), "epochs": epochs, "seed": seed, "checkpoint_step": found.step,
                "label_name": f"{config.data.name} class", "data": config.data.name,
                "versions": library_versions()}
    for result in results.values():
        result["protocol"] = {**protocol, **result.get("protocol", {})}
    figures = _distance_figures(run_dir, found.step, distances)
    entry = {"step": found.step, "checkpoint": str(found.path), "checkpoint_choice": checkpoint,
             "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "nda_transform": config.nda.transform,
             "results": results, "plots": [str(figure.relative_to(run_dir)) for figure in figures]}
    append_evaluation(run_dir / "probe.json", entry)
    return entry


def probe_results(config: PretrainConfig, model, train_set, test_set, epochs: int, seed: int, batch_size: int,
                  device: torch.device, on_progress: Callable[[str], None] = lambda message: None,
                  ) -> tuple[dict[str, dict], dict[str, torch.Tensor]]:
    """({"linear_probe", "knn", "cosine_distance/<space>/<name>"...: results}, {"<space>/<name>": distances (N,)})."""
    num_classes = int(getattr(train_set, "num_classes", 0) or 0)
    if num_classes < 2:
        raise ValueError(f"a linear probe needs labelled data; '{config.data.name}' has no classes")
    on_progress(f"features of {len(train_set)} training and {len(test_set)} held-out images")
    train = dataset_features(model.encoder_q, train_set, batch_size, device)  # (N, F)
    test = dataset_features(model.encoder_q, test_set, batch_size, device)
    generator = torch.Generator().manual_seed(seed)
    on_progress(f"linear probe: {epochs} epochs on {len(train_set)} frozen features; k-NN")
    results = {"linear_probe": linear_probe(train, train_set.labels, test, test_set.labels, num_classes, epochs,
                                            batch_size, generator=generator),
               "knn": knn_accuracy(train, train_set.labels, test, test_set.labels, num_classes, config.eval.knn_k,
                                   config.eval.knn_temperature)}
    on_progress("cosine distances to NDA images")
    distances = nda_distances(config, model, test_set, seed, batch_size, device)
    results.update({f"cosine_distance/{key}": summary for key, (summary, _) in distances.items()})
    return results, {name: values for name, (_, values) in distances.items()}


def _held_out_split(config: PretrainConfig, split: str):
    try:
        return build_dataset(config, split=split)
    except ValueError as err:
        raise ValueError(f"the probe needs the data's held-out {split} split, which fails: {err}") from None


def nda_distances(config: PretrainConfig, model, test_set, seed: int, batch_size: int,
                  device: torch.device) -> dict[str, tuple[dict[str, Any], torch.Tensor]]:
    """{"<space>/<name>": (summary with protocol, distances (N,))}: cosine distances between the
    representations of test images and of their NDA (the run's transform when it is one, and
    jigsaw k=2; draws seeded with `seed`), and of another test image (`other_image`: image i + 1,
    the scale of the numbers), in two spaces: `features` (the query encoder's, what the probe
    classifies) and `embedding` (its normalised head output, where InfoNCE compares)."""
    count = min(len(test_set), MAX_DISTANCE_IMAGES)
    images = test_set.get_batch(torch.arange(count))[0].to(device)  # (N, C, H, W)
    others = {"other_image": images.roll(1, 0)}
    for name, options in distance_transforms(config).items():
        generator = torch.Generator().manual_seed(seed)
        transform = nda_transforms.build(name, **options)
        others[name] = torch.cat([transform(chunk, generator=generator) for chunk in images.split(batch_size)])
    spaces = {"features": model.encoder_q, "embedding": nn.Sequential(model.encoder_q, model.head_q)}
    out = {}
    for space, network in spaces.items():
        for name, other in others.items():
            values = cosine_distance(network, images, other, batch_size).float().cpu()
            summary = {"value": values.mean().item(), "median": values.median().item(), "std": values.std().item(),
                       "histogram": torch.histc(values, HISTOGRAM_BINS, 0.0, 2.0).int().tolist(),
                       "protocol": {"compared_with": name, "options": distance_transforms(config).get(name, {}),
                                    "space": space, "num_images": count, "bins": HISTOGRAM_BINS, "range": [0.0, 2.0],
                                    "distance": f"1 - cos(r(x), r(other)), r = query encoder {SPACES[space]}"}}
            out[f"{space}/{name}"] = (summary, values)
    return out


SPACES = {"features": "features (before the head)", "embedding": "+ projection head"}


def distance_transforms(config: PretrainConfig) -> dict[str, dict]:
    """The NDA transforms whose distances the probe measures: the run's (when it is an NDA
    transform drawn from the batch itself) and Figure 9's jigsaw k=2."""
    transforms = {FIGURE9_TRANSFORM[0]: dict(FIGURE9_TRANSFORM[1])}
    if config.nda.transform not in ("none", "other_data"):
        transforms = {config.nda.transform: dict(config.nda.options), **transforms}
    return transforms


def _distance_figures(run_dir: Path, step: int, series: dict[str, torch.Tensor]) -> list[Path]:
    """One histogram per representation space: RUN/probe/cosine_distance_<space>_step_XXXXXXX.png."""
    paths = []
    for space in SPACES:
        named = {("x vs another image" if key.endswith("/other_image") else f"x vs {key.split('/')[1]}(x)"): values
                 for key, values in series.items() if key.startswith(f"{space}/")}
        path = run_dir / "probe" / f"cosine_distance_{space}_step_{step:07d}.png"
        path.parent.mkdir(exist_ok=True)
        paths.append(viz.save_histogram(named, path, bins=torch.linspace(0, 2, HISTOGRAM_BINS + 1).tolist(),
                                        xlabel=f"cosine distance between representations ({space})",
                                        title=f"Theorem 2: data vs its NDA ({run_dir.name}, step {step})"))
    return paths


def format_probe(entry: dict[str, Any]) -> str:
    """A plain table of a probe entry."""
    lines = [f"step {entry['step']} ({entry['checkpoint']})", f"{'result':<32} {'value':>10}  details"]
    for key, result in entry["results"].items():
        protocol = result["protocol"]
        if key == "linear_probe":
            details = f"{protocol['epochs']} epochs on {protocol['num_train']} frozen {protocol['feature_dim']}-d features"
        elif key == "knn":
            details = f"k={protocol['k']}, temperature {protocol['temperature']}"
        else:
            details = f"median {result['median']:.3f} over {protocol['num_images']} test images ({protocol['space']})"
        lines.append(f"{key:<32} {result['value']:>10.4f}  {details}")
    return "\n".join(lines)


def distance_comparison(runs: dict[str, str | Path], path: str | Path, transform: str = FIGURE9_TRANSFORM[0],
                        space: str = "embedding") -> Path:
    """The paper's Figure 9 across runs: for each `label: run folder`, the histogram of cosine
    distances between test images and their `transform` in `space` ("embedding" or "features")
    stored in the run's newest probe.json entry, one line per run (e.g. {"MoCo-v2": plain_run,
    "MoCo-v2 + jigsaw NDA": nda_run})."""
    key, series, means = f"cosine_distance/{space}/{transform}", {}, []
    for label, run_dir in runs.items():
        entries = read_evaluations(require_run_dir(run_dir, "negaug pretrain") / "probe.json")["evaluations"]
        found = [e["results"][key] for e in entries if key in e.get("results", {})]
        if not found:
            raise ValueError(f"{run_dir} has no probe entry with {key}; run negaug probe {run_dir}")
        counts = torch.tensor(found[-1]["histogram"], dtype=torch.float64)
        low, high = found[-1]["protocol"]["range"]
        centres = low + (torch.arange(len(counts)) + 0.5) * (high - low) / len(counts)
        series[label] = (centres.tolist(), (counts / counts.sum()).tolist())
        means.append(f"{label} {found[-1]['value']:.3f}")
    return viz.save_line_plot(series, Path(path), xlabel=f"cosine distance between r(x) and r({transform}(x)), {space}",
                              ylabel="share of test images",
                              title=f"Theorem 2: data vs NDA representations\nmean: {'; '.join(means)}")


kinds.attach("pretrain", train=pretrain, load=load_pretrained, prepare=prepare_pretraining)
kinds.attach_probe("pretrain", probe=probe_run, format_probe=format_probe)
