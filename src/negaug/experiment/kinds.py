"""The kinds of run negaug trains, in one registry: what each is, which config class describes it,
how a config is loaded, which function trains it and which loads a finished run back.

    from negaug.experiment import kinds
    kind = kinds.get("pretrain")
    config = kind.load_config("mnist", ["nda.transform=jigsaw"])
    result = kind.train(config, run_dir=None, resume=False)
    loaded = kind.load(result.run_dir)
    kinds.of_run("runs/default-...").name        # "gan"

| kind | config | trained by | evaluated by |
|---|---|---|---|
| gan | `Config` | `negaug train` (`loop.train`) | `negaug eval` (`runs.load_run`) |
| pretrain | `PretrainConfig` | `negaug pretrain` (`pretrain.pretrain`) | `negaug probe` (`probe.load_pretrained`) |
| pix2pix | `TranslationConfig` | `negaug train` (`translate.train_translation`) | `negaug eval` (`translate.load_translation_run`) |
| dpc | `DPCConfig` | `negaug pretrain` (`dpc.train_dpc`) | `negaug probe` (`dpc_probe.probe_dpc_run`) |

This module sits below the modules that train: it imports only the config modules, and each
training module attaches its `train` and `load` when it is imported (`attach`), and a kind that
`negaug probe` measures its `probe` and `format_probe` (`attach_probe`), as the library's
registries do. Importing `negaug.experiment` attaches them all. The CLI (`negaug train`,
`negaug eval`, `negaug probe`), `negaug.repro` and the wrong-kind messages of `runs` dispatch
through it; the tests of resume, lock and NaN guard are parametrised over `names()`.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from negaug.experiment.checkpoint import list_steps, read_record, stem
from negaug.experiment.config import Config, ConfigBase, config_from_dict, load_config
from negaug.experiment.dpc_config import DPCConfig, is_dpc_source, load_dpc_config
from negaug.experiment.pretrain_config import PretrainConfig, load_pretrain_config
from negaug.experiment.translate_config import (
    TranslationConfig,
    is_translation_run,
    is_translation_source,
    load_translation_config,
)


@dataclass
class RunKind:
    """One kind of run. `train(config, run_dir=None, resume=False, warn=None, ...)` returns a result
    with `run_dir` and `interrupted`; `load(run_dir)` returns the loaded run."""

    name: str
    what: str  # in messages: "a <what> run"
    train_command: str
    evaluate_command: str | None  # None: no command evaluates it (`evaluate_hint` says what does)
    config_class: type[ConfigBase]
    load_config: Callable[..., ConfigBase]  # (preset or YAML file, overrides) -> config
    train: Callable[..., Any] | None = None  # attached by the module that trains this kind
    load: Callable[..., Any] | None = None
    prepare: Callable[..., Any] | None = None  # every check of a run, nothing written (--dry-run)
    evaluate_hint: str = ""  # how to evaluate a run of a kind without an evaluation command
    # `negaug probe RUN`: probe(run_dir, epochs=None, checkpoint="latest", device="auto", seed=0,
    # batch_size=256, data_root=None, download=False, warn=None, split="test", on_progress=None)
    # -> the entry appended to RUN/probe.json; format_probe(entry) -> a plain table. None: no probe
    probe: Callable[..., dict[str, Any]] | None = None
    format_probe: Callable[[dict[str, Any]], str] | None = None

    def how_to_evaluate(self, run_dir: str | Path) -> str:
        """'`negaug eval RUN` evaluates it', or the kind's hint when no command does."""
        if self.evaluate_command is None:
            return f"no command evaluates it ({self.evaluate_hint})"
        return f"`{self.evaluate_command} {run_dir}` evaluates it"


_REGISTRY: dict[str, RunKind] = {
    "gan": RunKind("gan", "GAN", "negaug train", "negaug eval", Config, load_config),
    "pretrain": RunKind("pretrain", "contrastive pretraining (negaug pretrain)", "negaug pretrain", "negaug probe",
                        PretrainConfig, load_pretrain_config),
    "pix2pix": RunKind("pix2pix", "pix2pix", "negaug train", "negaug eval", TranslationConfig, load_translation_config),
    "dpc": RunKind("dpc", "Dense Predictive Coding (negaug pretrain)", "negaug pretrain", "negaug probe", DPCConfig,
                   load_dpc_config),
}
# the order `of_run` tries the config classes in: the most specific first (a pix2pix config has a
# `kind` key, a pretraining one its own sections; a GAN config accepts neither)
_RECOGNITION_ORDER = ("pix2pix", "dpc", "pretrain", "gan")


def names() -> list[str]:
    return list(_REGISTRY)


def get(name: str) -> RunKind:
    """The kind `name`; ValueError naming the valid ones."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown kind of run '{name}'; valid: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def attach(name: str, *, train: Callable[..., Any], load: Callable[..., Any],
           prepare: Callable[..., Any]) -> None:
    """Called by the module that trains kind `name`, when it is imported."""
    kind = get(name)
    kind.train, kind.load, kind.prepare = train, load, prepare


def attach_probe(name: str, *, probe: Callable[..., dict[str, Any]], format_probe: Callable[[dict[str, Any]], str]) -> None:
    """Called by the module that probes kind `name` (`negaug probe`), when it is imported."""
    kind = get(name)
    kind.probe, kind.format_probe = probe, format_probe


def of_config_class(cls: type[ConfigBase]) -> RunKind:
    for kind in _REGISTRY.values():
        if kind.config_class is cls:
            return kind
    raise ValueError(f"no kind of run is configured by {cls.__name__}")


def of_pretrain_target(source: str | None = None, run_dir: str | Path | None = None) -> RunKind:
    """The kind `negaug pretrain SOURCE` trains, or `negaug pretrain --resume RUN` continues: dpc
    for a DPC preset or file (`kind: dpc`) or a DPC run, else pretrain (MoCo-v2)."""
    if run_dir is not None:
        kind = of_run(run_dir)
        return kind if kind is not None and kind.name == "dpc" else get("pretrain")
    return get("dpc" if is_dpc_source(source) else "pretrain")


def of_train_target(source: str | None = None, run_dir: str | Path | None = None) -> RunKind:
    """The kind `negaug train SOURCE` trains, or `negaug train --resume RUN` / `negaug eval RUN`
    continues or scores: pix2pix for a translation preset or file, or a run whose record (or, before
    its first checkpoint, its config.yaml) says `kind: pix2pix`; else gan (whose own loader then
    names any other kind)."""
    if run_dir is not None:
        return get("pix2pix" if is_translation_run(run_dir) else "gan")
    return get("pix2pix" if is_translation_source(source) else "gan")


def of_run(run_dir: str | Path) -> RunKind | None:
    """The kind of the config in the run's newest readable checkpoint record; None when no record
    is readable or its config is of no kind."""
    folder = Path(run_dir) / "checkpoints"
    for step in reversed(list_steps(folder)) if folder.is_dir() else []:
        try:
            raw = read_record(folder / f"{stem(step)}.json")["config"]
        except (KeyError, ValueError):
            continue
        for name in _RECOGNITION_ORDER:
            try:
                config_from_dict(raw, _REGISTRY[name].config_class)
                return _REGISTRY[name]
            except (ValueError, TypeError, KeyError):
                continue
        return None
    return None


def prober_of_run(run_dir: str | Path) -> RunKind:
    """The kind whose `probe` measures `run_dir` (`negaug probe RUN`): the run's own kind; a run
    of no readable kind goes to MoCo-v2's probe, which names what is wrong with it. ValueError (one
    line, naming the command that fits) for a kind without a probe."""
    kind = of_run(run_dir) or get("pretrain")
    if kind.probe is None:
        probed = ", ".join(k.name for k in _REGISTRY.values() if k.probe is not None)
        raise ValueError(f"{run_dir} is a {kind.what} run, not one `negaug probe` measures (it probes {probed} runs); "
                         f"{kind.how_to_evaluate(run_dir)} (and `{kind.train_command} --resume {run_dir}` resumes it)")
    return kind


def other_kind(run_dir: str | Path, cls: type[ConfigBase]) -> RunKind | None:
    """The kind of the run when it is not the one `cls` configures (for "wrong kind" messages);
    None when it is, or when the run is of no kind."""
    kind = of_run(run_dir)
    return kind if kind is not None and kind.config_class is not cls else None
