"""A training-health monitor: warnings a user can act on, from what the run already logs.

    monitor = HealthMonitor()
    monitor.check_log(record)            # at every log line -> new warnings (each kind once)
    monitor.check_samples(step, samples) # at every sample grid -> new warnings

Three signs that a GAN is not learning, each cheap to see from the logged means:
- D beats G: every D loss term sits near 0 for at least `floor_steps` steps (losses whose terms are
  non-negative: hinge, minimax, non-saturating, least squares), so G gets almost no gradient;
- D scores the generated images differently in its own step and in G's step (opposite signs and
  far apart): D can tell the two steps apart, the signature of the batch-norm collapse;
- the samples collapsed: the fixed-latent grid is far less diverse than real images.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

D_TERMS = ("loss/d_real", "loss/d_fake")


def mean_pairwise_distance(batch: torch.Tensor) -> float:
    """Mean L2 distance between the distinct pairs of a batch (N, ...), N >= 2."""
    flat = batch.detach().float().flatten(1)
    distances = torch.cdist(flat, flat)
    n = flat.shape[0]
    return float(distances.sum() / (n * (n - 1)))


@dataclass
class HealthMonitor:
    floor_steps: int = 500  # D's terms near 0 for this many steps -> warning
    floor_value: float = 0.02  # "near 0" for the sum of D's terms
    step_gap: float = 1.0  # |D(G(z)) in the D step - in the G step| that, with opposite signs, warns
    collapse_ratio: float = 0.15  # sample diversity / real diversity below this -> warning
    collapse_after: int = 500  # an untrained G's samples are all alike: judge collapse from this step on
    real_diversity: float | None = None  # mean pairwise distance of real images (set once)
    warned: set[str] = field(default_factory=set)
    _floor_since: int | None = None

    def check_log(self, record: dict[str, Any]) -> list[str]:
        """Warnings from one log line (losses and mean D outputs since the previous one)."""
        step, found = int(record["step"]), []
        terms = [record.get(name) for name in D_TERMS]
        if all(isinstance(t, float) and t >= 0 for t in terms):
            if sum(terms) < self.floor_value:
                self._floor_since = step if self._floor_since is None else self._floor_since
            else:
                self._floor_since = None
            if self._floor_since is not None and step - self._floor_since >= self.floor_steps:
                found += self._once("d_floor", f"step {step}: D has beaten G for {step - self._floor_since} steps "
                                    f"(its loss terms are ~0): G gets almost no gradient; lower optim.lr_d, add "
                                    f"spectral norm or a gradient penalty")
        d_step, g_step = record.get("d_out/generated"), record.get("d_out/generated_g_step")
        if isinstance(d_step, float) and isinstance(g_step, float) and d_step * g_step < 0 \
                and abs(d_step - g_step) > self.step_gap:
            found += self._once("step_gap", f"step {step}: D scores generated images {d_step:+.2f} in its own step "
                                f"but {g_step:+.2f} in G's step: D tells the two steps apart (batch statistics?); "
                                f"see the discriminator contract in docs/models.md")
        return found

    def set_real(self, real: torch.Tensor) -> None:
        """The diversity of real images (N >= 2), the yardstick of `check_samples`."""
        self.real_diversity = mean_pairwise_distance(real)

    def check_samples(self, step: int, samples: torch.Tensor) -> list[str]:
        """Warnings from a sample grid (N >= 2 samples of the fixed latents)."""
        if self.real_diversity is None or self.real_diversity <= 0 or samples.shape[0] < 2 \
                or step < self.collapse_after:
            return []
        ratio = mean_pairwise_distance(samples) / self.real_diversity
        if ratio < self.collapse_ratio:
            return self._once("collapse", f"step {step}: the samples collapsed (their diversity is {ratio:.0%} of real "
                              f"images'); see samples/ and consider another loss, NDA setting or learning rate")
        return []

    def _once(self, kind: str, message: str) -> list[str]:
        if kind in self.warned:
            return []
        self.warned.add(kind)
        return [message]
