"""Feature matching (Salimans et al. 2016, "Improved techniques for training GANs", sec. 3.1): G
matches the mean of D's intermediate features on real data, ``||E f(x) - E f(G(z))||_2^2``, with f
the discriminator's penultimate features (``D.features``)."""
from __future__ import annotations

from torch import Tensor


def feature_matching_loss(real_features: Tensor, fake_features: Tensor) -> Tensor:
    """``||mean_i f(x_i) - mean_j f(G(z_j))||^2`` for (B_r, F) and (B_f, F) features, a scalar >= 0.

    The real features are detached: the loss trains G only (D's features are a fixed target
    during the G step). Features (B, ...) of more dimensions are flattened per sample.
    """
    real_mean = real_features.detach().flatten(1).float().mean(0)  # (F,)
    fake_mean = fake_features.flatten(1).float().mean(0)
    if real_mean.shape != fake_mean.shape:
        raise ValueError(f"feature matching needs features of one size, got {real_mean.numel()} and {fake_mean.numel()}")
    return (real_mean - fake_mean).square().sum()
