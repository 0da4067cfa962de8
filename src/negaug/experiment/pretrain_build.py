"""Turn a PretrainConfig into a pretraining run's parts, checking every value before any work.

    recipe, state = build_pretraining(config)

`PretrainRecipe` is what every step does and never changes (data, positive-view augmentation, NDA
transform, device); `PretrainState` is what training changes and the only definition of what a
checkpoint holds: the MoCo model (both encoders and heads, the queue and its pointer), the SGD
optimizer, the step (the learning-rate schedule is a function of it), the data stream's position
and every random stream (augmentation, NDA, Shuffle-BN permutations, torch's global generator).
Each failure is a one-line `ValueError` / `FileNotFoundError` naming the config key.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from negaug import distributed
from negaug import nda as nda_transforms
from negaug.contrastive import ENCODERS, MoCo, ViewAugment
from negaug.contrastive.objectives import MIN_TEMPERATURE, OBJECTIVES
from negaug.experiment.build import (
    _with_key,
    build_dataset,
    build_other_data_source,
    check_precision,
    check_seed,
    check_threads,
    compile_in_place,
    resolve_device,
)
from negaug.experiment.config import check_run_name
from negaug.experiment.pretrain_config import PretrainConfig
from negaug.experiment.state import RunState, rank_seed
from negaug.experiment.stats import Stats
from negaug.experiment.stream import BatchStream
from negaug.files import check_folder

SCHEDULES = ("cosine", "constant")
MAX_EVAL = {"eval.knn_k": 100_000, "eval.probe_epochs": 10_000}


@dataclass(frozen=True)
class PretrainRecipe:
    """What each pretraining step does; fixed for the whole run."""

    dataset: Any  # the training images (ImageDataset)
    test_dataset: Any  # the held-out split for k-NN accuracy, or None when the data has no labels
    augment: ViewAugment  # positive views: two per image
    negative: nn.Module | None  # NDA transform whose views are extra negatives, or None
    num_classes: int  # labels of the data (0: none; no k-NN accuracy)
    device: torch.device


@dataclass
class PretrainState(RunState):
    model: MoCo
    optimizer: torch.optim.Optimizer
    batches: BatchStream  # the endless, seeded stream of training batches
    augment_rng: torch.Generator  # the positive views
    nda_rng: torch.Generator  # the NDA views
    shuffle_rng: torch.Generator  # Shuffle-BN permutations of the keys
    scaler: torch.amp.GradScaler | None = None  # train.precision=fp16 only
    step: int = 0  # optimizer steps done
    best: dict[str, Any] | None = None  # {"metric": "knn", "value", "step"}: the best k-NN monitor so far (validation)
    stats: Stats = field(default_factory=Stats)  # logged statistics since the last log line

    def modules(self) -> dict[str, Any]:
        return {"model": self.model}  # the queue is a buffer of the model

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"optimizer": self.optimizer}

    def streams(self) -> dict[str, torch.Generator]:
        return {"augment": self.augment_rng, "nda": self.nda_rng, "shuffle": self.shuffle_rng}

    def extra_state(self) -> dict[str, Any]:
        return {} if self.best is None else {"best": self.best}  # only with train.knn_every: other layouts kept

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.best = state.get("best")


def learning_rate(config: PretrainConfig, step: int) -> float:
    """The SGD learning rate of step `step` (1-based): linear warmup over optim.warmup_steps, then
    optim.lr, decayed by a half cosine over the remaining steps (schedule "cosine"; the last step
    still has a small positive rate) or kept (schedule "constant")."""
    optim, steps = config.optim, config.train.steps
    if step <= optim.warmup_steps:
        return optim.lr * step / optim.warmup_steps
    if optim.schedule == "constant":
        return optim.lr
    progress = (step - 1 - optim.warmup_steps) / max(1, steps - optim.warmup_steps)
    return optim.lr * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def check_pretrain_scalars(config: PretrainConfig) -> None:
    """Ranges and enumerations that need no registry, each error naming its key."""
    train, optim, objective = config.train, config.optim, config.objective
    check_run_name(train.name)
    check_folder(train.runs_dir, "train.runs_dir")
    check_seed("train.seed", train.seed)
    check_threads("train.threads", train.threads)
    at_least_one = {"data.batch_size": config.data.batch_size, "train.steps": train.steps,
                    "train.log_every": train.log_every, "train.keep_checkpoints": train.keep_checkpoints,
                    "objective.queue_size": objective.queue_size, "objective.num_splits": objective.num_splits,
                    "model.dim": config.model.dim, "eval.knn_k": config.eval.knn_k,
                    "eval.probe_epochs": config.eval.probe_epochs}
    for key, value in at_least_one.items():
        if value < 1:
            raise ValueError(f"{key}={value} must be at least 1")
    for key, value in {"train.checkpoint_every": train.checkpoint_every, "train.knn_every": train.knn_every,
                       "optim.warmup_steps": optim.warmup_steps, "model.head_hidden": config.model.head_hidden or 0,
                       "optim.weight_decay": optim.weight_decay, "data.num_workers": config.data.num_workers}.items():
        if value < 0:
            raise ValueError(f"{key}={value} must be >= 0")
    for key, limit in MAX_EVAL.items():
        if getattr(config.eval, key.split(".")[1]) > limit:
            raise ValueError(f"{key}={getattr(config.eval, key.split('.')[1])} must be at most {limit}")
    if optim.lr <= 0:
        raise ValueError(f"optim.lr={optim.lr} must be positive")
    if optim.schedule not in SCHEDULES:
        raise ValueError(f"optim.schedule='{optim.schedule}' is not one of {', '.join(SCHEDULES)}")
    if not 0.0 <= optim.momentum < 1.0:
        raise ValueError(f"optim.momentum={optim.momentum} must be in [0, 1)")
    if not 0.0 <= objective.momentum <= 1.0:
        raise ValueError(f"objective.momentum={objective.momentum} must be in [0, 1] (1: the key encoder never moves)")
    if objective.name not in OBJECTIVES.names():
        raise ValueError(f"objective.name='{objective.name}' is not one of {', '.join(OBJECTIVES.names())}")
    if objective.temperature < MIN_TEMPERATURE or config.eval.knn_temperature <= 0:
        raise ValueError(f"objective.temperature must be >= {MIN_TEMPERATURE:g} and eval.knn_temperature > 0")
    if config.nda.nda_weight < 0:
        raise ValueError(f"nda.nda_weight={config.nda.nda_weight} must be >= 0 (0: NDA views computed, ignored)")
    if config.data.batch_size < 2 * objective.num_splits:
        raise ValueError(f"data.batch_size={config.data.batch_size} gives fewer than 2 images to each of the "
                         f"objective.num_splits={objective.num_splits} Shuffle-BN sub-batches; lower num_splits "
                         f"or raise the batch size")


def build_views(config: PretrainConfig, dataset) -> tuple[ViewAugment, nn.Module | None]:
    """The positive-view augmentation and the NDA transform (None for "none"), each tried on two
    training images so that a size or channel count they cannot handle fails now."""
    settings = config.augment
    try:
        augment = ViewAugment(settings.crop_scale, settings.crop_ratio, settings.flip_prob, settings.jitter_prob,
                              settings.brightness, settings.contrast, settings.saturation, settings.grayscale_prob,
                              settings.hue, settings.jitter_order, settings.blur_prob, settings.blur_sigma)
    except ValueError as err:
        raise _with_key("augment", err) from None
    negative = None
    if config.nda.transform != "none":
        options = dict(config.nda.options)
        if config.nda.transform == "other_data":
            options = {"source": build_other_data_source(config, dataset, config.train.seed)}
        try:
            negative = nda_transforms.build(config.nda.transform, **options)
        except ValueError as err:
            raise _with_key("nda", err) from None
    x, _ = dataset[0]
    probe = torch.stack([x, x.flip(-1)])
    for key, transform in (("augment", augment), ("nda", negative)):
        try:
            if transform is not None:
                transform(probe, generator=torch.Generator().manual_seed(0))
        except ValueError as err:
            raise _with_key(key, err) from None
    return augment, negative


def build_model(config: PretrainConfig, dataset) -> MoCo:
    """MoCo over the configured encoder, weights and queue drawn from `train.seed` (the caller's
    global generator is left as it was)."""
    settings, objective = config.model, config.objective
    if "in_channels" in settings.options:
        raise ValueError("model.options.in_channels comes from the data; remove it")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.train.seed)
        try:
            encoder = ENCODERS.build(settings.encoder, in_channels=dataset.num_channels, **settings.options)
        except ValueError as err:
            raise _with_key("model", err) from None
        try:
            return MoCo(encoder, dim=settings.dim, head_hidden=settings.head_hidden, queue_size=objective.queue_size,
                        momentum=objective.momentum, temperature=objective.temperature,
                        nda_weight=config.nda.nda_weight, num_splits=objective.num_splits, objective=objective.name)
        except ValueError as err:
            raise _with_key("objective", err) from None


def build_test_split(config: PretrainConfig, num_classes: int):
    """The held-out split that the k-NN monitor during training is measured on: validation, since
    a monitor is read to choose (None when the data has no labels)."""
    if num_classes < 2:
        if config.train.knn_every > 0:
            raise ValueError(f"train.knn_every={config.train.knn_every} needs labelled data; "
                             f"'{config.data.name}' has no classes (set train.knn_every=0)")
        return None
    try:
        return build_dataset(config, split="val")
    except ValueError as err:
        raise ValueError(f"k-NN accuracy needs the data's held-out validation split, which fails: {err}") from None


def build_pretraining(config: PretrainConfig) -> tuple[PretrainRecipe, PretrainState]:
    """The recipe and the initial state of a pretraining run; raises before any training work."""
    check_pretrain_scalars(config)
    device = resolve_device(config.train.device)
    dataset = build_dataset(config)
    if getattr(dataset, "image_size", None) is None:
        raise ValueError(f"data: '{config.data.name}' holds 2-D points, not images; contrastive pretraining needs images")
    num_classes = int(getattr(dataset, "num_classes", 0) or 0)
    test_dataset = build_test_split(config, num_classes)
    augment, negative = build_views(config, dataset)
    check_precision(config.train.precision, device)
    model = build_model(config, dataset).to(device)
    if config.train.precision == "bf16":  # as GAN runs: NHWC convolutions under bf16 autocast
        model.to(memory_format=torch.channels_last)
    distributed.broadcast_module(model)  # data parallel: every rank starts from rank 0's weights and queue
    if config.train.compile:  # the networks, not MoCo's own forward (queue, shuffle, momentum update)
        compile_in_place([model.encoder_q, model.head_q, model.encoder_k, model.head_k])
    optimizer = torch.optim.SGD(model.trainable_parameters(), lr=config.optim.lr, momentum=config.optim.momentum,
                                weight_decay=config.optim.weight_decay)
    seed = rank_seed(config.train.seed, distributed.rank())  # per-rank streams; rank 0: train.seed's
    batches = BatchStream(dataset, config.data.batch_size, config.train.seed, device, config.data.num_workers,
                          rank=distributed.rank(), world=distributed.world_size())
    state = PretrainState(model=model, optimizer=optimizer, batches=batches,
                          augment_rng=torch.Generator().manual_seed(seed + 1),
                          nda_rng=torch.Generator().manual_seed(seed + 2),
                          shuffle_rng=torch.Generator().manual_seed(seed + 3),
                          scaler=torch.amp.GradScaler("cuda") if config.train.precision == "fp16" else None)
    recipe = PretrainRecipe(dataset, test_dataset, augment, negative, num_classes, device)
    return recipe, state
