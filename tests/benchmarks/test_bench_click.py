"""The click benchmark runs end to end on tiny settings and reports every figure."""

from __future__ import annotations

from napari_segclr.heads import HEAD_KINDS


def test_click_benchmark_reports_latency_and_refit(bench):
    click = bench("bench_click")
    report = click.main(
        ["--preset", "tiny", "--clicks", "2", "--shape", "48", "128", "128", "--threads", "1"]
    )
    assert report["model"] == "random tiny (none shipped)" or "tiny" in report["model"]
    figures = report["click"]
    assert len(report["fragments_cable_um"]) == 2 and report["first_click_s"] > 0
    for key in ("total_s", "skeletonise_s", "embed_s", "predict_s"):
        assert figures[key]["max"] >= figures[key]["median"] >= figures[key]["min"] >= 0
    assert figures["total_s"]["median"] >= figures["skeletonise_s"]["min"]
    assert figures["nodes"]["min"] >= 1
    assert set(report["refit"]) == set(HEAD_KINDS)
    assert all(r["median"] > 0 and r["labelled_nodes"] >= 4 for r in report["refit"].values())
