"""Optional Weights & Biases logging of a negaug run (any kind) (`train.wandb=true`, `pip install -e ".[wandb]"`):
the numbers of every log step's metrics.jsonl line (losses, D outputs, rates, timings) at its
step, and the resolved config. Unlike the TensorBoard writer it does not (yet) receive the
`eval.every` evaluations or the sample grids.

Offline by default: the run is written under RUN/wandb/ and nothing is sent or downloaded; upload
it later with `wandb sync RUN/wandb/offline-run-*`, or set WANDB_MODE=online (your choice, read
from the environment, never set by negaug). WANDB_PROJECT names the project (default "negaug").
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from negaug.experiment.stats import scalars_of

MISSING = "train.wandb=true needs the wandb package: pip install -e '.[wandb]'"


def check_wandb(enabled: bool) -> None:
    """A one-line ValueError when W&B logging is asked for and the package is missing."""
    if not enabled:
        return
    try:
        import wandb  # noqa: F401  (optional dependency)
    except ImportError:
        raise ValueError(MISSING) from None


class WandbLogger:
    """One W&B run; `log(record)` once per metrics.jsonl line, `close()` at the end."""

    def __init__(self, run: Any):
        self.run = run

    def log(self, record: dict[str, Any]) -> None:
        numbers = scalars_of(record)
        if numbers:
            self.run.log(numbers, step=int(record["step"]))

    def chain(self, on_log: Callable[[dict], None] | None) -> Callable[[dict], None]:
        """A log callback that logs to W&B, then calls `on_log` (when given)."""
        def both(record: dict) -> None:
            self.log(record)
            if on_log is not None:
                on_log(record)
        return both

    def close(self) -> None:
        self.run.finish()


def open_wandb(run_dir: Path, config: dict[str, Any], mode: str | None = None) -> WandbLogger:
    """A W&B run for the run folder `run_dir` (named after it, files under RUN/wandb/), with the
    resolved `config`; `mode`: None reads WANDB_MODE, default "offline"."""
    try:
        import wandb  # optional dependency
    except ImportError:
        raise ValueError(MISSING) from None
    mode = mode or os.environ.get("WANDB_MODE") or "offline"
    run = wandb.init(project=os.environ.get("WANDB_PROJECT", "negaug"), name=Path(run_dir).name,
                     dir=str(run_dir), mode=mode, config=config, resume="allow", id=_run_id(run_dir),
                     settings=wandb.Settings(console="off"))  # stdout stays negaug's (progress bar, warnings)
    return WandbLogger(run)


def _run_id(run_dir: Path) -> str:
    """A stable W&B id per run folder, so that a resumed run continues the same W&B run."""
    return hashlib.sha256(str(Path(run_dir).resolve()).encode()).hexdigest()[:16]
