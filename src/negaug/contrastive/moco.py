"""MoCo-v2 with NDA negatives (Section 6 and Appendix N of the paper), in one process.

    encoder = ENCODERS.build("resnet18_cifar")
    model = MoCo(encoder, dim=128, queue_size=4096, num_splits=8)
    views = nda_views(nda.build("cutout"), [x_q, x_k], generator)    # (B, 2, C, H, W): Appendix N
    loss, logits, stats = model(x_q, x_k, nda=views, generator=generator)
    loss.backward(); optimizer.step()                                  # optimizer over model.trainable_parameters()

- Query encoder + head (trained) and key encoder + head (an EMA of the query's parameters with
  `momentum`, no gradient; its BN buffers are its own, as in the official code).
- The queue (K, D) of L2-normalised keys and its pointer are buffers: `state_dict` holds them, so
  a checkpoint resumes exactly. Enqueueing wraps around: K need not be a multiple of the batch
  size (the last, smaller batch of an epoch does not crash).
- NDA views are encoded by the KEY encoder without gradient, L2-normalised, and appended as extra
  logit columns after the queue (`objectives.info_nce`); they are never enqueued. Per sample:
  `nda` (B, M, C, H, W), query i against the M views of its own image; batch: `nda` (M, C, H, W),
  every query against all of them. The NDA pass runs in its own forward pass with the key encoder's
  BN running statistics frozen (`batchnorm.frozen_batch_norm_stats`), its batch statistics its own:
  keys, queue, key-encoder buffers and the positive/queue logits are exactly those of the step
  without NDA.
- Shuffle-BN in one process: both encoders' BN layers normalise `num_splits` sub-batches
  separately (`batchnorm.SplitBatchNorm2d`, MoCo's single-GPU demo), and the keys are shuffled
  before the key encoder (permutation from `generator`) and unshuffled after, so a query and its
  key are normalised with statistics of sub-batches of different composition. num_splits = 1 is
  plain BN without shuffling (the positive leaks through BN statistics: He et al. 2020, Sec. 3.3).
- `objective` names the InfoNCE of `objectives.OBJECTIVES`: "infonce" (default: MoCo, the queue
  gives the negatives) or "infonce_in_batch" (SimCLR style: query i's negatives are the other
  rows' keys of the batch; the queue is still filled, for the logged statistics, but gives no
  negative). NDA views are extra negatives in both.
- In eval mode `forward` neither updates the key encoder nor enqueues (a validation loss leaves
  the model as it was).
- Data parallel (`torchrun`): each rank enqueues the keys of every rank, gathered in rank order
  (`distributed.all_gather_cat`), so the queues stay identical; Shuffle-BN stays within each
  rank's batch (its `num_splits` sub-batches), not across ranks as in the official multi-GPU code.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from negaug import distributed
from negaug.contrastive.batchnorm import (
    convert_split_batch_norm,
    frozen_batch_norm_stats,
)
from negaug.contrastive.encoders import mlp_head
from negaug.contrastive.objectives import OBJECTIVES, nda_similarities
from negaug.nda import NDATransform
from negaug.registry import check_float, check_int

MAX_QUEUE = 1 << 24


class MoCo(nn.Module):
    """MoCo-v2 with NDA negatives (module docstring). `encoder` maps (B, C, H, W) to (B, F) and
    has `feature_dim`; it becomes the query encoder (`encoder_q`), its BatchNorm2d layers replaced
    in place by SplitBatchNorm2d when num_splits > 1; the head is `mlp_head(F, head_hidden, dim)`
    (head_hidden=None: F, MoCo v2's head; the default 2048 is not MoCo's).
    The key encoder and head start as copies; the queue starts as random unit vectors drawn from
    torch's global RNG, like the weights' initialisation."""

    def __init__(self, encoder: nn.Module, dim: int = 128, head_hidden: int | None = 2048, queue_size: int = 65536,
                 momentum: float = 0.999, temperature: float = 0.07, nda_weight: float = 1.0, num_splits: int = 8,
                 objective: str = "infonce"):
        super().__init__()
        feature_dim = check_int("encoder feature_dim", getattr(encoder, "feature_dim", None), 1)
        dim = check_int("dim", dim, 1, 1 << 16)
        self.queue_size = check_int("queue_size", queue_size, 1, MAX_QUEUE)
        self.momentum = check_float("momentum", momentum, 0.0, 1.0)
        self.num_splits = check_int("num_splits", num_splits, 1)
        self.objective = OBJECTIVES.get(objective)(temperature=temperature, nda_weight=nda_weight, normalize=False)
        self.in_batch = objective == "infonce_in_batch"
        self.encoder_q = convert_split_batch_norm(encoder, self.num_splits)
        self.head_q = mlp_head(feature_dim, head_hidden, dim)
        self.encoder_k = copy.deepcopy(self.encoder_q)
        self.head_k = copy.deepcopy(self.head_q)
        for param in self.key_parameters():
            param.requires_grad_(False)
        self.register_buffer("queue", F.normalize(torch.randn(self.queue_size, dim), dim=1))  # (K, D)
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The query encoder's and head's parameters: what the optimizer updates."""
        return [*self.encoder_q.parameters(), *self.head_q.parameters()]

    def key_parameters(self) -> list[nn.Parameter]:
        return [*self.encoder_k.parameters(), *self.head_k.parameters()]

    def features(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, F): the query encoder's features (for a linear probe: call
        `.eval()` first, or BN normalises with the probe batch's statistics)."""
        return self.encoder_q(x)

    def forward(self, x_q: Tensor, x_k: Tensor, nda: Tensor | None = None,
                generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """x_q, x_k (B, C, H, W): two views of the same images; nda (B, M, C, H, W), (M, C, H, W)
        or None; generator: the Shuffle-BN permutation's (None: torch's global RNG).
        Returns (loss, logits (B, 1 + K + M), stats: detached scalars, see `step_stats`)."""
        if x_q.shape != x_k.shape or x_q.ndim != 4:
            raise ValueError(f"x_q and x_k must be two (B, C, H, W) batches of the same shape, "
                             f"got {tuple(x_q.shape)} and {tuple(x_k.shape)}")
        self._check_nda(nda, x_q)
        q = F.normalize(self.head_q(self.encoder_q(x_q)), dim=1)  # (B, D)
        with torch.no_grad():
            if self.training:
                self.momentum_update()
            k = self.encode_keys(x_k, generator)  # (B, D)
            nda_z = None if nda is None else self.encode_nda(nda)  # (B, M, D) or (M, D)
        negatives = None if self.in_batch else self.queue.clone()  # in batch: the other rows' keys
        loss, logits = self.objective(q, k, negatives, nda_z)
        stats = step_stats(q.detach(), k, nda_z, logits.detach(), self.objective.temperature,
                           target=self.objective.target(logits), queue=self.queue if self.in_batch else None)
        if self.training:
            self.enqueue(distributed.all_gather_cat(k))  # data parallel: every rank's keys, in rank order
        return loss, logits, stats

    def _check_nda(self, nda: Tensor | None, x_q: Tensor) -> None:
        if nda is None:
            return
        per_sample = nda.ndim == 5 and nda.shape[0] == x_q.shape[0] and nda.shape[2:] == x_q.shape[1:]
        batch = nda.ndim == 4 and nda.shape[1:] == x_q.shape[1:]
        if not (per_sample or batch):
            raise ValueError(f"nda must be (B, M, C, H, W) per sample or (M, C, H, W) for the batch, with "
                             f"(B, C, H, W) = {tuple(x_q.shape)}; got {tuple(nda.shape)}")

    @torch.no_grad()
    def momentum_update(self) -> None:
        """key = momentum * key + (1 - momentum) * query, parameter by parameter (not BN buffers)."""
        keys, queries = self.key_parameters(), self.trainable_parameters()
        torch._foreach_mul_(keys, self.momentum)
        torch._foreach_add_(keys, queries, alpha=1.0 - self.momentum)

    @torch.no_grad()
    def encode_keys(self, x_k: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """(B, D) L2-normalised keys; shuffled into the BN sub-batches when num_splits > 1."""
        if self.num_splits == 1:
            return F.normalize(self.head_k(self.encoder_k(x_k)), dim=1)
        device = generator.device if generator is not None else torch.device("cpu")
        order = torch.randperm(x_k.shape[0], generator=generator, device=device).to(x_k.device)
        shuffled = F.normalize(self.head_k(self.encoder_k(x_k.index_select(0, order))), dim=1)
        return torch.empty_like(shuffled).index_copy_(0, order, shuffled)  # unshuffle: row order[i] <- i

    @torch.no_grad()
    def encode_nda(self, nda: Tensor) -> Tensor:
        """NDA views (B, M, C, H, W) -> (B, M, D), or (M, C, H, W) -> (M, D): L2-normalised key-encoder
        embeddings; the key encoder's BN running statistics are not touched."""
        flat = nda.flatten(0, 1) if nda.ndim == 5 else nda
        with frozen_batch_norm_stats(self.encoder_k):
            z = F.normalize(self.head_k(self.encoder_k(flat)), dim=1)
        return z.view(*nda.shape[:-3], -1)

    @torch.no_grad()
    def enqueue(self, keys: Tensor) -> None:
        """Write `keys` (B, D) at the pointer, wrapping around the end; a batch larger than the
        queue keeps its last queue_size keys."""
        keys = keys[-self.queue_size:]
        start = int(self.queue_ptr)
        rows = (torch.arange(keys.shape[0], device=keys.device) + start) % self.queue_size
        self.queue.index_copy_(0, rows, keys.to(self.queue.dtype))
        self.queue_ptr.fill_((start + keys.shape[0]) % self.queue_size)


@torch.no_grad()
def step_stats(q: Tensor, k: Tensor, nda_z: Tensor | None, logits: Tensor, temperature: float,
               target: Tensor | None = None, queue: Tensor | None = None) -> dict[str, Tensor]:
    """Detached scalars of one step from the normalised queries q and keys k (B, D), the NDA
    embeddings and the objective's logits: `accuracy` (the positive, column `target` of each row,
    default 0 as in `info_nce`'s (B, 1 + K + M), has the largest logit), `positive_similarity`,
    `queue_similarity` (mean cosines of the queries with their keys and with the queue: from
    `queue` (K, D) when given, else from `info_nce`'s queue columns) and, with NDA,
    `nda_similarity` (mean cosine with the NDA negatives) and `nda_above_positive` (fraction of
    queries with an NDA negative closer than their key)."""
    positive = (q * k).sum(1)  # (B,)
    if target is None:
        target = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
    if queue is not None:
        queue_similarity = (q @ queue.T).mean()
    else:
        queue_columns = logits.shape[1] - 1 - (0 if nda_z is None else nda_z.shape[-2])
        queue_similarity = logits[:, 1:1 + queue_columns].mean() * temperature
    stats = {
        "accuracy": (logits.argmax(1) == target).float().mean(),
        "positive_similarity": positive.mean(),
        "queue_similarity": queue_similarity,
    }
    if nda_z is not None and nda_z.numel():
        nda_sim = nda_similarities(q, nda_z)  # (B, M)
        stats["nda_similarity"] = nda_sim.mean()
        stats["nda_above_positive"] = (nda_sim.amax(1) > positive).float().mean()
    return stats


def nda_views(transform: NDATransform, images: Sequence[Tensor], generator: torch.Generator | None = None) -> Tensor:
    """(B, len(images), C, H, W): `transform`'s negatives of each batch in `images` (B, C, H, W),
    stacked per sample; [x_q, x_k] gives Appendix N's two NDA negatives per query."""
    return torch.stack([transform(x, generator=generator) for x in images], 1)
