"""The two dot counters of the numerosity experiment: `count_dots` (threshold + connected
components) and its independent check `count_dot_peaks` (blob filter + non-maximum suppression),
and `agreement` between them. Exact counts on hand-built images."""
from __future__ import annotations

import pytest
import torch

from negaug import data
from negaug.metrics.dots import agreement, blob_response, count_dot_peaks, count_dots
from test_metrics import render  # dots of distinct colours at given centres


def test_peaks_count_hand_placed_dots_exactly():
    images = render([[], [(3, 3)], [(3, 3), (3, 10), (10, 6)], [(2, 2), (2, 7), (7, 2), (7, 7), (12, 12)]])
    assert count_dot_peaks(images, radius=1.5).tolist() == [0, 1, 3, 5]
    corners = render([[(1, 1), (1, 14), (14, 1), (14, 14)]])  # dots touching the border count too
    assert count_dot_peaks(corners, radius=1.5).tolist() == [4]


def test_peaks_split_touching_dots_that_components_merge():
    """The counters differ by design: two overlapping discs are one component but two peaks."""
    merged = render([[(5, 5), (5, 7)], [(5, 5), (7, 7), (12, 3)]])
    assert count_dots(merged).tolist() == [1, 2]
    assert count_dot_peaks(merged, radius=1.5).tolist() == [2, 3]


def test_a_flat_top_counts_once_and_a_speck_not_at_all():
    square = torch.full((1, 1, 16, 16), -1.0)
    square[..., 4:8, 4:8] = 1.0  # four pixels tie for the largest response (0.75): the first one counts
    response = blob_response(square, radius=1.25)[0]
    assert response[5:7, 5:7].flatten().tolist() == [0.75] * 4 and response.max() == 0.75
    assert count_dot_peaks(square, radius=1.25).tolist() == [1]
    speck = torch.full((1, 1, 16, 16), -1.0)
    speck[..., 8, 8] = 1.0  # one pixel of a 5-pixel disc: response 2 / 5 = 0.4
    assert blob_response(speck, radius=1.25)[0, 8, 8].item() == pytest.approx(0.4, abs=1e-6)
    assert count_dot_peaks(speck, radius=1.25).tolist() == [0]
    assert count_dot_peaks(speck, radius=1.25, threshold=0.3).tolist() == [1]


def test_peaks_match_the_labels_of_the_dots_set_with_noise_and_at_both_sizes():
    for size, channels in ((16, 1), (32, 3)):
        dots = data.build("dots", count=list(range(1, 10)), num_samples=300, seed=4, image_size=size, channels=channels)
        radius = 2.5 * size / 32
        assert torch.equal(count_dot_peaks(dots.images, radius), dots.labels)
        noisy = dots.images + 0.2 * torch.randn(dots.images.shape, generator=torch.Generator().manual_seed(0))
        assert torch.equal(count_dot_peaks(noisy.clamp(-1, 1), radius), dots.labels)


def test_peaks_are_batch_independent_and_reject_bad_shapes():
    dots = data.build("dots", count=[3, 6], num_samples=40, seed=1, image_size=16, channels=1)
    whole = count_dot_peaks(dots.images, 1.25)
    assert torch.equal(torch.cat([count_dot_peaks(dots.images[i:i + 7], 1.25) for i in range(0, 40, 7)]), whole)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        count_dot_peaks(dots.images[0], 1.25)
    with pytest.raises(ValueError, match="radius >= 0.5"):
        count_dot_peaks(dots.images, 0.3)


def test_agreement_hand_checked():
    first, second = torch.tensor([6, 6, 5, 7, 6]), torch.tensor([6, 7, 5, 6, 7])
    assert agreement(first, second) == {"num_images": 5, "agreement": 0.4, "disagreements": {"6->7": 2, "7->6": 1}}
    assert agreement(first, first) == {"num_images": 5, "agreement": 1.0, "disagreements": {}}
    with pytest.raises(ValueError, match="one shape"):
        agreement(first, second[:4])
    with pytest.raises(ValueError, match="non-empty"):
        agreement(first[:0], second[:0])
