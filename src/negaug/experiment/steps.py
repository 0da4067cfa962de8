"""One discriminator step and one generator step of an NDA-GAN.

NDA enters training in exactly one place, `discriminator_step`, whatever the loss and the
architecture (eq. 3 of the paper: the discriminator's fake side is lam * G + (1 - lam) * NDA):
- weighted mode (the authors' code): a batch of B generated samples and a batch of B negatives,
  their loss terms weighted lam and 1 - lam;
- mixture mode: one fake batch of B samples, round(lam * B) generated and the rest negatives, so
  the discriminator does no extra work.
The generator step never sees negatives.

DiffAugment (`train.diffaugment`), when on, transforms every batch D scores: real, generated and
negative in the D step (each kind with its own per-sample draws), generated in the G step (G's
gradient flows through it). Negatives pass through it too, so that "not augmented" can never tell
D that an image is a negative. The penalties act on the images as D saw them. Consistency
regularisation (`loss.consistency`) scores T(x) of the real batch D saw as one more kind of
sample and adds weight * mean (D(x) - D(T(x)))^2 to D's loss. Conditional runs give each negative the label of the real
image it was made from: a transform returns one negative per real image, in order (its
`min_changed` redraws or falls back, never drops; negaug/nda/min_change.py), so the negative
batch always has B images.

D is called in exactly one function, `score` (through `negaug.experiment.critic`, which Pix2Pix
and the members of a MIX+GAN mixture also go through), by the D step, the G step and the penalties. A
per-sample D scores real, generated and negative samples in one call; a batch-dependent D (batch
norm) scores each kind in its own call, so that the generated batch is normalised alone in both
steps (`Discriminator.batch_dependent`). `features` (D's penultimate features, for feature
matching) follows the same rule.

Objectives of the classic toolkit (docs/training.md, "Classic GAN toolkit"): a relativistic loss
(`loss.pairs_with_real`) scores a real batch in the G step too (the last D step's); feature
matching (`loss.feature_matching`) adds ||E f(x) - E f(G(z))||^2 to the G loss; R2
(`loss.r2_penalty`) is R1 on D's fake side; a loss without a discriminator (`mmd`, GMMN) trains G
alone in `mmd_generator_step`, with NDA as a repulsive term. MIX+GAN (`model.mixture` > 1: G
and D are `negaug.models.mixture` mixtures) trains on the mixed game's payoff in
`mixture_discriminator_step` / `mixture_generator_step`: each D_j scores each kind of sample in its
own call through `critic.member_scorer` (this run's channels_last and autocast), so a
batch-dependent D_j sees one kind per call as `score` guarantees.
"""
from __future__ import annotations

import contextlib
from functools import partial

import torch

from negaug import distributed
from negaug.augment import consistency_penalty
from negaug.experiment import critic
from negaug.experiment.build import Recipe
from negaug.experiment.state import TrainState
from negaug.experiment.stats import Stats
from negaug.losses import (
    clip_weights,
    feature_matching_loss,
    gradient_penalty,
    r1_penalty,
    r2_penalty,
)
from negaug.losses.mixture import mixed_d_loss, mixed_g_loss
from negaug.models import orthogonal_penalty

Part = critic.Part  # samples of one kind and their labels (or None)


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
    """NonFiniteLossError naming the term; data parallel: on every rank when any rank's loss is not finite."""
    if not distributed.any_true(not bool(torch.isfinite(loss))):
        return
    bad = [name for name, value in terms.items() if not bool(torch.isfinite(value).all())]
    culprit = ", ".join(bad) if bad else where
    raise NonFiniteLossError(f"non-finite {where} loss at step {step} (term: {culprit}); "
                             f"lower the learning rate or try another loss")


def score(recipe: Recipe, discriminator: torch.nn.Module, parts: list[Part], autocast: bool = True) -> list[torch.Tensor]:
    """Raw D scores, float32 (B_i,), of each part (`critic.score`: the grouping rule, with this
    run's channels_last and mixed precision)."""
    return critic.score(discriminator, parts, prepare=partial(_channels_last, recipe=recipe),
                        autocast=recipe.autocast if autocast else contextlib.nullcontext)


def features(recipe: Recipe, discriminator: torch.nn.Module, parts: list[Part]) -> list[torch.Tensor]:
    """D's penultimate features (`D.features`), float32 (B_i, F), of each part (`critic.features`)."""
    return critic.features(discriminator, parts, prepare=partial(_channels_last, recipe=recipe), autocast=recipe.autocast)


def _member_scorer(recipe: Recipe):
    """How MIX+GAN's losses call each member D_j: through the critic, with this run's settings."""
    return critic.member_scorer(prepare=partial(_channels_last, recipe=recipe), autocast=recipe.autocast)


def discriminator_step(recipe: Recipe, state: TrainState, real: torch.Tensor, labels: torch.Tensor,
                       step: int, stats: Stats) -> None:
    """One update of D on a real batch (B, ...) against lam * G + (1 - lam) * NDA."""
    if recipe.mixture_entropy is not None:
        return mixture_discriminator_step(recipe, state, real, step, stats)
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
    if negatives is not None:  # mixture mode: the fake side is generated + B - round(lam B) negatives
        num_negatives = batch - num_generated if mixture else batch
        parts.append((negatives[:num_negatives], None if real_labels is None else real_labels[:num_negatives]))
    parts = augment_for_d(recipe, state, parts)  # what D sees: (real, generated[, negatives])
    consistency = consistency_part(recipe, state, parts[0])
    d_real, d_generated, *rest = score(recipe, state.discriminator, parts + consistency)
    d_real_transformed = rest.pop() if consistency else None
    d_neg = rest[0] if rest else None
    if mixture:  # one fake batch, generated + negatives; a gradient penalty interpolates towards all of it
        loss, terms = recipe.loss.d_loss(d_real, torch.cat([d_generated, d_neg]), None, lam=1.0)
        fake_side, penalty_negatives = torch.cat([parts[1][0].to(real.dtype), parts[2][0].to(real.dtype)]), None
    else:
        loss, terms = recipe.loss.d_loss(d_real, d_generated, d_neg, lam=recipe.lam if d_neg is not None else 1.0)
        fake_side, penalty_negatives = parts[1][0], parts[2][0] if negatives is not None else None
    loss = loss + _penalties(recipe, state, parts[0][0], real_labels, fake_side, penalty_negatives, stats)
    if d_real_transformed is not None:
        terms = {**terms, "consistency": consistency_penalty(d_real, d_real_transformed)}  # logged as loss/consistency
        loss = loss + recipe.consistency_weight * terms["consistency"]
    check_finite(step, loss, terms, "discriminator")
    critic.backward_and_step(loss, state.opt_d, state.scaler)
    if recipe.clip_value > 0:
        clip_weights(state.discriminator, recipe.clip_value)
    _report_d_step(stats, loss, terms, d_real, d_generated, d_neg)


def augment_for_d(recipe: Recipe, state: TrainState, parts: list[Part]) -> list[Part]:
    """DiffAugment of every kind of sample D is about to score (each with its own per-sample draws
    from `augment_rng`, differentiable for G's step); the parts unchanged when it is off."""
    if recipe.diffaugment is None:
        return parts
    return [(recipe.diffaugment(images, generator=state.augment_rng), labels) for images, labels in parts]


def consistency_part(recipe: Recipe, state: TrainState, real: Part) -> list[Part]:
    """[(T(x), labels)] for CR-GAN, with x the real images as D sees them (after DiffAugment when
    on); [] when CR is off. `score` gives the transformed batch its own call for a batch-dependent D."""
    if recipe.consistency is None:
        return []
    images, labels = real
    return [(recipe.consistency(images, generator=state.augment_rng), labels)]


def _report_d_step(stats: Stats, loss: torch.Tensor, terms: dict[str, torch.Tensor], d_real: torch.Tensor,
                   d_generated: torch.Tensor, d_neg: torch.Tensor | None) -> None:
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
    if recipe.gp_weight == 0 and recipe.r1_weight == 0 and recipe.r2_weight == 0:
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
    if recipe.r2_weight > 0:
        total = total + recipe.r2_weight * _r2(recipe, critic, fake, negatives, real_labels, stats)
    return total


def _r2(recipe: Recipe, critic, fake: torch.Tensor, negatives: torch.Tensor | None,
        real_labels: torch.Tensor | None, stats: Stats) -> torch.Tensor:
    """R2 on D's fake side (R3GAN): the generated batch (or the mixed one) and, in weighted mode,
    lam * R2(generated) + (1 - lam) * R2(negatives). Conditional fakes take the real labels, as
    the gradient penalty's interpolates do."""
    labels = None if real_labels is None else real_labels[: fake.shape[0]]
    r2 = r2_penalty(critic, fake.float(), labels)
    if negatives is not None:
        r2 = recipe.lam * r2 + (1 - recipe.lam) * r2_penalty(critic, negatives.float(), real_labels)
    stats.report("loss/r2", r2)
    return r2


def generator_step(recipe: Recipe, state: TrainState, step: int, stats: Stats,
                   real: torch.Tensor | None = None, real_labels: torch.Tensor | None = None) -> None:
    """One update of G on `recipe.batch_size` samples; the loss is the plain GAN generator loss
    (negatives never enter), + `fm_weight` * feature matching. `real` (B, ...) and its labels: the
    last D step's real batch, needed by a relativistic loss, feature matching and `mmd`."""
    if not recipe.loss.uses_discriminator:
        return mmd_generator_step(recipe, state, real, step, stats)
    if recipe.mixture_entropy is not None:
        return mixture_generator_step(recipe, state, step, stats, real)
    pairs = recipe.loss.pairs_with_real
    assert real is not None or not (pairs or recipe.fm_weight > 0), "this G loss needs the real batch"
    z, labels = sample_generated(recipe, state, real.shape[0] if pairs else recipe.batch_size)
    real_labels = real_labels if recipe.num_classes else None
    state.discriminator.requires_grad_(False)  # no D weight gradients: saves a third of D's backward
    try:
        with recipe.autocast():
            fake = state.generator(z, labels)
        parts = augment_for_d(recipe, state, [(fake, labels)] + ([(real, real_labels)] if pairs else []))
        d_fake, *d_real = score(recipe, state.discriminator, parts)
        loss = recipe.loss.g_loss(d_fake, d_real[0]) if pairs else recipe.loss.g_loss(d_fake)
        terms = {"g": loss}
        if recipe.fm_weight > 0:
            seen = parts if pairs else parts + augment_for_d(recipe, state, [(real, real_labels)])
            fake_features, real_features = features(recipe, state.discriminator, seen[:2])
            terms["feature_matching"] = feature_matching_loss(real_features, fake_features, recipe.fm_reduction)
            loss = loss + recipe.fm_weight * terms["feature_matching"]
        if recipe.ortho_reg > 0:  # BigGAN's orthogonal regularisation of G's weights
            terms["ortho"] = orthogonal_penalty(state.generator)
            loss = loss + recipe.ortho_reg * terms["ortho"]
        check_finite(step, loss, terms, "generator")
        critic.backward_and_step(loss, state.opt_g, state.scaler)
    finally:
        state.discriminator.requires_grad_(True)
    stats.report("loss/g", terms["g"])
    for name in ("feature_matching", "ortho"):
        if name in terms:
            stats.report(f"loss/{name}", terms[name])
    stats.report("d_out/generated_g_step", d_fake.detach())  # compare with d_out/generated of the D step


def mmd_generator_step(recipe: Recipe, state: TrainState, real: torch.Tensor, step: int, stats: Stats) -> None:
    """GMMN (`loss.name=mmd`): G minimises MMD^2(G(z), real) - (1 - lam) MMD^2(G(z), NDA(real)) on
    a real batch (B, ...) in the data space; no discriminator is called."""
    negatives = recipe.negative(real, generator=state.nda_rng) if recipe.negative is not None else None
    if recipe.positive is not None:
        real = apply_positive(recipe, state, real)
    z, _ = sample_generated(recipe, state, real.shape[0])
    with recipe.autocast():
        fake = state.generator(z, None)
    loss, terms = recipe.loss.generator_loss(fake, real, negatives, lam=recipe.lam if negatives is not None else 1.0)
    if recipe.ortho_reg > 0:  # BigGAN's orthogonal regularisation of G's weights, as in `generator_step`
        terms = {**terms, "ortho": orthogonal_penalty(state.generator)}
        loss = loss + recipe.ortho_reg * terms["ortho"]
    check_finite(step, loss, terms, "generator")
    critic.backward_and_step(loss, state.opt_g, state.scaler)
    stats.report("loss/g", loss)
    for name, value in terms.items():
        stats.report(f"loss/{name}", value)


def mixture_discriminator_step(recipe: Recipe, state: TrainState, real: torch.Tensor, step: int, stats: Stats) -> None:
    """MIX+GAN's D step: every D_j against every G_i on one real batch (B, ...), weighted wG_i wD_j,
    with NDA on each D_j's fake side (eq. 3, weighted mode), minus beta H(wD) (Arora et al. 2017)."""
    negatives = recipe.negative(real, generator=state.nda_rng) if recipe.negative is not None else None
    if recipe.positive is not None:
        real = apply_positive(recipe, state, real)
    z, _ = sample_generated(recipe, state, real.shape[0])
    G, D = state.generator, state.discriminator
    with torch.no_grad(), recipe.autocast():
        fakes = G.every(z)
    with recipe.autocast():
        loss, terms = mixed_d_loss(D, recipe.loss, real, fakes, negatives, recipe.lam if negatives is not None else None,
                                   recipe.mixture_entropy, g_weights=G.weights(), regulariser=recipe.mixture_regulariser,
                                   scorer=_member_scorer(recipe))
    outputs = {name: terms.pop(name) for name in ("out_real", "out_generated", "out_negative") if name in terms}
    check_finite(step, loss, terms, "discriminator")
    critic.backward_and_step(loss, state.opt_d, state.scaler)
    stats.report("loss/d", loss)
    for name, value in terms.items():
        stats.report(f"loss/{name}", value)
    for name, value in outputs.items():
        stats.report(f"d_out/{name.removeprefix('out_')}", value)
    for j, weight in enumerate(D.weights().detach()):
        stats.report(f"mix/d_weight{j}", weight)


def mixture_generator_step(recipe: Recipe, state: TrainState, step: int, stats: Stats, real: torch.Tensor) -> None:
    """MIX+GAN's G step: every G_i against every D_j, weighted wG_i wD_j (wG trained), minus
    beta H(wG); `real` (B, ...) for relativistic losses. Negatives never enter."""
    G, D = state.generator, state.discriminator
    z, _ = sample_generated(recipe, state, real.shape[0] if recipe.loss.pairs_with_real else recipe.batch_size)
    D.requires_grad_(False)
    try:
        with recipe.autocast():
            loss, terms = mixed_g_loss(D, recipe.loss, G.every(z), recipe.mixture_entropy, real, g_weights=G.weights(),
                                       regulariser=recipe.mixture_regulariser, scorer=_member_scorer(recipe))
        generated = terms.pop("out_generated")
        if recipe.ortho_reg > 0:
            terms["ortho"] = orthogonal_penalty(G)
            loss = loss + recipe.ortho_reg * terms["ortho"]
        check_finite(step, loss, terms, "generator")
        critic.backward_and_step(loss, state.opt_g, state.scaler)
    finally:
        D.requires_grad_(True)
    stats.report("loss/g", loss)
    for name, value in terms.items():
        stats.report(f"loss/{name}", value)
    stats.report("d_out/generated_g_step", generated)
    for i, weight in enumerate(G.weights().detach()):
        stats.report(f"mix/g_weight{i}", weight)
