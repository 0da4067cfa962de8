"""negaug.distributed in a single process: every collective is the identity, the shard rule covers
0..n-1 exactly once (checked for several world sizes by patching rank/world)."""
import pytest
import torch

from negaug import distributed


def test_single_process_collectives_are_the_identity():
    assert not distributed.is_distributed() and distributed.rank() == 0 and distributed.world_size() == 1
    p = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    p.grad = torch.tensor([0.5, -1.0])
    distributed.all_reduce_gradients([p])
    assert torch.equal(p.grad, torch.tensor([0.5, -1.0]))
    x = torch.arange(6.0).view(3, 2)
    assert distributed.all_gather_cat(x) is x
    assert distributed.shard(7) == (0, 7)


@pytest.mark.parametrize("count,world", [(7, 2), (8, 2), (5, 3), (2, 4), (0, 2)])
def test_shards_cover_every_index_once_in_rank_order(monkeypatch, count, world):
    monkeypatch.setattr(distributed, "world_size", lambda: world)
    pieces = []
    for r in range(world):
        monkeypatch.setattr(distributed, "rank", lambda r=r: r)
        start, stop = distributed.shard(count)
        pieces += list(range(start, stop))
    assert pieces == list(range(count))


def test_shards_differ_by_at_most_one(monkeypatch):
    monkeypatch.setattr(distributed, "world_size", lambda: 3)
    sizes = []
    for r in range(3):
        monkeypatch.setattr(distributed, "rank", lambda r=r: r)
        start, stop = distributed.shard(10)
        sizes.append(stop - start)
    assert sizes == [4, 3, 3]


@pytest.mark.parametrize("env, expected", [
    ({}, "negaug train"),
    ({"WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2"}, "torchrun --nproc_per_node 2 -m negaug train"),
    ({"WORLD_SIZE": "8", "LOCAL_WORLD_SIZE": "4"}, "torchrun --nproc_per_node 4 --nnodes 2 -m negaug train"),
])
def test_resume_hints_name_the_launcher_of_the_run_regression_refused_hint(monkeypatch, env, expected):
    """Regression (red team): a torchrun run said 'Continue with: negaug train --resume RUN', which
    refuses a checkpoint of 2 processes."""
    from negaug.cli.train import launcher

    for key in ("WORLD_SIZE", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert launcher("negaug train") == expected
