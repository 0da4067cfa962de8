"""Evaluate a generator or a set of samples against reference data: the metric registry.

    results = evaluate_generator(G, test_set, metrics=["fid", "kid", "pr"], num_samples=10000)
    results["fid[classifier:mnist5k-1a2b3c4d]"] == {"metric": "fid", "value": 12.3,
        "higher_is_better": False, "protocol": {...}}

Result keys: feature-based metrics are named ``<metric>`` only in the standard TF-Inception
feature space ("fid", "kid", "is", "pr"); in any other space the key carries it:
``fid[classifier:mnist5k-1a2b3c4d]``, ``kid[raw]``, ``fid[inception:0badc0de]`` (non-standard
weights). So an offline number is never reported as "FID": ``find_result(results, "fid")`` finds
only the standard one, ``find_metric(results, "fid")`` an FID in whatever space was used.
Other metrics: "kde", "dots", "toy_negative_fraction", "toy_high_quality", "toy_modes_covered";
"mmd" (Gaussian-kernel MMD^2, on request) is keyed by its feature space like "kid"; "nnd" (Arora et
al.'s neural-net distance, on request) works on the samples themselves, with a fresh critic.

A value that would mislead is refused with a one-line ValueError naming the fix (see
`negaug.metrics.trust`): features near chance, a reference the feature network was trained on,
too few samples for FID. ``force=True`` computes it anyway, with the problems in the result's
"warnings". The offline classifier learns from ``train_data``, by default the reference's own
training split (datasets made by ``negaug.data.build``), never from the reference.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import Tensor

from negaug import distributed
from negaug.data import other_split, toy_mode_assignment, toy_negative_region_mask
from negaug.losses.mmd import mmd2
from negaug.metrics import dots as dots_metrics
from negaug.metrics import features as feats
from negaug.metrics import trust
from negaug.metrics.fid import fid_from_features
from negaug.metrics.inception_score import inception_score
from negaug.metrics.kde import kde_log_likelihood
from negaug.metrics.kid import kernel_distance
from negaug.metrics.nn_distance import neural_net_distance
from negaug.metrics.precision_recall import precision_recall
from negaug.metrics.protocol import library_versions
from negaug.metrics.toy import toy_quality
from negaug.registry import Registry, check_int

METRICS = Registry("metric")
FEATURE_METRICS = ("fid", "kid", "is", "pr")
# KID's value is the raw MMD^2 estimate, as torch-fidelity (kid_subset_mean) and clean-fid return it;
# many papers print it multiplied by 1000 (or 100): divide theirs before comparing.
KID_SCALE = "raw MMD^2 (as torch-fidelity and clean-fid report it; papers often print KID x 1000)"


@dataclass
class EvalSettings:
    """Everything an evaluation depends on besides the samples, the reference and the seed."""

    feature_extractor: str = "auto"  # auto: inception if its weights are found, else classifier (2-D toys: raw)
    inception_weights: str | None = None  # TF-Inception weights file; None: $NEGAUG_INCEPTION_WEIGHTS / torch hub cache
    batch_size: int = 250  # images per generator / feature-extractor call (results do not depend on it)
    device: Any = "cpu"
    progress: bool = False  # tqdm bars on stderr
    cache_dir: str | None = None  # classifier cache; None: $NEGAUG_CACHE or ~/.cache/negaug
    data_name: str | None = None  # names the classifier and the reference; None: the reference's .name
    reference_split: str = "test"  # recorded in the protocol
    train_data: Any = None  # training images of the classifier features; None: the reference's training split
    classifier_epochs: int = 5
    force: bool = False  # compute flagged values anyway (near-chance features, ...), with "warnings"
    pr_neighbours: int = 3  # k of the k-NN radii (Kynkaanniemi et al. 2019)
    kid_subsets: int = 100
    kid_subset_size: int = 1000  # capped at the smaller sample count (then one estimate on all samples)
    is_splits: int = 10
    dots_count: int | None = None  # the trained count; None: the most common count in the reference
    dots_threshold: float = 1.0  # colour distance from the background that makes a dot pixel
    dots_min_area: int = 2  # smaller components are specks, not dots
    toy_negative_kind: str = "both"  # negative region of the 2-D toys: between | center | both
    toy_num_std: float = 3.0  # a high-quality sample lies within this many std of a mode
    toy_min_share: float = 0.01  # a mode is covered when it gets this share of all samples
    mmd_max_samples: int = 2000  # rows per set for "mmd" (a seeded subset: memory grows as its square)
    mmd_bandwidth_factors: tuple = (0.5, 1.0, 2.0)  # "mmd" bandwidths: these times the real rows' median distance
    nnd_width: int = 64  # "nnd" critic: MLP hidden units (Arora et al.'s neural-net distance)
    nnd_depth: int = 2  # "nnd" critic: hidden layers
    nnd_steps: int = 200  # "nnd" critic: Adam steps on the fit halves
    nnd_clip: float = 0.01  # "nnd" critic: every parameter clipped to [-clip, clip] (WGAN)


def make_settings(**options: Any) -> EvalSettings:
    """EvalSettings from keyword options; an unknown name is a ValueError naming the valid ones."""
    valid = {f.name for f in fields(EvalSettings)}
    unknown = sorted(set(options) - valid)
    if unknown:
        raise ValueError(f"unknown evaluation option '{unknown[0]}'; valid: {', '.join(sorted(valid))}")
    return EvalSettings(**options)


def is_toy(data: Any) -> bool:
    """2-D point data (the ring / grid toys) rather than images."""
    points = data if isinstance(data, Tensor) else getattr(data, "points", None)
    return points is not None and points.dim() == 2


def reference_tensor(reference: Any) -> Tensor:
    """Images (N, C, H, W) in [-1, 1] or points (N, D) of a tensor or an in-memory dataset."""
    if isinstance(reference, Tensor):
        return reference.float()
    for attribute in ("points", "images"):
        if hasattr(reference, attribute):
            return getattr(reference, attribute).float()
    return torch.cat([reference.get_batch(torch.arange(s, min(s + 1024, len(reference))))[0]
                      for s in range(0, len(reference), 1024)])


def _sample_shape(reference: Any) -> tuple[int, ...]:
    if isinstance(reference, Tensor):
        return tuple(reference.shape[1:])
    return tuple(reference.get_batch(torch.arange(1))[0].shape[1:])


def find_result(results: dict[str, dict], key: str) -> dict | None:
    """The result under exactly ``key``: "fid" is only ever the standard TF-Inception FID,
    "fid[classifier:mnist5k-1a2b3c4d]" an offline one; None when absent."""
    return results.get(key)


def find_metric(results: dict[str, dict], metric: str) -> dict | None:
    """The one result of ``metric`` (a base name such as "fid", or an exact key) in whatever
    feature space it was computed; None when absent or ambiguous."""
    if metric in results:
        return results[metric]
    matches = [r for r in results.values() if r.get("metric") == metric]
    return matches[0] if len(matches) == 1 else None


class Evaluation:
    """One evaluation: samples, reference, settings; features are extracted once, on first use."""

    def __init__(self, fake: Tensor, reference: Any, seed: int, settings: EvalSettings):
        self.fake, self.reference, self.seed, self.settings = fake, reference, seed, settings
        self.data_name = settings.data_name or getattr(reference, "name", "") or "reference"
        self.space_flags = trust.Flags(settings.force)  # problems of the feature space itself
        self._extractor: feats.FeatureExtractor | None = None
        self._features: dict[str, tuple[Tensor, Tensor | None]] | None = None
        self._trained_on = "train_data"

    def extractor(self) -> feats.FeatureExtractor:
        """The feature extractor, built and checked (near chance, trained on the reference) once."""
        if self._extractor is None:
            extractor, self._trained_on = build_extractor(self.settings, self.reference, self.data_name,
                                                          self.space_flags)
            if extractor.name == "classifier":
                if extractor.meta.get("cache_note"):  # a damaged cache entry was trained again: say so
                    self.space_flags.warnings.append(extractor.meta["cache_note"])
                trust.check_feature_network(extractor.meta, self.space_flags)
                trust.check_reference_overlap(self._shared_with_training(extractor), self.space_flags)
            self._extractor = extractor
        return self._extractor

    def _shared_with_training(self, extractor: feats.ClassifierFeatures) -> float:
        """Share of the reference images that trained the classifier: compared image by image
        for in-memory references; a lazy (on-disk) one is not decoded twice, so it counts as
        shared only when it was built exactly like the training data."""
        reference = self.reference
        if isinstance(reference, Tensor) or hasattr(reference, "images"):
            images = reference_tensor(reference)
            return trust.shared_fraction(trust.fingerprints(images), extractor.training_fingerprints)
        recipe = getattr(reference, "build_options", None)
        same = recipe is not None and recipe == getattr(self.settings.train_data, "build_options", None)
        return 1.0 if same or self._trained_on == "the reference itself" else 0.0

    def features(self) -> dict[str, tuple[Tensor, Tensor | None]]:
        """{"fake": (features, logits), "real": (features, logits)}, computed once."""
        if self._features is None:
            s, extractor = self.settings, self.extractor()
            self._features = {
                name: feats.extract_features(extractor, data, s.batch_size, s.device, s.progress, f"{name} features")
                for name, data in (("fake", self.fake), ("real", self.reference))
            }
        return self._features

    def key(self, metric: str) -> str:
        identifier = self.extractor().identifier
        return metric if identifier == "inception" else f"{metric}[{identifier}]"

    def protocol(self, with_features: bool = True, **extra: Any) -> dict[str, Any]:
        protocol = {
            "num_real": len(self.reference), "num_generated": int(self.fake.shape[0]),
            "reference": f"{self.data_name}/{self.settings.reference_split}", "seed": self.seed,
            "sample_shape": list(self.fake.shape[1:]), "versions": library_versions(),
        }
        if with_features:
            protocol["features"] = {"resize": "none", **self.extractor().protocol(), **self._classifier_protocol()}
        return {**protocol, **extra}

    def _classifier_protocol(self) -> dict[str, Any]:
        """What the classifier was trained on and its accuracy on the labelled reference (its
        test accuracy when the reference is the test split)."""
        if self.extractor().name != "classifier":
            return {}
        protocol: dict[str, Any] = {"trained_on": self._trained_on}
        logits, labels = self.features()["real"][1], getattr(self.reference, "labels", None)
        if logits is not None and labels is not None:
            protocol["reference_accuracy"] = float((logits.argmax(dim=1) == labels).float().mean())
        return protocol

    def result(self, metric: str, value: float, higher_is_better: bool, protocol: dict,
               warnings: list[str] | None = None, **extra: Any) -> dict:
        """One result; feature-based ones (protocol with "features") carry the feature space's
        warnings, plus ``warnings`` of the metric itself."""
        found = (self.space_flags.warnings if "features" in protocol else []) + (warnings or [])
        return {"metric": metric, "value": float(value), "higher_is_better": higher_is_better, **extra,
                **({"warnings": list(found)} if found else {}), "protocol": protocol}


def build_extractor(settings: EvalSettings, reference: Any, data_name: str,
                    flags: trust.Flags | None = None) -> tuple[feats.FeatureExtractor, str]:
    """The feature extractor named by ``settings.feature_extractor`` ("auto" resolved here) and
    what a classifier was trained on. The classifier learns from ``settings.train_data``, else
    the reference's training split; never silently from the reference itself."""
    name = settings.feature_extractor
    if name == "auto" and is_toy(reference):
        name = "raw"  # 2-D points: no image network applies
    elif name == "auto":
        found = settings.inception_weights or feats.find_inception_weights()
        name = "inception" if found else "classifier"
    if name == "inception":
        return feats.build("inception", weights=settings.inception_weights), "none"
    if name != "classifier":
        return feats.build(name), "none"
    data, trained_on = settings.train_data, "train_data"
    if data is None:
        data, trained_on = other_split(reference, "train"), "the reference's training split"
    if data is None:
        (flags or trust.Flags(False)).report(
            "the offline classifier features need training images other than the reference",
            "pass train_data= (e.g. negaug.data.build(NAME, split='train')) with a held-out reference, "
            "or feature_extractor='inception'")
        data, trained_on = reference, "the reference itself"
    extractor = feats.build("classifier", data=data, data_name=data_name, cache_dir=settings.cache_dir,
                            progress=settings.progress, epochs=settings.classifier_epochs)
    return extractor, trained_on


# --- metrics: each takes the context and returns {result key: result} ----------------------------

@METRICS.register("fid")
def _fid(evaluation: Evaluation) -> dict[str, dict]:
    f = evaluation.features()
    real, fake = f["real"][0], f["fake"][0]
    flags = trust.Flags(evaluation.settings.force)
    trust.check_fid_sizes(real.shape[0], fake.shape[0], real.shape[1], evaluation.extractor().identifier, flags)
    value = fid_from_features(real, fake)
    return {evaluation.key("fid"): evaluation.result("fid", value, False, evaluation.protocol(), flags.warnings)}


@METRICS.register("kid")
def _kid(evaluation: Evaluation) -> dict[str, dict]:
    """Mean and std over random subsets; when the subset size reaches the smaller sample count
    every subset would be the same, so one estimate on all samples is reported (std None)."""
    f, s = evaluation.features(), evaluation.settings
    real, fake = f["real"][0], f["fake"][0]
    size = min(s.kid_subset_size, real.shape[0], fake.shape[0])
    whole = size >= min(real.shape[0], fake.shape[0])
    generator = torch.Generator().manual_seed(evaluation.seed)
    mean, std = kernel_distance(real, fake, 1 if whole else s.kid_subsets, size, generator)
    protocol = evaluation.protocol(kid_subsets=1 if whole else s.kid_subsets, kid_subset_size=size,
                                   kernel="(x.y/F + 1)^3", scale=KID_SCALE)
    if whole:
        protocol["kid_note"] = f"one estimate on {size} samples per set: subsets of the whole set would all be equal"
    return {evaluation.key("kid"): evaluation.result("kid", mean, False, protocol, std=None if whole else std)}


@METRICS.register("mmd")
def _mmd(evaluation: Evaluation) -> dict[str, dict]:
    """Unbiased MMD^2 with a mixture of Gaussian kernels in the feature space of fid / kid, on at
    most ``mmd_max_samples`` seeded rows per set; bandwidths: the median pairwise distance of the
    real rows times ``mmd_bandwidth_factors`` (each recorded in the protocol)."""
    f, s = evaluation.features(), evaluation.settings
    generator = torch.Generator().manual_seed(evaluation.seed)
    real, fake = (rows[torch.randperm(rows.shape[0], generator=generator)[: s.mmd_max_samples].to(rows.device)].double()
                  for rows in (f["real"][0], f["fake"][0]))
    if min(real.shape[0], fake.shape[0]) < 2:
        raise ValueError("metric 'mmd' needs at least 2 real and 2 generated samples")
    median = float(torch.pdist(real).median())
    sigmas = [median * factor for factor in s.mmd_bandwidth_factors]
    if not median > 0:
        raise ValueError("metric 'mmd': the real features are all equal (median distance 0); no bandwidth fits")
    value = float(mmd2(real, fake, sigmas, unbiased=True))
    protocol = evaluation.protocol(mmd_samples=[real.shape[0], fake.shape[0]], kernel="sum of exp(-d^2 / (2 s^2))",
                                   estimator="unbiased", sigmas=sigmas, median_distance=median,
                                   bandwidth_factors=list(s.mmd_bandwidth_factors))
    return {evaluation.key("mmd"): evaluation.result("mmd", value, False, protocol)}


@METRICS.register("nnd")
def _nnd(evaluation: Evaluation) -> dict[str, dict]:
    """Arora et al.'s neural-net distance with a fresh weight-clipped MLP critic on the samples
    themselves (pixels or points, flattened): fit on seeded halves, reported on the other halves."""
    s = evaluation.settings
    real, fake = reference_tensor(evaluation.reference), evaluation.fake.float()
    found = neural_net_distance(real, fake, s.nnd_width, s.nnd_depth, s.nnd_steps, s.nnd_clip, seed=evaluation.seed)
    protocol = evaluation.protocol(False, nnd=found["protocol"])
    return {"nnd": evaluation.result("nnd", found["value"], False, protocol, train_value=found["train_value"])}


@METRICS.register("is")
def _is(evaluation: Evaluation) -> dict[str, dict]:
    logits = evaluation.features()["fake"][1]
    if logits is None:
        raise ValueError(f"metric 'is' needs class probabilities, which the '{evaluation.extractor().identifier}' "
                         "features lack (raw features, or a classifier trained on unlabeled data)")
    mean, std = inception_score(logits.double().softmax(dim=1), evaluation.settings.is_splits)
    protocol = evaluation.protocol(is_splits=evaluation.settings.is_splits, num_classes=int(logits.shape[1]))
    return {evaluation.key("is"): evaluation.result("is", mean, True, protocol, std=std)}


@METRICS.register("pr")
def _pr(evaluation: Evaluation) -> dict[str, dict]:
    """Precision and recall at equal sizes: k-NN radii shrink as a set grows, so the larger set is
    subsampled (seeded) to the size of the smaller one; the sizes used are recorded."""
    f, k = evaluation.features(), evaluation.settings.pr_neighbours
    real, fake = f["real"][0], f["fake"][0]
    size = min(real.shape[0], fake.shape[0])
    generator = torch.Generator().manual_seed(evaluation.seed)
    real = real[torch.randperm(real.shape[0], generator=generator)[:size]] if real.shape[0] > size else real
    fake = fake[torch.randperm(fake.shape[0], generator=generator)[:size]] if fake.shape[0] > size else fake
    precision, recall = precision_recall(real, fake, k)
    f_score = 2 * precision * recall / max(precision + recall, 1e-12)
    protocol = evaluation.protocol(k=k, num_real_used=size, num_generated_used=size)
    result = evaluation.result("pr", f_score, True, protocol, precision=precision, recall=recall)
    return {evaluation.key("pr"): result}


@METRICS.register("kde")
def _kde(evaluation: Evaluation) -> dict[str, dict]:
    """Parzen log-likelihood of the reference under the samples; the reference is split in two
    halves (seeded): bandwidth chosen on one, value reported on the other."""
    real, fake, toy = reference_tensor(evaluation.reference), evaluation.fake.float(), is_toy(evaluation.reference)
    if not toy:  # pixels in [0, 1], the scale of the published MNIST / TFD Parzen numbers
        real, fake = (real + 1) / 2, (fake + 1) / 2
    order = torch.randperm(real.shape[0], generator=torch.Generator().manual_seed(evaluation.seed))
    half = real.shape[0] // 2
    kde = kde_log_likelihood(fake.flatten(1), real[order[:half]].flatten(1), real[order[half:]].flatten(1))
    space = "points" if toy else "pixels in [0, 1], flattened"
    protocol = evaluation.protocol(False, space=space, num_validation=half, num_test=real.shape[0] - half,
                            kernel="gaussian", bandwidth_grid="0.01..2 x sample std, 25 log-spaced")
    value = kde.pop("value")
    return {"kde": evaluation.result("kde", value, True, protocol, **kde)}


@METRICS.register("dots")
def _dots(evaluation: Evaluation) -> dict[str, dict]:
    """Share of generated images with exactly the trained number of dots, and the histograms."""
    s = evaluation.settings

    def count(images: Tensor) -> Tensor:
        return dots_metrics.count_dots(images, threshold=s.dots_threshold, min_area=s.dots_min_area)

    fake_counts, real_counts = count(evaluation.fake), count(reference_tensor(evaluation.reference))
    target = s.dots_count if s.dots_count is not None else int(real_counts.mode().values)
    protocol = evaluation.protocol(False, target_count=target, threshold=s.dots_threshold, min_area=s.dots_min_area,
                            background="per-image median colour", connectivity=8)
    value = dots_metrics.fraction_with_count(fake_counts, target)
    return {"dots": evaluation.result(
        "dots", value, True, protocol, histogram=dots_metrics.count_histogram(fake_counts),
        mean_count=float(fake_counts.float().mean()), target_count=target,
        reference_fraction=dots_metrics.fraction_with_count(real_counts, target),
        reference_histogram=dots_metrics.count_histogram(real_counts))}


@METRICS.register("toy")
def _toy(evaluation: Evaluation) -> dict[str, dict]:
    """Negative-region share, high-quality share and covered modes of 2-D toy samples."""
    if not hasattr(evaluation.reference, "centers"):
        raise ValueError("metric 'toy' needs a ring or grid toy dataset as the reference")
    s, points = evaluation.settings, evaluation.fake.float()
    quality = toy_quality(toy_negative_region_mask(evaluation.reference, points, s.toy_negative_kind),
                          toy_mode_assignment(evaluation.reference, points, s.toy_num_std),
                          evaluation.reference.num_classes, s.toy_min_share)
    protocol = evaluation.protocol(False, negative_kind=s.toy_negative_kind, num_std=s.toy_num_std,
                            min_share=s.toy_min_share)
    return {
        "toy_negative_fraction": evaluation.result("toy_negative_fraction", quality["negative_fraction"], False, protocol),
        "toy_high_quality": evaluation.result("toy_high_quality", quality["high_quality_fraction"], True, protocol),
        "toy_modes_covered": evaluation.result("toy_modes_covered", quality["modes_covered"], True, protocol,
                                        num_modes=quality["num_modes"], mode_counts=quality["mode_counts"]),
    }


# --- entry points ------------------------------------------------------------------------------

# What each metric reports, by result name (`find_result` and eval.best_metric use these).
RESULT_NAMES = {"toy": ("toy_negative_fraction", "toy_high_quality", "toy_modes_covered")}


def result_names(metric: str) -> tuple[str, ...]:
    """The result names metric `metric` reports (itself, except "toy": its three measures)."""
    return RESULT_NAMES.get(metric, (metric,))


def default_metrics(reference: Any, data_name: str | None = None) -> list[str]:
    """2-D toys: toy metrics + KDE; dots: the dot count (no feature network can tell dot images
    apart by their number); other images: fid, kid, is (skipped when the features have no class
    probabilities), pr."""
    if is_toy(reference):
        return ["toy", "kde"]
    if (data_name or getattr(reference, "name", "")) == "dots":
        return ["dots"]
    return list(FEATURE_METRICS)


def evaluate_samples(fake: Tensor, reference: Any, metrics: list[str] | None = None, seed: int = 0,
                     **options: Any) -> dict[str, dict]:
    """Evaluate generated samples (N, C, H, W) in [-1, 1] (or 2-D points (N, 2)) against a
    reference (tensor or dataset). ``options``: fields of ``EvalSettings``. Returns
    {result key: {"metric", "value", "higher_is_better", extras..., "protocol"}}."""
    if not isinstance(fake, Tensor) or not fake.is_floating_point():
        raise ValueError(f"evaluate_samples fake must be a float tensor of samples, got {type(fake).__name__}")
    check_int("evaluate_samples seed", seed)
    settings = make_settings(**options)
    evaluation = Evaluation(fake, reference, seed, settings)
    sample_shape = _sample_shape(reference)
    if tuple(fake.shape[1:]) != sample_shape:
        raise ValueError(f"generated samples have shape {tuple(fake.shape[1:])} but the reference {sample_shape}")
    requested = list(metrics) if metrics else default_metrics(reference, evaluation.data_name)
    functions = [(name, METRICS.get(name)) for name in requested]  # unknown names fail before any work
    results: dict[str, dict] = {}
    for name, function in functions:
        if name == "is" and not metrics and evaluation.extractor().num_logits == 0:
            continue  # a default, not asked for: skip where the features have no classes
        results.update(function(evaluation))
    return results


def check_feature_space(reference: Any, metrics: list[str] | None = None, **options: Any) -> list[str]:
    """Build and check the feature space that evaluating ``metrics`` against ``reference`` would
    use, before any sample exists (e.g. before training): a refusal is raised now; with
    ``force=True`` its warnings are returned. Trains (and caches) the offline classifier."""
    settings = make_settings(**options)
    evaluation = Evaluation(torch.empty(0), reference, 0, settings)
    requested = list(metrics) if metrics else default_metrics(reference, evaluation.data_name)
    if any(name in (*FEATURE_METRICS, "mmd") for name in requested):
        evaluation.extractor()
    return list(evaluation.space_flags.warnings)


def generate_samples(generator: Any, num_samples: int, seed: int = 0, num_classes: int = 0,
                     batch_size: int = 250, device: Any = "cpu", latent_dim: int | None = None
                     ) -> tuple[Tensor, Tensor | None]:
    """``num_samples`` samples of ``generator`` (CPU float32) and their labels (uniform over
    ``num_classes``; None when 0).

    ``generator``: negaug's ``G(z, y)`` with ``G.sample_latent``, or any callable of standard
    normal latents (``G(z)``, or ``G(z, y)`` when ``num_classes`` > 0) whose latent size is
    ``latent_dim`` or ``G.latent_dim`` (your own generator). Latents and labels are drawn at once
    from a CPU generator seeded with ``seed``, so the samples do not depend on ``batch_size`` or
    ``device``. A module runs in eval mode; its previous mode is restored. Under ``torchrun`` (the
    same call on every rank) each rank generates its share of whole batches of those latents and
    every rank returns all samples, gathered in order."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    rng = torch.Generator().manual_seed(seed)
    if hasattr(generator, "sample_latent"):
        latents = generator.sample_latent(num_samples, generator=rng, device="cpu")
    else:
        size = latent_dim if latent_dim is not None else getattr(generator, "latent_dim", None)
        if not isinstance(size, int) or size < 1:
            raise ValueError("your generator has no sample_latent(); pass latent_dim= (the size of its standard "
                             "normal input) or give it a latent_dim attribute")
        latents = torch.randn(num_samples, size, generator=rng)
    labels = torch.randint(num_classes, (num_samples,), generator=rng) if num_classes > 0 else None
    share = distributed.batch_shard(num_samples, batch_size)  # under torchrun: this rank's whole batches
    first, stop = share or (0, num_samples)

    def call(start: int) -> Tensor:
        end = min(start + batch_size, stop)
        z = latents[start:end].to(device)
        out = generator(z) if labels is None else generator(z, labels[start:end].to(device))
        return out.float().cpu()

    was_training = getattr(generator, "training", None)
    if was_training is not None:
        generator.eval()
    try:
        with torch.inference_mode():
            samples = torch.cat([call(start) for start in range(first, stop, batch_size)])
    finally:
        if was_training is not None:
            generator.train(was_training)
    return (samples if share is None else distributed.all_gather_cat(samples)), labels


def evaluate_generator(generator: Any, reference: Any, metrics: list[str] | None = None,
                       num_samples: int | None = None, seed: int = 0, num_classes: int | None = None,
                       latent_dim: int | None = None, **options: Any) -> dict[str, dict]:
    """Sample ``num_samples`` (None: as many as the reference holds, so both sets have equal
    size) from ``generator`` (negaug's ``G(z, y)`` with ``G.sample_latent``, or
    your own callable of standard normal latents of size ``latent_dim``; labels uniform when
    ``num_classes`` > 0, default ``G.num_classes``) and evaluate them against ``reference`` (the
    test split: a dataset or a tensor in [-1, 1]). ``options``: fields of ``EvalSettings``
    (feature_extractor, inception_weights, batch_size, device, progress, cache_dir, train_data...).
    Returns {result key: {"metric", "value", "higher_is_better", extras..., "protocol"}}."""
    settings = make_settings(**options)  # fail on a typo before sampling
    num_samples = len(reference) if num_samples is None else num_samples
    num_classes = int(getattr(generator, "num_classes", 0)) if num_classes is None else num_classes
    fake, _ = generate_samples(generator, num_samples, seed, num_classes, settings.batch_size, settings.device,
                               latent_dim)
    return record_sampling(evaluate_samples(fake, reference, metrics, seed, **options), num_classes)


def record_sampling(results: dict[str, dict], num_classes: int) -> dict[str, dict]:
    """Add how the generator's labels were drawn to every result's protocol (in place)."""
    labels = f"uniform over {num_classes} classes" if num_classes else "none (unconditional)"
    for result in results.values():
        result["protocol"]["generator_labels"] = labels
    return results
