"""The experiment layer: a config in, a self-describing run folder out.

    from negaug.experiment import load_config, train, load_run, evaluate_run
    result = train(load_config("default", ["nda.lam=0.5"]))
    loaded = load_run(result.run_dir)              # G (EMA), D, config of the latest checkpoint

Modules: `config` (typed, strict settings), `build` (`build.build`: config -> `Recipe` + initial `TrainState`),
`state` (`TrainState`: what a checkpoint holds), `checkpoint` (atomic, verified files), `steps`
(the D and G steps), `critic` (the only place training calls a discriminator), `loop` (`train`), `runs` (run
folders, `load_run`, `resume_config`), `evaluate` and `anomaly` (a trained run's numbers);
`pretrain_config`, `pretrain_build`, `pretrain` and `probe` do the same for contrastive pretraining
(`negaug pretrain`, `negaug probe`), the `translate*` modules for Pix2Pix, `dpc_config`, `dpc` and
`dpc_probe` for Dense Predictive Coding (video); `kinds` is the one
registry of these kinds of run (config class, loader, trainer, run loader) that the CLI and
`negaug.repro` dispatch through.
It assembles the library (`negaug.nda`, `losses`, `models`, `data`, `metrics`, `anomaly`), which
never imports it.
"""
from negaug.experiment import kinds
from negaug.experiment.anomaly import AnomalyReport, detect_anomalies
from negaug.experiment.build import Recipe
from negaug.experiment.config import Config, config_from_dict, load_config, preset_names
from negaug.experiment.dpc import load_dpc_run, train_dpc
from negaug.experiment.dpc_probe import probe_dpc_run
from negaug.experiment.evaluate import evaluate_generator_of_run, evaluate_run
from negaug.experiment.loop import CheckpointWriteError, RunWriteError, TrainResult, prepare_run, train
from negaug.experiment.pretrain import PretrainResult, pretrain
from negaug.experiment.pretrain_config import PretrainConfig, load_pretrain_config
from negaug.experiment.probe import probe_run
from negaug.experiment.runs import LoadedRun, load_run, resume_config
from negaug.experiment.state import TrainState
from negaug.experiment.steps import NonFiniteLossError
from negaug.experiment.translate import load_translation_run, train_translation

__all__ = [
    "AnomalyReport", "CheckpointWriteError", "Config", "LoadedRun", "NonFiniteLossError", "PretrainConfig", "PretrainResult",
    "Recipe", "RunWriteError", "TrainResult", "TrainState", "config_from_dict", "detect_anomalies",
    "evaluate_generator_of_run", "evaluate_run", "load_config", "load_pretrain_config", "load_run", "prepare_run",
    "kinds", "load_dpc_run", "load_translation_run", "preset_names", "pretrain", "probe_dpc_run", "probe_run",
    "resume_config", "train", "train_dpc", "train_translation",
]
