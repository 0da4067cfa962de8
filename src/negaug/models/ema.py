"""Exponential moving average of the generator's weights (as BigGAN and the NDA authors: decay
0.9999 from iteration 1000; samples and FID come from the average)."""
from __future__ import annotations

import copy

import torch
from torch import Tensor, nn


class EMA:
    """``.module`` is a frozen copy of G whose parameters track an exponential average of G's.

    ``update(G, step)``: for ``step < start_step`` the copy takes G's weights exactly (early weights
    change too fast to be worth averaging); from ``start_step`` on every parameter becomes
    ``decay * ema + (1 - decay) * param``. Buffers (batch-norm statistics, spectral-norm vectors)
    are always copied, not averaged. The copy is in eval mode with ``requires_grad`` off.
    """

    def __init__(self, G: nn.Module, decay: float = 0.9999, start_step: int = 1000):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay={decay} must be in [0, 1) (e.g. 0.9999)")
        self.decay = float(decay)
        self.start_step = int(start_step)
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
