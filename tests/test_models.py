"""negaug.models: the G/D contract for every registered model (at tiny width), conditional paths,
one training step with every loss, EMA, seeded construction, spectral norm, bf16/channels_last."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.testing import assert_close

import negaug.losses as L
import negaug.models as M
from negaug.models.layers import ClassBatchNorm2d

NUM_CLASSES = 3
BATCH = 4
# name -> build arguments at tiny width; every registered model must appear here.
CASES = {
    "mlp": dict(image_size=None, channels=None, width=8, depth=2),
    "dcgan": dict(image_size=32, channels=3, width=4),
    "dcgan-64px-gray": dict(image_size=64, channels=1, width=2, _name="dcgan"),
    "dcgan-sn": dict(image_size=16, channels=1, width=4, spectral_norm=True, g_spectral_norm=True, _name="dcgan"),
    "sngan_resnet": dict(image_size=32, channels=3, width=4),
    "sngan_resnet-16px-nosn": dict(image_size=16, channels=1, width=4, spectral_norm=False, _name="sngan_resnet"),
    "biggan": dict(image_size=32, channels=3, width=2),
    "biggan-64px-gray": dict(image_size=64, channels=1, width=2, _name="biggan"),
    "biggan-unshared": dict(image_size=32, channels=3, width=2, hierarchical=False, shared_embedding=False,
                            g_spectral_norm=False, _name="biggan"),
}
LOSSES_PER_MODEL = ["hinge", "nonsaturating", "wgan-gp", "fgan-kl"]


def build(case: str, num_classes: int = 0, seed: int = 0):
    options = dict(CASES[case])
    name = options.pop("_name", case)
    torch.manual_seed(seed)
    return M.build(name, num_classes=num_classes, **options)


def data_shape(case: str) -> tuple[int, ...]:
    options = CASES[case]
    if options["image_size"] is None:
        return (BATCH, options.get("data_dim", 2))
    return (BATCH, options["channels"], options["image_size"], options["image_size"])


def labels() -> torch.Tensor:
    return torch.arange(BATCH) % NUM_CLASSES  # every class present


def test_every_registered_model_is_tested():
    assert {options.get("_name", case) for case, options in CASES.items()} == set(M.names())


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("num_classes", [0, NUM_CLASSES])
def test_shapes_and_ranges(case, num_classes):
    G, D = build(case, num_classes)
    y = labels() if num_classes else None
    z = G.sample_latent(BATCH, generator=torch.Generator().manual_seed(0))
    assert z.shape == (BATCH, G.latent_dim) and z.dtype == torch.float32
    x = G(z, y)
    assert x.shape == data_shape(case)
    if CASES[case]["image_size"] is not None:
        with torch.no_grad():  # a huge last layer drives the output to the limits of its range
            G.to_image.bias.fill_(1e3)
        saturated = G(z, y)
        assert saturated.max() <= 1.0 and saturated.max() > 0.99
        with torch.no_grad():
            G.to_image.bias.fill_(-1e3)
        assert G(z, y).min() >= -1.0
    feats = D.features(x)
    assert feats.shape == (BATCH, D.num_features)
    scores = D(x, y)
    assert scores.shape == (BATCH,) and torch.isfinite(scores).all()


def test_mlp_output_is_unbounded():
    G, _ = build("mlp")
    with torch.no_grad():
        G.net[-1].bias.fill_(5.0)
    assert G(G.sample_latent(4)).min() > 1.0


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("num_classes", [0, NUM_CLASSES])
def test_forward_is_head_of_features(case, num_classes):
    # Eval mode: in training mode each forward of a spectrally normalised layer runs a power
    # iteration, so two calls use slightly different weights.
    _, D = build(case, num_classes)
    D.eval()
    x, y = torch.randn(data_shape(case)), labels() if num_classes else None
    assert torch.equal(D(x, y), D.head(D.features(x), y))


@pytest.mark.parametrize("case", CASES)
def test_conditional_models_require_labels(case):
    G, D = build(case, NUM_CLASSES)
    with pytest.raises(ValueError, match="labels"):
        G(G.sample_latent(2))
    with pytest.raises(ValueError, match="labels"):
        D(torch.randn(data_shape(case)))


@pytest.mark.parametrize("case", CASES)
def test_unconditional_models_ignore_labels(case):
    G, D = build(case)
    G.eval(), D.eval()
    z, x = G.sample_latent(BATCH), torch.randn(data_shape(case))
    assert torch.equal(G(z, labels()), G(z)) and torch.equal(D(x, labels()), D(x))


def perturb_class(G: nn.Module, k: int) -> None:
    """Change only the parameters that belong to class k (CBN rows; BigGAN's shared embedding row;
    the MLP's one-hot input column)."""
    with torch.no_grad():
        if getattr(G, "shared", None) is not None:
            G.shared.weight[k] += 0.5
        for m in G.modules():
            if isinstance(m, ClassBatchNorm2d) and m.num_classes:
                m.gain[k] += 0.5
                m.bias[k] -= 0.5
        if isinstance(G, M.mlp.MLPGenerator):
            G.net[0].weight[:, G.latent_dim + k] += 1.0


@pytest.mark.parametrize("case", CASES)
def test_class_parameters_affect_only_their_class(case):
    G, D = build(case, NUM_CLASSES)
    G.eval(), D.eval()  # eval: each sample is independent of the rest of the batch
    z, y = G.sample_latent(BATCH), labels()
    x_before = G(z, y)
    perturb_class(G, 1)
    x_after = G(z, y)
    assert torch.equal(x_before[y != 1], x_after[y != 1])
    assert not torch.allclose(x_before[y == 1], x_after[y == 1])
    scores_before = D(x_before, y)
    embed = D.projection.embed
    sn = parametrize.is_parametrized(embed)
    with torch.no_grad():
        (embed.parametrizations.weight.original if sn else embed.weight)[1] += 1.0
    scores_after = D(x_before, y)
    if sn:  # SN rescales the whole embedding matrix, so there every class may move
        assert not torch.allclose(scores_before[y == 1], scores_after[y == 1])
    else:  # the projection term <embed(y), phi> grows by sum(phi) for class 1 only
        assert torch.equal(scores_before[y != 1], scores_after[y != 1])
        with torch.no_grad():
            grown = D.features(x_before)[y == 1].sum(1)
        assert_close(scores_after[y == 1] - scores_before[y == 1], grown, rtol=1e-4, atol=1e-6)


def training_step_gradients(case: str, loss_name: str, num_classes: int) -> None:
    """One D step (with NDA negatives, lam = 0.5) and one G step; every parameter of D and of G must
    get a non-zero finite gradient."""
    G, D = build(case, num_classes)
    loss = L.build(loss_name)
    gen = torch.Generator().manual_seed(0)
    y = labels() if num_classes else None
    real = torch.rand(data_shape(case), generator=gen) * 2 - 1
    neg = real.flip(-1)  # any batch of negatives
    fake = G(G.sample_latent(BATCH, generator=gen), y)
    if not loss.uses_discriminator:  # mmd (GMMN): G alone
        loss.generator_loss(G(G.sample_latent(BATCH, generator=gen), y), real, neg, lam=0.5)[0].backward()
        check_gradients(G, set())
        return
    d_loss, _ = loss.d_loss(D(real, y), D(fake.detach(), y), D(neg, y), lam=0.5)
    if loss.gp_weight:
        d_loss = d_loss + L.gradient_penalty(D, real, fake, y, weight=loss.gp_weight, generator=gen)
    d_loss.backward()
    # The Wasserstein objectives are invariant to a constant shift of the critic, and so is the
    # hinge loss while every score lies in (-1, 1) (as at init): the head's bias then gets exactly
    # zero gradient (-1 + lam + (1 - lam)); rpgan scores differences D(fake) - D(real), blind to
    # the bias by construction. Every other parameter must move.
    exempt = {"projection.linear.bias"} if loss_name in ("wgan", "wgan-gp", "hinge", "rpgan") else set()
    check_gradients(D, exempt)
    D.zero_grad(set_to_none=True)
    d_fake = D(G(G.sample_latent(BATCH, generator=gen), y), y)
    (loss.g_loss(d_fake, D(real, y)) if loss.pairs_with_real else loss.g_loss(d_fake)).backward()
    check_gradients(G, set())


def check_gradients(module: nn.Module, exempt: set[str]) -> None:
    for name, p in module.named_parameters():
        if name in exempt:
            continue
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{name} has an all-zero gradient"


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("loss_name", LOSSES_PER_MODEL)
def test_one_training_step_reaches_every_parameter(case, loss_name):
    # Half the losses run conditional models, half unconditional: both paths for every model.
    num_classes = NUM_CLASSES if LOSSES_PER_MODEL.index(loss_name) % 2 == 0 else 0
    training_step_gradients(case, loss_name, num_classes)


@pytest.mark.parametrize("loss_name", L.names())
def test_mlp_trains_with_every_loss(loss_name):
    training_step_gradients("mlp", loss_name, NUM_CLASSES)


def test_ema_copies_before_start_and_averages_after():
    G, _ = build("dcgan")
    ema = M.EMA(G, decay=0.75, start_step=10)
    assert not ema.module.training and not any(p.requires_grad for p in ema.module.parameters())
    with torch.no_grad():  # dyadic values: every product and sum below is exact in float32
        for p in G.parameters():
            p.copy_(torch.randint(-8, 8, p.shape) / 4.0)
    ema.update(G, step=9)
    for (name, a), b in zip(ema.module.state_dict().items(), G.state_dict().values()):
        assert torch.equal(a, b), name
    old = [p.clone() for p in ema.module.parameters()]
    with torch.no_grad():
        for p in G.parameters():
            p.copy_(torch.randint(-8, 8, p.shape) / 4.0)
        for m in G.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.fill_(3.0)
    ema.update(G, step=10)
    for a, b, p in zip(ema.module.parameters(), old, G.parameters()):
        assert torch.equal(a, 0.75 * b + 0.25 * p)
    for a, b in zip(ema.module.buffers(), G.buffers()):
        assert torch.equal(a, b)  # buffers are copied, not averaged


def test_ema_state_dict_round_trip():
    G, _ = build("sngan_resnet", seed=0)
    ema = M.EMA(G, decay=0.5, start_step=0)
    ema.update(build("sngan_resnet", seed=1)[0], step=5)
    fresh = M.EMA(build("sngan_resnet", seed=2)[0])
    fresh.load_state_dict(ema.state_dict())
    for (name, a), b in zip(ema.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), name
    z = G.sample_latent(4)
    assert torch.equal(ema.module(z), fresh.module(z))


@pytest.mark.parametrize("case", CASES)
def test_seeded_construction_is_deterministic(case):
    first, second, other = build(case, NUM_CLASSES, seed=5), build(case, NUM_CLASSES, seed=5), build(case, NUM_CLASSES, seed=6)
    for net in (0, 1):
        a, b, c = (m[net].state_dict() for m in (first, second, other))
        assert all(torch.equal(a[k], b[k]) for k in a)
        assert not all(torch.equal(a[k], c[k]) for k in a)


def test_sample_latent_uses_only_the_given_generator():
    G, _ = build("dcgan")
    state = torch.get_rng_state()
    z1 = G.sample_latent(5, generator=torch.Generator().manual_seed(7))
    z2 = G.sample_latent(5, generator=torch.Generator().manual_seed(7))
    assert torch.equal(z1, z2) and torch.equal(torch.get_rng_state(), state)
    assert z1.shape == (5, 100)  # Radford et al.'s latent size is the dcgan default


def spectral_weights(module: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """(name, weight matrix as SN sees it) for every spectrally normalised layer."""
    out = []
    for name, m in module.named_modules():
        if parametrize.is_parametrized(m, "weight"):
            w = m.weight.movedim(1, 0) if isinstance(m, nn.ConvTranspose2d) else m.weight
            out.append((name, w.flatten(1)))
    return out


@pytest.mark.parametrize("case", ["dcgan-sn", "sngan_resnet"])
def test_spectral_norm_makes_largest_singular_value_one(case):
    G, D = build(case, NUM_CLASSES)
    x, y = torch.randn(data_shape(case)), labels()
    for _ in range(10):  # each training forward runs one more power iteration
        D(x, y), G(G.sample_latent(BATCH), y)
    nets = (D, G) if case == "dcgan-sn" else (D,)
    for net in nets:
        weights = spectral_weights(net)
        assert len(weights) >= 3
        with torch.no_grad():
            for name, w in weights:
                assert_close(torch.linalg.matrix_norm(w, ord=2), torch.tensor(1.0), rtol=0.02, atol=0, msg=name)
    plain, _ = build("dcgan", seed=0)  # without SN the N(0, 0.02) weights are far from norm 1
    assert torch.linalg.matrix_norm(plain.ups[0].weight.detach().movedim(1, 0).flatten(1), ord=2) < 0.5


@pytest.mark.parametrize("case", CASES)
def test_bf16_autocast_and_channels_last(case):
    G, D = build(case, NUM_CLASSES)
    G.eval(), D.eval()
    z, y = G.sample_latent(BATCH, generator=torch.Generator().manual_seed(0)), labels()
    with torch.no_grad():
        x_ref, s_ref = G(z, y), D(G(z, y), y)
    images = CASES[case]["image_size"] is not None
    if images:
        G, D = G.to(memory_format=torch.channels_last), D.to(memory_format=torch.channels_last)
        with torch.no_grad():
            assert_close(G(z, y), x_ref, rtol=1e-4, atol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x = G(z, y)
        scores = D(x.contiguous(memory_format=torch.channels_last) if images else x, y)
    assert_close(x.float(), x_ref, rtol=0.1, atol=0.05)
    assert_close(scores.float(), s_ref, rtol=0.1, atol=0.05 * s_ref.abs().max().item() + 1e-3)
    L.build("hinge").g_loss(scores).backward()
    assert all(torch.isfinite(p.grad).all() for p in G.parameters() if p.grad is not None)


def test_invalid_builds_raise():
    with pytest.raises(ValueError, match="power of two"):
        M.build("dcgan", image_size=30, channels=3)
    with pytest.raises(ValueError, match="power of two"):
        M.build("sngan_resnet", image_size=8, channels=3)
    with pytest.raises(ValueError, match="vector data"):
        M.build("mlp", image_size=32, channels=3)
    with pytest.raises(ValueError, match="did you mean 'width'"):
        M.build("dcgan", image_size=32, channels=3, widht=8)
    with pytest.raises(ValueError, match="unknown model"):
        M.build("bigan", image_size=32, channels=3)
    with pytest.raises(ValueError, match="init"):
        M.build("dcgan", image_size=32, channels=3, init="uniform")


def test_default_sizes_match_the_papers():
    torch.manual_seed(0)
    G, D = M.build("sngan_resnet", image_size=32, channels=3)
    assert G.latent_dim == 128 and G.width == 256 and D.num_features == 128
    assert len(G.blocks) == 3 and len(D.blocks) == 4  # Miyato et al. Table 4: 3 up blocks; 4 D blocks
    G, D = M.build("dcgan", image_size=64, channels=3)
    assert G.stem.out_channels == 512 and D.num_features == 512 * 16  # Radford et al.: 1024 at 64 px with z 100


def test_standing_stats_are_the_average_over_generated_batches():
    """After recompute_batch_norm_stats, a BN layer's running mean is the mean of its inputs over
    all generated batches (cumulative average), and the generator's mode is restored."""
    from negaug.models import recompute_batch_norm_stats

    torch.manual_seed(0)
    G, _ = M.build("dcgan", image_size=8, channels=1, width=4)
    G.eval()
    norm = next(m for m in G.modules() if isinstance(m, torch.nn.BatchNorm2d))
    inputs = []
    handle = norm.register_forward_hook(lambda m, args, out: inputs.append(args[0].detach()))
    recompute_batch_norm_stats(G, num_batches=3, batch_size=5, seed=1)
    handle.remove()
    assert not G.training and len(inputs) == 3 and norm.momentum == 0.1
    stacked = torch.cat(inputs)  # (15, C, H, W)
    torch.testing.assert_close(norm.running_mean, stacked.mean(dim=(0, 2, 3)), rtol=1e-5, atol=1e-6)
    before = norm.running_mean.clone()
    recompute_batch_norm_stats(G, num_batches=3, batch_size=5, seed=1)
    assert torch.equal(norm.running_mean, before)  # seeded: the same statistics again
