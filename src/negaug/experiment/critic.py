"""The one place training calls a discriminator, and the one place any kind of run takes an
optimizer step (`backward_and_step`). Discriminator calls: GAN steps (`steps.score`, `steps.features`),
every member of a MIX+GAN mixture (`negaug.losses.mixture` is handed `member_scorer`) and
Pix2Pix's pairs (`translate.score_pairs`) all go through `score` and `features` here.

A *part* is one kind of sample (real, generated or negative) with what D reads beside it: class
labels, a Pix2Pix condition, or None. The grouping rule, written once: a per-sample D scores all
parts in one call (faster; the scores equal those of separate calls up to float rounding); a
batch-dependent D (batch norm) scores each part in its own call, so its batch statistics never mix
kinds of samples (mixing them let D tell the D step from the G step and G train on noise).
`prepare` (e.g. channels_last) and `autocast` (mixed precision) apply to every call.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch

from negaug import distributed
from negaug.models import is_batch_dependent

Part = tuple[torch.Tensor, "torch.Tensor | None"]  # samples of one kind and their labels / conditions (or None)


def _no_autocast() -> contextlib.AbstractContextManager:
    return contextlib.nullcontext()


def _same(x: torch.Tensor) -> torch.Tensor:
    return x


def groups(discriminator: torch.nn.Module, parts: list[Part], together: bool | None = None) -> list[list[Part]]:
    """The parts D scores together: all at once for a per-sample D, one call per kind otherwise;
    `together=False` forces one call per part (e.g. to keep another commit's rounding)."""
    if together is None:
        together = not is_batch_dependent(discriminator)
    return [parts] if together else [[part] for part in parts]


def _batch(group: list[Part]) -> tuple[torch.Tensor, torch.Tensor | None]:
    if len(group) == 1:
        return group[0]
    x = torch.cat([images.to(group[0][0].dtype) for images, _ in group])
    extra = None if group[0][1] is None else torch.cat([e for _, e in group])
    return x, extra


def score(discriminator: torch.nn.Module, parts: list[Part], *, together: bool | None = None,
          prepare: Callable[[torch.Tensor], torch.Tensor] = _same,
          autocast: Callable[[], contextlib.AbstractContextManager] = _no_autocast) -> list[torch.Tensor]:
    """D's raw outputs, float32, of each part (first dimension B_i; Pix2Pix's PatchGAN keeps its
    patch map): `discriminator(x)`, or `discriminator(x, labels_or_conditions)`, grouped by `groups`."""
    scores: list[torch.Tensor] = []
    for group in groups(discriminator, parts, together):
        x, extra = _batch(group)
        with autocast():
            out = (discriminator(prepare(x)) if extra is None else discriminator(prepare(x), extra)).float()
        scores += out.split([images.shape[0] for images, _ in group])
    return scores


def features(discriminator: torch.nn.Module, parts: list[Part], *,
             prepare: Callable[[torch.Tensor], torch.Tensor] = _same,
             autocast: Callable[[], contextlib.AbstractContextManager] = _no_autocast) -> list[torch.Tensor]:
    """D's penultimate features (`D.features`), float32 (B_i, F), of each part, grouped like `score`."""
    out: list[torch.Tensor] = []
    for group in groups(discriminator, parts):
        x, _ = _batch(group)
        with autocast():
            f = discriminator.features(prepare(x)).float().flatten(1)
        out += f.split([images.shape[0] for images, _ in group])
    return out


def member_scorer(prepare: Callable[[torch.Tensor], torch.Tensor] = _same,
                  autocast: Callable[[], contextlib.AbstractContextManager] = _no_autocast):
    """`scorer(D_j, x, labels) -> float32 scores` for the losses of a MIX+GAN mixture: each member
    call goes through `score` (one part per call, as the mixture's losses always called them)."""
    def scorer(member: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        return score(member, [(x, labels)], together=False, prepare=prepare, autocast=autocast)[0]
    return scorer


def backward_and_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None) -> None:
    """The one place every training update of every kind happens (GAN's D and G, MoCo-v2, Pix2Pix's
    D and G, DPC): zero the gradients, backward, average them over ranks, step. Data parallel: the gradients (of the loss and
    every penalty in it) are averaged over ranks between backward and step; with fp16 the scaled
    ones, so that every rank's scaler finds the same infs and keeps the same scale."""
    optimizer.zero_grad(set_to_none=True)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    if scaler is not None:
        scaler.scale(loss).backward()
        distributed.all_reduce_gradients(params)
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        distributed.all_reduce_gradients(params)
        optimizer.step()
