"""The resumable batch stream: same batches with and without workers, exact continuation."""
import numpy as np
import torch
from PIL import Image

from negaug import data
from negaug.experiment.stream import BatchStream


def _folder_dataset(tmp_path, count=10):
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    return data.build("image_folder", root=str(tmp_path), image_size=8)


def _take(stream, n):
    return [stream.next() for _ in range(n)]


def test_epochs_are_permutations_and_drop_the_last_partial_batch():
    dataset = data.TensorImageDataset(torch.arange(10.0).view(10, 1, 1, 1) / 10, torch.arange(10))
    stream = BatchStream(dataset, 4, seed=0, device=torch.device("cpu"))
    labels = [y for _, y in _take(stream, 4)]
    assert sorted(torch.cat(labels[:2]).tolist()) != list(range(10))  # 8 of 10 per epoch
    assert len(set(torch.cat(labels[:2]).tolist())) == 8 and len(set(torch.cat(labels[2:]).tolist())) == 8
    assert stream.state_dict() == {"epoch": 1, "position": 8}


def test_resume_and_workers_give_the_same_batches(tmp_path):
    dataset = _folder_dataset(tmp_path)
    whole = _take(BatchStream(dataset, 3, 5, torch.device("cpu")), 7)
    first = BatchStream(dataset, 3, 5, torch.device("cpu"), num_workers=2)
    part = _take(first, 4)
    resumed = BatchStream(dataset, 3, 5, torch.device("cpu"), num_workers=1)
    resumed.load_state_dict(first.state_dict())
    part += _take(resumed, 3)
    for (x_a, y_a), (x_b, y_b) in zip(whole, part):
        assert torch.equal(x_a, x_b) and torch.equal(y_a, y_b)
    first.close()
    resumed.close()


def test_close_stops_the_workers_now_and_the_stream_goes_on_regression_10_s_stall(tmp_path):
    """Regression: left to the garbage collector, a stream's worker processes took their 5 s
    status-check interval each to stop (10 s at the end of a run with 2 workers)."""
    dataset = _folder_dataset(tmp_path)
    whole = _take(BatchStream(dataset, 3, 5, torch.device("cpu")), 4)
    stream = BatchStream(dataset, 3, 5, torch.device("cpu"), num_workers=2)
    part = _take(stream, 2)
    workers = list(stream._loader._workers)
    assert workers and all(w.is_alive() for w in workers)
    stream.close()
    assert stream._loader is None and not any(w.is_alive() for w in workers)
    part += _take(stream, 2)  # new workers, from where the stream stood
    stream.close()
    for (x_a, y_a), (x_b, y_b) in zip(whole, part):
        assert torch.equal(x_a, x_b) and torch.equal(y_a, y_b)
