"""The contract every generator and discriminator honours, and the model registry.

Generator: ``G(z, y=None) -> x`` with ``z`` (B, latent_dim) and ``y`` (B,) int64 labels.
Discriminator: ``D(x, y=None) -> (B,)`` raw scores, ``D(x, y) == D.head(D.features(x), y)``, and
``D.batch_dependent``: whether, in train mode, one sample's score depends on the rest of the batch
(batch norm does; spectral, layer, group and instance norm do not). The training loop reads it to
decide how to call D (``negaug.experiment.steps.score``); a test checks every registered model's declaration.
Conditional models (``num_classes > 0``) require ``y``; unconditional ones ignore it, so a loop
can always pass the dataset's labels (0 for unlabeled data).
"""
from __future__ import annotations

import math
import numbers
from typing import Any

import torch
from torch import Tensor, nn

from negaug.registry import Registry, check_bool, check_choice, check_int, short

MODELS = Registry("model")

INIT_SCHEMES = ("normal", "xavier", "orthogonal", "default")
# Bounds on sizes: far above any GAN built here, far below a size that fails deep inside torch
# (an overflow or an allocation of terabytes) instead of saying which option is wrong.
MAX_IMAGE_SIZE = 1024
MAX_UNITS = 8192  # channels, widths, latent and data dimensions
MAX_CLASSES = 100_000
MAX_DEPTH = 64


def require_labels(y: Tensor | None, num_classes: int) -> Tensor | None:
    """``y`` for a conditional model (ValueError if missing), None for an unconditional one."""
    if num_classes == 0:
        return None
    if y is None:
        raise ValueError(f"this model is conditional ({num_classes} classes): pass labels y (B,) int64")
    return y


def check_power_of_two(image_size: int, smallest: int, model: str) -> int:
    """log2(image_size) for an int power of two in ``smallest``..MAX_IMAGE_SIZE; ValueError otherwise."""
    is_int = isinstance(image_size, numbers.Integral) and not isinstance(image_size, bool)
    if not is_int or not smallest <= image_size <= MAX_IMAGE_SIZE or image_size & (image_size - 1):
        raise ValueError(
            f"model '{model}' needs image_size a power of two in {smallest}..{MAX_IMAGE_SIZE} (e.g. 32 or 64), "
            f"got {short(image_size)}; resize the data (data.image_size)"
        )
    return int(math.log2(image_size))


def check_minibatch_options(model: str, minibatch_discrimination: Any, minibatch_kernel_dim: Any) -> tuple[int, int]:
    """(kernels, kernel_dim) of the minibatch-discrimination option (0 kernels: off); ValueError
    naming the option otherwise."""
    kernels = check_int(f"{model} minibatch_discrimination", minibatch_discrimination, 0, MAX_UNITS)
    return kernels, check_int(f"{model} minibatch_kernel_dim", minibatch_kernel_dim, 1, 256)


def check_network_options(model: str, num_classes: Any, width: Any, latent_dim: Any, init: Any,
                          flags: dict[str, Any]) -> None:
    """ValueError naming the option unless the options every model shares are of the right type
    and range: ``num_classes`` (0 = unconditional), ``width``, ``latent_dim``, ``init`` and the
    boolean ``flags`` (spectral_norm, ...)."""
    check_int(f"{model} num_classes", num_classes, 0, MAX_CLASSES)
    check_int(f"{model} width", width, 1, MAX_UNITS)
    check_int(f"{model} latent_dim", latent_dim, 1, MAX_UNITS)
    check_choice(f"{model} init", init, INIT_SCHEMES)
    for key, value in flags.items():
        check_bool(f"{model} {key}", value)


class Generator(nn.Module):
    """Base generator: holds ``latent_dim`` and ``num_classes``, samples the latent prior."""

    def __init__(self, latent_dim: int, num_classes: int = 0):
        super().__init__()
        self.latent_dim = int(latent_dim)
        self.num_classes = int(num_classes)

    def sample_latent(
        self, n: int, generator: torch.Generator | None = None, device: torch.device | str | None = None
    ) -> Tensor:
        """(n, latent_dim) float32 standard normal latents drawn from ``generator``.

        ``device`` defaults to the device of the model's parameters; ``generator`` must live there.
        """
        if device is None:
            device = next(self.parameters()).device
        return torch.randn(n, self.latent_dim, generator=generator, device=device)


class Discriminator(nn.Module):
    """Base discriminator: ``forward`` is ``head(features(x), y)``; subclasses define ``features``,
    set ``self.projection`` (a ``layers.ProjectionHead``) and declare ``batch_dependent``."""

    projection: nn.Module
    # True when, in train mode, the score of one sample depends on the other samples of the batch
    # (batch statistics). Subclasses must set it; `has_batch_statistics` is the structural check.
    batch_dependent: bool

    def features(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def head(self, features: Tensor, y: Tensor | None = None) -> Tensor:
        """(B, F) features, (B,) labels -> (B,) raw scores."""
        return self.projection(features, y)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        return self.head(self.features(x), y)


def has_batch_statistics(module: nn.Module) -> bool:
    """Whether ``module`` holds a layer that normalises with statistics of the batch in train
    mode (any ``nn.BatchNorm*`` or ``nn.SyncBatchNorm``) or that mixes samples by design (a layer
    with ``mixes_samples = True``: minibatch discrimination)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) or getattr(m, "mixes_samples", False) is True
               for m in module.modules())


def is_batch_dependent(discriminator: nn.Module) -> bool:
    """The discriminator's declaration (`Discriminator.batch_dependent`); for a user's own module
    without one, whether it holds batch-norm layers."""
    declared = getattr(discriminator, "batch_dependent", None)
    return has_batch_statistics(discriminator) if declared is None else bool(declared)
