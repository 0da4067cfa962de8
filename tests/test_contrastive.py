"""Tests of negaug.contrastive's library parts: InfoNCE with NDA negatives (eq. 8), encoders and
heads, split batch norm, and Theorem 2 on the 2-D toy problem. MoCo itself: test_contrastive_moco.py."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from negaug.contrastive import (
    ENCODERS,
    OBJECTIVES,
    SplitBatchNorm2d,
    convert_split_batch_norm,
    cosine_distance,
    frozen_batch_norm_stats,
    info_nce,
    info_nce_in_batch,
    mlp_head,
    representations,
)
from negaug.contrastive.analysis import nearest_data_distance
from negaug.contrastive.toy import ring_nda, ring_points, train_toy

# ----------------------------------------------------------------------------- a hand example
# Three queries in R^4, their positives, two queue negatives and one NDA view per query (not
# normalised: info_nce normalises). Temperature 0.5. Expected values computed in float64 numpy
# from the formula (module docstring of objectives.py); e.g. row 0's positive logit is
# cos((1,2,0,0), (1,1,0,0)) / 0.5 = 3 / sqrt(10) / 0.5 = 1.8973666.
Q = [[1, 2, 0, 0], [0, 1, -1, 0], [3, 0, 0, 4]]
P = [[1, 1, 0, 0], [0, 2, -1, 1], [3, 0, 1, 4]]
NEG = [[0, 0, 1, 0], [1, -1, 0, 2]]
NDA = [[[2, 3, 0, 1]], [[0, 1, -2, 0]], [[1, 0, 0, 1]]]
T = 0.5
PLAIN_LOSS = 0.34897778363674875
PER_SAMPLE_LOSS = 0.9210099580042342
BATCH_LOSS = 1.1478581310194949  # every query against all three NDA views
HALF_WEIGHT_LOSS = 0.677060508854581  # nda_weight 0.5, per sample
IN_BATCH_LOSS = 0.5301891852753015
IN_BATCH_PER_SAMPLE_LOSS = 1.0200111686498519
PER_SAMPLE_LOGITS = [[1.8973666, 0.0, -0.36514837, 1.91236577],
                     [1.73205081, -1.41421356, -0.57735027, 1.8973666],
                     [1.96116135, 0.0, 1.79629248, 1.97989899]]


def hand(dtype=torch.float64):
    return [torch.tensor(v, dtype=dtype) for v in (Q, P, NEG, NDA)]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_info_nce_on_the_hand_example(dtype):
    q, p, neg, nda = hand(dtype)
    tol = {"rtol": 1e-12, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 1e-6, "atol": 1e-6}
    loss, logits = info_nce(q, p, neg, temperature=T)
    assert logits.shape == (3, 3)
    assert_close(loss, torch.tensor(PLAIN_LOSS, dtype=dtype), **tol)
    loss, logits = info_nce(q, p, neg, nda, temperature=T)
    assert logits.shape == (3, 4)
    assert_close(loss, torch.tensor(PER_SAMPLE_LOSS, dtype=dtype), **tol)
    assert_close(logits, torch.tensor(PER_SAMPLE_LOGITS, dtype=dtype), rtol=1e-6, atol=1e-7)
    loss, logits = info_nce(q, p, neg, nda[:, 0], temperature=T)  # (3, 4): the batch form
    assert logits.shape == (3, 6)
    assert_close(loss, torch.tensor(BATCH_LOSS, dtype=dtype), **tol)
    loss, logits = info_nce(q, p, neg, nda, temperature=T, nda_weight=0.5)
    assert_close(loss, torch.tensor(HALF_WEIGHT_LOSS, dtype=dtype), **tol)
    assert_close(logits[:, 3], torch.tensor(PER_SAMPLE_LOGITS, dtype=dtype)[:, 3] + math.log(0.5), rtol=1e-6, atol=1e-7)


def test_info_nce_in_batch_on_the_hand_example():
    q, p, _, nda = hand()
    loss, logits = info_nce_in_batch(q, p, temperature=T)
    assert logits.shape == (3, 3)
    assert_close(loss, torch.tensor(IN_BATCH_LOSS, dtype=torch.float64), rtol=1e-12, atol=1e-12)
    loss, logits = info_nce_in_batch(q, p, nda, temperature=T)
    assert logits.shape == (3, 4)
    assert_close(loss, torch.tensor(IN_BATCH_PER_SAMPLE_LOSS, dtype=torch.float64), rtol=1e-12, atol=1e-12)
    assert_close(logits.diagonal(), torch.tensor(PER_SAMPLE_LOGITS, dtype=torch.float64)[:, 0], rtol=1e-6, atol=1e-7)


def test_orthonormal_closed_form():
    """q = p, negatives and NDA orthogonal to q: loss = log(1 + (N + w M) e^{-1/T})."""
    eye = torch.eye(6, dtype=torch.float64)
    q, negatives, nda = eye[:2], eye[2:5], eye[5:].expand(2, 1, 6)
    for weight in (1.0, 0.3):
        loss, _ = info_nce(q, q, negatives, nda, temperature=0.1, nda_weight=weight)
        assert loss.item() == pytest.approx(math.log(1 + (3 + weight) * math.exp(-10)), rel=1e-12)


# ------------------------------------------------------------------ equalities with plain InfoNCE
def random_inputs(batch=5, dim=8, negatives=7, views=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*shape, generator=g) for shape in [(batch, dim), (batch, dim), (negatives, dim), (batch, views, dim)]]


@pytest.mark.parametrize("empty", [(5, 0, 8), (0, 8)])
def test_no_nda_views_is_plain_info_nce_exactly(empty):
    q, p, neg, _ = random_inputs()
    plain_loss, plain_logits = info_nce(q, p, neg)
    loss, logits = info_nce(q, p, neg, torch.zeros(empty))
    assert torch.equal(loss, plain_loss) and torch.equal(logits, plain_logits)
    loss, logits = info_nce_in_batch(q, p, torch.zeros(empty))
    assert torch.equal(loss, info_nce_in_batch(q, p)[0])


def test_nda_weight_zero_is_plain_info_nce_exactly():
    q, p, neg, nda = random_inputs()
    q.requires_grad_(), nda.requires_grad_()
    plain_loss, plain_logits = info_nce(q, p, neg)
    loss, logits = info_nce(q, p, neg, nda, nda_weight=0.0)
    assert torch.equal(loss, plain_loss)
    assert torch.equal(logits[:, :8], plain_logits) and bool(torch.isneginf(logits[:, 8:]).all())
    loss.backward()
    assert nda.grad is None or not bool(nda.grad.any())
    in_batch = info_nce_in_batch(q, p, nda, nda_weight=0.0)[0]
    assert torch.equal(in_batch, info_nce_in_batch(q, p)[0])


def test_nda_weight_is_a_multiplicity():
    """nda_weight = 2 equals the same NDA views given twice with weight 1."""
    q, p, neg, nda = random_inputs()
    twice = torch.cat([nda, nda], 1)
    assert_close(info_nce(q, p, neg, nda, nda_weight=2.0)[0], info_nce(q, p, neg, twice)[0], rtol=1e-6, atol=1e-7)


def test_nda_negatives_raise_the_loss_and_more_so_when_closer():
    q, p, neg, nda = random_inputs()
    plain = info_nce(q, p, neg, temperature=1.0)[0]
    far = info_nce(q, p, neg, -q.unsqueeze(1), temperature=1.0)[0]
    near = info_nce(q, p, neg, q.unsqueeze(1) + 0.01 * nda[:, :1], temperature=1.0)[0]
    assert plain < far < near


def test_per_sample_and_batch_forms_differ_only_in_whom_each_query_sees():
    q, p, neg, nda = random_inputs(views=2)
    # The batch form over the batch's 10 views == the per-sample form with every query given all 10.
    all_views = nda.flatten(0, 1)  # (10, D)
    batch_loss, batch_logits = info_nce(q, p, neg, all_views)
    per_sample_loss, per_sample_logits = info_nce(q, p, neg, all_views.expand(5, 10, 8))
    assert_close(batch_loss, per_sample_loss) and assert_close(batch_logits, per_sample_logits)
    # With a batch of one query, both forms are the same.
    one = info_nce(q[:1], p[:1], neg, nda[0])[0]
    assert_close(one, info_nce(q[:1], p[:1], neg, nda[:1])[0])


# ------------------------------------------------------------------------------------- gradients
def test_gradient_reaches_query_positive_negatives_and_nda_unless_detached():
    q, p, neg, nda = (t.requires_grad_() for t in random_inputs())
    info_nce(q, p, neg, nda)[0].backward()
    for tensor in (q, p, neg, nda):
        assert tensor.grad is not None and bool(tensor.grad.abs().sum() > 0)
    q2, p2 = q.detach().clone().requires_grad_(), p.detach().clone().requires_grad_()
    info_nce(q2, p2, neg.detach(), nda.detach())[0].backward()
    assert bool(q2.grad.abs().sum() > 0) and bool(p2.grad.abs().sum() > 0)
    # Detached NDA: the query's gradient still includes the NDA columns' push.
    q3 = q.detach().clone().requires_grad_()
    info_nce(q3, p.detach(), neg.detach())[0].backward()
    assert not torch.allclose(q3.grad, q2.grad)


def test_gradcheck():
    q, p, neg, nda = (t.double().requires_grad_() for t in random_inputs(batch=3, dim=4, negatives=2, views=2))
    assert torch.autograd.gradcheck(lambda *a: info_nce(*a, nda_weight=0.7)[0], (q, p, neg, nda))
    assert torch.autograd.gradcheck(lambda q, p, nda: info_nce_in_batch(q, p, nda)[0], (q, p, nda))


def test_shape_and_option_errors():
    q, p, neg, nda = random_inputs()
    with pytest.raises(ValueError, match="query and positive"):
        info_nce(q, p[:3], neg)
    with pytest.raises(ValueError, match="negatives must be"):
        info_nce(q, p, neg[:, :3])
    with pytest.raises(ValueError, match="per-sample NDA"):
        info_nce(q, p, neg, nda[:3])
    with pytest.raises(ValueError, match="NDA negatives must be"):
        info_nce(q, p, neg, nda[..., None])
    with pytest.raises(ValueError, match="temperature"):
        info_nce(q, p, neg, temperature=0.0)
    with pytest.raises(ValueError, match="nda_weight"):
        info_nce(q, p, neg, nda_weight=-1.0)


def test_objective_registry():
    assert {"infonce", "infonce_in_batch"} <= set(OBJECTIVES.names())
    q, p, neg, nda = random_inputs()
    objective = OBJECTIVES.build("infonce", temperature=0.2, nda_weight=0.5)
    loss, logits = objective(q, p, neg, nda)
    assert torch.equal(loss, info_nce(q, p, neg, nda, temperature=0.2, nda_weight=0.5)[0])
    assert torch.equal(objective.target(logits), torch.zeros(5, dtype=torch.long))
    in_batch = OBJECTIVES.build("infonce_in_batch")
    loss, logits = in_batch(q, p, nda=nda)
    assert torch.equal(loss, info_nce_in_batch(q, p, nda)[0])
    assert torch.equal(in_batch.target(logits), torch.arange(5))
    with pytest.raises(ValueError, match="takes its negatives from the batch"):
        in_batch(q, p, neg)
    with pytest.raises(ValueError, match="did you mean 'temperature'"):
        OBJECTIVES.build("infonce", temprature=0.1)


# -------------------------------------------------------------------------------------- encoders
@pytest.mark.parametrize("name, options, feature_dim", [
    ("small_cnn", {"in_channels": 1, "width": 4}, 32),
    ("small_cnn", {}, 256),
    ("resnet18_cifar", {"in_channels": 3, "width": 4}, 32),
])
def test_encoders_map_images_to_features_and_every_parameter_gets_a_gradient(name, options, feature_dim):
    encoder = ENCODERS.build(name, **options)
    assert encoder.feature_dim == feature_dim
    x = torch.randn(4, options.get("in_channels", 3), 32, 32)
    features = encoder(x)
    assert features.shape == (4, feature_dim)
    features.square().mean().backward()
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in encoder.parameters())
    assert encoder(torch.randn(2, options.get("in_channels", 3), 8, 12)).shape == (2, feature_dim)  # any size


def test_resnet18_cifar_has_the_cifar_stem_and_eighteen_weighted_layers():
    encoder = ENCODERS.build("resnet18_cifar", width=4)
    convs = [m for m in encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs[0].kernel_size == (3, 3) and convs[0].stride == (1, 1)
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in encoder.modules())
    assert sum(c.kernel_size == (3, 3) for c in convs) == 17  # + the fc of the classifier: 18
    assert encoder.stages(encoder.stem(torch.zeros(1, 3, 32, 32))).shape == (1, 32, 4, 4)


def test_encoder_option_errors():
    with pytest.raises(ValueError, match="unknown contrastive encoder"):
        ENCODERS.build("resnet50")
    with pytest.raises(ValueError, match="width"):
        ENCODERS.build("small_cnn", width=0)


def test_mlp_head():
    head = mlp_head(32, hidden=64, out_dim=16)
    assert [type(m).__name__ for m in head] == ["Linear", "ReLU", "Linear"]
    assert head(torch.randn(3, 32)).shape == (3, 16)
    assert len(mlp_head(32, hidden=0, out_dim=16)) == 1
    with pytest.raises(ValueError, match="out_dim"):
        mlp_head(32, out_dim=0)


# ------------------------------------------------------------------------------- split batch norm
def hand_split_batch_norm(x, splits, eps=1e-5):
    """Sub-batch s = x[s::splits], each normalised with its own biased statistics."""
    out = torch.empty_like(x)
    for s in range(splits):
        part = x[s::splits]
        mean = part.mean((0, 2, 3), keepdim=True)
        var = part.var((0, 2, 3), unbiased=False, keepdim=True)
        out[s::splits] = (part - mean) / torch.sqrt(var + eps)
    return out


@pytest.mark.parametrize("batch", [8, 9])  # divisible (one folded call) and not (a loop)
def test_split_batch_norm_normalises_each_sub_batch_on_its_own(batch):
    x = torch.randn(batch, 3, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3 + 1
    norm = SplitBatchNorm2d(3, num_splits=4).double()
    out = norm(x)
    assert_close(out, hand_split_batch_norm(x, 4), rtol=1e-10, atol=1e-10)
    # Running statistics: the mean over sub-batches of each one's momentum update (unbiased variance).
    means = torch.stack([x[s::4].mean((0, 2, 3)) for s in range(4)]).mean(0)
    variances = torch.stack([x[s::4].var((0, 2, 3)) for s in range(4)]).mean(0)
    assert_close(norm.running_mean, 0.1 * means, rtol=1e-10, atol=1e-12)
    assert_close(norm.running_var, 0.9 + 0.1 * variances, rtol=1e-10, atol=1e-12)
    assert int(norm.num_batches_tracked) == 1
    norm.eval()
    assert_close(norm(x), F.batch_norm(x, norm.running_mean, norm.running_var, norm.weight, norm.bias, False))


def test_split_batch_norm_with_one_split_is_batch_norm():
    x = torch.randn(6, 3, 4, 4)
    split, plain = SplitBatchNorm2d(3, num_splits=1), torch.nn.BatchNorm2d(3)
    assert torch.equal(split(x), plain(x)) and torch.equal(split.running_var, plain.running_var)


def test_split_batch_norm_refuses_sub_batches_of_one():
    with pytest.raises(ValueError, match="at least 2 images per sub-batch"):
        SplitBatchNorm2d(3, num_splits=4)(torch.randn(6, 3, 4, 4))


def test_convert_split_batch_norm_keeps_parameters_buffers_and_mode():
    encoder = ENCODERS.build("small_cnn", width=2)
    for m in encoder.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 2)
            m.running_mean.uniform_()
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    encoder.eval()
    x = torch.randn(4, 3, 8, 8)
    expected = encoder(x)
    converted = convert_split_batch_norm(encoder, 2)
    assert sum(isinstance(m, SplitBatchNorm2d) for m in converted.modules()) == 4
    assert converted.state_dict().keys() == before.keys()
    assert all(torch.equal(converted.state_dict()[k], v) for k, v in before.items())
    assert not converted.training and torch.equal(converted(x), expected)  # eval: plain BN


@pytest.mark.parametrize("splits", [1, 2])
def test_frozen_batch_norm_stats_uses_batch_statistics_and_updates_nothing(splits):
    encoder = convert_split_batch_norm(ENCODERS.build("small_cnn", width=2), splits)
    x = torch.randn(8, 3, 8, 8)
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    with frozen_batch_norm_stats(encoder):
        frozen = encoder(x)
    assert all(torch.equal(encoder.state_dict()[k], v) for k, v in before.items())
    assert all(m.track_running_stats for m in encoder.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert torch.equal(frozen, encoder(x))  # the same batch statistics as a tracked train-mode pass
    assert not torch.equal(encoder.state_dict()["layers.0.1.running_mean"], before["layers.0.1.running_mean"])


# ---------------------------------------------------------------------------- analysis, Theorem 2
def test_cosine_distance_on_hand_vectors():
    identity = torch.nn.Identity()
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    nda_x = torch.tensor([[0.0, 3.0], [0.0, -1.0]])
    assert_close(cosine_distance(identity, x, nda_x), torch.tensor([1.0, 2.0]))
    views = torch.stack([nda_x, x], 1)  # (B, 2, 2): the mean over the two views
    assert_close(cosine_distance(identity, x, views), torch.tensor([0.5, 1.0]))
    with pytest.raises(ValueError, match="nda_x must be"):
        cosine_distance(identity, x, nda_x[:1])


def test_representations_use_eval_mode_and_restore_the_mode():
    encoder = ENCODERS.build("small_cnn", width=2)
    x = torch.randn(5, 3, 8, 8)
    encoder.train()
    out = representations(encoder, x, batch_size=2)
    assert encoder.training
    encoder.eval()
    assert_close(out, encoder(x))


def test_theorem_2_nda_negatives_separate_the_supports():
    """The 2-D toy (toy.py): data on the unit circle, NDA at radius 1.6 (disjoint supports).
    Measured on 3 seeds: without NDA, x and NDA(x) lie 0.008-0.010 apart (cosine distance, mean)
    and the NDA representations touch the data's (nearest 0.007-0.008); with NDA, 0.57-0.77 apart
    and every NDA representation at least 0.26 from every data representation."""
    x = ring_points(256, torch.Generator().manual_seed(123))
    plain = train_toy(with_nda=False, steps=300, seed=0)
    with_nda = train_toy(with_nda=True, steps=300, seed=0)
    plain_distance = cosine_distance(plain, x, ring_nda(x)).mean().item()
    nda_distance = cosine_distance(with_nda, x, ring_nda(x)).mean().item()
    assert plain_distance < 0.05
    assert nda_distance > 0.4
    assert nearest_data_distance(plain, x, ring_nda(x)).min().item() < 0.02
    assert nearest_data_distance(with_nda, x, ring_nda(x)).min().item() > 0.15  # disjoint
    assert cosine_distance(with_nda, x, ring_points(256, torch.Generator().manual_seed(9))).shape == (256,)


def test_toy_training_is_deterministic_and_leaves_the_global_rng_alone():
    before = torch.get_rng_state()
    first, second = train_toy(True, steps=3, seed=1), train_toy(True, steps=3, seed=1)
    assert torch.equal(before, torch.get_rng_state())
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))
