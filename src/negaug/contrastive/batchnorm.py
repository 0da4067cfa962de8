"""Batch norm for contrastive encoders in one process: split batch norm (a single-process
Shuffle-BN) and a guard that keeps running statistics untouched.

Why: MoCo's positive key is encoded in the same batch-norm batch as every other current key, so
the batch statistics can leak which keys come from the current batch; the model then "cheats"
(He et al. 2020, Section 3.3). MoCo's Shuffle-BN computes BN per GPU and shuffles the keys
across GPUs, so a query and its key are normalised with statistics of different sub-batches.
Here, as in MoCo's single-GPU CIFAR demo ("SplitBatchNorm"), each BN layer of both encoders
splits its batch into `num_splits` sub-batches, the images b with b % num_splits == s forming
sub-batch s, normalised with their own statistics; MoCo shuffles the keys before the key encoder
and unshuffles after, so query i and key i sit in sub-batches of different composition. Running
statistics are updated with the mean of the sub-batches' statistics. In eval mode it is plain BN.
A batch that num_splits does not divide is split all the same (sub-batches differ by one image).

`frozen_batch_norm_stats(module)`: inside it, every BN layer of `module` in train mode still
normalises with batch statistics but updates no running statistic (nor `num_batches_tracked`):
MoCo encodes the NDA views with the key encoder this way, so that they never change the key
encoder's statistics.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from negaug.registry import check_int

MAX_SPLITS = 1024


class SplitBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d that, in train mode, normalises `num_splits` sub-batches separately (module
    docstring). `forward(x (B, C, H, W)) -> (B, C, H, W)`; B >= 2 * num_splits."""

    def __init__(self, num_features: int, num_splits: int = 1, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True):
        super().__init__(num_features, eps, momentum, affine, track_running_stats)
        self.num_splits = check_int("num_splits", num_splits, 1, MAX_SPLITS)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, num_splits={self.num_splits}"

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.num_splits == 1:
            return super().forward(x)
        splits, batch = self.num_splits, x.shape[0]
        if batch < 2 * splits:
            raise ValueError(f"split batch norm needs at least 2 images per sub-batch: a batch of {batch} "
                             f"in {splits} sub-batches; use a larger batch or fewer num_splits")
        update = self.track_running_stats
        if update:
            self.num_batches_tracked.add_(1)
        if batch % splits == 0:
            return self._folded(x, update)
        return self._looped(x, update)

    def _factor(self) -> float:
        """The running-statistics update factor, as nn.BatchNorm2d computes it."""
        if self.momentum is None:  # cumulative moving average
            return 1.0 / float(self.num_batches_tracked)
        return self.momentum

    def _folded(self, x: Tensor, update: bool) -> Tensor:
        """One batch_norm call: image r * S + s lands in row r, channel block s, so each block of
        channels is one sub-batch (MoCo's demo)."""
        splits, (batch, channels) = self.num_splits, x.shape[:2]
        folded = x.reshape(batch // splits, splits * channels, *x.shape[2:])
        mean = self.running_mean.repeat(splits) if update else None
        var = self.running_var.repeat(splits) if update else None
        weight = self.weight.repeat(splits) if self.affine else None
        bias = self.bias.repeat(splits) if self.affine else None
        out = F.batch_norm(folded, mean, var, weight, bias, True, self._factor(), self.eps)
        if update:
            self.running_mean.copy_(mean.view(splits, channels).mean(0))
            self.running_var.copy_(var.view(splits, channels).mean(0))
        return out.view(x.shape)

    def _looped(self, x: Tensor, update: bool) -> Tensor:
        """Sub-batch s = x[s::S] normalised on its own (sizes differ by at most one)."""
        out = torch.empty_like(x)
        means, variances = [], []
        for s in range(self.num_splits):
            mean = self.running_mean.clone() if update else None
            var = self.running_var.clone() if update else None
            out[s::self.num_splits] = F.batch_norm(x[s::self.num_splits], mean, var, self.weight, self.bias, True,
                                                   self._factor(), self.eps)
            means.append(mean)
            variances.append(var)
        if update:
            self.running_mean.copy_(torch.stack(means).mean(0))
            self.running_var.copy_(torch.stack(variances).mean(0))
        return out


def convert_split_batch_norm(module: nn.Module, num_splits: int) -> nn.Module:
    """`module` with every nn.BatchNorm2d replaced by a SplitBatchNorm2d holding the same
    parameters and buffers (in place where possible, like SyncBatchNorm.convert_sync_batchnorm;
    returns the module, or the replacement when `module` itself is a BatchNorm2d). Other norms,
    BatchNorm1d included, are left as they are."""
    num_splits = check_int("num_splits", num_splits, 1, MAX_SPLITS)
    if type(module) is nn.BatchNorm2d:
        split = SplitBatchNorm2d(module.num_features, num_splits, module.eps, module.momentum, module.affine,
                                 module.track_running_stats)
        floats = [t for t in [*module.parameters(), *module.buffers()] if t.is_floating_point()]
        if floats:
            split.to(floats[0].device, floats[0].dtype)
        split.load_state_dict(module.state_dict())
        split.train(module.training)
        return split
    if isinstance(module, SplitBatchNorm2d):
        module.num_splits = num_splits
        return module
    for name, child in module.named_children():
        setattr(module, name, convert_split_batch_norm(child, num_splits))
    return module


@contextlib.contextmanager
def frozen_batch_norm_stats(module: nn.Module) -> Iterator[None]:
    """Inside: BN layers of `module` use batch statistics in train mode but update no running
    statistic (module docstring); restored on exit, also after an exception."""
    norms = [m for m in module.modules() if isinstance(m, _BatchNorm)]
    tracked = [m.track_running_stats for m in norms]
    try:
        for norm in norms:
            norm.track_running_stats = False
        yield
    finally:
        for norm, flag in zip(norms, tracked):
            norm.track_running_stats = flag
