"""Data-parallel DPC runs (torchrun, gloo on the CPU, 2 processes; issue 24): DPC's negatives are
every rank's targets and NDA targets, gathered with gradient, so the gradients averaged over ranks
equal those of one process over the global batch; a 2-process run stopped and resumed equals an
uninterrupted one and loads (and is probed) in one process; one process is bit-identical to the
code before DPC had data parallelism. Workers: module-level functions started by
torch.multiprocessing.spawn, leaving with os._exit (`test_distributed._exit_after`)."""
from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
import torch
import torch.multiprocessing as mp

from negaug import distributed, video
from negaug.experiment import dpc as dpc_kind
from negaug.experiment.dpc_config import load_dpc_config
from test_distributed import (
    _cli_worker,
    _exit_after,
    assert_same_checkpoint,
    checkpoint_tensors,
    free_port,
    one_process_env,
    process_group,
    source_at,
    spawn,
)

ROOT = Path(__file__).resolve().parents[1]
BEFORE_DPC_DATA_PARALLEL = "54dc103efba2622a95a60d10375ad98ff9396b81"  # the last commit where DPC refused torchrun
TINY = ["data.options={num_clips: 32, num_frames: 8, image_size: 16}", "model.widths=[4, 8]", "model.feature_dim=16",
        "train.progress=false", "train.device=cpu", "nda.transform=jigsaw"]
GLOBAL_BATCH = 8


def flip_negatives(clips: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """A per-clip NDA stand-in without random draws: each rank's NDA clips are then exactly the
    matching rows of one process's NDA clips of the global batch."""
    return clips.flip(-1)


def one_step_gradients(rank: int, world: int, across_ranks: bool = True) -> list[torch.Tensor]:
    """The model's gradients after one `dpc_step` on this rank's share of the first global batch
    (lr = 0; NDA = horizontally flipped clips); `across_ranks=False`: each rank's negatives are its
    local batch only (what the gathering avoids)."""
    config = load_dpc_config("dpc-moving-mnist", [*TINY, f"data.batch_size={GLOBAL_BATCH // world}"])
    recipe, state = dpc_kind.build_dpc(config)
    recipe = dataclasses.replace(recipe, negative=flip_negatives)
    for group in state.optimizer.param_groups:
        group["lr"] = 0.0

    def loss(*args, **kwargs):
        return video.dpc_nda_loss(*args, **{**kwargs, "across_ranks": across_ranks})

    with mock.patch.object(dpc_kind, "dpc_nda_loss", loss):
        dpc_kind.dpc_step(config, recipe, state, 1)
    return [p.grad.clone() for p in state.model.parameters()]


def _gradients_worker(rank, world, port, out):
    with process_group(rank, world, port):
        torch.save({"across": one_step_gradients(rank, world), "local": one_step_gradients(rank, world, False)},
                   Path(out) / f"rank{rank}.pt")


@pytest.mark.slow
def test_gradients_of_two_ranks_equal_one_process_over_the_global_batch_and_local_negatives_do_not(tmp_path):
    spawn(_gradients_worker, str(tmp_path))
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    whole = one_step_gradients(0, 1)
    for a, b in zip(ranks[0]["across"], ranks[1]["across"]):
        assert torch.equal(a, b)  # one all-reduced buffer: identical on both ranks
    for got, expected in zip(ranks[0]["across"], whole):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)
    # the test can fail: with each rank's own batch as its only negatives the gradient is another
    gap = max(((a - b).abs().max() / b.abs().max()).item() for a, b in zip(ranks[0]["local"], whole))
    assert gap > 1e-2, gap


def test_gathering_with_gradient_is_the_identity_in_one_process():
    x = torch.randn(3, 2, requires_grad=True)
    assert distributed.all_gather_with_grad(x) is x


def _gather_worker(rank, world, port, out):
    with process_group(rank, world, port):
        x = torch.tensor([rank + 1.0], requires_grad=True)  # rank 0 holds 1, rank 1 holds 2
        gathered = distributed.all_gather_with_grad(x)
        weights = torch.tensor([[1.0, 10.0], [100.0, 1000.0]])[rank]  # each rank's loss weighs both rows
        (weights * gathered).sum().backward()
        torch.save({"gathered": gathered.detach(), "grad": x.grad}, Path(out) / f"rank{rank}.pt")


@pytest.mark.slow
def test_gathering_with_gradient_sends_each_rank_the_sum_of_every_ranks_gradient_of_its_rows(tmp_path):
    spawn(_gather_worker, str(tmp_path))
    a, b = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    assert a["gathered"].tolist() == b["gathered"].tolist() == [1.0, 2.0]  # rank order
    assert a["grad"].tolist() == [1.0 + 100.0] and b["grad"].tolist() == [10.0 + 1000.0]  # by hand


# ---------------------------------------------------------------------------------------------
# a 2-process `negaug pretrain dpc-moving-mnist` stopped at step 3 and resumed equals an uninterrupted one


@pytest.mark.slow
def test_two_process_dpc_run_stopped_and_resumed_equals_an_uninterrupted_one(tmp_path, capsys):
    from negaug.cli import main
    from negaug.experiment import load_dpc_run

    common = ["dpc-moving-mnist", *TINY, "data.batch_size=4", "train.log_every=2", "train.checkpoint_every=3",
              f"train.runs_dir={tmp_path}"]
    commands = [["pretrain", *common, "train.steps=6", "train.name=whole"],
                ["pretrain", *common, "train.steps=3", "train.name=parts"],
                ["pretrain", "--resume", str(tmp_path / "parts"), "train.steps=6"]]
    mp.spawn(_exit_after, args=(_cli_worker, 2, free_port(), commands, str(tmp_path)), nprocs=2, join=True)
    assert torch.load(tmp_path / "codes0.pt") == torch.load(tmp_path / "codes1.pt") == [0, 0, 0]
    whole, parts = checkpoint_tensors(tmp_path / "whole"), checkpoint_tensors(tmp_path / "parts")
    assert {"distributed.rng.0.nda", "distributed.rng.1.nda"} <= whole[1].keys()  # each rank its own NDA stream
    assert not torch.equal(whole[1]["distributed.rng.0.nda"], whole[1]["distributed.rng.1.nda"])
    assert_same_checkpoint(whole, parts)
    assert "2 process(es)" in (tmp_path / "whole" / "report.md").read_text()
    # resumed in one process: refused, one line; loaded in one process: the weights of the checkpoint
    assert main(["pretrain", "--resume", str(tmp_path / "whole"), "train.steps=8"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "written by 2 processes and this run has 1" in err[-1], err
    loaded = load_dpc_run(tmp_path / "whole")
    assert loaded.step == 6
    for key, value in loaded.model.state_dict().items():
        assert torch.equal(value, whole[1][f"model.{key}"]), key


# ---------------------------------------------------------------------------------------------
# one process: bit-identical to the code before DPC had data parallelism


@pytest.mark.slow
def test_single_process_dpc_checkpoint_is_bit_identical_to_the_code_before_its_data_parallelism(tmp_path):
    old = source_at(BEFORE_DPC_DATA_PARALLEL, tmp_path)  # skips in a shallow clone
    overrides = [*TINY, "data.batch_size=8", "train.steps=6", "train.log_every=2", "train.checkpoint_every=3",
                 f"train.runs_dir={tmp_path}"]
    env = one_process_env()
    for src, name in ((old / "src", "before"), (ROOT / "src", "now")):
        subprocess.run([sys.executable, "-m", "negaug", "pretrain", "dpc-moving-mnist", *overrides, f"train.name={name}"],
                       env={**env, "PYTHONPATH": str(src)}, check=True, capture_output=True)
    assert_same_checkpoint(checkpoint_tensors(tmp_path / "before"), checkpoint_tensors(tmp_path / "now"))
    assert (tmp_path / "before" / "metrics.jsonl").read_text().count("\n") == 3  # steps 2, 4, 6
