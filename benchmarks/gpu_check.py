"""The GPU path, checked in one run of a few minutes on a CUDA machine (issue 24).

    python benchmarks/gpu_check.py [--out scratch/gpu_check] [--budget-s 270] [--parts kinds,torchrun,tests,speed]
    python benchmarks/gpu_check.py --dry-run     # the same plan on the CPU, smallest sizes, no CUDA-only part

Four parts, each result printed as it comes:

1. kinds: every kind of run (`negaug.experiment.kinds`) trains 4 steps at the tiny sizes of
   tests/test_kinds.py with each feature (fp32; bf16 autocast; channels_last, which
   `train.precision=bf16` brings, checked on the built G and D; fp16 with its grad scaler; torch.compile),
   then loads back on the same device. A kind without the feature's config key is "not supported
   by <kind>", not a failure; so is channels_last for DPC (3-D convolutions: bf16 without it).
2. torchrun: `python -m torch.distributed.run --nproc_per_node N -m negaug train|pretrain` (GAN,
   MoCo-v2, DPC) on the
   tiny configs, N = 2 when 2 GPUs are visible (NCCL, each process on cuda:LOCAL_RANK, the GAN's
   batch-norm D and Pix2Pix's batch-norm G and D converted to SyncBatchNorm), else 1 (the launcher on a GPU, no process group:
   NCCL refuses two ranks on one GPU, "Duplicate GPU detected", so those paths are marked not run).
3. tests: the CUDA-only tests, `pytest -m cuda` over CUDA_TEST_FILES (tests/test_cuda.py and others).
4. speed: ms per generator step (num_d_steps D steps + 1 G step, as `negaug train` builds them, via
   benchmarks/compile_step.py), fp32 / bf16 x eager / compiled, for the default preset and BigGAN at
   32 px; 3 warm-up iterations, then the median of interleaved rounds, torch.cuda.synchronize before
   each clock reading, under the run's own process settings (train.deterministic=true, as by default).

No check starts after --budget-s seconds (270), nor a compiled variant within 60 s of it: it is
skipped and says so, so the run ends within about 5 minutes (a compilation started late may pass it).
Subprocesses are killed at their own time limit (torchrun 180 s, pytest 240 s, less when the budget
is short). Writes gpu_check.json (every result, tracebacks, device, torch / CUDA versions, negaug
commit) and gpu_check.md (the tables, for docs/speed.md) to --out; exit code 0 when nothing failed,
1 otherwise, 2 without CUDA (nothing run) unless --dry-run.

Run it from a checkout (it reuses tests/test_kinds.py, benchmarks/compile_step.py and
benchmarks/ddp_scaling.py) with the test extra installed (`pip install -e .[test]`).
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import negaug

BENCHMARKS = Path(__file__).resolve().parent
REPO = BENCHMARKS.parent
PARTS = ("kinds", "torchrun", "tests", "speed")
CUDA_TEST_FILES = ("tests/test_cuda.py", "tests/test_nda.py")  # every test file with a `cuda` mark (tested)
KIND_STEPS = 4
TORCHRUN_KINDS = {"gan": ("train", ["model.options.spectral_norm=false"]),  # a batch-norm D: SyncBatchNorm
                  "pretrain": ("pretrain", []), "dpc": ("pretrain", []),
                  "pix2pix": ("train", ["model.norm=batch"])}  # batch-norm G and D: SyncBatchNorm
NOT_UNDER_TORCHRUN: dict[str, str] = {}  # kind -> why it is not launched (every kind trains data-parallel)
BIGGAN_DATA = ["data.name=dots", "data.options={count: 6, num_samples: 2048}", "eval.every=0", "eval.best_metric=null"]
SPEED_MODELS = {  # label -> (preset, overrides, extra overrides of the dry run)
    "default preset (DCGAN width 32, MNIST-5k 32 px, batch 64, 1 D step)": (
        "default", [], ["model.options.width=4", "data.batch_size=8"]),
    "BigGAN 32 px (cifar10 preset: width 64, batch 64, 4 D steps; dots 3x32x32 for CIFAR-10)": (
        "cifar10", BIGGAN_DATA, ["model.options.width=4", "data.batch_size=8", "optim.num_d_steps=1"]),
}
# (precision, compiled), in the order they are built: bf16 compiled before fp32 compiled, so that a
# tight budget drops the less useful one
VARIANTS = (("fp32", False), ("bf16", False), ("bf16", True), ("fp32", True))
REFUSAL = ("gpu_check needs a CUDA device (torch.cuda.is_available() is False); nothing was run "
           "(--dry-run runs the same plan on the CPU at the smallest sizes)")


def local(module: str):
    """A module of this checkout's benchmarks/ or tests/ folder, whose helpers gpu_check reuses."""
    for folder in (REPO / "tests", BENCHMARKS):
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
    return importlib.import_module(module)


class Clock:
    """Elapsed time, the budget, and progress lines prefixed with the elapsed seconds."""

    def __init__(self, budget_s: float, quiet: bool = False):
        self.start, self.budget_s, self.quiet = time.perf_counter(), budget_s, quiet

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return self.budget_s - self.elapsed()

    def say(self, text: str) -> None:
        if not self.quiet:
            print(f"[{self.elapsed():6.1f} s] {text}", flush=True)


def over_budget(clock: Clock) -> dict[str, str]:
    return {"status": "skipped", "detail": f"not started: past the --budget-s {clock.budget_s:g} s time budget"}


def attempt(work: Callable[[], str]) -> dict[str, Any]:
    """Run one check: {"status": "ok" | "error", "detail", "seconds", "traceback"}. Every failure is a
    row of the table, not the end of the run."""
    start = time.perf_counter()
    try:
        status, detail, trace = "ok", work(), None
    except Exception as err:  # a check table records whatever fails
        status, trace = "error", traceback.format_exc()
        detail = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
    return {"status": status, "detail": detail, "seconds": round(time.perf_counter() - start, 2), "traceback": trace}


@dataclasses.dataclass(frozen=True)
class Feature:
    """One way of training: its overrides, the config keys a kind needs for it, where it runs."""

    name: str
    overrides: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()  # a kind whose config lacks one: "not supported by <kind>"
    cuda_only: bool = False
    in_dry_run: bool = True  # False: skipped in the dry run (compiling takes tens of seconds on a CPU)
    check: Callable[[Any], str] | None = None  # after training and loading: (config) -> a note
    not_for: tuple[tuple[str, str], ...] = ()  # (kind, why): kinds that have the key but not the feature


def channels_last_models(config) -> str:
    """The networks built for `config` (bf16) hold their 4-D weights channels_last (G and D of a
    GAN run, the MoCo encoders of a pretraining run), built by the kind's own prepare."""
    from negaug.experiment import kinds

    kind = kinds.of_config_class(type(config))
    _, state = kind.prepare(config)
    nets = [getattr(state, name) for name in ("generator", "discriminator", "model") if hasattr(state, name)]
    weights = [p for net in nets for p in net.parameters() if p.dim() == 4]
    strided = [tuple(p.shape) for p in weights if not p.is_contiguous(memory_format=torch.channels_last)]
    if not weights or strided:
        raise AssertionError(f"{len(strided)} of {len(weights)} conv weights are not channels_last: {strided[:3]}")
    return f"; {len(weights)} conv weights of the {kind.name} run's networks channels_last"


FEATURES = (
    Feature("fp32"),
    Feature("bf16 autocast", ("train.precision=bf16",), ("train.precision",)),
    Feature("channels_last", ("train.precision=bf16",), ("train.precision",), check=channels_last_models,
            not_for=(("dpc", "3-D convolutions: bf16 runs without channels_last"),)),
    Feature("fp16 + grad scaler", ("train.precision=fp16",), ("train.precision",), cuda_only=True),
    Feature("compile", ("train.compile=true",), ("train.compile",), in_dry_run=False),
)


def has_key(kind, key: str) -> bool:
    section, name = key.split(".")
    return name in {f.name for f in dataclasses.fields(getattr(kind.config_class(), section))}


def skip_reason(kind, feature: Feature, device: str) -> str | None:
    missing = [key for key in feature.keys if not has_key(kind, key)]
    if missing:
        return f"not supported by {kind.name} (no {missing[0]})"
    if kind.name in dict(feature.not_for):
        return f"not supported by {kind.name} ({dict(feature.not_for)[kind.name]})"
    if feature.cuda_only and device != "cuda":
        return "skipped: needs CUDA"
    if not feature.in_dry_run and device != "cuda":
        return "skipped in the dry run (compiling takes tens of seconds on a CPU)"
    return None


def check_kind(name: str, feature: Feature, device: str, runs_dir: Path) -> dict[str, Any]:
    """Kind `name` trains KIND_STEPS steps with `feature` on `device`, then loads back there."""
    from negaug.experiment import kinds

    kind = kinds.get(name)
    row = {"part": "kinds", "kind": name, "feature": feature.name}
    reason = skip_reason(kind, feature, device)
    if reason is not None:
        return {**row, "status": "not supported" if reason.startswith("not") else "skipped", "detail": reason}
    test_kinds = local("test_kinds")
    run_name = f"{name}-{feature.name.replace(' ', '_').replace('+', 'and')}"

    def work() -> str:
        config = test_kinds.config_of(name, runs_dir, run_name, KIND_STEPS, [f"train.device={device}", *feature.overrides])
        result = kind.train(config)
        kind.load(result.run_dir, device=device)
        note = feature.check(config) if feature.check is not None else ""
        return f"{KIND_STEPS} steps, loaded on {device}{note}"

    return {**row, **attempt(work)}


def run_subprocess(command: list[str], timeout_s: float, cwd: Path | None = None) -> tuple[int, str]:
    """(exit code, stdout + stderr) of `command` in its own process group, all of it killed after
    `timeout_s` (a hung NCCL rank must not hang the check): exit code -9 then."""
    src = str(Path(negaug.__file__).resolve().parents[1])  # this checkout's negaug, in every subprocess
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, *filter(None, [os.environ.get("PYTHONPATH")])]),
           "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=timeout_s)
        return process.returncode, output
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        return -9, f"{output}\nkilled after {timeout_s:.0f} s"


def tail(output: str, lines: int = 3) -> str:
    return " | ".join(line.strip() for line in output.strip().splitlines()[-lines:])


def torchrun_command(nproc: int, command: str, preset: str, overrides: list[str]) -> list[str]:
    port = local("ddp_scaling").free_port()
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_addr",
            "127.0.0.1", "--master_port", str(port), "-m", "negaug", command, preset, *overrides]


def check_torchrun(name: str, nproc: int, device: str, runs_dir: Path, clock: Clock) -> dict[str, Any]:
    """`negaug <command>` of kind `name` under torchrun with `nproc` processes: exit 0 and its last
    checkpoint at step KIND_STEPS."""
    from negaug.experiment import checkpoint as ckpt

    command, extra = TORCHRUN_KINDS[name]
    preset, overrides = local("test_kinds").TINY[name]
    run_name = f"torchrun-{name}-{nproc}"
    group = "no process group" if nproc == 1 else "NCCL" if device == "cuda" else "gloo"
    row = {"part": "torchrun", "kind": name, "feature": f"torchrun, {nproc} process{'es' if nproc > 1 else ''} ({group})"}

    def work() -> str:
        config = [*overrides, *extra, *local("test_kinds").COMMON, f"train.device={device}", f"train.runs_dir={runs_dir}",
                  f"train.name={run_name}", f"train.steps={KIND_STEPS}"]
        code, output = run_subprocess(torchrun_command(nproc, command, preset, config), max(30.0, min(180.0, clock.left())))
        if code != 0:
            raise RuntimeError(f"exit {code}: {tail(output)}")
        steps = ckpt.list_steps(runs_dir / run_name / "checkpoints")
        if not steps or steps[-1] != KIND_STEPS:
            raise RuntimeError(f"exit 0 but the checkpoints are at steps {steps}, not {KIND_STEPS}")
        synced = {"gan": ", D's batch norm as SyncBatchNorm", "pix2pix": ", G's and D's batch norm as SyncBatchNorm"}
        return f"exit 0, checkpoint at step {KIND_STEPS}" + (synced.get(name, "") if group == "NCCL" else "")

    return {**row, **attempt(work)}


def torchrun_part(device: str, runs_dir: Path, clock: Clock) -> list[dict[str, Any]]:
    gpus = torch.cuda.device_count() if device == "cuda" else 0
    nproc = 2 if gpus >= 2 else 1
    rows = []
    for name in TORCHRUN_KINDS:
        rows.append(check_torchrun(name, nproc, device, runs_dir, clock) if clock.left() > 0
                    else {"part": "torchrun", "kind": name, "feature": "torchrun", **over_budget(clock)})
        clock.say(f"torchrun {name}: {rows[-1]['status']} ({rows[-1]['detail']})")
    rows += [{"part": "torchrun", "kind": name, "feature": "torchrun", "status": "not supported", "detail": reason}
             for name, reason in NOT_UNDER_TORCHRUN.items()]
    if device == "cuda" and nproc == 1:
        rows.append({"part": "torchrun", "kind": "gan", "feature": "NCCL, SyncBatchNorm, cuda:LOCAL_RANK",
                     "status": "skipped", "detail": f"not run: needs 2 GPUs (NCCL refuses two ranks on one GPU, "
                                                    f"'Duplicate GPU detected'); {gpus} visible"})
    return rows


def tests_part(device: str, clock: Clock) -> list[dict[str, Any]]:
    """The CUDA-only tests in a pytest subprocess (skipped in the dry run: they would all skip)."""
    row = {"part": "tests", "kind": "-", "feature": f"pytest -m cuda {' '.join(CUDA_TEST_FILES)}"}
    if device != "cuda":
        return [{**row, "status": "skipped", "detail": "skipped: needs CUDA"}]
    if clock.left() <= 0:
        return [{**row, **over_budget(clock)}]

    def work() -> str:
        code, output = run_subprocess([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "cuda",
                                       *CUDA_TEST_FILES], max(60.0, min(240.0, clock.left())), cwd=REPO)
        if code != 0:
            raise RuntimeError(f"pytest exit {code}: {tail(output, 12)}")
        if "skipped" in tail(output, 1) or "passed" not in tail(output, 1):  # on a GPU none may skip
            raise RuntimeError(f"not every CUDA test ran: {tail(output, 6)}")
        return tail(output, 1)

    result = {**row, **attempt(work)}
    clock.say(f"CUDA tests: {result['status']} ({result['detail']})")
    return [result]


def variant_name(precision: str, compiled: bool) -> str:
    return f"{precision} {'compiled' if compiled else 'eager'}"


def build_variants(preset: str, overrides: list[str], device: str, clock: Clock,
                   sync: Callable[[], None] | None) -> tuple[dict, dict, dict]:
    """(step functions, warm-up seconds, cells of the variants not built: skipped or error) of one model."""
    compile_step = local("compile_step")
    steps: dict[str, Callable[[int], None]] = {}
    warm: dict[str, float] = {}
    cells: dict[str, dict[str, Any]] = {}
    for precision, compiled in VARIANTS:
        name = variant_name(precision, compiled)
        if compiled and device != "cuda":
            cells[name] = {"status": "skipped", "detail": "skipped in the dry run"}
            continue
        if compiled and clock.left() < 60:
            cells[name] = over_budget(clock)
            continue

        def work(precision=precision, compiled=compiled, name=name) -> str:
            step, _ = compile_step.runner(preset, compiled, device, [*overrides, f"train.precision={precision}"])
            warm[name] = compile_step.warm_up(step, 3, sync)
            steps[name] = step
            return "built"

        result = attempt(work)
        if result["status"] != "ok":
            cells[name] = result
        clock.say(f"  {name}: {result['status']} ({result['seconds']:.1f} s{'' if result['status'] == 'ok' else ': ' + result['detail']})")
    return steps, warm, cells


def speed_row(label: str, preset: str, overrides: list[str], device: str, clock: Clock,
              iters: int, rounds: int) -> dict[str, Any]:
    """ms per generator step of one model in each VARIANT, timed in the same interleaved rounds."""
    from negaug.experiment import load_config
    from negaug.experiment.build import resolve_device
    from negaug.experiment.loop import run_process_settings

    sync = torch.cuda.synchronize if device == "cuda" else None
    config = load_config(preset, [*local("compile_step").OVERRIDES.get(preset, []), *overrides, f"train.device={device}"])
    with run_process_settings(config, resolve_device(device)):  # as `negaug train` runs: deterministic, seeded
        steps, warm, cells = build_variants(preset, overrides, device, clock, sync)
        seconds = local("compile_step").time_rounds(steps, iters, rounds, sync) if steps else {}
    for name, value in seconds.items():
        precision, mode = name.split()
        eager = warm.get(variant_name(precision, False))
        compile_s = warm[name] - eager if mode == "compiled" and eager is not None else None
        cells[name] = {"status": "ok", "ms": round(value * 1e3, 2), "warm_up_s": round(warm[name], 2),
                       "compile_s": None if compile_s is None else round(compile_s, 1)}
    return {"model": label, "preset": preset, "overrides": overrides, "model_name": config.model.name,
            "batch": config.data.batch_size, "num_d_steps": config.optim.num_d_steps, "iters": iters,
            "rounds": rounds, "cells": cells}


def speed_part(device: str, clock: Clock, iters: int, rounds: int) -> list[dict[str, Any]]:
    rows = []
    for label, (preset, overrides, dry) in SPEED_MODELS.items():
        if clock.left() <= 0:
            rows.append({"model": label, "preset": preset, "cells": {variant_name(*v): over_budget(clock) for v in VARIANTS}})
            continue
        clock.say(f"speed: {label}")
        sizes = [*overrides, *(dry if device != "cuda" else [])]
        label = label if device == "cuda" else f"{label} [dry run: {', '.join(dry)}]"
        row = speed_row(label, preset, sizes, device, clock, iters, rounds)
        rows.append(row)
        clock.say("  " + ", ".join(f"{name} {cell['ms']} ms" for name, cell in row["cells"].items() if "ms" in cell))
    return rows


def environment(device: str) -> dict[str, Any]:
    from negaug.metrics.protocol import library_versions

    cuda = device == "cuda"
    return {"device": torch.cuda.get_device_name(0) if cuda else "CPU (dry run)",
            "gpus": torch.cuda.device_count() if cuda else 0, "torch": torch.__version__,
            "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if cuda else None,
            "python": sys.version.split()[0], "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            **library_versions()}


def cell_text(cell: dict[str, Any], with_detail: bool = False) -> str:
    if cell["status"] == "ok":
        detail = f"{cell['detail']}, " if with_detail else ""
        return f"ok ({detail}{cell['seconds']:.1f} s)" if "seconds" in cell else "ok"
    return cell["detail"].replace("|", "/") if cell["status"] != "error" else f"**error**: {cell['detail'].replace('|', '/')}"


def kinds_table(rows: list[dict[str, Any]]) -> list[str]:
    names = list(dict.fromkeys(row["kind"] for row in rows))
    lines = ["| kind | " + " | ".join(f.name for f in FEATURES) + " |", "|---|" + "---|" * len(FEATURES)]
    for name in names:
        cells = {row["feature"]: cell_text(row) for row in rows if row["kind"] == name}
        lines.append(f"| {name} | " + " | ".join(cells.get(f.name, "") for f in FEATURES) + " |")
    return lines


def speed_table(rows: list[dict[str, Any]]) -> list[str]:
    """ms / step of each variant, with its speed-up over fp32 eager of the same model."""
    names = [variant_name(*v) for v in VARIANTS]
    lines = ["| model | " + " | ".join(f"{name} ms / step" for name in names) + " | compile s (fp32, bf16) |",
             "|---|" + "---|" * (len(names) + 1)]
    for row in rows:
        cells = row["cells"]
        base = cells.get("fp32 eager", {}).get("ms")
        texts = [f"{cells[n]['ms']:.2f}" + (f" ({base / cells[n]['ms']:.2f}x)" if base and n != "fp32 eager" else "")
                 if "ms" in cells.get(n, {}) else cell_text(cells[n]) if n in cells else "" for n in names]
        compile_s = [str(cells.get(variant_name(p, True), {}).get("compile_s", "-")) for p in ("fp32", "bf16")]
        lines.append(f"| {row['model']} | " + " | ".join(texts) + f" | {', '.join(compile_s)} |")
    return lines


def markdown(report: dict[str, Any]) -> str:
    env, results = report["environment"], report["results"]
    where = ("the CPU, dry run (smallest sizes, no CUDA-only part)" if report["dry_run"] else
             f"{env['device']} ({env['gpus']} GPU{'s' if env['gpus'] > 1 else ''} visible), CUDA {env['cuda']}, cuDNN {env['cudnn']}")
    lines = [f"# gpu_check: {env['device']}", "", f"{where}, torch {env['torch']}, "
             f"negaug {env['negaug']} at {env['negaug_commit']}{' (uncommitted changes)' if env['negaug_dirty'] else ''}, "
             f"{env['date']}; `{report['command']}`, {report['seconds']:.0f} s."]
    kind_rows = [r for r in results if r["part"] == "kinds"]
    if kind_rows:
        lines += ["", f"Every kind of run, {KIND_STEPS} steps at tests/test_kinds.py's tiny sizes, then loaded back:", "",
                  *kinds_table(kind_rows)]
    other = [r for r in results if r["part"] in ("torchrun", "tests")]
    if other:
        lines += ["", "torchrun and the CUDA-only tests:", "", "| part | kind | what | result |", "|---|---|---|---|",
                  *[f"| {r['part']} | {r['kind']} | {r['feature']} | {cell_text(r, True)} |" for r in other]]
    if report["speed"]:
        first = next((r for r in report["speed"] if "iters" in r), {"iters": "?", "rounds": "?"})
        sync = "" if report["dry_run"] else "torch.cuda.synchronize before each clock reading, "
        lines += ["", f"ms per generator step (num_d_steps D steps + 1 G step, as `negaug train` builds them; median of "
                      f"{first['rounds']} interleaved rounds x {first['iters']} iterations after 3 warm-up iterations, "
                      f"{sync}train.deterministic=true as by default; speed-up over fp32 eager in brackets; "
                      f"compile s = warm-up compiled - warm-up eager):", "", *speed_table(report["speed"])]
    return "\n".join(lines) + "\n"


def kinds_part(device: str, runs_dir: Path, clock: Clock) -> list[dict[str, Any]]:
    from negaug.experiment import kinds

    rows = []
    for name in kinds.names():
        for feature in FEATURES:
            if clock.left() <= 0:
                rows.append({"part": "kinds", "kind": name, "feature": feature.name, **over_budget(clock)})
                continue
            rows.append(check_kind(name, feature, device, runs_dir))
            clock.say(f"{name} x {feature.name}: {cell_text(rows[-1], True)}")
    return rows


def run_plan(args: argparse.Namespace, device: str, clock: Clock) -> dict[str, Any]:
    """Every part of --parts, in order; the report (results, speed rows, environment)."""
    import tempfile

    parts = args.parts
    if device == "cuda":  # cuBLAS reads it once, at its first call: deterministic runs need it set before
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    results: list[dict[str, Any]] = []
    speed: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as folder:
        runs_dir = Path(folder)
        if "kinds" in parts:
            results += kinds_part(device, runs_dir, clock)
        if "torchrun" in parts:
            results += torchrun_part(device, runs_dir, clock)
        if "tests" in parts:
            results += tests_part(device, clock)
        if "speed" in parts:
            speed = speed_part(device, clock, args.iters, args.rounds)
    return {"environment": environment(device), "dry_run": device != "cuda", "budget_s": args.budget_s,
            "command": " ".join(["python benchmarks/gpu_check.py", *sys.argv[1:]]) if args.command is None else args.command,
            "results": results, "speed": speed, "seconds": round(clock.elapsed(), 1)}


def failures(report: dict[str, Any]) -> list[str]:
    bad = [f"{r['kind']} x {r['feature']}" for r in report["results"] if r["status"] == "error"]
    return bad + [f"speed: {row['model']} x {name}" for row in report["speed"]
                  for name, cell in row["cells"].items() if cell["status"] == "error"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="scratch/gpu_check", help="folder of gpu_check.json and gpu_check.md")
    parser.add_argument("--dry-run", action="store_true", help="run the plan on the CPU at the smallest sizes, "
                        "skipping what needs CUDA and compilation (tests the script itself)")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)} (default: all)")
    parser.add_argument("--budget-s", type=float, default=270.0,
                        help="seconds after which no check starts, nor a compiled variant within 60 s of it (270)")
    parser.add_argument("--iters", type=int, default=None, help="iterations per timing round (10; dry run 2)")
    parser.add_argument("--rounds", type=int, default=None, help="timing rounds (5; dry run 1)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)
    args.parts = [part.strip() for part in args.parts.split(",") if part.strip()]
    unknown = [part for part in args.parts if part not in PARTS]
    if unknown:
        raise SystemExit(f"gpu_check: unknown part '{unknown[0]}' in --parts; valid: {', '.join(PARTS)}")
    args.iters = args.iters or (2 if args.dry_run else 10)
    args.rounds = args.rounds or (1 if args.dry_run else 5)
    args.command = None if argv is None else " ".join(["python benchmarks/gpu_check.py", *argv])
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not torch.cuda.is_available() and not args.dry_run:
        print(REFUSAL, file=sys.stderr)
        return 2
    device = "cpu" if args.dry_run else "cuda"
    clock = Clock(args.budget_s, args.quiet)
    clock.say(f"gpu_check on {device}{' (dry run)' if args.dry_run else ''}: {', '.join(args.parts)}, budget {args.budget_s:g} s")
    report = run_plan(args, device, clock)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    (out / "gpu_check.md").write_text(markdown(report))
    bad = failures(report)
    clock.say(f"wrote {out / 'gpu_check.md'} and gpu_check.json; " + (f"{len(bad)} failed: {', '.join(bad)}" if bad else "nothing failed"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
