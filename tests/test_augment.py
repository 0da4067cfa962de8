"""negaug.augment: DiffAugment's ops and CR-GAN's transform and penalty, on small hand-checked inputs."""
from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from negaug.augment import (
    ConsistencyTransform,
    DiffAugment,
    consistency_penalty,
    translate,
)
from negaug.augment.diffaugment import adjust_color, cutout

GRID = torch.arange(16.0).view(1, 1, 4, 4)  # rows 0-3, 4-7, 8-11, 12-15


def params(**values):
    return {name: torch.tensor(value) for name, value in values.items()}


# --- translation -------------------------------------------------------------------------------

def test_translation_moves_content_down_right_with_zero_fill():
    out = translate(GRID, torch.tensor([1]), torch.tensor([2]))
    expected = torch.tensor([[0, 0, 0, 0],
                             [0, 0, 0, 1],
                             [0, 0, 4, 5],
                             [0, 0, 8, 9]], dtype=torch.float)
    assert torch.equal(out[0, 0], expected)


def test_translation_up_left_and_per_sample_shifts():
    x = torch.cat([GRID, GRID])
    out = translate(x, torch.tensor([-1, 0]), torch.tensor([-1, 0]))
    assert torch.equal(out[0, 0], torch.tensor([[5, 6, 7, 0], [9, 10, 11, 0], [13, 14, 15, 0], [0, 0, 0, 0]],
                                               dtype=torch.float))
    assert torch.equal(out[1], GRID[0])  # shift 0 is the identity


def test_translation_with_reflection_mirrors_without_repeating_the_edge():
    out = translate(GRID, torch.tensor([1]), torch.tensor([-1]), padding="reflect")
    expected = torch.tensor([[5, 6, 7, 6],  # row -1 mirrors to row 1; column 4 mirrors to column 2
                             [1, 2, 3, 2],
                             [5, 6, 7, 6],
                             [9, 10, 11, 10]], dtype=torch.float)
    assert torch.equal(out[0, 0], expected)
    assert_close(translate(GRID, torch.tensor([2]), torch.tensor([0]), padding="reflect"),
                 torch.nn.functional.pad(GRID, (0, 0, 2, 0), mode="reflect")[..., :4, :])


# --- cutout ------------------------------------------------------------------------------------

def test_cutout_zeroes_exactly_the_square_around_its_centre():
    x = torch.ones(2, 2, 6, 6)
    out = cutout(x, torch.tensor([3, 0]), torch.tensor([2, 5]), 3, 3)
    first = torch.ones(6, 6)
    first[2:5, 1:4] = 0  # rows 3 - 1 .. 3 + 1, columns 2 - 1 .. 2 + 1
    second = torch.ones(6, 6)
    second[0:2, 4:6] = 0  # the square rows -1..1, columns 4..6, clipped to the image
    assert torch.equal(out[0, 0], first) and torch.equal(out[0, 1], first)
    assert torch.equal(out[1, 0], second)


def test_diffaugment_cutout_is_half_the_size_and_never_empty():
    augment = DiffAugment("cutout")
    x = torch.ones(500, 1, 8, 8)
    out = augment(x, generator=torch.Generator().manual_seed(0))
    zeros = (out == 0).flatten(1).sum(1)
    assert zeros.max() == 16 and zeros.min() >= 4  # a 4 x 4 square, at worst clipped to its 2 x 2 corner
    assert (zeros == 16).float().mean() > 0.2


# --- colour ------------------------------------------------------------------------------------

def test_brightness_adds_its_per_sample_offset():
    x = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(0)) * 2 - 1
    out = adjust_color(x, torch.tensor([0.25, -0.5]), torch.ones(2), torch.ones(2))
    assert_close(out[0], x[0] + 0.25)
    assert_close(out[1], x[1] - 0.5)


def test_saturation_and_contrast_on_a_hand_checked_pixel_pair():
    x = torch.tensor([[[[0.0, 0.4]], [[0.2, 0.4]], [[0.4, 0.4]]]])  # (1, 3, 1, 2): a coloured and a grey pixel
    grey = adjust_color(x, torch.zeros(1), torch.zeros(1), torch.ones(1))  # saturation 0: channel mean
    assert_close(grey, torch.tensor([[[[0.2, 0.4]], [[0.2, 0.4]], [[0.2, 0.4]]]]))
    flat = adjust_color(x, torch.zeros(1), torch.ones(1), torch.full((1,), 0.5))  # mean 0.3, half the deviation
    assert_close(flat, 0.3 + 0.5 * (x - 0.3))


def test_color_ranges_follow_the_authors():
    p = DiffAugment("color").sample(4000, 8, 8, torch.Generator().manual_seed(0))
    for name, low, high in (("brightness", -0.5, 0.5), ("saturation", 0.0, 2.0), ("contrast", 0.5, 1.5)):
        assert low <= p[name].min() < low + 0.01 and high - 0.01 < p[name].max() <= high, name


def test_translation_shifts_cover_one_eighth_of_the_size():
    p = DiffAugment("translation").sample(2000, 32, 16, torch.Generator().manual_seed(0))
    assert set(p["shift_y"].tolist()) == set(range(-4, 5))
    assert set(p["shift_x"].tolist()) == set(range(-2, 3))


# --- the policy --------------------------------------------------------------------------------

def test_policy_applies_its_ops_in_order():
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    augment = DiffAugment("color,translation,cutout")
    p = augment.sample(3, 8, 8, torch.Generator().manual_seed(2))
    by_hand = adjust_color(x, p["brightness"], p["saturation"], p["contrast"])
    by_hand = translate(by_hand, -p["shift_y"], -p["shift_x"])  # out[i] = x[i + t], as the authors'
    by_hand = cutout(by_hand, p["center_y"], p["center_x"], 4, 4)
    assert_close(augment.apply(x, p), by_hand)


def test_same_generator_seed_same_output_other_seed_differs():
    x = torch.rand(16, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    augment = DiffAugment("color,translation,cutout")
    a = augment(x, generator=torch.Generator().manual_seed(5))
    b = augment(x, generator=torch.Generator().manual_seed(5))
    c = augment(x, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_diffaugment_leaves_the_global_rng_alone():
    torch.manual_seed(3)
    expected = torch.rand(2)
    torch.manual_seed(3)
    DiffAugment("color,translation,cutout")(torch.rand(2, 1, 8, 8, generator=torch.Generator()), torch.Generator())
    assert torch.equal(torch.rand(2), expected)


def test_gradients_flow_through_every_op_to_the_input():
    augment = DiffAugment("color,translation,cutout")
    p = augment.sample(2, 8, 8, torch.Generator().manual_seed(0))
    x = torch.rand(2, 3, 8, 8, dtype=torch.double, generator=torch.Generator().manual_seed(1), requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: augment.apply(t, p), (x,))
    augment.apply(x, p).sum().backward()
    assert x.grad is not None and (x.grad != 0).any(dim=(1, 2, 3)).all()  # every image gets a gradient


@pytest.mark.parametrize("policy, message", [
    ("color,flip", "unknown DiffAugment op 'flip'"),
    ("colour", "did you mean 'color'"),
    ("color,color", "names an op twice"),
    ("color,", "unknown DiffAugment op ''"),
])
def test_bad_policies_name_the_valid_ops(policy, message):
    with pytest.raises(ValueError, match="valid|twice") as err:
        DiffAugment(policy)
    assert message in str(err.value)
    if "unknown" in message:
        assert "color, translation, cutout" in str(err.value)


def test_diffaugment_refuses_points():
    with pytest.raises(ValueError, match=r"needs images \(B, C, H, W\)"):
        DiffAugment("color")(torch.zeros(4, 2), generator=torch.Generator())


# --- consistency regularisation ----------------------------------------------------------------

def linear_d(weights):
    return lambda x: (x * weights).flatten(1).sum(1)


def test_consistency_penalty_equals_a_hand_computation_with_a_linear_d():
    D = linear_d(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    x = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]], [[[0.0, 0.0], [0.0, 1.0]]]])  # D(x) = 1 and 4
    transform = ConsistencyTransform()
    both_flipped = transform.apply(x, params(flip=[True, True], shift_y=[0, 0], shift_x=[0, 0]))  # D = 2 and 3
    assert consistency_penalty(D(x), D(both_flipped)).item() == 1.0  # ((1 - 2)^2 + (4 - 3)^2) / 2
    first_flipped = transform.apply(x, params(flip=[True, False], shift_y=[0, 0], shift_x=[0, 0]))
    assert consistency_penalty(D(x), D(first_flipped)).item() == 0.5


def test_consistency_penalty_is_zero_for_a_d_invariant_to_t():
    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.LazyLinear(1))
    D = lambda x: conv(x).squeeze(1)
    constant = torch.rand(8, 3, 1, 1, generator=torch.Generator().manual_seed(0)).expand(8, 3, 32, 32)
    transformed = ConsistencyTransform()(constant, generator=torch.Generator().manual_seed(1))
    assert consistency_penalty(D(constant), D(transformed)).item() == 0.0  # flips and reflections keep constants
    x = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    mean_d = lambda t: t.mean(dim=(1, 2, 3))
    flipped = ConsistencyTransform(flip_prob=1.0).apply(x, params(flip=[True] * 8, shift_y=[0] * 8, shift_x=[0] * 8))
    assert consistency_penalty(mean_d(x), mean_d(flipped)).item() == pytest.approx(0.0, abs=1e-12)
    assert consistency_penalty(D(x), D(transformed_by(x, 3))).item() > 1e-6  # a generic D is not invariant


def transformed_by(x, seed):
    return ConsistencyTransform()(x, generator=torch.Generator().manual_seed(seed))


def test_consistency_gradient_reaches_both_scores():
    a = torch.tensor([1.0, 2.0], requires_grad=True)
    b = torch.tensor([0.0, 4.0], requires_grad=True)
    consistency_penalty(a, b).backward()  # ((1 - 0)^2 + (2 - 4)^2) / 2, d/da = (a - b)
    assert_close(a.grad, torch.tensor([1.0, -2.0]))
    assert_close(b.grad, torch.tensor([-1.0, 2.0]))


def test_consistency_transform_draws_flips_and_shifts_of_up_to_an_eighth():
    p = ConsistencyTransform().sample(4000, 32, 32, torch.Generator().manual_seed(0))
    assert 0.45 < p["flip"].float().mean() < 0.55
    assert set(p["shift_y"].tolist()) == set(range(-4, 5)) == set(p["shift_x"].tolist())
    x = torch.rand(3, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    p = params(flip=[True, False, True], shift_y=[4, -4, 0], shift_x=[0, 3, -2])
    flipped = torch.where(p["flip"].view(-1, 1, 1, 1), x.flip(-1), x)
    zeros = ConsistencyTransform(padding="zeros").apply(x, p)
    assert torch.equal(zeros, translate(flipped, -p["shift_y"], -p["shift_x"], "zeros"))
    assert torch.equal(zeros[0, :, :28, :], x[0].flip(-1)[:, 4:, :])  # up 4 px
    assert (zeros[0, :, 28:, :] == 0).all()  # zero fill, as CR-BigGAN's code
    reflected = ConsistencyTransform().apply(x, p)
    assert torch.equal(reflected, translate(flipped, -p["shift_y"], -p["shift_x"], "reflect"))


def test_consistency_penalty_refuses_mismatched_scores():
    with pytest.raises(ValueError, match="same shape"):
        consistency_penalty(torch.zeros(3), torch.zeros(4))
