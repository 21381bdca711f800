"""The MAE benchmark runs end to end on fib25 with a tiny network and reports its table."""

from __future__ import annotations

import json

import pytest

TINY = (
    "--preset tiny --mask-ratios 0.5 0.9 --pretrain-steps 2 --finetune-steps 2 --batch-size 2 "
    "--finetune-batch-size 2 --xy-crop 48 --device cpu"
)


@pytest.mark.slow
def test_benchmark_scores_every_network_and_the_ffn(bench, shared_data, tmp_path, capsys):
    mae = bench("bench_mae")
    argv = [*TINY.split(), "--data", str(shared_data / "fib25"), "--workdir", str(tmp_path)]
    report = mae.main(argv)
    out = capsys.readouterr()
    assert json.loads(out.out) == report
    assert list(report["results"]) == ["scratch", "mae 0.5", "mae 0.9"]
    assert list(report["pretraining"]) == ["0.5", "0.9"]
    assert all(run["steps"] == 2 for run in report["finetuning"].values())
    for scores in [*report["results"].values(), report["reference_ffn"]]:
        assert scores["voi_split"] >= 0 and scores["voi_merge"] >= 0
        assert 0 <= scores["adapted_rand_error"] <= 1 and scores["segments"] >= 1
    # The FFN is a real segmentation: far better than untrained networks.
    assert report["reference_ffn"]["adapted_rand_error"] < 0.5
    assert all(0 <= r["boundary_average_precision"] <= 1 for r in report["results"].values())
    for result in report["results"].values():  # the threshold with the least error on z 100–119
        errors = result["threshold_choice_are"]
        assert list(errors) == ["0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9"]
        assert errors[f"{result['threshold']:g}"] == min(errors.values())
    assert "FFN (ref.)" in out.err and "mae 0.9" in out.err
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == [
        "affinity-mae-0.5.pt", "affinity-mae-0.9.pt", "affinity-scratch.pt",
        "mae-0.5.pt", "mae-0.9.pt",
    ]  # fmt: skip


def test_benchmark_refuses_bad_ratios_and_thresholds(bench):
    with pytest.raises(SystemExit):
        bench("bench_mae").parse_args(["--mask-ratios", "0.5", "1.0"])
    with pytest.raises(SystemExit):
        bench("bench_mae").parse_args(["--thresholds", "0.5", "1.5"])
