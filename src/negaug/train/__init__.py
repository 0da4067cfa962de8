"""Training: the loop (`train`), checkpoints, run folders."""
from negaug.train.loop import CheckpointWriteError, TrainResult, resume_config, train
from negaug.train.runs import LoadedRun, load_run
from negaug.train.steps import NonFiniteLossError

__all__ = ["train", "resume_config", "TrainResult", "load_run", "LoadedRun", "NonFiniteLossError",
           "CheckpointWriteError"]
