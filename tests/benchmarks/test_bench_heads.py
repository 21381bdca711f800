"""The heads benchmark runs end to end on tiny sizes and reports every figure."""

from __future__ import annotations

import json

TINY = ["--train-sizes", "60", "120", "--predict-rows", "500", "--test-rows", "300"]
TINY += ["--dim", "8", "--classes", "3", "--repeats", "1", "--aggregate-nodes", "400"]
TINY += ["--nodes-per-segment", "200", "--radius-um", "3", "--steps", "20"]


def test_heads_benchmark_reports_speed_quality_and_aggregation(bench, capsys):
    heads = bench("bench_heads")
    report = heads.main(TINY)
    assert json.loads(capsys.readouterr().out) == report
    sizes = report["heads"]["sizes"]
    assert [s["train_rows"] for s in sizes] == [60, 120]
    for entry in sizes:
        assert 0 <= entry["reference_logistic_regression_accuracy"] <= 1
        for kind in ("linear", "mlp", "sngp"):
            figures = entry[kind]
            assert figures["fit"]["cpu_s"] > 0 and figures["predict_500"]["wall_s"] > 0
            assert 1 / 3 < figures["accuracy"] <= 1  # better than chance on 3 classes
            assert 0 <= figures["novel_auroc_dempster_shafer"] <= 1
        assert 0 <= entry["sngp"]["novel_auroc_variance"] <= 1
    aggregation = report["aggregation"]
    assert aggregation["nodes"] == 400 and aggregation["segments"] == 2
    for name in ("path_with_skeletons", "path_from_nodes", "euclidean"):
        assert aggregation[name]["wall_s"] > 0
    assert set(report["bar"]["met_cpu"]) == {"linear", "mlp", "sngp"}
    assert report["bar"]["fit_rows"] == 120 and report["bar"]["predict_rows"] == 500
    assert report["head_options"]["steps"] == 20


def test_random_skeletons_have_nodes_one_micrometre_apart(bench):
    import numpy as np

    heads = bench("bench_heads")
    (skel,) = heads.random_forest(1, 300, np.random.default_rng(0))
    np.testing.assert_allclose(skel.edge_lengths, 1000.0)
    assert len(skel.roots) == 1 and (skel.degrees >= 3).any()  # one tree, with branches
