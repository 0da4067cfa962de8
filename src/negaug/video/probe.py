"""How good a DPC model's clip representation is: linear probes on frozen features, and plain DPC
on held-out clips. Shared by `negaug probe RUN` (a DPC run) and `negaug repro video`.

    features = clip_features(model, dataset)                 # {"context": (N, D), "encoder": (N, D)}
    accuracy = linear_probe(train_x, train_y, test_x, test_y, num_classes, epochs=100, generator=g)
    heldout = heldout_dpc(model, test_clips, batch_size=32)  # {"heldout_dpc_loss", "heldout_dpc_top1", ...}

- `clip_features`: eval mode, no gradient, one encoder pass per batch of clips gives both kinds:
  `context` (the ConvGRU state after all blocks, mean over positions: DPC's evaluation input)
  and `encoder` (relu(z), mean over blocks and positions);
- `linear_probe`: logistic regression (`PROBE`) on features standardised with the train features'
  mean and std, weights from zero, Adam for a fixed number of epochs in seeded random batches;
- `probe_labels`: the labellings a clip dataset has (moving_mnist: `motion`, the direction of the
  first frames, and `digit`; an action dataset: `action`);
- `heldout_dpc`: plain DPC (no NDA) on batches of consecutive held-out clips: mean loss and top-1
  (the true block scores highest of all R = B * pred_steps * h * w columns; chance 1 / R).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from negaug.video.dpc import DPC, dpc_logits, to_blocks

KINDS = ("context", "encoder")  # the pooled features `clip_features` gives
EVAL_BATCH = 32  # clips per forward pass when extracting features (the numbers never depend on it)
PROBE = {"model": "logistic regression (linear layer, zero init) on features standardised with the train "
                  "clips' mean and std", "optimizer": "adam", "lr": 0.01, "batch_size": 256, "weight_decay": 1e-4}


def _device_of(model: DPC) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def clip_features(model: DPC, dataset, batch_size: int = EVAL_BATCH) -> dict[str, torch.Tensor]:
    """Both kinds of `DPC.clip_features` `(N, D)` for every clip of `dataset`, from one pass of the
    encoder, on the model's device; returned on the CPU."""
    model.eval()
    device = _device_of(model)
    features: dict[str, list[torch.Tensor]] = {kind: [] for kind in KINDS}
    for index in torch.arange(len(dataset)).split(batch_size):
        clips, _ = dataset.get_batch(index)
        z = model.encode(to_blocks(clips.to(device), model.num_blocks))  # (B, N, D, h, w)
        features["context"].append(model.context(z).mean(dim=(2, 3)).float().cpu())
        features["encoder"].append(F.relu(z).mean(dim=(1, 3, 4)).float().cpu())
    return {kind: torch.cat(values) for kind, values in features.items()}


@torch.no_grad()
def heldout_dpc(model: DPC, dataset, batch_size: int) -> dict[str, float]:
    """Plain DPC on held-out clips, batches of `batch_size` consecutive clips (a last partial batch
    dropped): mean loss and top-1 (the positive scores highest of all R = B * pred_steps * h * w),
    and the top-1 of chance (1 / R). ValueError when the dataset holds less than one batch."""
    if len(dataset) < batch_size:
        raise ValueError(f"held-out DPC needs at least one batch of {batch_size} clips; the split has {len(dataset)}")
    model.eval()
    device = _device_of(model)
    losses, hits, rows = [], 0, 0
    for start in range(0, len(dataset) - batch_size + 1, batch_size):
        clips, _ = dataset.get_batch(torch.arange(start, start + batch_size))
        logits = dpc_logits(*model(clips.to(device))).float()
        target = torch.arange(logits.shape[0], device=device)
        losses.append(F.cross_entropy(logits, target).item())
        hits += int((logits.argmax(dim=1) == target).sum())
        rows += logits.shape[0]
    return {"heldout_dpc_loss": sum(losses) / len(losses), "heldout_dpc_top1": hits / rows,
            "heldout_dpc_chance": len(losses) / rows}


def linear_probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                 num_classes: int, epochs: int, generator: torch.Generator) -> dict[str, float]:
    """Logistic regression on features `(N, D)` -> train and test accuracy in [0, 1].

    Features are standardised with the train mean and std (a constant feature becomes 0); weights
    start at zero; Adam (PROBE) on the cross-entropy plus weight_decay * |W|^2 for `epochs` passes
    in seeded random batches."""
    mean, std = train_x.mean(dim=0), train_x.std(dim=0)
    std = torch.where(std > 1e-6, std, torch.ones_like(std))
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    weight = torch.zeros(train_x.shape[1], num_classes, requires_grad=True)
    bias = torch.zeros(num_classes, requires_grad=True)
    optimizer = torch.optim.Adam([weight, bias], lr=PROBE["lr"])
    with torch.enable_grad():
        for _ in range(epochs):
            for index in torch.randperm(train_x.shape[0], generator=generator).split(PROBE["batch_size"]):
                logits = train_x[index] @ weight + bias
                loss = F.cross_entropy(logits, train_y[index]) + PROBE["weight_decay"] * weight.square().sum()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
    with torch.no_grad():
        def accuracy(x, y):
            return int(((x @ weight + bias).argmax(dim=1) == y).sum()) / y.shape[0]
        return {"train": accuracy(train_x, train_y), "test": accuracy(test_x, test_y)}


def probe_labels(dataset) -> dict[str, tuple[torch.Tensor, int]]:
    """{label name: (labels (N,) int64, number of classes)} of a clip dataset: `motion` (the
    direction, when it has `motion_labels`) and its class labels, named `digit` for moving_mnist
    and `action` otherwise."""
    labels: dict[str, tuple[torch.Tensor, int]] = {}
    if getattr(dataset, "motion_labels", None) is not None:
        labels["motion"] = (dataset.motion_labels, int(dataset.num_motion_classes))
    labels["digit" if getattr(dataset, "name", "") == "moving_mnist" else "action"] = \
        (dataset.labels, int(dataset.num_classes))
    return labels


def probe_summary(train_features: dict[str, torch.Tensor], test_features: dict[str, torch.Tensor],
                  train_labels: dict[str, tuple[torch.Tensor, int]], test_labels: dict[str, tuple[torch.Tensor, int]],
                  epochs: int, generator_of) -> dict[str, dict[str, Any]]:
    """{"<kind>/<label>": {"test", "train"}} for every feature kind and label: `linear_probe` with
    `generator_of(kind, label)`'s seeded batches."""
    out = {}
    for kind in KINDS:
        for label, (train_y, num_classes) in train_labels.items():
            out[f"{kind}/{label}"] = linear_probe(train_features[kind], train_y, test_features[kind],
                                                  test_labels[label][0], num_classes, epochs, generator_of(kind, label))
    return out
