"""OBJ reading and the crop-local inside test of closed surfaces."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh
from scipy import ndimage

from napari_segclr.exceptions import MorphologyFormatError, VoxelSizeError
from napari_segclr.synthetic.cell import Mesh
from napari_segclr.synthetic.mesh import mesh_inside, read_obj


def _mesh(tm: trimesh.Trimesh) -> Mesh:
    return Mesh(np.asarray(tm.vertices, dtype=np.float64), np.asarray(tm.faces, dtype=np.int64))


def _centres(origin, shape, voxel_size) -> np.ndarray:
    axes = [np.arange(n) * v + o for n, v, o in zip(shape, voxel_size, origin, strict=True)]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)


def _convex_inside(tm: trimesh.Trimesh, points: np.ndarray) -> np.ndarray:
    """Exact reference for a convex mesh: behind every face plane."""
    inside = np.ones(points.shape[:-1], dtype=bool)
    for normal, corner in zip(tm.face_normals, tm.triangles[:, 0], strict=True):
        inside &= points @ normal <= corner @ normal
    return inside


def test_read_obj_converts_xyz_voxels_to_zyx_nm(tmp_path):
    path = tmp_path / "cell.obj"
    path.write_text(
        "# a unit square pyramid\n"
        "v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nv 0.5 0.5 2\n"
        "f 1/1/1 4/2/2 3/3/3 2/4/4\n"  # a quad with texture/normal indices
        "f 1 2 5\nf -4 -3 -1\nf 3 4 5\nf 4 1 5\n"  # negative = relative indices
    )
    mesh = read_obj(path, voxel_size_nm=(40, 8, 4))
    assert mesh.vertices.shape == (5, 3)
    np.testing.assert_allclose(mesh.vertices[4], [2 * 40, 0.5 * 8, 0.5 * 4])
    np.testing.assert_allclose(mesh.vertices[1], [0, 0, 4])
    assert mesh.faces.shape == (6, 3)  # the quad becomes two triangles
    np.testing.assert_array_equal(mesh.faces[2], [0, 1, 4])
    np.testing.assert_array_equal(mesh.faces[3], [1, 2, 4])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("v 0 0\nf 1 1 1\n", "line 1"),
        ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 x\n", "line 4"),
        ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2\n", "line 4"),
        ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 9\n", "vertex that does not exist"),
        ("v 0 0 0\n", "no faces"),
    ],
)
def test_read_obj_rejects_malformed_files(tmp_path, text, message):
    path = tmp_path / "bad.obj"
    path.write_text(text)
    with pytest.raises(MorphologyFormatError, match=message) as info:
        read_obj(path)
    assert "bad.obj" in str(info.value)


@pytest.mark.parametrize(
    "tm",
    [
        trimesh.creation.icosphere(subdivisions=2, radius=400.0),
        trimesh.creation.box((500.0, 300.0, 700.0)),
        trimesh.creation.box(
            (500.0, 300.0, 700.0),
            transform=trimesh.transformations.rotation_matrix(0.7, [1.0, 2.0, 3.0]),
        ),
    ],
    ids=["icosphere", "box", "rotated-box"],
)
@pytest.mark.parametrize("voxel_size", [(25.0, 25.0, 25.0), (40.0, 16.0, 24.0)])
def test_mesh_inside_equals_exact_test_for_convex_meshes(tm, voxel_size):
    origin = (-520.0, -505.0, -498.0)
    shape = tuple(int(n) for n in np.ceil(1040.0 / np.asarray(voxel_size)))
    got = mesh_inside(_mesh(tm), origin, shape, voxel_size)
    expected = _convex_inside(tm, _centres(origin, shape, voxel_size))
    assert got.shape == shape
    assert expected.sum() > 1000
    assert (got == expected).mean() >= 0.9999


def test_mesh_inside_matches_analytic_sphere_and_torus():
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=600.0)
    origin, shape, vs = (-700.0,) * 3, (71, 71, 71), (20.0,) * 3
    points = _centres(origin, shape, vs)
    got = mesh_inside(_mesh(sphere), origin, shape, vs)
    assert (got == (np.linalg.norm(points, axis=-1) < 600.0)).mean() >= 0.995

    torus = trimesh.creation.torus(
        major_radius=500.0, minor_radius=180.0, major_sections=96, minor_sections=48
    )
    got = mesh_inside(_mesh(torus), origin, shape, vs)
    # The torus's axis is its third vertex coordinate: our x.
    ring = np.hypot(np.hypot(points[..., 0], points[..., 1]) - 500.0, points[..., 2])
    expected = ring < 180.0
    assert expected.sum() > 10_000
    assert (got == expected).mean() >= 0.995


def test_mesh_inside_counts_grid_aligned_boundaries_once():
    """Vertices, edges and faces exactly on voxel centres: a half-open box, no streaks."""
    box = _mesh(trimesh.creation.box((200.0, 200.0, 200.0)))
    got = mesh_inside(box, (-300.0,) * 3, (31, 31, 31), 20.0)
    assert got.sum() == 10**3
    z, y, x = np.nonzero(got)
    assert {int(a.min()) for a in (z, y, x)} <= {10, 11}
    assert {int(a.max()) for a in (z, y, x)} <= {19, 20}


def test_mesh_inside_is_crop_local():
    """A crop equals the same region cut from a larger crop, wherever it lies."""
    mesh = _mesh(trimesh.creation.torus(major_radius=500.0, minor_radius=180.0))
    vs = (24.0, 20.0, 16.0)
    origin = np.array([-400.0, -720.0, -720.0])
    whole = mesh_inside(mesh, origin, (34, 72, 90), vs)
    for start in [(0, 0, 0), (10, 20, 30), (20, 50, 70), (33, 0, 89)]:
        start = np.asarray(start)
        part = mesh_inside(mesh, origin + start * vs, (7, 13, 17), vs)
        sl = tuple(slice(s, s + n) for s, n in zip(start, part.shape, strict=True))
        np.testing.assert_array_equal(part, np.pad(whole, [(0, 7), (0, 13), (0, 17)])[sl])


def test_mesh_inside_tolerates_fins_and_holes():
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=400.0)
    origin, shape, vs = (-500.0,) * 3, (51, 51, 51), (20.0,) * 3
    reference = mesh_inside(_mesh(sphere), origin, shape, vs)

    # A zero-thickness fin (a face and its reverse) changes nothing.
    fin_vertices = np.vstack([sphere.vertices, [[0, 0, 0], [300, 0, 0], [0, 300, 300]]])
    n = len(sphere.vertices)
    fin_faces = np.vstack([sphere.faces, [[n, n + 1, n + 2], [n, n + 2, n + 1]]])
    finned = mesh_inside(Mesh(fin_vertices, fin_faces), origin, shape, vs)
    np.testing.assert_array_equal(finned, reference)

    # A missing face costs at most the columns through the hole, never a streak outside.
    holed = mesh_inside(Mesh(np.asarray(sphere.vertices), sphere.faces[1:]), origin, shape, vs)
    assert not np.any(holed & ~reference)
    assert (holed == reference).mean() >= 0.999


def test_mesh_inside_far_crop_and_validation():
    sphere = _mesh(trimesh.creation.icosphere(radius=100.0))
    assert not mesh_inside(sphere, (0.0, 5000.0, 0.0), (4, 4, 4), 10.0).any()
    assert mesh_inside(sphere, (0.0, 0.0, 0.0), (0, 4, 4), 10.0).shape == (0, 4, 4)
    with pytest.raises(VoxelSizeError):
        mesh_inside(sphere, (0.0, 0.0, 0.0), (4, 4, 4), (10.0, 0.0, 10.0))
    with pytest.raises(ValueError, match="shape"):
        mesh_inside(sphere, (0.0, 0.0, 0.0), (4, 4), 10.0)


def test_mesh_inside_agrees_with_trimesh_on_a_hemibrain_crop(shared_data):
    pytest.importorskip("rtree", reason="trimesh's contains needs rtree")
    mesh = read_obj(shared_data / "hemibrain_da1" / "754534424.obj")
    nodes = np.loadtxt(
        shared_data / "hemibrain_da1" / "754534424_nodes_compartment.csv",
        delimiter=",",
        skiprows=1,
        usecols=(2, 3, 4),
    )
    centre = nodes[len(nodes) // 2, ::-1] * 8.0
    vs = np.array([32.0, 32.0, 32.0])
    shape = (64, 64, 64)
    origin = centre - 32 * vs
    got = mesh_inside(mesh, origin, shape, vs)
    assert 0.005 < got.mean() < 0.9

    # Half the probes on the surface, where the methods could disagree.
    rng = np.random.default_rng(0)
    surface = np.argwhere(got ^ ndimage.binary_erosion(got))
    probes = np.vstack([surface[rng.choice(len(surface), 100)], rng.integers(0, 64, size=(100, 3))])
    reference = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False).contains(
        origin + probes * vs
    )
    assert (got[tuple(probes.T)] == reference).mean() >= 0.97
