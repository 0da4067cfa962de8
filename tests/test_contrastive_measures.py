"""The measures of `negaug repro contrastive` beyond the probes: Theorem 2's held-out separator
AUROC, Figure 9's paired distance with its scale and ratio, the split of the held-out images, and
the tables' labels, families and verdicts (on hand-made per-seed numbers, no training)."""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from negaug.contrastive import separator_auroc
from negaug.experiment.pretrain_config import load_pretrain_config
from negaug.experiment.probe import nda_distances
from negaug.experiment.separation import initial_separation, split_images
from negaug.repro import contrastive, stats
from negaug.repro.common import Study


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


# --- separator AUROC ------------------------------------------------------------------------------

def _gaussians(n: int, shift: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    data = torch.randn(n, 4, generator=g)
    return data, torch.randn(n, 4, generator=g) + shift


def test_perfectly_separable_representations_give_auroc_one():
    fit_data, fit_nda = _gaussians(100, 0.0, 0)[0], _gaussians(100, 0.0, 1)[0] + 20.0
    eval_data, eval_nda = _gaussians(50, 0.0, 2)[0], _gaussians(50, 0.0, 3)[0] + 20.0
    result = separator_auroc(fit_data, fit_nda, eval_data, eval_nda, epochs=20, generator=torch.Generator().manual_seed(0))
    assert result["value"] == 1.0 and result["fit_auroc"] == 1.0
    assert result["protocol"]["num_fit"] == [100, 100] and result["protocol"]["num_eval"] == [50, 50]


def test_nda_scores_high_and_swapping_the_measured_sides_gives_one_minus_the_auroc():
    """The same fitted classifier (same fit parts, same batch order) measured with the held-out
    sides swapped scores 1 - AUROC exactly (ties count a half on both sides)."""
    fit_data, fit_nda = _gaussians(200, 0.7, 4)
    eval_data, eval_nda = _gaussians(200, 0.7, 5)
    forward = separator_auroc(fit_data, fit_nda, eval_data, eval_nda, epochs=10, generator=torch.Generator().manual_seed(1))
    swapped = separator_auroc(fit_data, fit_nda, eval_nda, eval_data, epochs=10, generator=torch.Generator().manual_seed(1))
    assert 0.75 < forward["value"] < 0.95  # Gaussians 0.7 apart in each of 4 dims: Bayes AUROC Phi(1.4/sqrt(2)) = 0.84
    assert forward["value"] + swapped["value"] == pytest.approx(1.0, abs=1e-12)
    assert forward["fit_auroc"] == swapped["fit_auroc"]


def test_identical_representations_give_exactly_one_half():
    """x and NDA(x) mapped to the same point: every score appears once in each class, so the AUROC
    is 0.5 exactly (ties count a half), whatever the classifier learned."""
    data = torch.randn(60, 3, generator=torch.Generator().manual_seed(6))
    result = separator_auroc(data[:30], data[:30].clone(), data[30:], data[30:].clone(), epochs=5,
                             generator=torch.Generator().manual_seed(0))
    assert result["value"] == pytest.approx(0.5, abs=1e-12) and result["fit_auroc"] == pytest.approx(0.5, abs=1e-12)


def test_two_draws_of_one_distribution_give_about_one_half_on_held_out_samples():
    fit_data, fit_nda = _gaussians(1000, 0.0, 7)
    eval_data, eval_nda = _gaussians(1000, 0.0, 8)
    value = separator_auroc(fit_data, fit_nda, eval_data, eval_nda, epochs=10, generator=torch.Generator().manual_seed(0))["value"]
    assert 0.45 < value < 0.55  # the AUROC's standard error at 1000 vs 1000 is about 0.013


def test_same_generator_state_same_auroc_and_bad_shapes_name_the_part():
    fit_data, fit_nda = _gaussians(80, 0.5, 9)
    runs = [separator_auroc(fit_data, fit_nda, fit_data, fit_nda, epochs=3, generator=torch.Generator().manual_seed(2))
            for _ in range(2)]
    assert runs[0]["value"] == runs[1]["value"]
    with pytest.raises(ValueError, match="eval_nda must be"):
        separator_auroc(fit_data, fit_nda, fit_data, torch.zeros(5, 3))
    with pytest.raises(ValueError, match="fit_nda must be"):
        separator_auroc(fit_data, torch.zeros(0, 4), fit_data, fit_nda)


# --- the held-out split ---------------------------------------------------------------------------

def test_split_images_is_disjoint_covering_seeded_and_sized_by_the_fraction():
    fit, held = split_images(10, 0.5, seed=0)
    assert len(fit) == 5 and len(held) == 5
    assert sorted(torch.cat([fit, held]).tolist()) == list(range(10))
    again = split_images(10, 0.5, seed=0)
    assert torch.equal(again[0], fit) and torch.equal(again[1], held)
    assert not torch.equal(split_images(10, 0.5, seed=1)[0], fit)
    assert len(split_images(7, 0.3, seed=0)[0]) == 2  # round(2.1)
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        split_images(10, 1.0, seed=0)
    with pytest.raises(ValueError, match="more images"):
        split_images(1, 0.5, seed=0)


# --- Figure 9's paired measure and its scale ------------------------------------------------------

class _Images:
    def __init__(self, images: torch.Tensor):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def get_batch(self, index: torch.Tensor):
        return self.images[index], torch.zeros(len(index), dtype=torch.long)


def test_the_scale_is_the_distance_to_the_image_before_in_the_split_order_hand_computed():
    """Flattened 2x2 images x0 = e0, x1 = e1, x2 = e0 + e1; the scale pairs x_i with x_{i-1}:
    (x0, x2), (x1, x0), (x2, x1): cosine distances 1 - 1/sqrt(2), 1, 1 - 1/sqrt(2)."""
    images = torch.tensor([[1.0, 0, 0, 0], [0, 1, 0, 0], [1, 1, 0, 0]]).view(3, 1, 2, 2)
    model = SimpleNamespace(encoder_q=nn.Flatten(), head_q=nn.Identity())
    config = load_pretrain_config("mnist", ["nda.transform=none"])
    out = nda_distances(config, model, _Images(images), seed=0, batch_size=2, device=torch.device("cpu"))
    expected = [1 - 1 / math.sqrt(2), 1.0, 1 - 1 / math.sqrt(2)]
    for space in ("features", "embedding"):
        summary, values = out[f"{space}/other_image"]
        torch.testing.assert_close(values, torch.tensor(expected), rtol=0, atol=1e-6)
        assert summary["value"] == pytest.approx((3 - math.sqrt(2)) / 3, abs=1e-6)


def test_measures_take_the_ratio_of_the_paired_distance_to_its_scale_in_each_space():
    results = {"linear_probe": 0.9, "knn": 0.8, "cosine_distance/embedding/jigsaw": 0.3,
               "cosine_distance/embedding/other_image": 0.6, "cosine_distance/features/jigsaw": 0.05,
               "cosine_distance/features/other_image": 0.2}
    entry = {"step": 7, "results": {key: {"value": value, "protocol": {"k": key}} for key, value in results.items()}}
    separation = {"separator_auroc/features/jigsaw": {"value": 0.75, "protocol": {"split": "test"}}}
    record = contrastive.measures(entry, separation, seed=3, transforms=["jigsaw"])
    assert record["distance_ratio/embedding/jigsaw"] == pytest.approx(0.5, abs=1e-12)
    assert record["distance_ratio/features/jigsaw"] == pytest.approx(0.25, abs=1e-12)
    assert record["separator_auroc/features/jigsaw"] == 0.75 and record["seed"] == 3 and record["step"] == 7
    assert record["protocols"]["separator_auroc/features/jigsaw"] == {"split": "test"}


# --- tables, families, verdicts and labels --------------------------------------------------------

def _record(offset: float, seed: int, transforms: list[str]) -> dict:
    """A per-seed record: every measure = base + offset + a seed wiggle of +-0.01."""
    wiggle = (seed - 1) * 0.01
    record = {"seed": seed, "step": 600, "protocols": {}}
    for row in contrastive.measure_rows(transforms):
        record[row.key] = 0.5 + offset + wiggle
    return record


def _results(size: str, offsets: dict[str, float]):
    per_seed = {task: {arm: [_record(offsets[arm], seed, list(contrastive.NDA_ARMS)) for seed in range(3)]
                       for arm in ("baseline", *contrastive.NDA_ARMS)} for task in ("mnist", "dots")}
    study = Study(out_dir="/tmp/unused", size=size, seeds=[0, 1, 2])
    return contrastive.summarize(study, per_seed, trained=[])


def test_families_holm_and_verdicts_in_the_papers_direction_at_the_full_size():
    results = _results("full", {"baseline": 0.0, "jigsaw": 0.2, "cutout": -0.2, "mixup": 0.001})
    families = results["families"]["mnist"]
    assert families["claim"] == ["linear_probe"] and "linear_probe" in results["families"]["dots"]["supporting"]
    assert "cosine_distance/embedding/other_image" not in families["supporting"]  # the scale: descriptive
    claim = results["tables"]["mnist"]["linear_probe"]
    # three comparisons in the claim family: Holm multiplies the smallest p by 3
    p_jigsaw = stats.welch([0.49, 0.5, 0.51], [0.69, 0.7, 0.71])["p"]
    assert claim["jigsaw"]["welch_p"] == pytest.approx(p_jigsaw, rel=1e-9)
    assert claim["jigsaw"]["holm_p"] == pytest.approx(min(1.0, 3 * p_jigsaw), rel=1e-9)
    assert [claim[a]["verdict"] for a in ("jigsaw", "cutout", "mixup")] == ["reproduced", "opposite", "direction only"]
    auroc = results["tables"]["dots"]["separator_auroc/features/mixup"]
    assert auroc["jigsaw"]["family"] == "supporting" and auroc["jigsaw"]["verdict"] == "reproduced"
    scale = results["tables"]["mnist"]["cosine_distance/features/other_image"]["jigsaw"]
    assert scale["verdict"] == "descriptive" and "holm_p" not in scale


def test_report_labels_the_tasks_and_measures_and_a_quick_run_gives_no_verdict(tmp_path):
    full = contrastive.report(_results("full", {"baseline": 0.0, "jigsaw": 0.2, "cutout": 0.2, "mixup": 0.2}), [])
    text = "\n".join(full)
    assert "## dot counts: a supporting synthetic task (not in the paper)" in text
    assert "## MNIST-5k digits: the main task" in text
    assert "### Claim table (Table 6's claim, pre-registered; Holm over its 3 comparisons)" in text
    assert "Figure 9's paired measure: cos. distance x vs jigsaw(x), head's embedding" in text
    assert "Figure 9's paired measure: cos. distance x vs jigsaw(x), encoder features" in text
    assert "its scale: cos. distance x vs another test image, encoder features" in text
    assert "r(x) vs r(cutout(x))" in text and "| reproduced |" in text and "within" not in text
    quick = "\n".join(contrastive.report(_results("quick", {"baseline": 0.0, "jigsaw": 0.2, "cutout": 0.2,
                                                               "mixup": 0.2}), []))
    assert "Claim table" not in quick and "### Table (Table 6's claim" in quick
    assert not any(word in quick for word in ("| reproduced |", "| opposite |", "| direction only |"))
    results = _results("quick", {"baseline": 0.0, "jigsaw": 0.2, "cutout": 0.2, "mixup": 0.2})
    assert results["settings"]["tasks"]["dots"]["role"] == "dot counts: a supporting synthetic task (not in the paper)"


def test_initial_separation_measures_the_weights_drawn_from_train_seed_on_disjoint_halves():
    config = load_pretrain_config("mnist", ["model.options.width=4", "model.head_hidden=16", "train.seed=5"])
    first = initial_separation(config, {"jigsaw": {"k": 2}}, epochs=2)["separator_auroc/features/jigsaw"]
    again = initial_separation(config, {"jigsaw": {"k": 2}}, epochs=2)["separator_auroc/features/jigsaw"]
    assert first["value"] == again["value"] and 0.0 <= first["value"] <= 1.0
    protocol = first["protocol"]
    assert protocol["num_fit"] == [500, 500] and protocol["num_eval"] == [500, 500]  # the 1,000 test digits in halves
    assert protocol["split"] == "test" and "train.seed 5" in protocol["weights"] and protocol["options"] == {"k": 2}
    with pytest.raises(ValueError, match="at least one NDA transform"):
        initial_separation(config, {})
