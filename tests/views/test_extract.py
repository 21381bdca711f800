"""Views cut in physical space: geometry, resampling, masks, padding, jitter, grouping."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from napari_segclr.exceptions import SegmentNotFoundError, ShapeMismatchError, VoxelSizeError
from napari_segclr.io import Dataset, Volume
from napari_segclr.io.counting import ReadCounter
from napari_segclr.views import ViewSpec, extract_views, jitter_centers, view_groups

ID = 2**60
ALL_KINDS = ("em", "mask", "masked_em")


def _voxel_box(center: np.ndarray, voxel_size: float, shape: tuple[int, ...]) -> tuple:
    """The voxels of a view centred on a voxel centre, at the volume's own voxel size."""
    first = np.round(center / voxel_size).astype(int) - (np.asarray(shape) - 1) // 2
    return tuple(slice(a, a + n) for a, n in zip(first, shape, strict=True))


def test_equal_voxel_sizes_reduce_to_slicing(blobs):
    spec = ViewSpec((9, 11, 13), 8.0, ALL_KINDS)
    centers = np.array([[80.0, 160.0, 200.0], [200.0, 96.0, 240.0], [240.0, 304.0, 200.0]])
    ids = np.array([ID + 1, ID + 3, ID + 3], dtype=np.uint64)
    em = blobs.em.array
    seg = blobs.segmentation.array
    for snap in (True, False):
        views = extract_views(blobs, ids, centers, spec, snap=snap)
        for b, c in enumerate(centers):
            box = _voxel_box(c, 8.0, spec.shape)
            np.testing.assert_array_equal(views[b, 0], em[box] / np.float32(255))
            np.testing.assert_array_equal(views[b, 1], seg[box] == ids[b])
            np.testing.assert_array_equal(views[b, 2], views[b, 0] * views[b, 1])


def test_snap_moves_centres_onto_the_voxel_grid(blobs):
    spec = ViewSpec((9, 9, 9), 8.0, ("em",))
    on_grid = np.array([[160.0, 160.0, 160.0]])
    snapped = extract_views(blobs, None, on_grid + 3.0, spec)
    exact = extract_views(blobs, None, on_grid, spec)
    interpolated = extract_views(blobs, None, on_grid + 3.0, spec, snap=False)
    np.testing.assert_array_equal(snapped, exact)
    assert not np.allclose(interpolated, exact)


def test_coarse_segmentation_matches_nearest_upsampling():
    """EM at 8 nm with labels at 16 nm equals both at 8 nm with the labels repeated."""
    rng = np.random.default_rng(1)
    em = rng.integers(0, 256, (48, 48, 48), dtype=np.uint8)
    coarse = rng.integers(1, 4, (24, 24, 24)).astype(np.uint64) + np.uint64(ID)
    fine = coarse.repeat(2, 0).repeat(2, 1).repeat(2, 2)
    em_volume = Volume(em, 8.0)
    # A 16 nm voxel covers two 8 nm voxels: its centre is half an 8 nm voxel further on.
    mixed = Dataset(em_volume, Volume(coarse, 16.0, offset=(4.0, 4.0, 4.0), kind="labels"))
    same = Dataset(em_volume, Volume(fine, 8.0, kind="labels"))
    centers = rng.uniform(120, 260, size=(6, 3))
    ids = np.uint64(ID + 2)
    for spec in (ViewSpec((11, 11, 11), 8.0, ALL_KINDS), ViewSpec((7, 9, 7), 20.0, ALL_KINDS)):
        for snap in (True, False):
            a = extract_views(mixed, ids, centers, spec, snap=snap)
            b = extract_views(same, ids, centers, spec, snap=snap)
            np.testing.assert_array_equal(a, b)
            assert 0 < a[:, 1].mean() < 1


@pytest.mark.parametrize("ratio", [1, 2, 3])
def test_area_kernel_keeps_linear_ramps(ratio):
    """Averaging a ramp over whole-voxel footprints (or interpolating it) gives its value."""
    z, y, x = np.meshgrid(*(np.arange(40.0),) * 3, indexing="ij")
    ramp = (0.01 * z + 0.003 * y - 0.002 * x + 0.2).astype(np.float32)
    volume = Volume(ramp, 8.0, offset=(5.0, -3.0, 2.0))
    spec = ViewSpec((5, 5, 5), 8.0 * ratio, ("em",))
    centers = np.random.default_rng(2).uniform(140, 180, size=(4, 3))
    views = extract_views(volume, None, centers, spec, snap=False)
    grid = (np.arange(5) - 2) * 8.0 * ratio
    for view, c in zip(views[:, 0], centers, strict=True):
        pz, py, px = np.meshgrid(*(c[k] + grid for k in range(3)), indexing="ij")
        vz, vy, vx = ((p - o) / 8.0 for p, o in zip((pz, py, px), volume.offset, strict=True))
        np.testing.assert_allclose(view, 0.01 * vz + 0.003 * vy - 0.002 * vx + 0.2, atol=1e-5)


def test_anisotropic_volume_resampled_to_isotropic_view():
    rng = np.random.default_rng(3)
    shape = (12, 60, 60)
    em = rng.random(shape, dtype=np.float32)
    seg = np.where(rng.random(shape) < 0.5, ID + 7, ID + 9).astype(np.uint64)
    vs = (40.0, 8.0, 8.0)
    ds = Dataset(Volume(em, vs), Volume(seg, vs, kind="labels"))
    spec = ViewSpec((9, 9, 9), 16.0, ("em", "mask"))
    centers = np.array([[200.0, 244.0, 236.0], [230.0, 196.0, 252.0]])
    views = extract_views(ds, ID + 7, centers, spec, snap=False)
    offsets = (np.arange(9) - 4) * 16.0
    for view, c in zip(views, centers, strict=True):
        # z: linear interpolation (16 nm is finer than 40); y, x: mean of 2×2 voxels.
        zz = (c[0] + offsets) / 40.0
        pooled = ndimage.uniform_filter(em, size=(1, 2, 2), origin=(0, -1, -1), mode="constant")
        yy = (c[1] + offsets) / 8.0 - 0.5
        xx = (c[2] + offsets) / 8.0 - 0.5
        coords = np.meshgrid(zz, yy, xx, indexing="ij")
        expected = ndimage.map_coordinates(pooled, coords, order=1, mode="constant")
        y_whole = np.allclose(yy, np.round(yy))
        x_whole = np.allclose(xx, np.round(xx))
        assert y_whole and x_whole  # the 2×2 means are then exactly the area kernel
        np.testing.assert_allclose(view[0], expected, atol=1e-5)
        nearest = [np.floor((c[k] + offsets) / vs[k] + 0.5).astype(int) for k in range(3)]
        np.testing.assert_array_equal(view[1], seg[np.ix_(*nearest)] == np.uint64(ID + 7))


def test_masks_compare_huge_ids_exactly():
    """Ids 2**60 + 1 and 2**60 + 2 are the same float64: masks must not go through float."""
    seg = np.full((16, 16, 16), ID + 1, dtype=np.uint64)
    seg[:, :, 8:] = ID + 2
    seg[:, 8:, :] = 2**64 - 1
    assert float(ID + 1) == float(ID + 2)
    em = np.full(seg.shape, 200, dtype=np.uint8)
    ds = Dataset(Volume(em, 10.0), Volume(seg, 10.0, kind="labels"))
    spec = ViewSpec((16, 16, 16), 10.0, ("mask", "masked_em"))
    center = np.array([[75.0, 75.0, 75.0]])
    for segment in (ID + 1, ID + 2, 2**64 - 1):
        views = extract_views(ds, [segment], center, spec)
        np.testing.assert_array_equal(views[0, 0], seg == np.uint64(segment))
        masked = views[0, 1]
        assert np.all(masked[seg != np.uint64(segment)] == 0)
        np.testing.assert_allclose(masked[seg == np.uint64(segment)], 200 / 255)


def test_outside_the_volume_reads_zero(blobs):
    spec = ViewSpec((9, 9, 9), 8.0, ALL_KINDS)
    corner = np.array([[4.0, 4.0, 4.0]])  # the centre of voxel (0, 0, 0) after snapping
    views = extract_views(blobs, ID + 1, corner - 4.0, spec)
    inside = (slice(4, None),) * 3
    assert np.all(views[0][:, :4] == 0) and np.all(views[0][..., :4] == 0)
    np.testing.assert_array_equal(views[0, 0][inside], blobs.em.array[:5, :5, :5] / np.float32(255))
    assert views[0, 1][inside].all()


def test_coarser_views_read_a_pyramid_level():
    rng = np.random.default_rng(4)
    fine = rng.integers(0, 256, (64, 64, 64), dtype=np.uint8)
    coarse = fine.reshape(32, 2, 32, 2, 32, 2).mean(axis=(1, 3, 5)).astype(np.uint8)
    fine_array, coarse_array = ReadCounter(fine), ReadCounter(coarse)
    volume = Volume(fine_array, 8.0, levels=(fine_array, coarse_array), level_voxel_sizes=(8, 16))
    views = extract_views(
        volume, None, np.array([[256.0, 256.0, 256.0]]), ViewSpec((9, 9, 9), 32.0, ("em",))
    )
    assert fine_array.voxels_read == 0 and coarse_array.voxels_read > 0
    flat = Volume(coarse, 16.0, offset=(4.0, 4.0, 4.0))
    expected = extract_views(
        flat, None, np.array([[256.0, 256.0, 256.0]]), ViewSpec((9, 9, 9), 32.0, ("em",))
    )
    np.testing.assert_array_equal(views, expected)


def test_jitter_is_seeded_and_bounded():
    centers = np.zeros((4000, 3))
    cube = jitter_centers(centers, (30.0, 20.0, 10.0), generator=5)
    np.testing.assert_array_equal(cube, jitter_centers(centers, (30.0, 20.0, 10.0), generator=5))
    assert np.all(np.abs(cube) <= [30.0, 20.0, 10.0])
    assert np.all(np.abs(cube).max(axis=0) > [29.0, 19.0, 9.0])
    ball = jitter_centers(centers, 50.0, shape="ball", generator=6)
    radius = np.linalg.norm(ball, axis=1)
    assert radius.max() <= 50.0 and radius.max() > 49.0
    assert 0.45 < np.mean(radius < 50.0 * 0.5 ** (1 / 3)) < 0.55  # half the volume, half the points
    np.testing.assert_array_equal(jitter_centers(centers[:3], 0.0, generator=5), centers[:3])


def test_jittered_views_are_reproducible(blobs):
    spec = ViewSpec((7, 7, 7), 8.0, ("masked_em",))
    centers = np.array([[80.0, 160.0, 200.0]] * 3)
    a = extract_views(blobs, ID + 1, centers, spec, jitter_nm=24.0, generator=9)
    b = extract_views(blobs, ID + 1, centers, spec, jitter_nm=24.0, generator=9)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a[0], a[1])


def test_grouped_reads_touch_far_fewer_voxels():
    rng = np.random.default_rng(6)
    em = ReadCounter(rng.integers(0, 256, (64, 96, 96), dtype=np.uint8))
    seg = ReadCounter(np.full((64, 96, 96), ID + 5, dtype=np.uint64))
    ds = Dataset(Volume(em, 8.0), Volume(seg, 8.0, kind="labels"))
    spec = ViewSpec((17, 17, 17), 8.0, ALL_KINDS)
    # Nodes every 1/20 of the field of view along a neurite (200 nm for "lite" views).
    t = np.linspace(0, 1, 80)[:, None]
    centers = np.array([250.0, 150.0, 150.0]) + t * np.array([10.0, 400.0, 300.0])
    grouped = extract_views(ds, ID + 5, centers, spec, jitter_nm=8.0, generator=1)
    grouped_voxels = em.voxels_read, seg.voxels_read
    em.reset()
    seg.reset()
    alone = extract_views(ds, ID + 5, centers, spec, jitter_nm=8.0, generator=1, group_nm=0)
    np.testing.assert_array_equal(grouped, alone)
    assert em.voxels_read == seg.voxels_read == 80 * 17**3
    assert grouped_voxels[0] < em.voxels_read / 4 and grouped_voxels[1] < seg.voxels_read / 4


def test_groups_follow_the_grid():
    spec = ViewSpec((5, 5, 5), 10.0)  # 50 nm views: 50 nm cells
    centers = np.array([[10.0, 10, 10], [40, 40, 40], [60, 10, 10], [10, 10, 10]])
    groups = sorted(sorted(g.tolist()) for g in view_groups(centers, spec))
    assert groups == [[0, 1, 3], [2]]
    assert len(view_groups(centers, spec, group_nm=0)) == 4


def test_views_write_into_a_given_array(blobs):
    spec = ViewSpec((5, 5, 5), 8.0)
    out = np.full((2, 1, 5, 5, 5), -1.0, dtype=np.float32)
    result = extract_views(blobs, ID + 1, np.array([[80.0, 80, 80], [90, 90, 90]]), spec, out=out)
    assert result is out and out.min() >= 0
    with pytest.raises(ShapeMismatchError, match="out must be"):
        extract_views(blobs, ID + 1, np.array([[80.0, 80, 80]]), spec, out=out)


def test_errors_are_one_line_domain_errors(blobs):
    spec = ViewSpec((5, 5, 5), 8.0)
    inside = np.array([[80.0, 80.0, 80.0]])
    with pytest.raises(ShapeMismatchError, match=r"centers_nm\[1\] .* outside the volumes"):
        extract_views(blobs, ID + 1, np.array([[80.0, 80, 80], [80, 80, 1e5]]), spec)
    with pytest.raises(
        SegmentNotFoundError, match=f"segment {ID + 3} has no voxel in any of its 1"
    ):
        extract_views(blobs, ID + 3, inside, spec)
    with pytest.raises(SegmentNotFoundError, match="background"):
        extract_views(blobs, 0, inside, spec)
    with pytest.raises(VoxelSizeError, match="finer than"):
        extract_views(blobs, ID + 1, inside, ViewSpec((5, 5, 5), 1.0))
    with pytest.raises(ShapeMismatchError, match="need a segmentation"):
        extract_views(blobs.em, ID + 1, inside, spec)
    with pytest.raises(ValueError, match="segment_ids must be integers"):
        extract_views(blobs, [1.5], inside, spec)


def test_an_empty_view_of_a_present_segment_is_returned(blobs):
    spec = ViewSpec((5, 5, 5), 8.0, ("masked_em",))
    centers = np.array([[80.0, 80, 80], [250.0, 80, 80]])  # the second is in another segment
    views = extract_views(blobs, ID + 1, centers, spec)
    assert views[0].any() and not views[1].any()


def test_views_of_a_synthetic_neuropil_sit_on_their_segments():
    synthetic = pytest.importorskip("napari_segclr.synthetic")
    if not hasattr(synthetic, "Neuropil"):
        pytest.skip("the synthetic neuropil is not available")
    neuropil = synthetic.Neuropil(
        synthetic.NeuropilConfig(shape=(48, 48, 48), voxel_size=64.0, seed=3)
    )
    nodes = neuropil.nodes()
    lo, hi = neuropil.volumes()["em"].extent_nm
    centers = nodes[["z_nm", "y_nm", "x_nm"]].to_numpy()
    inside = np.all((centers > lo + 300) & (centers < hi - 300), axis=1)
    nodes, centers = nodes[inside].head(24), centers[inside][:24]
    spec = ViewSpec((9, 9, 9), 128.0, ("em", "mask"))
    views = extract_views(neuropil.volumes(), nodes["segment_id"].to_numpy(), centers, spec)
    assert views.shape == (len(nodes), 2, 9, 9, 9) and 0 < views[:, 0].mean() < 1
    assert views[:, 1, 4, 4, 4].mean() > 0.7  # nodes lie inside their own segment


def test_uint8_views_are_the_float_views_times_255_rounded(blobs):
    centers = np.array([[80.0, 160.0, 200.0], [200.0, 96.0, 240.0], [244.0, 300.0, 203.0]])
    ids = np.array([ID + 1, ID + 3, ID + 3], dtype=np.uint64)
    # 8 nm views are plain crops of the uint8 EM; 20 nm views are area means of it.
    for spec in (ViewSpec((9, 11, 13), 8.0, ALL_KINDS), ViewSpec((7, 7, 7), 20.0, ALL_KINDS)):
        floats = extract_views(blobs, ids, centers, spec, snap=False)
        quantised = extract_views(blobs, ids, centers, spec, snap=False, dtype="uint8")
        assert quantised.dtype == np.uint8
        np.testing.assert_allclose(quantised, floats * 255, atol=0.5 + 1e-3)
        assert set(np.unique(quantised[:, 1]).tolist()) == {0, 255}  # the mask
    np.testing.assert_array_equal(quantised[:, 2], quantised[:, 0] * (quantised[:, 1] > 0))
    plain = ViewSpec((9, 11, 13), 8.0, ALL_KINDS)
    exact = extract_views(blobs, ids, centers, plain, dtype="uint8")
    np.testing.assert_array_equal(
        exact / np.float32(255), extract_views(blobs, ids, centers, plain)
    )


def test_uint8_views_of_other_em_dtypes_are_scaled_and_clipped():
    ramp = np.linspace(-0.5, 1.5, 16**3, dtype=np.float32).reshape(16, 16, 16)
    centre, spec = np.array([[64.0] * 3]), ViewSpec((15,) * 3, 8.0, ("em",))
    views = extract_views(Volume(ramp, 8.0), None, centre, spec, dtype="uint8")
    assert views.min() == 0 and views.max() == 255  # float EM is read as [0, 1]
    deep = (ramp.clip(0, 1) * 65535).astype(np.uint16)
    views = extract_views(Volume(deep, 8.0), None, centre, spec, dtype="uint8")
    np.testing.assert_allclose(views[0, 0], ramp.clip(0, 1)[1:, 1:, 1:] * 255, atol=0.51)


def test_view_dtype_and_out_are_checked(blobs):
    spec = ViewSpec((5, 5, 5), 8.0)
    inside = np.array([[80.0, 80.0, 80.0]])
    with pytest.raises(ValueError, match="dtype must be"):
        extract_views(blobs, ID + 1, inside, spec, dtype="float16")
    with pytest.raises(ShapeMismatchError, match="out must be a uint8 array"):
        extract_views(blobs, ID + 1, inside, spec, dtype="uint8", out=np.zeros((1, 1, 5, 5, 5)))
