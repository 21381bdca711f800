"""Heads learn, are deterministic, balance classes, round-trip through files, refuse bad input."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from napari_segclr.aggregate import Aggregation
from napari_segclr.exceptions import (
    CheckpointError,
    EmbeddingError,
    LabelError,
    SegclrError,
    ShapeMismatchError,
    StoreSignatureError,
)
from napari_segclr.heads import HEAD_KINDS, Head, HeadOptions, fit_head, load_head

from .conftest import CLASSES, DIM, FAST, blobs, one_torch_thread


@pytest.fixture(scope="module")
def heads(train) -> dict[str, Head]:
    with one_torch_thread():
        return {kind: fit_head(*train, kind=kind, options=FAST) for kind in HEAD_KINDS}


@pytest.mark.parametrize("kind", HEAD_KINDS)
def test_heads_learn_separable_classes(heads, kind, train, test_set):
    head = heads[kind]
    assert head.kind == kind and head.classes == CLASSES and head.dim == DIM
    assert np.mean(head.predict(train[0]).labels == train[1]) == 1.0
    pred = head.predict(test_set[0])
    assert np.mean(pred.labels == test_set[1]) >= 0.98
    assert pred.probabilities.shape == (300, 3)
    np.testing.assert_allclose(pred.probabilities.sum(axis=1), 1, rtol=1e-5)
    logits = head.logits(test_set[0])
    assert logits.dtype == np.float32 and logits.shape == (300, 3)
    assert np.isnan(pred.variance).all() == (kind != "sngp")


def test_class_order_follows_classes(train, test_set):
    order = ("glia", "axon", "dendrite")
    head = fit_head(*train, classes=order)
    pred = head.predict(test_set[0])
    assert head.classes == order == pred.classes
    assert np.mean(pred.labels == test_set[1]) >= 0.98
    assert np.array_equal(np.asarray(order)[pred.probabilities.argmax(axis=1)], pred.labels)


@pytest.mark.parametrize("kind", ["mlp", "sngp"])
def test_fits_are_deterministic_for_a_seed(kind, train, test_set):
    small = dataclasses.replace(FAST, steps=20)
    state = torch.random.get_rng_state()
    first = fit_head(*train, kind=kind, options=small, seed=5).logits(test_set[0])
    again = fit_head(*train, kind=kind, options=small, seed=5).logits(test_set[0])
    other = fit_head(*train, kind=kind, options=small, seed=6).logits(test_set[0])
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's random state is kept


def test_balancing_raises_recall_of_a_rare_class():
    rng = np.random.default_rng(3)
    y = np.where(rng.random(2000) < 0.05, "rare", "common")
    x = (rng.normal(size=(2000, 4)) + 1.2 * (y == "rare")[:, None]).astype(np.float32)

    def recall(balance: bool) -> float:
        pred = fit_head(x, y, balance=balance).predict(x)
        return float(np.mean(pred.labels[y == "rare"] == "rare"))

    assert recall(True) > recall(False) + 0.3


@pytest.mark.parametrize("kind", HEAD_KINDS)
def test_saved_heads_predict_identically(heads, kind, tmp_path, test_set):
    head = dataclasses.replace(
        heads[kind].calibrate_reject(test_set[0][:100], coverage=0.9),
        encoder_signature="f" * 64,
        aggregation=Aggregation(10.0, "euclidean"),
    )
    path = tmp_path / f"{kind}.head.npz"
    head.save(path)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left
    loaded = load_head(path, encoder_signature="f" * 64)
    assert (loaded.kind, loaded.classes, loaded.dim) == (kind, CLASSES, DIM)
    assert (loaded.reject, loaded.aggregation, loaded.options) == (
        head.reject,
        head.aggregation,
        head.options,
    )
    before, after = head.predict(test_set[0]), loaded.predict(test_set[0])
    for name in ("probabilities", "entropy", "dempster_shafer", "variance", "rejected"):
        np.testing.assert_array_equal(getattr(before, name), getattr(after, name))


def test_loading_checks_the_file_and_the_encoder(heads, tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_head(tmp_path / "none.npz")
    junk = tmp_path / "junk.npz"
    junk.write_text("not a head")
    with pytest.raises(CheckpointError, match="not a napari-segclr head"):
        load_head(junk)
    path = tmp_path / "head.npz"
    dataclasses.replace(heads["linear"], encoder_signature="a" * 64).save(path)
    with pytest.raises(StoreSignatureError, match="encoder"):
        load_head(path, encoder_signature="b" * 64)
    assert load_head(path).encoder_signature == "a" * 64


def test_reject_threshold_gives_the_coverage_on_new_held_out_data(heads):
    calibration, _ = blobs(2000, seed=10)
    fresh, _ = blobs(2000, seed=11)
    for kind, score in (("linear", "dempster_shafer"), ("sngp", "variance"), ("mlp", "entropy")):
        head = heads[kind].calibrate_reject(calibration, coverage=0.9, score=score)
        assert head.reject.score == score and heads[kind].reject is None
        assert np.mean(~head.predict(calibration).rejected) == pytest.approx(0.9, abs=1e-3)
        assert np.mean(~head.predict(fresh).rejected) == pytest.approx(0.9, abs=0.03)


def test_variance_score_needs_an_sngp_head(heads, test_set):
    with pytest.raises(ValueError, match="sngp"):
        heads["linear"].calibrate_reject(test_set[0], score="variance")


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert isinstance(error.value, SegclrError) and "\n" not in message
    return message


@pytest.mark.parametrize(
    ("labels", "classes", "words"),
    [
        (["axon"] * 6, None, "one class"),
        (["axon"] * 5 + ["glia"], None, "'glia' (1)"),
        (["axon"] * 3 + ["glia"] * 3, ("axon", "glia", "soma"), "'soma' (0)"),
        (["axon"] * 3 + ["glia"] * 3, ("axon", "soma"), "not among the classes"),
        (["axon"] * 3 + ["glia"] * 2 + [None], None, "missing"),
    ],
)
def test_bad_labels_are_refused(labels, classes, words):
    x = np.random.default_rng(0).normal(size=(6, 4))
    with pytest.raises(LabelError) as error:
        fit_head(x, labels, classes=classes)
    assert words in _one_line(error)


def test_bad_embeddings_are_refused(heads):
    x = np.random.default_rng(0).normal(size=(6, 4))
    labels = ["a", "b"] * 3
    x[2, 1] = np.nan
    with pytest.raises(EmbeddingError) as error:
        fit_head(x, labels)
    assert "row 2" in _one_line(error)
    with pytest.raises(ShapeMismatchError) as error:
        fit_head(x[:, 0], labels)
    _one_line(error)
    with pytest.raises(ShapeMismatchError) as error:
        fit_head(np.zeros((5, 4)), labels)
    _one_line(error)
    with pytest.raises(ShapeMismatchError) as error:
        heads["mlp"].predict(np.zeros((3, DIM + 1)))
    assert f"{DIM + 1}-d" in _one_line(error) and f"{DIM}-d" in str(error.value)
    with pytest.raises(EmbeddingError):
        heads["sngp"].predict(np.full((2, DIM), np.inf))
    with pytest.raises(ValueError, match="kind"):
        fit_head(np.zeros((4, 2)), ["a", "b"] * 2, kind="forest")


def test_options_validate_and_round_trip():
    options = HeadOptions(hidden=8, length_scale=2.0)
    assert HeadOptions.from_dict(options.to_dict()) == options
    with pytest.raises(ValueError, match="hidden"):
        HeadOptions(hidden=0)
    with pytest.raises(ValueError, match="unknown"):
        HeadOptions.from_dict({"depth": 3})
