"""Typed, strict configuration: nested dataclasses, YAML presets, `section.key=value` overrides.

    cfg = load_config("default", ["nda.lam=0.5", "train.steps=200"])

Every field has a commented default. An unknown key or a wrong type raises ``ValueError`` that
names the key and the nearest valid one; `negaug.experiment.build` checks the values that need the
registries (dataset present, jigsaw K divides the image size, ...).

The loader is shared by every kind of run: `Config` (`negaug train`) and
`negaug.experiment.pretrain_config.PretrainConfig` (`negaug pretrain`) are `ConfigBase`
dataclasses whose class variables say where their presets live and how their runs resume;
`load_config(source, overrides, cls=PretrainConfig)` reads one with the same strict rules (base
chains, overrides, `Replace`, plain option values, size limits, nearest-key errors).

`RECORDING_KEYS` are the settings that change how a run is recorded, never what it learns: they
may change when a run is resumed, and they are left out of the hash that names a cached
reproduction run (`negaug.repro`). `check_resumable(key)` is the one rule for resumed runs.
"""
from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

import yaml

from negaug.files import check_path_text, read_text_limited
from negaug.presets import SEXAGESIMAL_OR_OCTAL, preset_names, yaml_load
from negaug.registry import closest


@dataclass
class DataConfig:
    name: str = "mnist5k"  # dataset registry name (`negaug.data.names()`)
    root: str | None = None  # where the files are; None: $NEGAUG_DATA or ~/.cache/negaug/data
    download: bool = False  # fetch a missing torchvision dataset (never without this)
    image_size: int | None = None  # None: the dataset's own size
    split: str = "train"  # split used for training
    options: dict = field(default_factory=dict)  # extra dataset options (dots: count; any: classes)
    batch_size: int = 64  # real images per discriminator step
    num_workers: int = 0  # DataLoader workers for datasets that are not held in memory


@dataclass
class ModelConfig:
    name: str = "dcgan"  # model registry name (`negaug.models.names()`)
    conditional: bool = False  # class-conditional G and D (labels from the dataset)
    options: dict = field(default_factory=dict)  # architecture options (width, latent_dim, spectral_norm, ...)
    mixture: int = 1  # MIX+GAN: K generators and K discriminators with learned mixture weights (1: off)
    mixture_entropy: float = 0.1  # MIX+GAN: weight of the regulariser on the mixture weights (Arora et al.'s code: 0.1)
    # MIX+GAN's regulariser: "log" = -(1/K) sum_k log(w_k + 1e-6), as Arora et al.'s code
    # (train_mixgan.py); "entropy" = -H(w) (Shannon entropy, negaug before 0.5)
    mixture_regulariser: str = "log"


@dataclass
class LossConfig:
    name: str = "hinge"  # loss registry name (`negaug.losses.names()`)
    options: dict = field(default_factory=dict)  # loss options
    gradient_penalty: float | None = None  # WGAN-GP weight; None: the loss's own default (10 for wgan-gp, else 0)
    r1_penalty: float = 0.0  # R1 penalty weight on real images (0: off)
    consistency: float = 0.0  # CR-GAN weight on mean (D(x) - D(T(x)))^2 over real x, T = flip + shift (0: off; paper: 10)
    # border fill of CR's shift: "reflect" or "zeros" (CR-BigGAN's code); reflect measured better:
    # pixel FD 37-43 against 67-82 with zeros, tests/test_quality_gate.py's CR run, seeds 0-2
    consistency_padding: str = "reflect"
    weight_clip: float | None = None  # WGAN weight clipping; None: the loss's own default (0.01 for wgan, else off)
    r2_penalty: float = 0.0  # R2 penalty weight on D's fake side (R3GAN: with r1_penalty, rpgan); 0: off
    feature_matching: float = 0.0  # weight of ||E f(x) - E f(G(z))||^2 (D's features) added to the G loss; 0: off
    # "sum" of squares over features (the paper's formula) or "mean_abs" (improved-gan's code: T.mean(abs(m1-m2)))
    feature_matching_reduction: str = "sum"


@dataclass
class NDAConfig:
    transform: str = "jigsaw"  # NDA transform (`negaug.nda.names()`), or "none" for a plain GAN
    options: dict = field(default_factory=dict)  # transform options (jigsaw: k; mixup: alpha; other_data: dataset, dataset_options)
    lam: float = 0.25  # lambda of eq. 3: weight of generated samples in the fake side; 1 - lam goes to negatives
    mode: str = "weighted"  # "weighted" (authors: a generated and a negative batch, weighted) or "mixture" (one fake batch)
    positive: str = "none"  # positive augmentation (PDA) of real images, a transform name or "none"
    positive_options: dict = field(default_factory=dict)  # options of the PDA transform
    positive_prob: float = 0.5  # fraction of real images replaced by their PDA version


@dataclass
class OptimConfig:
    lr_g: float = 2e-4  # generator Adam learning rate
    lr_d: float = 2e-4  # discriminator Adam learning rate
    beta1: float = 0.0  # Adam beta1 (authors: 0.0)
    beta2: float = 0.999  # Adam beta2
    eps: float = 1e-8  # Adam epsilon
    num_d_steps: int = 4  # discriminator steps per generator step
    # BigGAN's orthogonal regularisation on G: ortho_reg * sum ||W W^T * (1 - I)||_F^2 over G's conv
    # and linear weights is added to the G loss (BigGAN: 1e-4; the NDA authors: 0). 0: off
    ortho_reg: float = 0.0


@dataclass
class TrainConfig:
    steps: int = 1000  # generator steps
    seed: int = 0  # seeds weights, data order, latents and NDA draws
    device: str = "auto"  # "auto" (cuda if available), "cpu", "cuda", "cuda:1", ...
    precision: str = "fp32"  # "fp32", "bf16" (autocast + channels_last), "fp16" (GPU, with a grad scaler)
    ema_decay: float = 0.9999  # EMA of G; 0 disables it
    ema_start: int = 1000  # step from which the EMA averages (copies G before)
    log_every: int = 50  # steps between lines in metrics.jsonl
    sample_every: int = 500  # steps between sample grids (fixed latent batch); 0: only at the end
    checkpoint_every: int = 500  # steps between checkpoints; 0: only at the end
    keep_checkpoints: int = 2  # most recent checkpoints kept (the best one is kept too)
    num_sample_images: int = 64  # images in each sample grid
    runs_dir: str = "runs"  # parent folder of run folders
    name: str | None = None  # run folder name; None: <preset>-<timestamp>
    tensorboard: bool = False  # also write TensorBoard logs (needs the tensorboard package)
    wandb: bool = False  # also log to Weights & Biases, offline unless WANDB_MODE says otherwise (needs .[wandb])
    progress: bool = True  # progress bar with rate and time left
    deterministic: bool = True  # torch.use_deterministic_algorithms (needed for exact resume on GPUs)
    diffaugment: str = "none"  # DiffAugment policy for every image D sees, e.g. "color,translation,cutout"; "none": off
    compile: bool = False  # torch.compile G and D (nn.Module.compile: same weights and checkpoint keys)
    threads: int | None = None  # torch CPU threads for the run (restored after); null: torch's default (all cores). 1 on a shared machine


@dataclass
class EvalConfig:
    every: int = 0  # steps between evaluations during training (0: off)
    metrics: list = field(default_factory=list)  # metric names; empty: the defaults for the data
    num_samples: int | None = None  # generated samples per evaluation; None: as many as the test split holds
    best_metric: str | None = None  # keep the best checkpoint by this metric (lower is better for fid/kid)
    feature_extractor: str = "auto"  # "auto" (inception if its weights are present, else classifier), "inception", "classifier"
    inception_weights: str | None = None  # path to the TF-Inception weights (pt_inception-2015-12-05)
    seed: int = 0  # seed of the evaluation's latents and subsampling
    force: bool = False  # report values the checks would refuse (near-chance features, ...) with warnings


class ConfigBase:
    """What a config class declares besides its fields (class variables, not config keys)."""

    PRESETS: ClassVar[str] = "negaug.presets"  # package holding its YAML presets
    DEFAULT_PRESET: ClassVar[str] = "default"  # the preset of a command without one
    COMMAND: ClassVar[str] = "negaug train"  # the command whose runs it configures (error messages)
    # (section, name key, options key): the options belong to the named component (`merge_layer`)
    COMPONENT_OPTIONS: ClassVar[tuple[tuple[str, str, str], ...]] = ()
    RECORDING_KEYS: ClassVar[tuple[str, ...]] = ()  # how a run is recorded, not what it learns
    RESUMABLE_KEYS: ClassVar[tuple[str, ...]] = ()  # what a resumed run may change ("eval." = the section)
    # keys added after runs were cached, with their "off" value: left out of `learning_settings` while
    # off, so that the hash naming a cached reproduction run is the one it had before they existed
    LATER_KEYS: ClassVar[dict[str, Any]] = {}
    # keys that only act while another key is on: key -> (that key, its "off" value); left out of
    # `learning_settings` while that key is off (a MIX+GAN setting of a run with one G and one D)
    IDLE_KEYS: ClassVar[dict[str, tuple[str, Any]]] = {}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


# Settings that change how a GAN run is recorded, not what it learns.
RECORDING_KEYS = ("train.name", "train.runs_dir", "train.progress", "train.tensorboard", "train.wandb", "train.log_every",
                  "train.sample_every", "train.checkpoint_every", "train.keep_checkpoints", "train.threads")


def resumable_keys(recording_keys: tuple[str, ...]) -> tuple[str, ...]:
    """What a resumed run may change: train longer, evaluate differently, move to another device,
    record differently (but not under another name: the folder is the run)."""
    return ("train.steps", "train.device", "train.compile", "eval.",
            *(key for key in recording_keys if key not in ("train.name", "train.runs_dir")))


RESUMABLE_KEYS = resumable_keys(RECORDING_KEYS)
# The options of a component belong to the component they were written for: when a layer (a file
# over its base, or the command line over the file) names another component without giving its
# options, the options inherited from below are dropped (`nda.transform=stitch` over the default
# preset must not keep jigsaw's k).
COMPONENT_OPTIONS = (("data", "name", "options"), ("model", "name", "options"), ("loss", "name", "options"),
                     ("nda", "transform", "options"), ("nda", "positive", "positive_options"))


@dataclass
class Config(ConfigBase):
    COMPONENT_OPTIONS: ClassVar[tuple[tuple[str, str, str], ...]] = COMPONENT_OPTIONS
    RECORDING_KEYS: ClassVar[tuple[str, ...]] = RECORDING_KEYS
    RESUMABLE_KEYS: ClassVar[tuple[str, ...]] = RESUMABLE_KEYS
    LATER_KEYS: ClassVar[dict[str, Any]] = {"train.diffaugment": "none", "loss.consistency": 0.0,  # negaug 0.4
                                            "loss.r2_penalty": 0.0, "loss.feature_matching": 0.0,
                                            "optim.ortho_reg": 0.0, "model.mixture": 1,
                                            "model.mixture_entropy": 0.01, "train.compile": False,
                                            "loss.feature_matching_reduction": "sum",  # negaug 0.5
                                            "loss.consistency_padding": "reflect"}
    # negaug 0.5 (the reference's conventions): these changed what a run with the feature on learns,
    # so they stay in its hash (its cached runs are retrained) and leave the others' hashes alone
    IDLE_KEYS: ClassVar[dict[str, tuple[str, Any]]] = {"model.mixture_entropy": ("model.mixture", 1),
                                                       "model.mixture_regulariser": ("model.mixture", 1)}

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    nda: NDAConfig = field(default_factory=NDAConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    preset: str | None = None  # the preset or file this config came from (set by load_config)


def check_resumable(key: str, cls: type[ConfigBase] = Config) -> None:
    """ValueError unless the config key `key` may change when a run of `cls` is resumed."""
    if not any(key == allowed or (allowed.endswith(".") and key.startswith(allowed)) for allowed in cls.RESUMABLE_KEYS):
        raise ValueError(f"{key} cannot change when resuming (it would not continue the same run); "
                         f"start a new run, or change only train.steps, train.device, train.compile, train.*_every, eval.*")


def learning_settings(config: ConfigBase) -> dict[str, Any]:
    """The config as a dict without `preset`, its class's RECORDING_KEYS, its LATER_KEYS that are
    off, its IDLE_KEYS whose feature is off and the `eval` section (how the model is measured, with
    its own random generators): what decides the trained model."""
    settings = config.to_dict()
    settings.pop("preset", None)
    settings.pop("eval", None)
    for key in type(config).RECORDING_KEYS:
        section, name = key.split(".")
        settings[section].pop(name, None)
    for key, off in type(config).LATER_KEYS.items():
        section, name = key.split(".")
        if name in settings.get(section, {}) and settings[section][name] == off:
            del settings[section][name]
    values = config.to_dict()
    for key, (owner, off) in type(config).IDLE_KEYS.items():
        section, name = key.split(".")
        owner_section, owner_name = owner.split(".")
        if values[owner_section][owner_name] == off:
            settings[section].pop(name, None)
    return settings


# ---------------------------------------------------------------------------------------------
# type checking


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    return "null" if tp is type(None) else getattr(tp, "__name__", str(tp))


MAX_INT = 2 ** 53  # larger ints overflow torch's seeds and counters; no setting needs them
MAX_CONFIG_BYTES = 1_000_000  # a config file, and a resolved config as JSON


def short_repr(value: Any, limit: int = 80) -> str:
    """repr(value), cut to `limit` characters (error messages never echo a huge value)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


MAX_FLOAT = 1e30  # beyond float32's range, torch's optimizers and kernels overflow
MAX_DEPTH = 16  # nesting of lists and mappings in an option value


def check_plain(key: str, value: Any, depth: int = 0) -> Any:
    """A free-form option value (`*.options`): strings, finite numbers, booleans, None, and lists
    and string-keyed mappings of those, nested at most MAX_DEPTH levels."""
    if depth > MAX_DEPTH:
        raise ValueError(f"{key.split('[')[0][:80]}: nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        if abs(value) > MAX_INT:
            raise ValueError(f"{key}={short_repr(value)} is out of range (at most {MAX_INT} in magnitude)")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{key}={value} must be a finite number")
        if abs(value) > MAX_FLOAT:
            raise ValueError(f"{key}={value:g} is out of range (at most {MAX_FLOAT:g} in magnitude)")
        return value
    if isinstance(value, (list, tuple)):
        return [check_plain(f"{key}[{i}]", item, depth + 1) for i, item in enumerate(value)]
    if isinstance(value, dict):
        for name in value:
            if not isinstance(name, str):
                raise ValueError(f"{key}: option names must be strings, got {short_repr(name)}")
        return {name: check_plain(f"{key}.{name}", item, depth + 1) for name, item in value.items()}
    raise ValueError(f"{key}: {type(value).__name__} values are not allowed, got {short_repr(value)}")


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """Check `value` against the annotation `tp`; ints are accepted for floats; numbers must be
    finite and ints at most MAX_INT in magnitude; dicts and lists hold plain values only."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _coerce(key, value, arg)
            except ValueError:
                continue
        raise ValueError(f"{key}: expected {_type_name(tp)}, got {short_repr(value)}")
    if tp is type(None):
        if value is None:
            return None
    elif tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(check_plain(key, value))
    elif tp is int and isinstance(value, int) and not isinstance(value, bool):
        return check_plain(key, value)
    elif tp in (str, bool) and isinstance(value, tp):
        return value
    elif tp in (dict, list) and isinstance(value, tp):
        return check_plain(key, value)
    elif tp is list and isinstance(value, tuple):
        return check_plain(key, list(value))
    if tp in (int, float) and isinstance(value, str) and SEXAGESIMAL_OR_OCTAL.match(value.strip()):
        raise ValueError(f"{key}: {short_repr(value)} is a YAML 1.1 base-60 or octal number, which negaug "
                         f"refuses (YAML 1.1 would read 1:20 as 80 and 017 as 15); write the decimal number")
    raise ValueError(f"{key}: expected {_type_name(tp)}, got {short_repr(value)}")


def check_run_name(name: str | None) -> None:
    """train.name must name one folder inside train.runs_dir (never `..`, a path or `.`)."""
    if name is None:
        return
    if name in ("", ".", "..") or "/" in name or "\\" in name or "\0" in name or name != name.strip() \
            or len(name.encode()) > 200:
        raise ValueError(f"train.name={short_repr(name)} must be one folder name (no '/', not '.' or '..', "
                         f"no surrounding spaces, at most 200 bytes): the run goes to train.runs_dir/train.name")


def _hints(cls: type) -> dict[str, Any]:
    """The fields of a config dataclass and their types (class variables are not config keys)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def from_dict(raw: dict[str, Any], prefix: str = "", cls: type = Config) -> Any:
    """Build a (nested) config dataclass from plain data, strictly."""
    if not isinstance(raw, dict):
        raise ValueError(f"{prefix or 'config'}: expected a mapping, got {short_repr(raw)}")
    hints = _hints(cls)
    kwargs = {}
    for key, value in raw.items():
        full = f"{prefix}{key}"
        if key not in hints:
            where = prefix.rstrip(".") or "the top level"
            raise ValueError(
                f"unknown config key '{full[:120]}'{closest(str(key), hints)}; valid keys in {where}: "
                f"{', '.join(hints)}"
            )
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = from_dict(value, f"{full}.", tp)
        else:
            kwargs[key] = _coerce(full, value, tp)
            if key in PATH_KEYS:
                check_path_text(kwargs[key], full)
    return cls(**kwargs)


PATH_KEYS = ("root", "runs_dir", "inception_weights")  # config keys that name a file or a folder


class Replace:
    """A mapping given whole (`nda.options={}` on the command line): it replaces, never merges."""

    def __init__(self, value: dict[str, Any]):
        self.value = value


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; `update` wins. Option dicts merge key by key, except a `Replace`."""
    out = dict(base)
    for key, value in update.items():
        current = out.get(key)
        if isinstance(value, Replace):
            out[key] = value
        elif isinstance(value, dict) and isinstance(current, Replace):
            out[key] = Replace(merge(current.value, value))
        elif isinstance(value, dict) and isinstance(current, dict):
            out[key] = merge(current, value)
        else:
            out[key] = value
    return out


def unwrap(raw: Any) -> Any:
    """`raw` with every Replace marker turned back into its mapping."""
    if isinstance(raw, Replace):
        return unwrap(raw.value)
    if isinstance(raw, dict):
        return {key: unwrap(value) for key, value in raw.items()}
    return raw


def merge_layer(base: dict[str, Any], layer: dict[str, Any],
                components: tuple[tuple[str, str, str], ...] = COMPONENT_OPTIONS) -> dict[str, Any]:
    """`layer` over `base` (both raw config mappings), with the component-options rule of
    `components` (a config class's COMPONENT_OPTIONS)."""
    merged = merge(base, layer)
    for section, name_key, options_key in components:
        given = layer.get(section) if isinstance(layer.get(section), dict) else {}
        below = base.get(section) if isinstance(base.get(section), dict) else {}
        if name_key in given and given[name_key] != below.get(name_key):
            merged[section] = dict(merged[section], **{options_key: Replace(unwrap(given.get(options_key, {})))})
    return merged


# ---------------------------------------------------------------------------------------------
# presets, files and overrides


def _read_yaml(text: str, where: str) -> dict[str, Any]:
    try:
        data = yaml_load(text) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{where} is not valid YAML: {' '.join(str(err).split())[:160]}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{where} must hold a mapping of config sections")
    return data


def read_source(source: str, _seen: tuple[str, ...] = (), cls: type[ConfigBase] = Config) -> dict[str, Any]:
    """The raw mapping of a preset name (of `cls.PRESETS`) or a YAML file path. A file may name a
    `base` preset or file."""
    presets = preset_names(cls.PRESETS)
    if source in _seen:
        raise ValueError(f"config '{_seen[0]}': its base chain refers back to '{source}' "
                         f"({' -> '.join([*_seen, source])}); break the cycle")
    if source.endswith((".yaml", ".yml")) or "/" in source:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(
                f"config file '{source}' not found; give a YAML file or a preset ({', '.join(presets)})"
            )
        try:
            text = read_text_limited(path, MAX_CONFIG_BYTES, "config file")
        except OSError as err:
            raise ValueError(f"config file '{source}' cannot be read ({type(err).__name__}: {err})") from None
        except ValueError as err:
            raise ValueError(f"{err}; a config is a few KB of plain YAML") from None
        data = _read_yaml(text, f"config file '{source}'")
    else:
        if source not in presets:
            raise ValueError(
                f"unknown preset '{source}'{closest(source, presets)}; "
                f"valid: {', '.join(presets)} (or a path to a .yaml file)"
            )
        text = resources.files(cls.PRESETS).joinpath(f"{source}.yaml").read_text()
        data = _read_yaml(text, f"preset '{source}'")
    base = data.pop("base", None)
    if base is not None:
        if not isinstance(base, str):
            raise ValueError(f"config '{source}': base must be a preset name or a file path, got {short_repr(base)}")
        is_file = source.endswith((".yaml", ".yml")) or "/" in source
        if is_file and (base.endswith((".yaml", ".yml")) or "/" in base) and not Path(base).is_absolute():
            base = str(Path(source).parent / base)  # relative to the file that names it, not to the shell
        data = merge_layer(read_source(base, (*_seen, source), cls), data, cls.COMPONENT_OPTIONS)
    return data


def parse_override(text: str) -> dict[str, Any]:
    """'nda.options.k=3' -> {'nda': {'options': {'k': 3}}}; the value is parsed as YAML."""
    if "=" not in text:
        raise ValueError(f"override '{text}' must look like section.key=value (e.g. nda.lam=0.5)")
    key, value_text = text.split("=", 1)
    parts = key.strip().split(".")
    if len(parts) < 2 or not all(parts):
        raise ValueError(f"override '{text}': the key must be section.key (e.g. train.steps=100)")
    try:
        value = yaml_load(value_text) if value_text.strip() else None
    except yaml.YAMLError:
        value = value_text
    out: dict[str, Any] = {}
    node = out
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = Replace(value) if isinstance(value, dict) else value
    return out


def load_config(source: str | None = None, overrides: list[str] | tuple[str, ...] = (),
                cls: type[ConfigBase] = Config) -> Any:
    """Resolve a preset of `cls` or a YAML file (default: `cls.DEFAULT_PRESET`) plus overrides into
    a `cls` (default: the GAN `Config`)."""
    if source is not None and not isinstance(source, (str, Path)):
        raise ValueError(f"load_config source must be a preset name or a YAML file path, got {short_repr(source)}")
    if isinstance(overrides, str) or not all(isinstance(text, str) for text in overrides):
        raise ValueError(f"load_config overrides must be a list of 'section.key=value' strings, "
                         f"got {short_repr(overrides)}")
    source = str(source or cls.DEFAULT_PRESET)
    raw = read_source(source, cls=cls)
    command_line: dict[str, Any] = {}
    for text in overrides:  # one layer: `nda.options.alpha=10 nda.transform=mixup` in any order
        command_line = merge(command_line, parse_override(text))
    raw = unwrap(merge_layer(raw, command_line, cls.COMPONENT_OPTIONS))
    raw.pop("preset", None)
    config = from_dict(check_size(raw), cls=cls)
    config.preset = source
    return config


def check_size(raw: dict[str, Any]) -> dict[str, Any]:
    """ValueError when a resolved config would be larger than MAX_CONFIG_BYTES as JSON."""
    if len(json.dumps(raw, default=str)) > MAX_CONFIG_BYTES:
        raise ValueError(f"the resolved config is larger than {MAX_CONFIG_BYTES} bytes; a config is a few KB")
    return raw


def config_from_dict(raw: dict[str, Any], cls: type[ConfigBase] = Config) -> Any:
    """Rebuild a `cls` (default: Config) saved with `to_dict` (run folders, checkpoints)."""
    if not isinstance(raw, dict):
        raise ValueError(f"a saved config must be a mapping, got {short_repr(raw)}")
    raw = dict(raw)
    preset = raw.pop("preset", None)
    config = from_dict(check_size(raw), cls=cls)
    config.preset = preset
    return config
