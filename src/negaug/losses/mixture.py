"""The losses of the MIX+GAN game (Arora et al. 2017, Sec. 5) over `negaug.models.mixture`'s
mixtures, and one plain training step of it (for library users; `negaug train` calls the two
losses from its own steps):

    L_D = sum_ij wG_i wD_j L_D(G_i, D_j) + beta * R(wD)      (D side, minimised over D_j and wD)
    L_G = sum_ij wG_i wD_j L_G(G_i, D_j) + beta * R(wG)      (G side, minimised over G_i and wG)

with R `negaug.models.mixture.mixture_regulariser` (its docstring gives both forms). With NDA each
D_j's fake side is ``lam * (G mixture) + (1 - lam) * NDA`` (eq. 3 of Sinha et al.).

    mix = MixGAN([mlp()[0] for _ in range(3)], [mlp()[1] for _ in range(3)])
    terms = mixgan_step(mix, losses.build("nonsaturating"), real, negatives, 0.5, d_opt, g_opt, rng)
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from negaug.losses.base import GANLoss
from negaug.models.mixture import MixGAN, MixtureDiscriminator, call_member, entropy, mixture_regulariser

# how a loss calls member D_j on samples x (and labels): `call_member` by default; `negaug train`
# passes the critic's (negaug.experiment.critic.member_scorer: its channels_last and autocast)
Scorer = Callable[[nn.Module, Tensor, "Tensor | None"], Tensor]


def mixed_d_loss(mix: MixGAN | MixtureDiscriminator, loss: GANLoss, real: Tensor, fakes: list[Tensor],
                 negatives: Tensor | None, lam: float | None, entropy_weight: float,
                 g_weights: Tensor | None = None, labels: Tensor | None = None,
                 regulariser: str = "log", scorer: Scorer = call_member) -> tuple[Tensor, dict[str, Tensor]]:
    """L_D = sum_ij wG_i wD_j loss.d_loss(D_j(real), D_j(fakes[i]), D_j(negatives), lam) + beta R(wD).

    ``mix``: a MixGAN, or a MixtureDiscriminator with ``g_weights`` (K,) given; wG is a constant
    here (the D step does not move the generators' weights). ``labels`` (B,) for conditional D's.
    Returned terms: the wG wD-weighted pair terms (``d_real``, ``d_fake``, ...), ``d_pairs``,
    ``d_entropy`` and the mixture's mean scores ``out_real`` / ``out_generated`` / ``out_negative``
    (sum_j wD_j D_j and, for generated, also over wG_i), detached."""
    D_mix = mix.discriminator if isinstance(mix, MixGAN) else mix
    w_g = (mix.g_weights() if g_weights is None else g_weights).detach()
    w_d = D_mix.weights()
    total = real.new_zeros(())
    terms: dict[str, Tensor] = {}
    out = {"out_real": 0.0, "out_generated": 0.0, "out_negative": 0.0}
    for j, D in enumerate(D_mix.members):
        d_real = scorer(D, real, labels).float()
        d_neg = scorer(D, negatives, labels).float() if negatives is not None else None
        out["out_real"] = out["out_real"] + w_d[j].detach() * d_real.detach().mean()
        if d_neg is not None:
            out["out_negative"] = out["out_negative"] + w_d[j].detach() * d_neg.detach().mean()
        for i, fake in enumerate(fakes):
            d_fake = scorer(D, fake.detach(), labels).float()
            pair, pair_terms = loss.d_loss(d_real, d_fake, d_neg, lam)
            weight = w_g[i] * w_d[j]
            total = total + weight * pair
            for name, value in pair_terms.items():
                terms[name] = terms.get(name, 0.0) + weight.detach() * value.detach()
            out["out_generated"] = out["out_generated"] + weight.detach() * d_fake.detach().mean()
    h = entropy(w_d)
    if negatives is None:
        out.pop("out_negative")
    return total + entropy_weight * mixture_regulariser(w_d, regulariser), {**terms, "d_pairs": total.detach(), "d_entropy": h.detach(),
                                        **{k: torch.as_tensor(v) for k, v in out.items()}}


def mixed_g_loss(mix: MixGAN | MixtureDiscriminator, loss: GANLoss, fakes: list[Tensor], entropy_weight: float,
                 real: Tensor | None = None, g_weights: Tensor | None = None,
                 labels: Tensor | None = None, real_labels: Tensor | None = None,
                 regulariser: str = "log", scorer: Scorer = call_member) -> tuple[Tensor, dict[str, Tensor]]:
    """L_G = sum_ij wG_i wD_j loss.g_loss(D_j(fakes[i]), D_j(real)) + beta R(wG); wD a constant.

    ``mix``: a MixGAN, or a MixtureDiscriminator with ``g_weights`` (K,) given (with its graph:
    the G step trains the generators' weights). ``real`` only for losses that pair with a real
    batch (``loss.pairs_with_real``). Terms: ``g_pairs``, ``g_entropy``, ``out_generated``."""
    D_mix = mix.discriminator if isinstance(mix, MixGAN) else mix
    w_g = mix.g_weights() if g_weights is None else g_weights
    w_d = D_mix.weights().detach()
    total = fakes[0].new_zeros((), dtype=torch.float32)
    out_generated = 0.0
    for j, D in enumerate(D_mix.members):
        d_real = scorer(D, real, real_labels).float() if loss.pairs_with_real else None
        for i, fake in enumerate(fakes):
            d_fake = scorer(D, fake, labels).float()
            total = total + w_g[i] * w_d[j] * (loss.g_loss(d_fake, d_real) if d_real is not None else loss.g_loss(d_fake))
            out_generated = out_generated + (w_g[i] * w_d[j]).detach() * d_fake.detach().mean()
    h = entropy(w_g)
    return total + entropy_weight * mixture_regulariser(w_g, regulariser), {"g_pairs": total.detach(), "g_entropy": h.detach(),
                                        "out_generated": torch.as_tensor(out_generated)}


def mixgan_step(mix: MixGAN, loss: GANLoss, real: Tensor, negatives: Tensor | None, lam: float | None,
                d_opt: torch.optim.Optimizer, g_opt: torch.optim.Optimizer, generator: torch.Generator,
                entropy_weight: float = 0.1, regulariser: str = "log") -> dict[str, float]:
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
    d_total, d_terms = mixed_d_loss(mix, loss, real, fakes, negatives, lam, entropy_weight, regulariser=regulariser)
    d_opt.zero_grad(set_to_none=True)
    d_total.backward()
    d_opt.step()
    z = torch.randn(B, mix.latent_dim, generator=generator).to(device)
    g_total, g_terms = mixed_g_loss(mix, loss, mix.every_generator(z), entropy_weight, real, regulariser=regulariser)
    g_opt.zero_grad(set_to_none=True)
    g_total.backward()
    g_opt.step()
    logged = {"loss/d": float(d_total.detach()), "loss/g": float(g_total.detach()), **{k: float(v) for k, v in {**d_terms, **g_terms}.items()}}
    logged.update({f"mix/g_weight{i}": float(w) for i, w in enumerate(mix.g_weights().detach())})
    logged.update({f"mix/d_weight{j}": float(w) for j, w in enumerate(mix.d_weights().detach())})
    return logged
