"""Tests of negaug.anomaly: detection metrics, scoring, CIFAR-10-C style corruptions, OOD sets,
the evaluation protocol, run comparison, histograms and `negaug anomaly`."""
from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from torch import nn
from torch.testing import assert_close

from negaug import anomaly
from negaug.anomaly import corruptions
from negaug.anomaly.corruptions import _ops, blur

NAMES = corruptions.names()
FN = {name: corruptions.CORRUPTIONS.build(name).fn for name in NAMES}


def level(x: torch.Tensor) -> float:
    """Mean absolute value in 8-bit levels of an image difference in [-1, 1] units."""
    return float(x.abs().mean() * 127.5)


@pytest.fixture(scope="module")
def photos() -> torch.Tensor:
    """(4, 3, 32, 32) natural photo crops in [-1, 1] on 8-bit levels (scikit-image's bundled photos)."""
    from skimage import data, transform

    crops = [data.astronaut()[:256, 128:384], data.coffee()[:256, 200:456], data.chelsea()[:256, 100:356],
             data.astronaut()[256:, 256:]]
    small = np.stack([transform.resize(c / 255.0, (32, 32), anti_aliasing=True) for c in crops])
    x = torch.tensor(small, dtype=torch.float32).permute(0, 3, 1, 2)
    return torch.round(x * 255) / 127.5 - 1


@pytest.fixture(scope="module")
def grey(photos) -> torch.Tensor:
    return _ops.luminance(photos)


def tiny_discriminator(channels: int = 3) -> nn.Module:
    """A small untrained conv D with BatchNorm (so train-mode scoring would depend on the batch)."""

    class TinyD(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(channels, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4),
                                      nn.LeakyReLU(0.2), nn.Conv2d(4, 4, 3, stride=2, padding=1))
            self.head = nn.Linear(4, 1)

        def forward(self, x, y=None):
            out = self.head(self.body(x).mean(dim=(2, 3)))[:, 0]
            return out if y is None else out + y.float()

    torch.manual_seed(0)
    d = TinyD()
    d.body[1].running_mean.uniform_(-0.5, 0.5)  # non-trivial running statistics
    return d


class RoughnessD(nn.Module):
    """D(x) = -mean |x - blur(x)|: smooth images score high, noisy ones low."""

    def __init__(self):
        super().__init__()
        self.blur = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)

    def forward(self, x, y=None):
        return -(x - self.blur(x)).abs().mean(dim=(1, 2, 3))


# --------------------------------------------------------------------------------------------
# detection metrics


def test_perfect_separation():
    m = anomaly.detection_metrics(torch.tensor([2.0, 3.0, 4.0]), torch.tensor([0.0, 1.0]))
    assert m == {"auroc": 1.0, "aupr": 1.0, "fpr_at_95_tpr": 0.0}


def test_reversed_separation():
    m = anomaly.detection_metrics(torch.tensor([0.0, 1.0]), torch.tensor([2.0, 3.0, 4.0]))
    assert m["auroc"] == 0.0 and m["fpr_at_95_tpr"] == 1.0


def test_hand_computed_example():
    # pairs in > out: 0.9>{0.5,0.1}, 0.8>{0.5,0.1}, 0.4>0.1: 5 of 6. Ranking in,in,out,in,out:
    # precision at the in-items 1, 1, 3/4 -> AP 11/12. 95% of 3 in-items -> threshold 0.4 -> 1 of 2 OOD.
    m = anomaly.detection_metrics(torch.tensor([0.9, 0.8, 0.4]), torch.tensor([0.5, 0.1]))
    assert m["auroc"] == pytest.approx(5 / 6, abs=1e-12)
    assert m["aupr"] == pytest.approx(11 / 12, abs=1e-12)
    assert m["fpr_at_95_tpr"] == 0.5


def test_fpr_threshold_keeps_exactly_95_percent():
    scores_in = torch.arange(1.0, 21.0)  # 19 of 20 kept -> threshold 2
    assert anomaly.fpr_at_tpr(scores_in, torch.tensor([0.0, 1.5, 2.0, 3.0])) == 0.5
    assert anomaly.fpr_at_tpr(scores_in, torch.tensor([1.99])) == 0.0
    assert anomaly.fpr_at_tpr(scores_in, torch.tensor([1.0])) == 0.0
    assert anomaly.fpr_at_tpr(scores_in, torch.tensor([1.0]), tpr=1.0) == 1.0


def test_ties_give_half():
    m = anomaly.detection_metrics(torch.ones(3), torch.ones(2))
    assert m["auroc"] == 0.5 and m["fpr_at_95_tpr"] == 1.0


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(-5, 5), min_size=1, max_size=25), st.lists(st.integers(-5, 5), min_size=1, max_size=25))
def test_metrics_match_brute_force(ins, outs):
    s_in, s_out = np.array(ins, float), np.array(outs, float)
    m = anomaly.detection_metrics(torch.tensor(s_in), torch.tensor(s_out))
    wins = (s_in[:, None] > s_out[None]).sum() + 0.5 * (s_in[:, None] == s_out[None]).sum()
    assert m["auroc"] == pytest.approx(wins / (s_in.size * s_out.size), abs=1e-12)
    # the highest threshold with TPR >= 95% gives the lowest FPR among all such thresholds
    candidates = [t for t in np.unique(np.r_[s_in, s_out]) if np.mean(s_in >= t) >= 0.95]
    assert m["fpr_at_95_tpr"] == pytest.approx(min(np.mean(s_out >= t) for t in candidates), abs=1e-12)
    swapped = anomaly.detection_metrics(torch.tensor(s_out), torch.tensor(s_in))
    assert swapped["auroc"] == pytest.approx(1 - m["auroc"], abs=1e-12)


def test_metrics_reject_nan_and_empty():
    with pytest.raises(ValueError, match="NaN"):
        anomaly.detection_metrics(torch.tensor([1.0, float("nan")]), torch.tensor([0.0]))
    with pytest.raises(ValueError, match="both sides"):
        anomaly.detection_metrics(torch.tensor([1.0]), torch.tensor([]))


# --------------------------------------------------------------------------------------------
# scoring


def test_score_is_batch_size_independent_and_eval_mode(photos):
    d = tiny_discriminator()
    d.train()
    whole = anomaly.score(d, photos, batch_size=64)
    assert whole.shape == (4,) and whole.dtype == torch.float32 and not whole.requires_grad
    for batch_size in (1, 3):
        assert_close(anomaly.score(d, photos, batch_size=batch_size), whole)
    assert d.training  # mode restored
    with torch.no_grad():
        assert_close(whole, d.eval()(photos))


def test_score_passes_labels_and_checks_inputs(photos):
    d = tiny_discriminator()
    labels = torch.tensor([0, 1, 2, 3])
    assert_close(anomaly.score(d, photos, labels, batch_size=3) - anomaly.score(d, photos), labels.float())
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        anomaly.score(d, (photos + 1) * 127.5)
    with pytest.raises(ValueError, match="batch_size"):
        anomaly.score(d, photos, batch_size=0)


# --------------------------------------------------------------------------------------------
# corruptions: the generic suite, over every registered corruption and severity


def test_registry_is_cifar10c_without_frost():
    cifar10c = {"gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
                "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate",
                "jpeg_compression", "speckle_noise", "gaussian_blur", "spatter", "saturate"}
    assert set(NAMES) == cifar10c - {"frost"} and len(cifar10c) == 19
    with pytest.raises(ValueError, match="frost photographs"):
        anomaly.corrupt(torch.zeros(1, 3, 8, 8), "frost")


@pytest.mark.parametrize("name", NAMES)
def test_corruption_contract(name, photos):
    before = torch.get_rng_state()
    for severity in corruptions.SEVERITIES:
        out = anomaly.corrupt(photos, name, severity, torch.Generator().manual_seed(3))
        assert out.shape == photos.shape and out.dtype == photos.dtype
        assert out.min() >= -1 and out.max() <= 1
        assert_close((out + 1) * 127.5, torch.round((out + 1) * 127.5), atol=1e-4, rtol=0)  # 8-bit levels
        again = anomaly.corrupt(photos, name, severity, torch.Generator().manual_seed(3))
        assert torch.equal(out, again)
        assert level(out - photos) > 0.5, f"{name} at severity {severity} barely changes the image"
    assert torch.equal(torch.get_rng_state(), before)  # the global RNG is never used


@pytest.mark.parametrize("name", NAMES)
def test_corruption_on_grey_images(name, grey):
    if name == "saturate":
        with pytest.raises(ValueError, match="colour"):
            anomaly.corrupt(grey, name, 5)
        return
    out = anomaly.corrupt(grey, name, 5, torch.Generator().manual_seed(0))
    assert out.shape == grey.shape and out.min() >= -1 and out.max() <= 1 and level(out - grey) > 0.5


MONOTONE = ("brightness", "contrast", "defocus_blur", "fog", "gaussian_blur", "gaussian_noise", "impulse_noise",
            "jpeg_compression", "motion_blur", "pixelate", "shot_noise", "snow", "speckle_noise", "zoom_blur")


def distortions(name: str, images: torch.Tensor) -> list[float]:
    return [level(anomaly.corrupt(images, name, s, torch.Generator().manual_seed(0)) - images)
            for s in corruptions.SEVERITIES]


@pytest.mark.parametrize("name", MONOTONE)
def test_distortion_grows_with_severity(name, photos):
    # snow 2 -> 3 (sparser but larger flakes) grows by ~1.5 levels on average, less than the
    # spread of one draw on 4 images: 8 draws per photo
    d = distortions(name, photos.repeat(8, 1, 1, 1) if name == "snow" else photos)
    # motion blur 3 -> 4 only lengthens the kernel by taps of weight ~1e-10: equal, hence the slack
    assert all(b >= a - 0.02 for a, b in zip(d, d[1:])), d
    assert d[-1] > d[0] + 1, d


def test_distortion_order_of_non_monotone_constants(photos):
    """The benchmark's constants are not ordered for these; check the order they do imply."""
    glass = distortions("glass_blur", photos)  # severities 4-5 scramble twice, 1-3 once
    assert min(glass[3:]) > max(glass[:3]) + 2, glass
    sat = distortions("saturate", photos)  # saturation x0.3, x0.1, x1.5, x2+0.1, x2.5+0.2
    assert sat[1] > sat[0] > sat[2] and sat[2] < sat[3] < sat[4], sat
    spatter = distortions("spatter", photos)  # water drops at 1-3, mud at 4-5
    assert spatter[0] <= spatter[1] <= spatter[2] and spatter[3] <= spatter[4], spatter
    assert set(MONOTONE) | {"glass_blur", "saturate", "spatter", "elastic_transform"} == set(NAMES)


def test_elastic_severity_1_is_the_affine_warp_alone(photos):
    from negaug.anomaly.corruptions import _opencv, digital

    levels = torch.round((photos.double() + 1) * 127.5)
    g = torch.Generator().manual_seed(5)
    jitter, fields = torch.rand((4, 3, 2), generator=g, dtype=torch.float64), torch.rand((2, 4, 32, 32), generator=g)
    out = digital.apply_elastic_transform(levels, 1, jitter, fields.double())
    moves = (-2.56 + (2.56 + 2.56) * jitter).float()
    warp = _opencv.warp_affine(levels.float() / 255, _opencv.affine_from_points(digital.affine_points((32, 32)), moves))
    assert torch.equal(out, warp.clamp(0, 1) * 255)  # zero displacement reads every pixel back exactly


def test_severity_is_checked(photos):
    for severity in (0, 6, 2.5, True):
        with pytest.raises(ValueError, match="severity"):
            anomaly.corrupt(photos, "contrast", severity)


# exact values on tiny inputs and against the reference libraries


def test_brightness_and_contrast_hand_formulas():
    """The corruptions take 8-bit levels and return the benchmark's 0..255 values before its
    truncation."""
    levels = torch.tensor([[51.0, 0, 229.5], [102, 0, 127.5], [153, 0, 25.5]], dtype=torch.float64).view(1, 3, 1, 3)
    g = torch.Generator()
    # severity 1 adds 0.05 to V = max: (0.2, 0.4, 0.6) * 0.65 / 0.6; black -> grey 0.05
    expected = torch.tensor([[0.2 * 0.65 / 0.6, 0.05, 0.9 * 0.95 / 0.9], [0.4 * 0.65 / 0.6, 0.05, 0.5 * 0.95 / 0.9],
                             [0.65, 0.05, 0.1 * 0.95 / 0.9]], dtype=torch.float64).view(1, 3, 1, 3) * 255
    assert_close(FN["brightness"](levels, 1, g), expected)
    assert_close(FN["brightness"](levels, 5, g)[0, :, 0, 2], torch.tensor([1.0, 0.5 / 0.9, 0.1 / 0.9], dtype=torch.float64) * 255)
    grey = torch.tensor([51.0, 153.0], dtype=torch.float64).view(1, 1, 1, 2)  # 0.2, 0.6: mean 0.4; severity 5 keeps 15% of the contrast
    assert_close(FN["contrast"](grey, 5, g), torch.tensor([0.37, 0.43], dtype=torch.float64).view(1, 1, 1, 2) * 255)
    assert_close(FN["brightness"](grey, 5, g), torch.tensor([0.5, 0.9], dtype=torch.float64).view(1, 1, 1, 2) * 255)


def test_pixelate_tiny_input_is_pils_block_means():
    """Severity 5: 4 px -> int(4 * 0.65) = 2 -> 4. Pillow rounds half up after its horizontal
    and again after its vertical pass, so a 2x2 block of mean 42.5 becomes 43, not 42 or 43.5."""
    levels = torch.arange(16.0, dtype=torch.float64).view(1, 1, 4, 4) * 17  # rows 0 17 34 51 | 68 .. | .. | 204 .. 255
    # horizontal: (0 + 17) / 2 = 8.5 -> 9, 42.5 -> 43, 76.5 -> 77, ...; vertical: (9 + 77) / 2 = 43, ...
    blocks = torch.tensor([[43.0, 77.0], [179.0, 213.0]], dtype=torch.float64)
    expected = blocks.repeat_interleave(2, 0).repeat_interleave(2, 1).view(1, 1, 4, 4)
    assert torch.equal(FN["pixelate"](levels, 5, torch.Generator()), expected)
    pil = Image.fromarray(levels[0, 0].numpy().astype(np.uint8)).resize((2, 2), Image.BOX).resize((4, 4), Image.BOX)
    assert np.array_equal(np.asarray(pil), expected[0, 0].numpy())


@pytest.fixture(scope="module")
def random_uint8() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)


def as_unit(u8: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(u8).permute(0, 3, 1, 2).float() / 255


def test_clipped_zoom_matches_scipy_zoom(random_uint8):
    from scipy.ndimage import zoom

    image = random_uint8[0].astype(np.float32) / 255
    for factor in (1.0, 1.02, 1.06, 1.13, 1.25, 1.75, 2.25):
        crop = math.ceil(32 / factor)
        top = (32 - crop) // 2
        zoomed = zoom(image[top:top + crop, top:top + crop], (factor, factor, 1), order=1)
        trim = (zoomed.shape[0] - 32) // 2
        reference = zoomed[trim:trim + 32, trim:trim + 32]
        ours = _ops.clipped_zoom(as_unit(random_uint8[:1]), factor)[0].permute(1, 2, 0).numpy()
        assert np.array_equal(ours, reference)  # scipy's float64 arithmetic, cast to float32


def test_glass_scramble_equals_the_benchmarks_sequential_sweep():
    """The benchmark's loop 'swaps' NumPy views (so it copies); our gather must give the same."""
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    dy, dx = rng.integers(-1, 1, (8, 8)), rng.integers(-1, 1, (8, 8))
    swept = image.copy()
    for h in range(8 - 1, 1, -1):
        for w in range(8 - 1, 1, -1):
            h2, w2 = h + dy[h, w], w + dx[h, w]
            swept[h, w], swept[h2, w2] = swept[h2, w2], swept[h, w]
    mask = np.zeros((8, 8), int)
    mask[2:, 2:] = 1
    ours = blur.scramble(torch.from_numpy(image).permute(2, 0, 1)[None].float(),
                         torch.from_numpy(dy * mask)[None], torch.from_numpy(dx * mask)[None])
    assert np.array_equal(ours[0].permute(1, 2, 0).numpy(), swept)


def test_motion_blur_of_an_impulse_is_the_one_sided_kernel():
    x = torch.zeros(2, 1, 1, 12)
    x[:, 0, 0, 5] = 1.0
    out = _ops.motion_blur(x, radius=2, sigma=1.0, angle_deg=torch.tensor([0.0, 180.0]))
    weights = torch.exp(-torch.arange(5.0) ** 2 / 2)
    weights = weights / weights.sum()
    # angle 0: tap i reads x[w + i], so pixel 5 - i receives weight i; angle 180 mirrors it
    assert_close(out[0, 0, 0, 1:6], weights.flip(0))
    assert_close(out[1, 0, 0, 5:10], weights)
    assert out[0, 0, 0, 6:].abs().max() == 0 and out[1, 0, 0, :5].abs().max() == 0


def test_defocus_kernel_is_normalised_and_symmetric():
    for radius, alias in ((0.3, 0.4), (1, 0.2), (1.5, 0.1)):
        kernel = blur.disk_kernel(radius, alias)
        assert_close(kernel.sum(), torch.tensor(1.0))
        assert_close(kernel, kernel.flip(0)) and assert_close(kernel, kernel.t())
    assert blur.disk_kernel(1, 0.2).shape == (5, 5)  # a plus-shaped disk, anti-aliased one pixel out
    box = blur.disk_kernel(1.5, 0.1)  # radius 1.5 covers the 3x3 square; sigma 0.1 barely blurs it
    centre = box.shape[0] // 2
    assert_close(box[centre - 1:centre + 2, centre - 1:centre + 2], torch.full((3, 3), 1 / 9), atol=1e-6, rtol=0)


def test_spatter_building_blocks():
    from negaug.anomaly.corruptions import _opencv

    x = torch.tensor([[0, 0, 10, 20]]).view(1, 1, 4)
    assert _opencv.equalize_hist(x).tolist() == [[[0, 0, 128, 255]]]  # count above level 0 times 255 / (4 - 2)
    step = torch.zeros(1, 8, 8)
    step[:, :, 4:] = 200
    edges = _opencv.canny(step, 50, 150)
    assert edges[0, :, 3].all() and edges.sum() == 8  # one column: non-maximum suppression keeps the left side
    line = torch.zeros(2, 1, 5, dtype=torch.bool)
    line[0, 0, 0] = True
    dist = _opencv.chamfer_distance(line)
    assert dist[0, 0].tolist() == [0, 1, 2, 3, 4] and (dist[1] > 1e38).all()  # no zero pixel: never image 0's
    shapes = _ops.plasma_shapes(3, 16)
    g = torch.Generator().manual_seed(0)
    plasma = _ops.plasma_fractal([torch.rand(s, generator=g, dtype=torch.float64) for s in shapes], 16, 2.0)
    assert plasma.shape == (3, 16, 16) and len(shapes) == 12  # 4 levels of 3 draws
    assert_close(plasma.amin(dim=(1, 2)), torch.zeros(3, dtype=torch.float64))
    assert_close(plasma.amax(dim=(1, 2)), torch.ones(3, dtype=torch.float64))


# --------------------------------------------------------------------------------------------
# OOD sets


def test_ood_names_and_plans():
    names = anomaly.ood_names()
    assert {f"corruption/{n}" for n in NAMES} | {"noise/uniform", "noise/gaussian", "nda/jigsaw"} <= set(names)
    assert "corruption/frost" not in names
    plan = anomaly.plan_ood("corruption/all, noise/uniform,corruption/fog", num_channels=1)
    assert plan.names[:len(NAMES) - 1] == [f"corruption/{n}" for n in NAMES if n != "saturate"]
    assert plan.names[-1] == "noise/uniform" and len(plan.names) == len(NAMES)  # fog not repeated
    assert set(plan.skipped) == {"corruption/frost", "corruption/saturate"}
    with pytest.raises(ValueError, match="did you mean 'corruption/fog'"):
        anomaly.plan_ood("corruption/fgo")
    with pytest.raises(ValueError, match="frost"):
        anomaly.plan_ood("corruption/frost")
    with pytest.raises(ValueError, match="colour"):
        anomaly.plan_ood("corruption/saturate", num_channels=1)
    with pytest.raises(ValueError, match="no OOD set"):
        anomaly.plan_ood(" , ")
    assert "nda/other_data" in anomaly.plan_ood("nda/all").skipped


def test_build_ood_corruption_is_seeded(photos):
    out = anomaly.build_ood("corruption/gaussian_noise", photos, severity=3, seed=7)
    expected = anomaly.corrupt(photos, "gaussian_noise", 3, torch.Generator().manual_seed(7))
    assert torch.equal(out, expected)
    assert not torch.equal(out, anomaly.build_ood("corruption/gaussian_noise", photos, severity=3, seed=8))


def test_noise_sets(photos):
    uniform = anomaly.build_ood("noise/uniform", photos, seed=0)
    gaussian = anomaly.build_ood("noise/gaussian", photos, seed=0)
    for images in (uniform, gaussian):
        assert images.shape == photos.shape and images.min() >= -1 and images.max() <= 1
    assert abs(uniform.mean().item()) < 0.03  # U(-1, 1): mean 0, std of the mean 0.005
    # clip(N(0.5, 1), 0, 1): P(< 0) = Phi(-0.5) = 0.3085 of the pixels sit at -1 (std 0.004)
    assert abs((gaussian == -1).float().mean().item() - 0.3085) < 0.02


def test_nda_jigsaw_set_permutes_tiles(photos):
    out = anomaly.build_ood("nda/jigsaw", photos, seed=0)
    assert out.shape == photos.shape and not torch.equal(out, photos)
    assert_close(out.flatten(1).sort(dim=1).values, photos.flatten(1).sort(dim=1).values)  # same pixels


def test_dataset_set_takes_last_images_and_converts(monkeypatch, photos):
    import negaug.data

    grey16 = torch.linspace(-1, 1, 10).view(10, 1, 1, 1).expand(10, 1, 16, 16).contiguous()
    calls = {}

    def fake_build(name, root=None, split="train", download=False, image_size=None, **options):
        calls.update(name=name, root=root, split=split, download=download)
        return negaug.data.TensorImageDataset(grey16)  # ignores image_size: the OOD code resizes

    monkeypatch.setattr(negaug.data, "build", fake_build)
    out = anomaly.build_ood("dataset/svhn", photos, data_root="/data")
    assert calls == {"name": "svhn", "root": "/data", "split": "test", "download": False}
    assert out.shape == photos.shape  # 4 images, 3 channels, 32 px
    assert_close(out[:, :, 5, 5], grey16[-4:, :, 0, 0].expand(4, 3), atol=1e-3, rtol=0)


def test_missing_dataset_skipped_in_all_but_error_when_named(monkeypatch, photos):
    import negaug.data

    def missing(name, **kwargs):
        raise FileNotFoundError(f"dataset '{name}' not found; download it with ...")

    monkeypatch.setattr(negaug.data, "build", missing)
    plan = anomaly.plan_ood("dataset/all,noise/uniform", exclude_dataset="cifar10")
    results, _ = anomaly.evaluate(RoughnessD(), photos, plan)
    assert list(results["ood"]) == ["noise/uniform"]
    assert "not found" in results["skipped"]["dataset/svhn"]
    assert results["skipped"]["dataset/cifar10"] == "the in-distribution dataset itself"
    with pytest.raises(FileNotFoundError):
        anomaly.evaluate(RoughnessD(), photos, "dataset/svhn")


# --------------------------------------------------------------------------------------------
# evaluation, comparison, histograms


def test_evaluate_results_and_differences(photos):
    progress = []
    request = "corruption/gaussian_noise,corruption/contrast,noise/uniform,nda/jigsaw"
    results, diffs = anomaly.evaluate(RoughnessD(), photos, request, seed=1, on_progress=progress.append)
    assert progress == ["in-distribution"] + request.split(",")
    assert set(diffs) == {"corruption/gaussian_noise", "corruption/contrast", "nda/jigsaw"}  # paired only
    noisy = anomaly.build_ood("corruption/gaussian_noise", photos, seed=1)
    assert_close(diffs["corruption/gaussian_noise"], RoughnessD()(photos) - RoughnessD()(noisy))
    # noise makes every image rougher than every clean one: a roughness detector separates perfectly
    assert results["ood"]["corruption/gaussian_noise"]["auroc"] == 1.0
    assert results["ood"]["noise/uniform"]["fpr_at_95_tpr"] == 0.0
    corruption = [results["ood"][n]["auroc"] for n in ("corruption/gaussian_noise", "corruption/contrast")]
    assert results["summary"]["corruption"]["mean_auroc"] == pytest.approx(np.mean(corruption))
    assert results["summary"]["all"]["num_sets"] == 4
    assert results["protocol"]["num_in"] == 4 and results["protocol"]["severity"] == 5
    json.dumps(results)  # JSON-able


def test_compare_two_runs(photos):
    a, _ = anomaly.evaluate(RoughnessD(), photos, "corruption/gaussian_noise,noise/uniform")
    b, _ = anomaly.evaluate(tiny_discriminator(), photos, "noise/uniform,corruption/gaussian_noise")
    rows = anomaly.compare(a, b)
    assert [r["ood"] for r in rows] == ["corruption/gaussian_noise", "noise/uniform", "mean"]
    for row in rows[:-1]:
        assert row["auroc_delta"] == pytest.approx(b["ood"][row["ood"]]["auroc"] - a["ood"][row["ood"]]["auroc"])
    assert rows[-1]["auroc_a"] == pytest.approx(np.mean([r["auroc_a"] for r in rows[:-1]]))
    assert "| noise/uniform |" in anomaly.format_comparison(rows, ("base", "nda"))
    c, _ = anomaly.evaluate(RoughnessD(), photos, "noise/uniform", severity=3)
    with pytest.raises(ValueError, match="severity"):
        anomaly.compare(a, c)
    assert len(anomaly.compare(a, c, strict=False)) == 2


class RescaledD(nn.Module):
    """An affine rescaling a * D + b of another D's scores (a > 0): the same detector."""

    def __init__(self, inner, a, b):
        super().__init__()
        self.inner, self.a, self.b = inner, a, b

    def forward(self, x, y=None):
        return self.a * self.inner(x) + self.b


def test_plotted_gaps_are_invariant_to_an_affine_rescaling_of_one_d(photos):
    request = "corruption/gaussian_noise,corruption/contrast,nda/jigsaw"
    runs = {label: anomaly.evaluate(d, photos, request, seed=1)
            for label, d in (("d", RoughnessD()), ("rescaled", RescaledD(RoughnessD(), 40.0, -3.0)))}
    raw = {label: diffs for label, (_, diffs) in runs.items()}
    # the raw gaps differ by the factor (what made the baseline look better on most panels)
    assert_close(raw["rescaled"]["nda/jigsaw"], 40.0 * raw["d"]["nda/jigsaw"], rtol=1e-4, atol=1e-6)
    for scales in ({label: r["in_distribution"]["score_std"] for label, (r, _) in runs.items()}, None):
        gaps = anomaly.scale_free_gaps(raw, scales)
        for name in raw["d"]:
            np.testing.assert_allclose(gaps["rescaled"][name], gaps["d"][name], rtol=1e-4, atol=1e-6)
            assert np.abs(gaps["d"][name]).max() > 0.1  # not all zeros: the test can fail
    with_std = anomaly.scale_free_gaps(raw, {"d": 2.0})  # the given scale divides; a missing one is pooled
    np.testing.assert_allclose(with_std["d"]["nda/jigsaw"], raw["d"]["nda/jigsaw"].double().numpy() / 2.0, rtol=1e-6)
    figure = anomaly.difference_histograms_figure({"a": raw["d"], "b": raw["rescaled"]})
    a, b = ([patch.get_height() for patch in bars] for bars in figure.axes[0].containers)
    assert len(a) == 40 and a == pytest.approx(b, rel=1e-3, abs=1e-6)
    assert "std of this D" in figure.axes[-1].get_xlabel()


def test_histogram_png(tmp_path):
    g = torch.Generator().manual_seed(0)
    diffs = {"baseline": {"corruption/fog": torch.randn(50, generator=g), "nda/jigsaw": torch.randn(50, generator=g)},
             "jigsaw NDA": {"corruption/fog": torch.randn(30, generator=g) + 2}}
    path = anomaly.plot_difference_histograms(diffs, tmp_path / "sub" / "hist.png")
    image = Image.open(path)
    assert image.format == "PNG" and image.size[0] > image.size[1] > 100  # one row of two panels
    with pytest.raises(ValueError, match="no differences"):
        anomaly.plot_difference_histograms({"run": {}}, tmp_path / "empty.png")


# --------------------------------------------------------------------------------------------
# the command line


@pytest.fixture()
def fake_run(monkeypatch, tmp_path, photos):
    """`load_run` replaced by a tiny run: an untrained conv D, 6 test images."""
    import negaug.data
    import negaug.experiment.anomaly

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    images = torch.cat([photos, photos.flip(-1)[:2]])
    calls = {}

    def load_run(path, checkpoint="latest", device="cpu", warn=None, data_root=None, download=False):
        calls.update(path=str(path), checkpoint=checkpoint)
        return SimpleNamespace(
            config=SimpleNamespace(data=SimpleNamespace(name="fake", root=None)), discriminator=tiny_discriminator(),
            generator=None, step=7, run_dir=path, checkpoint_path=path / "checkpoints" / "step_0000007.json",
            reference_dataset=lambda split="test": negaug.data.TensorImageDataset(images),
        )

    monkeypatch.setattr(negaug.experiment.anomaly, "load_run", load_run)
    return run_dir, calls


def test_cli_writes_results_and_histograms(fake_run, capsys):
    from negaug.cli import main

    run_dir, calls = fake_run
    rc = main(["anomaly", str(run_dir), "--ood", "corruption/gaussian_noise,corruption/contrast,noise/uniform",
               "--num-images", "5", "--seed", "2", "--checkpoint", "best", "--device", "cpu"])
    assert rc == 0 and calls == {"path": str(run_dir), "checkpoint": "best"}
    results = json.loads((run_dir / "anomaly.json").read_text())["evaluations"][-1]
    protocol = results["protocol"]
    assert protocol["checkpoint_step"] == 7 and protocol["num_in"] == 5 and protocol["seed"] == 2
    assert protocol["reference_split"] == "test" and protocol["positive_class"] == "in-distribution"
    assert set(results["ood"]) == {"corruption/gaussian_noise", "corruption/contrast", "noise/uniform"}
    assert results["ood"]["noise/uniform"]["num_images"] == 5
    assert Image.open(run_dir / results["histograms"]).format == "PNG"
    assert "| corruption/contrast |" in capsys.readouterr().out


def test_cli_errors_are_one_line(tmp_path, capsys, fake_run):
    from negaug.cli import main

    assert main(["anomaly", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("negaug: error: run folder") and "\n" not in err
    run_dir, _ = fake_run
    assert main(["anomaly", str(run_dir), "--ood", "corruption/frost"]) == 2
    assert "frost" in capsys.readouterr().err


def test_cli_run_without_checkpoint_is_one_line_error(tmp_path, capsys):
    from negaug.cli import main

    (tmp_path / "empty" / "checkpoints").mkdir(parents=True)
    assert main(["anomaly", str(tmp_path / "empty")]) == 2  # the real load_run
    err = capsys.readouterr().err.strip()
    assert err.startswith("negaug: error:") and "checkpoint" in err and "\n" not in err


def test_cli_appends_to_anomaly_json_like_eval_json(fake_run, capsys):
    """Regression: a second `negaug anomaly` replaced the first one's results."""
    from negaug.cli import main

    run_dir, _ = fake_run
    for severity in ("1", "2"):
        assert main(["anomaly", str(run_dir), "--ood", "noise/uniform", "--num-images", "5", "--severity", severity,
                     "--device", "cpu"]) == 0
    entries = json.loads((run_dir / "anomaly.json").read_text())["evaluations"]
    assert [entry["protocol"]["severity"] for entry in entries] == [1, 2]
