"""Tests of negaug.nda: a generic suite over the whole registry, then each transform's own rules."""
from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.testing import assert_close

from negaug import nda
from negaug.nda.sampling import sample_log_gamma
from negaug.nda.transforms import boxes_from_uniforms, patch_bounds

PAIRING = ("stitch", "cutmix", "mixup")
NOT_DIFFERENTIABLE = ("other_data",)  # the output does not depend on x


def _source(shape=(6, 3, 8, 8)) -> torch.Tensor:
    return torch.linspace(-1, 1, math.prod(shape)).view(shape)


def make(name: str, **options) -> nda.NDATransform:
    """Every registered transform, with the options its generic tests need."""
    if name == "other_data":
        options.setdefault("source", _source())
    return nda.build(name, **options)


def make_random(name: str) -> nda.NDATransform:
    """A configuration whose output depends on the draw (flips with p=1 are deterministic)."""
    return make(name, p=0.5) if name in ("hflip", "vflip") else make(name)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(batch=8, channels=3, height=8, width=8, seed=0, dtype=torch.float32) -> torch.Tensor:
    return (torch.rand(batch, channels, height, width, generator=gen(seed)) * 2 - 1).to(dtype)


def constant_images(batch=6, height=8, width=8) -> torch.Tensor:
    """Image i is the constant c_i, all distinct, so every output pixel tells where it came from."""
    values = torch.linspace(-0.9, 0.9, batch)
    return values.view(batch, 1, 1, 1).expand(batch, 2, height, width).contiguous()


ALL = nda.names()


# ----------------------------------------------------------------------------- generic suite
def test_registry_lists_every_transform():
    assert ALL == sorted(["jigsaw", "stitch", "cutout", "cutmix", "mixup", "random_crop", "hflip", "vflip",
                          "gaussian_noise", "other_data", "mixture"])


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_keeps_shape_device_dtype_and_range(name, dtype):
    x = images(dtype=dtype)
    out = make(name)(x, generator=gen(0))
    assert out.shape == x.shape and out.dtype == dtype and out.device == x.device
    assert out.data_ptr() != x.data_ptr()
    assert float(out.min()) >= -1 and float(out.max()) <= 1  # [-1, 1] in, [-1, 1] out


@pytest.mark.parametrize("name", ALL)
def test_same_seed_same_output_different_seed_different_output(name):
    x = images()
    t = make_random(name)
    torch.testing.assert_close(t(x, generator=gen(1)), t(x, generator=gen(1)), rtol=0, atol=0)
    assert not torch.equal(t(x, generator=gen(1)), t(x, generator=gen(2)))


@pytest.mark.parametrize("name", ALL)
def test_global_rng_untouched(name):
    x = images()
    t = make_random(name)
    before = torch.get_rng_state()
    t(x, generator=gen(0))
    draws = [t(x) for _ in range(8)]  # generator=None: a fresh generator seeded from OS entropy each time
    assert torch.equal(before, torch.get_rng_state())
    # (a flip of a small batch repeats itself with probability 2^-B per pair: compare 8 draws, not 2)
    assert draws[0].shape == x.shape and not all(torch.equal(draws[0], other) for other in draws[1:])


@pytest.mark.parametrize("name", ALL)
def test_sample_then_apply_replays_the_direct_call(name):
    x = images()
    t = make(name)
    params = t.sample(x.shape, gen(3), device="cpu")
    assert all(v.shape[0] == x.shape[0] and v.device == x.device for v in params.values())
    assert torch.equal(t.apply(x, params), t(x, generator=gen(3)))
    assert torch.equal(t.apply(x, params), t.apply(x, params))
    assert torch.equal(t.forward(x, gen(3)), t(x, gen(3)))


@pytest.mark.parametrize("name", ALL)
def test_memory_layout_does_not_change_the_output(name):
    x = images(batch=6, height=8, width=12)
    t = make(name, source=_source((4, 3, 8, 12))) if name == "other_data" else make(name)
    params = t.sample(x.shape, gen(0))
    expected = t.apply(x, params)
    # Equal up to summation order (cutout's patch mean is reduced in layout order).
    assert_close(t.apply(x.to(memory_format=torch.channels_last), params), expected, atol=1e-6, rtol=1e-6)
    wide = images(batch=6, height=8, width=24)
    wide[..., ::2] = x
    assert_close(t.apply(wide[..., ::2], params), expected, atol=1e-6, rtol=1e-6)  # a strided view


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_matches_float32(name, dtype):
    x = images(dtype=dtype)
    t = make(name)
    params = t.sample(x.shape, gen(0))
    out = t.apply(x, params)
    assert out.dtype == dtype and out.shape == x.shape
    assert_close(out.float(), t.apply(x.float(), params), atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize("name", [n for n in ALL if n not in NOT_DIFFERENTIABLE])
def test_gradcheck(name):
    x = (images(batch=3, channels=2, height=4, width=4, dtype=torch.float64) * 0.5).requires_grad_()
    t = make(name)
    params = t.sample(x.shape, gen(0))
    assert torch.autograd.gradcheck(lambda inp: t.apply(inp, params), (x,), eps=1e-6, atol=1e-5, fast_mode=True)


@pytest.mark.parametrize("name", ALL)
def test_is_a_module_and_module_apply_still_works(name):
    t = make(name)
    assert isinstance(t, torch.nn.Module) and isinstance(t, nda.NDATransform)
    visited = []
    assert t.apply(lambda module: visited.append(module)) is t  # nn.Module.apply(fn)
    assert visited[-1] is t
    with pytest.raises(ValueError, match="needs the params"):
        t.apply(images())


@pytest.mark.parametrize("name", ALL)
def test_batch_of_one(name):
    x = images(batch=1)
    t = make(name)
    if name in PAIRING or name == "mixture":
        with pytest.raises(ValueError, match="at least 2 images"):
            t(x, generator=gen(0))
    else:
        assert t(x, generator=gen(0)).shape == x.shape


def test_unknown_name_or_option_names_the_valid_ones():
    with pytest.raises(ValueError, match="did you mean 'jigsaw'.*valid: cutmix, cutout"):
        nda.build("jigsw")
    with pytest.raises(ValueError, match="unknown option 'K'.*valid: allow_identity, k"):
        nda.build("jigsaw", K=2)
    with pytest.raises(ValueError, match="unknown option 'alpa'"):
        nda.build("mixture", transforms=[{"name": "mixup", "alpa": 3}])


@pytest.mark.parametrize("name,options", [("jigsaw", {"k": 1}), ("mixup", {"alpha": 0}), ("hflip", {"p": 1.5}),
                                          ("random_crop", {"scale": (0.5, 1.5)}), ("gaussian_noise", {"std": -1})])
def test_invalid_option_values(name, options):
    with pytest.raises(ValueError):
        nda.build(name, **options)


@pytest.mark.parametrize("name", ALL)
def test_rejects_non_image_batches(name):
    with pytest.raises(ValueError):
        make(name)(torch.zeros(4, 8, 8), generator=gen(0))
    with pytest.raises(ValueError, match="float tensor"):
        make(name)(torch.zeros(4, 3, 8, 8, dtype=torch.uint8), generator=gen(0))


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(ALL), st.integers(2, 5), st.integers(1, 6), st.integers(1, 6), st.integers(0, 2**31))
def test_any_defined_size_keeps_shape_and_range(name, batch, half_h, half_w, seed):
    x = images(batch=batch, height=2 * half_h, width=2 * half_w, seed=seed % 1000)
    t = make(name, source=_source((3, 3, 2 * half_h, 2 * half_w))) if name == "other_data" else make(name)
    out = t(x, generator=gen(seed))
    assert out.shape == x.shape and float(out.abs().max()) <= 1


@pytest.mark.cuda
@pytest.mark.parametrize("name", ALL)
def test_cpu_generator_drives_cuda_inputs(name):
    x = images()
    t = make(name).to("cuda")
    out = t(x.cuda(), generator=gen(0))
    assert out.is_cuda
    assert_close(out.cpu(), make(name)(x, generator=gen(0)), atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------- exact outputs on hand-checked inputs
def grid(*rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


@pytest.mark.parametrize("perm,expected", [
    ([3, 2, 1, 0], grid([10, 11, 8, 9], [14, 15, 12, 13], [2, 3, 0, 1], [6, 7, 4, 5])),
    ([1, 0, 3, 2], grid([2, 3, 0, 1], [6, 7, 4, 5], [10, 11, 8, 9], [14, 15, 12, 13])),
    ([0, 2, 1, 3], grid([0, 1, 8, 9], [4, 5, 12, 13], [2, 3, 10, 11], [6, 7, 14, 15])),
])
def test_jigsaw_on_arange(perm, expected):
    x = torch.arange(16.0).view(1, 1, 4, 4)
    assert torch.equal(nda.build("jigsaw").apply(x, {"perm": torch.tensor([perm])})[0, 0], expected)


def test_stitch_on_arange():
    x = torch.arange(32.0).view(2, 1, 4, 4)  # image 1 is image 0 + 16
    out = nda.build("stitch").apply(x, {"partner": torch.tensor([1, 0]), "split_rows": torch.tensor([True, False])})
    assert torch.equal(out[0, 0], grid([0, 1, 2, 3], [4, 5, 6, 7], [24, 25, 26, 27], [28, 29, 30, 31]))
    assert torch.equal(out[1, 0], grid([16, 17, 2, 3], [20, 21, 6, 7], [24, 25, 10, 11], [28, 29, 14, 15]))


def test_cutmix_on_arange():
    x = torch.arange(32.0).view(2, 1, 4, 4)
    out = nda.build("cutmix").apply(x, {"partner": torch.tensor([1, 0]), "box": torch.tensor([[1, 1, 2, 2], [0, 2, 2, 2]])})
    assert torch.equal(out[0, 0], grid([0, 1, 2, 3], [4, 21, 22, 7], [8, 25, 26, 11], [12, 13, 14, 15]))
    assert torch.equal(out[1, 0], grid([16, 17, 2, 3], [20, 21, 6, 7], [24, 25, 26, 27], [28, 29, 30, 31]))


def test_mixup_on_hand_checked_values():
    x = torch.tensor([[0.0, 1.0], [10.0, 20.0]]).view(2, 1, 1, 2)
    out = nda.build("mixup").apply(x, {"partner": torch.tensor([1, 0]), "gamma": torch.tensor([0.25, 0.5])})
    assert torch.equal(out.flatten(1), torch.tensor([[7.5, 15.25], [5.0, 10.5]]))  # gamma * own + (1 - gamma) * partner


@pytest.mark.parametrize("box,rows,cols", [
    ([0.0, 0.0, 0.5, 0.5], [0.0, 0.25, 0.75, 1.25], [0.0, 0.25, 0.75, 1.25]),  # -0.25 clamps to the border
    ([0.5, 0.25, 0.5, 0.5], [1.75, 2.25, 2.75, 3.0], [0.75, 1.25, 1.75, 2.25]),  # 3.25 clamps to the border
])
def test_random_crop_on_arange(box, rows, cols):
    # pixel (r, c) holds 4r + c, so bilinear resampling at source (y, x) gives exactly 4y + x
    x = torch.arange(16.0).view(1, 1, 4, 4)
    out = nda.build("random_crop").apply(x, {"box": torch.tensor([box])})
    assert_close(out[0, 0], 4 * torch.tensor(rows)[:, None] + torch.tensor(cols), atol=1e-5, rtol=0)


def test_flips_on_arange():
    x = torch.arange(8.0).view(2, 1, 2, 2)
    out = nda.build("hflip", p=0.5).apply(x, {"flip": torch.tensor([True, False])})
    assert torch.equal(out.flatten(1), torch.tensor([[1.0, 0, 3, 2], [4, 5, 6, 7]]))
    out = nda.build("vflip").apply(x, {"flip": torch.tensor([False, True])})
    assert torch.equal(out.flatten(1), torch.tensor([[0.0, 1, 2, 3], [6, 7, 4, 5]]))


# ----------------------------------------------------------------------------- derangement
@pytest.mark.parametrize("n", [2, 3, 5, 64])
def test_derangement_has_no_fixed_point(n):
    g = gen(0)
    for _ in range(50):
        perm = nda.derangement(n, g)
        assert sorted(perm.tolist()) == list(range(n))
        assert not bool((perm == torch.arange(n)).any())


def test_derangement_is_uniform_over_all_derangements():
    g = gen(0)
    counts = {}
    for _ in range(1800):
        key = tuple(nda.derangement(4, g).tolist())
        counts[key] = counts.get(key, 0) + 1
    assert len(counts) == 9  # the 9 derangements of 4 items: every off-diagonal pair occurs
    assert all(140 <= c <= 260 for c in counts.values()), counts  # 200 expected, sd ~13
    assert torch.equal(nda.derangement(7, gen(5)), nda.derangement(7, gen(5)))


def test_derangement_of_one_item_is_an_error():
    with pytest.raises(ValueError, match="at least 2"):
        nda.derangement(1, gen(0))


# ----------------------------------------------------------------------------- jigsaw
def _tiles(x: torch.Tensor, k: int) -> torch.Tensor:
    """(B, K*K, C, h, w) tiles in row-major order."""
    b, c, h, w = x.shape
    return x.view(b, c, k, h // k, k, w // k).permute(0, 2, 4, 1, 3, 5).reshape(b, k * k, c, h // k, w // k)


@pytest.mark.parametrize("k,height,width", [(2, 4, 4), (2, 4, 6), (3, 6, 9), (4, 8, 8)])
def test_jigsaw_output_is_the_drawn_tile_permutation(k, height, width):
    x = torch.arange(5 * 2 * height * width, dtype=torch.float32).view(5, 2, height, width)
    t = nda.build("jigsaw", k=k)
    params = t.sample(x.shape, gen(0))
    out_tiles, in_tiles = _tiles(t.apply(x, params), k), _tiles(x, k)
    for b in range(x.shape[0]):  # per-image loop only in the test, as the reference
        assert torch.equal(out_tiles[b], in_tiles[b, params["perm"][b]])
    assert not bool((params["perm"] == torch.arange(k * k)).all(1).any())


def test_jigsaw_draws_every_non_identity_permutation_uniformly_and_never_the_identity():
    perms = nda.build("jigsaw", k=2).sample((4600, 1, 2, 2), gen(0))["perm"]
    counts = {p: 0 for p in itertools.permutations(range(4))}
    for row in perms.tolist():
        counts[tuple(row)] += 1
    assert counts.pop((0, 1, 2, 3)) == 0
    assert len(counts) == 23 and all(140 <= c <= 260 for c in counts.values()), counts  # 200 expected


def test_jigsaw_allow_identity_lets_the_identity_occur():
    perms = nda.build("jigsaw", k=2, allow_identity=True).sample((2400, 1, 2, 2), gen(0))["perm"]
    identity = int((perms == torch.arange(4)).all(1).sum())
    assert 60 <= identity <= 140  # 1/24 of 2400 = 100 expected


def test_jigsaw_k_must_divide_the_size():
    with pytest.raises(ValueError, match="k=3 must divide the image size, got 8x8"):
        nda.build("jigsaw", k=3)(images(), generator=gen(0))
    with pytest.raises(ValueError, match="k=2 must divide the image size, got 8x7"):
        nda.check_compatible("jigsaw", (8, 7))


# ----------------------------------------------------------------------------- pairing transforms
@pytest.mark.parametrize("name", PAIRING)
def test_pairing_never_uses_the_image_itself(name):
    x = constant_images(batch=6)
    t = nda.build(name)
    for seed in range(20):
        params = t.sample(x.shape, gen(seed))
        out, partner = t.apply(x, params), params["partner"]
        own_value, partner_value = x[:, :1, :1, :1], x[partner][:, :1, :1, :1]
        assert not bool((partner == torch.arange(6)).any())
        if name == "mixup":  # a strict mix: never one of the two images
            gamma = params["gamma"].view(-1, 1, 1, 1)
            assert_close(out, (gamma * own_value + (1 - gamma) * partner_value).expand_as(out))
            assert bool(((out != own_value) & (out != partner_value)).all())
        else:  # every pixel is own or partner, and both occur
            is_own, is_partner = out == own_value, out == partner_value
            assert bool((is_own | is_partner).all())
            assert bool(is_own.flatten(1).any(1).all()) and bool(is_partner.flatten(1).any(1).all())


@pytest.mark.parametrize("height,width", [(4, 4), (5, 7)])
def test_stitch_halves_are_split_at_half_the_size(height, width):
    x = constant_images(batch=4, height=height, width=width)
    t = nda.build("stitch")
    params = t.sample(x.shape, gen(0))
    params["split_rows"] = torch.tensor([True, False, True, False])
    out, partner = t.apply(x, params), params["partner"]
    expected = x.clone()
    expected[0::2, :, height // 2:, :] = x[partner[0::2], :, height // 2:, :]
    expected[1::2, :, :, width // 2:] = x[partner[1::2], :, :, width // 2:]
    assert torch.equal(out, expected)


def test_stitch_chooses_the_orientation_uniformly():
    split = nda.build("stitch").sample((2000, 1, 2, 2), gen(0))["split_rows"]
    assert 900 <= int(split.sum()) <= 1100


def test_patch_bounds_are_a_third_to_a_half():
    for size in range(2, 200):
        low, high = patch_bounds(size)
        assert size / 3 <= low <= high <= size / 2
        assert low - 1 < size / 3 and high + 1 > size / 2


def _rectangle(mask: torch.Tensor) -> tuple[int, int, int, int]:
    """(top, left, height, width) of a 2-D bool mask that must be one filled rectangle."""
    rows, cols = mask.any(1).nonzero().squeeze(1), mask.any(0).nonzero().squeeze(1)
    top, left, height, width = int(rows[0]), int(cols[0]), len(rows), len(cols)
    assert int(mask.sum()) == height * width and bool(mask[top:top + height, left:left + width].all())
    return top, left, height, width


@pytest.mark.parametrize("name", ["cutout", "cutmix"])
def test_patch_is_a_rectangle_within_bounds(name):
    height, width = 9, 14
    x = constant_images(batch=400, height=height, width=width) if name == "cutmix" else images(batch=400, height=height, width=width)
    t = nda.build(name)
    params = t.sample(x.shape, gen(0))
    changed = (t.apply(x, params) != x)[:, 0]
    boxes = torch.tensor([_rectangle(mask) for mask in changed])
    assert torch.equal(boxes, params["box"])  # the patch recovered from the output is the drawn box
    assert set(boxes[:, 2].tolist()) == set(range(3, 5)) and set(boxes[:, 3].tolist()) == set(range(5, 8))
    assert int(boxes[:, 0].min()) == 0 and int((boxes[:, 0] + boxes[:, 2]).max()) == height
    assert int(boxes[:, 1].min()) == 0 and int((boxes[:, 1] + boxes[:, 3]).max()) == width


def test_cutout_fills_the_patch_with_its_own_per_channel_mean():
    x = torch.arange(2 * 6 * 6, dtype=torch.float32).view(1, 2, 6, 6)
    out = nda.build("cutout").apply(x, {"box": torch.tensor([[1, 2, 2, 3]])})
    expected = x.clone()
    expected[0, 0, 1:3, 2:5] = 12.0  # mean of 8, 9, 10, 14, 15, 16
    expected[0, 1, 1:3, 2:5] = 48.0  # the same + 36
    assert torch.equal(out, expected)


def test_cutout_and_cutmix_reject_images_too_small_for_a_patch():
    for name in ("cutout", "cutmix"):
        with pytest.raises(ValueError, match="at least 2x2"):
            nda.check_compatible(name, (1, 8))


@pytest.mark.parametrize("alpha,beta", [(0.5, 3.0), (2.0, 5.0), (7.0, 1.0)])
def test_asymmetric_beta_draws_match_theory(alpha, beta):
    from scipy import stats

    draws = nda.sample_beta(alpha, beta, 20000, gen(3)).numpy()
    assert abs(draws.mean() - alpha / (alpha + beta)) < 6 * stats.beta(alpha, beta).std() / math.sqrt(20000)
    assert stats.kstest(draws, stats.beta(alpha, beta).cdf).pvalue > 1e-3


@pytest.mark.parametrize("alpha", [0.5, 2.0, 25.0])
def test_beta_draws_match_theory(alpha):
    from scipy import stats

    gamma = nda.sample_beta(alpha, alpha, 20000, gen(0))
    variance = 1 / (4 * (2 * alpha + 1))
    assert_close(gamma.mean().item(), 0.5, atol=6 * math.sqrt(variance / 20000), rtol=0)
    assert_close(gamma.var().item(), variance, rtol=0.03, atol=0)
    assert stats.kstest(gamma.numpy(), stats.beta(alpha, alpha).cdf).pvalue > 1e-3


@pytest.mark.parametrize("concentration", [0.05, 0.3, 1.0, 3.0, 40.0])
def test_gamma_draws_match_theory(concentration):
    draws = sample_log_gamma(torch.full((40000,), concentration), gen(1)).exp()
    sd = math.sqrt(concentration / 40000)
    assert_close(draws.mean().item(), concentration, atol=6 * sd, rtol=0)
    assert_close(draws.var().item(), concentration, rtol=0.1, atol=0)


@pytest.mark.parametrize("alpha", [2.0, 25.0])
def test_mixup_gamma_is_beta_per_image(alpha):
    gamma = nda.build("mixup", alpha=alpha).sample((20000, 1, 2, 2), gen(0))["gamma"].double()
    variance = 1 / (4 * (2 * alpha + 1))
    assert_close(gamma.mean().item(), 0.5, atol=6 * math.sqrt(variance / 20000), rtol=0)
    assert_close(gamma.var().item(), variance, rtol=0.03, atol=0)


def test_patch_sides_and_starts_are_inclusive_and_uniform():
    top, left, height, width = nda.build("cutout").sample((6000, 1, 6, 12), gen(0))["box"].unbind(1)  # sides 2..3 and 4..6
    assert sorted(set(height.tolist())) == [2, 3] and all(2700 <= int((height == v).sum()) <= 3300 for v in (2, 3))
    assert sorted(set(width.tolist())) == [4, 5, 6] and all(1800 <= int((width == v).sum()) <= 2200 for v in (4, 5, 6))
    narrow = width == 6  # left in 0..6: 7 equally likely starts
    assert sorted(set(left[narrow].tolist())) == list(range(7))
    assert all(abs(int((left[narrow] == v).sum()) - int(narrow.sum()) / 7) < 6 * math.sqrt(int(narrow.sum()) / 7) for v in range(7))
    assert bool((top + height <= 6).all())


def test_patch_boxes_at_the_extremes_of_the_uniforms():
    u = torch.tensor([[0.0, 0.0, 0.0, 0.0], [1 - 2.0 ** -53] * 4, [0.5, 0.5, 0.5, 0.5]], dtype=torch.float64)
    # 9x14: heights 3..4, widths 5..7; u -> 1 gives the largest patch at the bottom-right corner
    expected = torch.tensor([[0, 0, 3, 5], [5, 7, 4, 7], [3, 4, 4, 6]])
    assert torch.equal(boxes_from_uniforms(u, 9, 14), expected)


# ----------------------------------------------------------------------------- single-image transforms
def test_flips_are_exact():
    x = images()
    assert torch.equal(nda.build("hflip")(x, gen(0)), x.flip(-1))
    assert torch.equal(nda.build("vflip")(x, gen(0)), x.flip(-2))
    assert torch.equal(nda.build("hflip", p=0.0)(x, gen(0)), x)


def test_flip_with_probability_flips_exactly_the_drawn_images():
    x = images(batch=400)
    t = nda.build("vflip", p=0.5)
    params = t.sample(x.shape, gen(0))
    flip = params["flip"]
    out = t.apply(x, params)
    assert torch.equal(out[flip], x[flip].flip(-2)) and torch.equal(out[~flip], x[~flip])
    assert 160 <= int(flip.sum()) <= 240


def test_random_crop_of_the_whole_image_is_the_identity():
    x = images()
    assert_close(nda.build("random_crop", scale=(1.0, 1.0))(x, gen(0)), x, atol=1e-6, rtol=0)


def test_random_crop_matches_grid_sample():
    x = images(height=8, width=12)
    t = nda.build("random_crop")
    params = t.sample(x.shape, gen(0))
    top, left, height, width = params["box"].unbind(1)
    assert bool((top >= 0).all() and (top + height <= 1 + 1e-6).all() and (left + width <= 1 + 1e-6).all())
    assert bool(((height * width >= 0.25 - 1e-6) & (height * width <= 0.75 + 1e-6)).all())
    theta = torch.zeros(x.shape[0], 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = width, 2 * left + width - 1
    theta[:, 1, 1], theta[:, 1, 2] = height, 2 * top + height - 1
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    expected = torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    assert_close(t.apply(x, params), expected, atol=1e-5, rtol=1e-5)


def test_gaussian_noise_adds_std_times_the_drawn_noise_and_clamps():
    x = torch.tensor([-1.0, -0.5, 0.0, 0.5, 0.9, 1.0]).view(1, 1, 2, 3)
    noise = torch.tensor([-1.0, 2.0, 0.5, -3.0, 2.0, 1.0]).view(1, 1, 2, 3)
    out = nda.build("gaussian_noise", std=0.1).apply(x, {"noise": noise})
    assert_close(out, torch.tensor([-1.0, -0.3, 0.05, 0.2, 1.0, 1.0]).view(1, 1, 2, 3), atol=1e-7, rtol=0)
    params = nda.build("gaussian_noise").sample((4, 3, 8, 8), gen(0))
    assert params["noise"].dtype == torch.float32 and params["noise"].shape == (4, 3, 8, 8)
    assert torch.equal(params["noise"], torch.randn(4, 3, 8, 8, generator=gen(0)))  # torch.randn on the generator


def test_gaussian_noise_is_standard_normal_and_independent():
    from scipy import stats

    z = nda.build("gaussian_noise").sample((64, 3, 32, 32), gen(1))["noise"].double()
    flat = z.flatten()
    assert abs(flat.mean().item()) < 0.012  # 196k draws: the mean's std is 0.0023
    assert abs(flat.std().item() - 1) < 0.01
    assert stats.kstest(flat.numpy(), "norm").pvalue > 1e-3
    corr = torch.corrcoef(z.flatten(1)[:8])  # images are independent: correlations ~0 (std 0.018)
    assert float((corr - torch.eye(8, dtype=corr.dtype)).abs().max()) < 0.09


# ----------------------------------------------------------------------------- other_data
def test_other_data_draws_rows_of_the_source():
    source = _source((5, 3, 8, 8))
    t = nda.build("other_data", source=source)
    params = t.sample((300, 3, 8, 8), gen(0))
    out = t.apply(images(batch=300), params)
    assert torch.equal(out, source[params["index"]])
    assert sorted(set(params["index"].tolist())) == [0, 1, 2, 3, 4]
    assert "source" not in t.state_dict()


def test_other_data_accepts_a_dataset_of_image_label_pairs():
    source = _source((4, 3, 8, 8))
    dataset = torch.utils.data.TensorDataset(source, torch.arange(4))
    assert torch.equal(nda.build("other_data", source=dataset).source, source)


def test_other_data_rejects_mismatched_or_out_of_range_sources():
    t = nda.build("other_data", source=_source((5, 3, 8, 8)))
    with pytest.raises(ValueError, match=r"\(3, 8, 8\).*\(1, 8, 8\)"):
        t(images(channels=1), generator=gen(0))
    with pytest.raises(ValueError, match="resize the source"):
        nda.check_compatible(t, 16)
    with pytest.raises(ValueError, match=r"in \[-1, 1\]"):
        nda.build("other_data", source=_source() * 3)


def test_other_data_works_on_non_image_samples():
    source = torch.randn(10, 2)
    out = nda.build("other_data", source=source)(torch.zeros(4, 2), generator=gen(0))
    assert out.shape == (4, 2) and all(any(torch.equal(row, s) for s in source) for row in out)


# ----------------------------------------------------------------------------- mixture and positive
def test_mixture_gives_each_image_its_chosen_component_output():
    x = images(batch=12)
    t = nda.build("mixture", transforms=["jigsaw", nda.build("stitch"), {"name": "mixup", "alpha": 10}, "cutout"])
    params = t.sample(x.shape, gen(0))
    out = t.apply(x, params)
    for index, component in enumerate(t.components):
        component_params = {key.split(".", 1)[1]: value for key, value in params.items() if key.startswith(f"{index}.")}
        if index in (1, 2):  # the pairing components: the shared partner
            component_params["partner"] = params["partner"]
        chosen = params["choice"] == index
        assert torch.equal(out[chosen], component.apply(x, component_params)[chosen])
    assert t.components[2].alpha == 10


def test_mixture_pairing_components_share_one_derangement():
    t = nda.build("mixture", transforms=["stitch", "jigsaw", "mixup", "cutmix"])
    params = t.sample((9, 3, 8, 8), gen(4))
    assert not bool((params["partner"] == torch.arange(9)).any())
    assert not any(key.endswith(".partner") for key in params)  # one partner, kept once
    assert "partner" not in nda.build("mixture", transforms=["jigsaw", "cutout"]).sample((9, 3, 8, 8), gen(4))


def test_mixture_pairs_each_image_with_the_shared_partner():
    x = constant_images(batch=10)
    t = nda.build("mixture", transforms=["stitch", "jigsaw", "cutmix"])
    params = t.sample(x.shape, gen(2))
    out, partner = t.apply(x, params), params["partner"]
    pairing = params["choice"] != 1
    own_value, partner_value = x[:, :1, :1, :1], x[partner][:, :1, :1, :1]
    assert bool(((out == own_value) | (out == partner_value))[pairing].all())
    assert bool((out == partner_value).flatten(1).any(1)[pairing].all())


def test_mixture_follows_the_weights():
    choice = nda.build("mixture", transforms=["hflip", "vflip", "jigsaw"], weights=[1, 0, 3]).sample((2000, 1, 2, 2), gen(0))["choice"]
    assert int((choice == 1).sum()) == 0
    assert 400 <= int((choice == 0).sum()) <= 600  # 500 expected


@pytest.mark.parametrize("options", [{"transforms": []}, {"transforms": "jigsaw"}, {"transforms": ["jigsaw"], "weights": [1, 1]},
                                     {"transforms": ["jigsaw", "stitch"], "weights": [-1, 2]}, {"transforms": [3]}])
def test_mixture_rejects_bad_specs(options):
    with pytest.raises(ValueError):
        nda.build("mixture", **options)


@pytest.mark.parametrize("p", [0.5, 1.0])
def test_nested_mixture_inside_positive(p):
    x = images(batch=16)
    t = nda.positive({"name": "mixture", "transforms": ["stitch", "cutmix", "jigsaw"]}, p=p)
    params = t.sample(x.shape, gen(0))
    inner_params = {key.split(".", 1)[1]: value for key, value in params.items() if key.startswith("transform.")}
    inner_params["partner"] = params["partner"]
    applied = params["apply"]
    assert 0 < int(applied.sum()) and (p == 1.0 or int(applied.sum()) < 16)
    assert torch.equal(t.apply(x, params)[applied], t.inner.apply(x, inner_params)[applied])


def test_positive_transforms_a_random_fraction_and_keeps_the_rest():
    x = images(batch=400)
    t = nda.positive("jigsaw", p=0.5)
    params = t.sample(x.shape, gen(0))
    out, applied = t.apply(x, params), params["apply"]
    inner_params = {key.split(".", 1)[1]: value for key, value in params.items() if key.startswith("transform.")}
    assert torch.equal(out[~applied], x[~applied])
    assert torch.equal(out[applied], t.inner.apply(x, inner_params)[applied])
    assert 160 <= int(applied.sum()) <= 240
    assert torch.equal(nda.positive("jigsaw", p=0.0)(x, gen(0)), x)


def test_check_compatible():
    assert isinstance(nda.check_compatible({"name": "jigsaw", "k": 4}, 32, channels=3, batch_size=64), nda.NDATransform)
    with pytest.raises(ValueError, match="k=3 must divide"):
        nda.check_compatible({"name": "jigsaw", "k": 3}, 32)
    with pytest.raises(ValueError, match="k=2 must divide"):
        nda.check_compatible("mixture", 31)
    with pytest.raises(ValueError, match="batch of at least 2"):
        nda.check_compatible("mixup", 32, batch_size=1)
    with pytest.raises(ValueError, match="spec"):
        nda.check_compatible(42, 32)


def test_gamma_draws_per_element_concentrations():
    concentration = torch.tensor([0.3, 5.0]).repeat_interleave(30000)
    draws = sample_log_gamma(concentration, gen(2)).exp()
    assert_close(draws[:30000].mean().item(), 0.3, atol=6 * math.sqrt(0.3 / 30000), rtol=0)
    assert_close(draws[30000:].mean().item(), 5.0, atol=6 * math.sqrt(5.0 / 30000), rtol=0)
