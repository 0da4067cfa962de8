"""negaug.losses: exact values on hand-checked inputs, the NDA weighting, optimal discriminators
(Theorem 1, eq. 5-6), numerical stability, and the penalties."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.testing import assert_close

import negaug.losses as L

# Objectives of per-sample terms; rpgan (pairs) and mmd (no discriminator): tests/test_classic.py
ALL = [name for name in L.names() if name not in ("rpgan", "mmd")]
FGANS = [n for n in ALL if n.startswith("fgan-")]
D_REAL = [2.0, 0.5]
D_FAKE = [-3.0, 0.5]


def t(values, dtype=torch.float64) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype)


def mean(xs) -> float:
    return sum(xs) / len(xs)


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


# Nowozin et al. 2016, Table 2 (output activation g_f, conjugate f*) and f' of Table 1's f,
# written out plainly (no stable rewrites) to check the library's stable forms against.
TABLE2 = {
    "fgan-kl": (lambda v: v, lambda s: math.exp(s - 1), lambda u: 1 + math.log(u)),
    "fgan-reverse-kl": (lambda v: -math.exp(-v), lambda s: -1 - math.log(-s), lambda u: -1 / u),
    "fgan-pearson": (lambda v: v, lambda s: s * s / 4 + s, lambda u: 2 * (u - 1)),
    "fgan-hellinger": (lambda v: 1 - math.exp(-v), lambda s: s / (1 - s), lambda u: 1 - 1 / math.sqrt(u)),
    "fgan-js": (
        lambda v: math.log(2) - math.log(1 + math.exp(-v)),
        lambda s: -math.log(2 - math.exp(s)),
        lambda u: math.log(2 * u / (1 + u)),
    ),
    "fgan-gan": (
        lambda v: -math.log(1 + math.exp(-v)),
        lambda s: -math.log(1 - math.exp(s)),
        lambda u: math.log(u / (1 + u)),
    ),
}


def hand_values(name: str, real: list[float], fake: list[float], generator_loss: str = "nonsaturating"):
    """(D loss, G loss) of ``name`` computed by hand from the textbook formulas."""
    if name == "hinge":
        return mean([max(0, 1 - v) for v in real]) + mean([max(0, 1 + v) for v in fake]), -mean(fake)
    if name in ("minimax", "nonsaturating"):
        d = mean([-math.log(1 / (1 + math.exp(-v))) for v in real]) + mean([softplus(v) for v in fake])
        g = mean([-softplus(v) for v in fake]) if name == "minimax" else mean([softplus(-v) for v in fake])
        return d, g
    if name == "lsgan":
        d = 0.5 * mean([(v - 1) ** 2 for v in real]) + 0.5 * mean([v**2 for v in fake])
        return d, 0.5 * mean([(v - 1) ** 2 for v in fake])
    if name in ("wgan", "wgan-gp"):
        return -mean(real) + mean(fake), -mean(fake)
    g_f, f_star, _ = TABLE2[name]
    d = -mean([g_f(v) for v in real]) + mean([f_star(g_f(v)) for v in fake])
    if generator_loss == "nonsaturating":
        return d, -mean([g_f(v) for v in fake])
    return d, -mean([f_star(g_f(v)) for v in fake])


def test_registry_has_every_loss():
    assert set(L.names()) == {
        "minimax", "nonsaturating", "hinge", "lsgan", "wgan", "wgan-gp",
        "fgan-kl", "fgan-reverse-kl", "fgan-pearson", "fgan-hellinger", "fgan-js", "fgan-gan", "rpgan", "mmd",
    }


def test_unknown_name_and_option_raise():
    with pytest.raises(ValueError, match="did you mean 'hinge'"):
        L.build("hinje")
    with pytest.raises(ValueError, match="clip_value"):
        L.build("wgan", clip=0.1)
    with pytest.raises(ValueError, match="generator_loss"):
        L.build("fgan-kl", generator_loss="saturating")


def test_hinge_worked_example():
    loss, terms = L.build("hinge").d_loss(t(D_REAL), t(D_FAKE))
    assert_close(terms["d_real"], t(0.25))  # relu(1-2)=0, relu(1-0.5)=0.5
    assert_close(terms["d_fake"], t(0.75))  # relu(1-3)=0, relu(1+0.5)=1.5
    assert_close(loss, t(1.0))
    assert_close(L.build("hinge").g_loss(t(D_FAKE)), t(1.25))


@pytest.mark.parametrize("name", ALL)
def test_values_match_hand_computation(name):
    loss = L.build(name)
    d_expected, g_expected = hand_values(name, D_REAL, D_FAKE)
    d_value, terms = loss.d_loss(t(D_REAL), t(D_FAKE))
    assert_close(d_value, t(d_expected), rtol=1e-12, atol=1e-12)
    assert_close(terms["d_real"] + terms["d_fake"], d_value, rtol=1e-12, atol=1e-12)
    assert_close(loss.g_loss(t(D_FAKE)), t(g_expected), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", FGANS)
def test_fgan_minimax_generator_option(name):
    loss = L.build(name, generator_loss="minimax")
    _, g_expected = hand_values(name, D_REAL, D_FAKE, generator_loss="minimax")
    assert_close(loss.g_loss(t(D_FAKE)), t(g_expected), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", FGANS)
def test_fgan_stable_conjugate_equals_plain_formula(name):
    loss = L.build(name)
    v = torch.linspace(-5, 5, 41, dtype=torch.float64)
    g_f, f_star, _ = TABLE2[name]
    assert_close(loss.activation(v), t([g_f(x) for x in v.tolist()]))
    assert_close(loss.conjugate(loss.activation(v)), t([f_star(g_f(x)) for x in v.tolist()]))
    assert_close(loss.conjugate_of_activation(v), loss.conjugate(loss.activation(v)))


def test_fgan_gan_is_the_standard_gan():
    v_real, v_fake = torch.randn(16, dtype=torch.float64), torch.randn(16, dtype=torch.float64)
    for generator_loss, standard in (("nonsaturating", "nonsaturating"), ("minimax", "minimax")):
        fgan, gan = L.build("fgan-gan", generator_loss=generator_loss), L.build(standard)
        assert_close(fgan.d_loss(v_real, v_fake)[0], gan.d_loss(v_real, v_fake)[0])
        assert_close(fgan.g_loss(v_fake), gan.g_loss(v_fake))


@pytest.mark.parametrize("name", ALL)
def test_no_nda_is_bit_identical_to_plain(name):
    loss = L.build(name)
    gen = torch.Generator().manual_seed(0)
    real, fake, neg = (torch.randn(8, generator=gen, requires_grad=True) for _ in range(3))
    plain, plain_terms = loss.d_loss(real, fake)
    (plain_grad,) = torch.autograd.grad(plain, fake)
    for d_neg, lam in ((neg, 1.0), (None, 0.25), (None, 1.0)):
        value, terms = loss.d_loss(real, fake, d_neg, lam=lam)
        assert torch.equal(value, plain)
        assert torch.equal(terms["d_real"], plain_terms["d_real"]) and torch.equal(terms["d_fake"], plain_terms["d_fake"])
        assert torch.equal(torch.autograd.grad(value, fake)[0], plain_grad)
    assert torch.autograd.grad(loss.d_loss(real, fake, neg, lam=1.0)[0], neg, allow_unused=True)[0] is None


def test_weighted_hinge_by_hand():
    # d_neg = [0, -2]: relu(1+0)=1, relu(1-2)=0 -> 0.5; loss = 0.25 + 0.25*0.75 + 0.75*0.5 = 0.8125
    loss, terms = L.build("hinge").d_loss(t(D_REAL), t(D_FAKE), t([0.0, -2.0]), lam=0.25)
    assert_close(terms["d_neg"], t(0.5))
    assert_close(loss, t(0.8125))


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("lam", [0.25, 0.5, 0.9])
def test_weighted_fake_side_is_lam_mixture(name, lam):
    loss = L.build(name)
    real, fake, neg = t([0.3, -1.2, 2.0]), t([-0.7, 0.1]), t([1.5, -2.5, 0.4, 0.0])
    value, terms = loss.d_loss(real, fake, neg, lam=lam)
    real_only = loss.real_term(real).mean()
    fake_only, neg_only = loss.fake_term(fake).mean(), loss.fake_term(neg).mean()
    assert_close(value, real_only + lam * fake_only + (1 - lam) * neg_only)
    assert_close(terms["d_neg"], loss.d_loss(real, neg)[1]["d_fake"])  # the same term as a fake batch
    assert_close(terms["d_fake"], fake_only)


@pytest.mark.parametrize("name", ALL)
def test_mixture_batch_equals_weighted_when_counts_match(name):
    # lam = 0.25 of a fake batch of 8: 2 generated, 6 negatives, concatenated by the loop.
    loss = L.build(name)
    gen = torch.Generator().manual_seed(1)
    real, fake, neg = torch.randn(8, generator=gen), torch.randn(2, generator=gen), torch.randn(6, generator=gen)
    mixed, _ = loss.d_loss(real, torch.cat([fake, neg]))
    weighted, _ = loss.d_loss(real, fake, neg, lam=0.25)
    assert_close(mixed, weighted)


@pytest.mark.parametrize("lam", [0.0, -0.1, 1.5, float("nan")])
def test_lam_outside_unit_interval_raises(lam):
    with pytest.raises(ValueError, match="lam"):
        L.build("hinge").d_loss(t(D_REAL), t(D_FAKE), t(D_FAKE), lam=lam)


# A discrete space of 4 points: p_data, p_G and p_bar as counts out of 20, so that a batch holding
# point i count_i times makes the batch mean an exact expectation.
P_DATA, P_G, P_BAR = [4, 6, 7, 3], [8, 2, 5, 5], [1, 9, 2, 8]


def optimise_tabular_discriminator(loss: L.GANLoss, lam: float) -> torch.Tensor:
    """Free logits v (4,) minimising the exact expected D loss with LBFGS; returns v*."""
    v = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    index = torch.arange(4)
    real_idx, fake_idx, neg_idx = (index.repeat_interleave(torch.tensor(c)) for c in (P_DATA, P_G, P_BAR))
    opt = torch.optim.LBFGS([v], lr=1, max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-15,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        value, _ = loss.d_loss(v[real_idx], v[fake_idx], v[neg_idx] if lam < 1 else None, lam=lam)
        value.backward()
        return value

    for _ in range(5):
        opt.step(closure)
    return v.detach()


def density_ratio(lam: float) -> torch.Tensor:
    """p_data / (lam p_G + (1 - lam) p_bar), (4,)."""
    p, g, bar = (torch.tensor(c, dtype=torch.float64) / 20 for c in (P_DATA, P_G, P_BAR))
    return p / (lam * g + (1 - lam) * bar)


@pytest.mark.parametrize("lam", [1.0, 0.25])
@pytest.mark.parametrize("name", FGANS)
def test_fgan_optimal_discriminator_is_f_prime_of_density_ratio(name, lam):
    """Theorem 1, eq. 5 (lam = 1) and eq. 6: T* = g_f(v*) = f'(p_data / (lam p_G + (1-lam) p_bar))."""
    loss = L.build(name)
    v_star = optimise_tabular_discriminator(loss, lam)
    f_prime = TABLE2[name][2]
    expected = t([f_prime(r) for r in density_ratio(lam).tolist()])
    assert_close(loss.activation(v_star), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("lam", [1.0, 0.25])
@pytest.mark.parametrize("name", ["minimax", "nonsaturating", "lsgan"])
def test_optimal_discriminator_is_p_over_p_plus_q(name, lam):
    """D* = p_data / (p_data + q) with q the NDA mixture (sigmoid(v*) for the logistic losses, v* for LSGAN)."""
    loss = L.build(name)
    v_star = optimise_tabular_discriminator(loss, lam)
    ratio = density_ratio(lam)
    d_star = torch.sigmoid(v_star) if name != "lsgan" else v_star
    assert_close(d_star, ratio / (1 + ratio), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("lam", [1.0, 0.25])
def test_hinge_optimum_is_sign_of_p_minus_q(lam):
    """The hinge loss is piecewise linear: its tabular optimum is v* = +1 where p_data > q, -1 where
    p_data < q. Check that every single-coordinate move away from it raises the expected loss."""
    loss = L.build("hinge")
    index = torch.arange(4)
    real_idx, fake_idx, neg_idx = (index.repeat_interleave(torch.tensor(c)) for c in (P_DATA, P_G, P_BAR))
    expected_loss = lambda v: loss.d_loss(v[real_idx], v[fake_idx], v[neg_idx], lam=lam)[0]
    ratio = density_ratio(lam)
    assert not torch.any(ratio == 1)
    v_star = torch.where(ratio > 1, 1.0, -1.0).double()
    best = expected_loss(v_star)
    for i in range(4):
        for delta in (-0.1, 0.1):
            moved = v_star.clone()
            moved[i] += delta
            assert expected_loss(moved) > best


@pytest.mark.parametrize("name", ALL)
def test_finite_values_and_gradients_at_extreme_logits(name):
    for generator_loss in (("nonsaturating", "minimax") if name in FGANS else (None,)):
        loss = L.build(name, generator_loss=generator_loss) if generator_loss else L.build(name)
        real = torch.tensor([50.0, -50.0], requires_grad=True)
        fake = torch.tensor([-50.0, 50.0], requires_grad=True)
        neg = torch.tensor([50.0, -50.0], requires_grad=True)
        d_value, terms = loss.d_loss(real, fake, neg, lam=0.5)
        g_value = loss.g_loss(fake)
        grads = torch.autograd.grad(d_value + g_value, (real, fake, neg))
        assert torch.isfinite(d_value) and torch.isfinite(g_value)
        assert all(torch.isfinite(v) for v in terms.values())
        assert all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", ALL)
def test_half_precision_outputs_are_evaluated_in_float32(name):
    loss = L.build(name)
    value, terms = loss.d_loss(t(D_REAL, torch.bfloat16), t(D_FAKE, torch.bfloat16))
    assert value.dtype == torch.float32 and terms["d_real"].dtype == torch.float32
    assert loss.g_loss(t(D_FAKE, torch.bfloat16)).dtype == torch.float32
    assert_close(value, t(hand_values(name, D_REAL, D_FAKE)[0], torch.float32))


def test_loop_attributes():
    assert L.build("wgan").clip_value == 0.01 and L.build("wgan", clip_value=0.05).clip_value == 0.05
    assert L.build("wgan-gp").gp_weight == 10.0 and L.build("wgan-gp", gp_weight=1).gp_weight == 1.0
    for name in ALL:
        loss = L.build(name)
        assert (loss.clip_value is not None) == (name == "wgan")
        assert (loss.gp_weight > 0) == (name == "wgan-gp")
    with pytest.raises(ValueError):
        L.build("wgan", clip_value=0)


class LinearCritic(nn.Module):
    """D(x) = <w, x.flatten(1)> + b with ||w|| = 3: its input gradient is w everywhere."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([2.0, 1.0, 2.0, 0.0], dtype=torch.float64))
        self.b = nn.Parameter(torch.tensor(0.5, dtype=torch.float64))

    def forward(self, x, y=None):
        return x.flatten(1) @ self.w + self.b


def test_gradient_penalty_of_linear_critic():
    D = LinearCritic()
    real, fake = torch.randn(5, 1, 2, 2, dtype=torch.float64), torch.randn(5, 1, 2, 2, dtype=torch.float64)
    penalty = L.gradient_penalty(D, real, fake, weight=10.0, generator=torch.Generator().manual_seed(0))
    assert_close(penalty, t(40.0))  # 10 * (3 - 1)^2
    (grad_w,) = torch.autograd.grad(penalty, D.w)  # d/dw 10 (||w|| - 1)^2 = 10 * 2 * 2 * w / 3
    assert_close(grad_w, 40.0 / 3.0 * D.w.detach())


def test_gradient_penalty_interpolates_with_per_sample_eps_from_generator():
    # D(x) = ||x||^2 / 2 has gradient x; real = +1, fake = -1 (4 features): x_hat = (2 eps - 1) * 1,
    # so ||grad|| = 2 |2 eps - 1| with eps ~ U[0, 1] drawn as rand((B, 1, 1, 1), generator).
    D = lambda x, y=None: 0.5 * x.flatten(1).square().sum(1)
    real, fake = torch.ones(6, 1, 2, 2), -torch.ones(6, 1, 2, 2)
    penalty = L.gradient_penalty(D, real, fake, weight=2.0, generator=torch.Generator().manual_seed(3))
    eps = torch.rand(6, 1, 1, 1, generator=torch.Generator().manual_seed(3)).flatten()
    assert_close(penalty, 2.0 * ((2 * (2 * eps - 1).abs() - 1) ** 2).mean())
    with pytest.raises(ValueError, match="same shape"):
        L.gradient_penalty(D, real, fake[:3])


def test_gradient_penalty_passes_labels_to_conditional_critic():
    seen = {}

    def D(x, y=None):
        seen["y"] = y
        return x.flatten(1).sum(1)

    y = torch.tensor([0, 1, 2])
    L.gradient_penalty(D, torch.zeros(3, 2), torch.ones(3, 2), y=y)
    assert seen["y"] is y


def test_r1_penalty_of_linear_critic():
    D = LinearCritic()
    real = torch.randn(7, 1, 2, 2, dtype=torch.float64)
    assert_close(L.r1_penalty(D, real, weight=10.0), t(45.0))  # 10 / 2 * ||w||^2
    assert_close(L.r1_penalty(D, real), t(4.5))  # unweighted by default: the loop applies its weight


def test_gradient_penalty_is_unweighted_by_default():
    # The loop multiplies by loss.gp_weight itself; a default weight of 10 would apply it twice.
    D = LinearCritic()
    real, fake = torch.zeros(3, 1, 2, 2, dtype=torch.float64), torch.ones(3, 1, 2, 2, dtype=torch.float64)
    assert_close(L.gradient_penalty(D, real, fake), t(4.0))  # (||w|| - 1)^2


def test_clip_weights_clips_every_parameter():
    torch.manual_seed(0)
    D = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.utils.parametrizations.spectral_norm(nn.Linear(4, 1)))
    with torch.no_grad():
        for p in D.parameters():
            p.copy_(torch.linspace(-1, 1, p.numel()).reshape(p.shape))
    before = [p.detach().clone() for p in D.parameters()]
    L.clip_weights(D, 0.05)
    for p, old in zip(D.parameters(), before):
        assert_close(p.detach(), old.clamp(-0.05, 0.05), rtol=0, atol=0)
    assert sum(p.numel() for p in D.parameters()) == 3 * 4 + 4 + 4 + 4 + 4 + 1  # all of them were seen
    with pytest.raises(ValueError):
        L.clip_weights(D, 0.0)


@pytest.mark.parametrize("name", [*ALL, "rpgan"])
def test_negatives_without_lam_are_refused_not_weighted_zero(name):
    """Regression: `d_loss(real, fake, neg)` used lam=1 by default, silently giving negatives weight 0."""
    loss = L.build(name)
    real, fake, neg = torch.randn(4), torch.randn(4), torch.randn(4)
    with pytest.raises(ValueError, match="needs lam="):
        loss.d_loss(real, fake, neg)
    assert torch.equal(loss.d_loss(real, fake)[0], loss.d_loss(real, fake, None, lam=0.3)[0])  # no negatives: lam unused
