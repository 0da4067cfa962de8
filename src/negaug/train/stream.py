"""An endless, resumable stream of shuffled training batches.

Epoch `e` is shuffled by a generator seeded with (seed, e), so the stream's whole state is two
integers (epoch, position) that a checkpoint stores; a resumed run sees exactly the batches an
uninterrupted run would. The last incomplete batch of an epoch is dropped.
"""
from __future__ import annotations

import torch


class BatchStream:
    def __init__(self, dataset, batch_size: int, seed: int, device: torch.device, num_workers: int = 0):
        if len(dataset) < batch_size:
            raise ValueError(
                f"data.batch_size={batch_size} is larger than the dataset ({len(dataset)} samples); lower it"
            )
        self.dataset, self.batch_size, self.seed = dataset, batch_size, seed
        self.device, self.num_workers = device, num_workers
        self.epoch, self.position = 0, 0
        self._order = self._permutation(0)
        self._fast = hasattr(dataset, "get_batch")

    def _permutation(self, epoch: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(len(self.dataset), generator=gen)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(images (B, ...) on the device, labels (B,) int64)."""
        if self.position + self.batch_size > len(self.dataset):
            self.epoch, self.position = self.epoch + 1, 0
            self._order = self._permutation(self.epoch)
        index = self._order[self.position:self.position + self.batch_size]
        self.position += self.batch_size
        if self._fast:
            x, y = self.dataset.get_batch(index)
        else:  # datasets read from disk: one item at a time, as a DataLoader would
            items = [self.dataset[int(i)] for i in index]
            x = torch.stack([torch.as_tensor(item[0]) for item in items])
            y = torch.as_tensor([int(item[1]) for item in items])
        return x.to(self.device, non_blocking=True), y.to(self.device, dtype=torch.long)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._order = self._permutation(self.epoch)
