"""MIX+GAN (Arora et al. 2017, "Generalization and Equilibrium in GANs", Sec. 5): K generators
and K' discriminators with learned mixture weights, each side's weights the softmax of its logits.

The mixed game's payoff is the expectation of the pairwise payoff under both mixtures:

    L_D = sum_ij wG_i wD_j L_D(G_i, D_j) + beta * R(wD)      (D side, minimised over D_j and wD)
    L_G = sum_ij wG_i wD_j L_G(G_i, D_j) + beta * R(wG)      (G side, minimised over G_i and wG)

with beta = ``entropy_weight`` and R the regulariser of ``regulariser``:
- "log" (default): R(w) = -(1/K) sum_k log(w_k + 1e-6), as Arora et al.'s code
  (PrincetonML/MIX-plus-GANs, cifar10/train_mixgan.py: ``T.sum((-1./ng) * T.log(G_weights +
  0.000001))`` added with ``mix_entloss_weight`` = 0.1, the weights a ``softmax_weights`` layer);
  its gradient in the logits is w_k - 1/K (up to the 1e-6), so the pull back to uniform stays of
  order one near a collapsed mixture;
- "entropy": R(w) = -H(w) = sum_k w_k log w_k (negaug before 0.5); its gradient
  -w_k (log w_k + H) vanishes as the mixture collapses: with 3 components it is 7.2 times weaker
  than the "log" form's at w = (0.98, 0.01, 0.01), 12.5 at (0.99, 0.005, 0.005), 48 at (0.998,
  0.001, 0.001) (`tests/test_classic_mix.py`).
Both are smallest at uniform weights, so minimising the loss pulls each side's weights towards
uniform and discourages the mixture from collapsing onto one component. Each side's pairwise loss is any negaug ``GANLoss``; the other side's
weights are constants in it. With NDA (eq. 3 of Sinha et al.) each D_j's fake side is
``lam * (G mixture) + (1 - lam) * NDA``: ``L_D(G_i, D_j) = loss.d_loss(D_j(x), D_j(G_i(z)),
D_j(negatives), lam)``, so summed over i with weights wG the fake side is exactly that mixture.

Each side is one module with negaug's G / D interface, so `negaug train` (``model.mixture=K``)
checkpoints, averages (EMA), samples and evaluates a mixture like any other pair:
- ``MixtureGenerator``: latents carry one extra coordinate u ~ U[0, 1), the component draw, so
  ``G(z)`` is a deterministic function of ``z`` and ``sample_latent`` samples the mixture exactly
  (component i with probability wG_i, by inverse CDF of the weights at u);
- ``MixtureDiscriminator``: ``D(x)`` is the mixture's expected score sum_j wD_j D_j(x) (for uses
  outside training, e.g. anomaly scoring); training uses each D_j's own scores.

    mix = MixGAN([mlp()[0] for _ in range(3)], [mlp()[1] for _ in range(3)])
    points, component = mix.sample(1000, torch.Generator().manual_seed(0))

The mixed game's losses and one training step (`mixed_d_loss`, `mixed_g_loss`, `mixgan_step`)
live in `negaug.losses.mixture`: models hold no training code and import nothing from losses.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from negaug.models.base import is_batch_dependent

MAX_COMPONENTS = 16


REGULARISERS = ("log", "entropy")
LOG_EPS = 1e-6  # Arora et al.'s code: T.log(weights + 0.000001)


def entropy(weights: Tensor) -> Tensor:
    """H(w) = -sum w log w of a probability vector (K,), in nats; 0 log 0 = 0."""
    return -(weights * torch.log(weights.clamp_min(1e-30))).sum()


def mixture_regulariser(weights: Tensor, regulariser: str = "log") -> Tensor:
    """R(w) of a probability vector (K,), a scalar smallest at uniform weights: "log" =
    -(1/K) sum log(w + 1e-6) (Arora et al.'s code), "entropy" = -H(w)."""
    if regulariser == "log":
        return -torch.log(weights + LOG_EPS).mean()
    if regulariser == "entropy":
        return -entropy(weights)
    raise ValueError(f"mixture regulariser '{regulariser}' is not one of {', '.join(REGULARISERS)}")


def call_member(module: nn.Module, x: Tensor, labels: Tensor | None) -> Tensor:
    """One member G_i or D_j on `x`, with `labels` when it is conditional."""
    return module(x) if labels is None else module(x, labels)


class MixtureGenerator(nn.Module):
    """K generators of one output shape and latent size with mixture logits ``logits`` (K,),
    zeros at start (uniform). Input: z (B, noise_dim + 1), the last column the component draw u."""

    def __init__(self, generators: list[nn.Module]):
        super().__init__()
        if not 1 <= len(generators) <= MAX_COMPONENTS:
            raise ValueError(f"a mixture needs 1..{MAX_COMPONENTS} generators, got {len(generators)}")
        if len({int(G.latent_dim) for G in generators}) != 1:
            raise ValueError("MixGAN: every generator must have the same latent_dim (they share latents)")
        self.members = nn.ModuleList(generators)
        self.logits = nn.Parameter(torch.zeros(len(generators)))
        self.noise_dim = int(generators[0].latent_dim)
        self.latent_dim = self.noise_dim + 1  # the size of z this module takes: noise and u
        self.num_classes = int(getattr(generators[0], "num_classes", 0) or 0)

    def weights(self) -> Tensor:
        """(K,) softmax of ``logits``: sums to 1."""
        return self.logits.softmax(dim=0)

    def sample_latent(self, n: int, generator: torch.Generator | None = None,
                      device: torch.device | str | None = None) -> Tensor:
        """(n, noise_dim + 1): standard normal noise and, last, u ~ U[0, 1), from ``generator``."""
        if device is None:
            device = self.logits.device
        noise = torch.randn(n, self.noise_dim, generator=generator, device=device)
        return torch.cat([noise, torch.rand(n, 1, generator=generator, device=device)], dim=1)

    def components(self, z: Tensor) -> Tensor:
        """(B,) int64: the component of each latent, i with probability wG_i when u ~ U[0, 1)."""
        edges = self.weights().detach().cumsum(0)[:-1].to(z.dtype)
        return torch.searchsorted(edges, z[:, -1].contiguous(), right=True)

    def every(self, z: Tensor, labels: Tensor | None = None) -> list[Tensor]:
        """[G_i(noise) for each i], each (B, ...): every member on the whole batch (the G step)."""
        noise = z[:, :self.noise_dim]
        return [call_member(G, noise, labels) for G in self.members]

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        """Samples of the mixture (B, ...): row b from component ``components(z)[b]``. Every member
        runs on the whole batch (as in training, so batch-norm statistics match the G step)."""
        outputs = torch.stack(self.every(z, labels))  # (K, B, ...)
        component = self.components(z)
        return outputs[component, torch.arange(z.shape[0], device=z.device)]


class MixtureDiscriminator(nn.Module):
    """K' discriminators with mixture logits ``logits`` (K',), zeros at start (uniform)."""

    def __init__(self, discriminators: list[nn.Module]):
        super().__init__()
        if not 1 <= len(discriminators) <= MAX_COMPONENTS:
            raise ValueError(f"a mixture needs 1..{MAX_COMPONENTS} discriminators, got {len(discriminators)}")
        self.members = nn.ModuleList(discriminators)
        self.logits = nn.Parameter(torch.zeros(len(discriminators)))
        self.batch_dependent = any(is_batch_dependent(D) for D in discriminators)

    def weights(self) -> Tensor:
        """(K',) softmax of ``logits``: sums to 1."""
        return self.logits.softmax(dim=0)

    def every(self, x: Tensor, labels: Tensor | None = None) -> list[Tensor]:
        """[D_j(x) for each j], each (B,) raw scores."""
        return [call_member(D, x, labels) for D in self.members]

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        """(B,) the mixture's expected score sum_j wD_j D_j(x)."""
        return torch.einsum("j,jb->b", self.weights().to(x.dtype), torch.stack(self.every(x, labels)))


class MixGAN(nn.Module):
    """A ``MixtureGenerator`` (``.generator``) and a ``MixtureDiscriminator`` (``.discriminator``)."""

    def __init__(self, generators: list[nn.Module], discriminators: list[nn.Module]):
        super().__init__()
        if not generators or not discriminators:
            raise ValueError("MixGAN needs at least one generator and one discriminator")
        self.generator = MixtureGenerator(generators)
        self.discriminator = MixtureDiscriminator(discriminators)
        self.latent_dim = self.generator.noise_dim  # the members' latent size

    @property
    def generators(self) -> nn.ModuleList:
        return self.generator.members

    @property
    def discriminators(self) -> nn.ModuleList:
        return self.discriminator.members

    @property
    def g_logits(self) -> nn.Parameter:
        return self.generator.logits

    @property
    def d_logits(self) -> nn.Parameter:
        return self.discriminator.logits

    def g_weights(self) -> Tensor:
        return self.generator.weights()

    def d_weights(self) -> Tensor:
        return self.discriminator.weights()

    def generator_parameters(self) -> list[nn.Parameter]:
        return list(self.generator.parameters())

    def discriminator_parameters(self) -> list[nn.Parameter]:
        return list(self.discriminator.parameters())

    def every_generator(self, noise: Tensor) -> list[Tensor]:
        """[G_i(noise) for each i]: each (B, ...) from the same noise (B, latent_dim)."""
        return [G(noise) for G in self.generators]

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator, device: str | torch.device = "cpu") -> tuple[Tensor, Tensor]:
        """``n`` samples of the mixture and the component of each (n,); latents from
        ``generator`` (CPU): component i with probability wG_i."""
        z = self.generator.sample_latent(n, generator=generator, device="cpu").to(device)
        return self.generator(z), self.generator.components(z).cpu()
