"""Exponential moving average of the generator's weights (as BigGAN and the NDA authors: decay
0.9999 from iteration 1000; samples and FID come from the average)."""
from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from negaug.registry import check_float, check_int


class EMA:
    """``.module`` is a frozen copy of G whose parameters track an exponential average of G's.

    ``update(G, step)``: for ``step < start_step`` the copy takes G's weights exactly (early weights
    change too fast to be worth averaging); from ``start_step`` on every parameter becomes
    ``decay * ema + (1 - decay) * param``. Buffers (batch-norm statistics, spectral-norm vectors)
    are always copied, not averaged. The copy is in eval mode with ``requires_grad`` off.
    """

    def __init__(self, G: nn.Module, decay: float = 0.9999, start_step: int = 1000):
        self.decay = check_float("EMA decay", decay, 0.0, 1.0, open_high=True)  # e.g. 0.9999
        self.start_step = check_int("EMA start_step", start_step, low=0)
        self.module = copy.deepcopy(G).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, G: nn.Module, step: int) -> None:
        """Fold G's current weights into the average; call after each G optimiser step."""
        ema_params = list(self.module.parameters())
        params = [p.detach() for p in G.parameters()]
        if step < self.start_step:
            torch._foreach_copy_(ema_params, params)
        else:
            # lerp(ema, p, 1 - decay) = ema + (1 - decay) (p - ema): one fused pass over all tensors.
            torch._foreach_lerp_(ema_params, params, 1.0 - self.decay)
        for ema_buf, buf in zip(self.module.buffers(), G.buffers()):
            ema_buf.copy_(buf)

    def state_dict(self) -> dict[str, Tensor]:
        """The averaged module's tensors (flat name -> tensor; safe for safetensors)."""
        return self.module.state_dict()

    def load_state_dict(self, state_dict: dict[str, Tensor]) -> None:
        self.module.load_state_dict(state_dict)

    def refresh_batch_norm_stats(self, num_classes: int = 0, seed: int = 0, **options) -> nn.Module:
        """Standing statistics for the averaged module (see `recompute_batch_norm_stats`); call
        before sampling in eval mode. Returns the module."""
        recompute_batch_norm_stats(self.module, num_classes=num_classes, seed=seed, **options)
        return self.module


@torch.no_grad()
def recompute_batch_norm_stats(G: nn.Module, num_batches: int = 16, batch_size: int = 64, num_classes: int = 0,
                               seed: int = 0) -> None:
    """"Standing statistics" (BigGAN): set every batch-norm layer's running mean and variance to
    their average over `num_batches` batches of G's own samples (latents from a generator seeded
    with `seed`), so eval-mode sampling from averaged weights uses statistics that match them.

    Why: the EMA copies G's running statistics, which belong to G's current weights, not to the
    averaged ones; eval-mode samples from the EMA then show speckle noise. G's mode is restored;
    the global RNG is not used. A G without batch norm is left as it is.
    """
    norms = [m for m in G.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    was_training = G.training
    G.train()
    gen = torch.Generator().manual_seed(seed)
    device = next(G.parameters()).device
    try:
        for _ in range(num_batches):
            z = G.sample_latent(batch_size, generator=gen, device=device)
            y = torch.randint(num_classes, (batch_size,), generator=gen).to(device) if num_classes else None
            G(z, y)
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        G.train(was_training)
