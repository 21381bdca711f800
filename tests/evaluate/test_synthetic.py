"""Labelled synthetic neuropil for evaluation: seeds, subcompartment views, typed segments."""

from __future__ import annotations

import numpy as np
import pytest

from napari_segclr.evaluate import (
    CELL_TYPE_NAMES,
    SUBCOMPARTMENTS,
    LabelledViews,
    check_evaluation_seeds,
    evaluation_volume,
)
from napari_segclr.evaluate.synthetic import kept_channels, model_inputs
from napari_segclr.model import get_preset
from napari_segclr.synthetic import Neuropil

TINY = get_preset("tiny")  # 17³ views of 256 nm: a 4.35 µm field of view


@pytest.fixture(scope="module")
def volume():
    return evaluation_volume(
        1000,
        TINY,
        views_per_class=6,
        extent_um=(5.0, 8.8, 8.8),
        voxel_size_nm=128.0,
        nodes_per_type=25,
        rng=0,
    )


def test_seeds_below_1000_or_repeated_are_refused():
    assert check_evaluation_seeds([1003, 1000]) == (1003, 1000)
    with pytest.raises(ValueError, match=r"--seeds \[5\] are below 1000"):
        check_evaluation_seeds([5, 1000], name="--seeds")
    with pytest.raises(ValueError, match="more than once"):
        check_evaluation_seeds([1000, 1000])
    with pytest.raises(ValueError, match="integers"):
        check_evaluation_seeds([1000.5])
    with pytest.raises(ValueError, match="below 1000"):
        evaluation_volume(999, TINY, views_per_class=2)


def test_a_volume_narrower_than_a_view_is_refused():
    with pytest.raises(ValueError, match="extent_um"):
        evaluation_volume(1000, TINY, views_per_class=2, extent_um=(4.0, 8.0, 8.0))


def test_views_of_every_subcompartment_lie_on_their_segment_away_from_the_faces(volume):
    labels = volume.view_labels
    counts = {name: int(np.sum(labels == name)) for name in SUBCOMPARTMENTS}
    assert set(labels.tolist()) <= set(SUBCOMPARTMENTS)
    assert counts["soma"] == 6  # the window is placed on a neuron soma
    assert all(0 < n <= 6 for n in counts.values())
    seg = volume.dataset.segmentation
    centres = volume.view_points.centers_nm
    voxels = np.rint(seg.to_voxel(centres)).astype(int)
    assert np.array_equal(np.asarray(seg.array)[tuple(voxels.T)], volume.view_points.segment_ids)
    lo, hi = seg.extent_nm
    half_view = np.asarray(TINY.field_of_view_nm) / 2
    assert np.all(centres >= lo + half_view - 128) and np.all(centres <= hi - half_view + 128)


def test_segments_have_their_true_types_and_fit_the_budget_per_type(volume):
    segments = volume.segments
    nodes = Neuropil(volume.config).nodes()
    truth = nodes.groupby("segment_id")["cell_type"].first()
    assert segments.skeletons and set(segments.cell_types) == set(segments.skeletons)
    for sid, cell_type in segments.cell_types.items():
        assert truth[np.uint64(sid)] == cell_type
    types = segments.node_types()
    assert len(types) == segments.n_nodes == len(segments.points())
    for name in CELL_TYPE_NAMES:
        assert np.sum(types == name) <= 25
    assert len(set(types.tolist())) >= 4
    lengths = np.concatenate([s.edge_lengths for s in segments.skeletons.values()])
    assert all(len(s) >= 3 for s in segments.skeletons.values())
    assert 700 < np.median(lengths) < 1300  # resampled to a node about every 1000 nm


def test_kept_views_rebuild_every_input_kind():
    rng = np.random.default_rng(0)
    views = np.stack([rng.random((3, 5, 5, 5)), rng.random((3, 5, 5, 5)) > 0.5], axis=1)
    em, mask = kept_channels(np.rint(views * 255).astype(np.uint8))  # as extract_views cuts
    assert em.dtype == np.uint8 and mask.dtype == bool
    kept = LabelledViews(em, mask, np.array(["a", "b", "a"]), np.full(3, 1000), (1.0, 1.0, 1.0))
    inputs = kept.inputs(np.array([0, 2]), ("em", "mask", "masked_em"))
    assert inputs.shape == (2, 3, 5, 5, 5) and inputs.dtype == np.float32
    np.testing.assert_allclose(inputs[:, 0], views[[0, 2], 0], atol=0.5 / 255 + 1e-6)
    np.testing.assert_array_equal(inputs[:, 1], views[[0, 2], 1])
    np.testing.assert_allclose(inputs[:, 2], inputs[:, 0] * inputs[:, 1])
    assert kept.take(np.array([1])).labels.tolist() == ["b"]
    both = LabelledViews.concat([kept, kept.take(slice(0, 1))])
    assert len(both) == 4 and both.em.shape == (4, 5, 5, 5)
    np.testing.assert_array_equal(model_inputs(em, mask, ("mask",))[:, 0], mask)
