"""The agglomeration benchmark recovers the truth from clean affinities and reports its table."""

from __future__ import annotations

import json

import numpy as np
import pytest


def test_clean_true_affinities_give_back_the_truth(bench, shared_data, capsys):
    agglomeration = bench("bench_agglomerate")
    tiny = "--z 120 132 --xy-crop 64 --noise 0 0.3 --blur 0 --link-thresholds 0.8 0.6"
    argv = [*tiny.split(), "--thresholds", "0.5", "0.9", "--data", str(shared_data / "fib25")]
    report = agglomeration.main(argv)
    out = capsys.readouterr()
    assert json.loads(out.out) == report
    assert report["slices"]["shape"] == [12, 64, 64]
    results = report["results"]
    assert [(r["noise"], r["link_threshold"]) for r in results] == [
        (0.0, 0.8), (0.0, 0.6), (0.3, 0.8), (0.3, 0.6),
    ]  # fmt: skip
    clean = results[0]
    assert clean["adapted_rand_error"] < 0.05
    for r in results:
        assert r["adapted_rand_error"] == min(r["are_by_threshold"].values())
        assert r["fragments"] >= 1 and r["segments"] >= 1
    assert results[2]["adapted_rand_error"] > clean["adapted_rand_error"]
    assert "FFN (ref.)" in out.err


def test_membranes_have_no_links_and_noisy_affinities_stay_probabilities(bench):
    agglomeration = bench("bench_agglomerate")
    truth = np.ones((4, 6, 8), np.uint32)
    truth[:, :, 4:] = 2  # two cells meeting between x 3 and x 4
    rng = np.random.default_rng(0)
    clean = agglomeration.noisy_affinities(truth, membrane=0, blur=0, noise=0, rng=rng)
    assert clean.shape == (3, 4, 6, 8) and clean[2, :, :, 4].max() == 0
    assert clean[2, :, :, [3, 5]].min() == 1  # links beside the boundary are whole
    wide = agglomeration.noisy_affinities(truth, membrane=2, blur=0, noise=0, rng=rng)
    # Voxels x 2–5 are membrane: no link touches them along x, the rest are whole.
    assert wide[2, :, :, 2:7].max() == 0 and wide[2, :, :, [1, 7]].min() == 1
    noisy = agglomeration.noisy_affinities(truth, membrane=1, blur=1, noise=0.5, rng=rng)
    assert noisy.min() >= 0 and noisy.max() <= 1 and noisy.std() > 0


@pytest.mark.parametrize(
    "argv",
    [["--z", "5", "5"], ["--noise", "-1"], ["--membrane", "-1"], ["--link-thresholds", "1.0"]],
)
def test_bad_arguments_are_refused(bench, argv):
    with pytest.raises(SystemExit):
        bench("bench_agglomerate").parse_args(argv)
