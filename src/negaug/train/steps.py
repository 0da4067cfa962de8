"""One discriminator step and one generator step of an NDA-GAN.

NDA enters training in exactly one place, `discriminator_step`, whatever the loss and the
architecture (eq. 3 of the paper: the discriminator's fake side is lam * G + (1 - lam) * NDA):
- weighted mode (the authors' code): a batch of B generated samples and a batch of B negatives,
  their loss terms weighted lam and 1 - lam; both go through D in one call (one larger batch is
  faster than two; with batch norm in D they share the statistics of the fake side);
- mixture mode: one fake batch of B samples, round(lam * B) generated and the rest negatives, so
  the discriminator does no extra work.
The generator step never sees negatives. Conditional runs give each negative the label of the real
image it was made from.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from negaug.train.setup import Components


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or infinite; the message names the step and the loss term."""


@dataclass
class StepContext:
    """What the steps need besides the components: RNG streams and numeric settings."""

    latent_gen: torch.Generator  # latents and the labels of generated samples
    nda_gen: torch.Generator  # NDA and PDA draws
    lam: float
    mode: str
    positive_prob: float
    precision: str
    scaler: torch.amp.GradScaler | None = None

    def autocast(self, device: torch.device):
        if self.precision == "bf16":
            return torch.autocast(device.type, dtype=torch.bfloat16)
        if self.precision == "fp16":
            return torch.autocast(device.type, dtype=torch.float16)
        return contextlib.nullcontext()


def _channels_last(x: torch.Tensor, ctx: StepContext) -> torch.Tensor:
    if ctx.precision != "fp32" and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


def sample_generated(c: Components, n: int, ctx: StepContext) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Latents (n, latent_dim) and, for conditional runs, uniformly drawn labels (n,)."""
    z = c.generator.sample_latent(n, generator=ctx.latent_gen, device=c.device)
    labels = None
    if c.num_classes:
        labels = torch.randint(c.num_classes, (n,), generator=ctx.latent_gen).to(c.device)
    return z, labels


def apply_positive(c: Components, real: torch.Tensor, ctx: StepContext) -> torch.Tensor:
    """PDA: replace a `positive_prob` fraction of the real images by their augmented version."""
    augmented = c.pda(real, generator=ctx.nda_gen)
    keep = torch.rand(real.shape[0], generator=ctx.nda_gen).to(real.device) >= ctx.positive_prob
    return torch.where(keep.view(-1, *[1] * (real.dim() - 1)), real, augmented)


def check_finite(step: int, loss: torch.Tensor, terms: dict[str, torch.Tensor], where: str) -> None:
    if bool(torch.isfinite(loss)):
        return
    bad = [name for name, value in terms.items() if not bool(torch.isfinite(value).all())]
    culprit = ", ".join(bad) if bad else where
    raise NonFiniteLossError(f"non-finite {where} loss at step {step} (term: {culprit}); "
                             f"lower the learning rate or try another loss")


def _labels(c: Components, labels: torch.Tensor) -> torch.Tensor | None:
    return labels if c.num_classes else None


def discriminator_step(c: Components, ctx: StepContext, real: torch.Tensor, labels: torch.Tensor,
                       step: int, stats) -> None:
    """One update of D on a real batch (B, ...) against lam * G + (1 - lam) * NDA."""
    batch = real.shape[0]
    real_labels = _labels(c, labels)
    negatives = c.nda(real, generator=ctx.nda_gen) if c.nda is not None else None  # from clean reals
    if c.pda is not None:
        real = apply_positive(c, real, ctx)
    mixture = negatives is not None and ctx.mode == "mixture"
    num_generated = round(ctx.lam * batch) if mixture else batch
    z, fake_labels = sample_generated(c, num_generated, ctx)
    with torch.no_grad(), ctx.autocast(c.device):
        fake = c.generator(z, fake_labels)
    if mixture:  # one fake batch: generated first, then B - round(lam B) negatives
        fake = torch.cat([fake.to(negatives.dtype), negatives[: batch - num_generated]])
        if fake_labels is not None:
            fake_labels = torch.cat([fake_labels, labels[: batch - num_generated]])
        negatives = None
    real, fake = _channels_last(real, ctx), _channels_last(fake, ctx)
    with ctx.autocast(c.device):
        d_real = c.discriminator(real, real_labels).float()
        d_neg = None
        if negatives is None:
            d_fake = c.discriminator(fake, fake_labels).float()
        else:  # weighted: generated and negatives, the two parts of the fake side, in one call
            both = _channels_last(torch.cat([fake.to(negatives.dtype), negatives]), ctx)
            both_labels = None if fake_labels is None else torch.cat([fake_labels, real_labels])
            d_fake, d_neg = c.discriminator(both, both_labels).float().split([fake.shape[0], batch])
    lam = ctx.lam if d_neg is not None else 1.0
    loss, terms = c.loss.d_loss(d_real, d_fake, d_neg, lam=lam)
    loss = loss + _penalties(c, ctx, real, real_labels, fake, negatives, lam, stats)
    check_finite(step, loss, terms, "discriminator")
    _backward_and_step(loss, c.opt_d, ctx)
    if c.clip_value > 0:
        from negaug.losses import clip_weights

        clip_weights(c.discriminator, c.clip_value)
    stats.report("loss/d", loss)
    for name, value in terms.items():
        stats.report(f"loss/{name}", value)
    stats.report("d_out/real", d_real)
    stats.report("d_out/generated", d_fake[:num_generated])
    if mixture:
        stats.report("d_out/negative", d_fake[num_generated:])
    elif d_neg is not None:
        stats.report("d_out/negative", d_neg)


def _penalties(c, ctx, real, real_labels, fake, negatives, lam, stats) -> torch.Tensor | float:
    """Gradient penalty (interpolating towards the whole fake mixture) and R1."""
    from negaug.losses import gradient_penalty, r1_penalty

    total: torch.Tensor | float = 0.0
    if c.gp_weight > 0:
        gen = ctx.nda_gen if real.device.type == "cpu" else None  # CPU stream; GPUs use their own RNG
        gp = gradient_penalty(c.discriminator, real.float(), fake.float(), real_labels, generator=gen)
        if negatives is not None:  # weighted mode: the fake side is lam * G + (1 - lam) * NDA
            gp_neg = gradient_penalty(c.discriminator, real.float(), negatives.float(), real_labels, generator=gen)
            gp = lam * gp + (1 - lam) * gp_neg
        stats.report("loss/gradient_penalty", gp)
        total = total + c.gp_weight * gp
    if c.r1_weight > 0:
        r1 = r1_penalty(c.discriminator, real.float(), real_labels)
        stats.report("loss/r1", r1)
        total = total + c.r1_weight * r1
    return total


def _backward_and_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, ctx: StepContext) -> None:
    optimizer.zero_grad(set_to_none=True)
    if ctx.scaler is not None:
        ctx.scaler.scale(loss).backward()
        ctx.scaler.step(optimizer)
        ctx.scaler.update()
    else:
        loss.backward()
        optimizer.step()


def generator_step(c: Components, ctx: StepContext, batch: int, step: int, stats) -> None:
    """One update of G; the loss is the plain GAN generator loss (negatives never enter)."""
    z, labels = sample_generated(c, batch, ctx)
    c.discriminator.requires_grad_(False)  # no D weight gradients: saves a third of D's backward
    try:
        with ctx.autocast(c.device):
            fake = _channels_last(c.generator(z, labels), ctx)
            d_fake = c.discriminator(fake, labels).float()
        loss = c.loss.g_loss(d_fake)
        check_finite(step, loss, {"g": loss}, "generator")
        _backward_and_step(loss, c.opt_g, ctx)
    finally:
        c.discriminator.requires_grad_(True)
    stats.report("loss/g", loss)
