"""The view-context benchmark scores every view kind around the same centres."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from napari_segclr.synthetic import Crop
from napari_segclr.views import ViewPoints


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
        methods = [kind["features_rf"], kind["features_true_organelles_rf"]]
        assert list(kind["test_views_with_vesicle_clouds"]) == ["soma", "dendrite", "axon", "glia"]
        assert kind["test_views_with_vesicle_clouds"]["dendrite"] == 0  # boutons are axonal
        for scores in [*methods, *cnn["masked_em"], *cnn["em+mask"]]:
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
        ["--cnn-seeds", "-1"],
        ["--cnn-inputs", "masked_em+raw"],
        ["--cnn-inputs", "mask+mask"],
    ],
)
def test_bad_arguments_are_refused(bench, argv):
    with pytest.raises(SystemExit):
        bench("bench_view_context").parse_args(argv)


def test_true_organelles_are_counted_in_the_view_segment_only(bench):
    context = bench("bench_view_context")
    shape = (9, 9, 9)
    segmentation = np.zeros(shape, np.uint64)
    segmentation[:, :, :5] = 7  # the viewed segment fills x < 5
    organelles = np.zeros(shape, np.uint8)
    organelles[4, 4, 1:4] = 3  # vesicle-cloud voxels inside it, two in view
    organelles[4, 4, 6] = 1  # a mitochondrion of another segment
    organelles[2, 2, 5] = 5  # myelin touching the segment
    organelles[2, 2, 8] = 5  # myelin out of touch
    organelles[0, 0, 0] = 2  # a nucleus voxel outside a 5-voxel field of view
    zeros = np.zeros(shape, np.uint8)
    crop = Crop(zeros, segmentation, segmentation, zeros, organelles)
    volume = SimpleNamespace(
        config=SimpleNamespace(voxel_size=(100.0, 100.0, 100.0), offset=(0.0, 0.0, 0.0)),
        view_points=ViewPoints(np.array([7], np.uint64), np.array([0]), np.array([[400.0] * 3])),
    )
    found = context.true_organelles(volume, crop, 500.0)  # voxels 2–6 on each axis
    mitochondrion, nucleus, vesicles, lysosome, myelin = found[0] / 0.1**3
    assert (mitochondrion, nucleus, vesicles, lysosome, myelin) == pytest.approx((0, 0, 2, 0, 1))
    assert context.true_organelles(volume, crop, 900.0)[0, 1] == pytest.approx(0.1**3)
