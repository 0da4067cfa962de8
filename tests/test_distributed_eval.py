"""Sharded evaluation: under 2 gloo processes, generated samples, FID/KID/IS/precision-recall in the
offline classifier space and anomaly scores equal those of one process (rtol 1e-6); only rank 0
trains and writes the cached classifier. Plus the batch-shard rule, checked by patching rank/world."""
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from negaug import data, distributed, models
from negaug.anomaly import score
from negaug.metrics import classifier, evaluate_generator, generate_samples
from negaug.metrics import features as feats

METRICS = ["fid", "kid", "is", "pr"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tiny_models() -> tuple[torch.nn.Module, torch.nn.Module]:
    """An 8 px DCGAN; D with minibatch discrimination, so its scores depend on the batch."""
    torch.manual_seed(0)
    return models.build("dcgan", 8, 1, num_classes=0, latent_dim=16, width=8, minibatch_discrimination=4)


def _evaluate_everything(cache_dir: str) -> dict:
    """Every sharded computation, on 301 samples in batches of 64 (5 batches: 3 + 2 on two ranks)."""
    G, D = _tiny_models()
    train, test = data.build("digits"), data.build("digits", split="test")
    options = {"feature_extractor": "classifier", "train_data": train, "cache_dir": cache_dir, "batch_size": 64,
               "classifier_epochs": 1, "kid_subsets": 5, "kid_subset_size": 100}
    results = evaluate_generator(G, test, METRICS, num_samples=301, seed=3, **options)
    extractor = feats.build("classifier", data=train, data_name="digits", cache_dir=cache_dir, epochs=1)
    images = test.images[:301]
    return {"samples": generate_samples(G, 301, seed=3, batch_size=64)[0],
            "features": feats.extract_features(extractor, test, batch_size=64),
            "values": {key: [r["value"], r.get("std"), r.get("precision"), r.get("recall")]
                       for key, r in results.items()},
            "scores": score(D, images, batch_size=64)}


def _worker(rank: int, world: int, port: int, folder: str) -> None:
    import os
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    assert distributed.init_from_env("cpu")
    if rank != 0:  # the rule under test: only rank 0 writes the classifier cache
        def refuse(*args, **kwargs):
            raise AssertionError("a rank other than 0 wrote the classifier cache")
        classifier._save = refuse
    found = _evaluate_everything(f"{folder}/cache")
    dist.destroy_process_group()
    if rank == 0:  # the same process, now alone: the single-process reference (same threads, same cache)
        assert not distributed.is_distributed()
        torch.save({"alone": _evaluate_everything(f"{folder}/cache")}, f"{folder}/alone.pt")
    torch.save(found, f"{folder}/rank{rank}.pt")


@pytest.mark.slow
def test_two_processes_evaluate_as_one(tmp_path):
    from test_distributed import _exit_after  # leaves each process at once (a gloo teardown abort otherwise)

    mp.spawn(_exit_after, args=(_worker, 2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    alone = torch.load(tmp_path / "alone.pt")["alone"]
    assert len(alone["values"]) == 4 and all(v[0] == v[0] for v in alone["values"].values())  # 4 metrics, no NaN
    for rank in (0, 1):
        found = torch.load(tmp_path / f"rank{rank}.pt")
        torch.testing.assert_close(found["samples"], alone["samples"], rtol=1e-6, atol=1e-7)
        for mine, single in zip(found["features"], alone["features"]):
            torch.testing.assert_close(mine, single, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(found["scores"], alone["scores"], rtol=1e-6, atol=1e-6)
        assert found["values"].keys() == alone["values"].keys()
        for key, values in alone["values"].items():
            for mine, single in zip(found["values"][key], values):
                assert (mine is None) == (single is None), key
                if single is not None:
                    assert mine == pytest.approx(single, rel=1e-6, abs=1e-9), key
    assert len(list((tmp_path / "cache" / "classifiers").glob("*.safetensors"))) == 1


@pytest.mark.parametrize("count,batch_size,world", [(301, 64, 2), (320, 64, 2), (10, 3, 3), (100, 7, 4)])
def test_batch_shards_are_whole_batches_covering_every_row_once(monkeypatch, count, batch_size, world):
    monkeypatch.setattr(distributed, "is_distributed", lambda: True)
    monkeypatch.setattr(distributed, "world_size", lambda: world)
    rows, sizes = [], []
    for r in range(world):
        monkeypatch.setattr(distributed, "rank", lambda r=r: r)
        start, stop = distributed.batch_shard(count, batch_size)
        assert start % batch_size == 0 and (stop % batch_size == 0 or stop == count)
        rows += list(range(start, stop))
        sizes.append(-(-(stop - start) // batch_size))
    assert rows == list(range(count))
    assert max(sizes) - min(sizes) <= 1


def test_batch_shard_is_off_in_one_process_and_with_fewer_batches_than_ranks(monkeypatch):
    assert distributed.batch_shard(1000, 10) is None  # one process: callers take every row, gather nothing
    monkeypatch.setattr(distributed, "is_distributed", lambda: True)
    monkeypatch.setattr(distributed, "world_size", lambda: 4)
    assert distributed.batch_shard(30, 10) is None  # 3 batches for 4 ranks: each rank computes all
    assert distributed.batch_shard(0, 10) is None
