"""Data-parallel training (torchrun, gloo on the CPU, 2 processes): gradients equal those of one
process over the global batch, every rank keeps identical G, D, EMA and MoCo queue, a stopped and
resumed run equals an uninterrupted one, a batch-norm D is refused on CPUs, and a single process
is bit-identical to the code before data parallelism existed.

Workers are module-level functions started by torch.multiprocessing.spawn (a tcp:// store on a
free port) or, for the launcher itself, `python -m torch.distributed.run`."""
from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from negaug.experiment import checkpoint as ckpt
from negaug.experiment import load_config, steps
from negaug.experiment.build import build
from negaug.experiment.loop import train_step
from negaug.experiment.stats import Stats
from negaug.losses import gradient_penalty
from test_train import tensors_by_path

ROOT = Path(__file__).resolve().parents[1]
BEFORE_DATA_PARALLEL = "eed7527f5916ea765da4337151dfd3c8f7064cfc"  # the last commit without it
RING = ["data.name=ring", "model.name=mlp", "model.options.width=16", "nda.transform=other_data",
        "nda.options={dataset: toy_negatives, dataset_options: {kind: both, num_samples: 2000}}", "nda.lam=0.5",
        "train.device=cpu", "train.progress=false", "train.sample_every=0", "train.log_every=1", "train.ema_decay=0.9",
        "train.ema_start=2", "optim.lr_g=1e-3", "optim.lr_d=1e-3"]


def source_at(commit: str, tmp_path: Path) -> Path:
    """`tmp_path/old`, holding `src/` as it was at `commit` (`git archive`); skips the test in a
    clone without that commit (a shallow one)."""
    found = subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", commit], capture_output=True, check=False)
    if found.returncode != 0:
        pytest.skip(f"git history without {commit[:7]} (a shallow clone)")
    old = tmp_path / "old"
    old.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "src"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
    return old


def one_process_env(src: Path | None = None) -> dict[str, str]:
    """The environment of a plain one-thread, one-process `python -m negaug` subprocess (no torchrun
    variables), importing negaug from `src` when given."""
    env = {key: value for key, value in os.environ.items() if key not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    if src is not None:
        env["PYTHONPATH"] = str(src)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def process_group(rank: int, world: int, port: int):
    """Join a gloo group of `world` processes (nothing for world = 1), and leave it after."""
    if world > 1:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        yield
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _exit_after(rank: int, worker, *args) -> None:
    """Run `worker` in a spawned process, then leave it at once: torch's C++ teardown at a normal
    interpreter exit aborted a gloo worker now and then ("terminate called without an active
    exception", SIGABRT, also on d829a1b) after its results were written; os._exit skips it."""
    worker(rank, *args)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def spawn(worker, *args, world: int = 2) -> None:
    torch.set_num_threads(1)
    mp.spawn(_exit_after, args=(worker, world, free_port(), *args), nprocs=world, join=True)


# ---------------------------------------------------------------------------------------------
# (a) gradients of one D step and one G step equal those of one process over the global batch

GLOBAL_BATCH = 8


def _fixed_inputs(latent_dim: int):
    gen = torch.Generator().manual_seed(123)
    real = torch.randn(GLOBAL_BATCH, 2, generator=gen)
    latents = torch.randn(2 * GLOBAL_BATCH, latent_dim, generator=gen)  # D step's, then G step's
    return real, latents


def one_step_gradients(rank: int, world: int, overrides: list[str]) -> dict[str, list[torch.Tensor]]:
    """D's gradients after one D step and G's after one G step on this rank's share of a fixed
    global batch (real points, latents, penalty interpolations, negatives = the reflected reals),
    with lr = 0 so that the G step sees the D the other process count saw too."""
    local = GLOBAL_BATCH // world
    config = load_config("default", [*RING, *overrides, f"data.batch_size={local}"])
    recipe, state = build(config)
    recipe = dataclasses.replace(recipe, negative=lambda x, generator=None: -x.flip(1))
    for optimizer in (state.opt_d, state.opt_g):
        for group in optimizer.param_groups:
            group["lr"] = 0.0
    real, latents = _fixed_inputs(state.generator.latent_dim)
    calls = []

    def latents_of_this_rank(recipe, state, n):
        block = latents[len(calls) * GLOBAL_BATCH:(len(calls) + 1) * GLOBAL_BATCH]  # one block per step
        calls.append(n)
        return block[rank * n:(rank + 1) * n], None

    def penalty_at_global_positions(critic, real, fake, labels, generator=None):
        gen = torch.Generator().manual_seed(7)
        torch.rand(rank * real.shape[0], generator=gen)  # skip the draws of the ranks before this one
        return gradient_penalty(critic, real, fake, labels, generator=gen)

    mine = real[rank * local:(rank + 1) * local]
    labels = torch.zeros(local, dtype=torch.long)
    with mock.patch.object(steps, "sample_generated", latents_of_this_rank), \
            mock.patch.object(steps, "gradient_penalty", penalty_at_global_positions):
        steps.discriminator_step(recipe, state, mine, labels, 1, Stats())
        d_grads = [p.grad.clone() for p in state.discriminator.parameters()]
        steps.generator_step(recipe, state, 1, Stats(), mine, labels)
        g_grads = [p.grad.clone() for p in state.generator.parameters()]
    return {"d": d_grads, "g": g_grads}


def _gradients_worker(rank, world, port, overrides, out):
    with process_group(rank, world, port):
        torch.save(one_step_gradients(rank, world, overrides), Path(out) / f"rank{rank}.pt")


def test_the_skipped_draws_of_the_penalty_stub_are_those_of_one_stream():
    """The premise of the gradient test: rank r's eps are the r-th block of one process's eps."""
    whole = torch.rand(8, generator=torch.Generator().manual_seed(7))
    gen = torch.Generator().manual_seed(7)
    torch.rand(4, generator=gen)
    assert torch.equal(torch.rand(4, generator=gen), whole[4:])


@pytest.mark.slow
@pytest.mark.parametrize("overrides", [
    ["loss.name=wgan-gp"],  # WGAN-GP: double backward, towards generated and negative points
    ["loss.name=nonsaturating", "loss.r1_penalty=0.5", "loss.r2_penalty=0.5"],
], ids=["wgan-gp", "r1-r2"])
def test_gradients_of_two_ranks_equal_one_process_over_the_global_batch(tmp_path, overrides):
    spawn(_gradients_worker, overrides, str(tmp_path))
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    whole = one_step_gradients(0, 1, overrides)
    for phase in ("d", "g"):
        for a, b in zip(ranks[0][phase], ranks[1][phase]):
            assert torch.equal(a, b)  # one all-reduced buffer: identical on both ranks
        for got, expected in zip(ranks[0][phase], whole[phase]):
            torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)


def test_the_gradient_test_can_fail_a_local_batch_gives_other_gradients():
    """Without the all-reduce rank 0 would step with its half batch's gradient: far from the global one."""
    whole = one_step_gradients(0, 1, ["loss.name=wgan-gp"])
    local = one_step_gradients(0, 2, ["loss.name=wgan-gp"])  # in one process: rank 0's share, not reduced
    assert max((a - b).abs().max().item() for a, b in zip(whole["d"], local["d"])) > 1e-3


# ---------------------------------------------------------------------------------------------
# the EMA (and G, D, G's batch-norm statistics) identical on both ranks after a few steps

TINY_DCGAN = ["data.batch_size=4", "data.options.classes=[0, 1]", "model.options.width=4",
              "model.options.spectral_norm=true", "train.device=cpu", "train.ema_decay=0.5", "train.ema_start=1",
              "train.progress=false"]


def _ema_worker(rank, world, port, out):
    with process_group(rank, world, port):
        recipe, state = build(load_config("default", TINY_DCGAN))
        first_batch = state.batches.next()[0]
        state.batches.load_state_dict({"epoch": 0, "position": 0})
        for step in (1, 2, 3):
            train_step(recipe, state, step, Stats())
        torch.save({"ema": state.ema.state_dict(), "generator": state.generator.state_dict(),
                    "discriminator": state.discriminator.state_dict(), "first_batch": first_batch},
                   Path(out) / f"rank{rank}.pt")


@pytest.mark.slow
def test_g_d_and_the_ema_with_batch_norm_stay_identical_on_both_ranks(tmp_path):
    spawn(_ema_worker, str(tmp_path))
    a, b = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    assert not torch.equal(a["first_batch"], b["first_batch"])  # the ranks read different samples
    assert any("running_mean" in key for key in a["ema"])  # G has batch norm: its statistics are averaged
    for part in ("ema", "generator", "discriminator"):
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), f"{part}.{key}"


# ---------------------------------------------------------------------------------------------
# (d) the MoCo queue: identical on both ranks, both ranks' keys in rank order, no NDA key


def _moco_worker(rank, world, port, out):
    from negaug.contrastive import ENCODERS, MoCo

    with process_group(rank, world, port):
        torch.manual_seed(0)  # the same weights and initial queue on both ranks
        model = MoCo(ENCODERS.build("small_cnn", in_channels=1, width=4), dim=8, head_hidden=16, queue_size=32,
                     momentum=0.9, num_splits=2)
        initial_queue = model.queue.clone()
        gen = torch.Generator().manual_seed(100 + rank)  # each rank its own images
        x_q, x_k = torch.rand(4, 1, 8, 8, generator=gen), torch.rand(4, 1, 8, 8, generator=gen)
        nda = torch.rand(4, 2, 1, 8, 8, generator=gen)
        seen = {}
        encode_keys, encode_nda = model.encode_keys, model.encode_nda
        model.encode_keys = lambda *a, **k: seen.setdefault("keys", encode_keys(*a, **k))
        model.encode_nda = lambda *a, **k: seen.setdefault("nda", encode_nda(*a, **k))
        model.train()
        model(x_q, x_k, nda=nda, generator=torch.Generator().manual_seed(1))
        torch.save({"queue": model.queue.clone(), "ptr": int(model.queue_ptr), "initial": initial_queue,
                    "keys": seen["keys"], "nda": seen["nda"]}, Path(out) / f"rank{rank}.pt")


@pytest.mark.slow
def test_moco_queue_takes_every_ranks_keys_in_rank_order_and_no_nda_key(tmp_path):
    spawn(_moco_worker, str(tmp_path))
    a, b = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    assert torch.equal(a["queue"], b["queue"]) and a["ptr"] == b["ptr"] == 8
    torch.testing.assert_close(a["queue"][:8], torch.cat([a["keys"], b["keys"]]), rtol=0, atol=0)
    assert torch.equal(a["queue"][8:], a["initial"][8:])  # nothing else was written
    for rank in (a, b):
        nda = rank["nda"].reshape(-1, rank["nda"].shape[-1])
        assert torch.cdist(nda, a["queue"]).min() > 1e-3  # no NDA embedding entered the queue


# ---------------------------------------------------------------------------------------------
# (b) a 2-process `negaug train` stopped at step k and resumed equals an uninterrupted one


def _cli_worker(rank, world, port, commands, out):
    """Run each `negaug ...` command line as torchrun would: its env, one process per rank."""
    from negaug.cli import main

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1")
    codes = []
    for i, argv in enumerate(commands):
        os.environ["MASTER_PORT"] = str(port + i)  # a fresh store for each command
        codes.append(main(argv))
    torch.save(codes, Path(out) / f"codes{rank}.pt")


def checkpoint_tensors(run_dir: Path) -> tuple[int, dict[str, torch.Tensor]]:
    found = ckpt.load_latest(run_dir / "checkpoints")
    return found.step, tensors_by_path(found.state)


def assert_same_checkpoint(a, b):
    assert a[0] == b[0] and a[1].keys() == b[1].keys()
    for key in a[1]:
        assert torch.equal(a[1][key], b[1][key]), key


@pytest.mark.slow
def test_two_process_run_stopped_and_resumed_equals_an_uninterrupted_one(tmp_path, capsys):
    from negaug.cli import main

    common = ["default", *RING, "data.batch_size=8", "train.checkpoint_every=3", f"train.runs_dir={tmp_path}"]
    commands = [["train", *common, "train.steps=6", "train.name=whole"],
                ["train", *common, "train.steps=3", "train.name=parts"],
                ["train", "--resume", str(tmp_path / "parts"), "train.steps=6"]]
    port = free_port()
    mp.spawn(_exit_after, args=(_cli_worker, 2, port, commands, str(tmp_path)), nprocs=2, join=True)
    assert torch.load(tmp_path / "codes0.pt") == torch.load(tmp_path / "codes1.pt") == [0, 0, 0]
    whole, parts = checkpoint_tensors(tmp_path / "whole"), checkpoint_tensors(tmp_path / "parts")
    assert {"distributed.rng.0.latent", "distributed.rng.1.latent"} <= whole[1].keys()
    assert not torch.equal(whole[1]["distributed.rng.0.latent"], whole[1]["distributed.rng.1.latent"])
    assert_same_checkpoint(whole, parts)  # and the same checkpoint resumed in one process is refused, one line:
    assert main(["train", "--resume", str(tmp_path / "whole"), "train.steps=8"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "written by 2 processes and this run has 1" in err[-1], err
    # regression (evaluating a 2-process run in one process found "no usable checkpoint"): loading a
    # run to sample or evaluate it needs its weights only, whatever the number of processes
    from negaug.experiment import load_run
    loaded = load_run(tmp_path / "whole")
    assert loaded.step == 6
    for key, value in loaded.raw_generator.state_dict().items():
        assert torch.equal(value, whole[1][f"generator.{key}"]), key
    assert main(["eval", str(tmp_path / "whole"), "--num-samples", "200"]) == 0


PRETRAIN = ["mnist", "data.batch_size=8", "data.image_size=16", "data.options.classes=[0, 1]",
            "model.options.width=4", "model.head_hidden=16", "model.dim=8", "objective.queue_size=48",
            "objective.num_splits=2", "train.log_every=2", "train.checkpoint_every=3", "train.knn_every=0",
            "train.progress=false", "train.device=cpu", "nda.transform=jigsaw", "eval.knn_k=5",
            "optim.schedule=constant"]  # cosine depends on train.steps: a 3-step run would decay faster


@pytest.mark.slow
def test_two_process_pretraining_stopped_and_resumed_equals_an_uninterrupted_one(tmp_path):
    common = [*PRETRAIN, f"train.runs_dir={tmp_path}"]
    commands = [["pretrain", *common, "train.steps=6", "train.name=whole"],
                ["pretrain", *common, "train.steps=3", "train.name=parts"],
                ["pretrain", "--resume", str(tmp_path / "parts"), "train.steps=6"]]
    mp.spawn(_exit_after, args=(_cli_worker, 2, free_port(), commands, str(tmp_path)), nprocs=2, join=True)
    assert torch.load(tmp_path / "codes0.pt") == torch.load(tmp_path / "codes1.pt") == [0, 0, 0]
    whole, parts = checkpoint_tensors(tmp_path / "whole"), checkpoint_tensors(tmp_path / "parts")
    assert int(whole[1]["model.queue_ptr"]) == 6 * 2 * 8 % 48  # both ranks' keys: 2 x 8 per step
    assert_same_checkpoint(whole, parts)


# ---------------------------------------------------------------------------------------------
# (e) through torchrun itself: a batch-norm D on CPUs is refused, one line, nothing written


def torchrun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    env.pop("NEGAUG_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", str(free_port()), "-m", "negaug", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.slow
def test_torchrun_refuses_a_batch_norm_discriminator_on_cpus_with_one_line_and_no_folder(tmp_path):
    done = torchrun("train", "default", "model.options.spectral_norm=false", "train.device=cpu", "train.steps=2",
                    f"train.runs_dir={tmp_path}", "train.name=bn", cwd=tmp_path)
    errors = [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("negaug: error:")]
    assert len(errors) == 1 and "model.options.spectral_norm=true" in errors[0], done.stderr[-2000:]
    assert "exitcode  : 2" in done.stderr  # torchrun's report: the workers exited with 2
    assert done.returncode != 0 and not (tmp_path / "bn").exists()


@pytest.mark.slow
def test_sigterm_to_torchrun_stops_every_rank_at_one_step_and_the_resumed_run_is_exact(tmp_path):
    common = ["default", *RING, "nda.transform=none", "data.batch_size=8", "train.checkpoint_every=0",
              f"train.runs_dir={tmp_path}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    launcher = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                                 "--master_port", str(free_port()), "-m", "negaug", "train", *common,
                                 "train.steps=1000000", "train.name=stopped"],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "stopped" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.exists() and metrics.stat().st_size > 0) and time.monotonic() < deadline:
        time.sleep(0.2)
    launcher.send_signal(signal.SIGTERM)
    _, err = launcher.communicate(timeout=120)
    stopped = [line for line in err.splitlines() if line.startswith("negaug: stopped at step")]
    assert len(stopped) == 1, err[-3000:]
    step = int(stopped[0].split()[4].rstrip(";"))
    assert ckpt.list_steps(tmp_path / "stopped" / "checkpoints") == [step]
    commands = [["train", *common, f"train.steps={step + 3}", "train.name=whole"],
                ["train", "--resume", str(tmp_path / "stopped"), f"train.steps={step + 3}"]]
    mp.spawn(_exit_after, args=(_cli_worker, 2, free_port(), commands, str(tmp_path)), nprocs=2, join=True)
    assert_same_checkpoint(checkpoint_tensors(tmp_path / "whole"), checkpoint_tensors(tmp_path / "stopped"))


# ---------------------------------------------------------------------------------------------
# (c) one process: bit-identical to the code before data parallelism


@pytest.mark.slow
def test_single_process_checkpoint_is_bit_identical_to_the_code_before_data_parallelism(tmp_path):
    from negaug.experiment import train

    old = source_at(BEFORE_DATA_PARALLEL, tmp_path)  # skips in a shallow clone
    overrides = ["nda.lam=0.25", "data.batch_size=8", "data.options.classes=[0, 1]", "model.options.width=4", "train.steps=6",
                 "optim.num_d_steps=2", "train.progress=false", "train.log_every=2", "train.sample_every=0",
                 "train.checkpoint_every=3", "train.ema_start=2", "train.ema_decay=0.9", "train.device=cpu",
                 f"train.runs_dir={tmp_path}"]
    env = one_process_env(old / "src")
    subprocess.run([sys.executable, "-m", "negaug", "train", "default", *overrides, "train.name=before"],
                   env=env, check=True, capture_output=True)
    # "train+val" is what "train" meant before negaug 0.4.0 held out a validation split
    train(load_config("default", [*overrides, "data.split=train+val", "train.name=now"]))
    assert_same_checkpoint(checkpoint_tensors(tmp_path / "before"), checkpoint_tensors(tmp_path / "now"))
