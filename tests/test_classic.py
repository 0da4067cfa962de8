"""The classic GAN toolkit (issue 15, first half): feature matching and minibatch discrimination
(Salimans et al. 2016), MMD / GMMN (Li et al. 2015; Dziugaite et al. 2015), the relativistic
pairing loss with R1 + R2 (R3GAN, Huang et al. 2024), each with NDA and from `negaug train`."""
import json
import math

import pytest
import torch
import torch.nn.functional as F

from negaug import losses, models
from negaug.experiment import train
from negaug.experiment.build import build
from negaug.experiment.config import load_config
from negaug.losses import feature_matching_loss, mmd2, r1_penalty, r2_penalty
from negaug.losses.mmd import gaussian_kernel_mixture
from negaug.models.layers import MinibatchDiscrimination


def sp(v: float) -> float:
    return math.log1p(math.exp(v))


# --- feature matching -------------------------------------------------------------------------

def test_feature_matching_hand_computed_and_real_side_detached():
    real = torch.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)  # mean (2, 3)
    fake = torch.tensor([[0.0, 0.0], [2.0, 2.0], [1.0, 1.0]], requires_grad=True)  # mean (1, 1)
    loss = feature_matching_loss(real, fake)
    torch.testing.assert_close(loss, torch.tensor(5.0))  # (2 - 1)^2 + (3 - 1)^2
    loss.backward()
    assert real.grad is None  # the real features are a fixed target
    torch.testing.assert_close(fake.grad, torch.tensor([[-2 / 3, -4 / 3]] * 3))  # -2 (mu_r - mu_f) / 3


# --- minibatch discrimination -----------------------------------------------------------------

def test_minibatch_layer_three_samples_exact():
    layer = MinibatchDiscrimination(1, num_kernels=2, kernel_dim=2)
    with torch.no_grad():
        layer.T.copy_(torch.tensor([[[1.0, 2.0], [0.5, 0.0]]]))  # (A=1, K=2, C=2)
    f = torch.tensor([[0.0], [1.0], [3.0]])
    out = layer(f)
    # kernel 0: M_i = (f_i, 2 f_i), L1 = 3 |f_i - f_j|; kernel 1: M_i = (f_i / 2, 0), L1 = |f_i - f_j| / 2
    gaps = [[0, 1, 3], [1, 0, 2], [3, 2, 0]]
    expected = [[f[i, 0].item(), *(sum(math.exp(-scale * gaps[i][j]) for j in range(3) if j != i)
                                   for scale in (3.0, 0.5))]
                for i in range(3)]
    torch.testing.assert_close(out, torch.tensor(expected), rtol=1e-6, atol=1e-7)
    assert out[0, 1].item() == pytest.approx(math.exp(-3) + math.exp(-9), abs=1e-6)  # j = i left out, bias 0


def test_minibatch_layer_is_permutation_equivariant_and_collapse_gives_batch_size_minus_one():
    torch.manual_seed(0)
    layer = MinibatchDiscrimination(4, num_kernels=3, kernel_dim=2)
    f = torch.randn(5, 4)
    order = torch.tensor([3, 0, 4, 1, 2])
    torch.testing.assert_close(layer(f)[order], layer(f[order]))
    collapsed = layer(f[:1].repeat(5, 1))[:, 4:]
    torch.testing.assert_close(collapsed, torch.full((5, 3), 4.0))  # the 4 others, bias 0


@pytest.mark.parametrize("name,shape,options", [("mlp", None, {"width": 8}), ("dcgan", 16, {"width": 4}),
                                                 ("sngan_resnet", 16, {"width": 4})])
def test_minibatch_discriminator_every_parameter_gets_a_gradient(name, shape, options):
    torch.manual_seed(0)
    _, D = models.build(name, image_size=shape, channels=None if shape is None else 1, num_classes=3,
                        minibatch_discrimination=3, minibatch_kernel_dim=2, **options)
    assert D.batch_dependent is True
    x = torch.randn(4, 2) if shape is None else torch.randn(4, 1, shape, shape)
    D(x, torch.tensor([0, 1, 2, 0])).sum().backward()
    missing = [n for n, p in D.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing and D.projection.minibatch.T.grad.abs().sum() > 0


@pytest.mark.parametrize("value", [-1, 1.5, True, "8"])
def test_minibatch_option_is_checked_by_name(value):
    with pytest.raises(ValueError, match="minibatch_discrimination"):
        models.build("mlp", image_size=None, channels=None, minibatch_discrimination=value)


# --- MMD ---------------------------------------------------------------------------------------

def mmd2_double_loop(x, y, sigmas, unbiased):
    def k(a, b):
        return sum(math.exp(-sum((ai - bi) ** 2 for ai, bi in zip(a, b)) / (2 * s * s)) for s in sigmas)
    x, y = x.tolist(), y.tolist()

    def mean_within(a):
        pairs = [(i, j) for i in range(len(a)) for j in range(len(a)) if not (unbiased and i == j)]
        return sum(k(a[i], a[j]) for i, j in pairs) / len(pairs)
    cross = sum(k(a, b) for a in x for b in y) / (len(x) * len(y))
    return mean_within(x) + mean_within(y) - 2 * cross


@pytest.mark.parametrize("unbiased", [False, True])
def test_mmd2_matches_a_double_loop(unbiased):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(4, 3, generator=g, dtype=torch.float64), 1 + torch.randn(5, 3, generator=g, dtype=torch.float64)
    sigmas = [0.5, 2.0]
    value = mmd2(x, y, sigmas, unbiased=unbiased)
    assert value.item() == pytest.approx(mmd2_double_loop(x, y, sigmas, unbiased), abs=1e-6)
    assert mmd2(x, x, sigmas).item() == pytest.approx(0.0, abs=1e-12)  # biased: a squared distance
    if unbiased:  # expectation MMD^2, not a squared distance: differs from the biased one
        assert value.item() != pytest.approx(mmd2(x, y, sigmas).item(), abs=1e-3)


def test_mmd_loss_with_nda_is_the_mmd_to_the_eq3_mixture_up_to_a_constant():
    """lam * [MMD^2(G, P) - (1 - lam) MMD^2(G, N)] + (1 - lam) MMD^2(P, N) = MMD^2(P, lam G + (1 - lam) N),
    exactly for the biased estimator (weighted kernel mean embeddings)."""
    g = torch.Generator().manual_seed(1)
    real, fake, neg = (torch.randn(6, 2, generator=g, dtype=torch.float64) + shift for shift in (0.0, 1.0, -1.0))
    lam, sigmas = 0.25, [0.5, 1.0, 4.0]
    loss, terms = losses.build("mmd", sigmas=sigmas).generator_loss(fake, real, neg, lam=lam)
    assert set(terms) == {"mmd_real", "mmd_negative"}
    fake_side = torch.cat([fake, neg]).float()
    w_fake = torch.cat([torch.full((6,), lam / 6), torch.full((6,), (1 - lam) / 6)])
    w_real = torch.full((6,), 1 / 6)
    k = gaussian_kernel_mixture
    real32 = real.float()
    mixture = (w_real @ k(real32, real32, sigmas) @ w_real + w_fake @ k(fake_side, fake_side, sigmas) @ w_fake
               - 2 * w_real @ k(real32, fake_side, sigmas) @ w_fake)
    lhs = lam * loss + (1 - lam) * mmd2(real.float(), neg.float(), sigmas)
    torch.testing.assert_close(lhs, mixture, rtol=1e-5, atol=1e-6)


def test_mmd_loss_gradient_repels_from_negatives():
    real = torch.zeros(4, 2)
    neg = torch.tensor([[1.0, 0.0]] * 4)
    fake = torch.tensor([[0.5, 0.0]] * 4, requires_grad=True)  # halfway: attraction and repulsion agree
    loss, _ = losses.build("mmd", sigmas=[1.0]).generator_loss(fake, real, neg, lam=0.5)
    loss.backward()
    assert (fake.grad[:, 0] > 0).all()  # descending moves fake towards the data, away from the negatives


@pytest.mark.parametrize("options", [{"sigmas": []}, {"sigmas": [0.0]}, {"sigmas": "1"}, {"unbiased": 1}])
def test_mmd_options_are_checked_by_name(options):
    with pytest.raises(ValueError, match="mmd"):
        losses.build("mmd", **options)


# --- RpGAN and R1 / R2 -------------------------------------------------------------------------

def test_rpgan_two_sample_example_hand_computed():
    loss = losses.build("rpgan")
    d_real, d_fake, d_neg = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0]), torch.tensor([-1.0, 1.0])
    value, terms = loss.d_loss(d_real, d_fake, d_neg, lam=0.25)
    generated, negative = (sp(-1) + sp(2)) / 2, (sp(-2) + sp(1)) / 2
    assert value.item() == pytest.approx(0.25 * generated + 0.75 * negative, rel=1e-6)
    assert terms["d_fake"].item() == pytest.approx(generated, rel=1e-6)
    assert terms["d_neg"].item() == pytest.approx(negative, rel=1e-6)
    plain, _ = loss.d_loss(d_real, d_fake)
    assert plain.item() == pytest.approx(generated, rel=1e-6)
    assert loss.g_loss(d_fake, d_real).item() == pytest.approx((sp(1) + sp(-2)) / 2, rel=1e-6)
    torch.testing.assert_close(loss.g_loss(d_fake, d_real), F.softplus(d_real - d_fake).mean())


def test_rpgan_refuses_unpaired_batches_and_a_missing_real_side():
    loss = losses.build("rpgan")
    with pytest.raises(ValueError, match="pairs each real sample"):
        loss.d_loss(torch.zeros(2), torch.zeros(3))
    with pytest.raises(ValueError, match="needs D's scores of a real batch"):
        loss.g_loss(torch.zeros(2))
    with pytest.raises(ValueError, match="needs lam"):
        loss.d_loss(torch.zeros(2), torch.zeros(2), torch.zeros(2))


def test_r1_and_r2_on_a_linear_d_are_half_the_squared_weight_norm():
    w = torch.tensor([3.0, -4.0])

    def linear(x, y=None):
        return x @ w + 1.0

    points = torch.randn(5, 2, generator=torch.Generator().manual_seed(0))
    assert r2_penalty(linear, points).item() == pytest.approx(12.5)  # 0.5 * ||w||^2, every sample
    assert r1_penalty(linear, points).item() == pytest.approx(12.5)
    assert r2_penalty(linear, points, weight=2.0).item() == pytest.approx(25.0)

    def quadratic(x, y=None):  # grad = 2 x: R2 = 0.5 * mean 4 ||x||^2
        return x.square().sum(1)
    points = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    assert r2_penalty(quadratic, points).item() == pytest.approx(0.5 * (4 + 16) / 2)


# --- config and the training loop ----------------------------------------------------------------

FAST = ["train.device=cpu", "train.progress=false", "train.sample_every=0", "train.checkpoint_every=0"]


@pytest.mark.parametrize("overrides,message", [
    (["loss.r2_penalty=-1"], "loss.r2_penalty=-1.0 must be >= 0"),
    (["loss.feature_matching=-0.5"], "loss.feature_matching=-0.5 must be >= 0"),
    (["loss.name=mmd"], "loss.r1_penalty=0.1 acts on a discriminator"),
    (["loss.name=mmd", "loss.r1_penalty=0", "loss.feature_matching=1"], "loss.feature_matching=1 acts on a discriminator"),
    (["loss.name=mmd", "loss.r1_penalty=0", "nda.mode=mixture"], "use nda.mode=weighted"),
    # regression (red team): mmd ran one G step per step whatever optim.num_d_steps said
    (["loss.name=mmd", "loss.r1_penalty=0", "optim.num_d_steps=4"], "set optim.num_d_steps=1"),
    (["model.options.minibatch_discrimination=4"], "set model.options.minibatch_discrimination=0, or loss.r1_penalty=0"),
    (["model.options.minibatch_discrimination=4", "loss.r1_penalty=0", "loss.r2_penalty=1"],
     "minibatch discrimination compares each sample"),
    (["model.options.minibatch_discrimination=-4", "loss.r1_penalty=0"], "minibatch_discrimination=-4 must be an integer"),
    (["loss.name=mmd", "loss.r1_penalty=0", "loss.options.sigmas=[-1]"], "mmd sigmas=-1"),
    # bug: mmd has no D step, so a minibatch-discrimination D was built, never called, and the option did nothing
    (["loss.name=mmd", "loss.r1_penalty=0", "model.options.minibatch_discrimination=4"],
     "set model.options.minibatch_discrimination=0"),
])
def test_config_errors_are_one_line_value_errors(overrides, message):
    with pytest.raises(ValueError) as err:
        build(load_config("ring", [*FAST, *overrides]))
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("loss_name", ["nonsaturating", "rpgan"])
@pytest.mark.parametrize("mode", ["weighted", "mixture"])
def test_minibatch_d_is_called_once_per_kind_in_both_steps(tmp_path, monkeypatch, loss_name, mode):
    sizes = []
    original = models.mlp.MLPDiscriminator.forward
    monkeypatch.setattr(models.mlp.MLPDiscriminator, "forward",
                        lambda self, x, y=None: (sizes.append(x.shape[0]), original(self, x, y))[1])
    config = load_config("ring", [*FAST, "model.options.minibatch_discrimination=4", "loss.r1_penalty=0",
                                  "data.batch_size=8", "train.steps=2", f"loss.name={loss_name}", f"nda.mode={mode}",
                                  "nda.lam=0.25", f"train.runs_dir={tmp_path}", "train.name=r"])
    _, state = build(config)
    assert models.is_batch_dependent(state.discriminator)
    train(config)
    d_step = [8, 8, 8] if mode == "weighted" else [8, 2, 6]  # real, generated, negatives
    g_step = [8, 8] if loss_name == "rpgan" else [8]  # generated (and real: the relativistic pairs)
    assert sizes == (d_step + g_step) * 2


def test_mmd_metric_is_near_zero_on_the_data_and_records_its_protocol():
    from negaug import data, metrics
    reference = data.build("ring", split="test", num_samples=1000)
    same = data.build("ring", split="train", num_samples=1000).points
    noise = torch.randn(1000, 2, generator=torch.Generator().manual_seed(0))
    results = metrics.evaluate_samples(same, reference, metrics=["mmd"], seed=3)
    result = results["mmd[raw]"]
    assert abs(result["value"]) < 0.005 and result["higher_is_better"] is False
    far = metrics.evaluate_samples(noise, reference, metrics=["mmd"], seed=3)["mmd[raw]"]["value"]
    assert 0.05 < far < 2.0 * 3  # three kernels, each at most 2
    protocol = result["protocol"]
    assert protocol["seed"] == 3 and protocol["mmd_samples"] == [1000, 1000] and protocol["estimator"] == "unbiased"
    assert protocol["sigmas"] == pytest.approx([protocol["median_distance"] * f for f in (0.5, 1.0, 2.0)])


# --- tiny runs on the 2-D ring: each option trains and covers modes ----------------------------------

RING = [*FAST, "data.options.std=0.1", "data.batch_size=64", "model.options.width=64", "train.steps=400",
        "eval.every=400", "eval.metrics=[toy]", "eval.num_samples=2000", "train.seed=0"]
# option -> (overrides, least modes covered of 8). Measured at this size (seed 0, 400 steps): feature
# matching 8, minibatch discrimination 6, rpgan + R1 + R2 3, mmd 4; the preset's plain loss (with
# NDA and R1) 2, an untrained G 0. Short runs: they show each option trains, not which is best.
RING_OPTIONS = {
    "feature_matching": (["loss.feature_matching=1"], 6),
    "minibatch": (["model.options.minibatch_discrimination=8", "loss.r1_penalty=0"], 5),
    "rpgan": (["loss.name=rpgan", "loss.r1_penalty=0.1", "loss.r2_penalty=0.1"], 2),
    "mmd": (["loss.name=mmd", "loss.r1_penalty=0", "loss.options.sigmas=[0.1,0.2,0.5,1,2]"], 3),
}


@pytest.mark.slow
@pytest.mark.parametrize("option", sorted(RING_OPTIONS))
def test_tiny_ring_run_with_nda_trains_and_covers_modes(tmp_path, option):
    overrides, least_modes = RING_OPTIONS[option]
    result = train(load_config("ring", [*RING, *overrides, f"train.runs_dir={tmp_path}", "train.name=r"]))
    assert result.step == 400
    records = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    (evaluation,) = [r["eval"] for r in records if "eval" in r]
    modes = evaluation["toy_modes_covered"]["value"]
    assert least_modes <= modes <= 8, f"{option}: {modes} of 8 modes covered"
    assert 0.04 < evaluation["toy_high_quality"]["value"] <= 1.0
    last = [r for r in records if "loss/g" in r][-1]
    expected = {"feature_matching": "loss/feature_matching", "minibatch": "loss/d", "rpgan": "loss/r2",
                "mmd": "loss/mmd_negative"}[option]
    assert expected in last and math.isfinite(last[expected])
    if option == "mmd":
        assert "loss/d" not in last  # no discriminator step


@pytest.mark.parametrize("minibatch", [0, 4])
def test_feature_matching_calls_d_features_like_score(tmp_path, monkeypatch, minibatch):
    """`steps.features` groups by kind exactly like `score`: one call for a per-sample D, one per
    kind for a batch-dependent one (minibatch discrimination)."""
    sizes = []
    original = models.mlp.MLPDiscriminator.features
    monkeypatch.setattr(models.mlp.MLPDiscriminator, "features",
                        lambda self, x: (sizes.append(x.shape[0]), original(self, x))[1])
    config = load_config("ring", [*FAST, f"model.options.minibatch_discrimination={minibatch}", "loss.r1_penalty=0",
                                  "loss.feature_matching=1", "data.batch_size=8", "train.steps=1", "nda.mode=mixture",
                                  "nda.lam=0.25", f"train.runs_dir={tmp_path}", "train.name=r"])
    result = train(config)
    if minibatch:  # D step: real, generated, negatives; G step: score(generated), features(generated), features(real)
        assert sizes == [8, 2, 6, 8, 8, 8]
    else:  # D step: one call; G step: score(generated), then features of generated + real in one call
        assert sizes == [16, 8, 16]
    assert result.last_log["loss/feature_matching"] >= 0


def test_mmd_generator_step_adds_the_orthogonal_penalty(tmp_path):
    """Bug: `optim.ortho_reg` was added in the GAN G step only, so with loss.name=mmd it was silently
    ignored. The logged loss/ortho is the penalty of G's weights before the step."""
    from negaug.models.biggan import orthogonal_penalty
    config = load_config("ring", [*FAST, "loss.name=mmd", "loss.r1_penalty=0", "optim.ortho_reg=0.5",
                                  "train.steps=1", "train.log_every=1", f"train.runs_dir={tmp_path}", "train.name=r"])
    _, state = build(config)
    expected = orthogonal_penalty(state.generator).item()  # the same seed builds the same initial G
    result = train(config)
    (record,) = [r for r in map(json.loads, (result.run_dir / "metrics.jsonl").read_text().splitlines()) if "loss/g" in r]
    assert expected > 0 and record["loss/ortho"] == pytest.approx(expected, rel=1e-5)
