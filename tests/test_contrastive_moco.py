"""Tests of negaug.contrastive.moco: MoCo-v2 with NDA negatives in one process."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from negaug import nda
from negaug.contrastive import ENCODERS, MoCo, frozen_batch_norm_stats, nda_views
from negaug.contrastive.batchnorm import SplitBatchNorm2d
from negaug.contrastive.encoders import mlp_head

BATCH = 8


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def make_model(queue_size=16, num_splits=2, momentum=0.9, seed=0, **options) -> MoCo:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = ENCODERS.build("small_cnn", in_channels=3, width=2)
        return MoCo(encoder, dim=8, head_hidden=16, queue_size=queue_size, momentum=momentum,
                    num_splits=num_splits, **options)


def batch(seed=0, size=BATCH):
    g = gen(seed)
    x = torch.rand(size, 3, 8, 8, generator=g) * 2 - 1
    return x, (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(-1, 1)


def views(x_q, x_k, seed=0):
    return nda_views(nda.build("jigsaw"), [x_q, x_k], gen(seed))


def state(model):
    return {key: value.clone() for key, value in model.state_dict().items()}


def assert_states_equal(first, second):
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key


# ---------------------------------------------------------------------------------- one step
def test_step_shapes_and_stats():
    model = make_model()
    x_q, x_k = batch()
    loss, logits, stats = model(x_q, x_k, views(x_q, x_k), generator=gen(1))
    assert loss.shape == () and bool(torch.isfinite(loss))
    assert logits.shape == (BATCH, 1 + 16 + 2)
    assert set(stats) == {"accuracy", "positive_similarity", "queue_similarity", "nda_similarity", "nda_above_positive"}
    assert all(v.shape == () and not v.requires_grad for v in stats.values())
    queue = model.queue.clone()
    loss, logits, stats = model(x_q, x_k, generator=gen(1))
    assert logits.shape == (BATCH, 17) and "nda_similarity" not in stats
    q = F.normalize(model.head_q(model.encoder_q(x_q)), dim=1)  # same weights: no optimizer step
    assert_close(stats["queue_similarity"], (q @ queue.T).mean(), rtol=1e-5, atol=1e-6)
    assert_close(stats["positive_similarity"], logits[:, 0].mean() * 0.07, rtol=1e-5, atol=1e-6)
    batch_form = views(x_q, x_k)[:, 0]  # (B, C, H, W): every query against all B views
    assert model(x_q, x_k, batch_form, generator=gen(1))[1].shape == (BATCH, 17 + BATCH)


def test_nda_changes_the_loss_and_nothing_else_of_the_step():
    """Same model, same batch, same generator: with and without NDA, the positive and queue
    logits, the keys written to the queue and every key-encoder buffer (BN statistics) are
    identical; only the loss (and so the query's gradient) changes."""
    with_nda, without = make_model(), make_model()
    x_q, x_k = batch()
    loss_nda, logits_nda, _ = with_nda(x_q, x_k, views(x_q, x_k), generator=gen(1))
    loss_plain, logits_plain, _ = without(x_q, x_k, generator=gen(1))
    assert torch.equal(logits_nda[:, :17], logits_plain)
    assert loss_nda > loss_plain
    assert_states_equal(state(with_nda), state(without))  # queue, pointer, both encoders' BN buffers
    loss_nda.backward()
    loss_plain.backward()
    assert not torch.equal(with_nda.head_q[0].weight.grad, without.head_q[0].weight.grad)


def test_a_joint_key_and_nda_pass_would_change_the_key_statistics():
    """Why the NDA views get their own pass: through BN, encoding them together with the keys
    changes the keys themselves and the running statistics (this test fails if they did not)."""
    model = make_model(num_splits=1)
    x_q, x_k = batch()
    nda_images = views(x_q, x_k).flatten(0, 1)
    encoder = copy.deepcopy(model.encoder_k)
    alone = encoder(x_k)
    joint = copy.deepcopy(model.encoder_k)
    together = joint(torch.cat([x_k, nda_images]))[:BATCH]
    assert not torch.allclose(alone, together, atol=1e-4)
    assert not torch.allclose(encoder.layers[0][1].running_mean, joint.layers[0][1].running_mean)
    frozen = copy.deepcopy(model.encoder_k)
    frozen(x_k)
    with frozen_batch_norm_stats(frozen):
        frozen(nda_images)
    assert_states_equal(frozen.state_dict(), encoder.state_dict())


def test_the_queue_holds_the_keys_and_never_the_nda_views():
    model = make_model()
    x_q, x_k = batch()
    reference = copy.deepcopy(model)
    reference.momentum_update()
    keys = reference.encode_keys(x_k, gen(1))
    nda_z = reference.encode_nda(views(x_q, x_k))
    before = model.queue.clone()
    model(x_q, x_k, views(x_q, x_k), generator=gen(1))
    assert torch.equal(model.queue[:BATCH], keys)
    assert torch.equal(model.queue[BATCH:], before[BATCH:])
    assert int(model.queue_ptr) == BATCH
    distances = torch.cdist(nda_z.flatten(0, 1), model.queue)
    assert bool((distances > 1e-6).all())
    assert_close(model.queue.norm(dim=1), torch.ones(16))


def test_queue_wraps_around_when_its_size_is_not_a_multiple_of_the_batch():
    model = make_model(queue_size=10)
    written = []
    for step in range(3):  # 8 + 8 + 8 keys into 10 rows
        x_q, x_k = batch(step)
        reference = copy.deepcopy(model)
        reference.momentum_update()
        written.append(reference.encode_keys(x_k, gen(step)))
        model(x_q, x_k, generator=gen(step))
    assert int(model.queue_ptr) == 24 % 10
    assert torch.equal(model.queue[:4], written[2][4:])  # rows 0-3: the last batch's keys 4-7
    assert torch.equal(model.queue[6:], written[2][:4])  # rows 6-9: its keys 0-3
    assert torch.equal(model.queue[4:6], written[1][6:])  # rows 4-5: still the second batch's last keys
    small = batch(5, size=4)  # the last, smaller batch of an epoch
    model(*small, generator=gen(5))
    assert int(model.queue_ptr) == 8  # 4 + 4


def test_a_batch_larger_than_the_queue_keeps_its_last_keys():
    model = make_model(queue_size=4)
    x_q, x_k = batch()
    reference = copy.deepcopy(model)
    reference.momentum_update()
    keys = reference.encode_keys(x_k, gen(0))
    model(x_q, x_k, generator=gen(0))
    assert torch.equal(model.queue, keys[4:]) and int(model.queue_ptr) == 0


# ------------------------------------------------------------------------------ momentum, grads
def test_momentum_update_is_an_ema_of_the_query_parameters():
    model = make_model(momentum=0.9)
    optimizer = torch.optim.SGD(model.trainable_parameters(), lr=0.5)
    x_q, x_k = batch()
    model(x_q, x_k, generator=gen(0))[0].backward()
    optimizer.step()  # query != key from here on
    query = [p.clone() for p in model.trainable_parameters()]
    key = [p.clone() for p in model.key_parameters()]
    model(x_q, x_k, generator=gen(1))
    for k_new, k_old, q in zip(model.key_parameters(), key, query):
        assert_close(k_new, 0.9 * k_old + 0.1 * q, rtol=1e-6, atol=1e-7)


def test_only_the_query_side_gets_gradients():
    model = make_model()
    x_q, x_k = batch()
    model(x_q, x_k, views(x_q, x_k), generator=gen(0))[0].backward()
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in model.trainable_parameters())
    assert all(p.grad is None and not p.requires_grad for p in model.key_parameters())
    assert len(model.trainable_parameters()) == sum(p.requires_grad for p in model.parameters())


def test_eval_mode_forward_changes_nothing():
    model = make_model().eval()
    before = state(model)
    x_q, x_k = batch()
    loss, logits, _ = model(x_q, x_k, views(x_q, x_k), generator=gen(0))
    assert bool(torch.isfinite(loss)) and logits.shape == (BATCH, 19)
    assert_states_equal(state(model), before)


# ------------------------------------------------------------------------------------ Shuffle-BN
def test_keys_are_shuffled_into_the_bn_sub_batches_and_unshuffled():
    model = make_model(num_splits=2)
    assert sum(isinstance(m, SplitBatchNorm2d) for m in model.modules()) == 8  # 4 per encoder
    _, x_k = batch()
    order = torch.randperm(BATCH, generator=gen(3))
    net = copy.deepcopy(model)
    by_hand = torch.empty(BATCH, 8)
    by_hand[order] = F.normalize(net.head_k(net.encoder_k(x_k[order])), dim=1)
    assert torch.equal(model.encode_keys(x_k, gen(3)), by_hand)
    # The permutation matters in train mode (sub-batch composition), not in eval mode.
    assert not torch.allclose(model.encode_keys(x_k, gen(3)), model.encode_keys(x_k, gen(4)))
    model.eval()
    assert_close(model.encode_keys(x_k, gen(3)), model.encode_keys(x_k, gen(4)), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------- resume
def test_state_dict_resumes_exactly():
    model = make_model()
    optimizer = torch.optim.SGD(model.trainable_parameters(), lr=0.1, momentum=0.9)
    for step in range(2):
        x_q, x_k = batch(step)
        optimizer.zero_grad()
        model(x_q, x_k, views(x_q, x_k, step), generator=gen(step))[0].backward()
        optimizer.step()
    saved_model, saved_optimizer = state(model), copy.deepcopy(optimizer.state_dict())
    assert "queue" in saved_model and "queue_ptr" in saved_model
    resumed = make_model(seed=99)
    resumed.load_state_dict(saved_model)
    resumed_optimizer = torch.optim.SGD(resumed.trainable_parameters(), lr=0.1, momentum=0.9)
    resumed_optimizer.load_state_dict(saved_optimizer)
    results = []
    for net, opt in ((model, optimizer), (resumed, resumed_optimizer)):
        x_q, x_k = batch(2)
        opt.zero_grad()
        loss = net(x_q, x_k, views(x_q, x_k, 2), generator=gen(2))[0]
        loss.backward()
        opt.step()
        results.append((loss.detach(), state(net)))
    assert torch.equal(results[0][0], results[1][0])
    assert_states_equal(results[0][1], results[1][1])


# ---------------------------------------------------------------------------------------- errors
def test_input_errors():
    model = make_model()
    x_q, x_k = batch()
    with pytest.raises(ValueError, match="same shape"):
        model(x_q, x_k[:4])
    with pytest.raises(ValueError, match="nda must be"):
        model(x_q, x_k, views(x_q, x_k)[:4])
    with pytest.raises(ValueError, match="at least 2 images per sub-batch"):
        make_model(num_splits=8)(x_q, x_k)
    with pytest.raises(ValueError, match="feature_dim"):
        MoCo(torch.nn.Linear(3, 3))
    with pytest.raises(ValueError, match="momentum"):
        make_model(momentum=1.5)


def test_nda_views_stack_one_negative_per_batch_and_sample():
    x_q, x_k = batch()
    jigsaw = nda.build("jigsaw")
    stacked = nda_views(jigsaw, [x_q, x_k], gen(0))
    g = gen(0)
    assert stacked.shape == (BATCH, 2, 3, 8, 8)
    assert torch.equal(stacked[:, 0], jigsaw(x_q, generator=g))
    assert torch.equal(stacked[:, 1], jigsaw(x_k, generator=g))



def test_head_hidden_none_is_moco_v2s_head_of_the_encoders_width():
    """moco/builder.py: dim_mlp = encoder_q.fc.weight.shape[1]; ResNet-18: 512 -> 512 -> 128."""
    model = MoCo(ENCODERS.build("resnet18_cifar"), dim=128, head_hidden=None, queue_size=16, num_splits=1)
    widths = [(m.in_features, m.out_features) for m in model.head_q if isinstance(m, torch.nn.Linear)]
    assert widths == [(512, 512), (512, 128)]
    assert [type(m).__name__ for m in model.head_k] == ["Linear", "ReLU", "Linear"]
    assert [(m.in_features, m.out_features) for m in mlp_head(512, 0, 128)] == [(512, 128)]  # MoCo v1
