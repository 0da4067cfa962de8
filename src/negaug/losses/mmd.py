"""Maximum mean discrepancy with a mixture of Gaussian kernels (Gretton et al. 2012), as a
statistic and as a generator objective without a discriminator (generative moment matching
networks: Li, Swersky & Zemel 2015; Dziugaite, Roy & Ghahramani 2015).

    k(a, b) = sum_s exp(-||a - b||^2 / (2 s^2))          (s in ``sigmas``)
    MMD^2_biased(x, y)   = mean k(x, x') + mean k(y, y') - 2 mean k(x, y)      (all pairs, i = j kept)
    MMD^2_unbiased(x, y) = the same with the i = j terms dropped from the two within-set means

The biased estimate is the squared distance between the kernel mean embeddings of the two
empirical distributions (>= 0); the unbiased one has expectation MMD^2 and can be slightly negative.

GMMN's code (yujiali/gmmn, core/generative.py) differs in two conventions: its bandwidth is a
variance, k = exp(-||a - b||^2 / (2 sigma)), where negaug's ``sigmas`` are standard deviations
(their sigma = our s^2: their 1, 4, 16 are our 1, 2, 4); and its generator objective
(SqrtGaussianKernelMmdLoss) is sqrt(MMD^2_biased), offered here as ``MMDLoss(sqrt=True)``
(``loss.options.sqrt=true``); the default objective is MMD^2_biased.
"""
from __future__ import annotations

import torch
from torch import Tensor

from negaug.losses.base import LOSSES, GANLoss, check_lam
from negaug.registry import check_bool, check_float, check_list

DEFAULT_SIGMAS = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0)  # toy scale (0.1-2) to 32-px pixel space (10-20)


def gaussian_kernel_mixture(x: Tensor, y: Tensor, sigmas: tuple[float, ...] | list[float]) -> Tensor:
    """sum_s exp(-||x_i - y_j||^2 / (2 s^2)) for x (N, F), y (M, F) -> (N, M), in x's dtype."""
    sq = (x.pow(2).sum(1, keepdim=True) + y.pow(2).sum(1)[None] - 2 * x @ y.T).clamp_min(0)  # (N, M)
    scales = torch.tensor([1.0 / (2 * s * s) for s in sigmas], dtype=x.dtype, device=x.device)
    return torch.exp(-sq[None] * scales[:, None, None]).sum(0)


def mmd2(x: Tensor, y: Tensor, sigmas: tuple[float, ...] | list[float] = DEFAULT_SIGMAS,
         unbiased: bool = False) -> Tensor:
    """MMD^2 between samples x (N, ...) and y (M, ...) (flattened to vectors), a scalar.

    ``unbiased`` drops the i = j terms of the within-set means (needs N, M >= 2). Differentiable in
    both arguments. ``sigmas``: bandwidths of the Gaussian kernels, summed.
    """
    sigmas = [check_float("mmd sigma", s, low=0.0, open_low=True) for s in check_list("mmd sigmas", sigmas, min_length=1)]
    x, y = x.flatten(1), y.flatten(1)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"mmd2 needs samples of one size, got {x.shape[1]} and {y.shape[1]} features")
    n, m = x.shape[0], y.shape[0]
    k_xx, k_yy, k_xy = (gaussian_kernel_mixture(a, b, sigmas) for a, b in ((x, x), (y, y), (x, y)))
    if not unbiased:
        return k_xx.mean() + k_yy.mean() - 2 * k_xy.mean()
    if n < 2 or m < 2:
        raise ValueError(f"the unbiased MMD^2 needs at least 2 samples per set, got {n} and {m}")
    within_x = (k_xx.sum() - k_xx.diagonal().sum()) / (n * (n - 1))
    within_y = (k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    return within_x + within_y - 2 * k_xy.mean()


@LOSSES.register("mmd")
class MMDLoss(GANLoss):
    """GMMN: G minimises MMD^2(G(z), data) in the data space (pixels for images, as Li et al. on
    MNIST; the points for the 2-D toys); there is no discriminator step.

    With NDA (eq. 3: the fake side is ``lam * G + (1 - lam) * NDA``) G minimises the MMD^2 between
    the data P and that mixture. Expanding the kernel mean embeddings (mu_mix = lam mu_G +
    (1 - lam) mu_N),

        MMD^2(P, lam G + (1 - lam) N) = lam * [MMD^2(G, P) - (1 - lam) MMD^2(G, N)] + (1 - lam) MMD^2(P, N),

    and the last term does not depend on G, so ``generator_loss`` is
    ``MMD^2(G, P) - (1 - lam) * MMD^2(G, NDA(P))``: attraction to the data, repulsion from the
    negatives. With the biased estimator the identity holds exactly batch for batch (the estimates
    are squared distances of empirical mean embeddings), which a test checks.
    """

    name = "mmd"
    uses_discriminator = False

    def __init__(self, sigmas: list | tuple = DEFAULT_SIGMAS, unbiased: bool = False, sqrt: bool = False):
        items = check_list("mmd sigmas", sigmas, min_length=1)
        self.sigmas = tuple(check_float("mmd sigmas", s, low=1e-6, high=1e6) for s in items)
        self.unbiased = check_bool("mmd unbiased", unbiased)
        self.sqrt = check_bool("mmd sqrt", sqrt)  # GMMN's objective: sqrt(MMD^2) of the fake side

    def generator_loss(self, fake: Tensor, real: Tensor, negatives: Tensor | None = None,
                       lam: float = 1.0) -> tuple[Tensor, dict[str, Tensor]]:
        """(loss, terms): ``MMD^2(fake, real) - (1 - lam) * MMD^2(fake, negatives)`` on (B, ...)
        batches, float32 at least; terms "mmd_real" and (with negatives) "mmd_negative", detached."""
        fake, real = fake.float(), real.float()
        attract = mmd2(fake, real, self.sigmas, self.unbiased)
        terms = {"mmd_real": attract.detach()}
        if self.sqrt:  # sqrt(MMD^2(P, lam G + (1 - lam) N)), the identity above plus its G-free term
            mixture = attract
            if negatives is not None and check_lam(lam) < 1.0:
                negatives = negatives.float()
                mixture = lam * (attract - (1 - lam) * mmd2(fake, negatives, self.sigmas, self.unbiased)) \
                    + (1 - lam) * mmd2(real, negatives, self.sigmas, self.unbiased)
            return mixture.clamp_min(1e-20).sqrt(), terms
        if negatives is None or check_lam(lam) == 1.0:
            return attract, terms
        repel = mmd2(fake, negatives.float(), self.sigmas, self.unbiased)
        terms["mmd_negative"] = repel.detach()
        return attract - (1.0 - lam) * repel, terms

    def d_loss(self, *args, **kwargs):
        raise ValueError("the mmd loss has no discriminator: use MMDLoss.generator_loss (GMMN)")

    def g_loss(self, *args, **kwargs):
        raise ValueError("the mmd loss needs samples, not D outputs: use MMDLoss.generator_loss (GMMN)")
