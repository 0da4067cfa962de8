"""Step pace: a warning when a run's steps become far slower than its own first steps.

On a shared CPU, torch's default (one thread per core) makes a run fight the other processes for
the cores: on a busy 2-core machine `negaug train` took 80 minutes, and nothing
said why (a 1-thread run beside it was 5.6x faster per step). The run's own first steps after
warm-up are the yardstick, so no machine-specific number is needed:

    pace = StepPace()
    message = pace.record(seconds_of_this_step)  # the warning, once, when the slowdown starts
    pace.postfix()                               # {"slow": "5.2x: train.threads=1"} while slow

Medians, so one step that also wrote a checkpoint or ran an evaluation counts for nothing.
"""
from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Sequence

WARMUP_STEPS = 5  # the first steps (allocations, caches) are not the yardstick
BASELINE_STEPS = 20  # the yardstick: median seconds per step of these
WINDOW_STEPS = 50  # "sustained": the median of this many recent steps must be slow
SLOWDOWN = 3.0  # times slower than the yardstick that warns
FIX = "set train.threads=1 (or run fewer processes at once)"


def slowdown(step_seconds: Sequence[float], warmup: int = WARMUP_STEPS, baseline: int = BASELINE_STEPS,
             window: int = WINDOW_STEPS) -> float | None:
    """How many times slower the last `window` steps ran than steps warmup..warmup+baseline
    (median seconds per step of each); None until the run has both windows, apart."""
    if len(step_seconds) < warmup + baseline + window:
        return None
    first = statistics.median(step_seconds[warmup:warmup + baseline])
    recent = statistics.median(step_seconds[-window:])
    return recent / max(first, 1e-12)


def is_oversubscribed(ratio: float | None, factor: float = SLOWDOWN) -> bool:
    """Whether a `slowdown` ratio warns: more than `factor` times slower."""
    return ratio is not None and ratio > factor


def slow_message(ratio: float, threads: int) -> str:
    return (f"steps run {ratio:.1f}x slower than this run's first steps with {threads} torch thread"
            f"{'s' if threads != 1 else ''}: the CPU is likely oversubscribed (shared with other processes); "
            f"{FIX}")


class StepPace:
    """The seconds of a session's steps: the first warmup+baseline ones and the last `window`."""

    def __init__(self, threads: int, enabled: bool = True, warmup: int = WARMUP_STEPS,
                 baseline: int = BASELINE_STEPS, window: int = WINDOW_STEPS):
        self.threads, self.enabled = threads, enabled
        self.warmup, self.baseline = warmup, baseline
        self.head: list[float] = []
        self.tail: deque[float] = deque(maxlen=window)
        self.ratio: float | None = None
        self.warned = False

    def record(self, seconds: float) -> str | None:
        """Add one step's seconds; the warning message the first time the run is slow, else None."""
        if not self.enabled:
            return None
        if len(self.head) < self.warmup + self.baseline:
            self.head.append(seconds)
            return None
        self.tail.append(seconds)
        self.ratio = slowdown(self.head + list(self.tail), self.warmup, self.baseline, self.tail.maxlen)
        if is_oversubscribed(self.ratio) and not self.warned:
            self.warned = True
            return slow_message(self.ratio, self.threads)
        return None

    def postfix(self) -> dict[str, str]:
        """What the progress line shows while the run is slow (nothing otherwise)."""
        if not is_oversubscribed(self.ratio):
            return {}
        return {"slow": f"{self.ratio:.1f}x: train.threads=1"}
