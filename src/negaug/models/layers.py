"""Blocks shared by the architecture families: class-conditional batch norm, the projection head,
weight initialisation and spectral normalisation."""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from negaug.models.base import INIT_SCHEMES, require_labels

_WEIGHTED = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)


class ClassBatchNorm2d(nn.Module):
    """Batch norm whose gain and bias are looked up per class (conditional BN, de Vries et al. 2017;
    Miyato & Koyama 2018). With ``num_classes == 0`` it is an ordinary affine ``BatchNorm2d``.

    ``forward(x (B, C, H, W), y (B,) or None) -> (B, C, H, W)``. Gains start at 1 and biases at 0,
    so every class starts from plain batch norm. They are plain parameters, not ``nn.Embedding``,
    so that weight init and spectral norm (which target embeddings) leave them alone.
    """

    def __init__(self, num_features: int, num_classes: int = 0):
        super().__init__()
        self.num_classes = num_classes
        self.norm = nn.BatchNorm2d(num_features, affine=num_classes == 0)
        if num_classes > 0:
            self.gain = nn.Parameter(torch.ones(num_classes, num_features))
            self.bias = nn.Parameter(torch.zeros(num_classes, num_features))

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        x = self.norm(x)
        y = require_labels(y, self.num_classes)
        if y is None:
            return x
        return x * self.gain[y][:, :, None, None] + self.bias[y][:, :, None, None]


class MinibatchDiscrimination(nn.Module):
    """Minibatch discrimination (Salimans et al. 2016, sec. 3.2): features f (B, A) -> (B, A + K).

    ``M = f T`` with T (A, K, C) gives each sample K rows of C numbers; ``c_k(i, j) =
    exp(-||M_i,k - M_j,k||_1)`` and ``o(x_i)_k = sum_{j != i} c_k(i, j) + b_k``, appended to f: the
    forward of improved-gan's ``MinibatchLayer`` (openai/improved-gan, mnist_svhn_cifar10/nn.py),
    which masks j = i with ``1e6 * eye`` and adds a bias b per kernel. Not as their layer: T is a
    plain weight (theirs is weight-normalised, theta * exp(log_weight_scale) / ||theta||) and there
    is no data-dependent init (theirs sets b and the scale from the first batch); b starts at 0.
    A sample's output depends on the rest of the batch by design (``mixes_samples``): a D using
    it must declare ``batch_dependent = True``. Batched: O(B^2 K C) memory, no loop over samples.
    Checkpoints from before the bias (negaug < 0.5 summed j = i too) load with b = 1: the same outputs.
    """

    mixes_samples = True  # read by `negaug.models.base.has_batch_statistics`

    def __init__(self, in_features: int, num_kernels: int, kernel_dim: int = 5):
        super().__init__()
        self.num_kernels, self.kernel_dim = num_kernels, kernel_dim
        # N(0, 0.05) as Salimans et al.; a plain parameter, so init_weights and spectral norm leave it alone
        self.T = nn.Parameter(0.05 * torch.randn(in_features, num_kernels, kernel_dim))
        self.bias = nn.Parameter(torch.zeros(num_kernels))

    def forward(self, f: Tensor) -> Tensor:
        m = torch.einsum("ba,akc->bkc", f, self.T.to(f.dtype))  # (B, K, C)
        l1 = (m[:, None] - m[None]).abs().sum(-1)  # (B, B, K): ||M_i,k - M_j,k||_1
        others = ~torch.eye(f.shape[0], dtype=torch.bool, device=f.device)[:, :, None]  # (B, B, 1): j != i
        o = (torch.exp(-l1) * others).sum(dim=1) + self.bias.to(f.dtype)  # (B, K)
        return torch.cat([f, o], dim=1)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        if prefix + "T" in state_dict and prefix + "bias" not in state_dict:  # saved before the bias: j = i was summed
            state_dict[prefix + "bias"] = torch.ones(self.num_kernels, dtype=state_dict[prefix + "T"].dtype)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class ProjectionHead(nn.Module):
    """Discriminator head ``w . phi + b (+ embed(y) . phi)`` (projection discriminator, Miyato &
    Koyama 2018). ``forward(features (B, F), y (B,) or None) -> (B,)`` raw scores.

    ``minibatch_kernels > 0`` puts a ``MinibatchDiscrimination`` layer in the feature path:
    ``phi = [f, o(f)]`` of F + minibatch_kernels numbers (the head then depends on the batch)."""

    def __init__(self, num_features: int, num_classes: int = 0, minibatch_kernels: int = 0,
                 minibatch_kernel_dim: int = 5):
        super().__init__()
        self.num_classes = num_classes
        self.minibatch = (MinibatchDiscrimination(num_features, minibatch_kernels, minibatch_kernel_dim)
                          if minibatch_kernels > 0 else None)
        num_features += minibatch_kernels
        self.linear = nn.Linear(num_features, 1)
        self.embed = nn.Embedding(num_classes, num_features) if num_classes > 0 else None

    def forward(self, features: Tensor, y: Tensor | None = None) -> Tensor:
        if self.minibatch is not None:
            features = self.minibatch(features)  # (B, F + K)
        out = self.linear(features).squeeze(1)  # (B,)
        y = require_labels(y, self.num_classes)
        if y is None:
            return out
        return out + (self.embed(y) * features).sum(dim=1)


def init_weights(module: nn.Module, scheme: str = "normal") -> None:
    """Initialise every conv, linear and embedding weight of ``module``; biases to 0.

    "normal": N(0, 0.02), as DCGAN (Radford et al.) and the NDA authors' BigGAN code; "xavier":
    Xavier-uniform; "orthogonal": orthogonal; "default": PyTorch's own init, untouched.
    Batch-norm gains and class-conditional gains keep their 1 / 0 start. Call before spectral norm.
    """
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"unknown init '{scheme}'; valid: {', '.join(INIT_SCHEMES)}")
    if scheme == "default":
        return
    for m in module.modules():
        if not isinstance(m, _WEIGHTED):
            continue
        if scheme == "normal":
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif scheme == "xavier":
            nn.init.xavier_uniform_(m.weight)
        else:
            nn.init.orthogonal_(m.weight)
        if getattr(m, "bias", None) is not None:
            nn.init.zeros_(m.bias)


def apply_spectral_norm(module: nn.Module) -> nn.Module:
    """Spectrally normalise every conv, linear and embedding weight of ``module`` in place
    (``torch.nn.utils.parametrizations.spectral_norm``: one power iteration per training forward).
    Returns ``module``."""
    for m in list(module.modules()):
        if isinstance(m, _WEIGHTED):
            spectral_norm(m)
    return module


def finish(module: nn.Module, init: str, use_spectral_norm: bool) -> nn.Module:
    """Initialise, then (optionally) spectrally normalise: SN's power iteration starts from the
    final weights, so the estimated singular value is right from the first step."""
    init_weights(module, init)
    return apply_spectral_norm(module) if use_spectral_norm else module
