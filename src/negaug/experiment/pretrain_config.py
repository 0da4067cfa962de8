"""The typed, strict configuration of `negaug pretrain`: MoCo-v2 with NDA negatives.

    cfg = load_pretrain_config("mnist", ["nda.transform=jigsaw", "train.steps=200"])

Read by the loader of `negaug.experiment.config` (same rules: unknown keys and wrong types name the
key and the nearest valid one, base chains, `section.key=value` overrides, plain option values);
its presets live in `negaug.presets.pretrain`, apart from `negaug train`'s. The values that need
the registries (encoder, dataset, NDA transform) are checked by
`negaug.experiment.pretrain.prepare_pretraining` before any run folder exists.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from negaug.experiment.config import ConfigBase, DataConfig, load_config, resumable_keys
from negaug.presets import preset_names


@dataclass
class PretrainDataConfig(DataConfig):
    batch_size: int = 256  # images per step; each gives a query view and a key view


@dataclass
class EncoderConfig:
    encoder: str = "small_cnn"  # `negaug.contrastive.ENCODERS` name: small_cnn (CPU), resnet18_cifar (GPU)
    options: dict = field(default_factory=dict)  # encoder options (width); in_channels comes from the data
    # hidden width of the MLP projection head; null: the encoder's feature size (MoCo v2's head,
    # `dim_mlp = encoder_q.fc.weight.shape[1]`: 512 -> 512 -> dim for ResNet-18); 0: one linear
    # layer (MoCo v1). 2048 is negaug's old reading of the paper's "feature dimensionality = 2048"
    head_hidden: int | None = 2048
    dim: int = 128  # output dimension of the head: the embedding InfoNCE compares (MoCo's --moco-dim)


@dataclass
class ObjectiveConfig:
    name: str = "infonce"  # `negaug.contrastive.OBJECTIVES`: infonce (MoCo's queue) or infonce_in_batch (SimCLR style)
    queue_size: int = 65536  # negatives kept from past batches (MoCo's K)
    momentum: float = 0.99  # key = momentum * key + (1 - momentum) * query, every step (main_moco.py: 0.999;
    # 0.99: MoCo's CIFAR-10 Colab demo)
    temperature: float = 0.07  # InfoNCE temperature (MoCo v1's and the paper's CIFAR value; MoCo v2: 0.2)
    num_splits: int = 8  # Shuffle-BN sub-batches in one process (1: plain BN, which lets the positive leak)


@dataclass
class PretrainNDAConfig:
    transform: str = "none"  # `negaug.nda` transform whose views are extra negatives (eq. 8), or "none"
    options: dict = field(default_factory=dict)  # transform options (jigsaw: k)
    nda_weight: float = 1.0  # weight of the NDA terms in InfoNCE's denominator (1: eq. 8 as printed)


@dataclass
class AugmentConfig:
    """The positive views (`negaug.contrastive.ViewAugment`). The defaults are MoCo-v2's recipe
    without hue, random order and blur (negaug's recipe before they existed); MoCo-v2's exactly:
    hue 0.1, jitter_order random, blur_prob 0.5 (the cifar10 presets)."""

    crop_scale: list | None = field(default_factory=lambda: [0.2, 1.0])  # random resized crop: area share; null: no crop
    crop_ratio: list = field(default_factory=lambda: [0.75, 1.3333333333333333])  # crop width / height range
    flip_prob: float = 0.5  # horizontal flip probability
    jitter_prob: float = 0.8  # colour jitter probability
    brightness: float = 0.4  # brightness factor in [1 - b, 1 + b] (0: off)
    contrast: float = 0.4  # contrast factor in [1 - c, 1 + c] (0: off)
    saturation: float = 0.4  # saturation factor in [1 - s, 1 + s] (0: off; no effect on grey images)
    grayscale_prob: float = 0.2  # grayscale probability (no effect on grey images)
    hue: float = 0.0  # hue shift in [-h, h] turns, h <= 0.5 (0: off; MoCo v2: 0.1)
    jitter_order: str = "fixed"  # "fixed" (brightness, contrast, saturation, hue) or "random" per image (torchvision, MoCo v2)
    blur_prob: float = 0.0  # Gaussian blur probability (MoCo v2: 0.5)
    blur_sigma: list = field(default_factory=lambda: [0.1, 2.0])  # blur standard deviation range, pixels


@dataclass
class PretrainOptimConfig:
    lr: float = 0.3  # SGD learning rate at the end of the warmup
    momentum: float = 0.9  # SGD momentum
    weight_decay: float = 5e-4  # SGD weight decay
    schedule: str = "cosine"  # "cosine" (decay to 0 at train.steps) or "constant"
    warmup_steps: int = 0  # linear warmup from 0 over these steps


@dataclass
class PretrainTrainConfig:
    steps: int = 1000  # optimizer steps (one batch each)
    seed: int = 0  # seeds weights, queue, data order, augmentation, NDA and Shuffle-BN draws
    device: str = "auto"  # "auto" (cuda if available), "cpu", "cuda", "cuda:1", ...
    log_every: int = 50  # steps between lines in metrics.jsonl
    checkpoint_every: int = 500  # steps between checkpoints; 0: only at the end
    keep_checkpoints: int = 2  # most recent checkpoints kept
    knn_every: int = 0  # steps between k-NN accuracies (eval.knn_*) during training; 0: only at the end
    precision: str = "fp32"  # fp32, bf16 (autocast, channels_last) or fp16 (autocast + a gradient scaler; GPUs only)
    compile: bool = False  # nn.Module.compile of both encoders and heads in place (same weights and checkpoint keys)
    runs_dir: str = "runs"  # parent folder of run folders
    name: str | None = None  # run folder name; None: <preset>-<timestamp>
    progress: bool = True  # progress bar with rate and time left
    deterministic: bool = True  # torch.use_deterministic_algorithms (needed for exact resume on GPUs)
    threads: int | None = None  # torch CPU threads for the run (restored after); null: torch's default. 1 on a shared machine
    tensorboard: bool = False  # also write TensorBoard logs (needs the tensorboard package)
    wandb: bool = False  # also log to Weights & Biases, offline unless WANDB_MODE says otherwise (needs .[wandb])


@dataclass
class PretrainEvalConfig:
    knn_k: int = 200  # neighbours of the weighted k-NN classifier (Wu et al. 2018, MoCo's CIFAR demo)
    knn_temperature: float = 0.1  # the k-NN vote weights are exp(cosine / knn_temperature)
    probe_epochs: int = 100  # epochs of the linear probe (`negaug probe`) on frozen features


@dataclass
class PretrainConfig(ConfigBase):
    PRESETS: ClassVar[str] = "negaug.presets.pretrain"
    DEFAULT_PRESET: ClassVar[str] = "mnist"
    COMMAND: ClassVar[str] = "negaug pretrain"
    COMPONENT_OPTIONS: ClassVar[tuple[tuple[str, str, str], ...]] = (
        ("data", "name", "options"), ("model", "encoder", "options"), ("nda", "transform", "options"))
    RECORDING_KEYS: ClassVar[tuple[str, ...]] = (
        "train.name", "train.runs_dir", "train.progress", "train.log_every", "train.checkpoint_every",
        "train.keep_checkpoints", "train.knn_every", "train.threads", "train.tensorboard", "train.wandb")
    RESUMABLE_KEYS: ClassVar[tuple[str, ...]] = resumable_keys(RECORDING_KEYS)
    # negaug 0.5 (MoCo v2's augmentation): left out of the hash while off, so cached runs keep theirs
    LATER_KEYS: ClassVar[dict[str, Any]] = {"augment.hue": 0.0, "augment.jitter_order": "fixed",
                                            "augment.blur_prob": 0.0, "objective.name": "infonce",
                                            "train.precision": "fp32", "train.compile": False}
    IDLE_KEYS: ClassVar[dict[str, tuple[str, Any]]] = {"augment.blur_sigma": ("augment.blur_prob", 0.0)}

    data: PretrainDataConfig = field(default_factory=PretrainDataConfig)
    model: EncoderConfig = field(default_factory=EncoderConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    nda: PretrainNDAConfig = field(default_factory=PretrainNDAConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: PretrainOptimConfig = field(default_factory=PretrainOptimConfig)
    train: PretrainTrainConfig = field(default_factory=PretrainTrainConfig)
    eval: PretrainEvalConfig = field(default_factory=PretrainEvalConfig)
    preset: str | None = None  # the preset or file this config came from (set by load_config)


def load_pretrain_config(source: str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> PretrainConfig:
    """A pretraining preset (`negaug.presets.pretrain`; default "mnist") or YAML file plus overrides."""
    return load_config(source, overrides, cls=PretrainConfig)


def pretrain_preset_names() -> list[str]:
    """The bundled presets of `negaug pretrain`, sorted."""
    return preset_names(PretrainConfig.PRESETS)
