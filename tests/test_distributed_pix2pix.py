"""Data-parallel Pix2Pix (torchrun, gloo on the CPU, 2 processes), as GAN runs and MoCo-v2 have
it (tests/test_distributed.py): the gradients of 2 ranks over B pairs each equal those of one
process over the 2B pairs, a 2-process `negaug train pix2pix-scenes` stopped and resumed equals an
uninterrupted one (and its checkpoint is refused, one line, by a run of one process, while
`negaug eval` scores it in one), model.norm=batch is refused on CPUs with one line and no folder,
and a single process is bit-identical to the code before data-parallel Pix2Pix existed."""
from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from negaug import distributed
from negaug.experiment.build import sync_batch_norm
from negaug.experiment.translate import translation_step
from negaug.experiment.translate_build import build_translation, data_parallel_networks
from negaug.experiment.translate_config import load_translation_config
from negaug.models import is_batch_dependent
from negaug.models.pix2pix import build_pix2pix
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
BEFORE_DATA_PARALLEL_PIX2PIX = "54dc103efba2622a95a60d10375ad98ff9396b81"  # the last commit without it
# dropout 0: G is then a function of its input alone (its masks would be drawn per rank)
TINY = ["data.options={num_samples: 24}", "model.width=4", "model.dropout=0", "train.device=cpu",
        "train.progress=false", "train.sample_every=0", "train.log_every=1", "train.num_sample_images=2",
        "eval.num_samples=8"]
GLOBAL_PAIRS = 8


# ---------------------------------------------------------------------------------------------
# gradients of one D update and one G update equal those of one process over the global batch


def one_step_gradients(rank: int, world: int, extra: tuple[str, ...] = ()) -> dict[str, list[torch.Tensor]]:
    """D's gradients after the D update and G's after the G update of one `translation_step` on
    this rank's share of a fixed global batch of pairs (negatives: the flipped targets, lam 0.25),
    with lr = 0 so that the G update sees the D the other process count saw too."""
    local = GLOBAL_PAIRS // world
    config = load_translation_config("pix2pix-scenes", [*TINY, f"data.batch_size={local}", *extra])
    recipe, state = build_translation(config)
    recipe = dataclasses.replace(recipe, negative=lambda x, generator=None: x.flip(-1), lam=0.25)
    for optimizer in (state.opt_d, state.opt_g):
        for group in optimizer.param_groups:
            group["lr"] = 0.0
    conditions, targets = recipe.dataset.get_batch(torch.arange(GLOBAL_PAIRS))
    mine = slice(rank * local, (rank + 1) * local)
    state.batches.next = lambda: (conditions[mine], targets[mine])
    translation_step(recipe, state, 1)
    return {"d": [p.grad.clone() for p in state.discriminator.parameters()],
            "g": [p.grad.clone() for p in state.generator.parameters()]}


def _gradients_worker(rank, world, port, out):
    with process_group(rank, world, port):
        torch.save(one_step_gradients(rank, world), Path(out) / f"rank{rank}.pt")


@pytest.mark.slow
def test_gradients_of_two_ranks_equal_one_process_over_the_global_batch(tmp_path):
    spawn(_gradients_worker, str(tmp_path))
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    whole = one_step_gradients(0, 1)
    for phase in ("d", "g"):
        assert len(ranks[0][phase]) == len(whole[phase]) > 0
        for a, b in zip(ranks[0][phase], ranks[1][phase]):
            assert torch.equal(a, b)  # one all-reduced buffer: identical on both ranks
        for got, expected in zip(ranks[0][phase], whole[phase]):
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_the_gradient_test_can_fail_a_local_batch_gives_other_gradients():
    """Without the all-reduce rank 0 would step with its half batch's gradient: far from the global one."""
    whole = one_step_gradients(0, 1)
    local = one_step_gradients(0, 2)  # in one process: rank 0's share, not reduced
    for phase in ("d", "g"):
        assert max((a - b).abs().max().item() for a, b in zip(whole[phase], local[phase])) > 1e-4, phase


# ---------------------------------------------------------------------------------------------
# batch norm: synchronised on GPUs, refused on CPUs; instance norm untouched


def test_batch_norm_is_synchronised_on_gpus_and_refused_on_cpus(monkeypatch):
    monkeypatch.setattr(distributed, "is_distributed", lambda: True)  # as under torchrun
    generator, discriminator = build_pix2pix(32, 3, 3, width=4, norm="batch")
    params = [*generator.parameters(), *discriminator.parameters()]
    with pytest.raises(ValueError, match="model.norm=batch couples the samples.*set model.norm=instance"):
        data_parallel_networks(generator, discriminator, torch.device("cpu"))
    g, d = data_parallel_networks(generator, discriminator, torch.device("cuda"))  # converts; runs nothing
    for network in (g, d):
        assert any(isinstance(m, torch.nn.SyncBatchNorm) for m in network.modules())
        assert not any(type(m) is torch.nn.BatchNorm2d for m in network.modules())
        assert is_batch_dependent(network)
    assert [*g.parameters(), *d.parameters()] == params  # the same parameters (the optimizers' and the seed's)
    per_sample = build_pix2pix(32, 3, 3, width=4, norm="instance")
    assert data_parallel_networks(*per_sample, torch.device("cpu")) == per_sample  # nothing to synchronise
    assert sync_batch_norm(per_sample[1], torch.device("cpu"), "unused") is per_sample[1]


# ---------------------------------------------------------------------------------------------
# a 2-process `negaug train pix2pix-scenes` stopped at step 3 and resumed equals an uninterrupted one


@pytest.mark.slow
def test_two_process_pix2pix_stopped_and_resumed_equals_an_uninterrupted_one(tmp_path, capsys):
    from negaug.cli import main
    from negaug.experiment.translate import load_translation_run

    common = ["pix2pix-scenes", *TINY, "model.dropout=0.5", "nda.transform=jigsaw", "data.batch_size=4",
              "train.checkpoint_every=3", f"train.runs_dir={tmp_path}"]
    commands = [["train", *common, "train.steps=6", "train.name=whole"],
                ["train", *common, "train.steps=3", "train.name=parts"],
                ["train", "--resume", str(tmp_path / "parts"), "train.steps=6"],
                ["train", *common, "model.norm=batch", "train.steps=2", "train.name=bn"]]
    mp.spawn(_exit_after, args=(_cli_worker, 2, free_port(), commands, str(tmp_path)), nprocs=2, join=True)
    assert torch.load(tmp_path / "codes0.pt") == torch.load(tmp_path / "codes1.pt") == [0, 0, 0, 2]
    assert not (tmp_path / "bn").exists()  # batch norm on CPUs: refused before any file
    whole, parts = checkpoint_tensors(tmp_path / "whole"), checkpoint_tensors(tmp_path / "parts")
    assert {"distributed.rng.0.nda", "distributed.rng.1.nda", "distributed.rng.1.torch"} <= whole[1].keys()
    assert not torch.equal(whole[1]["distributed.rng.0.nda"], whole[1]["distributed.rng.1.nda"])
    assert torch.equal(whole[1]["distributed.rng.0.nda"], whole[1]["rng.nda"])  # rank 0's are the run's
    assert_same_checkpoint(whole, parts)
    capsys.readouterr()
    assert main(["train", "--resume", str(tmp_path / "whole"), "train.steps=8"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "written by 2 processes and this run has 1" in err[-1], err
    loaded = load_translation_run(tmp_path / "whole")  # scoring needs the weights only: one process loads it
    assert loaded.step == 6
    for key, value in loaded.generator.state_dict().items():
        assert torch.equal(value, whole[1][f"generator.{key}"]), key
    assert main(["eval", str(tmp_path / "whole"), "--device", "cpu"]) == 0


# ---------------------------------------------------------------------------------------------
# one process: bit-identical to the code before data-parallel Pix2Pix


@pytest.mark.slow
def test_single_process_checkpoint_is_bit_identical_to_the_code_before(tmp_path):
    from negaug.experiment.translate import train_translation

    old = source_at(BEFORE_DATA_PARALLEL_PIX2PIX, tmp_path)  # skips in a shallow clone
    overrides = [*TINY, "model.dropout=0.5", "nda.transform=jigsaw", "data.batch_size=4", "train.steps=4",
                 "train.checkpoint_every=2", f"train.runs_dir={tmp_path}"]
    env = one_process_env(old / "src")
    subprocess.run([sys.executable, "-m", "negaug", "train", "pix2pix-scenes", *overrides, "train.name=before"],
                   env=env, check=True, capture_output=True)
    train_translation(load_translation_config("pix2pix-scenes", [*overrides, "train.name=now"]))
    assert_same_checkpoint(checkpoint_tensors(tmp_path / "before"), checkpoint_tensors(tmp_path / "now"))
