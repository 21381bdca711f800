"""Rendering machinery: global-coordinate noise, given cells, mesh cells."""

from __future__ import annotations

import numpy as np
import pytest

from napari_segclr.synthetic import Cell, Compartment, Mesh, Neuropil, NeuropilConfig
from napari_segclr.synthetic import mesh as mesh_module
from napari_segclr.synthetic.growth import norm3
from napari_segclr.synthetic.noise import hash64, make_ids, rng_for, value_noise, voxel_normal
from napari_segclr.synthetic.render import (
    Capsules,
    Grid,
    _capsule_bounds,
    _capsule_scores,
    margin_nm,
)


def test_value_noise_depends_on_global_coordinates_only() -> None:
    axes = [np.arange(n) * 32.0 + 1000.0 for n in (40, 50, 60)]
    whole = value_noise(axes, 150.0, key=9)
    part = value_noise([a[5:30] for a in axes], 150.0, key=9)
    np.testing.assert_array_equal(whole[5:30, 5:30, 5:30], part)
    assert 0.8 < whole.std() < 1.2 and abs(whole.mean()) < 0.3
    assert not np.array_equal(whole, value_noise(axes, 150.0, key=10))


def test_voxel_noise_depends_on_global_indices_only() -> None:
    idx = [np.arange(n) + 4000 for n in (30, 70, 90)]
    whole = voxel_normal(idx, key=3)
    part = voxel_normal([i[10:20] for i in idx], key=3)
    np.testing.assert_array_equal(whole[10:20, 10:20, 10:20], part)
    assert abs(whole.std() - 1) < 0.05


def test_ids_are_large_sparse_and_exact_in_float64() -> None:
    ids = make_ids(1, np.arange(10_000))
    assert ids.dtype == np.uint64 and ids.min() >= 1 and ids.max() < 2**53
    assert len(np.unique(ids)) == len(ids)
    np.testing.assert_array_equal(ids.astype(np.float64).astype(np.uint64), ids)


def test_hashing_leading_integers_apart_gives_the_same_hashes() -> None:
    parts = np.arange(-3, 9).reshape(3, 4) * 1_000_003
    # A leading array sends every part through the array code.
    np.testing.assert_array_equal(hash64(7, -2, 5, parts), hash64(np.array([7]), -2, 5, parts))
    np.testing.assert_array_equal(hash64(7, -2, 5), hash64(np.array([7]), -2, 5))
    seeded = np.random.default_rng(int(hash64(np.array([1]), 2, 3)[0]))
    assert rng_for(1, 2, 3).random() == seeded.random()


def test_norm3_is_numpy_norm_bit_for_bit() -> None:
    v = np.random.default_rng(2).standard_normal((50, 7, 3)) * 1e3
    np.testing.assert_array_equal(norm3(v), np.linalg.norm(v, axis=-1))


def test_capsule_boxes_hold_every_voxel_a_capsule_reaches() -> None:
    rng = np.random.default_rng(4)
    n = 60
    p0 = rng.uniform(300, 1700, (n, 3))
    p1 = p0 + rng.normal(0, 400, (n, 3)) * rng.integers(0, 2, (n, 1))  # some balls
    caps = Capsules(
        p0=p0,
        p1=p1,
        r0=rng.uniform(30, 500, n),
        r1=rng.uniform(30, 500, n),
        cell=np.arange(n),
        node=np.arange(n),
        soma=np.zeros(n, bool),
        sheath=np.zeros(n, np.float32),
        open_end=rng.random(n) < 0.7,
    )
    grid = Grid((0, 0, 0), (50, 50, 50), (40.0, 40.0, 40.0), (0.0, 0.0, 0.0))
    margin = margin_nm(grid)
    lo, hi = _capsule_bounds(caps, margin)
    z, y, x = grid.axes
    reached = 0
    for c in range(n):
        s, _ = _capsule_scores(grid, caps, c, (slice(0, 50),) * 3, margin)
        in_box = (
            ((z >= lo[c, 0]) & (z <= hi[c, 0]))[:, None, None]
            & ((y >= lo[c, 1]) & (y <= hi[c, 1]))[None, :, None]
            & ((x >= lo[c, 2]) & (x <= hi[c, 2]))[None, None, :]
        )
        assert not np.any(np.isfinite(s) & ~in_box), c
        reached += np.isfinite(s).sum()
    assert reached > 10_000


def _line_cell(cell_id: int, z: float, y: float, radius: float) -> Cell:
    x = np.arange(0.0, 3001.0, 250.0)
    nodes = np.stack([np.full_like(x, z), np.full_like(x, y), x], axis=1)
    parents = np.arange(len(x)) - 1
    comps = np.full(len(x), Compartment.AXON, np.uint8)
    comps[len(x) // 2 :] = Compartment.DENDRITE
    return Cell(cell_id, "test", nodes, parents, np.full(len(x), radius), comps)


def _sphere_mesh(centre: np.ndarray, radius: float) -> Mesh:
    import trimesh

    sphere = trimesh.creation.icosphere(subdivisions=2, radius=radius)
    return Mesh(
        vertices=np.asarray(sphere.vertices)[:, ::-1] + centre, faces=np.asarray(sphere.faces)
    )


def _sphere_inside(mesh: Mesh, origin_nm, shape, voxel_size) -> np.ndarray:
    """Exact inside test of the sphere built by ``_sphere_mesh``: a stand-in."""
    centre = (mesh.vertices.max(0) + mesh.vertices.min(0)) / 2
    radius = (mesh.vertices.max(0) - mesh.vertices.min(0)).max() / 2
    sizes = np.broadcast_to(voxel_size, 3)
    axes = [o + np.arange(n) * v for o, n, v in zip(origin_nm, shape, sizes, strict=True)]
    zz, yy, xx = np.meshgrid(*axes, indexing="ij")
    return (zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2 <= radius**2


def test_given_cells_are_rendered_with_their_ids_and_compartments(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(mesh_module, "mesh_inside", _sphere_inside)
    axon = _line_cell(2**40 + 5, 800.0, 800.0, 150.0)
    centre = np.array([1600.0, 2000.0, 1500.0])
    soma_nodes = np.stack([centre, centre + np.array([0, 0, 300.0])])
    soma = Cell(
        2**41 + 7,
        "blob",
        soma_nodes,
        np.array([-1, 0]),
        np.array([500.0, 400.0]),
        np.array([Compartment.SOMA, Compartment.DENDRITE], np.uint8),
        mesh=_sphere_mesh(centre, 600.0),
    )
    neuropil = Neuropil(NeuropilConfig(shape=(80, 100, 100), seed=1), cells=[axon, soma])
    crop = neuropil.render((slice(0, 80), slice(0, 100), slice(0, 100)))
    assert set(np.unique(crop.cells).tolist()) == {0, axon.cell_id, soma.cell_id}
    # The axon: a tube of radius 150 nm along x at (z, y) = (800, 800) nm.
    tube = crop.cells[25, 20:31, 40] == axon.cell_id
    assert tube[5] and not tube[0] and not tube[-1]
    assert crop.compartments[25, 25, 10] == Compartment.AXON
    assert crop.compartments[25, 25, 90] == Compartment.DENDRITE
    # The mesh cell fills its sphere (radius 600 nm), not its skeleton radii.
    c = np.rint(centre / 32).astype(int)
    assert crop.cells[c[0], c[1], c[2]] == soma.cell_id
    assert crop.cells[c[0], c[1] + 17, c[2]] == soma.cell_id  # 544 nm from the centre
    assert crop.cells[c[0], c[1] + 21, c[2]] == 0  # 672 nm
    assert crop.compartments[c[0], c[1], c[2] - 10] == Compartment.SOMA
    # Segments are relabelled cells; tables describe the given cells.
    assert len(np.unique(crop.segmentation)) == 3
    table = neuropil.cell_table()
    assert set(table["cell_id"]) == {axon.cell_id, soma.cell_id}
    assert neuropil.nodes()["cell_type"].isin(["test", "blob"]).all()


def test_given_cells_need_unique_ids() -> None:
    cell = _line_cell(9, 500.0, 500.0, 100.0)
    with pytest.raises(ValueError, match="unique"):
        Neuropil(NeuropilConfig(shape=(10, 10, 10)), cells=[cell, cell])


def test_membranes_are_drawn_between_touching_cells() -> None:
    # Two parallel axons 300 nm apart (radius 200 nm): they overlap and share a border.
    a = _line_cell(11, 800.0, 700.0, 200.0)
    b = _line_cell(12, 800.0, 1000.0, 200.0)
    neuropil = Neuropil(
        NeuropilConfig(shape=(60, 80, 60), voxel_size=16, seed=0, noise=0, contrast_variation=0),
        cells=[a, b],
    )
    crop = neuropil.render((slice(50, 51), slice(0, 80), slice(40, 41)))
    profile = crop.em[0, :, 0].astype(float)
    labels = crop.cells[0, :, 0]
    border = np.flatnonzero(np.diff(labels.astype(np.int64)) != 0)
    inner = border[(labels[border] > 0) & (labels[border + 1] > 0)]
    assert len(inner) == 1
    i = inner[0]
    core_a, core_b = profile[labels == a.cell_id].max(), profile[labels == b.cell_id].max()
    assert profile[i : i + 2].min() < min(core_a, core_b) - 40
