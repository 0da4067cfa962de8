"""Turn a TranslationConfig into a Pix2Pix run's parts, checking every value before any work.

    recipe, state = build_translation(config)

`TranslationRecipe` is what every step does and never changes (paired data, NDA transform, losses,
precision, device); `TranslationState` is what training changes and the only definition of what a
checkpoint holds: G, D, both Adam optimizers, the fp16 grad scaler, the step, the data stream's
position and every random stream (NDA draws; dropout draws from torch's global generator, which
the state holds too; data parallel: every rank's, `state.add_rank_streams`).
Each failure is a one-line `ValueError` / `FileNotFoundError` naming the config key.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from negaug import distributed, losses, nda
from negaug.data.paired import PairedDataset, build_paired
from negaug.experiment.build import (
    _with_key,
    autocast_of,
    check_precision,
    check_seed,
    check_threads,
    compile_in_place,
    resolve_device,
    sync_batch_norm,
)
from negaug.experiment.config import check_run_name
from negaug.experiment.state import RunState, rank_seed
from negaug.experiment.stats import Stats
from negaug.experiment.stream import BatchStream
from negaug.experiment.translate_config import TranslationConfig
from negaug.files import check_folder
from negaug.losses import GANLoss, check_lam
from negaug.models.pix2pix import PatchDiscriminator, UNetGenerator, build_pix2pix

MAX_SAMPLE_IMAGES = 64
SCORE_KEYS = ("pixel_accuracy", "class_accuracy", "mean_iou")  # segmentation scores eval.best_metric may name


class PairStream(BatchStream):
    """The seeded, resumable stream of `BatchStream` over pairs: `next() -> (conditions, targets)`."""

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        conditions, targets = self.dataset.get_batch(self._advance())
        return conditions.to(self.device, non_blocking=True), targets.to(self.device, non_blocking=True)


@dataclass(frozen=True)
class TranslationRecipe:
    dataset: PairedDataset  # training pairs
    test_dataset: PairedDataset  # eval.split: samples and the segmentation scores
    negative: nn.Module | None  # NDA transform of the real targets, or None
    loss: GANLoss
    lam: float  # share of G(c) on D's fake side (1 without NDA)
    l1_weight: float
    d_scale: float
    device: torch.device
    precision: str = "fp32"  # train.precision: fp32, bf16 or fp16
    val_dataset: PairedDataset | None = None  # the val split, scored every eval.every steps (None: eval.every=0)

    def autocast(self):
        """The autocast context of `precision` (`build.autocast_of`; a no-op for fp32)."""
        return autocast_of(self.precision, self.device)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """An image batch as G and D take it: channels_last under bf16 (as the networks), else unchanged."""
        return x.contiguous(memory_format=torch.channels_last) if self.precision == "bf16" else x


@dataclass
class TranslationState(RunState):
    generator: UNetGenerator
    discriminator: PatchDiscriminator
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    batches: PairStream
    nda_rng: torch.Generator  # NDA draws
    scaler: torch.amp.GradScaler | None = None  # train.precision=fp16 only
    step: int = 0  # optimizer steps done
    best: dict[str, Any] | None = None  # {"metric": eval.best_metric, "value", "step"}: the best val score so far
    stats: Stats = field(default_factory=Stats)

    def modules(self) -> dict[str, Any]:
        return {"generator": self.generator, "discriminator": self.discriminator}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt_g": self.opt_g, "opt_d": self.opt_d}

    def streams(self) -> dict[str, torch.Generator]:
        return {"nda": self.nda_rng}  # dropout draws from torch's global generators (saved too)

    def extra_state(self) -> dict[str, Any]:
        return {} if self.best is None else {"best": self.best}  # only with eval.every: other layouts kept

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.best = state.get("best")


def check_translation_scalars(config: TranslationConfig) -> None:
    """Ranges that need no registry, each error naming its key."""
    train, optim = config.train, config.optim
    check_run_name(train.name)
    check_folder(train.runs_dir, "train.runs_dir")
    check_seed("train.seed", train.seed)
    check_threads("train.threads", train.threads)
    for key, value in {"data.batch_size": config.data.batch_size, "train.steps": train.steps,
                       "train.log_every": train.log_every, "train.keep_checkpoints": train.keep_checkpoints,
                       "train.num_sample_images": train.num_sample_images,
                       "eval.batch_size": config.eval.batch_size}.items():
        if value < 1:
            raise ValueError(f"{key}={value} must be at least 1")
    for key, value in {"train.checkpoint_every": train.checkpoint_every, "train.sample_every": train.sample_every,
                       "loss.l1_weight": config.loss.l1_weight}.items():
        if value < 0:
            raise ValueError(f"{key}={value} must be >= 0")
    if train.num_sample_images > MAX_SAMPLE_IMAGES:
        raise ValueError(f"train.num_sample_images={train.num_sample_images} must be at most {MAX_SAMPLE_IMAGES}")
    if config.eval.every < 0:
        raise ValueError(f"eval.every={config.eval.every} must be >= 0 (0: no validation scores during training)")
    if config.eval.best_metric not in SCORE_KEYS:
        raise ValueError(f"eval.best_metric={config.eval.best_metric!r} is not a segmentation score; "
                         f"valid: {', '.join(SCORE_KEYS)}")
    if config.eval.num_samples is not None and config.eval.num_samples < 1:
        raise ValueError(f"eval.num_samples={config.eval.num_samples} must be at least 1 (or null: the whole split)")
    for key, value in {"optim.lr_g": optim.lr_g, "optim.lr_d": optim.lr_d, "loss.d_scale": config.loss.d_scale}.items():
        if not value > 0:
            raise ValueError(f"{key}={value} must be positive")
    for key, value in {"optim.beta1": optim.beta1, "optim.beta2": optim.beta2}.items():
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{key}={value} must be in [0, 1)")
    try:
        check_lam(config.nda.lam)
    except ValueError as err:
        raise _with_key("nda.lam", err) from None


def build_paired_split(config: TranslationConfig, split: str) -> PairedDataset:
    settings = config.data
    try:
        return build_paired(settings.name, root=settings.root, split=split, image_size=settings.image_size,
                            **settings.options)
    except ValueError as err:
        raise _with_key("data", err) from None


def build_val_split(config: TranslationConfig) -> PairedDataset | None:
    """The val split scored every eval.every steps (None when eval.every=0); a dataset without
    one (cityscapes) is refused, naming the fix."""
    if not config.eval.every:
        return None
    try:
        return build_paired(config.data.name, root=config.data.root, split="val", image_size=config.data.image_size,
                            **config.data.options)
    except ValueError:  # the training split was built with the same settings: the split is what failed
        raise ValueError(f"eval.every={config.eval.every} scores the val split, which data.name="
                         f"'{config.data.name}' does not have; set eval.every=0") from None


def build_loss(config: TranslationConfig) -> GANLoss:
    try:
        loss = losses.build(config.loss.gan, **config.loss.options)
    except ValueError as err:
        raise _with_key("loss.gan", err) from None
    if loss.gp_weight or loss.clip_value is not None:
        raise ValueError(f"loss.gan='{config.loss.gan}' needs a Lipschitz critic (weight clipping or a gradient "
                         f"penalty), which pix2pix runs do not support; use nonsaturating, lsgan or hinge")
    return loss


def build_negative(config: TranslationConfig, dataset: PairedDataset) -> nn.Module | None:
    """The NDA transform of the targets (None for "none"), tried on two targets now."""
    if config.nda.transform == "none":
        return None
    if config.nda.transform == "other_data":
        raise ValueError("nda.transform='other_data' is not available for pix2pix runs; use jigsaw, stitch, cutout, ...")
    try:
        negative = nda.build(config.nda.transform, **config.nda.options)
        negative(dataset.get_batch(torch.arange(2))[1], generator=torch.Generator().manual_seed(0))
    except ValueError as err:
        raise _with_key("nda", err) from None
    return negative


def build_networks(config: TranslationConfig, dataset: PairedDataset) -> tuple[UNetGenerator, PatchDiscriminator]:
    """G and D with weights drawn from `train.seed` (the caller's global generator is left as it was)."""
    settings = config.model
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.train.seed)
        try:
            return build_pix2pix(dataset.image_size, dataset.num_channels, dataset.target_channels,
                                 width=settings.width, norm=settings.norm, dropout=settings.dropout,
                                 d_layers=settings.d_layers, d_width=settings.d_width)
        except ValueError as err:
            raise _with_key("model", err) from None


def data_parallel_networks(generator: UNetGenerator, discriminator: PatchDiscriminator,
                           device: torch.device) -> tuple[nn.Module, nn.Module]:
    """G and D for a data-parallel run (`build.sync_batch_norm`, unchanged in one process):
    model.norm=batch couples the samples of a batch in both, so their batch norm is synchronised
    on GPUs and refused on CPUs; instance norm (the default) is per sample and needs nothing."""
    refusal = ("model.norm=batch couples the samples of a batch, whose statistics a data-parallel run on CPUs "
               "(torchrun, gloo) cannot synchronise; set model.norm=instance, or train on GPUs "
               "(synchronised batch norm)")
    return sync_batch_norm(generator, device, refusal), sync_batch_norm(discriminator, device, refusal)


def build_translation(config: TranslationConfig) -> tuple[TranslationRecipe, TranslationState]:
    """The recipe and the initial state of a Pix2Pix run; raises before any training work.
    Data parallel (torchrun): every rank starts from rank 0's weights and draws its own data share,
    NDA and dropout streams (rank 0: those of one process, `state.rank_seed`)."""
    check_translation_scalars(config)
    device = resolve_device(config.train.device)
    check_precision(config.train.precision, device)
    dataset = build_paired_split(config, config.data.split)
    test_dataset = build_paired_split(config, config.eval.split)
    val_dataset = build_val_split(config)
    loss, negative = build_loss(config), build_negative(config, dataset)
    generator, discriminator = build_networks(config, dataset)
    generator, discriminator = data_parallel_networks(generator.to(device), discriminator.to(device), device)
    if config.train.precision == "bf16":  # as GAN runs: NHWC convolutions under bf16 autocast
        generator.to(memory_format=torch.channels_last)
        discriminator.to(memory_format=torch.channels_last)
    for network in (generator, discriminator):
        distributed.broadcast_module(network)  # data parallel: rank 0's weights (equal already: same seed)
    betas = (config.optim.beta1, config.optim.beta2)
    opt_g = torch.optim.Adam(generator.parameters(), lr=config.optim.lr_g, betas=betas)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=config.optim.lr_d, betas=betas)
    seed = config.train.seed
    batches = PairStream(dataset, config.data.batch_size, seed, device, rank=distributed.rank(),
                         world=distributed.world_size())
    state = TranslationState(generator, discriminator, opt_g, opt_d, batches,
                             nda_rng=torch.Generator().manual_seed(rank_seed(seed, distributed.rank()) + 2),
                             scaler=torch.amp.GradScaler("cuda") if config.train.precision == "fp16" else None)
    if config.train.compile:
        compile_in_place([generator, discriminator])
    lam = config.nda.lam if negative is not None else 1.0
    recipe = TranslationRecipe(dataset, test_dataset, negative, loss, lam, config.loss.l1_weight,
                               config.loss.d_scale, device, config.train.precision, val_dataset)
    return recipe, state
