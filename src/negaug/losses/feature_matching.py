"""Feature matching (Salimans et al. 2016, "Improved techniques for training GANs", sec. 3.1): G
matches the mean of D's intermediate features on real data, ``||E f(x) - E f(G(z))||_2^2``, with f
the discriminator's penultimate features (``D.features``).

The default sums the squared differences over the features, the paper's formula; improved-gan's
code (openai/improved-gan, mnist_svhn_cifar10/train_cifar_feature_matching.py: ``loss_gen =
T.mean(abs(m1-m2))``) averages their absolute values instead, ``reduction="mean_abs"``.
Their code also *replaces* G's GAN loss with it, where negaug adds it (``loss.feature_matching``
weighs it in the G loss)."""
from __future__ import annotations

from torch import Tensor

REDUCTIONS = ("sum", "mean_abs")


def feature_matching_loss(real_features: Tensor, fake_features: Tensor, reduction: str = "sum") -> Tensor:
    """``||mean_i f(x_i) - mean_j f(G(z_j))||^2`` for (B_r, F) and (B_f, F) features, a scalar >= 0
    (``reduction="mean_abs"``: ``mean_f |mean_i f(x_i) - mean_j f(G(z_j))|``, improved-gan's code).

    The real features are detached: the loss trains G only (D's features are a fixed target
    during the G step). Features (B, ...) of more dimensions are flattened per sample.
    """
    real_mean = real_features.detach().flatten(1).float().mean(0)  # (F,)
    fake_mean = fake_features.flatten(1).float().mean(0)
    if real_mean.shape != fake_mean.shape:
        raise ValueError(f"feature matching needs features of one size, got {real_mean.numel()} and {fake_mean.numel()}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"feature matching reduction '{reduction}' is not one of {', '.join(REDUCTIONS)}")
    difference = real_mean - fake_mean
    return difference.square().sum() if reduction == "sum" else difference.abs().mean()
