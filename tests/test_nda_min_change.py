"""`min_changed`: NDA negatives are never positives in disguise (issue 12).

A cutout patch over a uniform background filled with its own mean, or a cutmix patch copied from
another blank region, gives back the source image: on MNIST-5k 1.6% of cutout negatives equalled
their source. These tests pin the rule (every negative changes at least the minimum), the replay
contract with the final parameters, the redraw of the failing rows only, the deterministic
fallback, and that jigsaw (the default preset's transform) and first draws draw as before.
"""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from negaug import nda
from negaug.nda.min_change import (
    CHANGE_TOLERANCE,
    changed_pixels,
    opposite,
    redraw_partners,
    required_pixels,
)

ENFORCING = ("cutout", "cutmix", "mixup", "stitch")


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def sparse_images(batch: int, height: int = 12, width: int = 12, seed: int = 0, strokes: int = 2) -> torch.Tensor:
    """MNIST-like (B, 1, H, W): background -1 and a few pixels at +1; row 0 is blank (uniform)."""
    x = torch.full((batch, 1, height, width), -1.0)
    g = gen(seed)
    for _ in range(strokes):
        rows = torch.randint(height, (batch,), generator=g)
        cols = torch.randint(width, (batch,), generator=g)
        x[torch.arange(batch), 0, rows, cols] = 1.0
    x[0] = -1.0
    return x


def textured(batch: int, height: int = 12, width: int = 12, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, 1, height, width, generator=gen(seed)) * 2 - 1


def mixture(**options) -> nda.NDATransform:
    return nda.build("mixture", transforms=[{"name": name, **options} for name in ENFORCING])


def build(name: str, **options) -> nda.NDATransform:
    return mixture(**options) if name == "mixture" else nda.build(name, **options)


def flags(params: dict) -> torch.Tensor:
    """bool (B,): the rows that fell back (under any prefix)."""
    batch = next(iter(params.values())).shape[0]
    out = torch.zeros(batch, dtype=torch.bool)
    for key, value in params.items():
        if key == "fallback" or key.endswith(".fallback"):
            out |= value
    return out


# ----------------------------------------------------------------------------- regressions (issue 12)
def test_cutout_never_returns_its_source_on_uniform_background():
    x = sparse_images(64, seed=1)
    before = nda.build("cutout", min_changed=0)(x, gen(0))
    assert int((before == x).flatten(1).all(1).sum()) > 10  # the bug: a mean patch over the background
    for seed in range(20):
        out = nda.build("cutout")(x, gen(seed))
        assert int(changed_pixels(x, out).min()) >= required_pixels(0.01, 12, 12)  # 2 pixels
        assert not bool((out == x).flatten(1).all(1).any())


def test_cutmix_never_returns_its_source_on_blank_patches():
    x = sparse_images(64, seed=2)
    before = nda.build("cutmix", min_changed=0)(x, gen(0))
    assert int((before == x).flatten(1).all(1).sum()) > 10
    for seed in range(20):
        out = nda.build("cutmix")(x, gen(seed))
        assert int(changed_pixels(x, out).min()) >= 2


def test_mixup_with_a_near_one_weight_is_redrawn():
    x = textured(32)
    t = nda.build("mixup", alpha=0.01, min_changed=0.5)  # gamma at the 0.999 clamp half of the time
    before = changed_pixels(x, nda.build("mixup", alpha=0.01, min_changed=0)(x, gen(0)))
    assert int((before < 72).sum()) > 5
    assert int(changed_pixels(x, t(x, gen(0))).min()) >= 72


def test_mixup_with_a_near_zero_weight_is_not_its_partner_in_disguise():
    """gamma at the 0.001 clamp gives the partner, a real image, labelled fake: counted too."""
    x = textured(32)
    partner_changed = []
    for min_changed in (0, 0.5):
        t = nda.build("mixup", alpha=0.01, min_changed=min_changed)
        params = t.sample(x.shape, gen(0), images=x)
        partner_changed.append(changed_pixels(x[params["partner"]], t.apply(x, params)))
    assert int((partner_changed[0] < 72).sum()) > 5
    assert int(partner_changed[1].min()) >= 72


def test_negatives_from_mnist_change_at_least_one_percent_of_the_pixels():
    from negaug import data

    x, _ = data.build("mnist5k", split="all").get_batch(torch.arange(640))
    for name in ("cutout", "cutmix"):
        g_before, g_after = gen(0), gen(0)
        before = torch.cat([nda.build(name, min_changed=0)(chunk, g_before) for chunk in x.split(64)])
        after = torch.cat([nda.build(name)(chunk, g_after) for chunk in x.split(64)])
        assert int((changed_pixels(x, before) < 11).sum()) >= 3  # 2-3% of MNIST negatives without the check
        assert int(changed_pixels(x, after).min()) >= 11  # ceil(1% of 32 x 32)


# ----------------------------------------------------------------------------- the rule, as a property
@settings(max_examples=60, deadline=None)
@given(st.sampled_from([*ENFORCING, "mixture"]), st.integers(2, 6), st.integers(2, 9), st.integers(2, 9),
       st.integers(0, 3), st.floats(0.0, 1.0), st.integers(0, 2**31))
def test_every_negative_changes_at_least_the_minimum(name, batch, height, width, strokes, share, seed):
    """Any image size, sparse or blank images, any minimum the fallback can meet (a count)."""
    x = sparse_images(batch, height, width, seed=seed % 1000, strokes=strokes)
    limit = min(nda.build(n).fallback_changes(height, width) for n in ENFORCING)
    minimum = round(share * limit)
    t = build(name, min_changed=minimum)
    params = t.sample(x.shape, gen(seed), images=x)
    out = t.apply(x, params)
    assert bool((changed_pixels(x, out) >= minimum).all())
    if "partner" in params:  # and of the partner, unless the image fell back (its partner unused)
        pairs = params["choice"] != ENFORCING.index("cutout") if name == "mixture" else torch.ones(batch, dtype=torch.bool)
        checked = pairs & ~flags(params)
        assert bool((changed_pixels(x[params["partner"]], out)[checked] >= minimum).all())


@pytest.mark.parametrize("name", [*ENFORCING, "mixture"])
@pytest.mark.parametrize("kind", ["sparse", "uniform", "textured"])
def test_final_params_replay_the_direct_call(name, kind):
    x = {"sparse": sparse_images(16), "uniform": torch.full((16, 2, 8, 8), 0.3), "textured": textured(16)}[kind]
    t = build(name)
    g_direct, g_sampled = gen(5), gen(5)
    out = t(x, g_direct)
    params = t.sample(x.shape, g_sampled, images=x)
    assert torch.equal(t.apply(x, params), out)
    assert torch.equal(g_direct.get_state(), g_sampled.get_state())  # the same draws, in the same order
    assert all(value.device == torch.device("cpu") and value.shape[0] == 16 for value in params.values())
    if kind == "uniform":  # nothing but the fallback changes a uniform image
        assert bool(flags(params).all()) and int(changed_pixels(x, out).min()) >= 1


@pytest.mark.parametrize("name", [*ENFORCING, "mixture"])
def test_images_that_pass_keep_their_first_draw(name):
    """Rows 0-7 textured, rows 8-15 blank: exactly the rows whose first-draw negative changes too
    few pixels are drawn again (a blank image paired with a textured one passes); the others keep
    the draw made without the option, and a mixture keeps every image's component."""
    x = torch.cat([textured(8), torch.full((8, 1, 12, 12), -1.0)])
    first = build(name, min_changed=0).sample(x.shape, gen(3))
    failed = changed_pixels(x, build(name, min_changed=0).apply(x, first)) < required_pixels(0.01, 12, 12)
    assert 0 < int(failed.sum()) and not bool(failed[:8].any())
    final = build(name).sample(x.shape, gen(3), images=x)
    for row in range(16):
        same = [torch.equal(final[key][row], value[row]) for key, value in first.items() if key != "choice"]
        assert (not all(same)) == bool(failed[row]), row
    assert torch.equal(final.get("choice", torch.zeros(1)), first.get("choice", torch.zeros(1)))
    assert not bool(flags(final)[~failed].any())


@pytest.mark.parametrize("name", [*ENFORCING, "mixture"])
def test_a_batch_that_passes_draws_exactly_as_without_the_option(name):
    x = textured(16)
    g_with, g_without = gen(7), gen(7)
    assert torch.equal(build(name)(x, g_with), build(name, min_changed=0)(x, g_without))
    assert torch.equal(g_with.get_state(), g_without.get_state())


def test_redrawn_partners_are_never_the_image_itself():
    t = nda.build("cutmix")
    x = torch.cat([torch.full((6, 1, 8, 8), -1.0), textured(2, 8, 8)])  # blank images fail with blank partners
    for seed in range(30):
        params = t.sample(x.shape, gen(seed), images=x)
        assert not bool((params["partner"] == torch.arange(8)).any())


# ----------------------------------------------------------------------------- exact values, hand-checked
def test_changed_pixels_counts_positions_beyond_half_an_8_bit_level():
    x = torch.zeros(1, 2, 1, 4)
    out = x.clone()
    out[0, 0, 0, 0] = 1 / 255  # at the tolerance: not counted
    out[0, 0, 0, 1] = 2 / 255  # beyond it
    out[0, 1, 0, 1] = 1.0  # the same position in the other channel: counted once
    out[0, 1, 0, 3] = -0.5
    assert CHANGE_TOLERANCE == 1 / 255
    assert changed_pixels(x, out).tolist() == [2]


@pytest.mark.parametrize("min_changed,height,width,expected", [
    (0.01, 32, 32, 11), (0.1, 3, 10, 3), (0.25, 8, 8, 16), (5, 32, 32, 5), (0, 32, 32, 0), (0.01, 2, 2, 1),
])
def test_required_pixels(min_changed, height, width, expected):
    assert required_pixels(min_changed, height, width) == expected


def test_pairing_transforms_count_the_fewer_changes_of_their_two_images():
    x = torch.stack([torch.full((1, 2, 2), -1.0), torch.full((1, 2, 2), 1.0)])
    out = torch.tensor([[-1.0, -1.0], [1.0, 0.0], [1.0, 1.0], [1.0, -1.0]]).view(2, 1, 2, 2)
    # image 0 changes 2 pixels of itself, 3 of its partner; image 1: 1 of itself, 3 of its partner
    params = {"partner": torch.tensor([1, 0]), "split_rows": torch.tensor([True, True])}
    assert nda.build("stitch").changed(x, out, params).tolist() == [2, 1]
    assert nda.build("stitch").changed(x, out[1:], params, torch.tensor([1])).tolist() == [1]
    assert nda.build("cutout").changed(x, out, {}).tolist() == [2, 1]  # its own image only


def test_opposite_moves_every_pixel_to_the_far_end():
    x = torch.tensor([-1.0, -0.5, -1e-6, 0.0, 0.25, 1.0])
    assert torch.equal(opposite(x), torch.tensor([1.0, 1.0, 1.0, -1.0, -1.0, -1.0]))


def test_redraw_partners_skips_the_row_itself():
    rows = torch.tensor([0, 3, 1])
    draws = torch.randint(3, (3,), generator=gen(0))  # the same draw, by hand: u -> u + (u >= row)
    expected = [int(u) + (int(u) >= int(r)) for u, r in zip(draws, rows)]
    assert redraw_partners(4, rows, gen(0)).tolist() == expected
    counts = torch.bincount(redraw_partners(4, torch.ones(3000, dtype=torch.long), gen(1)), minlength=4)
    assert counts[1] == 0 and all(900 <= int(c) <= 1100 for c in counts[[0, 2, 3]])  # 1000 expected


def test_cutout_fallback_fills_the_patch_with_the_opposite():
    x = torch.stack([torch.full((4, 4), 0.25), torch.full((4, 4), -1.0)]).unsqueeze(0)  # (1, 2, 4, 4)
    out = nda.build("cutout").apply(x, {"box": torch.tensor([[1, 1, 2, 2]]), "fallback": torch.tensor([True])})
    expected = x.clone()
    expected[0, 0, 1:3, 1:3] = -1.0  # 0.25 >= 0
    expected[0, 1, 1:3, 1:3] = 1.0  # -1 < 0
    assert torch.equal(out, expected)


def test_cutmix_fallback_takes_the_patch_from_the_opposite_image():
    x = torch.stack([torch.full((1, 4, 4), 0.5), torch.full((1, 4, 4), -0.25)])
    params = {"partner": torch.tensor([1, 0]), "box": torch.tensor([[0, 0, 2, 2], [2, 2, 2, 2]]),
              "fallback": torch.tensor([True, False])}
    out = nda.build("cutmix").apply(x, params)
    expected = x.clone()
    expected[0, 0, :2, :2] = -1.0  # the opposite of 0.5, not the partner's -0.25
    expected[1, 0, 2:, 2:] = 0.5  # the partner's pixels
    assert torch.equal(out, expected)


def test_mixup_fallback_mixes_with_the_opposite_image():
    x = torch.stack([torch.full((1, 1, 2), 0.5), torch.full((1, 1, 2), -0.25)])
    params = {"partner": torch.tensor([1, 0]), "gamma": torch.tensor([0.5, 0.25]), "fallback": torch.tensor([True, False])}
    out = nda.build("mixup").apply(x, params)
    assert torch.equal(out.flatten(1), torch.tensor([[-0.25, -0.25], [0.3125, 0.3125]]))  # 0.5*0.5+0.5*-1; .25*-.25+.75*.5


def test_mixup_fallback_sets_gamma_to_one_half():
    t = nda.build("mixup")
    x = torch.full((3, 1, 4, 4), 0.25)  # identical images: only the fallback changes them
    params = t.sample(x.shape, gen(0), images=x)
    assert params["fallback"].all() and torch.equal(params["gamma"], torch.full((3,), 0.5))
    assert torch.equal(t.apply(x, params), torch.full((3, 1, 4, 4), -0.375))  # 0.5 * 0.25 + 0.5 * -1


def test_stitch_fallback_stitches_the_opposite_half():
    x = torch.full((2, 1, 4, 4), 0.5)  # two identical images: a stitch of them is the image itself
    params = {"partner": torch.tensor([1, 0]), "split_rows": torch.tensor([True, False]), "fallback": torch.tensor([True, False])}
    out = nda.build("stitch").apply(x, params)
    expected = x.clone()
    expected[0, 0, 2:] = -1.0
    assert torch.equal(out, expected)  # image 1 (no fallback) is its source: what the fallback is for


def test_a_lone_bright_pixel_is_found_by_a_redraw_or_falls_back():
    """6x6 blank image with one bright pixel at (0, 0): a mean patch changes something only if the
    box starts at (0, 0) (sides 2..3, each start ~1/4.5 likely: ~5% a draw, 11 draws). Either the
    final box starts there and the patch holds its mean, or the image fell back to the opposite."""
    x = torch.full((1, 1, 6, 6), -1.0)
    x[0, 0, 0, 0] = 1.0
    t = nda.build("cutout", min_changed=1)
    outcomes = set()
    for seed in range(60):
        params = t.sample(x.shape, gen(seed), images=x)
        top, left, height, width = params["box"][0].tolist()
        expected = x.clone()
        if bool(params.get("fallback", torch.tensor([False]))[0]):
            expected[0, 0, top:top + height, left:left + width] = opposite(x[0, 0, top:top + height, left:left + width])
            outcomes.add("fallback")
        else:
            assert (top, left) == (0, 0)
            expected[0, 0, :height, :width] = (2 - height * width) / (height * width)  # (1 - (n - 1)) / n
            outcomes.add("found")
        torch.testing.assert_close(t.apply(x, params), expected, rtol=0, atol=1e-6)
    assert outcomes == {"fallback", "found"}


# ----------------------------------------------------------------------------- options
@pytest.mark.parametrize("value", [-1, 1.0, 1.5, -0.1, float("nan"), "1%", True, None])
def test_bad_min_changed_is_refused(value):
    with pytest.raises(ValueError, match="min_changed"):
        nda.build("cutout", min_changed=value)


def test_min_changed_beyond_what_the_fallback_guarantees_is_refused():
    # the smallest patch of a 32x32 image is 11 x 11 = 121 pixels
    nda.check_compatible({"name": "cutout", "min_changed": 121}, 32)
    with pytest.raises(ValueError, match=r"min_changed=122 asks for 122 changed pixels of a 32x32 image.*at most 121"):
        nda.check_compatible({"name": "cutout", "min_changed": 122}, 32)
    with pytest.raises(ValueError, match="cutmix min_changed=0.2"):
        nda.check_compatible({"name": "mixture", "transforms": ["jigsaw", {"name": "cutmix", "min_changed": 0.2}]}, 32)
    with pytest.raises(ValueError, match="stitch min_changed=0.6"):
        nda.build("stitch", min_changed=0.6)(textured(2, 8, 8), gen(0))
    nda.check_compatible({"name": "mixup", "min_changed": 0.99}, 32)


def test_defaults_and_options():
    for name in ENFORCING:
        assert nda.build(name).min_changed == 0.01 and nda.build(name).options()["min_changed"] == 0.01
        assert nda.build(name, min_changed=5).min_changed == 5
    assert "min_changed" not in nda.build("jigsaw").options()
    assert nda.build("jigsaw").requires_change() is False
    assert nda.build("mixture").requires_change() and not nda.build("mixture", transforms=["jigsaw", "hflip"]).requires_change()
    assert not nda.positive("cutout").requires_change()  # positive augmentation needs no minimum


def test_sample_refuses_images_of_another_shape():
    with pytest.raises(ValueError, match=r"images of shape \(4, 1, 8, 8\) for a batch of shape \(5, 1, 8, 8\)"):
        nda.build("cutout").sample((5, 1, 8, 8), gen(0), images=textured(4, 8, 8))


# ----------------------------------------------------------------------------- draws that must not change
def test_jigsaw_draws_exactly_as_negaug_0_2():
    """The default preset trains bit-identically with the previous release only if jigsaw draws
    the same permutations and leaves the generator in the same state (values from main 6a908ea)."""
    g = gen(0)
    x = torch.arange(6 * 2 * 4 * 4, dtype=torch.float32).view(6, 2, 4, 4) / 96 - 1
    t = nda.build("jigsaw")
    out = t(x, g)
    assert torch.rand(1, generator=g).item() == 0.4900934100151062
    perm = [[3, 1, 0, 2], [0, 3, 2, 1], [0, 3, 2, 1], [1, 3, 2, 0], [2, 1, 0, 3], [0, 2, 3, 1]]
    assert t.sample(x.shape, gen(0))["perm"].tolist() == perm
    assert torch.equal(out, t.apply(x, {"perm": torch.tensor(perm)}))
    g = gen(1)
    assert nda.build("jigsaw", k=3).sample((3, 1, 6, 6), g)["perm"].tolist() == [
        [0, 5, 3, 1, 2, 6, 4, 8, 7], [5, 6, 8, 2, 4, 0, 1, 7, 3], [7, 8, 0, 1, 6, 5, 4, 2, 3]]
    assert torch.rand(1, generator=g).item() == 0.9980247616767883


@pytest.mark.parametrize("name,expected,next_uniform", [
    ("cutout", {"box": [[3, 6, 6, 6], [1, 2, 5, 6], [3, 1, 5, 4], [3, 3, 5, 5]]}, 0.17591017484664917),
    ("cutmix", {"partner": [3, 2, 0, 1], "box": [[3, 1, 4, 4], [2, 8, 5, 4], [7, 4, 5, 4], [3, 8, 4, 4]]}, 0.24365824460983276),
])
def test_first_draws_are_those_of_negaug_0_2(name, expected, next_uniform):
    """Values from main 6a908ea: only rows that fail the minimum are drawn again."""
    g = gen(0)
    params = nda.build(name).sample((4, 1, 12, 12), g)
    assert {key: value.tolist() for key, value in params.items()} == expected
    assert torch.rand(1, generator=g).item() == next_uniform
