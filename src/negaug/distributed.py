"""Data parallelism on PyTorch's own engine (`torchrun`): the few collective operations negaug
needs, as plain functions over `torch.distributed`. Every function is a no-op (or the identity)
in a single process, so library code calls them unconditionally and a run without `torchrun`
computes exactly what it computed before.

    if distributed.init_from_env("cpu"):      # torchrun set WORLD_SIZE > 1: gloo on CPUs, NCCL on GPUs
        ...
    loss.backward()
    distributed.all_reduce_gradients(D.parameters())    # the mean gradient over ranks, one flat buffer
    features = distributed.all_gather_cat(local_features)   # (sum of local B, ...) in rank order

Why an explicit all-reduce and not DistributedDataParallel: a GAN step backpropagates through D
several times per update (the D loss, gradient penalties with double backward, the G step through
a frozen D), which DDP's hooks mishandle (pytorch issues 47562 and 63812). Averaging the
flattened gradients once after each phase's backward is exact and simple.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor


def is_distributed() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's global rank (0 in a single process)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """The number of processes (1 in a single process)."""
    return dist.get_world_size() if is_distributed() else 1


def local_rank() -> int:
    """This process's rank on its node (`LOCAL_RANK`, set by torchrun; 0 otherwise)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def launched_by_torchrun() -> bool:
    """Whether the environment asks for more than one process (torchrun's WORLD_SIZE > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(device_type: str) -> bool:
    """Join the process group torchrun describes (`env://`: MASTER_ADDR, MASTER_PORT, RANK,
    WORLD_SIZE) with NCCL for ``device_type == "cuda"`` and gloo otherwise; returns whether the
    run is distributed. Without torchrun (WORLD_SIZE unset or 1) nothing happens."""
    if not launched_by_torchrun():
        return False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo", init_method="env://")
    return is_distributed()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_reduce_gradients(parameters: Iterable[torch.nn.Parameter]) -> None:
    """Replace each parameter's ``.grad`` by its mean over ranks, in one flat all-reduce per
    dtype and device. A parameter without a gradient on this rank counts as a zero gradient (and
    gets one when another rank has one), so every rank steps the same parameters; a parameter
    without a gradient on every rank keeps none (an optimizer skips it, as in one process)."""
    if not is_distributed():
        return
    params = [p for p in parameters if p.requires_grad]
    groups: dict[tuple[torch.dtype, torch.device], list[torch.nn.Parameter]] = {}
    for p in params:
        groups.setdefault((p.dtype, p.device), []).append(p)
    scale = 1.0 / dist.get_world_size()
    for group in groups.values():
        present = torch.tensor([float(p.grad is not None) for p in group], dtype=group[0].dtype, device=group[0].device)
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in group] + [present])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat[:-len(group)].mul_(scale)
        offset = 0
        for p, count in zip(group, flat[-len(group):].tolist()):
            n = p.numel()
            p.grad = flat[offset:offset + n].view_as(p).clone() if count > 0 else None
            offset += n


def average_batch_norm_stats(module: torch.nn.Module) -> None:
    """Replace the running mean and variance of every batch-norm layer of ``module`` by their
    mean over ranks (one flat all-reduce), so that a network trained on per-rank batches keeps
    identical buffers on every rank (and an EMA that copies them stays identical too)."""
    if not is_distributed():
        return
    stats = [t for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
             for t in (m.running_mean, m.running_var) if t is not None]
    if not stats:
        return
    flat = torch.cat([t.reshape(-1).float() for t in stats])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat.div_(dist.get_world_size())
    offset = 0
    with torch.no_grad():
        for t in stats:
            t.copy_(flat[offset:offset + t.numel()].view_as(t))
            offset += t.numel()


def any_true(flag: bool) -> bool:
    """Whether ``flag`` holds on any rank; every rank gets the same answer (a stop request, a
    non-finite loss), so that all ranks take the same branch. ``bool(flag)`` in one process."""
    if not is_distributed():
        return bool(flag)
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    value = torch.tensor([1 if flag else 0], dtype=torch.int32, device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's picklable ``obj`` in rank order (``[obj]`` in one process)."""
    if not is_distributed():
        return [obj]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s picklable ``obj`` on every rank (``obj`` in one process; the other ranks'
    ``obj`` is ignored). NCCL needs ``torch.cuda.set_device`` to have been called. Only for
    objects negaug's own processes made (it unpickles what rank ``src`` sends)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def on_rank_zero(fn: Callable[[], Any], errors: tuple[type[BaseException], ...] = (ValueError, OSError)) -> Any:
    """``fn()`` on rank 0 alone (its result there, None elsewhere); an error of one of the types
    ``errors`` raised there is raised on every rank too (same type, same message), so that no rank
    waits for a rank that stopped. Plain ``fn()`` in one process."""
    if not is_distributed():
        return fn()
    result, failure = None, None
    if rank() == 0:
        try:
            result = fn()
        except errors as err:
            failure = err
    message = broadcast_object(None if failure is None else (type(failure), str(failure)))
    if failure is not None:
        raise failure
    if message is not None:
        kind, text = message
        try:
            error = kind(text)
        except TypeError:  # an error type whose constructor takes other arguments
            error = ValueError(text)
        raise error
    return result


def broadcast_module(module: torch.nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers into every rank's ``module`` (in place)."""
    if not is_distributed():
        return
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=src)


def all_gather_cat(tensor: Tensor) -> Tensor:
    """Concatenate every rank's ``tensor`` (B_r, ...) along dim 0 in rank order; the ranks may
    hold different B_r (the rest of the shape and the dtype must agree). The identity in a
    single process. With gloo the tensors are gathered on the CPU and moved back."""
    if not is_distributed():
        return tensor
    device = tensor.device
    on_cpu = dist.get_backend() == "gloo"
    local = tensor.detach().cpu() if on_cpu else tensor.detach().contiguous()
    sizes = [torch.zeros(1, dtype=torch.long, device=local.device) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, torch.tensor([local.shape[0]], device=local.device))
    counts = [int(s) for s in sizes]
    padded = local.new_zeros((max(counts), *local.shape[1:]))
    padded[:local.shape[0]] = local
    gathered = [torch.empty_like(padded) for _ in counts]
    dist.all_gather(gathered, padded)
    return torch.cat([g[:c] for g, c in zip(gathered, counts)]).to(device)


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sends each rank the gradient of its own rows, summed over every
    rank's use of them (an all-reduce of the whole gradient, then this rank's slice)."""

    @staticmethod
    def forward(ctx, tensor: Tensor) -> Tensor:
        ctx.rows, ctx.rank = tensor.shape[0], dist.get_rank()
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        total = grad.contiguous().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total[ctx.rank * ctx.rows:(ctx.rank + 1) * ctx.rows]


def all_gather_with_grad(tensor: Tensor) -> Tensor:
    """Every rank's ``tensor`` (B, ...) concatenated along dim 0 in rank order, (world * B, ...),
    differentiable: the gradient reaching rank r's rows from every rank's loss flows back to rank
    r (MoCo's queue gathers keys without gradient; a loss that uses the other ranks' samples as
    negatives with gradient needs this). Every rank must pass the same shape. The identity in a
    single process."""
    if not is_distributed():
        return tensor
    return _GatherWithGrad.apply(tensor)


def shard(count: int) -> tuple[int, int]:
    """This rank's contiguous share [start, stop) of ``count`` items: the first ``count % world``
    ranks take one more. Concatenating every rank's share in rank order gives 0..count-1."""
    world, me = world_size(), rank()
    base, extra = divmod(count, world)
    start = me * base + min(me, extra)
    return start, start + base + (1 if me < extra else 0)


def batch_shard(count: int, batch_size: int) -> tuple[int, int] | None:
    """This rank's rows [start, stop) of ``count`` rows processed in batches of ``batch_size``:
    whole batches, split over ranks as `shard` splits items, so each batch is exactly the batch a
    single process would form (a batch-dependent network gives the same outputs) and the shares
    concatenated in rank order are 0..count-1. None where sharding does not apply: one process,
    or fewer batches than ranks (then every rank computes all rows and nothing is gathered)."""
    num_batches = -(-count // batch_size)
    if not is_distributed() or num_batches < world_size():
        return None
    first, last = shard(num_batches)
    return first * batch_size, min(last * batch_size, count)
