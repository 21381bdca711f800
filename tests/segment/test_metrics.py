"""Segmentation scores: hand-computed cases, conventions, and a real machine segmentation."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from skimage import metrics as skimage_metrics

from napari_segclr.exceptions import (
    SegmentationDtypeError,
    SegmentNotFoundError,
    ShapeMismatchError,
)
from napari_segclr.segment import (
    adapted_rand_error,
    segmentation_scores,
    variation_of_information,
)

TRUTH = np.array([[1, 1], [2, 2]])


def test_a_merge_of_two_equal_segments():
    merged = np.ones((2, 2), int)
    # truth pairs: 2 + 2 (ordered), predicted pairs 12, both: 4 → P = 1/3, R = 1, F = 1/2
    assert adapted_rand_error(TRUTH, merged) == pytest.approx(0.5)
    assert variation_of_information(TRUTH, merged) == pytest.approx((0.0, 1.0))  # one bit merged
    scores = segmentation_scores(TRUTH, merged)
    assert scores["rand_precision"] == pytest.approx(1 / 3)
    assert scores["rand_recall"] == pytest.approx(1.0)
    assert scores["voi"] == pytest.approx(1.0)
    assert (scores["truth_segments"], scores["pred_segments"]) == (2, 1)


def test_a_split_into_two_halves():
    split = np.array([[1, 2], [1, 2]])
    # each truth segment is cut in two: H(pred | truth) = 1 bit; H(truth | pred) = 1 bit
    assert variation_of_information(TRUTH, split) == pytest.approx((1.0, 1.0))
    halves = np.array([[1, 1], [1, 1]]), np.array([[1, 1], [2, 2]])
    assert variation_of_information(*halves) == pytest.approx((1.0, 0.0))
    assert adapted_rand_error(*halves) == pytest.approx(0.5)
    scores = segmentation_scores(*halves)
    assert (scores["rand_precision"], scores["rand_recall"]) == pytest.approx((1.0, 1 / 3))


def test_truth_zero_is_ignored_and_prediction_zero_is_a_segment():
    truth = np.array([0, 0, 5, 5, 7, 7])
    assert adapted_rand_error(truth, np.array([1, 2, 3, 3, 4, 4])) == 0
    assert variation_of_information(truth, np.array([4, 4, 3, 3, 4, 4])) == pytest.approx((0, 0))
    unsegmented = np.array([0, 0, 0, 0, 4, 4])
    assert segmentation_scores(truth, unsegmented)["voi_merge"] == 0
    assert segmentation_scores(truth, np.zeros(6, int))["voi_merge"] == pytest.approx(1.0)


def test_huge_sparse_ids_cost_nothing():
    truth = np.array([5, 5, 2**63, 2**63, 2**64 - 1], dtype=np.uint64)
    pred = np.array([2**62, 2**62, 1, 1, 9], dtype=np.uint64)
    assert adapted_rand_error(truth, pred) == 0
    assert variation_of_information(truth, pred) == pytest.approx((0, 0))


@pytest.mark.parametrize("seed", range(3))
def test_agrees_with_scikit_image(seed):
    rng = np.random.default_rng(seed)
    truth, pred = rng.integers(0, 6, (2, 8, 9, 10))
    are, precision, recall = skimage_metrics.adapted_rand_error(truth, pred)
    split, merge = skimage_metrics.variation_of_information(truth, pred, ignore_labels=(0,))
    scores = segmentation_scores(truth, pred)
    assert scores["adapted_rand_error"] == pytest.approx(are)
    # scikit-image ≤ 0.26 returns precision and recall swapped (its issue #6485)
    assert (scores["rand_precision"], scores["rand_recall"]) == pytest.approx((recall, precision))
    assert 1 - scores["adapted_rand_error"] == pytest.approx(
        2 * precision * recall / (precision + recall)
    )
    assert (scores["voi_split"], scores["voi_merge"]) == pytest.approx((split, merge))


def test_inputs_are_checked():
    with pytest.raises(ShapeMismatchError, match="same shape"):
        adapted_rand_error(np.ones((2, 2), int), np.ones((2, 3), int))
    with pytest.raises(SegmentationDtypeError, match="pred"):
        adapted_rand_error(np.ones(3, int), np.ones(3))
    with pytest.raises(SegmentNotFoundError, match="truth"):
        variation_of_information(np.zeros(3, int), np.ones(3, int))


@pytest.mark.slow
def test_flood_filling_segmentation_of_fib25(shared_data):
    fib25 = shared_data / "fib25"
    truth = tifffile.imread(fib25 / "sample2_labels_z000-159.tif")
    ffn = tifffile.imread(fib25 / "sample2_ffn_z000-159.tif")
    scores = segmentation_scores(truth, ffn)
    # The 160 labelled slices of the cube; the whole 250³ cube scores 0.157 (data README).
    assert scores["adapted_rand_error"] == pytest.approx(0.1856, abs=5e-4)
    assert (scores["voi_split"], scores["voi_merge"]) == pytest.approx((0.824, 0.788), abs=1e-3)
    assert (scores["rand_precision"], scores["rand_recall"]) == pytest.approx(
        (0.853, 0.779), abs=1e-3
    )
    assert scores["truth_segments"] == 384
