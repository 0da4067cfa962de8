"""Properties of negaug.nda that mixture, positive and replayed parameters rely on: a subset of
images with its own parameters gives the same images as the whole batch, pixels are moved or mixed
without losing any, parameters that do not describe the batch are refused, and patch boxes stay
within their bounds for any image size."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from negaug import nda
from negaug.nda.base import slice_params
from negaug.nda.transforms import boxes_from_uniforms, patch_bounds


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def every_transform() -> dict[str, nda.NDATransform]:
    """Every registered transform (random options where the default is deterministic), a mixture
    of all of them, positive augmentation of a pairing transform and a nested mixture."""
    source = torch.rand(5, 3, 8, 8, generator=gen(9)) * 2 - 1
    built = {name: nda.build(name, source=source) if name == "other_data" else nda.build(name) for name in nda.names()}
    built["hflip"], built["vflip"] = nda.build("hflip", p=0.5), nda.build("vflip", p=0.5)
    built["mixture_all"] = nda.build("mixture", transforms=[n for n in nda.names() if n not in ("mixture", "other_data")])
    built["positive_cutmix"] = nda.positive("cutmix", p=0.5)
    built["positive_mixture"] = nda.positive({"name": "mixture", "transforms": ["stitch", "jigsaw", "mixup"]}, p=0.7)
    return built


TRANSFORMS = every_transform()


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_a_subset_with_its_own_params_gives_the_same_images(name):
    """What mixture and positive do: a component sees only the images that chose it (and, for a
    pairing component, their partners from the whole batch)."""
    t = TRANSFORMS[name]
    x = torch.rand(12, 3, 8, 8, generator=gen(0)) * 2 - 1
    params = t.sample(x.shape, gen(1))
    rows = torch.tensor([7, 0, 3, 11])
    own = slice_params(params, rows)
    if t.pairs:
        subset = t.combine(x[rows], x[params["partner"][rows]], own)
    else:
        subset = t.apply(x[rows], own)
    assert torch.equal(subset, t.apply(x, params)[rows])


CONSERVING = ("jigsaw", "stitch", "cutmix", "mixup", "cutout", "hflip", "vflip")


@pytest.mark.parametrize("name", [*CONSERVING, "mixture"])
def test_pixels_are_moved_or_mixed_without_loss(name):
    """Each output pixel is one input pixel, a convex mix of two, or a patch mean: the gradient of
    the output's sum with respect to the input sums to the number of pixels (a jigsaw that
    dropped or doubled a tile, or a mixup with weights not summing to 1, would not)."""
    t = nda.build(name, transforms=CONSERVING) if name == "mixture" else nda.build(name)
    x = (torch.rand(10, 3, 8, 8, generator=gen(0)) * 2 - 1).requires_grad_()
    t.apply(x, t.sample(x.shape, gen(1))).sum().backward()
    assert x.grad is not None
    torch.testing.assert_close(x.grad.sum().item(), float(x.numel()), rtol=1e-5, atol=0)


def test_gradients_follow_the_moved_pixels():
    x = torch.arange(32.0).view(2, 1, 4, 4).requires_grad_()
    weights = torch.arange(32.0).view(2, 1, 4, 4)
    out = nda.build("stitch").apply(x, {"partner": torch.tensor([1, 0]), "split_rows": torch.tensor([True, True])})
    (out * weights).sum().backward()
    # each input pixel receives the weight of the output pixel it went to: image 1's bottom half
    # went to image 0's bottom half, and back
    expected = torch.cat([torch.cat([weights[0, 0, :2], weights[1, 0, 2:]]), torch.cat([weights[1, 0, :2], weights[0, 0, 2:]])])
    assert torch.equal(x.grad.view(2, 4, 4), expected.view(2, 4, 4))


OUT_OF_RANGE = [
    ("jigsaw", {}, {"perm": torch.tensor([[0, 1, 2, 4]] * 4)}, r"perm .*\[0, 4\)"),
    ("stitch", {}, {"partner": torch.tensor([1, 2, 3, 4]), "split_rows": torch.ones(4, dtype=torch.bool)}, r"partner .*\[0, 4\)"),
    ("stitch", {}, {"partner": torch.tensor([1, 2, 3, -1]), "split_rows": torch.ones(4, dtype=torch.bool)}, r"partner .*\[0, 4\)"),
    ("mixup", {}, {"partner": torch.tensor([1, 2, 3, 4]), "gamma": torch.full((4,), 0.5)}, r"partner .*\[0, 4\)"),
    ("cutout", {}, {"box": torch.tensor([[0, 0, 4, 4], [0, 6, 4, 4], [0, 0, 1, 1], [0, 0, 1, 1]])}, "box"),
    ("cutout", {}, {"box": torch.tensor([[0, 0, 0, 4], [0, 0, 4, 4], [0, 0, 1, 1], [0, 0, 1, 1]])}, "empty"),
    ("cutmix", {}, {"partner": torch.tensor([1, 0, 3, 2]), "box": torch.tensor([[0, 0, 4, 4], [5, 0, 4, 4], [0, 0, 1, 1], [0, 0, 1, 1]])}, "box"),
    ("mixture", {"transforms": ["jigsaw", "cutout"]}, {"choice": torch.tensor([0, 1, 2, 0]), "0.perm": torch.tensor([[1, 0, 2, 3]] * 4),
                                                      "1.box": torch.tensor([[0, 0, 2, 2]] * 4)}, r"choice .*\[0, 2\)"),
    ("mixture", {"transforms": ["jigsaw", "stitch"]}, {"choice": torch.tensor([0, 1, 1, 0]), "partner": torch.tensor([1, 0, 3, 7]),
                                                      "0.perm": torch.tensor([[1, 0, 2, 3]] * 4), "1.split_rows": torch.ones(4, dtype=torch.bool)}, "partner"),
    ("other_data", {"source": torch.zeros(3, 3, 8, 8)}, {"index": torch.tensor([0, 1, 2, 3])}, r"index .*\[0, 3\)"),
]


@pytest.mark.parametrize("name,options,params,message", OUT_OF_RANGE)
def test_params_that_do_not_describe_the_batch_are_refused(name, options, params, message):
    x = torch.rand(4, 3, 8, 8)
    with pytest.raises(ValueError, match=message):
        nda.build(name, **options).apply(x, params)


def test_params_for_another_batch_size_are_refused():
    t = nda.build("jigsaw")
    with pytest.raises(ValueError, match="describes 5 images, the batch has 4"):
        t.apply(torch.rand(4, 3, 8, 8), t.sample((5, 3, 8, 8), gen(0)))


@settings(max_examples=200, deadline=None)
@given(st.integers(2, 300), st.integers(2, 300), st.lists(st.sampled_from([0.0, 0.5, 1 - 2.0 ** -53]), min_size=4, max_size=4))
def test_patch_boxes_stay_within_bounds_for_any_size(height, width, extremes):
    u = torch.rand(64, 4, generator=gen(height * 1000 + width), dtype=torch.float64)
    u[0] = torch.tensor(extremes, dtype=torch.float64)
    top, left, box_h, box_w = boxes_from_uniforms(u, height, width).unbind(1)
    (low_h, high_h), (low_w, high_w) = patch_bounds(height), patch_bounds(width)
    assert bool(((box_h >= low_h) & (box_h <= high_h) & (box_w >= low_w) & (box_w <= high_w)).all())
    assert bool(((top >= 0) & (left >= 0) & (top + box_h <= height) & (left + box_w <= width)).all())


@pytest.mark.parametrize("n", [2, 3, 17, 256])
def test_derangement_is_a_permutation_without_fixed_points_and_seeded(n):
    for seed in range(20):
        perm = nda.derangement(n, gen(seed))
        assert perm.dtype == torch.int64 and sorted(perm.tolist()) == list(range(n))
        assert not bool((perm == torch.arange(n)).any())
        assert torch.equal(perm, nda.derangement(n, gen(seed)))
    assert nda.derangement(2, gen(0)).tolist() == [1, 0]  # the only derangement of 2 items


@pytest.mark.parametrize("name", ["stitch", "cutmix", "mixup"])
def test_combine_leaves_its_inputs_alone_and_combine_in_place_agrees(name):
    """`combine` never writes into the caller's tensors; `combine_` may reuse `partners` but gives
    the same images (stitch writes its own half over the partner's image)."""
    transform = nda.build(name)
    images, partners = torch.rand(6, 3, 8, 8), torch.rand(6, 3, 8, 8)
    params = transform.sample(images.shape, torch.Generator().manual_seed(3))
    kept_images, kept_partners = images.clone(), partners.clone()
    combined = transform.combine(images, partners, params)
    assert torch.equal(images, kept_images) and torch.equal(partners, kept_partners)
    assert torch.equal(transform.combine_(images, partners.clone(), params), combined)
