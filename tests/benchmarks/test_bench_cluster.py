"""The Dask benchmark runs on tiny settings: worker counts, three sizes and a straight-line fit."""

from __future__ import annotations

import numpy as np
import pytest

TINY = ["--threads", "--sizes", "8", "12", "16", "--workers", "1", "2"]
TINY += ["--batch-size", "8", "--chunk-nm", "1024"]


def test_cluster_benchmark_reports_throughput_and_cost_per_row(bench):
    report = bench("bench_cluster").main(TINY)
    one, two = report["workers"]
    assert (one["workers"], two["workers"]) == (1, 2) and one["speed_up"] == 1.0
    assert two["speed_up"] == pytest.approx(two["views_per_s"] / one["views_per_s"])
    assert one["rows"] == two["rows"] > 0 and one["partitions"] > 2
    assert one["task_s"] > 0 and 0 < one["busy_workers"] <= 1.5
    runs = report["sizes"]["runs"]
    assert [r["edge"] for r in runs] == [8, 12, 16]
    assert runs[0]["rows"] < runs[-1]["rows"] == one["rows"]
    for run in runs:
        assert run["seconds_per_row"] == pytest.approx(run["seconds"] / run["rows"], rel=1e-3)
    fit = report["sizes"]["fit"]  # its sign is the machine's: shared cores make it noisy
    assert np.isfinite(fit["per_row_s"]) and np.isfinite(fit["fixed_s"])
    assert "gpu" not in report and "testbed" not in report
