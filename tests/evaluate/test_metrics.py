"""Evaluation scores: learning curves, label multiples, F1 tables and out-of-distribution AUROC."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from napari_segclr.evaluate import (
    classification_scores,
    fit_forest,
    label_multiple,
    learning_curve,
    ood_auroc,
    ood_scores,
    stratified_draw,
)


def _blobs(rng, per_class, *, spread, dim=6, names=("a", "b", "c", "d")):
    labels = np.repeat(np.array(names), per_class)
    centres = 3.0 * np.eye(dim)[: len(names)]
    codes = np.repeat(np.arange(len(names)), per_class)
    return centres[codes] + spread * rng.normal(size=(len(labels), dim)), labels


def test_stratified_draw_takes_k_per_class_or_all_of_a_small_class():
    rng = np.random.default_rng(0)
    labels = np.array(["a"] * 10 + ["b"] * 3)
    index = stratified_draw(labels, 4, rng)
    assert np.all(np.diff(index) > 0)
    assert np.sum(labels[index] == "a") == 4 and np.sum(labels[index] == "b") == 3


def test_forest_learning_curve_rises_with_labels_on_an_easy_case():
    rng = np.random.default_rng(1)
    train_x, train_y = _blobs(rng, 30, spread=0.9)
    test_x, test_y = _blobs(rng, 30, spread=0.9)

    def forest(index, seed):
        return fit_forest(train_x[index], train_y[index], seed=seed).predict(test_x)

    curve = learning_curve(forest, train_y, test_y, labels_per_class=(1, 4, 30), draws=3)
    assert curve["labels"] == [4, 16, 120]  # the last count takes every row, drawn once
    assert [len(f) for f in curve["f1"]] == [3, 3, 1]
    median = curve["median"]
    assert median[-1] >= median[0] + 0.2 and median[-1] > 0.85
    assert all(later >= earlier - 0.05 for earlier, later in itertools.pairwise(median))
    assert all(lo <= m <= hi for lo, m, hi in zip(curve["min"], median, curve["max"], strict=True))
    assert curve["predicted"].shape == test_y.shape


def test_learning_curve_is_reproducible_for_a_seed():
    rng = np.random.default_rng(2)
    train_x, train_y = _blobs(rng, 20, spread=2.0)
    test_x, test_y = _blobs(rng, 20, spread=2.0)

    def nearest_mean(index, seed):
        names = np.unique(train_y[index])
        means = np.stack([train_x[index][train_y[index] == n].mean(0) for n in names])
        return names[np.argmin(((test_x[:, None] - means) ** 2).sum(-1), axis=1)]

    runs = [
        learning_curve(nearest_mean, train_y, test_y, labels_per_class=(2, 5), draws=3, seed=7)
        for _ in range(2)
    ]
    assert runs[0]["f1"] == runs[1]["f1"]


def _curve(labels, median):
    return {"labels": labels, "median": median}


def test_label_multiple_reads_where_segclr_first_matches_the_best_supervised_f1():
    supervised = _curve([8, 80, 800], [0.3, 0.7, 0.9])
    matched = label_multiple(_curve([8, 16, 32], [0.8, 0.92, 0.95]), supervised)
    assert matched["value"] == 50 and matched["segclr_labels"] == 16
    assert not matched["lower_bound"] and matched["supervised_labels"] == 800
    first = label_multiple(_curve([8, 16], [0.91, 0.95]), supervised)
    assert first["value"] == 100 and first["lower_bound"]
    never = label_multiple(_curve([8, 16], [0.5, 0.6]), supervised)
    assert never["value"] is None and never["most_measurable"] == 100


def test_classification_scores_cover_every_class_even_absent_ones():
    scores = classification_scores(
        np.array(["a", "a", "b"]), np.array(["a", "b", "b"]), classes=["a", "b", "c"]
    )
    assert scores["per_class_f1"]["c"] is None
    assert scores["macro_f1"] == pytest.approx(np.mean([2 / 3, 2 / 3]), abs=1e-3)
    assert scores["confusion"] == [[1, 1, 0], [0, 1, 0], [0, 0, 0]]
    assert scores["accuracy"] == pytest.approx(2 / 3, abs=1e-3)


def test_ood_auroc_of_a_perfect_and_a_missing_score():
    is_out = np.array([False, False, True, True])
    perfect = ood_auroc(is_out, np.array([0.1, 0.2, 0.8, 0.9]))
    assert perfect["auroc"] == 1.0
    assert perfect["tpr"][-1] == 1.0 and len(perfect["fpr"]) == len(perfect["tpr"])
    assert ood_auroc(is_out, np.full(4, np.nan))["auroc"] is None


def test_sngp_uncertainty_spots_far_away_classes_on_an_easy_case():
    rng = np.random.default_rng(3)
    dim = 16
    astro = rng.normal(size=(60, dim)) + 4 * np.eye(dim)[0]
    micro = rng.normal(size=(60, dim)) + 4 * np.eye(dim)[1]
    neuron = rng.normal(size=(60, dim)) + 12 * np.eye(dim)[5]
    train_x = np.concatenate([astro[:30], micro[:30]])
    train_y = np.repeat(["astrocyte", "microglia"], 30)
    test_x = np.concatenate([astro[30:], micro[30:], neuron])
    test_y = np.repeat(["astrocyte", "microglia", "pyramidal"], [30, 30, 60])
    result = ood_scores(train_x, train_y, test_x, test_y, kinds=("sngp", "linear"))
    assert result["n_in"] == 60 and result["n_out"] == 60
    sngp = result["heads"]["sngp"]
    assert sngp["known_accuracy"] > 0.95
    assert sngp["scores"]["dempster_shafer"]["auroc"] > 0.95
    assert 0 <= sngp["scores"]["variance"]["auroc"] <= 1
    assert result["heads"]["linear"]["scores"]["variance"]["auroc"] is None
