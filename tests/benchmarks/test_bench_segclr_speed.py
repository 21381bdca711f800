"""The speed benchmark runs on tiny settings, on the CPU and (where present) on CUDA."""

from __future__ import annotations

import pytest
import torch

TINY = ["--presets", "tiny", "--views", "24", "--voxel-size", "128"]
TINY += ["--extent-um", "2", "4", "4", "--threads", "1"]


def test_speed_reports_cpu_figures_and_targets(bench):
    speed = bench("bench_segclr_speed")
    report = speed.main([*TINY, "--no-cuda"])
    (tiny,) = report["presets"]
    cpu = tiny["cpu"]
    assert tiny["preset"] == "tiny" and tiny["gflops_per_view"] > 0 and "cuda" not in tiny
    assert cpu["views"] == 24 and cpu["torch_threads"] == 1
    rates = ("extraction_views_per_s", "extraction_uint8_views_per_s", "encoder_views_per_s")
    for key in (*rates, "end_to_end_views_per_s"):
        assert cpu[key]["best"] >= cpu[key]["median"] > 0
    assert cpu["encoder_gflops_per_s"] == pytest.approx(
        cpu["encoder_views_per_s"]["median"] * tiny["gflops_per_view"], rel=0.05, abs=0.1
    )
    assert [t["measured"] for t in report["targets"]] == [None, None]  # lite and paper not run


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_speed_reports_bf16_throughput_on_cuda(bench):
    speed = bench("bench_segclr_speed")
    report = speed.main([*TINY, "--cuda-views", "64", "--cuda-batch-size", "16", "--repeats", "2"])
    cuda = report["presets"][0]["cuda"]
    assert cuda["batch"] == 16 and cuda["extraction_workers"] >= 1
    for figures in (cuda["encoder"], cuda["end_to_end"]):
        assert figures["views_per_s"] > 0 and 0 < figures["fraction_of_peak"] < 1
    assert cuda["loader_alone_views_per_s"] > 0
