"""NDA on clips (B, T, C, H, W): the paper's video rule, "the same transformation on all frames"
(Section 6), for every registered transform; and image batches unchanged by it."""
from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from negaug import nda

ALL = nda.names()
FRAMES = 3


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def image_source(shape=(6, 3, 8, 8)) -> torch.Tensor:
    return torch.linspace(-1, 1, math.prod(shape)).view(shape)


def make(name: str, **options) -> nda.NDATransform:
    if name == "other_data":
        options.setdefault("source", image_source())
    return nda.build(name, **options)


def images(batch=6, channels=3, height=8, width=8, seed=0, dtype=torch.float32) -> torch.Tensor:
    return (torch.rand(batch, channels, height, width, generator=gen(seed)) * 2 - 1).to(dtype)


def clips(batch=6, frames=FRAMES, seed=0, dtype=torch.float32) -> torch.Tensor:
    """Clips whose frames all differ (frame t is a different random image)."""
    return torch.stack([images(batch, seed=seed + 10 * t, dtype=dtype) for t in range(frames)], 1)


# ----------------------------------------------------------------------------- the video rule
@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("seed", [0, 1])
def test_a_still_clip_gives_the_negative_of_its_frame_on_every_frame(name, dtype, seed):
    """T identical frames -> T identical negative frames, each the negative the frame alone gets
    from the same generator state (one draw per clip, the same draw as for one image)."""
    x = images(seed=seed, dtype=dtype)
    x[2] = 0.5  # a uniform image: cutout/cutmix/mixup/stitch redraw and fall back on it
    clip = x.unsqueeze(1).expand(-1, FRAMES, -1, -1, -1)
    out = make(name)(clip, generator=gen(seed))
    expected = make(name)(x, generator=gen(seed))
    assert out.shape == clip.shape and out.dtype == dtype
    for t in range(FRAMES):
        assert_close(out[:, t], expected, rtol=0, atol=0)


@pytest.mark.parametrize("name", ALL)
def test_a_clip_equals_its_frames_transformed_one_by_one_with_the_same_params(name):
    clip = clips()
    t = make(name)
    params = t.sample(clip.shape, gen(4), images=clip)
    out = t.apply(clip, params)
    assert out.shape == clip.shape
    for frame in range(FRAMES):
        assert_close(out[:, frame], t.apply(clip[:, frame], params), rtol=0, atol=0)
    assert torch.equal(t(clip, generator=gen(4)), out)  # the final params replay the direct call


@pytest.mark.parametrize("name", ["jigsaw", "cutout", "gaussian_noise", "random_crop", "mixture"])
def test_different_clips_get_different_draws(name):
    """One draw per clip, not one per batch: the negatives of a batch of copies of a clip differ.
    (Pairing transforms fall back on copies, flips with p=1 and other_data do not draw per image.)"""
    clip = clips(batch=1).expand(8, -1, -1, -1, -1)
    out = make(name)(clip, generator=gen(0))
    assert any(not torch.equal(out[0], out[i]) for i in range(1, 8))


def test_shapes_other_than_images_and_clips_are_refused():
    for shape in [(4, 8, 8), (2, 2, 2, 3, 8, 8), (2, 0, 3, 8, 8)]:
        for name in ALL:
            with pytest.raises(ValueError):
                make(name)(torch.zeros(shape), generator=gen(0))


def test_params_of_a_clip_batch_are_those_of_its_frame_shape():
    for name in ALL:
        t = make(name)
        by_clip = t.sample((6, FRAMES, 3, 8, 8), gen(2))
        by_frame = t.sample((6, 3, 8, 8), gen(2))
        assert by_clip.keys() == by_frame.keys()
        assert all(torch.equal(by_clip[key], by_frame[key]) for key in by_clip)


def test_jigsaw_moves_the_same_tiles_in_every_frame():
    clip = torch.arange(2 * 2 * 1 * 4 * 4, dtype=torch.float32).view(2, 2, 1, 4, 4)
    perm = torch.tensor([[3, 2, 1, 0], [1, 0, 3, 2]])
    out = nda.build("jigsaw").apply(clip, {"perm": perm})
    # clip 0, frame 1: tiles reversed (tile 3 = rows 2-3, cols 2-3 first)
    assert out[0, 1, 0].tolist() == [[26, 27, 24, 25], [30, 31, 28, 29], [18, 19, 16, 17], [22, 23, 20, 21]]
    # clip 1, frame 0: left and right tiles swapped
    assert out[1, 0, 0].tolist() == [[34, 35, 32, 33], [38, 39, 36, 37], [42, 43, 40, 41], [46, 47, 44, 45]]


# ------------------------------------------------------------------- per-channel rules on clips
def test_cutout_fills_each_frame_with_that_frames_own_patch_mean():
    clip = torch.arange(1 * 2 * 2 * 6 * 6, dtype=torch.float64).view(1, 2, 2, 6, 6) / 144 - 1
    box = torch.tensor([[1, 2, 2, 3]])  # rows 1-2, cols 2-4
    out = nda.build("cutout").apply(clip, {"box": box})
    for frame in range(2):
        for channel in range(2):
            patch = clip[0, frame, channel, 1:3, 2:5]
            assert torch.equal(out[0, frame, channel, 1:3, 2:5], patch.mean().expand(2, 3))
    outside = torch.ones(6, 6, dtype=torch.bool)
    outside[1:3, 2:5] = False
    assert torch.equal(out[..., outside], clip[..., outside])


def test_gaussian_noise_adds_the_same_noise_image_to_every_frame():
    clip = torch.zeros(2, FRAMES, 3, 8, 8)
    t = nda.build("gaussian_noise", std=0.05)
    params = t.sample(clip.shape, gen(0))
    assert params["noise"].shape == (2, 3, 8, 8)
    out = t.apply(clip, params)
    for frame in range(FRAMES):
        assert_close(out[:, frame], (0.05 * params["noise"]).clamp(-1, 1), rtol=0, atol=0)


def test_other_data_gives_still_clips_from_images_and_whole_clips_from_clips():
    clip = clips(batch=4)
    still = nda.build("other_data", source=image_source())
    params = still.sample(clip.shape, gen(0))
    out = still.apply(clip, params)
    for frame in range(FRAMES):
        assert torch.equal(out[:, frame], image_source()[params["index"]])
    source_clips = clips(batch=5, seed=50) * 0.5
    whole = nda.build("other_data", source=source_clips)
    params = whole.sample(clip.shape, gen(0))
    assert torch.equal(whole.apply(clip, params), source_clips[params["index"]])
    with pytest.raises(ValueError, match="source holds samples of shape"):
        whole(clips(batch=4, frames=FRAMES + 1), generator=gen(0))  # another clip length
    with pytest.raises(ValueError, match="source holds samples of shape"):
        whole(images(batch=4), generator=gen(0))
    nda.check_compatible(whole, image_size=8, channels=3)


def test_min_changed_counts_positions_changed_in_some_frame():
    """A clip whose first frame is uniform: cutout changes nothing there, but the second frame
    changes, so the clip keeps its first draw (the draw a textured image alone would keep), where
    the uniform frame alone falls back."""
    textured = images(batch=4)
    clip = torch.stack([torch.full_like(textured, 0.25), textured], 1)
    t = nda.build("cutout")
    params = t.sample(clip.shape, gen(0), images=clip)
    assert "fallback" not in params
    assert torch.equal(params["box"], t.sample(textured.shape, gen(0), images=textured)["box"])
    assert "fallback" in t.sample(textured.shape, gen(0), images=clip[:, 0])
    assert torch.equal(t.changed(clip.flatten(1, 2), t.apply(clip, params).flatten(1, 2), params),
                       t.changed(textured, t.apply(textured, params), params))


def test_clips_of_uniform_frames_fall_back_on_every_frame_alike():
    """Three copies of a clip whose frames are uniform (0.25, 0.15, 0.05): every negative changes
    nothing, so every clip falls back, and the fallback changes the same positions of every frame."""
    clip = (0.25 - 0.1 * torch.arange(FRAMES)).view(1, FRAMES, 1, 1, 1).expand(3, FRAMES, 1, 8, 8)
    for name in ("cutout", "cutmix", "mixup", "stitch"):
        t = nda.build(name)
        params = t.sample(clip.shape, gen(0), images=clip)
        changed = t.apply(clip, params) != clip  # (3, T, 1, 8, 8)
        assert bool(params["fallback"].all()), name
        assert bool(changed[:, 0].flatten(1).sum(1).ge(9).all()), name  # at least the smallest patch, 3x3
        for frame in range(1, FRAMES):
            assert torch.equal(changed[:, frame], changed[:, 0]), name


def test_clip_gradient_reaches_every_frame():
    clip = clips(batch=3, dtype=torch.float64).mul(0.5).requires_grad_()
    t = nda.build("mixup")
    params = t.sample(clip.shape, gen(0))
    assert torch.autograd.gradcheck(lambda inp: t.apply(inp, params), (clip,), eps=1e-6, atol=1e-5, fast_mode=True)


# ----------------------------------------------------------- image batches: unchanged by clips
# Checksums (sum, position-weighted sum in float64) of each transform's negatives of
# `reference_images()` with generator seed 7, computed with negaug 0.3.0 (commit e284723) before
# clips were supported. Clip support must leave image batches bit-identical: the default training
# presets keep training bit-identically. (Bit-identity itself was checked against that commit on
# 252 cases: every transform, 6 seeds, 4 shapes and float32/float64/bfloat16.)
IMAGE_CHECKSUMS = {
    "cutmix": (-27.667243888136, -171.11951398869112),
    "cutout": (-108.08340295520611, -210.21045876704295),
    "gaussian_noise": (-44.46566834926489, -189.99803476818073),
    "hflip": (-48.08340260386467, -194.39077313787314),
    "jigsaw": (-48.08340260386467, -194.75060516982657),
    "mixture": (-182.20764211122878, -182.4058993750536),
    "mixup": (-70.86031328514218, -154.05245895500735),
    "other_data": (-64.05560588347726, -69.36591284029359),
    "random_crop": (-58.08141476288438, -200.95259167339503),
    "stitch": (-45.581230610609055, -145.681283608829),
    "vflip": (-48.08340260386467, -195.35877198539978),
}


def reference_images() -> torch.Tensor:
    x = torch.linspace(-1, 1, 6 * 3 * 8 * 8).view(6, 3, 8, 8).flip(0).roll(17, dims=-1).contiguous()
    x[1] = 0.25  # a uniform image: min_changed redraws, then falls back
    return x


@pytest.mark.parametrize("name", ALL)
def test_image_negatives_are_unchanged_by_clip_support(name):
    assert set(IMAGE_CHECKSUMS) == set(ALL), "a new transform: add its checksum"
    t = nda.build(name, source=image_source()) if name == "other_data" else nda.build(name)
    out = t(reference_images(), generator=gen(7)).double()
    weights = torch.arange(out.numel(), dtype=torch.float64).view(out.shape) / out.numel()
    checksum = (out.sum().item(), (out * weights).sum().item())
    assert checksum == pytest.approx(IMAGE_CHECKSUMS[name], rel=1e-12, abs=1e-9)


def test_positive_augmentation_of_clips_uses_one_draw_per_clip():
    clip = clips()
    pda = nda.positive("jigsaw", p=0.5)
    params = pda.sample(clip.shape, gen(0))
    out = pda.apply(clip, params)
    for frame in range(FRAMES):
        assert torch.equal(out[:, frame], pda.apply(clip[:, frame], params))
    kept = ~params["apply"]
    assert bool(kept.any()) and torch.equal(out[kept], clip[kept])
