"""Positive views (`negaug.contrastive.ViewAugment`) and the frozen-feature evaluations
(`knn_predict`, `knn_accuracy`, `linear_probe`): exact values on hand inputs, replay, batch
independence, the probabilities' extremes."""
import math

import pytest
import torch

from negaug.contrastive import ViewAugment, knn_accuracy, knn_predict, linear_probe

OFF = {"crop_scale": None, "flip_prob": 0.0, "jitter_prob": 0.0, "grayscale_prob": 0.0}


def images(n=6, channels=3, size=8, seed=0):
    return torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# --- geometry ---------------------------------------------------------------------------------


def test_a_crop_of_the_whole_image_without_flip_is_the_identity():
    x = images()
    augment = ViewAugment(**{**OFF, "crop_scale": (1.0, 1.0), "crop_ratio": (1.0, 1.0)})
    params = augment.sample(x.shape, torch.Generator().manual_seed(0))
    torch.testing.assert_close(params["box"], torch.tensor([[0.0, 0.0, 1.0, 1.0]]).expand(6, 4))
    torch.testing.assert_close(augment.apply(x, params), x, atol=1e-6, rtol=0)


def test_flip_is_exact_without_a_crop_and_with_a_whole_image_crop():
    x = images()
    flip = torch.tensor([True, False, True, True, False, False])
    expected = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
    assert torch.equal(ViewAugment(**{**OFF, "flip_prob": 0.5}).apply(x, {"flip": flip}), expected)
    cropped = ViewAugment(**{**OFF, "crop_scale": (1.0, 1.0), "crop_ratio": (1.0, 1.0), "flip_prob": 0.5})
    box = torch.tensor([[0.0, 0.0, 1.0, 1.0]]).expand(6, 4)
    torch.testing.assert_close(cropped.apply(x, {"box": box, "flip": flip}), expected, atol=1e-6, rtol=0)


def test_crop_samples_the_box_bilinearly_hand_computed():
    """Image value 4 * row + col (linear, so bilinear sampling is exact). The top-left quarter box,
    resized to 4 x 4: output pixel centres land on input coordinates -0.25, 0.25, 0.75, 1.25
    (align_corners=False), the first clamped to 0 by border padding."""
    x = torch.arange(16.0).view(1, 1, 4, 4)
    augment = ViewAugment(**{**OFF, "crop_scale": (0.25, 0.25), "crop_ratio": (1.0, 1.0)})
    out = augment.apply(x, {"box": torch.tensor([[0.0, 0.0, 0.5, 0.5]])})
    at = torch.tensor([0.0, 0.25, 0.75, 1.25])
    torch.testing.assert_close(out[0, 0], 4 * at[:, None] + at[None, :], atol=1e-5, rtol=0)
    right = augment.apply(x, {"box": torch.tensor([[0.5, 0.5, 0.5, 0.5]])})  # bottom-right quarter
    at = torch.tensor([1.75, 2.25, 2.75, 3.0])  # the last clamped to 3
    torch.testing.assert_close(right[0, 0], 4 * at[:, None] + at[None, :], atol=1e-5, rtol=0)


def test_boxes_lie_in_the_image_with_the_asked_area_and_ratio():
    augment = ViewAugment(**{**OFF, "crop_scale": (0.2, 0.6), "crop_ratio": (0.5, 2.0)})
    box = augment.sample((4000, 3, 32, 32), torch.Generator().manual_seed(1))["box"]
    left, top, width, height = box.unbind(1)
    assert (left >= 0).all() and (top >= 0).all() and (left + width <= 1 + 1e-6).all() and (top + height <= 1 + 1e-6).all()
    area, ratio = width * height, width / height
    assert (area >= 0.2 - 1e-6).all() and (area <= 0.6 + 1e-6).all()
    assert (ratio >= 0.5 - 1e-5).all() and (ratio <= 2.0 + 1e-5).all()
    assert 0.3 < area.mean() < 0.5  # uniform in [0.2, 0.6] (slightly fewer large boxes: they fit less often)


def test_a_box_that_never_fits_falls_back_to_the_whole_image():
    augment = ViewAugment(**{**OFF, "crop_scale": (1.0, 1.0), "crop_ratio": (2.0, 3.0)})  # area 1, not square
    box = augment.sample((5, 1, 8, 8), torch.Generator().manual_seed(0))["box"]
    torch.testing.assert_close(box, torch.tensor([[0.0, 0.0, 1.0, 1.0]]).expand(5, 4))


# --- colour -----------------------------------------------------------------------------------


def test_brightness_hand_computed_and_clipped():
    x = torch.zeros(2, 1, 2, 2)  # grey 0.5 in [0, 1]
    augment = ViewAugment(**{**OFF, "jitter_prob": 1.0, "brightness": 0.9, "contrast": 0.0, "saturation": 0.0})
    out = augment.apply(x, {"jitter": torch.tensor([True, True]), "brightness": torch.tensor([0.5, 3.0])})
    assert torch.equal(out[0], torch.full((1, 2, 2), -0.5))  # 0.5 * 0.5 = 0.25 -> -0.5
    assert torch.equal(out[1], torch.ones(1, 2, 2))  # 1.5, clipped to 1


def test_contrast_hand_computed_around_the_mean_grey():
    u = torch.tensor([0.25, 0.75, 0.25, 0.75]).view(1, 1, 2, 2)
    x = (u * 2 - 1).expand(2, 1, 2, 2)
    augment = ViewAugment(**{**OFF, "jitter_prob": 1.0, "brightness": 0.0, "contrast": 1.0, "saturation": 0.0})
    out = augment.apply(x, {"jitter": torch.tensor([True, True]), "contrast": torch.tensor([0.0, 2.0])})
    assert torch.equal(out[0], torch.zeros(1, 2, 2))  # all at the mean 0.5
    assert torch.equal(out[1], torch.tensor([-1.0, 1.0, -1.0, 1.0]).view(1, 2, 2))  # 2u - 0.5


def test_grayscale_and_zero_saturation_give_the_luma_of_each_pixel():
    u = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1).expand(2, 3, 2, 2)
    x = u * 2 - 1
    grey = ViewAugment(**{**OFF, "grayscale_prob": 0.5}).apply(x, {"grayscale": torch.tensor([True, False])})
    torch.testing.assert_close(grey[0], torch.full((3, 2, 2), 0.299 * 2 - 1))
    assert torch.equal(grey[1], x[1])
    saturation = ViewAugment(**{**OFF, "jitter_prob": 1.0, "brightness": 0.0, "contrast": 0.0, "saturation": 1.0})
    out = saturation.apply(x, {"jitter": torch.tensor([True, False]), "saturation": torch.tensor([0.0, 0.0])})
    torch.testing.assert_close(out[0], torch.full((3, 2, 2), 0.299 * 2 - 1))
    assert torch.equal(out[1], x[1])  # jitter off for this image


def test_saturation_and_grayscale_leave_grey_images_unchanged():
    x = images(channels=1)
    augment = ViewAugment(**{**OFF, "jitter_prob": 1.0, "brightness": 0.0, "contrast": 0.0, "saturation": 0.9,
                             "grayscale_prob": 1.0})
    torch.testing.assert_close(augment(x, torch.Generator().manual_seed(0)), x, atol=1e-6, rtol=0)


# --- contract: replay, batch independence, probabilities, range, checks ------------------------


def test_same_generator_state_same_views_and_forward_is_sample_then_apply():
    x, augment = images(), ViewAugment()
    first = augment(x, torch.Generator().manual_seed(3))
    assert torch.equal(first, augment(x, torch.Generator().manual_seed(3)))
    params = augment.sample(x.shape, torch.Generator().manual_seed(3), x.device)
    assert torch.equal(first, augment.apply(x, params))
    assert not torch.equal(first, augment(x, torch.Generator().manual_seed(4)))


def test_each_view_depends_on_its_own_image_and_parameters_only():
    x, augment = images(n=5), ViewAugment()
    params = augment.sample(x.shape, torch.Generator().manual_seed(0))
    whole = augment.apply(x, params)
    for i in range(5):
        alone = augment.apply(x[i:i + 1], {key: value[i:i + 1] for key, value in params.items()})
        torch.testing.assert_close(alone[0], whole[i], atol=1e-6, rtol=0)


@pytest.mark.parametrize("p", [0.0, 0.5, 1.0])
def test_probabilities_zero_half_one(p):
    augment = ViewAugment(crop_scale=None, flip_prob=p, jitter_prob=p, grayscale_prob=p)
    params = augment.sample((4000, 3, 8, 8), torch.Generator().manual_seed(0))
    if p == 0:
        assert set(params) == set()  # nothing drawn, nothing applied
        x = images()
        assert torch.equal(augment(x, torch.Generator()), x)
        return
    for key in ("flip", "jitter", "grayscale"):
        share = params[key].float().mean().item()
        assert share == 1.0 if p == 1 else 0.46 < share < 0.54, (key, share)


def test_views_stay_in_range_and_keep_dtype_and_shape():
    x = images(n=16, size=16).double()
    out = ViewAugment()(x, torch.Generator().manual_seed(0))
    assert out.dtype == torch.float64 and out.shape == x.shape
    assert out.min() >= -1 and out.max() <= 1
    assert not torch.equal(out, x)


@pytest.mark.parametrize("options, name", [({"crop_scale": (0.0, 1.0)}, "crop_scale"), ({"crop_scale": (0.8, 0.2)}, "crop_scale"),
                                           ({"crop_ratio": [1.0]}, "crop_ratio"), ({"flip_prob": 1.5}, "flip_prob"),
                                           ({"brightness": -0.1}, "brightness"), ({"grayscale_prob": True}, "grayscale_prob")])
def test_bad_options_name_themselves(options, name):
    with pytest.raises(ValueError, match=name):
        ViewAugment(**options)


def test_params_for_another_batch_size_are_refused():
    augment = ViewAugment()
    params = augment.sample((3, 3, 8, 8), torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="rows for a batch of 6"):
        augment.apply(images(), params)


# --- k-NN and linear probe ---------------------------------------------------------------------


def test_knn_votes_are_weighted_by_exp_similarity_over_temperature():
    """Bank: two class-0 points at 60 degrees from the query and one class-1 point at 0 degrees.
    k = 3, temperature 1: class 0 gets 2 e^0.5 = 3.30 > class 1's e^1 = 2.72; temperature 0.1:
    2 e^5 = 297 < e^10 = 22026. k = 1: the nearest point's class."""
    angle = math.pi / 3
    bank = torch.tensor([[math.cos(angle), math.sin(angle)], [math.cos(angle), -math.sin(angle)], [2.0, 0.0]])
    labels, query = torch.tensor([0, 0, 1]), torch.tensor([[1.0, 0.0]])
    assert knn_predict(bank, labels, query, 2, k=3, temperature=1.0).tolist() == [0]
    assert knn_predict(bank, labels, query, 2, k=3, temperature=0.1).tolist() == [1]
    assert knn_predict(bank, labels, query, 2, k=1, temperature=1.0).tolist() == [1]
    result = knn_accuracy(bank, labels, query.expand(2, 2), torch.tensor([1, 0]), 2, k=99, temperature=0.1)
    assert result["value"] == 0.5 and result["protocol"]["k"] == 3  # k capped at the bank size


def test_linear_probe_separates_separable_features_and_not_shuffled_labels():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 16, generator=g) * 3
    labels = torch.randint(4, (400,), generator=g)
    features = centres[labels] + torch.randn(400, 16, generator=g)
    train, test = slice(0, 300), slice(300, 400)
    result = linear_probe(features[train], labels[train], features[test], labels[test], 4, epochs=10,
                          generator=torch.Generator().manual_seed(0))
    assert result["value"] >= 0.95 and result["protocol"]["epochs"] == 10
    again = linear_probe(features[train], labels[train], features[test], labels[test], 4, epochs=10,
                         generator=torch.Generator().manual_seed(0))
    assert again["value"] == result["value"]  # deterministic given the generator
    noise = labels[torch.randperm(400, generator=g)]
    chance = linear_probe(features[train], noise[train], features[test], noise[test], 4, epochs=10,
                          generator=torch.Generator().manual_seed(0))
    assert 0.1 < chance["value"] < 0.45  # labels unrelated to the features: near 1/4


# --- MoCo-v2's recipe: hue, random order of the colour ops, Gaussian blur -------------------------

JITTER_ONLY = {**OFF, "jitter_prob": 1.0, "brightness": 0.0, "contrast": 0.0, "saturation": 0.0}


def test_hue_shift_hand_computed():
    """(0.8, 0.4, 0.2) has hue 1/18, value 0.8, chroma 0.6; half a turn gives (0.2, 0.6, 0.8); pure
    red turned by 1/6 is yellow, by 1/3 green; a grey pixel has no hue to turn."""
    u = torch.tensor([[0.8, 0.4, 0.2], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.3, 0.3, 0.3]]).view(4, 3, 1, 1)
    augment = ViewAugment(**{**JITTER_ONLY, "hue": 0.5})
    out = augment.apply(u * 2 - 1, {"jitter": torch.ones(4, dtype=torch.bool),
                                    "hue": torch.tensor([0.5, 1 / 6, 1 / 3, 0.25])})
    expected = torch.tensor([[0.2, 0.6, 0.8], [1.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.3, 0.3, 0.3]]).view(4, 3, 1, 1)
    torch.testing.assert_close((out + 1) / 2, expected, atol=1e-6, rtol=0)


def test_hue_matches_torchvisions_adjust_hue_image_by_image():
    tvf = pytest.importorskip("torchvision.transforms.functional")
    u = torch.rand(16, 3, 9, 7, generator=torch.Generator().manual_seed(1))
    u[0, :, 0, 0] = 0.5  # grey pixels and ties between channels
    u[1, 0], u[1, 1] = 0.7, 0.7
    shift = torch.linspace(-0.5, 0.5, 16)
    out = ViewAugment(**{**JITTER_ONLY, "hue": 0.5}).apply(u * 2 - 1, {"jitter": torch.ones(16, dtype=torch.bool),
                                                                       "hue": shift})
    expected = torch.stack([tvf.adjust_hue(u[i], float(shift[i])) for i in range(16)])
    torch.testing.assert_close((out + 1) / 2, expected, atol=2e-6, rtol=0)
    assert (expected - u).abs().amax() > 0.3  # the shifts do move colours


def test_random_order_is_a_permutation_per_image_and_every_order_occurs():
    augment = ViewAugment(**{**JITTER_ONLY, "brightness": 0.4, "hue": 0.1, "jitter_order": "random"})
    order = augment.sample((2000, 3, 4, 4), torch.Generator().manual_seed(0))["order"]
    assert order.shape == (2000, 4) and torch.equal(order.sort(1).values, torch.arange(4).expand(2000, 4))
    counts = torch.unique(order, dim=0, return_counts=True)[1]
    assert len(counts) == 24 and counts.min() > 2000 / 24 / 2  # all 24 orders, none rare


def test_random_order_applies_each_images_ops_in_its_order_as_torchvision():
    """Image i gets torchvision's adjust_* in the order order[i] (their contrast and saturation use
    grey weights 0.2989 where negaug uses 0.299: differences below 1e-3); a wrong order is far off."""
    tvf = pytest.importorskip("torchvision.transforms.functional")
    adjust = [tvf.adjust_brightness, tvf.adjust_contrast, tvf.adjust_saturation, tvf.adjust_hue]
    augment = ViewAugment(**{**JITTER_ONLY, "brightness": 0.8, "contrast": 0.8, "saturation": 0.8, "hue": 0.5,
                             "jitter_order": "random"})
    u = torch.rand(24, 3, 6, 6, generator=torch.Generator().manual_seed(2))
    params = augment.sample(u.shape, torch.Generator().manual_seed(3))
    params["jitter"][:] = True
    out = (augment.apply(u * 2 - 1, params) + 1) / 2
    names = ("brightness", "contrast", "saturation", "hue")
    for i in range(24):
        expected, reversed_order = u[i], u[i]
        for op in params["order"][i].tolist():
            expected = adjust[op](expected, float(params[names[op]][i]))
        for op in params["order"][i].flip(0).tolist():
            reversed_order = adjust[op](reversed_order, float(params[names[op]][i]))
        torch.testing.assert_close(out[i], expected, atol=1e-3, rtol=0)
        assert i not in (0, 1, 2) or (out[i] - reversed_order).abs().amax() > 1e-2


def test_fixed_order_draws_and_applies_what_it_did_before_hue_existed():
    augment = ViewAugment()  # hue 0, fixed order, no blur
    params = augment.sample((4, 3, 8, 8), torch.Generator().manual_seed(0))
    assert set(params) == {"box", "flip", "jitter", "brightness", "contrast", "saturation", "grayscale"}


@pytest.mark.parametrize("size", [6, 32])
def test_blur_matches_torchvisions_gaussian_blur_image_by_image(size):
    tvf = pytest.importorskip("torchvision.transforms.functional")
    from negaug.contrastive.augment import blur_kernel_size
    augment = ViewAugment(**{**OFF, "blur_prob": 0.5, "blur_sigma": (0.1, 2.0)})
    u = torch.rand(6, 3, size, size, generator=torch.Generator().manual_seed(4))
    sigma = torch.tensor([0.1, 0.5, 1.0, 1.5, 2.0, 2.0])
    blur = torch.tensor([True, True, True, True, True, False])
    out = (augment.apply(u * 2 - 1, {"blur": blur, "blur_sigma": sigma}) + 1) / 2
    kernel = blur_kernel_size(2.0, size, size)
    assert kernel == (13 if size == 32 else 11)  # 2 ceil(3 * 2) + 1; at 6 px half the kernel < 6: 11
    for i in range(5):
        expected = tvf.gaussian_blur(u[i], [kernel, kernel], [float(sigma[i])] * 2)
        torch.testing.assert_close(out[i], expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(out[5], u[5], atol=1e-6, rtol=0)  # not blurred
    assert (out[4] - u[4]).abs().mean() > 0.1  # sigma 2 does blur


def test_blur_keeps_a_constant_image_and_sigma_is_drawn_in_range():
    augment = ViewAugment(**{**OFF, "blur_prob": 1.0, "blur_sigma": (0.1, 2.0)})
    x = torch.full((3, 3, 10, 10), 0.3)
    torch.testing.assert_close(augment(x, torch.Generator().manual_seed(0)), x, atol=1e-6, rtol=0)
    sigma = augment.sample((5000, 3, 8, 8), torch.Generator().manual_seed(0))["blur_sigma"]
    assert 0.1 <= sigma.min() < 0.15 and 1.95 < sigma.max() <= 2.0


def test_mocov2_views_are_replayable_and_independent_of_the_rest_of_the_batch():
    x, augment = images(n=5, size=16), ViewAugment.mocov2()
    params = augment.sample(x.shape, torch.Generator().manual_seed(0))
    assert {"hue", "order", "blur", "blur_sigma"} <= set(params)
    whole = augment.apply(x, params)
    assert torch.equal(whole, augment(x, torch.Generator().manual_seed(0)))
    for i in range(5):
        alone = augment.apply(x[i:i + 1], {key: value[i:i + 1] for key, value in params.items()})
        torch.testing.assert_close(alone[0], whole[i], atol=1e-5, rtol=0)
    assert whole.min() >= -1 and whole.max() <= 1


def test_new_options_are_checked():
    with pytest.raises(ValueError, match="jitter_order='shuffled'"):
        ViewAugment(jitter_order="shuffled")
    with pytest.raises(ValueError, match="hue"):
        ViewAugment(hue=0.6)
    with pytest.raises(ValueError, match="blur_sigma"):
        ViewAugment(blur_sigma=(2.0, 1.0))
