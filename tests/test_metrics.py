"""negaug.metrics: values against independent computations, properties, protocols, caches, CLI.

Small and single-threaded: tiny feature sets, 8x8 digits, a 1-epoch classifier in a temp cache.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn
from torch.testing import assert_close

from negaug import data
from negaug.metrics import classifier as clf
from negaug.metrics import (
    count_dots,
    count_histogram,
    evaluate_generator,
    evaluate_samples,
    feature_statistics,
    fid_from_features,
    find_metric,
    find_result,
    fraction_with_count,
    frechet_distance,
    generate_samples,
    inception_score,
    kde_log_likelihood,
    kernel_distance,
    parzen_log_likelihood,
    precision_recall,
    toy_quality,
)
from negaug.metrics import features as feats
from negaug.metrics.evaluate import METRICS
from negaug.models.base import Generator

EPOCHS = 4  # of the digits classifier shared by the tests (one training, then the cache)


@pytest.fixture(autouse=True)
def single_thread():
    """Two shared cores: one thread is faster than oversubscribed ones, and more deterministic."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def digits_train():
    return data.build("digits", split="train+val").subset(torch.arange(0, 1400, 2))  # 700 images, 8x8


@pytest.fixture(scope="module")
def digits_test():
    return data.build("digits", split="test")  # 359 images


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("negaug_cache")


@pytest.fixture(scope="module")
def digits_classifier(digits_train, cache_dir):
    return feats.build("classifier", data=digits_train, data_name="digits", cache_dir=cache_dir, epochs=EPOCHS)


def gaussian_features(n: int, dim: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mixing = torch.randn(dim, dim, generator=torch.Generator().manual_seed(99), dtype=torch.float64) / math.sqrt(dim)
    return (torch.randn(n, dim, generator=g, dtype=torch.float64) @ mixing + shift)


# --- FID ---------------------------------------------------------------------------------------

def scipy_fid(a: torch.Tensor, b: torch.Tensor) -> float:
    """The textbook formula on numpy with scipy's sqrtm: an independent implementation."""
    a, b = a.double().numpy(), b.double().numpy()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(cov_a @ cov_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(root))


def test_fid_matches_scipy_sqrtm():
    a, b = gaussian_features(400, 12, 0), gaussian_features(300, 12, 1, shift=0.3) * 1.5
    expected = scipy_fid(a, b)
    assert abs(fid_from_features(a, b) - expected) < 1e-6 * expected


def test_fid_of_a_set_with_itself_is_zero():
    a = gaussian_features(300, 16, 2)
    scale = float(feature_statistics(a)[1].trace())
    assert abs(fid_from_features(a, a)) < 1e-6 * scale


def test_fid_of_gaussians_equals_closed_form():
    # 1-D: (m1 - m2)^2 + (s1 - s2)^2
    one = frechet_distance((torch.tensor([1.0]), torch.tensor([[4.0]])), (torch.tensor([-2.0]), torch.tensor([[9.0]])))
    assert one == pytest.approx(9.0 + 1.0, rel=1e-12)
    # commuting (diagonal) covariances: |dmu|^2 + sum (sqrt(a_i) - sqrt(b_i))^2
    var_a, var_b = torch.tensor([1.0, 4.0, 0.25]), torch.tensor([9.0, 1.0, 0.25])
    mu_a, mu_b = torch.tensor([0.0, 1.0, 2.0]), torch.tensor([1.0, 1.0, 0.0])
    closed = float((mu_a - mu_b).square().sum() + (var_a.sqrt() - var_b.sqrt()).square().sum())
    value = frechet_distance((mu_a, torch.diag(var_a)), (mu_b, torch.diag(var_b)))
    assert value == pytest.approx(closed, rel=1e-12)
    # a common rotation of both Gaussians changes nothing
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    rotated = frechet_distance((q @ mu_a.double(), q @ torch.diag(var_a).double() @ q.T),
                               (q @ mu_b.double(), q @ torch.diag(var_b).double() @ q.T))
    assert rotated == pytest.approx(closed, rel=1e-10)


def test_fid_is_finite_with_fewer_samples_than_dimensions():
    """A Newton-Schulz square root gives NaN here (FACTS); eigendecompositions do not."""
    value = fid_from_features(gaussian_features(5, 20, 3), gaussian_features(6, 20, 4))
    assert math.isfinite(value) and value > 0


def test_fid_is_symmetric():
    a, b = gaussian_features(200, 8, 5), gaussian_features(250, 8, 6, shift=1.0)
    assert fid_from_features(a, b) == pytest.approx(fid_from_features(b, a), rel=1e-9)


# --- features: batch independence, registry suite ------------------------------------------------

class TinyInception(nn.Module):
    """Stand-in for torch-fidelity's network: uint8 (B, 3, H, W) -> (pool (B, pool_dim),
    logits (B, num_logits)), fixed linear maps of 6 pixel statistics. The real shapes
    (2048, 1008) by default; smaller ones where a test computes FID (2048-d eigh is slow)."""

    def __init__(self, pool_dim: int = 2048, num_logits: int = 1008):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.to_pool = torch.rand(6, pool_dim, generator=g)
        self.to_logits = torch.randn(6, num_logits, generator=g)

    def forward(self, x):
        assert x.dtype == torch.uint8 and x.shape[1] == 3
        x = x.float() / 255
        stats = torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=1)
        return stats @ self.to_pool, stats @ self.to_logits


@pytest.fixture
def fake_weights(tmp_path, monkeypatch):
    """A weights file and a stand-in network; torch hub pointed at an empty folder."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.delenv("NEGAUG_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.setattr(feats, "load_tf_inception", lambda path: TinyInception())
    path = tmp_path / "my-inception.pth"
    path.write_bytes(b"not really weights")
    return path


def build_extractor(name, digits_train, cache_dir, fake_weights):
    if name == "classifier":
        return feats.build(name, data=digits_train, data_name="digits", cache_dir=cache_dir, epochs=EPOCHS)
    if name == "inception":
        return feats.build(name, weights=fake_weights)
    return feats.build(name)


@pytest.mark.parametrize("name", feats.names())
def test_feature_extractor_contract(name, digits_train, digits_test, cache_dir, fake_weights):
    extractor = build_extractor(name, digits_train, cache_dir, fake_weights)
    whole, logits = feats.extract_features(extractor, digits_test.images, batch_size=1000)
    chunked, chunked_logits = feats.extract_features(extractor, digits_test, batch_size=7)  # a dataset, in 7s
    assert whole.shape[0] == len(digits_test) and whole.dtype == torch.float32
    assert_close(chunked, whole, rtol=1e-5, atol=1e-5)
    assert (logits is None) == (extractor.num_logits == 0) == (chunked_logits is None)
    if logits is not None:
        assert logits.shape == (len(digits_test), extractor.num_logits)
        assert_close(chunked_logits, logits, rtol=1e-5, atol=1e-5)
    protocol = extractor.protocol()
    assert protocol["extractor"] == name and protocol["identifier"] == extractor.identifier
    assert whole.shape[1] == (extractor.num_features or digits_test.images[0].numel())  # raw: 0 = input size


def test_feature_registry_names_and_unknown():
    assert feats.names() == ["classifier", "inception", "raw"]
    with pytest.raises(ValueError, match="valid: classifier, inception, raw"):
        feats.build("inceptoin")


def test_raw_features_flatten_exactly():
    x = torch.arange(24.0).reshape(2, 3, 2, 2)
    features, logits = feats.build("raw")(x)
    assert logits is None and torch.equal(features, x.reshape(2, 12))


# --- offline classifier: cache -------------------------------------------------------------------

def test_classifier_cache_is_reused_and_invalidated(tmp_path, monkeypatch):
    images = torch.rand(96, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    labels = torch.arange(96) % 3
    calls = []
    real_train = clf.train_classifier
    monkeypatch.setattr(clf, "train_classifier", lambda *a, **k: calls.append(1) or real_train(*a, **k))

    def build(x):
        return feats.build("classifier", data=data.TensorImageDataset(x, labels, 3, "toyimgs"),
                           cache_dir=tmp_path, epochs=1)

    first = build(images)
    assert len(calls) == 1 and first.meta["cached"] is False and first.meta["task"] == "labels"
    stem = tmp_path / "classifiers" / f"toyimgs-{first.meta['key'][:16]}"
    assert stem.with_suffix(".safetensors").is_file() and stem.with_suffix(".json").is_file()
    second = build(images)
    assert len(calls) == 1 and second.meta["cached"] is True
    assert second.identifier == first.identifier == f"classifier:toyimgs-{first.meta['weights_sha256'][:8]}"
    assert_close(second(images)[0], first(images)[0], rtol=0, atol=0)
    changed = images.clone()
    changed[0, 0, 0, 0] += 0.5  # one pixel: another data hash, another classifier
    third = build(changed)
    assert len(calls) == 2 and third.meta["data_sha256"] != first.meta["data_sha256"]
    assert third.identifier != first.identifier


def test_classifier_training_is_seeded_and_leaves_global_rng_alone(tmp_path):
    images = torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    state = torch.get_rng_state()
    a = clf.load_or_train_classifier(images, torch.zeros(64, dtype=torch.int64), 0, "x",
                                     clf.ClassifierSettings(epochs=1), tmp_path / "a")[1]
    b = clf.load_or_train_classifier(images, torch.zeros(64, dtype=torch.int64), 0, "x",
                                     clf.ClassifierSettings(epochs=1), tmp_path / "b")[1]
    assert torch.equal(torch.get_rng_state(), state)
    assert a["weights_sha256"] == b["weights_sha256"]
    assert a["task"] == "rotation"  # a single class teaches nothing: rotation prediction instead
    capped = clf.load_or_train_classifier(images, torch.zeros(64, dtype=torch.int64), 0, "x",
                                          clf.ClassifierSettings(epochs=1, max_images=40), tmp_path / "a")[1]
    assert capped["num_train"] == 36 and a["num_train"] == 58 and capped["key"] != a["key"]


def test_rotate_batch_turns_each_image_by_its_own_count():
    x = torch.arange(8.0).reshape(2, 1, 2, 2)
    out = clf.rotate_batch(x, torch.tensor([0, 1]))
    assert torch.equal(out[0], x[0]) and torch.equal(out[1], torch.rot90(x[1], 1, dims=(1, 2)))


def test_classifier_learns_digits(digits_classifier, digits_test):
    _, logits = feats.extract_features(digits_classifier, digits_test)
    accuracy = float((logits.argmax(1) == digits_test.labels).float().mean())
    assert accuracy > 0.85  # 4 epochs on 700 8x8 digits; chance is 0.1


# --- Inception: weights resolution and the library call ------------------------------------------

def test_missing_inception_weights_raise_one_line(fake_weights, tmp_path):
    assert feats.find_inception_weights() is None
    with pytest.raises(FileNotFoundError) as err:
        feats.build("inception")
    message = str(err.value)
    assert "\n" not in message and feats.INCEPTION_FILENAMES[0] in message and "--inception-weights" in message
    with pytest.raises(FileNotFoundError, match="nowhere.pth does not exist") as err:
        feats.build("inception", weights=tmp_path / "nowhere.pth")
    assert "\n" not in str(err.value)


def test_inception_weights_found_in_hub_cache_env_and_folder(fake_weights, tmp_path, monkeypatch):
    hub_file = tmp_path / "hub" / "checkpoints" / feats.INCEPTION_FILENAMES[1]
    hub_file.parent.mkdir(parents=True)
    hub_file.write_bytes(b"x")
    assert feats.find_inception_weights() == hub_file
    assert feats.find_inception_weights(hub_file.parent) == hub_file
    monkeypatch.setenv("NEGAUG_INCEPTION_WEIGHTS", str(fake_weights))
    assert feats.find_inception_weights() == fake_weights


def test_inception_identifier_says_whether_weights_are_standard(fake_weights, digits_test, monkeypatch):
    monkeypatch.setattr(feats, "load_tf_inception", lambda path: TinyInception(16, 5))
    nonstandard = feats.build("inception", weights=fake_weights)
    assert nonstandard.identifier == f"inception:{nonstandard.weights_sha256[:8]}"
    fake = digits_test.images[:100]
    results = evaluate_samples(fake, digits_test, ["fid"], feature_extractor="inception", inception_weights=fake_weights)
    assert list(results) == [f"fid[{nonstandard.identifier}]"]
    monkeypatch.setattr(feats, "INCEPTION_SHA256_PREFIX", nonstandard.weights_sha256[:8])
    results = evaluate_samples(fake, digits_test, ["fid", "is"], feature_extractor="auto", inception_weights=fake_weights)
    assert set(results) == {"fid", "is"}  # plain names only for the standard weights
    assert results["fid"]["protocol"]["features"]["weights_standard"] is True


def test_inception_input_is_rounded_uint8_rgb(fake_weights):
    seen = {}

    class Spy(nn.Module):
        def forward(self, x):
            seen["x"] = x
            return x.float().mean(dim=(2, 3)), None

    extractor = feats.build("inception", weights=fake_weights)
    extractor.network = Spy()
    extractor(torch.tensor([-1.0, 0.0, 1.0, 0.003]).reshape(1, 1, 2, 2))
    assert seen["x"].dtype == torch.uint8 and seen["x"].shape == (1, 3, 2, 2)
    assert seen["x"][0, 2].flatten().tolist() == [0, 128, 255, 128]  # 127.5 rounds half up


@pytest.mark.slow
def test_torch_fidelity_network_loads_local_weights_without_download(tmp_path, monkeypatch):
    """The real library call, with random weights in the pytorch-fid layout (same keys)."""
    import torch_fidelity.feature_extractor_inceptionv3 as tf_inception
    from torchvision.models import inception_v3

    def no_download(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(tf_inception, "load_state_dict_from_url", no_download)
    path = tmp_path / feats.INCEPTION_FILENAMES[1]
    torch.save(inception_v3(weights=None, aux_logits=False, init_weights=False, num_classes=1008).state_dict(), path)
    extractor = feats.build("inception", weights=path)
    features, logits = extractor(torch.zeros(1, 1, 8, 8))
    assert features.shape == (1, 2048) and logits.shape == (1, 1008)
    assert torch.isfinite(features).all()


class NotATensor:
    pass


def test_inception_weights_that_are_not_plain_tensors_are_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"x": NotATensor()}, path)
    with pytest.raises(ValueError, match="not a plain TF-Inception state dict"):
        feats.build("inception", weights=path)
    path.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a plain TF-Inception state dict"):
        feats.build("inception", weights=path)


def test_importing_metrics_does_not_import_torch_fidelity():
    code = "import sys, negaug.metrics, negaug.cli.eval; print('torch_fidelity' in sys.modules, 'tests' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


# --- KID, IS, precision / recall -----------------------------------------------------------------

def test_kid_matches_torch_fidelity_on_one_full_subset():
    from torch_fidelity.metric_kid import kernel_mmd

    a, b = gaussian_features(120, 6, 7), gaussian_features(120, 6, 8, shift=0.5)
    ours, std = kernel_distance(a, b, num_subsets=1, subset_size=120, generator=torch.Generator().manual_seed(0))
    reference = kernel_mmd(a.numpy(), b.numpy(), kid_kernel="poly", kid_kernel_poly_degree=3,
                           kid_kernel_poly_gamma=None, kid_kernel_poly_coef0=1)
    assert ours == pytest.approx(float(reference), rel=1e-10) and std == 0.0


def _torch_fidelity_kid(features_1, features_2, subsets):
    """A transcription of torch_fidelity.metric_kid (0.4): kernel_poly with gamma = 1 / F, coef0 1,
    degree 3; mmd2(..., mmd_est="unbiased"); np.mean and np.std over the subsets. No rescaling."""
    mmds = []
    for rows_1, rows_2 in subsets:
        x, y = features_1[rows_1], features_2[rows_2]
        gamma, m = 1.0 / x.shape[1], x.shape[0]
        k_xx, k_yy, k_xy = ((a @ b.T * gamma + 1) ** 3 for a, b in ((x, x), (y, y), (x, y)))
        kt_sum = (k_xx.sum(axis=1) - np.diagonal(k_xx)).sum() + (k_yy.sum(axis=1) - np.diagonal(k_yy)).sum()
        mmds.append(kt_sum / (m * (m - 1)) - 2 * k_xy.sum(axis=0).sum() / (m * m))
    return float(np.mean(mmds)), float(np.std(mmds))


def test_kid_has_torch_fidelitys_scale_and_subset_statistics():
    from negaug.metrics.kid import _subset_rows

    a, b = gaussian_features(60, 5, 0).double(), gaussian_features(50, 5, 1, shift=0.3).double()
    ours = kernel_distance(a, b, num_subsets=6, subset_size=20, generator=torch.Generator().manual_seed(4))
    generator = torch.Generator().manual_seed(4)  # the same subsets: drawn as kernel_distance draws them
    rows_a, rows_b = _subset_rows(60, 6, 20, generator), _subset_rows(50, 6, 20, generator)
    reference = _torch_fidelity_kid(a.numpy(), b.numpy(), list(zip(rows_a.numpy(), rows_b.numpy())))
    assert_close(torch.tensor(ours), torch.tensor(reference), rtol=1e-12, atol=1e-15)
    assert 0.01 < ours[0] < 1  # raw MMD^2, not x1000
    result = evaluate_samples(torch.rand(30, 1, 4, 4) * 2 - 1, torch.rand(30, 1, 4, 4) * 2 - 1, ["kid"],
                              feature_extractor="raw")["kid[raw]"]
    assert result["protocol"]["scale"].startswith("raw MMD^2")


def test_kid_is_unbiased_near_zero_for_one_distribution():
    same = [kernel_distance(gaussian_features(400, 8, s), gaussian_features(400, 8, s + 100), 20, 200,
                            torch.Generator().manual_seed(s))[0] for s in range(3)]
    shifted = kernel_distance(gaussian_features(400, 8, 0), gaussian_features(400, 8, 1, shift=0.5), 20, 200,
                              torch.Generator().manual_seed(0))[0]
    assert shifted > 0.1
    assert all(abs(v) < 0.05 * shifted for v in same)  # measured: |v| <= 0.025, shifted 1.08
    assert min(same) < max(same)  # an estimate, not a clipped value: it moves around 0


def test_kid_is_seeded_and_caps_the_subset_size():
    a, b = gaussian_features(50, 4, 0), gaussian_features(60, 4, 1)
    first = kernel_distance(a, b, 5, 1000, torch.Generator().manual_seed(3))
    assert first == kernel_distance(a, b, 5, 1000, torch.Generator().manual_seed(3))


def test_inception_score_hand_values():
    one_hot = torch.eye(5).repeat(4, 1)  # uniform marginal, certain conditionals
    assert inception_score(one_hot, splits=1) == pytest.approx((5.0, 0.0), abs=1e-12)
    assert inception_score(torch.eye(5)[[2] * 20], splits=2)[0] == pytest.approx(1.0, abs=1e-12)
    assert inception_score(torch.full((10, 4), 0.25), splits=1)[0] == pytest.approx(1.0, abs=1e-12)
    # two classes, p(y|x) in {(0.75, 0.25), (0.25, 0.75)}: KL = 0.75 ln 1.5 + 0.25 ln 0.5
    probs = torch.tensor([[0.75, 0.25], [0.25, 0.75]])
    assert inception_score(probs, 1)[0] == pytest.approx(math.exp(0.75 * math.log(1.5) + 0.25 * math.log(0.5)))


def test_inception_score_matches_torch_fidelity():
    from torch_fidelity.metric_isc import isc_features_to_metric

    logits = torch.randn(200, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2
    ours = inception_score(logits.softmax(1), splits=5)
    theirs = isc_features_to_metric(logits, splits=5, shuffle=False)
    assert ours[0] == pytest.approx(theirs["inception_score_mean"], rel=1e-10)
    assert ours[1] == pytest.approx(theirs["inception_score_std"], rel=1e-8)


def clusters(centres: torch.Tensor, per_cluster: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (centres[:, None] + 0.1 * torch.randn(centres.shape[0], per_cluster, centres.shape[1], generator=g)).reshape(-1, centres.shape[1])


def test_mode_collapse_has_high_precision_and_low_recall():
    centres = 4 * torch.randn(8, 3, generator=torch.Generator().manual_seed(0))
    real = clusters(centres, 100, 1)
    collapsed = clusters(centres[:1], 400, 2)  # measured: precision 0.955, recall 0.121
    precision, recall = precision_recall(real, collapsed, k=3)
    assert precision > 0.9 and recall < 0.3
    assert precision_recall(real, real, k=3) == (1.0, 1.0)
    everywhere = clusters(centres, 100, 3)  # measured: 0.939, 0.960
    p, r = precision_recall(real, everywhere, k=3)
    assert p > 0.9 and r > 0.9


def test_precision_recall_matches_torch_fidelity():
    from torch_fidelity.metric_prc import calculate_precision_recall_full

    real, fake = gaussian_features(300, 6, 0).float(), gaussian_features(250, 6, 1, shift=0.4).float()
    ours = precision_recall(real, fake, k=3, chunk_size=64)
    theirs = calculate_precision_recall_full(fake, real, neighborhood=3)  # (generated, real) order
    assert abs(ours[0] - theirs[0]) <= 1 / 250 and abs(ours[1] - theirs[1]) <= 1 / 300


# --- KDE -----------------------------------------------------------------------------------------

def test_parzen_with_one_sample_is_the_gaussian_log_density():
    sample, points, sigma = torch.tensor([[1.0, -2.0]]), torch.tensor([[0.0, 0.0], [1.0, -2.0]]), 0.5
    normal = torch.distributions.Normal(sample[0].double(), torch.tensor(sigma, dtype=torch.float64))
    expected = normal.log_prob(points.double()).sum(1)
    assert_close(parzen_log_likelihood(sample, points, sigma), expected, rtol=1e-12, atol=1e-12)


def test_kde_of_a_gaussian_matches_the_analytic_value():
    """Samples of N(0, s^2 I) smoothed by sigma give N(0, (s^2 + sigma^2) I); the expected
    log-density of N(0, s^2 I) test points under it is analytic."""
    g, dim, s, sigma = torch.Generator().manual_seed(0), 2, 1.0, 0.3
    samples = torch.randn(20000, dim, generator=g, dtype=torch.float64)
    test = torch.randn(4000, dim, generator=g, dtype=torch.float64)
    var = s**2 + sigma**2
    expected = -dim / 2 * math.log(2 * math.pi * var) - dim * s**2 / (2 * var)
    value = float(parzen_log_likelihood(samples, test, sigma).mean())
    assert value == pytest.approx(expected, abs=0.05)


def test_kde_chooses_the_bandwidth_on_validation_and_is_chunk_independent():
    g = torch.Generator().manual_seed(1)
    samples, validation, test = (torch.randn(n, 2, generator=g, dtype=torch.float64) for n in (2000, 500, 500))
    grid = torch.tensor([0.01, 0.3, 5.0], dtype=torch.float64)
    whole = kde_log_likelihood(samples, validation, test, grid)
    chunked = kde_log_likelihood(samples, validation, test, grid, max_elements=1000)
    assert whole["bandwidth"] == 0.3 and whole["bandwidth_at_grid_edge"] is False
    assert chunked["value"] == pytest.approx(whole["value"], rel=1e-12)
    assert kde_log_likelihood(samples, validation, test, grid[:2])["bandwidth_at_grid_edge"] is True


# --- dots ----------------------------------------------------------------------------------------

def render(centres_per_image: list[list[tuple[int, int]]], size: int = 16, radius: float = 1.5) -> torch.Tensor:
    """Dots of distinct saturated colours on black at the given centres: (N, 3, size, size)."""
    from negaug.data.dots import hue_to_rgb, render_dots

    most = max(len(c) for c in centres_per_image)
    centres = torch.full((len(centres_per_image), most, 2), -1, dtype=torch.int64)
    for i, image in enumerate(centres_per_image):
        if image:
            centres[i, :len(image)] = torch.tensor(image)
    colours = hue_to_rgb(torch.linspace(0, 0.9, most).expand(len(centres_per_image), most)) * 2 - 1
    return render_dots(centres, colours, size, radius)


def test_count_dots_exact_on_rendered_images():
    images = render([[], [(3, 3)], [(3, 3), (3, 10), (10, 6)], [(2, 2), (2, 7), (7, 2), (7, 7), (12, 12)]])
    assert count_dots(images).tolist() == [0, 1, 3, 5]


def test_overlapping_dots_count_as_one_and_specks_are_ignored():
    merged = render([[(5, 5), (5, 7)], [(5, 5), (7, 7), (12, 3)]])  # overlapping / touching discs
    assert count_dots(merged).tolist() == [1, 2]
    speck = render([[(4, 4)]])
    speck[0, :, 12, 12] = 1.0  # a single white pixel
    assert count_dots(speck, min_area=2).tolist() == [1]
    assert count_dots(speck, min_area=1).tolist() == [2]


def test_count_dots_matches_dataset_labels_also_with_noise():
    dots = data.build("dots", count=[1, 4, 6], num_samples=200, seed=3)
    assert torch.equal(count_dots(dots.images), dots.labels)
    noisy = dots.images + 0.1 * torch.randn(dots.images.shape, generator=torch.Generator().manual_seed(0))
    assert torch.equal(count_dots(noisy.clamp(-1, 1)), dots.labels)
    grey = data.build("dots", count=3, num_samples=20, channels=1)
    assert count_dots(grey.images).tolist() == [3] * 20


def test_count_histogram_and_fraction():
    counts = torch.tensor([6, 6, 5, 7, 6, 0])
    assert count_histogram(counts) == {0: 1, 5: 1, 6: 3, 7: 1}
    assert fraction_with_count(counts, 6) == 0.5


# --- toys ----------------------------------------------------------------------------------------

def test_auto_features_of_2d_points_are_raw_even_with_inception_weights(fake_weights):
    ring = data.build("ring", split="test", num_samples=300)
    results = evaluate_samples(ring.points[:100], ring, ["fid"], inception_weights=fake_weights)
    assert list(results) == ["fid[raw]"]


def test_toy_quality_hand_values():
    mask = torch.tensor([True, False, False, False, False, False])
    assignment = torch.tensor([-1, 0, 0, 2, 2, 2])
    quality = toy_quality(mask, assignment, num_modes=4, min_share=0.3)
    assert quality["negative_fraction"] == pytest.approx(1 / 6)
    assert quality["high_quality_fraction"] == pytest.approx(5 / 6)
    assert quality["mode_counts"] == [2, 0, 3, 0]
    assert quality["modes_covered"] == 2  # 2/6 and 3/6 reach 0.3; empty modes never count
    assert toy_quality(mask, assignment, 4, min_share=0.0)["modes_covered"] == 2


def test_toy_metrics_on_ring_samples_collapse_and_negatives():
    ring = data.build("ring", split="test", num_samples=2000)
    good, _ = ring.sample(4000, torch.Generator().manual_seed(0))
    results = evaluate_samples(good, ring, ["toy"])
    assert results["toy_modes_covered"]["value"] == 8 and results["toy_negative_fraction"]["value"] == 0.0
    assert results["toy_high_quality"]["value"] == pytest.approx(1 - math.exp(-4.5), abs=0.01)  # P(chi2_2 < 9)
    collapsed = ring.centers[0] + 0.02 * torch.randn(500, 2, generator=torch.Generator().manual_seed(1))
    assert evaluate_samples(collapsed, ring, ["toy"])["toy_modes_covered"]["value"] == 1
    negatives = data.toy_negatives(ring, 300, torch.Generator().manual_seed(2))
    bad = evaluate_samples(negatives, ring, ["toy"])
    assert bad["toy_negative_fraction"]["value"] == 1.0 and bad["toy_high_quality"]["value"] == 0.0


# --- the metric registry: generic suite ----------------------------------------------------------

def metric_case(name, digits_train, digits_test, cache_dir):
    """(samples, reference, options) on which metric `name` applies."""
    if name == "toy" or name == "kde":
        ring = data.build("ring", split="test", num_samples=400)
        return ring.sample(300, torch.Generator().manual_seed(0))[0], ring, {}
    if name == "dots":
        return data.build("dots", count=[5, 6], num_samples=60, seed=1).images, \
            data.build("dots", count=6, num_samples=60, split="test"), {}
    fake = digits_train.images[::3][:200]
    return fake, digits_test, dict(feature_extractor="classifier", train_data=digits_train, cache_dir=cache_dir,
                                   classifier_epochs=EPOCHS, kid_subsets=10, kid_subset_size=100)


@pytest.mark.parametrize("name", METRICS.names())
def test_metric_contract(name, digits_train, digits_test, cache_dir):
    fake, reference, options = metric_case(name, digits_train, digits_test, cache_dir)
    results = evaluate_samples(fake, reference, [name], seed=4, **options)
    again = evaluate_samples(fake, reference, [name], seed=4, **options)
    assert results and {k: v["value"] for k, v in results.items()} == {k: v["value"] for k, v in again.items()}
    for key, result in results.items():
        assert math.isfinite(result["value"]) and isinstance(result["higher_is_better"], bool)
        assert key == result["metric"] or key.startswith(result["metric"] + "[") or key.startswith(name)
        protocol = result["protocol"]
        assert protocol["num_generated"] == fake.shape[0] and protocol["num_real"] == len(reference)
        assert protocol["seed"] == 4 and protocol["versions"]["torch"] == torch.__version__.split("+")[0]
        assert json.loads(json.dumps(result)) is not None  # JSON-serialisable as is
        if name in ("fid", "kid", "is", "pr"):
            assert key.startswith(f"{name}[classifier:digits-")  # never a bare "fid" offline
            assert protocol["features"]["reference_accuracy"] > 0.8


def test_feature_metric_values_make_sense(digits_train, digits_test, cache_dir):
    options = dict(feature_extractor="classifier", train_data=digits_train, cache_dir=cache_dir, classifier_epochs=EPOCHS,
                   kid_subsets=10, kid_subset_size=100)
    good = evaluate_samples(digits_train.images[:359], digits_test, seed=0, **options)
    zeros = digits_train.images[digits_train.labels == 0][:60].repeat(6, 1, 1, 1)[:359]  # mode collapse
    collapsed = evaluate_samples(zeros, digits_test, seed=0, **options)
    fid, kid, is_, pr = (find_metric(good, m) for m in ("fid", "kid", "is", "pr"))
    # measured: fid 0.57 vs 63, kid 0.0009 vs 2.7, is 3.4 vs 1.02, recall 0.91 vs 0.09
    assert 10 * fid["value"] < find_metric(collapsed, "fid")["value"]
    assert 10 * kid["value"] < find_metric(collapsed, "kid")["value"]
    assert is_["value"] > 3 and find_metric(collapsed, "is")["value"] < 1.5
    assert find_metric(collapsed, "pr")["recall"] < 0.3 < pr["recall"]


def test_unknown_metric_option_and_missing_classes_are_errors(digits_test):
    with pytest.raises(ValueError, match="unknown metric 'fdi'.*did you mean 'fid'"):
        evaluate_samples(digits_test.images[:20], digits_test, ["fdi"])
    with pytest.raises(ValueError, match="unknown evaluation option 'num_sample'"):
        evaluate_samples(digits_test.images[:20], digits_test, ["fid"], num_sample=3)
    with pytest.raises(ValueError, match="needs class probabilities"):
        evaluate_samples(digits_test.images[:20], digits_test, ["is"], feature_extractor="raw")
    with pytest.raises(ValueError, match="shape"):
        evaluate_samples(torch.zeros(20, 3, 8, 8), digits_test, ["fid"], feature_extractor="raw")
    defaults = evaluate_samples(digits_test.images[:100], digits_test, feature_extractor="raw")
    assert sorted(defaults) == ["fid[raw]", "kid[raw]", "pr[raw]"]  # "is" skipped, not failed


# --- sampling a generator -------------------------------------------------------------------------

class TinyGenerator(Generator):
    def __init__(self, num_classes: int = 0, channels: int = 1, size: int = 8):
        super().__init__(latent_dim=4, num_classes=num_classes)
        torch.manual_seed(0)
        self.shape = (channels, size, size)
        self.net = nn.Linear(4 + max(num_classes, 1), channels * size * size)

    def forward(self, z, y=None):
        onehot = torch.zeros(z.shape[0], max(self.num_classes, 1)) if y is None else \
            nn.functional.one_hot(y, self.num_classes).float()
        return torch.tanh(self.net(torch.cat([z, onehot], 1))).reshape(-1, *self.shape)


def test_generate_samples_is_seeded_and_batch_size_independent():
    gen = TinyGenerator(num_classes=3).train()
    a, labels_a = generate_samples(gen, 50, seed=1, num_classes=3, batch_size=7)
    b, labels_b = generate_samples(gen, 50, seed=1, num_classes=3, batch_size=50)
    c, _ = generate_samples(gen, 50, seed=2, num_classes=3, batch_size=50)
    assert_close(a, b, rtol=1e-6, atol=1e-6)
    assert torch.equal(labels_a, labels_b) and set(labels_a.tolist()) == {0, 1, 2}
    assert not torch.allclose(a, c)
    assert gen.training  # mode restored


def test_evaluate_generator_end_to_end(digits_train, digits_test, cache_dir):
    gen = TinyGenerator(num_classes=10)
    results = evaluate_generator(gen, digits_test, ["fid", "pr"], num_samples=200, seed=0, train_data=digits_train,
                                 feature_extractor="classifier", cache_dir=cache_dir, classifier_epochs=EPOCHS)
    assert find_result(results, "fid") is None  # a bare "fid" is only ever the standard Inception FID
    fid = find_metric(results, "fid")
    assert fid["value"] > 0 and fid["protocol"]["generator_labels"] == "uniform over 10 classes"
    assert fid["protocol"]["reference"] == "digits/test" and fid["protocol"]["num_generated"] == 200


# --- negaug eval ---------------------------------------------------------------------------------

def fake_run(tmp_path, name="dots", options=None, metrics=()):
    """A LoadedRun look-alike: the attributes `negaug eval` uses, and nothing more."""
    builders = {"dots": lambda split: data.build("dots", split=split, count=3, num_samples=40, image_size=16),
                "ring": lambda split: data.build("ring", split=split, num_samples=300)}
    generator = TinyGenerator(channels=3, size=16) if name == "dots" else _PointGenerator()
    config = SimpleNamespace(data=SimpleNamespace(name=name, options=options or {}, split="train"),
                             eval=SimpleNamespace(metrics=list(metrics), feature_extractor="auto", inception_weights=None,
                                                 force=False))
    return SimpleNamespace(config=config, generator=generator.eval(), step=1234, run_dir=tmp_path,
                           checkpoint_path=tmp_path / "checkpoints" / "step_0001234.safetensors", num_classes=0,
                           reference_dataset=builders[name])


class _PointGenerator(Generator):
    def __init__(self):
        super().__init__(latent_dim=2)
        self.scale = nn.Parameter(torch.tensor(2.0))

    def forward(self, z, y=None):
        return self.scale * z


def run_cli(argv, capsys):
    from negaug.cli import main

    code = main(argv)
    return code, capsys.readouterr()


def test_cli_eval_appends_to_eval_json_and_plots(tmp_path, monkeypatch, capsys, fake_weights):
    import negaug.experiment.evaluate

    monkeypatch.setenv("NEGAUG_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(negaug.experiment.evaluate, "load_run", lambda run_dir, **kwargs:
                        fake_run(tmp_path, options={"count": 3}))
    argv = ["eval", str(tmp_path), "--num-samples", "30", "--metrics", "fid", "dots", "--quiet"]
    code, out = run_cli(argv, capsys)  # dots' rotation classifier is at chance: its FID is refused
    assert code == 2 and "near chance" in out.err and len(out.err.strip().splitlines()) == 1
    assert not (tmp_path / "eval.json").exists()
    argv.append("--force")
    code, out = run_cli(argv, capsys)
    assert code == 0, out.err
    assert "dots" in out.out and "fid[classifier:dots-" in out.out
    assert "warning: fid[classifier:dots-" in out.err and "near chance" in out.err and "needs at least 128" in out.err
    code, _ = run_cli(argv + ["--seed", "1"], capsys)
    document = json.loads((tmp_path / "eval.json").read_text())
    assert code == 0 and len(document["evaluations"]) == 2  # appended, not overwritten
    first = document["evaluations"][0]
    assert first["step"] == 1234 and first["results"]["dots"]["target_count"] == 3
    assert first["results"]["dots"]["reference_fraction"] == 1.0
    assert document["evaluations"][1]["results"]["dots"]["protocol"]["seed"] == 1
    fid = next(r for r in first["results"].values() if r["metric"] == "fid")
    assert len(fid["warnings"]) == 2 and "warnings" not in first["results"]["dots"]
    assert all((tmp_path / p).is_file() for p in first["plots"]) and len(first["plots"]) == 2


def test_cli_eval_toy_defaults(tmp_path, monkeypatch, capsys):
    import negaug.experiment.evaluate

    monkeypatch.setattr(negaug.experiment.evaluate, "load_run", lambda *a, **k: fake_run(tmp_path, name="ring"))
    code, out = run_cli(["eval", str(tmp_path), "--num-samples", "200", "--quiet"], capsys)
    assert code == 0, out.err
    results = json.loads((tmp_path / "eval.json").read_text())["evaluations"][0]["results"]
    assert set(results) == {"toy_negative_fraction", "toy_high_quality", "toy_modes_covered", "kde"}
    assert (tmp_path / "eval" / "step_0001234_scatter.png").is_file()


def test_cli_eval_errors_are_one_line(tmp_path, capsys):
    code, out = run_cli(["eval", str(tmp_path / "missing")], capsys)
    assert code == 2 and out.err.count("\n") == 1 and "does not exist" in out.err
    (tmp_path / "empty").mkdir()
    code, out = run_cli(["eval", str(tmp_path / "empty")], capsys)
    assert code == 2 and out.err.count("\n") == 1 and out.err.startswith("negaug: error:")


def test_cli_names_match_the_registries():
    from negaug.cli import eval as eval_cli
    from negaug.metrics import names

    assert list(eval_cli.METRIC_NAMES) == names()
    assert list(eval_cli.FEATURE_NAMES) == feats.names()
    assert eval_cli.INCEPTION_FILENAME == feats.INCEPTION_FILENAMES[0]


def test_evaluate_generator_of_run_uses_the_run_config():
    from negaug.experiment.evaluate import evaluate_generator_of_run

    config = SimpleNamespace(
        data=SimpleNamespace(name="ring", root=None, download=False, image_size=None, split="train",
                             options={"num_samples": 300}),
        eval=SimpleNamespace(metrics=[], num_samples=150, feature_extractor="auto", inception_weights=None, seed=3,
                             force=False))
    results = evaluate_generator_of_run(config, _PointGenerator(), data.build("ring", num_samples=300))
    assert set(results) == {"toy_negative_fraction", "toy_high_quality", "toy_modes_covered", "kde"}
    protocol = results["kde"]["protocol"]
    assert protocol["reference"] == "ring/val" and protocol["num_generated"] == 150 and protocol["seed"] == 3


def test_evaluate_generator_takes_your_own_generator():
    """A plain callable of latents (no sample_latent): latent_dim= tells the latent size; the samples
    equal those of the same network wrapped as a negaug generator."""
    net = torch.nn.Sequential(torch.nn.Linear(2, 2))
    reference = data.build("ring", num_samples=300)
    mine = evaluate_generator(lambda z: net(z), reference, ["kde"], num_samples=100, seed=3, latent_dim=2)
    assert mine["kde"]["protocol"]["num_generated"] == 100
    fake, _ = generate_samples(lambda z: net(z), 100, seed=3, latent_dim=2)
    with torch.no_grad():
        assert torch.equal(fake, net(torch.randn(100, 2, generator=torch.Generator().manual_seed(3))))
    with pytest.raises(ValueError, match="pass latent_dim="):
        evaluate_generator(lambda z: net(z), reference, ["kde"], num_samples=10)


def test_protocol_records_the_negaug_version_that_ran_not_stale_install_metadata():
    """Regression: an editable install made in 0.2.0 recorded "negaug": "0.2.0" in eval.json
    for numbers computed by 0.3.0 (the version came from package metadata)."""
    import negaug
    from negaug.metrics.protocol import library_versions

    versions = library_versions()
    assert versions["negaug"] == negaug.__version__
    assert set(versions) == {"negaug", "negaug_commit", "negaug_dirty", "torch", "torchmetrics", "torch-fidelity",
                             "numpy", "scipy", "torch_threads"}
