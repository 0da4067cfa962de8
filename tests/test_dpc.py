"""negaug.video.dpc: Dense Predictive Coding with NDA negatives: shapes, the loss on hand-checked
inputs and against DPC's own 6-D mask construction, NDA with one draw per clip, training on
moving_mnist, gradients and seeded determinism."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from negaug import data, nda
from negaug.video import (
    DPC,
    clip_negatives,
    dense_rows,
    dpc_logits,
    dpc_loss,
    dpc_nda_loss,
    to_blocks,
)


def tiny_model(seed: int = 0, in_channels: int = 1) -> DPC:
    torch.manual_seed(seed)
    return DPC(in_channels=in_channels, num_blocks=4, pred_steps=2, widths=(8, 8), feature_dim=16)


@pytest.fixture(scope="module")
def clips() -> torch.Tensor:
    dataset = data.build_clips("moving_mnist", num_clips=64, num_frames=8, image_size=16)
    return dataset.get_batch(torch.arange(64))[0]  # (64, 8, 1, 16, 16)


# --- shapes and layout ----------------------------------------------------------------------------

def test_blocks_are_consecutive_frames():
    clips = torch.arange(2 * 6).float().reshape(2, 6, 1, 1, 1).expand(2, 6, 1, 2, 2)
    blocks = to_blocks(clips, 3)
    assert blocks.shape == (2, 3, 2, 1, 2, 2)
    assert blocks[1, 2, :, 0, 0, 0].tolist() == [10.0, 11.0]
    with pytest.raises(ValueError, match="cannot be cut into 4 equal blocks"):
        to_blocks(clips, 4)


def test_model_shapes(clips):
    model = tiny_model()
    predictions, targets = model(clips[:3])
    assert predictions.shape == targets.shape == (3, 2, 16, 2, 2)  # 16 px, three stride-2 convs: 2 x 2
    assert model.target_features(clips[:3]).shape == (3, 2, 16, 2, 2)
    assert_close(model.target_features(clips[:3]), targets, rtol=0, atol=0)
    for kind in ("context", "encoder"):
        assert model.clip_features(clips[:3], kind).shape == (3, 16)
    with pytest.raises(ValueError, match="kind"):
        model.clip_features(clips[:3], "pooled")


def test_dense_rows_order_clip_step_position():
    features = torch.arange(2 * 3 * 4 * 2 * 2).float().reshape(2, 3, 4, 2, 2)  # (B, P, D, h, w)
    rows = dense_rows(features)
    assert rows.shape == (2 * 3 * 4, 4)
    b, p, y, x = 1, 2, 0, 1
    assert torch.equal(rows[((b * 3 + p) * 2 + y) * 2 + x], features[b, p, :, y, x])


def test_encoding_a_clip_does_not_depend_on_the_rest_of_the_batch(clips):
    """GroupNorm, not BatchNorm: positives and NDA negatives are encoded in separate calls."""
    model = tiny_model()
    alone = model.target_features(clips[:1])
    together = model.target_features(clips[:5])[:1]
    assert_close(alone, together, rtol=1e-5, atol=1e-6)


# --- the loss ------------------------------------------------------------------------------------

def as_features(rows: list[list[float]]) -> torch.Tensor:
    """Rows (B, D) -> (B, P=1, D, h=1, w=1)."""
    return torch.tensor(rows)[:, None, :, None, None]


def test_loss_on_two_clips_by_hand():
    predictions = as_features([[1.0, 0.0], [0.0, 1.0]])
    targets = as_features([[1.0, 0.0], [0.0, 2.0]])  # logits [[1, 0], [0, 2]]
    expected = (math.log(1 + math.exp(-1)) + math.log(1 + math.exp(-2))) / 2
    assert_close(dpc_loss(predictions, targets), torch.tensor(expected), rtol=1e-6, atol=0)
    # one NDA clip with z = (1, 1): both rows gain a term e^1 in the denominator, times the weight
    nda_targets = as_features([[1.0, 1.0]])
    e = math.e
    for weight in (1.0, 0.5):
        row0 = math.log((e + 1 + weight * e) / e)
        row1 = math.log((1 + e**2 + weight * e) / e**2)
        got = dpc_loss(predictions, targets, nda_targets, nda_weight=weight)
        assert_close(got, torch.tensor((row0 + row1) / 2), rtol=1e-6, atol=0)
    # temperature 0.5 doubles every logit
    expected = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-4))) / 2
    assert_close(dpc_loss(predictions, targets, temperature=0.5), torch.tensor(expected), rtol=1e-6, atol=0)


def test_logit_columns_targets_then_nda_with_log_weight():
    generator = torch.Generator().manual_seed(0)
    predictions, targets = torch.randn(2, 3, 2, 5, 2, 2, generator=generator)
    nda_targets = torch.randn(1, 2, 5, 2, 2, generator=generator)
    logits = dpc_logits(predictions, targets, nda_targets, nda_weight=0.25)
    assert logits.shape == (3 * 2 * 4, 3 * 2 * 4 + 2 * 4)
    assert_close(logits[:, :24], dense_rows(predictions) @ dense_rows(targets).T)
    assert_close(logits[:, 24:], dense_rows(predictions) @ dense_rows(nda_targets).T + math.log(0.25))


def reference_dpc_loss(predictions: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """DPC's construction (dpc/model_3d.py, dpc/main.py): a 6-D score [B, P, SQ, B, N, SQ], a mask
    whose only 1 is the same clip, step and position, the target its argmax, cross-entropy over
    everything else."""
    batch, steps, dim, height, width = predictions.shape
    squares = height * width
    pred = predictions.permute(0, 1, 3, 4, 2).reshape(batch * steps * squares, dim)
    gt = features.permute(0, 1, 3, 4, 2).reshape(batch * steps * squares, dim).T
    score = (pred @ gt).view(batch, steps, squares, batch, steps, squares)
    mask = torch.zeros(score.shape, dtype=torch.int8)
    for b in range(batch):
        for p in range(steps):
            for s in range(squares):
                mask[b, p, s, b, p, s] = 1
    target = (mask == 1).view(batch * steps * squares, -1).to(torch.int64).argmax(dim=1)
    return F.cross_entropy(score.view(batch * steps * squares, -1), target)


def test_plain_loss_equals_dpcs_own_mask_construction():
    generator = torch.Generator().manual_seed(1)
    predictions, targets = torch.randn(2, 3, 2, 6, 2, 2, generator=generator)
    assert_close(dpc_loss(predictions, targets), reference_dpc_loss(predictions, targets), rtol=1e-6, atol=1e-6)


def test_nda_none_and_nda_weight_zero_are_exactly_plain_dpc(clips):
    model = tiny_model()
    plain = dpc_loss(*model(clips[:4]))
    assert torch.equal(dpc_nda_loss(model, clips[:4]), plain)
    jigsaw = nda.build("jigsaw", k=2)
    assert torch.equal(dpc_nda_loss(model, clips[:4], jigsaw, torch.Generator().manual_seed(0), nda_weight=0.0), plain)


def test_nda_negatives_raise_the_loss(clips):
    """Extra positive terms in every denominator: the loss can only go up."""
    model = tiny_model()
    plain = dpc_nda_loss(model, clips[:4])
    with_nda = dpc_nda_loss(model, clips[:4], nda.build("jigsaw", k=2), torch.Generator().manual_seed(0))
    assert with_nda > plain + 1e-4


# --- NDA clips: one draw per clip -----------------------------------------------------------------

def test_jigsaw_clip_negatives_use_one_permutation_on_every_frame():
    clips = torch.randn(5, 4, 2, 8, 8, generator=torch.Generator().manual_seed(0))
    jigsaw = nda.build("jigsaw", k=2)
    negatives = clip_negatives(jigsaw, clips, torch.Generator().manual_seed(7))
    params = jigsaw.sample(clips.flatten(1, 2).shape, torch.Generator().manual_seed(7))
    for t in range(4):
        assert torch.equal(negatives[:, t], jigsaw.apply(clips[:, t], params))
    assert len({tuple(p) for p in params["perm"].tolist()}) > 1  # clips do get different draws


def test_cutout_clip_negatives_cut_the_same_place_in_every_frame():
    clips = torch.rand(6, 4, 1, 12, 12, generator=torch.Generator().manual_seed(0)) * 2 - 1
    negatives = clip_negatives(nda.build("cutout"), clips, torch.Generator().manual_seed(3))
    changed = negatives != clips  # (B, T, 1, H, W)
    assert changed.any(dim=(1, 2, 3, 4)).all()
    assert torch.equal(changed, changed[:, :1].expand_as(changed))


# --- training -----------------------------------------------------------------------------------

def train(model: DPC, clips: torch.Tensor, steps: int, transform=None, seed: int = 0) -> list[float]:
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    batches = torch.Generator().manual_seed(seed)
    nda_generator = torch.Generator().manual_seed(seed + 1)
    losses = []
    for _ in range(steps):
        batch = clips[torch.randint(48, (8,), generator=batches)]
        loss = dpc_nda_loss(model, batch, transform, nda_generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("use_nda", [False, True])
def test_training_steps_lower_the_heldout_loss(clips, use_nda):
    model = tiny_model()
    heldout = clips[48:]
    with torch.no_grad():
        before = dpc_nda_loss(model, heldout).item()
    train(model, clips, 40, nda.build("jigsaw", k=2) if use_nda else None)
    with torch.no_grad():
        after = dpc_nda_loss(model, heldout).item()
    assert after < before - 0.3, (before, after)


def test_gradient_reaches_every_parameter(clips):
    model = tiny_model()
    loss = dpc_nda_loss(model, clips[:4], nda.build("jigsaw", k=2), torch.Generator().manual_seed(0))
    loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_training_is_seeded_and_deterministic(clips):
    jigsaw = nda.build("jigsaw", k=2)
    first = train(tiny_model(seed=3), clips, 3, jigsaw, seed=5)
    second = train(tiny_model(seed=3), clips, 3, jigsaw, seed=5)
    assert first == second
    assert train(tiny_model(seed=3), clips, 3, jigsaw, seed=6) != first


def test_bad_options_are_value_errors():
    with pytest.raises(ValueError, match="pred_steps"):
        DPC(num_blocks=3, pred_steps=3)
    predictions = torch.zeros(2, 1, 4, 1, 1)
    with pytest.raises(ValueError, match="temperature"):
        dpc_loss(predictions, predictions, temperature=0.0)
    with pytest.raises(ValueError, match="nda_weight"):
        dpc_loss(predictions, predictions, predictions, nda_weight=-1.0)
    with pytest.raises(ValueError, match="must match targets"):
        dpc_loss(predictions, predictions, torch.zeros(2, 1, 5, 1, 1))


def test_predictions_and_targets_of_other_batch_sizes_are_refused_regression():
    """Review: data-parallel DPC relaxed the shape check to all but the batch (the gathered targets
    hold every rank's clips), so in one process 2 predicted clips against 3 target clips gave a
    silently wrong loss and 3 against 2 an IndexError from cross_entropy."""
    for b_pred, b_target in ((2, 3), (3, 2)):
        with pytest.raises(ValueError, match=rf"predictions \({b_pred}, 2, 4, 1, 1\) and targets \({b_target}, 2, 4, 1, 1\) "
                                             "differ in shape"):
            dpc_loss(torch.randn(b_pred, 2, 4, 1, 1), torch.randn(b_target, 2, 4, 1, 1))
        with pytest.raises(ValueError, match="differ in shape"):
            dpc_loss(torch.randn(b_pred, 2, 4, 1, 1), torch.randn(b_target, 2, 4, 1, 1), across_ranks=True)
