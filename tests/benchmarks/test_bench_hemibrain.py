"""The hemibrain benchmark: its mesh volume, shape features, and a tiny run of all rotations."""

from __future__ import annotations

import numpy as np
import pytest

from napari_segclr.synthetic import mesh_inside, read_hemibrain_neuron

BODY = 722817260


@pytest.fixture
def neuron(shared_data):
    folder = shared_data / "hemibrain_da1"
    return read_hemibrain_neuron(folder / f"{BODY}.obj", folder / f"{BODY}_nodes_compartment.csv")


def test_mesh_labels_crops_are_the_mesh_voxelised_in_place(bench, neuron):
    hemibrain = bench("bench_hemibrain")
    dataset = hemibrain.neuron_dataset(neuron, voxel_size=64.0, margin_nm=1000.0)
    volume = dataset.segmentation
    node = neuron.nodes[len(neuron.nodes) // 2]
    start = np.round(volume.to_voxel(node)).astype(int) - 10
    crop = volume.read(tuple(slice(int(a), int(a) + 21) for a in start))
    expected = mesh_inside(neuron.mesh, volume.to_nm(start), (21, 21, 21), 64.0)
    assert crop.dtype == np.uint64 and crop.any()
    np.testing.assert_array_equal(crop, np.where(expected, BODY, 0).astype(np.uint64))


def test_shape_features_measure_a_rod(bench):
    hemibrain = bench("bench_hemibrain")
    y, x = np.mgrid[:33, :33] - 16
    rod = np.broadcast_to(y**2 + x**2 <= 5**2, (1, 33, 33, 33))  # a rod along z, radius 5
    features = hemibrain.shape_features(rod, 10.0)[0]
    fraction_4 = rod[0, 12:21, 12:21, 12:21].mean()
    assert features[1] == pytest.approx(fraction_4)
    assert 45.0 <= features[-3] <= 60.0  # about the radius, in nm
    empty = hemibrain.shape_features(np.zeros((1, 17, 17, 17), bool), 10.0)[0]
    assert not empty.any()


def test_hemibrain_runs_all_rotations(bench, shared_data):
    hemibrain = bench("bench_hemibrain")
    tiny = "--view-voxels 17 --widths 4 8 8 16 --max-views 30 --ssl-steps 2 --ssl-batch-size 4"
    tiny += " --ssl-seeds 300 --ssl-extent-um 2 4 4 --threads 1"
    report = hemibrain.main(["--data", str(shared_data / "hemibrain_da1"), *tiny.split()])
    assert report["ssl_training"]["steps"] == 2
    assert {r["test_neuron"] for r in report["rotations"]} == set(hemibrain.NEURONS)
    for counts in report["neurons"].values():
        assert 0 < counts["on_mesh"] <= counts["nodes_sampled"] == 30
        assert counts["axon_views"] + counts["dendrite_views"] == counts["on_mesh"]
    for name in hemibrain.FEATURES:
        scores = [r[name]["macro_f1"] for r in report["rotations"]]
        assert all(0.0 <= s <= 1.0 for s in scores)
        assert report["mean_macro_f1"][name] == pytest.approx(np.mean(scores), abs=1e-3)
