"""Do short runs of every kind give the same checkpoint as another commit's code? (issue 24: a
restructuring keeps behaviour bit for bit.)

    git worktree add /tmp/negaug-old <commit>
    python benchmarks/bit_identical.py --old /tmp/negaug-old [--steps 20] [--out scratch/bit_identical]

Trains each case below for --steps steps twice, in a subprocess with one CPU thread: once with
this checkout's `src` first on PYTHONPATH, once with the old worktree's, and compares every
tensor of the two final checkpoints (`torch.equal`) and the two metrics.jsonl files (every
record, without its clock readings it_per_s and elapsed_s and without warnings, which a busy
machine's slow steps add). Prints one line per case and exits 1 when any
differs. Cases: the `default` preset; mixture-mode NDA with WGAN-GP; `negaug pretrain mnist` with
Jigsaw NDA; `pix2pix-scenes` with NDA; a MIX+GAN (3 G, 3 D) on the 5 x 5 grid; `negaug pretrain
dpc-moving-mnist` with Jigsaw NDA clips (a kind since 8f955bc: skipped against an older checkout).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
SMALL = ["train.progress=false", "train.device=cpu"]
GAN_SMALL = ["train.sample_every=0"]  # pretraining runs sample nothing
CASES = {  # name -> (command, preset, overrides)
    "default": ("train", "default", ["model.options.width=8", "data.batch_size=16", *GAN_SMALL]),
    "mixture-wgan-gp": ("train", "default", [*GAN_SMALL, "model.options.width=8", "data.batch_size=16", "nda.mode=mixture",
                                             "loss.name=wgan-gp", "optim.num_d_steps=2"]),
    "pretrain-mnist-nda": ("pretrain", "mnist", ["nda.transform=jigsaw", "data.batch_size=32", "model.options.width=8",
                                                 "objective.queue_size=256", "objective.num_splits=2",
                                                 "train.knn_every=0"]),
    "pix2pix-scenes-nda": ("train", "pix2pix-scenes", [*GAN_SMALL, "nda.transform=jigsaw", "model.width=8", "data.batch_size=4"]),
    "mixgan": ("train", None, ["data.name=grid", "model.name=mlp", "model.options.width=16", "model.options.depth=2",
                               "model.mixture=3", "loss.name=nonsaturating", "nda.transform=none",
                               "data.batch_size=64", *GAN_SMALL]),
    # DPC became a kind after d829a1b: compare it with a later commit (e.g. 54dc103)
    "dpc-moving-mnist-nda": ("pretrain", "dpc-moving-mnist", ["nda.transform=jigsaw", "data.batch_size=8",
                                                              "data.options={num_clips: 64, num_frames: 8, image_size: 16}",
                                                              "model.widths=[4, 8]", "model.feature_dim=16"]),
}
NEEDS = {"dpc-moving-mnist-nda": "negaug/experiment/dpc.py"}  # case -> the file an old checkout needs for it
COMPARE = """
import sys, torch
from negaug.experiment import checkpoint as ckpt
def flat(tree, path=""):
    if isinstance(tree, torch.Tensor): return {path: tree}
    if isinstance(tree, dict): return {k: v for key, value in tree.items() for k, v in flat(value, f"{path}.{key}").items()}
    if isinstance(tree, (list, tuple)): return {k: v for i, value in enumerate(tree) for k, v in flat(value, f"{path}[{i}]").items()}
    return {}
a, b = (ckpt.load_latest(__import__("pathlib").Path(p) / "checkpoints") for p in sys.argv[1:3])
ta, tb = flat(a.state), flat(b.state)
bad = [k for k in ta if k not in tb or not torch.equal(ta[k], tb[k])] + [k for k in tb if k not in ta]
import json
def records(run):  # the metrics log without its clock readings
    lines = (__import__("pathlib").Path(run) / "metrics.jsonl").read_text().splitlines()
    parsed = [json.loads(line) for line in lines]  # warnings (e.g. slow steps on a busy machine) are not behaviour
    return [{k: v for k, v in r.items() if k not in ("it_per_s", "elapsed_s")} for r in parsed if "warning" not in r]
ra, rb = records(sys.argv[1]), records(sys.argv[2])
logs = "same" if ra == rb else f"DIFFERENT ({len(ra)} vs {len(rb)} records)"
print(f"step {a.step} vs {b.step}; {len(ta)} tensors; {len(bad)} differ" + (f": {bad[:3]}" if bad else "") + f"; metrics.jsonl {logs}")
sys.exit(1 if bad or a.step != b.step or ra != rb else 0)
"""


def run_case(src: Path, name: str, steps: int, runs: Path) -> Path:
    command, preset, overrides = CASES[name]
    args = [sys.executable, "-m", "negaug", command, *([preset] if preset else []), *overrides, *SMALL,
            f"train.steps={steps}", f"train.checkpoint_every={steps}", f"train.runs_dir={runs}", f"train.name={name}"]
    env = dict(os.environ, PYTHONPATH=str(src), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    done = subprocess.run(args, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{name} failed with {src}: {done.stderr.strip().splitlines()[-1:]}")
    return runs / name


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--old", required=True, help="a checkout (git worktree) of the commit to compare with")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of: {', '.join(CASES)}")
    args = parser.parse_args()
    old_src = Path(args.old).resolve() / "src"
    if not (old_src / "negaug").is_dir():
        raise SystemExit(f"--old {args.old}: no src/negaug there; give a checkout of negaug (git worktree add DIR COMMIT)")
    failures = 0
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.cases.split(","):
            if name in NEEDS and not (old_src / NEEDS[name]).is_file():
                print(f"{name:>20}: skipped (the old checkout has no {NEEDS[name]})", flush=True)
                continue
            new = run_case(HERE / "src", name, args.steps, Path(scratch) / "new")
            old = run_case(old_src, name, args.steps, Path(scratch) / "old")
            env = dict(os.environ, PYTHONPATH=str(HERE / "src"))
            done = subprocess.run([sys.executable, "-c", COMPARE, str(new), str(old)], env=env, capture_output=True, text=True)
            verdict = "identical" if done.returncode == 0 else "DIFFERENT"
            failures += done.returncode != 0
            print(f"{name:>20}: {verdict} ({(done.stdout or done.stderr).strip().splitlines()[-1]})", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
