"""MIX+GAN (Arora et al. 2017, "Generalization and Equilibrium in GANs", Sec. 5): K generators
and K' discriminators with learned mixture weights, each side's weights the softmax of its logits.

The mixed game's payoff is the expectation of the pairwise payoff under both mixtures:

    L_D = sum_ij wG_i wD_j L_D(G_i, D_j) - beta * H(wD)      (D side, minimised over D_j and wD)
    L_G = sum_ij wG_i wD_j L_G(G_i, D_j) - beta * H(wG)      (G side, minimised over G_i and wG)

with H(w) = -sum_k w_k log w_k (beta = ``entropy_weight``). The entropy term enters each side's
loss with a minus sign, so minimising the loss *raises* the entropy of that side's weights: it
pulls them towards uniform and discourages the mixture from collapsing onto one component (Arora
et al.'s regulariser). Each side's pairwise loss is any negaug ``GANLoss``; the other side's
weights are constants in it. With NDA (eq. 3 of Sinha et al.) each D_j's fake side is
``lam * (G mixture) + (1 - lam) * NDA``: ``L_D(G_i, D_j) = loss.d_loss(D_j(x), D_j(G_i(z)),
D_j(negatives), lam)``, so summed over i with weights wG the fake side is exactly that mixture.

    mix = MixGAN([mlp()[0] for _ in range(3)], [mlp()[1] for _ in range(3)])
    terms = mixgan_step(mix, losses.build("nonsaturating"), real, negatives, 0.5, d_opt, g_opt, rng)
    points, component = mix.sample(1000, torch.Generator().manual_seed(0))
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from negaug.losses.base import GANLoss


def entropy(weights: Tensor) -> Tensor:
    """H(w) = -sum w log w of a probability vector (K,), in nats; 0 log 0 = 0."""
    return -(weights * torch.log(weights.clamp_min(1e-30))).sum()


class MixGAN(nn.Module):
    """K generators and K' discriminators (any negaug G / D of one data shape and latent size)
    with mixture logits ``g_logits`` (K,) and ``d_logits`` (K',), zeros at start (uniform)."""

    def __init__(self, generators: list[nn.Module], discriminators: list[nn.Module]):
        super().__init__()
        if not generators or not discriminators:
            raise ValueError("MixGAN needs at least one generator and one discriminator")
        if len({int(G.latent_dim) for G in generators}) != 1:
            raise ValueError("MixGAN: every generator must have the same latent_dim (they share latents)")
        self.generators, self.discriminators = nn.ModuleList(generators), nn.ModuleList(discriminators)
        self.g_logits = nn.Parameter(torch.zeros(len(generators)))
        self.d_logits = nn.Parameter(torch.zeros(len(discriminators)))
        self.latent_dim = int(generators[0].latent_dim)

    def g_weights(self) -> Tensor:
        """(K,) softmax of ``g_logits``: sums to 1."""
        return self.g_logits.softmax(dim=0)

    def d_weights(self) -> Tensor:
        """(K',) softmax of ``d_logits``: sums to 1."""
        return self.d_logits.softmax(dim=0)

    def generator_parameters(self) -> list[nn.Parameter]:
        return [*self.generators.parameters(), self.g_logits]

    def discriminator_parameters(self) -> list[nn.Parameter]:
        return [*self.discriminators.parameters(), self.d_logits]

    def every_generator(self, z: Tensor) -> list[Tensor]:
        """[G_i(z) for each i]: each (B, ...) from the same latents z (B, latent_dim)."""
        return [G(z) for G in self.generators]

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator, device: str | torch.device = "cpu") -> tuple[Tensor, Tensor]:
        """``n`` samples of the mixture and the component of each (n,): component i drawn with
        probability wG_i, then G_i(z), z ~ N(0, I); all randomness from ``generator`` (CPU)."""
        component = torch.multinomial(self.g_weights().detach().cpu(), n, replacement=True, generator=generator)
        z = torch.randn(n, self.latent_dim, generator=generator).to(device)
        out = None
        for i, G in enumerate(self.generators):
            rows = (component == i).nonzero().squeeze(1).to(device)
            if rows.numel() == 0:
                continue
            x = G(z[rows])
            out = x.new_empty(n, *x.shape[1:]) if out is None else out
            out[rows] = x
        return out, component


def mixed_d_loss(mix: MixGAN, loss: GANLoss, real: Tensor, fakes: list[Tensor], negatives: Tensor | None,
                 lam: float | None, entropy_weight: float) -> tuple[Tensor, dict[str, Tensor]]:
    """L_D = sum_ij wG_i wD_j loss.d_loss(D_j(real), D_j(fakes[i]), D_j(negatives), lam) - beta H(wD);
    wG is a constant here (the D step does not move the generators' weights)."""
    w_g, w_d = mix.g_weights().detach(), mix.d_weights()
    total = real.new_zeros(())
    for j, D in enumerate(mix.discriminators):
        d_real = D(real)
        d_neg = D(negatives) if negatives is not None else None
        for i, fake in enumerate(fakes):
            pair, _ = loss.d_loss(d_real, D(fake.detach()), d_neg, lam)
            total = total + w_g[i] * w_d[j] * pair
    h = entropy(w_d)
    return total - entropy_weight * h, {"d_pairs": total.detach(), "d_entropy": h.detach()}


def mixed_g_loss(mix: MixGAN, loss: GANLoss, fakes: list[Tensor], entropy_weight: float,
                 real: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
    """L_G = sum_ij wG_i wD_j loss.g_loss(D_j(fakes[i]), D_j(real)) - beta H(wG); wD a constant.
    ``real`` only for losses that pair with a real batch (``loss.pairs_with_real``)."""
    w_g, w_d = mix.g_weights(), mix.d_weights().detach()
    total = fakes[0].new_zeros(())
    for j, D in enumerate(mix.discriminators):
        d_real = D(real) if loss.pairs_with_real else None
        for i, fake in enumerate(fakes):
            total = total + w_g[i] * w_d[j] * loss.g_loss(D(fake), d_real)
    h = entropy(w_g)
    return total - entropy_weight * h, {"g_pairs": total.detach(), "g_entropy": h.detach()}


def mixgan_step(mix: MixGAN, loss: GANLoss, real: Tensor, negatives: Tensor | None, lam: float | None,
                d_opt: torch.optim.Optimizer, g_opt: torch.optim.Optimizer, generator: torch.Generator,
                entropy_weight: float = 0.01) -> dict[str, float]:
    """One D step then one G step of the mixed game on a real batch (B, ...) and its NDA
    negatives (or None); latents (B, latent_dim) drawn from ``generator`` (CPU), shared by the G_i.
    ``d_opt`` holds ``mix.discriminator_parameters()``, ``g_opt`` ``mix.generator_parameters()``.
    Returns the logged terms as floats (losses, entropies, both weight vectors)."""
    if not loss.uses_discriminator or loss.clip_value is not None or loss.gp_weight:
        raise ValueError(f"mixgan_step supports losses with a plain D step; '{loss.name}' needs more")
    B, device = real.shape[0], real.device
    z = torch.randn(B, mix.latent_dim, generator=generator).to(device)
    with torch.no_grad():
        fakes = mix.every_generator(z)
    d_total, d_terms = mixed_d_loss(mix, loss, real, fakes, negatives, lam, entropy_weight)
    d_opt.zero_grad(set_to_none=True)
    d_total.backward()
    d_opt.step()
    z = torch.randn(B, mix.latent_dim, generator=generator).to(device)
    g_total, g_terms = mixed_g_loss(mix, loss, mix.every_generator(z), entropy_weight, real)
    g_opt.zero_grad(set_to_none=True)
    g_total.backward()
    g_opt.step()
    logged = {"loss/d": float(d_total.detach()), "loss/g": float(g_total.detach()), **{k: float(v) for k, v in {**d_terms, **g_terms}.items()}}
    logged.update({f"mix/g_weight{i}": float(w) for i, w in enumerate(mix.g_weights().detach())})
    logged.update({f"mix/d_weight{j}": float(w) for j, w in enumerate(mix.d_weights().detach())})
    return logged
