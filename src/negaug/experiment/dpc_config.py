"""The typed, strict configuration of Dense Predictive Coding runs (video, with NDA clips).

    cfg = load_dpc_config("dpc-moving-mnist", ["nda.transform=jigsaw", "train.steps=200"])

Read by the loader of `negaug.experiment.config` (same rules as every config). Its presets live
in `negaug.presets.dpc`; `negaug pretrain` runs one when the preset or YAML file is a DPC one
(`is_dpc_source`: a DPC preset, or a file with `kind: dpc`), and resumes a run whose recorded
config has `kind: dpc`. Values that need the registries are checked by
`negaug.experiment.dpc.prepare_dpc` before any run folder exists.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from negaug.experiment.config import MAX_CONFIG_BYTES, ConfigBase, load_config, resumable_keys
from negaug.files import read_text_limited
from negaug.presets import preset_names, yaml_load

KIND = "dpc"
PRESETS = "negaug.presets.dpc"


@dataclass
class ClipDataConfig:
    name: str = "moving_mnist"  # clip dataset (`negaug.data.build_clips`): moving_mnist (offline), ucf101, hmdb51
    root: str | None = None  # where the files are (ucf101, hmdb51); None: $NEGAUG_DATA or ~/.cache/negaug/data
    split: str = "train"  # split used for training
    options: dict = field(default_factory=dict)  # dataset options (moving_mnist: num_clips, num_frames, image_size, seed)
    batch_size: int = 32  # clips per step


@dataclass
class DPCModelConfig:
    num_blocks: int = 4  # blocks of frames per clip (num_frames must divide into them)
    pred_steps: int = 2  # the last blocks predicted from the context of the others
    widths: list = field(default_factory=lambda: [16, 32])  # channels of the 3-D CNN's stages
    feature_dim: int = 64  # per-block feature size
    groups: int = 4  # GroupNorm groups
    gru_kernel: int = 1  # ConvGRU kernel size


@dataclass
class DPCLossConfig:
    temperature: float = 1.0  # InfoNCE temperature (DPC: 1)
    nda_weight: float = 1.0  # weight of the NDA clips in InfoNCE's denominator (eq. 8 as printed: 1)


@dataclass
class DPCNDAConfig:
    transform: str = "none"  # NDA transform of the clips (`negaug.nda`: one draw per clip, on every frame), or "none"
    options: dict = field(default_factory=dict)  # transform options (jigsaw: k)


@dataclass
class DPCOptimConfig:
    lr: float = 1e-3  # Adam learning rate


@dataclass
class DPCTrainConfig:
    steps: int = 800  # optimizer steps
    seed: int = 0  # seeds weights, clip order and NDA draws
    device: str = "auto"  # "auto" (cuda if available), "cpu", "cuda", ...
    log_every: int = 20  # steps between lines in metrics.jsonl
    checkpoint_every: int = 200  # steps between checkpoints; 0: only at the end
    keep_checkpoints: int = 2  # most recent checkpoints kept
    # fp32, bf16 (autocast; no channels_last: the encoder's convolutions are 3-D) or fp16 (autocast
    # + a gradient scaler; GPUs only)
    precision: str = "fp32"
    compile: bool = False  # nn.Module.compile of the encoder, the ConvGRU and the predictor (in place)
    runs_dir: str = "runs"  # parent folder of run folders
    name: str | None = None  # run folder name; None: <preset>-<timestamp>
    progress: bool = True  # progress bar with rate and time left
    deterministic: bool = True  # torch.use_deterministic_algorithms (needed for exact resume on GPUs)
    threads: int | None = None  # torch CPU threads for the run (restored after); null: torch's default
    tensorboard: bool = False  # also write TensorBoard logs (needs the tensorboard package)
    wandb: bool = False  # also log to Weights & Biases, offline unless WANDB_MODE says otherwise (needs .[wandb])


@dataclass
class DPCEvalConfig:
    # steps between held-out DPC scores on the val clips during training (log "eval_val"; keep
    # checkpoints/best/ by their top-1, higher is better); 0: none. Only clip datasets with a val
    # split (moving_mnist). Not in the config hash (no section `eval` is: `learning_settings`)
    every: int = 0
    num_clips: int | None = None  # the first num_clips val clips scored (at least data.batch_size); None: all


@dataclass
class DPCConfig(ConfigBase):
    PRESETS: ClassVar[str] = PRESETS
    DEFAULT_PRESET: ClassVar[str] = "dpc-moving-mnist"
    COMMAND: ClassVar[str] = "negaug pretrain"
    COMPONENT_OPTIONS: ClassVar[tuple[tuple[str, str, str], ...]] = (("nda", "transform", "options"),)
    RECORDING_KEYS: ClassVar[tuple[str, ...]] = (
        "train.name", "train.runs_dir", "train.progress", "train.log_every", "train.checkpoint_every",
        "train.keep_checkpoints", "train.threads", "train.tensorboard", "train.wandb")
    RESUMABLE_KEYS: ClassVar[tuple[str, ...]] = resumable_keys(RECORDING_KEYS)
    # added after the first DPC runs: left out of the hash while off, so existing configs keep theirs
    LATER_KEYS: ClassVar[dict[str, Any]] = {"train.precision": "fp32", "train.compile": False}

    kind: str = KIND  # marks a DPC config (what `negaug pretrain` dispatches on)
    data: ClipDataConfig = field(default_factory=ClipDataConfig)
    model: DPCModelConfig = field(default_factory=DPCModelConfig)
    loss: DPCLossConfig = field(default_factory=DPCLossConfig)
    nda: DPCNDAConfig = field(default_factory=DPCNDAConfig)
    optim: DPCOptimConfig = field(default_factory=DPCOptimConfig)
    train: DPCTrainConfig = field(default_factory=DPCTrainConfig)
    eval: DPCEvalConfig = field(default_factory=DPCEvalConfig)  # added with issue 24: records without it read its defaults
    preset: str | None = None  # the preset or file this config came from (set by load_config)


def dpc_preset_names() -> list[str]:
    return preset_names(PRESETS)


def load_dpc_config(source: str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> DPCConfig:
    """A DPC preset (default "dpc-moving-mnist") or YAML file plus overrides."""
    config = load_config(source, overrides, cls=DPCConfig)
    if config.kind != KIND:
        raise ValueError(f"kind='{config.kind}' is not a DPC config; the only kind is '{KIND}'")
    return config


def is_dpc_source(source: str | None) -> bool:
    """Whether `negaug pretrain SOURCE` is a DPC run: a DPC preset, or a YAML file with `kind: dpc`
    (unreadable files answer False: the MoCo loader then reports them)."""
    if source is None:
        return False
    if source in dpc_preset_names():
        return True
    if not source.endswith((".yaml", ".yml")):
        return False
    try:
        raw = yaml_load(read_text_limited(Path(source), MAX_CONFIG_BYTES, "config file"))
    except Exception:  # noqa: BLE001  (any unreadable file: not ours to report)
        return False
    return isinstance(raw, dict) and raw.get("kind") == KIND
