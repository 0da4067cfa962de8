"""Theorem 2 made visible: how far an encoder puts NDA samples from the data they came from.

    d = cosine_distance(model.encoder_q, x, nda_x)   # (B,): 1 - cos(h(x_i), h(nda_x_i))

Figure 9 of the paper plots this distance for MoCo-v2 with and without jigsaw NDA: with NDA, the
representations of an image and of its jigsaw lie far apart; without, close. `negaug.contrastive.toy`
is a 2-D problem where the answer is known (the data and its NDA have disjoint supports).
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from negaug.registry import check_int

Encoder = nn.Module | Callable[[Tensor], Tensor]


@torch.no_grad()
def representations(encoder: Encoder, x: Tensor, batch_size: int = 512) -> Tensor:
    """encoder(x) (N, F) in eval mode (BN uses its running statistics; a module's mode is
    restored afterwards), `batch_size` samples at a time, without gradient."""
    batch_size = check_int("batch_size", batch_size, 1)
    module = encoder if isinstance(encoder, nn.Module) else None
    was_training = module.training if module is not None else False
    if module is not None:
        module.eval()
    try:
        return torch.cat([encoder(chunk) for chunk in x.split(batch_size)])
    finally:
        if module is not None:
            module.train(was_training)


def cosine_distance(encoder: Encoder, x: Tensor, nda_x: Tensor, batch_size: int = 512) -> Tensor:
    """(B,) float: 1 - cos(h(x_i), h(nda_x_i)) in [0, 2], h = `encoder` in eval mode. `x` (B, ...)
    are samples, `nda_x` their NDA views, (B, ...) (one each) or (B, M, ...) (M each: the mean
    distance over the M views)."""
    if nda_x.shape[0] != x.shape[0] or nda_x.shape[-(x.ndim - 1):] != x.shape[1:] or nda_x.ndim not in (x.ndim, x.ndim + 1):
        raise ValueError(f"nda_x must be (B, ...) or (B, M, ...) for x of shape {tuple(x.shape)}, got {tuple(nda_x.shape)}")
    h = F.normalize(representations(encoder, x, batch_size), dim=1)  # (B, F)
    per_sample = nda_x.ndim == x.ndim + 1
    flat = nda_x.flatten(0, 1) if per_sample else nda_x
    h_nda = F.normalize(representations(encoder, flat, batch_size), dim=1)
    h_nda = h_nda.view(x.shape[0], -1, h.shape[1])  # (B, M, F)
    return (1 - torch.einsum("bf,bmf->bm", h, h_nda)).mean(1)


def nearest_data_distance(encoder: Encoder, x: Tensor, nda_x: Tensor, batch_size: int = 512) -> Tensor:
    """(M,) float: for each NDA sample (rows of `nda_x` (M, ...)), the cosine distance from its
    representation to the nearest representation of the data `x` (N, ...). Theorem 2's disjoint
    supports show as a minimum above 0; overlapping supports as a minimum near 0."""
    h = F.normalize(representations(encoder, x, batch_size), dim=1)  # (N, F)
    h_nda = F.normalize(representations(encoder, nda_x, batch_size), dim=1)  # (M, F)
    return 1 - (h_nda @ h.T).amax(1)
