"""Shared machinery of the reproductions: sizes, seeds, trained arms (cached), statistics, reports.

An experiment compares two *arms* trained with the same preset, budget and seeds; only the NDA
settings differ. A trained arm is cached under `runs_dir` by a hash of its resolved config, so
experiments that train the same models (anomaly and quality) share them when given the same
runs folder, and an interrupted experiment picks up the arms it already finished.

Statistics (`negaug.repro.stats`, fixed before the runs): Welch's t-test, the difference with
its 95% confidence interval, Holm's correction over each table, verdict words from the adjusted p
and the paper's direction. `within_seed_spread` is still recorded in results.json as a
description, never as a verdict.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from negaug.experiment import kinds
from negaug.experiment.checkpoint import load_latest
from negaug.experiment.config import ConfigBase, learning_settings
from negaug.files import open_no_follow, write_atomically
from negaug.metrics.protocol import library_versions
from negaug.repro import stats

SIZES = ("tiny", "quick", "full")
DONE_FILE = "repro_done.json"  # written into a run folder when its training finished
LOCK_FILE = "repro_training.lock"  # flocked by the process training the run (its PID inside, for messages)
LOCK_POLL_SECONDS = 30.0
BASELINE, NDA = "baseline", "nda"
ARMS = (BASELINE, NDA)


@dataclass
class Arm:
    """One side of a comparison: a preset plus overrides (everything else is shared)."""

    name: str  # "baseline" or "nda"
    preset: str
    overrides: list[str]
    kind: str = "gan"  # a kind of run of `negaug.experiment.kinds`: gan, pretrain (MoCo-v2) or pix2pix


@dataclass
class TrainedArm:
    name: str
    seed: int
    run_dir: Path
    config: dict[str, Any]  # the resolved config (every setting)
    seconds: float  # training time (0 when it came from the cache of an earlier call)
    cached: bool


@dataclass
class Study:
    """One reproduction: where it writes, how big it is and which seeds it trains."""

    out_dir: Path
    size: str = "quick"
    seeds: list[int] = field(default_factory=lambda: [0])
    runs_dir: Path | None = None  # None: out_dir / "runs"
    on_progress: Callable[[str], None] | None = None

    def __post_init__(self) -> None:
        if self.size not in SIZES:
            raise ValueError(f"unknown size '{self.size}'; valid: {', '.join(SIZES)}")
        if not self.seeds:
            raise ValueError("give at least one seed")
        self.out_dir = Path(self.out_dir)
        self.runs_dir = Path(self.runs_dir) if self.runs_dir is not None else self.out_dir / "runs"

    def progress(self, message: str) -> None:
        if self.on_progress is not None:
            self.on_progress(message)


MAX_SEEDS = 100  # each seed trains every arm once


def default_seeds(size: str, num_seeds: int | None) -> list[int]:
    """Seeds 0..n-1; n defaults to 3 for full runs (the minimum for a spread), 1 otherwise."""
    count = num_seeds if num_seeds is not None else (3 if size == "full" else 1)
    if not 1 <= count <= MAX_SEEDS:
        raise ValueError(f"--seeds must be from 1 to {MAX_SEEDS}, got {count}")
    return list(range(count))


# ---------------------------------------------------------------------------------------------
# trained arms, cached by config hash


def config_hash(config: ConfigBase) -> str:
    """SHA-256 of the settings that change the trained model (`config.learning_settings`: not
    where or how the run is recorded)."""
    return hashlib.sha256(json.dumps(learning_settings(config), sort_keys=True, default=str).encode()).hexdigest()


def train_arm(study: Study, arm: Arm, seed: int, label: str) -> TrainedArm:
    """Train `arm` with `seed` (or reuse the finished run of the same config) under study.runs_dir.

    Processes may share a runs folder (e.g. one per seed): a run that another live process is
    training is waited for, not trained twice."""
    # a bar per training run when someone watches (the CLI); train.progress is a recording key: same hash
    overrides = [*arm.overrides, f"train.seed={seed}", f"train.progress={str(study.on_progress is not None).lower()}"]
    config = kinds.get(arm.kind).load_config(arm.preset, overrides)
    key = config_hash(config)[:12]
    run_dir = _finished_run_of(study.runs_dir, seed, key) or study.runs_dir / f"{label}-{arm.name}-seed{seed}-{key}"
    done = run_dir / DONE_FILE
    what = f"{label} {arm.name} seed {seed}"
    if not done.is_file() or not cache_is_intact(study, run_dir, config.train.steps, what):
        with training_lock(study, run_dir):  # waits while another live process trains this run
            if not done.is_file():
                seconds = _train(study, config, run_dir, what, arm.kind)
                write_atomically(done, json.dumps({"seconds": seconds, "config_hash": key}))
                return TrainedArm(arm.name, seed, run_dir, config.to_dict(), seconds, False)
    study.progress(f"{label} {arm.name} seed {seed}: reusing {run_dir}")
    return TrainedArm(arm.name, seed, run_dir, config.to_dict(), 0.0, True)


def _finished_run_of(runs_dir: Path, seed: int, key: str) -> Path | None:
    """A finished run of the same config (hash `key`) that another arm or table trained under
    another name (e.g. Table 8's "lambda 0.25" is Appendix O's "identity removed"), or None."""
    if not runs_dir.is_dir():
        return None
    found = sorted(p for p in runs_dir.glob(f"*-seed{seed}-{key}") if p.is_dir() and not p.is_symlink()
                   and (p / DONE_FILE).is_file())
    return found[0] if found else None


def cache_is_intact(study: Study, run_dir: Path, steps: int, what: str) -> bool:
    """Whether the finished run `run_dir` still holds a good checkpoint of its last step (`steps`),
    verified like any checkpoint. A damaged one (a flipped bit, a truncation) is reported by name
    and the run's done marker removed, so it is trained again from its last good checkpoint,
    never evaluated at an older step without a word."""
    problems: list[str] = []
    found = load_latest(run_dir / "checkpoints", warn=problems.append)
    if found is not None and found.step >= steps and not problems:
        return True
    reason = problems[0] if problems else f"its newest good checkpoint is step {found.step if found else 'none'}"
    study.progress(f"warning: the cached run of {what} ({run_dir}) is damaged: {reason[:300]}; "
                   f"training it again from its last good checkpoint")
    (run_dir / DONE_FILE).unlink(missing_ok=True)
    return False


def _train(study: Study, config, run_dir: Path, what: str, kind: str = "gan") -> float:
    """Train (resuming an interrupted run of the same config); returns the seconds it took."""
    trainer, loader = kinds.get(kind).train, kinds.get(kind).load
    study.progress(f"{what}: training {config.train.steps} steps -> {run_dir}")
    latest = load_latest(run_dir / "checkpoints")
    resume = latest is not None
    if not resume:  # killed before its first good checkpoint: this repro-owned folder starts over
        _empty_run_dir(run_dir)
    start = time.perf_counter()
    if resume and latest.step >= config.train.steps:  # killed after its last checkpoint: nothing left to train
        loader(run_dir)
        return 0.0
    result = trainer(config, run_dir=run_dir, resume=resume, warn=lambda message: study.progress(f"warning: {message}"))
    if result.interrupted:
        raise KeyboardInterrupt
    loader(run_dir)  # fail here, not in the middle of an evaluation, if the checkpoint is unusable
    return time.perf_counter() - start


def _empty_run_dir(run_dir: Path) -> None:
    """Remove what a killed training left in a run folder that repro created, but its own lock."""
    for entry in run_dir.iterdir():
        if entry.name == LOCK_FILE:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


@contextlib.contextmanager
def training_lock(study: Study, run_dir: Path) -> Iterator[None]:
    """Hold `run_dir`'s training lock (the folder is created), waiting while another process holds
    it. The lock is an `fcntl.flock` on LOCK_FILE, as run folders' own locks: the operating system
    releases it when its holder ends, also by SIGKILL, so no PID is trusted and nothing goes stale.
    Inside, check `run_dir / DONE_FILE` again: the holder we waited for may have finished the run."""
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = open_no_follow(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, "repro training lock")
    try:
        _acquire(study, run_dir, fd)
        yield
    finally:
        os.close(fd)  # releases the flock


def _acquire(study: Study, run_dir: Path, fd: int) -> None:
    """Take the flock on `fd`, polling every LOCK_POLL_SECONDS while another process holds it."""
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            study.progress(f"waiting for process {holder}, which is training {run_dir.name}")
            time.sleep(LOCK_POLL_SECONDS)
            continue
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)  # for the message above only: the flock is the lock
        return


@torch.no_grad()
def generate(generator: torch.nn.Module, num_samples: int, seed: int, batch_size: int = 500) -> torch.Tensor:
    """`num_samples` samples of an (eval-mode) generator from seeded latents -> (N, ...) float32 CPU."""
    latent_gen = torch.Generator().manual_seed(seed)
    z = generator.sample_latent(num_samples, generator=latent_gen)
    return torch.cat([generator(chunk).float() for chunk in z.split(batch_size)])


# ---------------------------------------------------------------------------------------------
# statistics over seeds


def spread(values: Sequence[float]) -> dict[str, Any]:
    """Mean and sample std (ddof = 1; 0 for one value) of per-seed values."""
    array = np.asarray(values, dtype=float)
    std = float(array.std(ddof=1)) if array.size > 1 else 0.0
    return {"mean": float(array.mean()), "std": std, "n": int(array.size), "values": array.tolist()}


def compare(baseline: Sequence[float], nda: Sequence[float]) -> dict[str, Any]:
    """Difference of means (nda - baseline) with its 95% CI and Welch's p (`stats.welch`); "holm_p"
    is added by `adjust` over the table the comparison belongs to."""
    a, b = spread(baseline), spread(nda)
    test = stats.welch(a["values"], b["values"])
    return {"baseline": a, "nda": b, "difference": test["difference"], "ci95": test["ci95"], "df": test["df"],
            "within_seed_spread": bool(abs(test["difference"]) < max(a["std"], b["std"])), "welch_p": test["p"]}


def adjust(table: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Holm's correction over one table of `compare` results (adds "holm_p" in place)."""
    return stats.adjust_family(table)


SPREAD_RULE = stats.RULES


# ---------------------------------------------------------------------------------------------
# reports


def fmt(stats: dict[str, Any], digits: int = 3) -> str:
    """'0.812 ± 0.031' (mean ± std over seeds); the bare mean for a single seed."""
    if stats["n"] == 1:
        return f"{stats['mean']:.{digits}f}"
    return f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}"


def verdict(comparison: dict[str, Any]) -> str:
    """'+0.120 [+0.010, +0.230], p=0.01, Holm p=0.03' for a report cell (`stats.format_difference`)."""
    return stats.format_difference(comparison)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def run_records(trained: Sequence[TrainedArm]) -> list[dict[str, Any]]:
    return [{"arm": t.name, "seed": t.seed, "run_dir": str(t.run_dir), "train_seconds": round(t.seconds, 1),
             "cached": t.cached, "config": t.config} for t in trained]


def environment() -> dict[str, Any]:
    return {"versions": library_versions(), "torch_threads": torch.get_num_threads(),
            "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def carries_verdicts(size: str) -> bool:
    """Whether a run of this size may say yes or no on a claim: only the full size (several seeds
    at the reported scale); a tiny or quick run shows that the pipeline runs."""
    return size == "full"


def smoke_note(size: str) -> str:
    """The first line of a tiny or quick run's report."""
    return f"> A {size} run shows only that the pipeline runs: its numbers carry no verdict."


def table_heading(size: str, what: str) -> str:
    """'## Claim table (...)' for a full run, '## Table (...)' for a smoke run (no claim is judged)."""
    return f"## {'Claim table' if carries_verdicts(size) else 'Table'} ({what})"


def write_outputs(out_dir: Path, results: dict[str, Any], report_lines: list[str]) -> None:
    """results.json (every number with its protocol) and report.md; a tiny or quick run's report
    starts with `smoke_note` (its `targets` stay in results.json, for tests, never as a verdict)."""
    size = results.get("size", "full")
    if not carries_verdicts(size) and not (report_lines and report_lines[0].startswith(smoke_note(size))):
        report_lines = [smoke_note(size), "", *report_lines]
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomically(out_dir / "results.json", json.dumps(_finite(results), indent=1) + "\n")
    write_atomically(out_dir / "report.md", "\n".join(report_lines) + "\n")


def _finite(value: Any) -> Any:
    """JSON has no NaN/inf: write them as strings so results.json stays valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
