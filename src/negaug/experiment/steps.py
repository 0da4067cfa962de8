"""One discriminator step and one generator step of an NDA-GAN.

NDA enters training in exactly one place, `discriminator_step`, whatever the loss and the
architecture (eq. 3 of the paper: the discriminator's fake side is lam * G + (1 - lam) * NDA):
- weighted mode (the authors' code): a batch of B generated samples and a batch of B negatives,
  their loss terms weighted lam and 1 - lam;
- mixture mode: one fake batch of B samples, round(lam * B) generated and the rest negatives, so
  the discriminator does no extra work.
The generator step never sees negatives. Conditional runs give each negative the label of the real
image it was made from: a transform returns one negative per real image, in order (its
`min_changed` redraws or falls back, never drops; negaug/nda/min_change.py), so the negative
batch always has B images.

D is called in exactly one function, `score`, by the D step, the G step and the penalties. A
per-sample D scores real, generated and negative samples in one call; a batch-dependent D (batch
norm) scores each kind in its own call, so that the generated batch is normalised alone in both
steps (`Discriminator.batch_dependent`).
"""
from __future__ import annotations

import contextlib

import torch

from negaug.experiment.build import Recipe
from negaug.experiment.state import TrainState
from negaug.experiment.stats import Stats
from negaug.losses import clip_weights, gradient_penalty, r1_penalty
from negaug.models import is_batch_dependent, orthogonal_penalty

Part = tuple[torch.Tensor, "torch.Tensor | None"]  # samples of one kind and their labels (or None)


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or infinite; the message names the step and the loss term."""


def _channels_last(x: torch.Tensor, recipe: Recipe) -> torch.Tensor:
    if recipe.precision != "fp32" and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


def sample_generated(recipe: Recipe, state: TrainState, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Latents (n, latent_dim) and, for conditional runs, uniformly drawn labels (n,)."""
    z = state.generator.sample_latent(n, generator=state.latent_rng, device=recipe.device)
    labels = None
    if recipe.num_classes:
        labels = torch.randint(recipe.num_classes, (n,), generator=state.latent_rng).to(recipe.device)
    return z, labels


def apply_positive(recipe: Recipe, state: TrainState, real: torch.Tensor) -> torch.Tensor:
    """PDA: replace a `positive_prob` fraction of the real images by their augmented version."""
    augmented = recipe.positive(real, generator=state.nda_rng)
    keep = torch.rand(real.shape[0], generator=state.nda_rng).to(real.device) >= recipe.positive_prob
    return torch.where(keep.view(-1, *[1] * (real.dim() - 1)), real, augmented)


def check_finite(step: int, loss: torch.Tensor, terms: dict[str, torch.Tensor], where: str) -> None:
    if bool(torch.isfinite(loss)):
        return
    bad = [name for name, value in terms.items() if not bool(torch.isfinite(value).all())]
    culprit = ", ".join(bad) if bad else where
    raise NonFiniteLossError(f"non-finite {where} loss at step {step} (term: {culprit}); "
                             f"lower the learning rate or try another loss")


def score(recipe: Recipe, discriminator: torch.nn.Module, parts: list[Part], autocast: bool = True) -> list[torch.Tensor]:
    """Raw D scores, float32 (B_i,), of each part: the one function through which training calls D.

    Each part holds one kind of sample (real, generated or negative) with its labels (or None).
    A per-sample D scores all parts in one call (faster; the scores equal those of separate calls).
    A batch-dependent D (batch norm) scores each part in its own call, so its batch statistics never
    mix kinds of samples: the generated batch it normalises in the D step is made like the one it
    normalises in the G step (mixing them let D tell the steps apart and G train on noise).
    """
    groups = [[part] for part in parts] if is_batch_dependent(discriminator) else [parts]
    scores: list[torch.Tensor] = []
    for group in groups:
        x = torch.cat([images.to(group[0][0].dtype) for images, _ in group]) if len(group) > 1 else group[0][0]
        labels = None if group[0][1] is None else torch.cat([y for _, y in group])
        with recipe.autocast() if autocast else contextlib.nullcontext():
            out = discriminator(_channels_last(x, recipe), labels).float()
        scores += out.split([images.shape[0] for images, _ in group])
    return scores


def discriminator_step(recipe: Recipe, state: TrainState, real: torch.Tensor, labels: torch.Tensor,
                       step: int, stats: Stats) -> None:
    """One update of D on a real batch (B, ...) against lam * G + (1 - lam) * NDA."""
    batch = real.shape[0]
    real_labels = labels if recipe.num_classes else None
    negatives = recipe.negative(real, generator=state.nda_rng) if recipe.negative is not None else None  # from clean reals
    if recipe.positive is not None:
        real = apply_positive(recipe, state, real)
    mixture = negatives is not None and recipe.mode == "mixture"
    num_generated = round(recipe.lam * batch) if mixture else batch
    z, fake_labels = sample_generated(recipe, state, num_generated)
    with torch.no_grad(), recipe.autocast():
        fake = state.generator(z, fake_labels)
    parts = [(real, real_labels), (fake, fake_labels)]
    if negatives is not None:  # mixture mode: the fake batch is generated + B - round(lam B) negatives
        num_negatives = batch - num_generated if mixture else batch
        parts.append((negatives[:num_negatives], None if real_labels is None else real_labels[:num_negatives]))
    d_real, d_generated, *rest = score(recipe, state.discriminator, parts)
    d_neg = rest[0] if rest else None
    if mixture:  # one fake batch, generated + negatives; a gradient penalty interpolates towards all of it
        loss, terms = recipe.loss.d_loss(d_real, torch.cat([d_generated, d_neg]), None, lam=1.0)
        fake_side, penalty_negatives = torch.cat([fake.to(real.dtype), parts[2][0].to(real.dtype)]), None
    else:
        loss, terms = recipe.loss.d_loss(d_real, d_generated, d_neg, lam=recipe.lam if d_neg is not None else 1.0)
        fake_side, penalty_negatives = fake, negatives
    loss = loss + _penalties(recipe, state, real, real_labels, fake_side, penalty_negatives, stats)
    check_finite(step, loss, terms, "discriminator")
    _backward_and_step(loss, state.opt_d, state.scaler)
    if recipe.clip_value > 0:
        clip_weights(state.discriminator, recipe.clip_value)
    stats.report("loss/d", loss)
    for name, value in terms.items():
        stats.report(f"loss/{name}", value)
    stats.report("d_out/real", d_real)
    stats.report("d_out/generated", d_generated)
    if d_neg is not None:
        stats.report("d_out/negative", d_neg)


def _penalties(recipe: Recipe, state: TrainState, real: torch.Tensor, real_labels: torch.Tensor | None,
               fake: torch.Tensor, negatives: torch.Tensor | None, stats: Stats) -> torch.Tensor | float:
    """Gradient penalty (towards the generated batch and, in weighted mode, the negatives) and R1.
    Both call D through `score`; `build` refuses them for a batch-dependent D."""
    total: torch.Tensor | float = 0.0
    if recipe.gp_weight == 0 and recipe.r1_weight == 0:
        return total

    def critic(x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return score(recipe, state.discriminator, [(x, y)], autocast=False)[0]

    if recipe.gp_weight > 0:
        rng = state.nda_rng if real.device.type == "cpu" else None  # CPU stream; GPUs use their own RNG
        gp = gradient_penalty(critic, real.float(), fake.float(), real_labels, generator=rng)
        if negatives is not None:  # weighted mode: the fake side is lam * G + (1 - lam) * NDA
            gp_neg = gradient_penalty(critic, real.float(), negatives.float(), real_labels, generator=rng)
            gp = recipe.lam * gp + (1 - recipe.lam) * gp_neg
        stats.report("loss/gradient_penalty", gp)
        total = total + recipe.gp_weight * gp
    if recipe.r1_weight > 0:
        r1 = r1_penalty(critic, real.float(), real_labels)
        stats.report("loss/r1", r1)
        total = total + recipe.r1_weight * r1
    return total


def _backward_and_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None) -> None:
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()


def generator_step(recipe: Recipe, state: TrainState, step: int, stats: Stats) -> None:
    """One update of G on `recipe.batch_size` samples; the loss is the plain GAN generator loss
    (negatives never enter)."""
    z, labels = sample_generated(recipe, state, recipe.batch_size)
    state.discriminator.requires_grad_(False)  # no D weight gradients: saves a third of D's backward
    try:
        with recipe.autocast():
            fake = state.generator(z, labels)
        (d_fake,) = score(recipe, state.discriminator, [(fake, labels)])
        loss = recipe.loss.g_loss(d_fake)
        terms = {"g": loss}
        if recipe.ortho_reg > 0:  # BigGAN's orthogonal regularisation of G's weights
            terms["ortho"] = orthogonal_penalty(state.generator)
            loss = loss + recipe.ortho_reg * terms["ortho"]
        check_finite(step, loss, terms, "generator")
        _backward_and_step(loss, state.opt_g, state.scaler)
    finally:
        state.discriminator.requires_grad_(True)
    stats.report("loss/g", terms["g"])
    if "ortho" in terms:
        stats.report("loss/ortho", terms["ortho"])
    stats.report("d_out/generated_g_step", d_fake.detach())  # compare with d_out/generated of the D step
