"""InfoNCE with NDA negatives: eq. 8 of the paper (NDA-CPC).

For a query q_i, its positive p_i, N usual negatives n_j and M NDA negatives nbar_k (all
L2-normalised by default), with similarities s = q . v / temperature:

    loss_i = -log( exp(s(p_i)) / (exp(s(p_i)) + sum_j exp(s(n_j)) + w * sum_k exp(s(nbar_k))) )

w = `nda_weight` (default 1: eq. 8 as printed; the log of (n + m) in eq. 8 is a constant). It
enters as log(w) added to the NDA logit columns, so w = 0 removes the NDA negatives exactly (the
loss is then computed on the other columns only, bit-identical to plain InfoNCE; the returned
logits keep the NDA columns, at -inf).

NDA negatives come in two forms:
- per-sample, `nda` (B, M, D): query i is contrasted with the M NDA views of its own image (the
  paper's Appendix N: NDA of the query image and of the key image, M = 2);
- batch, `nda` (M, D): every query is contrasted with all M NDA views of the batch (Appendix M:
  "negative augmentation of the query image batch as negatives for that batch").

Both functions return `(loss, logits)`: loss the mean over queries, a scalar; logits (B, columns)
already divided by the temperature (and shifted by log(w) on the NDA columns).
- `info_nce`: columns [positive, N negatives, M NDA]; the target of every row is column 0.
- `info_nce_in_batch` (SimCLR / CPC style: the negatives of query i are the other rows'
  positives): columns [B positives, M NDA]; the target of row i is column i.

Gradients flow to every input given; a caller that encodes negatives without gradient (MoCo's
momentum encoder) passes them detached.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from negaug.registry import Registry, check_bool, check_float

OBJECTIVES = Registry("contrastive objective")

MIN_TEMPERATURE = 1e-4  # below this exp(1 / temperature) overflows float32 logits' softmax range


def check_temperature(value: float) -> float:
    return check_float("temperature", value, MIN_TEMPERATURE)


def check_nda_weight(value: float) -> float:
    return check_float("nda_weight", value, 0.0)


def nda_similarities(query: Tensor, nda: Tensor) -> Tensor:
    """(B, M): query (B, D) against NDA views, per-sample (B, M, D) or batch (M, D)."""
    if nda.ndim == 3:
        if nda.shape[0] != query.shape[0] or nda.shape[2] != query.shape[1]:
            raise ValueError(f"per-sample NDA negatives must be (B, M, D) = ({query.shape[0]}, M, {query.shape[1]}), "
                             f"got {tuple(nda.shape)}")
        return torch.einsum("bd,bmd->bm", query, nda)
    if nda.ndim != 2 or nda.shape[1] != query.shape[1]:
        raise ValueError(f"NDA negatives must be (B, M, D) per sample or (M, D) for the batch with D = {query.shape[1]}, "
                         f"got {tuple(nda.shape)}")
    return query @ nda.T


def _check_pair(query: Tensor, positive: Tensor) -> None:
    if query.ndim != 2 or positive.shape != query.shape:
        raise ValueError(f"query and positive must both be (B, D), got {tuple(query.shape)} and {tuple(positive.shape)}")


def _normalize(*tensors: Tensor | None) -> list[Tensor | None]:
    return [None if t is None else F.normalize(t, dim=-1) for t in tensors]


def _with_nda(logits: Tensor, nda_logits: Tensor | None, nda_weight: float) -> Tensor:
    """`logits` (B, P) with the NDA columns (B, M) appended, shifted by log(nda_weight)."""
    if nda_logits is None:
        return logits
    if nda_weight == 0:
        nda_logits = torch.full_like(nda_logits, -math.inf)
    elif nda_weight != 1:
        nda_logits = nda_logits + math.log(nda_weight)
    return torch.cat([logits, nda_logits], 1)


def _loss(logits: Tensor, plain_columns: int, target: Tensor, nda_weight: float) -> Tensor:
    """Cross-entropy; with nda_weight 0 on the plain columns only (exactly plain InfoNCE)."""
    return F.cross_entropy(logits[:, :plain_columns] if nda_weight == 0 else logits, target)


def info_nce(query: Tensor, positive: Tensor, negatives: Tensor | None = None, nda: Tensor | None = None,
             temperature: float = 0.07, nda_weight: float = 1.0, normalize: bool = True) -> tuple[Tensor, Tensor]:
    """Eq. 8 with explicit negatives (MoCo's queue): query and positive (B, D), negatives (N, D) or
    None, nda (B, M, D) per sample, (M, D) for the batch, or None. Returns (loss, logits (B, 1 + N + M)),
    the target column 0. nda None or M = 0: plain InfoNCE, bit-identical."""
    _check_pair(query, positive)
    temperature, nda_weight = check_temperature(temperature), check_nda_weight(nda_weight)
    if negatives is not None and (negatives.ndim != 2 or negatives.shape[1] != query.shape[1]):
        raise ValueError(f"negatives must be (N, {query.shape[1]}), got {tuple(negatives.shape)}")
    if normalize:
        query, positive, negatives, nda = _normalize(query, positive, negatives, nda)
    columns = [(query * positive).sum(1, keepdim=True)]  # (B, 1)
    if negatives is not None:
        columns.append(query @ negatives.T)  # (B, N)
    plain = torch.cat(columns, 1).div(temperature)
    nda_logits = None if nda is None else nda_similarities(query, nda).div(temperature)
    logits = _with_nda(plain, nda_logits, nda_weight)
    target = torch.zeros(query.shape[0], dtype=torch.long, device=query.device)
    return _loss(logits, plain.shape[1], target, nda_weight), logits


def info_nce_in_batch(query: Tensor, positive: Tensor, nda: Tensor | None = None, temperature: float = 0.07,
                      nda_weight: float = 1.0, normalize: bool = True) -> tuple[Tensor, Tensor]:
    """Eq. 8 with in-batch negatives: query i against every positive p_j (j != i: negatives) and
    the NDA negatives. query and positive (B, D), nda as in `info_nce`. Returns (loss, logits
    (B, B + M)), the target of row i column i."""
    _check_pair(query, positive)
    temperature, nda_weight = check_temperature(temperature), check_nda_weight(nda_weight)
    if normalize:
        query, positive, nda = _normalize(query, positive, nda)
    plain = (query @ positive.T).div(temperature)  # (B, B)
    nda_logits = None if nda is None else nda_similarities(query, nda).div(temperature)
    logits = _with_nda(plain, nda_logits, nda_weight)
    target = torch.arange(query.shape[0], device=query.device)
    return _loss(logits, plain.shape[1], target, nda_weight), logits


class Objective:
    """A configured objective: `objective(query, positive, negatives=None, nda=None) -> (loss, logits)`;
    `target(logits) -> (B,)` the column of each row's positive."""

    def __init__(self, temperature: float = 0.07, nda_weight: float = 1.0, normalize: bool = True):
        self.temperature = check_temperature(temperature)
        self.nda_weight = check_nda_weight(nda_weight)
        self.normalize = check_bool("normalize", normalize)

    def options(self) -> dict:
        return {"temperature": self.temperature, "nda_weight": self.nda_weight, "normalize": self.normalize}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.options().items())})"


@OBJECTIVES.register("infonce")
class InfoNCE(Objective):
    __doc__ = "`info_nce` (explicit negatives, e.g. MoCo's queue). " + Objective.__doc__

    def __call__(self, query: Tensor, positive: Tensor, negatives: Tensor | None = None,
                 nda: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return info_nce(query, positive, negatives, nda, **self.options())

    def target(self, logits: Tensor) -> Tensor:
        return torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)


@OBJECTIVES.register("infonce_in_batch")
class InfoNCEInBatch(Objective):
    __doc__ = "`info_nce_in_batch` (the other rows' positives are the negatives). " + Objective.__doc__

    def __call__(self, query: Tensor, positive: Tensor, negatives: Tensor | None = None,
                 nda: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if negatives is not None:
            raise ValueError("infonce_in_batch takes its negatives from the batch; use 'infonce' for explicit negatives")
        return info_nce_in_batch(query, positive, nda, **self.options())

    def target(self, logits: Tensor) -> Tensor:
        return torch.arange(logits.shape[0], device=logits.device)
