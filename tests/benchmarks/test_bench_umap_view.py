"""The UMAP view benchmark runs end to end on small maps and reports every figure."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.gui


def test_umap_view_benchmark_reports_latency_redraw_and_transform(bench, qapp, capsys):
    report = bench("bench_umap_view").main(
        ["--points", "2000", "20000", "--repeats", "1", "--fit-points", "300", "--new-points", "40"]
    )
    assert [s["points"] for s in report["sizes"]] == [2000, 20000]
    for size in report["sizes"]:
        assert size["image_px"][0] > 100 and size["redraw_s"] > 0
        assert 0 < size["lasso_small_points"] < size["lasso_large_points"] < size["points"]
        assert size["lasso_large_points"] > 0.3 * size["points"]  # the star holds about 40 %
        assert size["lasso_large_segments"] <= size["segments"]
        for key in ("index_s", "upload_s", "lasso_small_s", "lasso_large_s", "viewer_pick_s"):
            assert size[key] >= 0
        assert size["lasso_large_s"] >= size["lasso_large_select_s"] > 0
        assert size["matplotlib_redraw_s"] > 0 and size["matplotlib_highlight_s"] > 0
    umap = report["umap"]
    assert umap["fit_points"] == 300 and umap["new_points"] == 40
    assert umap["fit_s"] > 0 and umap["transform_s"] > 0
    out = capsys.readouterr().out
    assert '"benchmark": "umap_view"' in out and "| redraw |" in out and "matplotlib Agg" in out
    assert "transform 40 new" in out
