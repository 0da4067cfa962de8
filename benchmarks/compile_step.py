"""Training-step time with and without `train.compile=true` (torch.compile of G and D), per preset.

    python benchmarks/compile_step.py [--presets default,ring] [--iters 10] [--rounds 5] [--threads 2]

Each preset is built exactly as `negaug train PRESET` builds it (`negaug.experiment.build`), on the
CPU, twice: eager and compiled. One iteration = the loop's work for one generator step (num_d_steps
D steps, then one G step). The first iterations of the compiled run pay for compilation: they are
timed apart ("compile s": the warm-up of 3 iterations, minus the eager warm-up). Then the two runs
are timed in interleaved rounds (a slow period of the machine hits both alike); the median round
is reported with the speed-up eager / compiled. The ring preset's R1 penalty is set to 0 (compile
refuses gradient penalties: no double backward through a compiled D), here and in its eager run.
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from negaug.experiment import load_config
from negaug.experiment.build import build
from negaug.experiment.stats import Stats
from negaug.experiment.steps import discriminator_step, generator_step

OVERRIDES = {"ring": ["loss.r1_penalty=0"]}  # compile cannot double-backward


def runner(preset: str, compiled: bool, device: str = "cpu", overrides: tuple[str, ...] | list[str] = ()):
    """(step(i), config): one generator step of `preset` built as `negaug train` builds it, with
    `overrides` (also used by benchmarks/gpu_check.py)."""
    config = load_config(preset, [*OVERRIDES.get(preset, []), *overrides, f"train.device={device}",
                                  f"train.compile={str(compiled).lower()}"])
    recipe, state = build(config)
    stats = Stats()

    def step(i: int) -> None:
        for _ in range(recipe.num_d_steps):
            real, labels = state.batches.next()
            discriminator_step(recipe, state, real, labels, i + 1, stats)
        generator_step(recipe, state, i + 1, stats, real, labels)

    return step, config


def warm_up(step, iters: int = 3, sync: Callable[[], None] | None = None) -> float:
    """Seconds for the first `iters` iterations (`sync`: e.g. torch.cuda.synchronize, called before
    the clock stops, since CUDA kernels run asynchronously)."""
    start = time.perf_counter()
    for i in range(iters):
        step(i)
    if sync is not None:
        sync()
    return time.perf_counter() - start


def time_rounds(steps: dict[str, Callable[[int], None]], iters: int, rounds: int,
                sync: Callable[[], None] | None = None) -> dict[str, float]:
    """Median seconds per iteration of each of `steps` (already warmed up), timed in interleaved
    rounds of `iters` iterations, so that a slow period of the machine hits them all alike."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            times[name].append(warm_up(step, iters, sync) / iters)
    return {name: statistics.median(values) for name, values in times.items()}


def measure(preset: str, iters: int, rounds: int) -> dict[str, float]:
    (eager, config), (compiled, _) = runner(preset, False), runner(preset, True)
    warm = {"eager": warm_up(eager), "compiled": warm_up(compiled)}
    seconds = time_rounds({"eager": eager, "compiled": compiled}, iters, rounds)
    eager_s, compiled_s = seconds["eager"], seconds["compiled"]
    return {"eager_ms": eager_s * 1e3, "compiled_ms": compiled_s * 1e3, "speedup": eager_s / compiled_s,
            "compile_s": warm["compiled"] - warm["eager"], "model": config.model.name, "data": config.data.name,
            "batch": config.data.batch_size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="default,ring", help="comma-separated presets (default: default,ring)")
    parser.add_argument("--iters", type=int, default=10, help="iterations per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, CPU, {torch.get_num_threads()} threads, median of {args.rounds} rounds x "
          f"{args.iters} iterations (1 iteration = num_d_steps D steps + 1 G step)")
    print("| preset | model, data, batch | eager ms / it | compiled ms / it | speed-up | compile s |")
    print("|---|---|---|---|---|---|")
    for preset in args.presets.split(","):
        r = measure(preset, args.iters, args.rounds)
        print(f"| {preset} | {r['model']}, {r['data']}, {r['batch']} | {r['eager_ms']:.1f} | {r['compiled_ms']:.1f} | "
              f"{r['speedup']:.2f}x | {r['compile_s']:.0f} |")


if __name__ == "__main__":
    main()
