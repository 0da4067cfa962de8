"""Training-health monitors: warnings a user can act on, from what the run already logs, for
every kind of run (`HealthMonitor`: runs with a discriminator, GAN and Pix2Pix; `EncoderHealth`:
runs without one, MoCo-v2 pretraining and DPC).

    monitor = HealthMonitor()
    monitor.check_log(record)            # at every log line -> new warnings (each kind once)
    monitor.check_samples(step, samples) # at every sample grid -> new warnings

Three signs that a GAN is not learning, each cheap to see from the logged means:
- D beats G: every D loss term sits near 0 for at least `floor_steps` steps (losses whose terms are
  non-negative: hinge, minimax, non-saturating, least squares), so G gets almost no gradient;
- D scores the generated images differently in its own step and in G's step (opposite signs and
  far apart): D can tell the two steps apart, the signature of the batch-norm collapse;
- the samples collapsed: the fixed-latent grid is far less diverse than real images.

Three signs that an encoder (contrastive pretraining) is not learning:
- the loss has not fallen: after `judge_after` steps it is still within 2% of its first logged
  value (a learning rate too low or too high, or views the encoder cannot tell apart); judged only
  in a session that started the run (a resumed session's first logged loss is a trained one) and
  never on the first log line itself;
- the embeddings collapsed: a query is about as close to other images' keys as to its own
  (`queue_similarity`, the mean cosine with the negatives, above `collapse_similarity` after
  `judge_after` steps);
- the k-NN monitor (validation split) sits at chance level: the features carry no class.
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
    # what the D-floor warning tells the user to do: keys the kind has (Pix2Pix has neither spectral
    # norm nor a gradient penalty: "lower optim.lr_d or loss.d_scale")
    floor_fix: str = "lower optim.lr_d, add spectral norm or a gradient penalty"
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
                                    f"(its loss terms are ~0): G gets almost no gradient; {self.floor_fix}")
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
        return _once(self.warned, kind, message)


def health_section(warnings: list[str], healthy: str) -> list[str]:
    """The "Health (this session)" section of a run's report.md, for every kind: its warnings, or
    `healthy` (what was checked and found fine) when there were none."""
    return ["", "## Health (this session)", "", *([f"- {message}" for message in warnings] or [f"- no warning: {healthy}"])]


ENCODER_HEALTHY = "the loss fell, the embeddings did not collapse, the k-NN monitor stayed above chance"


def _once(warned: set[str], kind: str, message: str) -> list[str]:
    """[message] the first time a kind of warning is found, [] after (each kind warns once)."""
    if kind in warned:
        return []
    warned.add(kind)
    return [message]


@dataclass
class EncoderHealth:
    """The health of a run that trains an encoder without a discriminator (MoCo-v2, DPC): reads
    the `loss` (and, from MoCo-v2, `queue_similarity`) of each log record and the k-NN monitor."""

    judge_after: int = 300  # judge the loss's progress and collapse from this step on (an untrained
    # encoder maps all images close together: a tiny one's mean cosine with the negatives is ~0.8)
    stall_fraction: float = 0.98  # still above this fraction of the first logged loss -> warning
    collapse_similarity: float = 0.8  # mean cosine of queries with their negatives above this -> collapsed
    chance_margin: float = 1.5  # k-NN accuracy below this many times chance (1 / classes) -> warning
    # the step the session started from: the loss's progress is judged only in a session that
    # started the run (0); a resumed session's first logged loss is already a trained one
    start_step: int = 0
    # what the stall warning tells the user to do (DPC: "try another optim.lr or loss.temperature")
    stall_fix: str = "try another optim.lr, and check that the augmented views still show the images"
    first_loss: float | None = None
    warned: set[str] = field(default_factory=set)

    def check_log(self, record: dict[str, Any]) -> list[str]:
        """Warnings from one log line (the means since the previous one)."""
        step, loss, found = int(record["step"]), record.get("loss"), []
        if isinstance(loss, float) and self.start_step == 0:
            if self.first_loss is None:
                self.first_loss = loss
            elif step >= self.judge_after and loss >= self.stall_fraction * self.first_loss:  # never the first line itself
                found += _once(self.warned, "stall", f"step {step}: the loss has not fallen ({self.first_loss:.3f} at "
                               f"the first log line, {loss:.3f} now): the encoder is not learning; {self.stall_fix}")
        similarity = record.get("queue_similarity")
        if isinstance(similarity, float) and step >= self.judge_after and similarity > self.collapse_similarity:
            found += _once(self.warned, "collapse", f"step {step}: the embeddings collapsed (a query's mean cosine "
                           f"with the negatives is {similarity:.2f}): every image maps near one point; lower "
                           f"optim.lr or raise objective.temperature")
        return found

    def check_knn(self, step: int, accuracy: float, num_classes: int) -> list[str]:
        """Warnings from the k-NN monitor's accuracy (validation split) of `num_classes` classes."""
        chance = 1.0 / max(num_classes, 1)
        if num_classes >= 2 and accuracy < self.chance_margin * chance:
            return _once(self.warned, "knn_chance", f"step {step}: the k-NN accuracy ({accuracy:.3f}) is near "
                         f"chance ({chance:.3f}): the features carry no class yet; see the loss and the learning rate")
        return []
