"""The view-context benchmark scores every view kind around the same centres."""

from __future__ import annotations

import json

import numpy as np
import pytest


def test_every_view_kind_is_scored_on_the_same_views(bench, capsys):
    context = bench("bench_view_context")
    tiny = (
        "--views 17/256 13/320 --per-class 4 --seeds-train 1000 --seeds-test 1001 "
        "--cnn-passes 16 --cnn-inputs masked_em em+mask --cnn-seeds 2 --voxel-size 128 "
        "--extent-um 5.0 8.8 8.8 --threads 1"
    )
    report = context.main(tiny.split())
    assert json.loads(capsys.readouterr().out) == report
    assert list(report["kinds"]) == ["17/256", "13/320"]
    assert report["kinds"]["17/256"]["field_of_view_um"] == 4.35
    counts = []
    for kind in report["kinds"].values():
        cnn = kind["supervised_cnn"]
        assert list(cnn) == ["masked_em", "em+mask"]
        assert all([run["seed"] for run in runs] == [0, 1] for runs in cnn.values())
        for scores in [kind["features_rf"], *cnn["masked_em"], *cnn["em+mask"]]:
            assert 0.0 <= scores["macro_f1"] <= 1.0
            counts.append(np.array(scores["confusion"]).sum(axis=1).tolist())
    # One set of test views, whatever the kind and the method.
    assert all(c == counts[0] for c in counts) and counts[0][0] == 4


@pytest.mark.parametrize(
    "argv",
    [
        ["--views", "32/128"],  # an even shape has no centre voxel
        ["--views", "33"],
        ["--seeds-train", "100"],
        ["--seeds-train", "1000", "--seeds-test", "1000"],
        ["--views", "101/128", "--extent-um", "12.8", "12.8", "12.8"],  # 12.9 µm views
        ["--cnn-passes", "0"],
        ["--cnn-seeds", "0"],
        ["--cnn-inputs", "masked_em+raw"],
        ["--cnn-inputs", "mask+mask"],
    ],
)
def test_bad_arguments_are_refused(bench, argv):
    with pytest.raises(SystemExit):
        bench("bench_view_context").parse_args(argv)
