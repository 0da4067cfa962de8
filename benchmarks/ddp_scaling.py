"""Data-parallel scaling of `negaug train` on this machine: steps/s with 1 and N processes.

    python benchmarks/ddp_scaling.py [--presets ring,dcgan-tiny] [--nprocs 1,2] [--steps 200]
                                     [--threads 1] [--device cpu] [--allreduce-reps 50]

Each row runs `negaug train` as a user would: 1 process plainly, N > 1 with
`python -m torch.distributed.run --nproc_per_node N` (gloo on CPUs, NCCL with --device cuda), a
fixed number of steps, recording off (no samples, no evaluation, one final checkpoint). The rate
is the `it_per_s` of the last line of the run's metrics.jsonl, which covers the second half of
the run (log_every = steps / 2), so start-up and warm-up do not count; the wall time of the whole
command is shown too. `data.batch_size` is per process, so one step of N processes trains on
N x batch samples: scaling efficiency = (samples/s with N) / (N x samples/s with 1) = steps/s with
N / steps/s with 1 (1.0: perfect scaling; on a CPU, N processes need N free cores: --threads
threads each).

Presets: "ring" (the 2-D ring MLP, batch 256, R1 penalty), "default" (the default preset: DCGAN
width 32 on MNIST-5k, batch 64) and "dcgan-tiny" (the default preset,
DCGAN on MNIST-5k at width 8, batch 64). `--allreduce-reps` also times the gradient all-reduce
alone (`negaug.distributed.all_reduce_gradients` of the default preset's D, 2 gloo processes).
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

PRESETS = {"ring": ("ring", []), "dcgan-tiny": ("default", ["model.options.width=8"]), "default": ("default", [])}
RECORDING_OFF = ["train.progress=false", "train.sample_every=0", "train.checkpoint_every=0", "eval.every=0"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_command(nproc: int, preset: str, overrides: list[str]) -> list[str]:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
                "--master_addr", "127.0.0.1", "--master_port", str(free_port())] if nproc > 1 else [sys.executable]
    return [*launcher, "-m", "negaug", "train", preset, *overrides]


def run_train(nproc: int, name: str, steps: int, threads: int, device: str, runs_dir: Path) -> dict[str, float]:
    """One `negaug train` of `steps` steps with `nproc` processes: its steps/s and wall time."""
    preset, extra = PRESETS[name]
    run_name = f"{name}-{nproc}"
    overrides = [*extra, *RECORDING_OFF, f"train.steps={steps}", f"train.log_every={max(1, steps // 2)}",
                 f"train.device={device}", f"train.runs_dir={runs_dir}", f"train.name={run_name}"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    done = subprocess.run(train_command(nproc, preset, overrides), check=False, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"negaug train with {nproc} process(es) failed:\n{done.stderr[-3000:]}")
    lines = [json.loads(line) for line in (runs_dir / run_name / "metrics.jsonl").read_text().splitlines()]
    rates = [line["it_per_s"] for line in lines if "it_per_s" in line]
    config = (runs_dir / run_name / "config.yaml").read_text()
    batch = next(int(line.split(":")[1]) for line in config.splitlines() if line.strip().startswith("batch_size:"))
    return {"steps_per_s": rates[-1], "wall_s": wall, "batch": batch}


def _allreduce_worker(rank: int, world: int, port: int, reps: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    from negaug import distributed
    from negaug.experiment import load_config
    from negaug.experiment.build import build_dataset, build_models

    distributed.init_from_env("cpu")
    config = load_config("default", ["train.device=cpu"])
    _, discriminator, _ = build_models(config, build_dataset(config))
    params = [p for p in discriminator.parameters() if p.requires_grad]
    times = []
    for i in range(reps + 5):
        for p in params:
            p.grad = torch.full_like(p, float(rank + i))
        start = time.perf_counter()
        distributed.all_reduce_gradients(params)
        times.append(time.perf_counter() - start)
    if rank == 0:
        Path(out).write_text(json.dumps({"median_ms": statistics.median(times[5:]) * 1e3,
                                         "numel": sum(p.numel() for p in params)}))
    torch.distributed.destroy_process_group()


def allreduce_cost(reps: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        out = f"{folder}/allreduce.json"
        torch.multiprocessing.spawn(_allreduce_worker, args=(2, free_port(), reps, out), nprocs=2, join=True)
        return json.loads(Path(out).read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="ring,dcgan-tiny", help=f"comma-separated, of {', '.join(PRESETS)}")
    parser.add_argument("--nprocs", default="1,2", help="process counts; the first is the baseline (default 1,2)")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1, help="OMP threads per process (default 1)")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda (one GPU per process)")
    parser.add_argument("--allreduce-reps", type=int, default=50, help="0: skip the all-reduce timing")
    args = parser.parse_args()
    counts = [int(n) for n in args.nprocs.split(",")]
    print(f"negaug train, {args.steps} steps, device {args.device}, {args.threads} thread(s) per process, "
          f"torch {torch.__version__}")
    print("| preset | processes | batch / process | steps/s | samples/s | efficiency | wall s |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for name in args.presets.split(","):
            base = None
            for nproc in counts:
                r = run_train(nproc, name, args.steps, args.threads, args.device, Path(folder))
                samples = r["steps_per_s"] * nproc * r["batch"]
                base = base if base is not None else samples / nproc
                print(f"| {name} | {nproc} | {r['batch']} | {r['steps_per_s']:.1f} | {samples:.0f} | "
                      f"{samples / (nproc * base):.2f} | {r['wall_s']:.1f} |", flush=True)
    if args.allreduce_reps:
        r = allreduce_cost(args.allreduce_reps)
        print(f"all_reduce_gradients of the default preset's D ({r['numel']:,} parameters, "
              f"{r['numel'] * 4 / 2**20:.2f} MiB float32), gloo, 2 processes: {r['median_ms']:.2f} ms (median)")


if __name__ == "__main__":
    main()
