"""Generator-driven random draws that torch does not offer with a `torch.Generator`.

Every function draws on `generator.device` and only from `generator`: the global RNG is never
touched, so the same generator state always gives the same draw.
"""
from __future__ import annotations

import math

import torch

# Rejection loops (derangements, jigsaw's identity redraw) accept each candidate with probability
# >= 1/3 (derangements of 3 items), so this bound is never reached in practice: (2/3)^200 < 1e-35.
MAX_REJECTION_ROUNDS = 200


def resolve_generator(generator: torch.Generator | None) -> torch.Generator:
    """`generator`, or a fresh CPU generator seeded from OS entropy when None.

    `torch.Generator().seed()` draws its seed from the operating system, not from torch's default
    generator, so leaving `generator=None` neither reads nor advances the global RNG state.
    """
    if generator is None:
        generator = torch.Generator()
        generator.seed()
    elif not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    return generator


def derangement(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A uniformly random derangement of range(n): int64 (n,) on the generator's device,
    `perm[i] != i` for every i.

    Uniform permutations (`torch.randperm`) are drawn until one has no fixed point: each is
    accepted with probability ~1/e (at least 1/3), and the accepted one is uniform over all
    derangements. Pairing transforms use it so that no image is ever paired with itself
    (`randperm` alone leaves about one fixed point per batch).
    """
    if n < 2:
        raise ValueError(f"a derangement needs at least 2 items (got {n}): pairing transforms need a batch of 2 or more images")
    generator = resolve_generator(generator)
    identity = torch.arange(n, device=generator.device)
    for _ in range(MAX_REJECTION_ROUNDS):
        perm = torch.randperm(n, generator=generator, device=generator.device)
        if not bool((perm == identity).any()):
            return perm
    raise RuntimeError("derangement: rejection sampling did not terminate")


def sample_log_gamma(concentration: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """log of one Gamma(concentration[i], 1) draw per element, float64 of concentration's shape.

    Concentrations below 1 are boosted in log space, log Gamma(a) = log Gamma(a + 1) + log(U) / a,
    so tiny concentrations do not underflow to 0. The Gamma(>= 1) draws come from torch's
    Marsaglia-Tsang sampler (`torch._standard_gamma`, which takes a generator and exists in every
    torch >= 2.1; one kernel instead of a rejection loop of small ops: 7 us instead of 145 us for
    128 draws).
    """
    options = dict(generator=generator, device=generator.device, dtype=torch.float64)
    concentration = concentration.to(device=generator.device, dtype=torch.float64).flatten()
    boosted = concentration < 1.0
    shape = torch.where(boosted, concentration + 1.0, concentration)
    log_draws = torch._standard_gamma(shape, generator=generator).log()
    u = 1.0 - torch.rand(shape.numel(), **options)  # (0, 1]: the log stays finite
    return torch.where(boosted, log_draws + u.log() / concentration, log_draws)


def sample_beta(alpha: float, beta: float, n: int, generator: torch.Generator) -> torch.Tensor:
    """n draws from Beta(alpha, beta), float64 (n,) in [0, 1]: G1 / (G1 + G2) for independent
    Gamma draws. With both concentrations >= 1 (mixup's alpha = 25) the Gamma draws cannot
    underflow and the ratio is computed directly (5 ops); below 1 it is sigmoid(log G1 - log G2)
    from the log-space sampler, which stays exact for tiny concentrations."""
    if not (math.isfinite(alpha) and math.isfinite(beta) and alpha >= 1e-300 and beta >= 1e-300):
        # subnormal concentrations underflow the log-space draws to NaN
        raise ValueError(f"Beta concentrations must be finite and >= 1e-300, got alpha={alpha}, beta={beta}")
    device = generator.device
    if min(alpha, beta) >= 1.0:
        concentration = torch.full((2, n), float(alpha), dtype=torch.float64, device=device)
        if beta != alpha:
            concentration[1] = float(beta)
        first, second = torch._standard_gamma(concentration, generator=generator)
        return first / (first + second)
    concentration = torch.tensor([float(alpha), float(beta)], dtype=torch.float64).repeat_interleave(n)
    log_gamma = sample_log_gamma(concentration, generator)
    return torch.sigmoid(log_gamma[:n] - log_gamma[n:])
