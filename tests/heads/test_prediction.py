"""Predictions from logits, uncertainty scores, reject rules and per-segment combination."""

from __future__ import annotations

import numpy as np
import pytest

from napari_segclr.heads import Prediction, RejectRule, combine_segments

CLASSES = ("a", "b", "c")


def test_scores_match_their_definitions():
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=3, size=(50, 3))
    pred = Prediction.from_logits(logits, CLASSES)
    e = np.exp(logits)
    p = e / e.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(pred.probabilities, p, rtol=1e-5)
    np.testing.assert_allclose(pred.entropy, -(p * np.log(p)).sum(axis=1), rtol=1e-5)
    np.testing.assert_allclose(pred.dempster_shafer, 3 / (3 + e.sum(axis=1)), rtol=1e-5)
    assert np.isnan(pred.variance).all() and not pred.rejected.any()
    assert pred.labels.tolist() == [CLASSES[i] for i in p.argmax(axis=1)]
    np.testing.assert_allclose(pred.confidence, p.max(axis=1), rtol=1e-6)


def test_huge_logits_do_not_overflow():
    pred = Prediction.from_logits(np.array([[1000.0, 0, 0], [0, 0, 0]]), CLASSES)
    assert np.isfinite(pred.dempster_shafer).all()
    assert pred.dempster_shafer[0] == pytest.approx(0, abs=1e-30)
    assert pred.dempster_shafer[1] == pytest.approx(0.5)
    assert pred.entropy[1] == pytest.approx(np.log(3))


def test_reject_rule_rejects_scores_above_its_threshold():
    rule = RejectRule("entropy", 0.5, 0.9)
    pred = Prediction.from_logits(np.array([[5.0, 0, 0], [0, 0, 0]]), CLASSES, reject=rule)
    assert pred.rejected.tolist() == [False, True]


def test_calibrated_threshold_keeps_the_coverage_of_the_scores():
    scores = np.random.default_rng(1).random(1000)
    rule = RejectRule.calibrate(scores, score="entropy", coverage=0.9)
    kept = np.mean(~rule.rejects(scores))
    assert 0.9 <= kept < 0.9 + 1 / 1000
    assert RejectRule.calibrate(scores, score="entropy", coverage=1.0).threshold == scores.max()


@pytest.mark.parametrize(
    "bad", [{"score": "margin"}, {"coverage": 0.0}, {"coverage": 1.5}, {"threshold": np.nan}]
)
def test_reject_rule_refuses_bad_settings(bad):
    with pytest.raises(ValueError):
        RejectRule(**{"score": "entropy", "threshold": 0.1, "coverage": 0.9, **bad})


def test_segments_combine_by_geometric_mean_and_mean_scores():
    rng = np.random.default_rng(2)
    logits = rng.normal(scale=2, size=(40, 3))
    segments = rng.choice(np.array([7, 2**64 - 1, 3], dtype=np.uint64), 40)
    rule = RejectRule("dempster_shafer", 0.3, 0.95)
    pred = Prediction.from_logits(logits, CLASSES, reject=rule)
    combined = combine_segments(pred, segments)
    assert combined.segment_id.tolist() == [3, 7, 2**64 - 1]
    for i, segment in enumerate(combined.segment_id):
        nodes = segments == segment
        geometric = np.exp(np.log(pred.probabilities[nodes]).mean(axis=0))
        np.testing.assert_allclose(
            combined.probabilities[i], geometric / geometric.sum(), rtol=1e-5
        )
        assert combined.n_nodes[i] == nodes.sum()
        mean_ds = pred.dempster_shafer[nodes].mean()
        assert combined.dempster_shafer[i] == pytest.approx(mean_ds, rel=1e-5)
        assert combined.entropy[i] == pytest.approx(pred.entropy[nodes].mean(), rel=1e-5)
        assert combined.rejected[i] == (mean_ds > 0.3)
        assert combined.labels[i] == CLASSES[int(np.argmax(geometric))]
    frame = combined.to_frame()
    assert frame.columns[:4].tolist() == ["segment_id", "n_nodes", "label", "confidence"]
    assert {"p_a", "p_b", "p_c", "variance", "rejected"} <= set(frame.columns)


def test_combining_needs_one_segment_id_per_node():
    pred = Prediction.from_logits(np.zeros((3, 3)), CLASSES)
    with pytest.raises(ValueError, match="3 nodes"):
        combine_segments(pred, [1, 2])
