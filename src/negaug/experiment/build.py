"""Turn a Config into a run's parts, checking every value before any work starts.

    recipe, state = build(config)

`Recipe` is what every training step does and never changes during a run (data, loss, NDA and
PDA transforms, lam, penalties, precision, device); `TrainState` (`negaug.experiment.state`) is
what training changes and a checkpoint holds. Each failure is a `ValueError` /
`FileNotFoundError` whose one line names the config key and the fix. Nothing here touches the
process: model weights are initialised from `train.seed` inside `torch.random.fork_rng`.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from negaug import augment, data, distributed, losses, metrics, models
from negaug import nda as nda_transforms
from negaug.experiment.config import Config, ModelConfig, check_run_name, short_repr
from negaug.experiment.state import TrainState, rank_seed
from negaug.experiment.stream import BatchStream
from negaug.experiment.wandb_logger import check_wandb
from negaug.files import check_folder
from negaug.models.mixture import MAX_COMPONENTS, REGULARISERS, MixtureDiscriminator, MixtureGenerator
from negaug.registry import check_int, closest

VALID_MODES = ("weighted", "mixture")
VALID_PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass(frozen=True)
class Recipe:
    """What each training step does; fixed for the whole run."""

    dataset: Any  # ImageDataset or a 2-D toy dataset
    loss: losses.GANLoss
    negative: nn.Module | None  # the NDA transform; None: plain GAN (transform "none" or lam == 1)
    positive: nn.Module | None  # positive augmentation (PDA) of real images, or None
    lam: float  # eq. 3: weight of generated samples on D's fake side; 1 - lam goes to the negatives
    mode: str  # "weighted" or "mixture"
    positive_prob: float  # share of real images replaced by their PDA version
    batch_size: int  # real images per D step
    num_d_steps: int  # D steps per G step
    num_classes: int  # > 0 when training is class-conditional
    gp_weight: float  # gradient penalty (WGAN-GP) weight, 0: off
    r1_weight: float  # R1 penalty weight, 0: off
    clip_value: float  # WGAN weight clipping, 0: off
    precision: str  # fp32, bf16 or fp16
    device: torch.device
    diffaugment: augment.DiffAugment | None = None  # applied to every image D sees (both steps), or None
    consistency: augment.ConsistencyTransform | None = None  # CR-GAN's T on real images, or None (off)
    consistency_weight: float = 0.0  # weight of the CR penalty, 0: off
    r2_weight: float = 0.0  # R2 penalty weight (D's fake side), 0: off
    fm_weight: float = 0.0  # feature-matching weight in the G loss, 0: off
    fm_reduction: str = "sum"  # feature matching: "sum" of squares (the paper) or "mean_abs" (improved-gan's code)
    ortho_reg: float = 0.0  # weight of the orthogonal penalty on G's weights in the G step, 0: off
    mixture_entropy: float | None = None  # MIX+GAN (G and D are mixtures): regulariser weight; None: one G, one D
    mixture_regulariser: str = "log"  # MIX+GAN's regulariser on the mixture weights ("log" or "entropy")

    def autocast(self):
        """The autocast context of `precision` (a no-op for fp32)."""
        return autocast_of(self.precision, self.device)


def autocast_of(precision: str, device: torch.device):
    """The autocast context of a run's train.precision on `device`, for every kind (fp32: none)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def check_precision(precision: str, device: torch.device) -> None:
    """train.precision of a run of any kind: fp32, bf16 or fp16, and fp16 only on a GPU."""
    if precision not in VALID_PRECISIONS:
        raise ValueError(f"train.precision='{precision}' is not one of {', '.join(VALID_PRECISIONS)}")
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("train.precision=fp16 needs a GPU; on the CPU use train.precision=bf16")


def resolve_device(name: str | torch.device, key: str = "train.device") -> torch.device:
    """The device `name` ("auto": CUDA when available); ValueError naming `key` when it is not one.
    In a data-parallel run "auto" and "cuda" mean this process's GPU, cuda:LOCAL_RANK."""
    if name in ("auto", "cuda") and distributed.is_distributed() and torch.cuda.is_available():
        return torch.device("cuda", distributed.local_rank())
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"{key}: '{name}' is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"{key}: '{name}' is not a device negaug trains or evaluates on; use auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{key}: CUDA is not available here; use cpu")
    if device.type == "cuda" and distributed.is_distributed():
        raise ValueError(f"{key}: '{name}' names one GPU, but under torchrun each process uses its own "
                         f"(cuda:LOCAL_RANK); use {key}=cuda or auto")
    return device


MAX_SEED = 2**31 - 1  # seeds are combined with counters (data order: seed * 1_000_003 + epoch)


def check_seed(key: str, seed: int) -> int:
    """A seed within +-MAX_SEED; ValueError naming `key` (a config key or a flag) otherwise."""
    if isinstance(seed, bool) or not isinstance(seed, int) or abs(seed) > MAX_SEED:
        raise ValueError(f"{key}={seed} must be an integer in -{MAX_SEED}..{MAX_SEED}")
    return seed


MAX_THREADS = 256


def check_threads(key: str, threads: int | None) -> int | None:
    """A thread count from 1 to MAX_THREADS, or None (torch's default); ValueError naming `key`."""
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                or not 1 <= threads <= MAX_THREADS):
        raise ValueError(f"{key}={threads} must be an integer from 1 to {MAX_THREADS}, or null (torch's default); "
                         f"1 is the fastest on a shared machine")
    return threads


def check_scalars(config: Config) -> None:
    """Checks that need no registry: ranges and enumerations."""
    nda, optim, train = config.nda, config.optim, config.train
    check_run_name(train.name)
    check_folder(train.runs_dir, "train.runs_dir")
    if not 1 <= config.model.mixture <= MAX_COMPONENTS:
        raise ValueError(f"model.mixture={config.model.mixture} must be in 1..{MAX_COMPONENTS} (1: one G and one D; "
                         f"MIX+GAN: e.g. 3)")
    check_seed("train.seed", train.seed)
    check_threads("train.threads", train.threads)
    check_seed("eval.seed", config.eval.seed)
    if not 0.0 < nda.lam <= 1.0:
        raise ValueError(f"nda.lam={nda.lam} is outside (0, 1]; use e.g. nda.lam=0.25 (1.0 = no negatives)")
    if nda.mode not in VALID_MODES:
        raise ValueError(f"nda.mode='{nda.mode}' is not one of {', '.join(VALID_MODES)}")
    if not 0.0 <= nda.positive_prob <= 1.0:
        raise ValueError(f"nda.positive_prob={nda.positive_prob} is outside [0, 1]")
    if train.precision not in VALID_PRECISIONS:
        raise ValueError(f"train.precision='{train.precision}' is not one of {', '.join(VALID_PRECISIONS)}")
    positives = {
        "data.batch_size": config.data.batch_size, "optim.num_d_steps": optim.num_d_steps,
        "train.steps": train.steps, "train.log_every": train.log_every,
        "train.num_sample_images": train.num_sample_images, "train.keep_checkpoints": train.keep_checkpoints,
    }
    for key, value in positives.items():
        if value < 1:
            raise ValueError(f"{key}={value} must be at least 1")
    for key in ("lr_g", "lr_d", "eps"):
        if getattr(optim, key) <= 0:
            raise ValueError(f"optim.{key}={getattr(optim, key)} must be positive")
    if not 0.0 <= optim.ortho_reg < math.inf:
        raise ValueError(f"optim.ortho_reg={optim.ortho_reg} must be a finite number >= 0 (0: off; BigGAN: 1e-4)")
    for key in ("beta1", "beta2"):
        if not 0.0 <= getattr(optim, key) < 1.0:
            raise ValueError(f"optim.{key}={getattr(optim, key)} must be in [0, 1)")
    if not 0.0 <= train.ema_decay < 1.0:
        raise ValueError(f"train.ema_decay={train.ema_decay} must be in [0, 1) (0 disables the EMA)")
    for key in ("sample_every", "checkpoint_every", "ema_start"):
        if getattr(train, key) < 0:
            raise ValueError(f"train.{key} must be >= 0")
    if config.eval.every < 0 or (config.eval.num_samples is not None and config.eval.num_samples < 2):
        raise ValueError("eval.every must be >= 0 and eval.num_samples >= 2 (or null: as many as the test split)")
    upper = {"eval.num_samples": (config.eval.num_samples or 0, 1_000_000), "data.num_workers": (config.data.num_workers, 256),
             "train.num_sample_images": (train.num_sample_images, 1024)}  # memory and processes, not learning
    for key, (value, limit) in upper.items():
        if not 0 <= value <= limit:
            raise ValueError(f"{key}={value} must be in 0..{limit}")
    if nda.mode == "mixture" and nda.lam < 1.0 and round(nda.lam * config.data.batch_size) < 1:
        raise ValueError(f"nda.lam={nda.lam} with data.batch_size={config.data.batch_size} leaves no generated sample in mixture mode")


def _with_key(key: str, err: Exception) -> ValueError:
    message = str(err)
    return ValueError(message if message.startswith(key) else f"{key}: {message}")


def build_dataset(config: Config, split: str | None = None):
    settings = config.data
    try:
        return data.build(settings.name, root=settings.root, split=split or settings.split,
                          download=settings.download, image_size=settings.image_size, **settings.options)
    except ValueError as err:
        raise _with_key("data", err) from None


def _is_image_dataset(dataset) -> bool:
    return getattr(dataset, "image_size", None) is not None


def build_other_data_source(config: Config, dataset, seed: int) -> torch.Tensor:
    """The source tensor of `other_data` negatives: a dataset from the registry, or the toy
    negatives (`dataset: toy_negatives`) of a 2-D dataset."""
    options = dict(config.nda.options)
    name = options.pop("dataset", None)
    dataset_options = _dataset_options(options.pop("dataset_options", None))
    if name is None:
        raise ValueError("nda.options.dataset is required for other_data (e.g. nda.options.dataset=dots)")
    if not isinstance(name, str):
        raise ValueError(f"nda.options.dataset must be a dataset name, got {short_repr(name)}")
    if options:
        raise ValueError(f"unknown nda.options for other_data: {', '.join(options)}; valid: dataset, dataset_options")
    if name == "toy_negatives":
        count = check_int("nda.options.dataset_options.num_samples", dataset_options.pop("num_samples", 20000),
                          1, data.base.MAX_SAMPLES)
        gen = torch.Generator().manual_seed(seed + 7)
        return data.toy_negatives(dataset, count, generator=gen, **dataset_options)
    image_size = getattr(dataset, "image_size", None)
    try:
        source = data.build(name, root=config.data.root, split=dataset_options.pop("split", "train"),
                            download=config.data.download, image_size=image_size, **dataset_options)
    except ValueError as err:
        raise _with_key("nda.options", err) from None
    return source.images if hasattr(source, "images") else source


# set from the run's own data settings, never inside nda.options.dataset_options
RUN_DATA_KEYS = {"root": "data.root", "download": "data.download", "image_size": "data.image_size (the run's)"}


def _dataset_options(value: Any) -> dict[str, Any]:
    """nda.options.dataset_options checked as a mapping of option names (every option's type and
    range is then checked by the dataset itself); keys the run sets itself are refused by name."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"nda.options.dataset_options must be a mapping of dataset options "
                         f"(e.g. {{count: [4, 5, 7]}}), got {short_repr(value)}")
    for key in value:
        if key in RUN_DATA_KEYS:
            raise ValueError(f"nda.options.dataset_options.{key} cannot be set: other_data uses "
                             f"{RUN_DATA_KEYS[key]}")
    return dict(value)


def build_nda(config: Config, dataset, seed: int) -> tuple[nn.Module | None, nn.Module | None]:
    """The NDA transform (None for a plain GAN) and the PDA transform (None when off)."""
    settings = config.nda
    negative = None
    if settings.transform != "none" and settings.lam < 1.0:
        options = dict(settings.options)
        if settings.transform == "other_data":
            options = {"source": build_other_data_source(config, dataset, seed)}
        try:
            negative = nda_transforms.build(settings.transform, **options)
        except ValueError as err:
            raise _with_key("nda", err) from None
    positive = None
    if settings.positive != "none" and settings.positive_prob > 0:
        try:
            positive = nda_transforms.build(settings.positive, **settings.positive_options)
        except ValueError as err:
            raise _with_key("nda.positive", err) from None
    probe = _probe_batch(dataset)
    for key, transform in (("nda", negative), ("nda.positive", positive)):
        if transform is not None:
            try:
                transform(probe, generator=torch.Generator().manual_seed(0))
            except ValueError as err:
                raise _with_key(key, err) from None
    return negative, positive


def _probe_batch(dataset) -> torch.Tensor:
    """Two training-shaped inputs, to let each transform reject sizes it cannot handle."""
    x, _ = dataset[0]
    return torch.stack([x, x.flip(-1)])


def build_models(config: Config, dataset) -> tuple[nn.Module, nn.Module, int]:
    """(G, D, num_classes), weights initialised from `train.seed` without touching the caller's RNG."""
    settings = config.model
    num_classes = int(getattr(dataset, "num_classes", 0) or 0) if settings.conditional else 0
    if settings.conditional and num_classes < 2:
        raise ValueError(f"model.conditional=true needs a labelled dataset; '{config.data.name}' has no classes")
    if _is_image_dataset(dataset):
        shape = {"image_size": dataset.image_size, "channels": dataset.num_channels}
    else:
        shape = {"image_size": None, "channels": None, "data_dim": getattr(dataset, "dim", 2)}
    count = settings.mixture
    try:
        with torch.random.fork_rng(devices=[]):  # weight init is the one user of the global RNG
            torch.manual_seed(config.train.seed)
            pairs = [models.build(settings.name, num_classes=num_classes, **shape, **settings.options)
                     for _ in range(count)]  # MIX+GAN: each pair initialised in turn from the one seed
    except (ValueError, TypeError) as err:
        raise _with_key("model", err) from None
    if count == 1:
        return pairs[0][0], pairs[0][1], num_classes
    return MixtureGenerator([g for g, _ in pairs]), MixtureDiscriminator([d for _, d in pairs]), num_classes


def build_loss(config: Config):
    try:
        loss = losses.build(config.loss.name, **config.loss.options)
    except ValueError as err:
        raise _with_key("loss", err) from None
    gp = config.loss.gradient_penalty
    gp = float(getattr(loss, "gp_weight", 0.0) or 0.0) if gp is None else gp
    clip = config.loss.weight_clip
    clip = float(getattr(loss, "clip_value", 0.0) or 0.0) if clip is None else clip
    if gp < 0 or clip < 0 or config.loss.r1_penalty < 0:
        raise ValueError("loss.gradient_penalty, loss.weight_clip and loss.r1_penalty must be >= 0")
    for key in ("r2_penalty", "feature_matching"):
        if getattr(config.loss, key) < 0:
            raise ValueError(f"loss.{key}={getattr(config.loss, key)} must be >= 0 (0: off)")
    if config.loss.feature_matching_reduction not in ("sum", "mean_abs"):
        raise ValueError(f"loss.feature_matching_reduction={config.loss.feature_matching_reduction} is not one of "
                         f"sum, mean_abs (sum: the paper's formula; mean_abs: improved-gan's code)")
    if not loss.uses_discriminator:
        check_no_discriminator(config, gp, clip)
    if config.model.mixture != 1:
        check_mixture(config, gp, clip)
    else:
        for key in ("mixture_entropy", "mixture_regulariser"):
            value = getattr(config.model, key)
            if value != getattr(ModelConfig(), key):
                raise ValueError(f"model.{key}={value} acts on MIX+GAN's mixture weights, which model.mixture=1 "
                                 f"has none of; set model.mixture to 2 or more, or drop the key")
    return loss, gp, clip


def check_mixture(config: Config, gp: float, clip: float) -> None:
    """MIX+GAN (`model.mixture` > 1) trains on the mixed game's payoff with a plain D step: it
    refuses what would act on one D (penalties, clipping, augmentation, features) or mix kinds."""
    key = f"model.mixture={config.model.mixture}"
    if config.loss.name == "mmd":
        raise ValueError(f"{key} mixes generators and discriminators, and loss.name=mmd has no discriminator; "
                         f"set model.mixture=1, or use a GAN loss (e.g. loss.name=nonsaturating)")
    if not 0.0 <= config.model.mixture_entropy < math.inf:
        raise ValueError(f"model.mixture_entropy={config.model.mixture_entropy} must be a finite number >= 0 "
                         f"(Arora et al.'s code: 0.1)")
    if config.model.mixture_regulariser not in REGULARISERS:
        raise ValueError(f"model.mixture_regulariser={config.model.mixture_regulariser} is not one of "
                         f"{', '.join(REGULARISERS)} (log: Arora et al.'s code; entropy: -H(w))")
    settings = {"loss.gradient_penalty": gp, "loss.weight_clip": clip, "loss.r1_penalty": config.loss.r1_penalty,
                "loss.r2_penalty": config.loss.r2_penalty, "loss.feature_matching": config.loss.feature_matching,
                "loss.consistency": config.loss.consistency}
    for name, value in settings.items():
        if value > 0:
            raise ValueError(f"{name}={value:g} is not supported with {key} (MIX+GAN trains on the mixed payoff "
                             f"alone); set {name}=0 or model.mixture=1")
    refused = {"train.diffaugment": (config.train.diffaugment != "none", "none"),
               "model.conditional": (config.model.conditional, "false"),
               "nda.mode": (config.nda.mode != "weighted", "weighted")}
    for name, (on, fix) in refused.items():
        if on:
            raise ValueError(f"{name} is not supported with {key}; set {name}={fix} or model.mixture=1")


def check_no_discriminator(config: Config, gp: float, clip: float) -> None:
    """A loss without a discriminator (mmd, GMMN) refuses the settings that act on one."""
    name = config.loss.name
    settings = {"loss.gradient_penalty": gp, "loss.weight_clip": clip, "loss.r1_penalty": config.loss.r1_penalty,
                "loss.r2_penalty": config.loss.r2_penalty, "loss.feature_matching": config.loss.feature_matching,
                "loss.consistency": config.loss.consistency}
    for key, value in settings.items():
        if value > 0:
            raise ValueError(f"{key}={value:g} acts on a discriminator, which loss.name={name} has none of; set {key}=0")
    if config.optim.num_d_steps != 1:
        raise ValueError(f"optim.num_d_steps={config.optim.num_d_steps} counts discriminator steps, which "
                         f"loss.name={name} has none of (one G step per step); set optim.num_d_steps=1")
    if config.train.diffaugment != "none":
        raise ValueError(f"train.diffaugment={config.train.diffaugment} augments what a discriminator sees, which "
                         f"loss.name={name} has none of; set train.diffaugment=none")
    if config.model.conditional:
        raise ValueError(f"loss.name={name} is unconditional (GMMN); set model.conditional=false")
    if config.model.options.get("minibatch_discrimination"):
        raise ValueError(f"model.options.minibatch_discrimination is a discriminator layer, which loss.name={name} "
                         f"has none of; set model.options.minibatch_discrimination=0")
    if config.nda.mode != "weighted":
        raise ValueError(f"nda.mode={config.nda.mode} mixes D's fake batch, which loss.name={name} has none of; "
                         f"use nda.mode=weighted (negatives enter as a repulsive MMD term)")


def check_penalties(config: Config, discriminator: nn.Module, gp_weight: float, r1_weight: float) -> None:
    """Gradient penalties are per-sample input gradients: meaningless for a D with batch norm."""
    if not models.is_batch_dependent(discriminator):
        return
    for key, weight in (("loss.gradient_penalty", gp_weight), ("loss.r1_penalty", r1_weight),
                        ("loss.r2_penalty", config.loss.r2_penalty)):
        if weight > 0 and config.model.options.get("minibatch_discrimination"):
            raise ValueError(f"{key}={weight:g} needs a discriminator whose scores do not depend on the batch, but "
                             f"minibatch discrimination compares each sample with the batch; set "
                             f"model.options.minibatch_discrimination=0, or {key}=0")
        if weight > 0:
            raise ValueError(
                f"{key}={weight:g} needs a discriminator whose scores do not depend on the batch, but the "
                f"'{config.model.name}' D uses batch norm; set model.options.spectral_norm=true "
                f"(or model.options.d_batch_norm=false), or {key}=0")


def build_augmentation(config: Config, dataset) -> tuple[augment.DiffAugment | None, augment.ConsistencyTransform | None]:
    """DiffAugment (`train.diffaugment`) and CR-GAN's transform (`loss.consistency` > 0), or None
    for each that is off; both need images."""
    policy, weight = config.train.diffaugment, config.loss.consistency
    if weight < 0:
        raise ValueError(f"loss.consistency={weight} must be >= 0 (0: off; CR-GAN uses 10)")
    diffaugment = None
    if policy != "none":
        try:
            diffaugment = augment.DiffAugment(policy)
        except ValueError as err:
            raise _with_key("train.diffaugment", err) from None
    if config.loss.consistency_padding not in ("zeros", "reflect"):
        raise ValueError(f"loss.consistency_padding={config.loss.consistency_padding} is not one of zeros, reflect "
                         f"(zeros: CR-BigGAN's code; reflect: mirror the border)")
    if weight == 0 and config.loss.consistency_padding != "reflect":
        raise ValueError(f"loss.consistency_padding={config.loss.consistency_padding} fills CR's shift, which "
                         f"loss.consistency=0 turns off; set loss.consistency > 0, or drop the key")
    consistency = augment.ConsistencyTransform(padding=config.loss.consistency_padding) if weight > 0 else None
    if (diffaugment is not None or consistency is not None) and not _is_image_dataset(dataset):
        key = "train.diffaugment" if diffaugment is not None else "loss.consistency"
        raise ValueError(f"{key} augments images, but '{config.data.name}' holds points; turn it off for this dataset")
    return diffaugment, consistency


def check_eval(config: Config) -> None:
    """Metric names and the extractor choice of in-training evaluation."""
    settings = config.eval
    for name in settings.metrics:
        if not isinstance(name, str) or name not in metrics.names():
            raise ValueError(f"eval.metrics: unknown metric {name!r}{closest(str(name), metrics.names())}; "
                             f"valid: {', '.join(metrics.names())}")
    reported = [result for name in metrics.names() for result in metrics.result_names(name)]
    if settings.best_metric and settings.best_metric not in reported:
        raise ValueError(f"eval.best_metric: unknown result '{settings.best_metric}'"
                         f"{closest(settings.best_metric, reported)}; valid: {', '.join(reported)}")
    if settings.feature_extractor not in ("auto", "inception", "classifier", "raw"):
        raise ValueError(f"eval.feature_extractor='{settings.feature_extractor}' is not one of auto, inception, classifier, raw")


def check_best_metric(config: Config, dataset) -> None:
    """eval.best_metric must be among the metrics each evaluation computes."""
    metric = config.eval.best_metric
    if not metric:
        return
    evaluated = config.eval.metrics or metrics.default_metrics(dataset, config.data.name)
    reported = [name for evaluated_metric in evaluated for name in metrics.result_names(evaluated_metric)]
    if metric not in reported:
        raise ValueError(f"eval.best_metric='{metric}' is not among the evaluated metrics ({', '.join(reported)}); "
                         f"choose one of them or add it to eval.metrics")


def check_eval_reference(config: Config) -> None:
    """Evaluations during training need held-out images (the validation split: they may select
    the best checkpoint): check it exists now, not at the first evaluation."""
    if config.eval.every > 0:
        try:
            build_dataset(config, split="val")
        except ValueError as err:
            raise ValueError(f"eval.every={config.eval.every} evaluates against the validation split, which "
                             f"fails: {err}") from None


def check_sinks(config) -> None:
    """train.tensorboard / train.wandb of a config of any kind: the optional package is there (one
    line naming the install command otherwise), checked before any run folder exists."""
    check_tensorboard(config)
    check_wandb(getattr(config.train, "wandb", False))


def check_tensorboard(config) -> None:
    if not getattr(config.train, "tensorboard", False):
        return
    try:
        import torch.utils.tensorboard  # noqa: F401  (optional dependency)
    except ImportError:
        raise ValueError("train.tensorboard=true needs the tensorboard package: pip install tensorboard") from None


def data_parallel_discriminator(config: Config, discriminator: nn.Module, device: torch.device) -> nn.Module:
    """D for a data-parallel run (unchanged in one process). A batch-dependent D must see the
    global batch's statistics (`sync_batch_norm`); minibatch discrimination is refused (it
    compares samples within the local batch only)."""
    if not distributed.is_distributed() or not models.is_batch_dependent(discriminator):
        return discriminator
    if any(getattr(m, "mixes_samples", False) is True for m in discriminator.modules()):
        raise ValueError("model.options.minibatch_discrimination compares each sample with its batch, which a "
                         "data-parallel run (torchrun) splits across processes; set "
                         "model.options.minibatch_discrimination=0, or train in one process")
    return sync_batch_norm(discriminator, device,
                           f"the '{config.model.name}' D uses batch norm, whose statistics a data-parallel run on "
                           f"CPUs (torchrun, gloo) cannot synchronise; set model.options.spectral_norm=true (or "
                           f"model.options.d_batch_norm=false), or train on GPUs (synchronised batch norm)")


def sync_batch_norm(network: nn.Module, device: torch.device, refusal: str) -> nn.Module:
    """`network` for a data-parallel run of any kind (GAN: D; Pix2Pix: G and D). When its output
    depends on the batch (`models.is_batch_dependent`: batch norm) it must see the global batch's
    statistics: on GPUs its batch norm becomes `nn.SyncBatchNorm` (in place; parameters kept, the
    declaration too); gloo (CPUs) has no synchronised batch norm, so ValueError(`refusal`), one
    line naming the fix. Unchanged in one process or for a per-sample network."""
    if not distributed.is_distributed() or not models.is_batch_dependent(network):
        return network
    if device.type != "cuda":
        raise ValueError(refusal)
    converted = nn.SyncBatchNorm.convert_sync_batchnorm(network)
    converted.batch_dependent = True  # the same module (its BN layers swapped in place): same declaration
    return converted


def build(config: Config) -> tuple[Recipe, TrainState]:
    """The recipe and the initial training state of a run; raises before any training work.
    Weights, data order, latents, NDA and augmentation draws are seeded by `train.seed`."""
    check_scalars(config)
    check_eval(config)
    check_sinks(config)
    device = resolve_device(config.train.device)
    if config.train.precision == "fp16" and device.type != "cuda":
        raise ValueError("train.precision=fp16 needs a GPU; on the CPU use train.precision=bf16")
    dataset = build_dataset(config)
    if len(dataset) < 2:
        raise ValueError(f"data: '{config.data.name}' has {len(dataset)} samples; at least 2 are needed")
    check_best_metric(config, dataset)
    check_eval_reference(config)
    loss, gp_weight, clip_value = build_loss(config)
    if config.train.compile:
        check_compile(config, gp_weight)
    negative, positive = build_nda(config, dataset, config.train.seed)
    diffaugment, consistency = build_augmentation(config, dataset)
    generator, discriminator, num_classes = build_models(config, dataset)
    check_penalties(config, discriminator, gp_weight, config.loss.r1_penalty)
    discriminator = data_parallel_discriminator(config, discriminator, device)
    recipe = Recipe(dataset, loss, negative, positive, config.nda.lam, config.nda.mode, config.nda.positive_prob,
                    config.data.batch_size, config.optim.num_d_steps, num_classes, gp_weight,
                    config.loss.r1_penalty, clip_value, config.train.precision, device,
                    diffaugment, consistency, config.loss.consistency,
                    r2_weight=config.loss.r2_penalty, fm_weight=config.loss.feature_matching,
                    fm_reduction=config.loss.feature_matching_reduction,
                    ortho_reg=config.optim.ortho_reg,
                    mixture_entropy=config.model.mixture_entropy if config.model.mixture > 1 else None,
                    mixture_regulariser=config.model.mixture_regulariser)
    state = new_state(config, dataset, generator, discriminator, device)
    for module in (state.generator, state.discriminator, state.ema.module if state.ema else None):
        if module is not None:  # data parallel: every rank starts from rank 0's weights (equal already: same seed)
            distributed.broadcast_module(module)
    if config.train.compile:  # after the EMA's copy: a deep copy would share the compiled call of G
        compile_in_place([state.generator, state.discriminator])
    return recipe, state


def compile_in_place(networks: list[nn.Module]) -> None:
    """train.compile=true of a run of any kind: `torch.compile` each network in place
    (`nn.Module.compile`: parameters and state_dict keys unchanged, so checkpoints interchange with
    eager runs); a MIX+GAN mixture's members one by one (its steps call the members)."""
    for network in networks:
        for module in getattr(network, "members", [network]):
            module.compile()


def check_compile(config: Config, gp_weight: float) -> None:
    """torch.compile cannot backpropagate twice through a compiled D (its backward is compiled
    without create_graph), which the gradient penalties need: refuse the combination up front."""
    for key, weight in (("loss.gradient_penalty", gp_weight), ("loss.r1_penalty", config.loss.r1_penalty),
                        ("loss.r2_penalty", config.loss.r2_penalty)):
        if weight > 0:
            raise ValueError(f"train.compile=true cannot be combined with {key}={weight:g}: torch.compile does not "
                             f"support the double backward of a gradient penalty; set train.compile=false or {key}=0")


def new_state(config: Config, dataset, generator: nn.Module, discriminator: nn.Module,
              device: torch.device) -> TrainState:
    """Step 0 of a run: the models on `device`, their optimizers, the EMA and the seeded streams."""
    generator.to(device)
    discriminator.to(device)
    if config.train.precision == "bf16" and _is_image_dataset(dataset):
        generator.to(memory_format=torch.channels_last)
        discriminator.to(memory_format=torch.channels_last)
    ema = None
    if config.train.ema_decay > 0:
        ema = models.EMA(generator, decay=config.train.ema_decay, start_step=config.train.ema_start)
    optim, seed = config.optim, rank_seed(config.train.seed, distributed.rank())  # per-rank streams
    adam = dict(betas=(optim.beta1, optim.beta2), eps=optim.eps)
    return TrainState(
        generator=generator, discriminator=discriminator, ema=ema,
        opt_g=torch.optim.Adam(generator.parameters(), lr=optim.lr_g, **adam),
        opt_d=torch.optim.Adam(discriminator.parameters(), lr=optim.lr_d, **adam),
        scaler=torch.amp.GradScaler("cuda") if config.train.precision == "fp16" and device.type == "cuda" else None,
        batches=BatchStream(dataset, config.data.batch_size, config.train.seed, device, config.data.num_workers,
                            rank=distributed.rank(), world=distributed.world_size()),
        latent_rng=torch.Generator().manual_seed(seed + 1),
        nda_rng=torch.Generator().manual_seed(seed + 2),
        augment_rng=torch.Generator().manual_seed(seed + 3),
    )
