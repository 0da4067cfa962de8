"""Dense Predictive Coding (Han, Xie and Zisserman, ICCV-W 2019) with NDA clips as extra negatives
(Sinha et al., ICLR 2021, Section 5 and Table 7).

    model = DPC(in_channels=1, num_blocks=4, pred_steps=2)      # clips (B, T, C, H, W), T = 4 * block
    loss = dpc_nda_loss(model, clips, nda=negaug.nda.build("jigsaw", k=2), generator=g)
    loss = dpc_nda_loss(model, clips)                            # plain DPC

DPC, as in the reference code (github.com/TengdaHan/DPC, dpc/model_3d.py), at a CPU-sized scale:
- a clip is cut into `num_blocks` consecutive blocks of T / num_blocks frames;
- an encoder maps each block to a feature map z (D, h, w): here len(widths) + 1 (default 3)
  3x3x3 convolutions with spatial stride 2 (GroupNorm + ReLU between them, none after the last), then the mean over the
  block's frames (DPC: a 3D ResNet, then an average over its last temporal size);
- a ConvGRU with 1x1 kernels (DPC's choice: one GRU per spatial position, gates by 1x1 convs)
  reads relu(z) of the first num_blocks - pred_steps blocks; a two-layer 1x1 conv head predicts
  the next block's map from the hidden state, and the prediction (after a ReLU) is fed back to
  the GRU to predict the step after, `pred_steps` times;
- the loss is DPC's dense InfoNCE on raw dot products: each predicted vector (clip b, step p,
  position s) has exactly one positive, the true z of that clip, step and position, and every
  other (clip, step, position) of the batch's predicted blocks is a negative (DPC's mask: spatial,
  temporal and other-clip negatives alike); cross-entropy over all of them.

Differences from DPC, on purpose: GroupNorm instead of BatchNorm, so a clip's features do not
depend on what else is in the batch (positives and NDA negatives are encoded separately; batch
statistics would let the network tell them apart without looking at the clips); no dropout in the
GRU (DPC: 0.1), so a forward pass is deterministic; a `temperature` option (DPC: none, i.e. 1).

NDA (the paper's eq. 8): the NDA clips (one draw per clip: the same transform on every frame) are
encoded by the same encoder, with gradient, and the true z of their predicted blocks, at every
position, are appended to the denominator of every row. `nda_weight` w multiplies each NDA term
in the denominator (log w is added to their logits): w = 1 is eq. 8, w = 0 is plain DPC.

Data parallel (`across_ranks=True`): every rank's targets and NDA targets are negatives of every
rank's rows (all-gathered with gradient), so the ranks together compute the loss and the
gradient of one process over the global batch.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from negaug import distributed
from negaug.registry import check_float, check_int


def to_blocks(clips: torch.Tensor, num_blocks: int) -> torch.Tensor:
    """Clips `(B, T, C, H, W)` -> blocks `(B, num_blocks, T / num_blocks, C, H, W)` (consecutive frames)."""
    if clips.dim() != 5:
        raise ValueError(f"clips must be (B, T, C, H, W), got shape {tuple(clips.shape)}")
    frames = clips.shape[1]
    if frames % num_blocks:
        raise ValueError(f"clips of {frames} frames cannot be cut into {num_blocks} equal blocks")
    return clips.unflatten(1, (num_blocks, frames // num_blocks))


def clip_negatives(nda: nn.Module, clips: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """NDA clips `(B, T, C, H, W)`: `nda` applied with one draw per clip, the same on every frame
    (negaug.nda's clip rule); a pairing transform pairs each clip with another clip."""
    return nda(clips, generator=generator)


class BlockEncoder(nn.Module):
    """Blocks `(M, C, Tb, H, W)` -> feature maps `(M, feature_dim, H / 2^L, W / 2^L)`, L = len(widths) + 1.

    3x3x3 convolutions with spatial stride 2 and temporal stride 1; GroupNorm and ReLU after all
    but the last (so the output is unbounded, DPC's pre-ReLU features); mean over the frames."""

    def __init__(self, in_channels: int, widths: Sequence[int] = (16, 32), feature_dim: int = 64, groups: int = 4):
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for width in widths:
            layers += [nn.Conv3d(channels, width, 3, stride=(1, 2, 2), padding=1, bias=False),
                       nn.GroupNorm(math.gcd(groups, width), width), nn.ReLU()]
            channels = width
        layers.append(nn.Conv3d(channels, feature_dim, 3, stride=(1, 2, 2), padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, blocks: torch.Tensor) -> torch.Tensor:
        return self.net(blocks).mean(dim=2)


class ConvGRUCell(nn.Module):
    """One ConvGRU step (DPC's backbone/convrnn.py): x `(B, C_in, h, w)`, hidden `(B, C_h, h, w)`."""

    def __init__(self, input_dim: int, hidden_dim: int, kernel_size: int = 1):
        super().__init__()
        padding = kernel_size // 2
        self.hidden_dim = hidden_dim
        self.gates = nn.Conv2d(input_dim + hidden_dim, 2 * hidden_dim, kernel_size, padding=padding)  # reset, update
        self.candidate = nn.Conv2d(input_dim + hidden_dim, hidden_dim, kernel_size, padding=padding)
        for conv in (self.gates, self.candidate):
            nn.init.orthogonal_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor, hidden: torch.Tensor | None) -> torch.Tensor:
        if hidden is None:
            hidden = x.new_zeros(x.shape[0], self.hidden_dim, *x.shape[2:])
        reset, update = torch.sigmoid(self.gates(torch.cat([x, hidden], dim=1))).chunk(2, dim=1)
        candidate = torch.tanh(self.candidate(torch.cat([x, hidden * reset], dim=1)))
        return hidden * (1 - update) + candidate * update


class DPC(nn.Module):
    """Dense Predictive Coding: encoder, ConvGRU aggregator and prediction head (module docstring).

    Args:
        in_channels: channels of a frame (1 for moving_mnist, 3 for RGB video).
        num_blocks: blocks per clip; the clip's frame count must be a multiple of it.
        pred_steps: blocks predicted (the last `pred_steps`); the first num_blocks - pred_steps are context.
        widths, feature_dim, groups: the encoder (`BlockEncoder`); feature_dim is D.
        gru_kernel: the ConvGRU's kernel size (DPC: 1).
    """

    def __init__(self, in_channels: int = 1, num_blocks: int = 4, pred_steps: int = 2, widths: Sequence[int] = (16, 32),
                 feature_dim: int = 64, groups: int = 4, gru_kernel: int = 1):
        super().__init__()
        self.num_blocks = check_int("dpc num_blocks", num_blocks, 2)
        self.pred_steps = check_int("dpc pred_steps", pred_steps, 1, num_blocks - 1)
        self.feature_dim = check_int("dpc feature_dim", feature_dim, 1)
        self.encoder = BlockEncoder(in_channels, widths, feature_dim, groups)
        self.aggregator = ConvGRUCell(feature_dim, feature_dim, gru_kernel)
        self.predictor = nn.Sequential(nn.Conv2d(feature_dim, feature_dim, 1), nn.ReLU(), nn.Conv2d(feature_dim, feature_dim, 1))

    def encode(self, blocks: torch.Tensor) -> torch.Tensor:
        """Blocks `(B, N, Tb, C, H, W)` -> features z `(B, N, D, h, w)` (unbounded, before any ReLU)."""
        batch, num = blocks.shape[:2]
        z = self.encoder(blocks.flatten(0, 1).transpose(1, 2))  # (B * N, C, Tb, H, W) -> (B * N, D, h, w)
        return z.unflatten(0, (batch, num))

    def context(self, z: torch.Tensor) -> torch.Tensor:
        """The GRU's hidden state `(B, D, h, w)` after reading relu(z) of every block in `z` `(B, N', D, h, w)`."""
        hidden = None
        for step in range(z.shape[1]):
            hidden = self.aggregator(F.relu(z[:, step]), hidden)
        return hidden

    def predict(self, hidden: torch.Tensor) -> torch.Tensor:
        """Predicted features `(B, pred_steps, D, h, w)` of the blocks after the context."""
        predictions = []
        for _ in range(self.pred_steps):
            prediction = self.predictor(hidden)
            predictions.append(prediction)
            hidden = self.aggregator(F.relu(prediction), hidden)
        return torch.stack(predictions, dim=1)

    def forward(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Clips `(B, T, C, H, W)` -> (predictions, targets), both `(B, pred_steps, D, h, w)`:
        targets are the encoder's features of the last pred_steps blocks."""
        z = self.encode(to_blocks(clips, self.num_blocks))
        context = self.num_blocks - self.pred_steps
        return self.predict(self.context(z[:, :context])), z[:, context:]

    def target_features(self, clips: torch.Tensor) -> torch.Tensor:
        """Features `(B, pred_steps, D, h, w)` of the last pred_steps blocks only (NDA clips need no context)."""
        blocks = to_blocks(clips, self.num_blocks)[:, self.num_blocks - self.pred_steps :]
        return self.encode(blocks)

    def clip_features(self, clips: torch.Tensor, kind: str = "context") -> torch.Tensor:
        """Pooled clip representations `(B, D)` for probes. kind "context": the GRU state after all
        blocks, averaged over positions (DPC's evaluation input); "encoder": relu(z) averaged over
        blocks and positions."""
        z = self.encode(to_blocks(clips, self.num_blocks))
        if kind == "context":
            return self.context(z).mean(dim=(2, 3))
        if kind == "encoder":
            return F.relu(z).mean(dim=(1, 3, 4))
        raise ValueError(f"clip_features kind={kind!r} is not one of context, encoder")


def dense_rows(features: torch.Tensor) -> torch.Tensor:
    """`(B, P, D, h, w)` -> `(B * P * h * w, D)`, rows ordered by clip, then step, then position."""
    return features.permute(0, 1, 3, 4, 2).flatten(0, 3)


def dpc_logits(predictions: torch.Tensor, targets: torch.Tensor, nda_targets: torch.Tensor | None = None,
               temperature: float = 1.0, nda_weight: float = 1.0) -> torch.Tensor:
    """DPC's dense score matrix, positives on the diagonal.

    predictions: `(B, P, D, h, w)`; targets: `(B_t, P, D, h, w)`, B_t = B in one process (a
    data-parallel loss passes every rank's, `dpc_loss(across_ranks=True)`); nda_targets:
    `(B', P, D, h, w)` or None. Returns `(R, R_t + R')`, R = B * P * h * w rows (`dense_rows`
    order), R_t = B_t * P * h * w, R' = B' * P * h * w: column j < R_t is target row j, column
    R_t + k is NDA row k, plus log(nda_weight). Float32 under any autocast: the logits are raw dot
    products of unbounded features, which can leave fp16's range."""
    if predictions.shape[1:] != targets.shape[1:]:
        raise ValueError(f"predictions {tuple(predictions.shape)} and targets {tuple(targets.shape)} differ in shape")
    temperature = check_float("temperature", temperature, 0.0, open_low=True)
    with torch.autocast(predictions.device.type, enabled=False):
        query = dense_rows(predictions).float()
        logits = query @ dense_rows(targets).float().T / temperature
        if nda_targets is None or nda_weight == 0:
            return logits
        nda_weight = check_float("nda_weight", nda_weight, 0.0)
        if nda_targets.shape[1:] != targets.shape[1:]:
            raise ValueError(f"nda_targets {tuple(nda_targets.shape)} must match targets {tuple(targets.shape)} but for the batch")
        nda_logits = query @ dense_rows(nda_targets).float().T / temperature + math.log(nda_weight)
        return torch.cat([logits, nda_logits], dim=1)


def dpc_loss(predictions: torch.Tensor, targets: torch.Tensor, nda_targets: torch.Tensor | None = None,
             temperature: float = 1.0, nda_weight: float = 1.0, across_ranks: bool = False) -> torch.Tensor:
    """Mean over the R rows of -log softmax(logits)[row, row] (`dpc_logits`); scalar. predictions
    and targets: this process's, of one shape (ValueError otherwise).

    across_ranks (data parallel, every rank with the same B): every rank's targets and NDA targets
    are gathered with gradient (`distributed.all_gather_with_grad`, rank order) and are negatives
    of this rank's rows too, whose positives sit at column rank * R + row. The mean of this loss
    over ranks is then the loss of one process over the global batch (the ranks' batches
    concatenated in rank order), and the gradients averaged over ranks are that process's. The
    same as across_ranks=False in a single process."""
    if predictions.shape != targets.shape:  # each rank's own; dpc_logits takes every rank's targets
        raise ValueError(f"predictions {tuple(predictions.shape)} and targets {tuple(targets.shape)} differ in shape")
    offset = 0
    if across_ranks and distributed.is_distributed():
        offset = distributed.rank() * dense_rows(predictions).shape[0]
        targets = distributed.all_gather_with_grad(targets.float())  # float32, as dpc_logits computes in
        if nda_targets is not None and nda_weight != 0:
            nda_targets = distributed.all_gather_with_grad(nda_targets.float())
    logits = dpc_logits(predictions, targets, nda_targets, temperature, nda_weight)
    return F.cross_entropy(logits, torch.arange(offset, offset + logits.shape[0], device=logits.device))


def dpc_nda_loss(model: DPC, clips: torch.Tensor, nda: nn.Module | None = None, generator: torch.Generator | None = None,
                 temperature: float = 1.0, nda_weight: float = 1.0, across_ranks: bool = False) -> torch.Tensor:
    """The DPC training loss of `clips` `(B, T, C, H, W)`, with NDA clips of the same batch as extra
    negatives when `nda` is given (drawn from `generator`). nda=None is exactly plain DPC.
    across_ranks: every rank's targets and NDA targets are negatives too (`dpc_loss`); a pairing
    NDA transform still pairs each clip with another clip of this rank's batch."""
    predictions, targets = model(clips)
    nda_targets = None
    if nda is not None and nda_weight != 0:
        nda_targets = model.target_features(clip_negatives(nda, clips, generator))
    return dpc_loss(predictions, targets, nda_targets, temperature, nda_weight, across_ranks)
