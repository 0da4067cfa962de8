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
