"""The neural-net distance of Arora et al. 2017 ("Generalization and Equilibrium in GANs"), Sec. 3.

    d_F(P, Q) = sup_{f in F} E_P f(x) - E_Q f(x)

over a critic class F of bounded capacity: here a FRESH MLP of stated width and depth whose every
parameter is clipped to [-clip, clip] after each step (the WGAN critic class, Arjovsky et al.
2017, which Arora et al. use as their example of a bounded, Lipschitz class). The sup is
approximated by ``steps`` Adam steps on one half of each set (the "fit" halves, seeded) and the
distance is reported on the other halves (the held-out estimate, what Arora's generalisation
bound speaks of), with the fit-half value alongside (an optimistic, in-sample estimate).

Limitation (Arora et al., Sec. 3-4): a critic of p parameters cannot tell a distribution from a
mixture of ~p log p / eps^2 of its samples, so a generator that memorises its training set
scores about as well as the data itself (see docs/training.md, "The neural-net distance").
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from negaug.metrics.protocol import library_versions


def mlp_critic(in_features: int, width: int = 64, depth: int = 2) -> nn.Module:
    """Flatten -> ``depth`` x (Linear(width) + LeakyReLU(0.2)) -> Linear(1): one score per row."""
    layers: list[nn.Module] = [nn.Flatten()]
    size = in_features
    for _ in range(depth):
        layers += [nn.Linear(size, width), nn.LeakyReLU(0.2)]
        size = width
    layers.append(nn.Linear(size, 1))
    return nn.Sequential(*layers)


def _halves(x: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    order = torch.randperm(x.shape[0], generator=generator)
    half = x.shape[0] // 2
    return x[order[:half]], x[order[half:]]


def _gap(critic: nn.Module, real: Tensor, fake: Tensor) -> float:
    with torch.no_grad():
        return float(critic(real).mean() - critic(fake).mean())


def neural_net_distance(real: Tensor, fake: Tensor, width: int = 64, depth: int = 2, steps: int = 200,
                        clip: float = 0.01, lr: float = 1e-3, batch_size: int = 256, seed: int = 0,
                        make_critic: Callable[[int], nn.Module] | None = None) -> dict:
    """Held-out neural-net distance between ``real`` and ``fake`` (N, ...) samples (any shape, rows
    flattened; images in [-1, 1] or 2-D points).

    A fresh critic (``make_critic(in_features)``, default ``mlp_critic(in_features, width, depth)``,
    initialised from ``seed``) maximises ``E_real f - E_fake f`` on the fit halves with Adam(lr,
    betas (0.5, 0.999)) for ``steps`` steps of ``batch_size`` rows per set, clipping every
    parameter to [-clip, clip] after each step. Returns {"value": the gap on the held-out halves,
    "train_value": the gap on the fit halves, "protocol": {...}}; values >= 0 up to sampling noise,
    0 = the critic class cannot tell the sets apart. Deterministic for a given ``seed`` on CPU."""
    if min(real.shape[0], fake.shape[0]) < 4:
        raise ValueError("neural_net_distance needs at least 4 real and 4 generated samples (2 per half)")
    if real.shape[1:] != fake.shape[1:]:
        raise ValueError(f"real samples have shape {tuple(real.shape[1:])} but generated {tuple(fake.shape[1:])}")
    if steps < 1 or clip <= 0 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be >= 1 and clip > 0, got {steps}, {batch_size}, {clip}")
    generator = torch.Generator().manual_seed(seed)
    real, fake = real.detach().float().flatten(1), fake.detach().float().flatten(1)
    (real_fit, real_out), (fake_fit, fake_out) = _halves(real, generator), _halves(fake, generator)
    with torch.random.fork_rng(devices=[]):  # the critic's init from `seed`, the global RNG untouched
        torch.manual_seed(seed)
        critic = make_critic(real.shape[1]) if make_critic else mlp_critic(real.shape[1], width, depth)
    critic = critic.to(real.device)
    optimizer = torch.optim.Adam(critic.parameters(), lr=lr, betas=(0.5, 0.999))
    for _ in range(steps):
        r = real_fit[torch.randint(real_fit.shape[0], (batch_size,), generator=generator)]
        f = fake_fit[torch.randint(fake_fit.shape[0], (batch_size,), generator=generator)]
        loss = critic(f).mean() - critic(r).mean()  # minimise -(E_real f - E_fake f)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            for p in critic.parameters():
                p.clamp_(-clip, clip)
    protocol = {
        "critic": "custom" if make_critic else f"mlp(width={width}, depth={depth}, leaky_relu 0.2)",
        "critic_parameters": sum(p.numel() for p in critic.parameters()),
        "objective": "wgan: sup_f E_real f - E_fake f, weights clipped to [-clip, clip]", "clip": clip,
        "steps": steps, "batch_size": batch_size, "optimizer": f"adam(lr={lr}, betas=(0.5, 0.999))",
        "num_fit": [real_fit.shape[0], fake_fit.shape[0]], "num_held_out": [real_out.shape[0], fake_out.shape[0]],
        "space": "flattened samples", "seed": seed, "versions": library_versions(),
    }
    return {"value": _gap(critic, real_out, fake_out), "train_value": _gap(critic, real_fit, fake_fit),
            "protocol": protocol}
