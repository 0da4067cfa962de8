"""An endless, resumable stream of shuffled training batches.

Epoch `e` is shuffled by a generator seeded with (seed, e), so the stream's whole state is two
integers (epoch, position) that a checkpoint stores; a resumed run sees exactly the batches an
uninterrupted run would. The last incomplete batch of an epoch is dropped.

Data parallel (`torchrun`, `world` processes): the epoch's permutation is the same on every rank;
a global batch is `world * batch_size` consecutive indices of it and rank `r` takes the `r`-th
`batch_size` of them, so the ranks read disjoint samples, (epoch, position) is the same on every
rank, and a run resumes exactly. With `world = 1` this is the single-process stream.

In-memory datasets are batched by indexing (`get_batch`). Datasets decoded from disk per item
(`LazyImageDataset`) are read by a DataLoader with `num_workers` processes that follows the same
index sequence, so workers change the speed, never the batches.
"""
from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader


class BatchStream:
    def __init__(self, dataset, batch_size: int, seed: int, device: torch.device, num_workers: int = 0,
                 rank: int = 0, world: int = 1):
        if len(dataset) < batch_size * world:
            processes = f" x {world} processes" if world > 1 else ""
            raise ValueError(
                f"data.batch_size={batch_size}{processes} is larger than the dataset ({len(dataset)} samples); lower it"
            )
        self.dataset, self.batch_size, self.seed = dataset, batch_size, seed
        self.stride, self.offset = batch_size * world, batch_size * rank  # one global batch; this rank's share
        self.device, self.num_workers = device, num_workers
        self.epoch, self.position = 0, 0
        self._loader: Iterator | None = None  # worker-backed iterator, built lazily from the state

    def _permutation(self, epoch: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(len(self.dataset), generator=gen)

    def _indices_from(self, epoch: int, position: int) -> Iterator[list[int]]:
        """Index batches from (epoch, position) on, forever."""
        while True:
            order = self._permutation(epoch)
            while position + self.stride <= len(order):
                start = position + self.offset
                yield order[start:start + self.batch_size].tolist()
                position += self.stride
            epoch, position = epoch + 1, 0

    def _advance(self) -> list[int]:
        """The next index batch; moves the (epoch, position) state past it."""
        if self.position + self.stride > len(self.dataset):
            self.epoch, self.position = self.epoch + 1, 0
        if getattr(self, "_order_epoch", None) != self.epoch:
            self._order, self._order_epoch = self._permutation(self.epoch), self.epoch
        start = self.position + self.offset
        index = self._order[start:start + self.batch_size]
        self.position += self.stride
        return index

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(images (B, ...) on the device, labels (B,) int64)."""
        if self.num_workers > 0 and not hasattr(self.dataset, "images"):
            if self._loader is None:
                self._loader = iter(DataLoader(self.dataset, batch_sampler=self._indices_from(self.epoch, self.position),
                                               num_workers=self.num_workers, pin_memory=self.device.type == "cuda",
                                               persistent_workers=True))
            self._advance()  # keep the state in step with the loader
            x, y = next(self._loader)
        else:
            x, y = self.dataset.get_batch(self._advance())
        return x.to(self.device, non_blocking=True), y.to(self.device, dtype=torch.long)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self.close()

    def close(self) -> None:
        """Stop the worker processes now (data.num_workers > 0). Left to the garbage collector,
        each worker took its 5 s status-check interval to notice, 10 s at the end of a run with 2
        workers; the next `next()` starts new ones where the stream stands."""
        loader, self._loader = self._loader, None
        shutdown = getattr(loader, "_shutdown_workers", None)  # torch's DataLoader iterator
        if shutdown is not None:
            shutdown()
