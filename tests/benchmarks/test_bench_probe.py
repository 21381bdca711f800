"""The linear-probe benchmark runs end to end on tiny settings and reports sane figures."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from napari_segclr.model import SegclrModel, get_preset, save_checkpoint


def test_probe_reports_both_encoders_on_held_out_seeds(bench, tmp_path, capsys):
    probe = bench("bench_probe")
    checkpoint = tmp_path / "tiny.pt"
    torch.manual_seed(3)
    save_checkpoint(checkpoint, SegclrModel(get_preset("tiny")), extra={"steps": 0})
    tiny = "--voxel-size 128 --per-class 6 --seeds-train 1000 --seeds-test 1001 --threads 1"
    report = probe.main(["--checkpoint", str(checkpoint), *tiny.split()])
    assert json.loads(capsys.readouterr().out) == report
    assert report["checkpoint"]["preset"] == "tiny" and report["views"]["shape"] == [17, 17, 17]
    test_counts = report["views"]["test_per_class"]
    # The window is placed on a neuron soma: every split sees somata.
    assert report["views"]["train_per_class"]["soma"] == test_counts["soma"] == 6
    for name in ("trained", "random_init"):
        scores = report[name]
        confusion = np.array(scores["confusion"])
        assert confusion.shape == (4, 4)
        assert confusion.sum(axis=1).tolist() == list(test_counts.values())
        assert 0.0 <= scores["macro_f1"] <= 1.0
        present = [f for f in scores["per_class_f1"].values() if f is not None]
        assert scores["macro_f1"] == pytest.approx(np.mean(present), abs=1e-3)
    assert report["bar"] == {
        "macro_f1_at_least": 0.95,
        "met": report["trained"]["macro_f1"] >= 0.95,
    }


def test_probe_refuses_training_seeds_and_shared_volumes(bench):
    probe = bench("bench_probe")
    with pytest.raises(SystemExit):
        probe.parse_args(["--seeds-train", "100"])
    with pytest.raises(SystemExit):
        probe.parse_args(["--seeds-train", "1000", "--seeds-test", "1000", "1001"])


def test_fit_probe_separates_separable_classes(bench):
    probe = bench("bench_probe")
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 30)
    features = rng.normal(size=(90, 5)) + 6.0 * np.eye(5)[labels]
    scores = probe.fit_probe(
        features[::2], labels[::2], features[1::2], labels[1::2], classes=["a", "b", "c", "d"]
    )
    assert scores["macro_f1"] == 1.0 and scores["per_class_f1"]["d"] is None
    assert np.trace(scores["confusion"]) == 45
