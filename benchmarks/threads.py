"""Training steps per second of a preset at 1, 2 and all torch threads, idle or beside busy processes.

    python benchmarks/threads.py [--preset default] [--iters 20] [--rounds 3] [--busy 0] [--overrides ...]

What `train.threads` (and `--threads`) to choose on this machine. One iteration = one generator
step of `negaug.experiment.loop.train_step` (its D steps, G step and EMA) on the CPU. The thread
counts are measured in the same run, interleaved in rounds (a slow period hits all alike); the
median of the rounds is reported with its ratio to torch's default (one thread per core).
`--busy K` starts K processes that spin on one core each while measuring: a machine shared with
other jobs (issue 26: on a busy 2-core machine the default took 80 minutes, and a 1-thread run
beside the same load was 5.6x faster per step).
Run it on the machine that will train, idle (`--busy 0`) and loaded (e.g. `--busy 2` on 2 cores).
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import time

import torch

from negaug.experiment import load_config
from negaug.experiment.loop import prepare_run, train_step


def spin(stop) -> None:
    """Keep one core busy until `stop` is set (a competing job)."""
    while not stop.is_set():
        sum(i * i for i in range(10_000))


def steps_per_second(recipe, state, threads: int, iters: int, first_step: int) -> float:
    torch.set_num_threads(threads)
    began = time.perf_counter()
    for step in range(first_step, first_step + iters):
        train_step(recipe, state, step, state.stats)
    return iters / (time.perf_counter() - began)


def measure(preset: str, overrides: list[str], counts: list[int], iters: int, rounds: int) -> dict[int, float]:
    recipe, state = prepare_run(load_config(preset, [*overrides, "train.device=cpu"]))
    steps_per_second(recipe, state, counts[0], 3, 1)  # warm-up: allocations and caches
    rates: dict[int, list[float]] = {n: [] for n in counts}
    step = 4
    for _ in range(rounds):
        for n in counts:
            rates[n].append(steps_per_second(recipe, state, n, iters, step))
            step += iters
    return {n: statistics.median(r) for n, r in rates.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="default")
    parser.add_argument("--iters", type=int, default=20, help="generator steps per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--busy", type=int, default=0, help="competing processes spinning while measuring")
    parser.add_argument("--overrides", nargs="*", default=[], help="section.key=value overrides of the preset")
    args = parser.parse_args()
    default = torch.get_num_threads()
    counts = sorted({1, min(2, default), default})
    stop = multiprocessing.Event()
    busy = [multiprocessing.Process(target=spin, args=(stop,), daemon=True) for _ in range(args.busy)]
    for process in busy:
        process.start()
    try:
        rates = measure(args.preset, args.overrides, counts, args.iters, args.rounds)
    finally:
        stop.set()
        for process in busy:
            process.join()
    print(f"preset {args.preset}, {os.cpu_count()} cores, torch default {default} threads, {args.busy} busy "
          f"processes; median of {args.rounds} rounds of {args.iters} steps")
    print(f"{'threads':>8} {'steps/s':>9} {'x default':>10}")
    for n in counts:
        print(f"{n:>8} {rates[n]:>9.2f} {rates[n] / rates[default]:>10.2f}")
    best = max(rates, key=rates.get)
    print(f"fastest here: train.threads={best} (negaug train ... train.threads={best}; --threads {best} elsewhere)")


if __name__ == "__main__":
    main()
