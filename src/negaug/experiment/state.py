"""The training state: everything training changes, and the only definition of what a checkpoint
holds.

    state.state_dict()          -> nested dict of tensors and plain values (torch's convention)
    state.load_state_dict(d)    <- the same dict, e.g. read back by `negaug.experiment.checkpoint`

`RunState` writes `state_dict`, `load_state_dict` and the non-finite check once for every kind of
run: a kind's state (GAN: `TrainState` below; `PretrainState`, `TranslationState`, `DPCState`)
only names its networks, optimizers and random streams. A GAN run's state holds G, D, the EMA of
G, both optimizers, the fp16 grad scaler, the step, every random stream (latents, NDA draws,
DiffAugment and CR draws, torch's global CPU generator and, on a GPU, its CUDA generator) and the
data stream's position, so that a resumed run continues bit-identically (on the CPU).

Data parallel (`torchrun`): each rank draws from its own streams (`rank_seed`), and
`state_dict()` is then a collective that every rank calls: it adds "distributed" = {"world_size",
"rng": every rank's streams in rank order}; `load_state_dict` gives each rank its own back and
refuses a checkpoint written by another number of processes. A single process's state dict has
no "distributed" entry and is exactly what it always was.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from negaug import distributed
from negaug.experiment.stats import Stats
from negaug.experiment.stream import BatchStream
from negaug.models import EMA


def rng_devices(device: torch.device) -> list[int]:
    """The CUDA devices whose generators `torch.random.fork_rng` must save for work on `device`."""
    return list(range(torch.cuda.device_count())) if device.type == "cuda" else []


RANK_SEED_STRIDE = 1_000_000_007  # far from the +1, +2, +3 offsets of one rank's streams


def rank_seed(seed: int, rank: int) -> int:
    """The base seed of rank `rank`'s random streams: `seed` itself for rank 0 (a single process
    and rank 0 of a data-parallel run draw the same streams), a distinct one for every other rank."""
    return seed if rank == 0 else seed + rank * RANK_SEED_STRIDE


class WorldSizeError(ValueError):
    """A checkpoint written by one number of processes, resumed with another."""


def add_rank_streams(state: dict[str, Any]) -> dict[str, Any]:
    """Data parallel: `state` plus "distributed" = {"world_size", "rng": every rank's
    `state["rng"]` in rank order} (a collective: every rank calls it). `state` unchanged in one process."""
    if distributed.is_distributed():
        state["distributed"] = {"world_size": distributed.world_size(),
                                "rng": distributed.all_gather_object(state["rng"])}
    return state


def rank_streams(state: dict[str, Any]) -> dict[str, Any]:
    """This rank's random streams in a state dict; WorldSizeError when it was written by another
    number of processes (the data order and every rank's streams depend on it)."""
    written = int(state.get("distributed", {}).get("world_size", 1))
    if written != distributed.world_size():
        raise WorldSizeError(world_size_message(written))
    return state["distributed"]["rng"][distributed.rank()] if written > 1 else state["rng"]


def world_size_message(written: int) -> str:
    now = distributed.world_size()
    how = "without torchrun (or --nproc_per_node 1)" if written == 1 else f"with {written} processes in all (torchrun)"
    return (f"the checkpoint was written by {written} process{'es' if written > 1 else ''} and this run has {now}; "
            f"resume it {how}: the data order and every rank's random streams depend on the number of processes")


# ---------------------------------------------------------------------------------------------
# what every kind's training state shares (GAN: TrainState; pretraining: PretrainState; Pix2Pix:
# TranslationState): the non-finite check and the random streams, written once


def non_finite_tensors(modules: dict[str, nn.Module | Any], optimizers: dict[str, torch.optim.Optimizer],
                       limit: int = 3) -> list[str]:
    """Names of up to `limit` parameters, buffers or optimizer moments holding NaN or infinity, one
    device sync for all: `modules` maps a prefix to a module (or anything with `state_dict()`, e.g.
    an EMA), `optimizers` a prefix to an optimizer. A run whose loss is finite can still have diverged."""
    named = [(f"{prefix}.{key}", value) for prefix, module in modules.items() for key, value in module.state_dict().items()]
    for label, optimizer in optimizers.items():
        params = [param for group in optimizer.param_groups for param in group["params"]]
        named += [(f"{label}.state.{index}.{key}", value) for index, param in enumerate(params)
                  for key, value in optimizer.state.get(param, {}).items() if isinstance(value, torch.Tensor)]
    named = [(name, tensor) for name, tensor in named if tensor.is_floating_point() and tensor.numel()]
    if not named:
        return []
    finite = torch.stack([torch.isfinite(tensor).all() for _, tensor in named]).tolist()
    return [name for (name, _), ok in zip(named, finite) if not ok][:limit]


def stream_states(generators: dict[str, torch.Generator], device: torch.device) -> dict[str, Any]:
    """The states of a run's random streams: its own generators by name, torch's global CPU
    generator ("torch") and, on a GPU, the device's ("cuda": dropout and penalties draw from it)."""
    rng: dict[str, Any] = {name: generator.get_state() for name, generator in generators.items()}
    rng["torch"] = torch.get_rng_state()
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(device)
    return rng


def restore_streams(rng: dict[str, Any], generators: dict[str, torch.Generator], device: torch.device,
                    optional: tuple[str, ...] = ()) -> None:
    """Set the streams `stream_states` saved; a name in `optional` may be missing (older checkpoints)."""
    for name, generator in generators.items():
        if name in rng or name not in optional:
            generator.set_state(rng[name])
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and device.type == "cuda":
        torch.cuda.set_rng_state(rng["cuda"], device)


class RunState:
    """What every kind's training state shares; a subclass (a dataclass with `step`, `stats`,
    `batches` and `scaler` fields) names its parts:

    - `modules()`: the networks by checkpoint key (`nn.Module`s, or anything with state_dict);
    - `optimizers()`: the optimizers by checkpoint key;
    - `streams()`: its own random generators by name (torch's global CPU and CUDA generators are
      always saved too); `OPTIONAL_STREAMS`: names older checkpoints may lack;
    - `extra_state()` / `load_extra_state(state)`: anything else it keeps (e.g. the best evaluation).

    A checkpoint holds {"step", every module, every optimizer, "rng", "batches", the extras,
    "stats"}, "scaler" with fp16, and "distributed" under torchrun (`add_rank_streams`)."""

    OPTIONAL_STREAMS: tuple[str, ...] = ()

    def modules(self) -> dict[str, Any]:
        raise NotImplementedError

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def streams(self) -> dict[str, torch.Generator]:
        raise NotImplementedError

    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"step": self.step}
        state.update({name: module.state_dict() for name, module in self.modules().items()})
        state.update({name: optimizer.state_dict() for name, optimizer in self.optimizers().items()})
        state.update(rng=stream_states(self.streams(), self.batches.device), batches=self.batches.state_dict())
        state.update(self.extra_state())
        state["stats"] = self.stats.state_dict()
        if self.scaler is not None:  # fp16 only: other checkpoints keep their layout
            state["scaler"] = self.scaler.state_dict()
        return add_rank_streams(state)  # data parallel: every rank's streams (a collective)

    def load_state_dict(self, state: dict[str, Any], streams: bool = True) -> None:
        """Restore a `state_dict()`; sets torch's global generators to the run's (call inside
        `torch.random.fork_rng` to keep the caller's). `streams=False`: the networks, optimizers
        and counters only, not the random and data streams (loading a run to sample, evaluate or
        probe it, which any number of processes may do); with streams, a checkpoint written by
        another number of processes is refused (`WorldSizeError`)."""
        for name, module in self.modules().items():
            module.load_state_dict(state[name])
        for name, optimizer in self.optimizers().items():
            optimizer.load_state_dict(state[name])
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
        if streams:
            restore_streams(rank_streams(state), self.streams(), self.batches.device, optional=self.OPTIONAL_STREAMS)
            self.batches.load_state_dict(state["batches"])
        if "stats" in state:  # format-1 GAN checkpoints did not hold them
            self.stats.load_state_dict(state["stats"])
        self.step = int(state["step"])
        self.load_extra_state(state)

    def non_finite(self, limit: int = 3) -> list[str]:
        """Names of up to `limit` tensors of the networks or the optimizers' moments holding NaN or infinity."""
        return non_finite_tensors(self.modules(), self.optimizers(), limit)


@dataclass
class TrainState(RunState):
    generator: nn.Module
    discriminator: nn.Module
    ema: EMA | None  # exponential moving average of G (samples and evaluations use it), or None
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None  # fp16 only
    batches: BatchStream  # the endless, seeded stream of real batches
    latent_rng: torch.Generator  # latents and the labels of generated samples
    nda_rng: torch.Generator  # NDA and PDA draws, and the gradient penalty's interpolation on the CPU
    augment_rng: torch.Generator  # DiffAugment and consistency-regularisation draws (unused when both are off)
    step: int = 0  # generator steps done
    best: dict[str, Any] | None = None  # {"metric", "value", "step"} of the best evaluation so far
    stats: Stats = field(default_factory=Stats)  # logged statistics accumulated since the last log line

    OPTIONAL_STREAMS = ("augment",)  # checkpoints of negaug <= 0.3.0 have no "augment" stream (and no augmentation)

    def modules(self) -> dict[str, Any]:
        return {"generator": self.generator, "discriminator": self.discriminator,
                **({"ema": self.ema} if self.ema is not None else {})}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt_g": self.opt_g, "opt_d": self.opt_d}

    def streams(self) -> dict[str, torch.Generator]:
        return {"latent": self.latent_rng, "nda": self.nda_rng, "augment": self.augment_rng}

    def extra_state(self) -> dict[str, Any]:
        return {"best": self.best}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.best = state.get("best")

    def load_state_dict(self, state: dict[str, Any], streams: bool = True) -> None:
        """`RunState.load_state_dict`, refusing a checkpoint without the EMA the config asks for."""
        if self.ema is not None and "ema" not in state:
            raise ValueError("the checkpoint has no EMA of G but the config asks for one (train.ema_decay > 0)")
        super().load_state_dict(state, streams)

    def sampler(self) -> nn.Module:
        """The network to sample from: the EMA (with standing batch-norm statistics), else G."""
        if self.ema is None:
            return self.generator
        return self.ema.refresh_batch_norm_stats(num_classes=int(getattr(self.generator, "num_classes", 0)))
