"""The typed, strict configuration of Pix2Pix runs (paired image-to-image translation with NDA).

    cfg = load_translation_config("pix2pix-scenes", ["nda.transform=jigsaw", "train.steps=200"])

Read by the loader of `negaug.experiment.config` (same rules as every config: unknown keys and
wrong types name the key and the nearest valid one, base chains, `section.key=value` overrides).
Its presets live in `negaug.presets.translate`; `negaug train` runs one when the preset or YAML
file is a translation one (`is_translation_source`: a translation preset, or a file with
`kind: pix2pix` or whose base is one) and resumes / evaluates a run whose recorded config has
`kind: pix2pix` (`is_translation_run`). Values that need the registries are checked by
`negaug.experiment.translate.prepare_translation` before any run folder exists.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from negaug.experiment.checkpoint import list_steps, read_record, stem
from negaug.experiment.config import (
    MAX_CONFIG_BYTES,
    ConfigBase,
    load_config,
    resumable_keys,
)
from negaug.files import read_text_limited
from negaug.presets import preset_names, yaml_load

KIND = "pix2pix"
PRESETS = "negaug.presets.translate"


@dataclass
class PairedDataConfig:
    name: str = "scenes"  # paired dataset (`negaug.data.paired.paired_names()`): scenes (offline), cityscapes
    root: str | None = None  # where the files are (cityscapes); None: $NEGAUG_DATA or ~/.cache/negaug/data
    image_size: int | None = 64  # square size of conditions and targets; None: the dataset's own
    split: str = "train"  # split used for training (evaluation uses eval.split)
    options: dict = field(default_factory=dict)  # dataset options (scenes: num_samples, seed; cityscapes: layout)
    batch_size: int = 16  # pairs per step (pix2pix: 1)


@dataclass
class Pix2PixModelConfig:
    width: int = 64  # base channels of the U-Net (pix2pix's ngf; 64 in the paper)
    d_width: int | None = None  # base channels of the PatchGAN (ndf); None: width
    norm: str = "instance"  # "instance" (per sample), "batch" (pix2pix's default, with batch size 1), "none"
    dropout: float = 0.5  # dropout of the U-Net's inner decoder blocks: pix2pix's noise source
    d_layers: int = 3  # PatchGAN depth (3: the 70x70 PatchGAN)


@dataclass
class TranslationLossConfig:
    gan: str = "nonsaturating"  # GAN loss (`negaug.losses`): nonsaturating = pix2pix's BCE with logits; lsgan, hinge
    options: dict = field(default_factory=dict)  # options of the GAN loss
    l1_weight: float = 100.0  # lambda_L1 of pix2pix (0: the cGAN-only objective)
    d_scale: float = 0.5  # D's loss is multiplied by this (pix2pix halves it: D learns slower than G)


@dataclass
class TranslationNDAConfig:
    transform: str = "none"  # NDA transform of the real target (`negaug.nda.names()`), or "none"
    options: dict = field(default_factory=dict)  # transform options (jigsaw: k)
    lam: float = 0.25  # eq. 3: D's fake side is lam * G(c) + (1 - lam) * NDA(target), each paired with c


@dataclass
class TranslationOptimConfig:
    lr_g: float = 2e-4  # generator Adam learning rate (pix2pix: 2e-4)
    lr_d: float = 2e-4  # discriminator Adam learning rate
    beta1: float = 0.5  # Adam beta1 (pix2pix: 0.5)
    beta2: float = 0.999  # Adam beta2


@dataclass
class TranslationTrainConfig:
    steps: int = 2000  # optimizer steps (one D and one G update each)
    seed: int = 0  # seeds weights, data order, dropout and NDA draws
    device: str = "auto"  # "auto" (cuda if available), "cpu", "cuda", "cuda:1", ...
    precision: str = "fp32"  # fp32, bf16 (autocast, channels_last) or fp16 (autocast + a gradient scaler; GPUs only)
    compile: bool = False  # torch.compile G and D in place (same weights and checkpoint keys; the first steps compile)
    log_every: int = 50  # steps between lines in metrics.jsonl
    sample_every: int = 500  # steps between sample grids (condition | output | target); 0: only at the end
    checkpoint_every: int = 500  # steps between checkpoints; 0: only at the end
    keep_checkpoints: int = 2  # most recent checkpoints kept
    num_sample_images: int = 8  # test pairs in each sample grid
    runs_dir: str = "runs"  # parent folder of run folders
    name: str | None = None  # run folder name; None: <preset>-<timestamp>
    progress: bool = True  # progress bar with rate and time left
    deterministic: bool = True  # torch.use_deterministic_algorithms (needed for exact resume on GPUs)
    threads: int | None = None  # torch CPU threads for the run (restored after); null: torch's default. 1 on a shared machine
    tensorboard: bool = False  # also write TensorBoard logs (needs the tensorboard package)
    wandb: bool = False  # also log to Weights & Biases, offline unless WANDB_MODE says otherwise (needs .[wandb])


@dataclass
class TranslationEvalConfig:
    split: str = "test"  # split whose pairs are scored at the end of training and by `negaug eval`
    num_samples: int | None = None  # pairs scored; None: the whole split
    batch_size: int = 64  # pairs per forward pass
    every: int = 0  # steps between scores of G on the val split during training (log "eval_val"); 0: none
    best_metric: str = "mean_iou"  # with `every`: keep checkpoints/best/ by this val score (higher is better)


@dataclass
class TranslationConfig(ConfigBase):
    PRESETS: ClassVar[str] = PRESETS
    DEFAULT_PRESET: ClassVar[str] = "pix2pix-scenes"
    COMMAND: ClassVar[str] = "negaug train"
    COMPONENT_OPTIONS: ClassVar[tuple[tuple[str, str, str], ...]] = (
        ("data", "name", "options"), ("loss", "gan", "options"), ("nda", "transform", "options"))
    RECORDING_KEYS: ClassVar[tuple[str, ...]] = (
        "train.name", "train.runs_dir", "train.progress", "train.log_every", "train.sample_every",
        "train.checkpoint_every", "train.keep_checkpoints", "train.num_sample_images", "train.threads", "train.tensorboard", "train.wandb")
    RESUMABLE_KEYS: ClassVar[tuple[str, ...]] = resumable_keys(RECORDING_KEYS)
    # added later (issue 24): left out of the hash while off, so runs made before keep theirs
    LATER_KEYS: ClassVar[dict[str, Any]] = {"train.precision": "fp32", "train.compile": False}

    kind: str = KIND  # marks a translation config (what `negaug train` and `negaug eval` dispatch on)
    data: PairedDataConfig = field(default_factory=PairedDataConfig)
    model: Pix2PixModelConfig = field(default_factory=Pix2PixModelConfig)
    loss: TranslationLossConfig = field(default_factory=TranslationLossConfig)
    nda: TranslationNDAConfig = field(default_factory=TranslationNDAConfig)
    optim: TranslationOptimConfig = field(default_factory=TranslationOptimConfig)
    train: TranslationTrainConfig = field(default_factory=TranslationTrainConfig)
    eval: TranslationEvalConfig = field(default_factory=TranslationEvalConfig)
    preset: str | None = None  # the preset or file this config came from (set by load_config)


def load_translation_config(source: str | None = None,
                            overrides: list[str] | tuple[str, ...] = ()) -> TranslationConfig:
    """A translation preset (default "pix2pix-scenes") or YAML file plus overrides."""
    config = load_config(source, overrides, cls=TranslationConfig)
    if config.kind != KIND:
        raise ValueError(f"kind='{config.kind}' is not a translation config; the only kind is '{KIND}'")
    return config


def translation_preset_names() -> list[str]:
    return preset_names(PRESETS)


def is_translation_source(source: str | None, _depth: int = 0) -> bool:
    """Whether `negaug train SOURCE` is a Pix2Pix run: a translation preset, or a YAML file with
    `kind: pix2pix` or whose base chain reaches one. Unreadable files answer False (the GAN
    loader then reports them)."""
    if source is None or _depth > 16:
        return False
    if source in translation_preset_names():
        return True
    if not (source.endswith((".yaml", ".yml")) or "/" in source):
        return False
    try:
        raw = yaml_load(read_text_limited(Path(source), MAX_CONFIG_BYTES, "config file"))
    except Exception:  # noqa: BLE001  (any unreadable file: not ours to report)
        return False
    if not isinstance(raw, dict):
        return False
    if raw.get("kind") == KIND:
        return True
    base = raw.get("base")
    if isinstance(base, str) and (base.endswith((".yaml", ".yml")) or "/" in base) and not Path(base).is_absolute():
        base = str(Path(source).parent / base)
    return isinstance(base, str) and is_translation_source(base, _depth + 1)


def is_translation_run(run_dir: str | Path) -> bool:
    """Whether the run folder holds a Pix2Pix run: its newest readable checkpoint record (else its
    config.yaml) has `kind: pix2pix`."""
    folder = Path(run_dir) / "checkpoints"
    for step in reversed(list_steps(folder)) if folder.is_dir() else []:
        try:
            raw = read_record(folder / f"{stem(step)}.json").get("config")
        except ValueError:
            continue
        return isinstance(raw, dict) and raw.get("kind") == KIND
    try:
        raw = yaml_load(read_text_limited(Path(run_dir) / "config.yaml", MAX_CONFIG_BYTES, "config"))
    except Exception:  # noqa: BLE001
        return False
    return isinstance(raw, dict) and raw.get("kind") == KIND
