"""Real cell shapes: SWC and hemibrain readers, placement, boxes and node subsampling."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest

from napari_segclr.exceptions import MorphologyFormatError
from napari_segclr.synthetic.cell import Cell, Compartment
from napari_segclr.synthetic.real import (
    cell_box,
    place_cells,
    read_hemibrain_neuron,
    read_morphology_table,
    read_swc,
    stable_cell_id,
    subsample_nodes,
    transform_cell,
)

HEMIBRAIN_IDS = (722817260, 754534424, 754538881)


def _write_swc(path, body: str) -> None:
    path.write_text("# id type x y z radius parent\n" + body)


def _y_cell(cell_id: int = 7) -> Cell:
    """A soma with two 10 µm straight branches along x, nodes every 250 nm."""
    steps = np.arange(1, 41) * 250.0
    nodes = np.vstack(
        [[[0.0, 0.0, 0.0]], np.c_[0 * steps, 0 * steps, steps], np.c_[0 * steps, steps, 0 * steps]]
    )
    parents = np.r_[-1, 0, np.arange(1, 40), 0, np.arange(41, 80)]
    comps = np.r_[Compartment.SOMA, [Compartment.AXON] * 40, [Compartment.DENDRITE] * 40]
    return Cell(
        cell_id=cell_id,
        cell_type="test",
        nodes=nodes,
        parents=parents,
        radii=np.full(81, 100.0),
        compartments=comps.astype(np.uint8),
    )


# -- SWC -------------------------------------------------------------------------------


def test_read_swc_allen_cell(shared_data):
    path = shared_data / "morphology" / "allen_celltypes" / "swc" / "313862022.swc.gz"
    raw = np.loadtxt(path)  # ids run 1..N in file order in this file
    cell = read_swc(path, cell_id=5, cell_type="spiny_L4")
    assert cell.n_nodes == len(raw) == 2657
    assert cell.cell_id == 5 and cell.cell_type == "spiny_L4"
    np.testing.assert_allclose(cell.nodes, raw[:, [4, 3, 2]] * 1000.0)  # µm x y z -> nm z y x
    np.testing.assert_array_equal(cell.parents, np.where(raw[:, 6] < 0, -1, raw[:, 6] - 1))
    np.testing.assert_array_equal(cell.compartments, raw[:, 1])
    assert set(np.unique(cell.compartments)) == {1, 2, 3, 4}
    assert cell.attributes["source"] == str(path)


def test_read_swc_clamps_and_fixes_radii(shared_data):
    swc = shared_data / "morphology"
    path = swc / "allen_celltypes" / "swc" / "555697303.swc.gz"  # radii down to 2.5 nm
    raw_nm = np.loadtxt(path)[:, 5] * 1000.0
    cell = read_swc(path, cell_id=1, min_radius_nm=80.0)
    assert raw_nm.min() < 80.0
    assert cell.radii.min() == 80.0
    np.testing.assert_allclose(cell.radii, np.maximum(raw_nm, 80.0))

    table = pd.read_csv(swc / "scala2019_l4" / "metadata.csv")
    path = swc / "scala2019_l4" / table["file"][0]
    cell = read_swc(path, cell_id=2, fixed_radius_nm=150.0)
    soma = cell.compartments == Compartment.SOMA
    assert soma.sum() == 1 and cell.radii[soma][0] > 1000.0  # the soma keeps its radius
    assert np.all(cell.radii[~soma] == 150.0)
    assert {2, 3} <= set(np.unique(cell.compartments))
    per_type = read_swc(path, cell_id=2, fixed_radius_nm={Compartment.AXON: 60.0})
    assert np.all(per_type.radii[per_type.compartments == Compartment.AXON] == 60.0)
    dendrite = per_type.compartments == Compartment.DENDRITE
    assert np.any(per_type.radii[dendrite] != 60.0)


def test_read_swc_plain_and_gzip_with_sparse_ids_and_other_types(tmp_path):
    body = (
        "10 1 0 0 0 5 -1\n"
        "30 2 1 0 0 0.2 10\n"
        "20 6 2 0 0 0.1 30\n"  # end point under an axon node: axon
        "40 0 0 1 0 0 10\n"  # undefined under the soma: soma
        "50 7 0 0 1 0.3 -1\n"  # a second root of unknown type: dendrite
        "60 5 0 0 2 0.3 50\n"
    )
    plain = tmp_path / "cell.swc"
    _write_swc(plain, body)
    packed = tmp_path / "cell.swc.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    for path in (plain, packed):
        cell = read_swc(path, cell_id=3)
        np.testing.assert_array_equal(cell.parents, [-1, 0, 1, 0, -1, 4])
        np.testing.assert_array_equal(cell.compartments, [1, 2, 2, 1, 3, 3])
        np.testing.assert_allclose(cell.nodes[1], [0.0, 0.0, 1000.0])
        np.testing.assert_allclose(cell.radii, [5000, 200, 100, 50, 300, 300])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("1 1 0 0 0 1 -1\n2 3 1 0 0 1\n", "line 3: expected 7 fields"),
        ("1 1 0 0 0 1 -1\n2 3 1 zero 0 1 1\n", "line 3: non-numeric"),
        ("1 1 0 0 0 1 -1\n2 3 1 0 0 1 9\n", "line 3: node 2 has parent 9"),
        ("1 1 0 0 0 1 -1\n1 3 1 0 0 1 1\n", "line 3: duplicate node id 1"),
        ("1 1 0 0 0 1 -1\n2 3 1 0 0 1 3\n3 3 2 0 0 1 2\n", "cycle through node"),
        ("1 1 0 0 0 1 -1\n2.5 3 1 0 0 1 1\n", "line 3: node id 2.5 is not an integer"),
        ("1 1 0 0 nan 1 -1\n", "line 2: non-finite"),
        ("# only a comment\n\n", "no nodes"),
    ],
    ids=["fields", "number", "parent", "duplicate", "cycle", "integer", "finite", "empty"],
)
def test_read_swc_names_the_file_and_problem(tmp_path, body, message):
    path = tmp_path / "broken.swc"
    _write_swc(path, body)
    with pytest.raises(MorphologyFormatError, match=message) as info:
        read_swc(path, cell_id=1)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_read_morphology_table_subset(shared_data):
    csv = shared_data / "morphology" / "allen_celltypes" / "metadata.csv"
    table = pd.read_csv(csv)
    cells = read_morphology_table(csv, rows=[0, 1, 2])
    assert [c.cell_type for c in cells] == table["cell_type"][:3].tolist()
    assert [c.attributes["specimen_id"] for c in cells] == table["specimen_id"][:3].tolist()
    ids = [c.cell_id for c in cells]
    assert len(set(ids)) == 3 and all(0 < i < 2**53 for i in ids)
    again = read_morphology_table(
        csv, rows=[2], label_columns=["layer"], cell_type_column="cre_class"
    )
    assert again[0].cell_id == ids[2]
    assert again[0].cell_type == table["cre_class"][2]
    assert set(again[0].attributes) == {"source", "layer"}
    with pytest.raises(MorphologyFormatError, match="no column 'nope'"):
        read_morphology_table(csv, rows=[0], cell_type_column="nope")

    scala = read_morphology_table(
        shared_data / "morphology" / "scala2019_l4" / "metadata.csv",
        rows=[0],
        fixed_radius_nm=200.0,
    )
    assert scala[0].cell_type == "BPC" and scala[0].cell_id not in ids


def test_stable_cell_id_range():
    ids = {stable_cell_id(f"cell {i}") for i in range(1000)}
    assert len(ids) == 1000 and min(ids) > 0 and max(ids) < 2**53
    assert stable_cell_id("a") == stable_cell_id("a") != stable_cell_id("b")


# -- hemibrain --------------------------------------------------------------------------


@pytest.mark.parametrize("body_id", HEMIBRAIN_IDS)
def test_read_hemibrain_neuron(shared_data, body_id):
    folder = shared_data / "hemibrain_da1"
    csv = folder / f"{body_id}_nodes_compartment.csv"
    cell = read_hemibrain_neuron(folder / f"{body_id}.obj", csv)
    table = pd.read_csv(csv)
    assert cell.cell_id == body_id and cell.cell_type == "DA1"
    assert cell.n_nodes == len(table)
    assert cell.mesh is not None and len(cell.mesh.faces) > 10_000
    np.testing.assert_allclose(cell.nodes[0], table[["z", "y", "x"]].to_numpy()[0] * 8.0)
    lo, hi = cell.mesh.vertices.min(axis=0), cell.mesh.vertices.max(axis=0)
    slack = cell.radii[:, None]
    assert np.all((cell.nodes >= lo - slack) & (cell.nodes <= hi + slack))
    assert {Compartment.AXON, Compartment.DENDRITE} <= set(np.unique(cell.compartments))
    linker = cell.attributes["linker_nodes"]
    assert linker.sum() == (table["compartment"] == "linker").sum() > 0
    assert np.all(cell.compartments[linker] == Compartment.AXON)
    assert (cell.parents < 0).sum() == 1


def test_read_hemibrain_neuron_linker_choice_and_errors(shared_data, tmp_path):
    folder = shared_data / "hemibrain_da1"
    csv = folder / "722817260_nodes_compartment.csv"
    cell = read_hemibrain_neuron(
        folder / "722817260.obj", csv, cell_id=11, linker=Compartment.DENDRITE
    )
    assert cell.cell_id == 11
    assert np.all(cell.compartments[cell.attributes["linker_nodes"]] == Compartment.DENDRITE)
    bad = tmp_path / "bad.csv"
    pd.read_csv(csv).head(5).assign(compartment="spine").to_csv(bad, index=False)
    with pytest.raises(MorphologyFormatError, match="unknown compartment 'spine'"):
        read_hemibrain_neuron(folder / "722817260.obj", bad)


# -- placement, boxes, subsampling -------------------------------------------------------


def test_transform_cell_is_rigid():
    cell = _y_cell()
    turn = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    moved = transform_cell(cell, rotation=turn, translation_nm=(1.0, 2.0, 3.0), cell_id=9)
    np.testing.assert_allclose(moved.nodes, cell.nodes @ turn.T + [1.0, 2.0, 3.0])
    assert moved.cell_id == 9 and cell.cell_id == 7
    with pytest.raises(ValueError, match="rotation"):
        transform_cell(cell, rotation=np.diag([1.0, 1.0, -1.0]))


def test_place_cells_overlap_volume_with_unique_ids(shared_data):
    folder = shared_data / "hemibrain_da1"
    hemi = read_hemibrain_neuron(
        folder / "722817260.obj", folder / "722817260_nodes_compartment.csv"
    )
    cells = [_y_cell(7), _y_cell(8), hemi]
    shape, vs, origin = (64, 96, 128), (40.0, 32.0, 32.0), np.array([100.0, -50.0, 0.0])
    placed = place_cells(cells, shape=shape, voxel_size=vs, seed=4, n_cells=7, origin_nm=origin)
    assert len(placed) == 7
    assert len({c.cell_id for c in placed}) == 7
    assert {c.attributes["source_cell_id"] for c in placed} == {7, 8, hemi.cell_id}
    lo = origin - np.asarray(vs) / 2
    hi = lo + np.asarray(shape) * vs
    for copy in placed:
        assert np.any(np.all((copy.nodes >= lo) & (copy.nodes < hi), axis=1))
        source = next(c for c in cells if c.cell_id == copy.attributes["source_cell_id"])
        np.testing.assert_array_equal(copy.compartments, source.compartments)
        # Rigid: lengths of all parent links kept.
        link = source.parents >= 0
        np.testing.assert_allclose(
            np.linalg.norm(copy.nodes[link] - copy.nodes[copy.parents[link]], axis=1),
            np.linalg.norm(source.nodes[link] - source.nodes[source.parents[link]], axis=1),
        )
        if source.mesh is not None:
            rot = copy.attributes["rotation"]
            shift = copy.attributes["translation_nm"]
            np.testing.assert_allclose(copy.mesh.vertices, source.mesh.vertices @ rot.T + shift)
    again = place_cells(cells, shape=shape, voxel_size=vs, seed=4, n_cells=7, origin_nm=origin)
    np.testing.assert_array_equal(placed[3].nodes, again[3].nodes)
    fixed = place_cells(cells[:1], shape=shape, voxel_size=vs, seed=1, rotate=False)
    np.testing.assert_allclose(np.diff(fixed[0].nodes[1:41, :2], axis=0), 0.0, atol=1e-9)


def test_cell_box_covers_cell_on_the_grid():
    cell = transform_cell(_y_cell(), translation_nm=(1234.0, -777.0, 5.0))
    origin, shape = cell_box(cell, (40.0, 32.0, 32.0), margin_nm=300.0)
    vs = np.array([40.0, 32.0, 32.0])
    np.testing.assert_allclose(origin / vs, np.round(origin / vs))
    lo, hi = cell.bounds_nm()
    assert np.all(origin <= lo - 300.0)
    assert np.all(origin + (np.asarray(shape) - 1) * vs >= hi + 300.0)
    assert np.all(np.asarray(shape) * vs <= hi - lo + 600.0 + 3 * vs)
    alone = transform_cell(cell, translation_nm=-origin)
    assert np.all(alone.nodes >= 0) and np.all(alone.nodes <= (np.asarray(shape) - 1) * vs)


def test_subsample_nodes_spacing():
    cell = _y_cell()
    picks = subsample_nodes(cell, 2000.0, seed=0)
    assert picks[0] == 0  # the root
    # Each 10 µm branch passes 5 marks 2 µm apart.
    for branch in (range(1, 41), range(41, 81)):
        on_branch = np.intersect1d(picks, list(branch))
        assert len(on_branch) == 5
        gaps = np.diff(np.linalg.norm(cell.nodes[on_branch], axis=1))
        np.testing.assert_allclose(gaps, 2000.0, atol=250.0)
    np.testing.assert_array_equal(picks, subsample_nodes(cell, 2000.0, seed=0))
    assert not np.array_equal(picks, subsample_nodes(cell, 2000.0, seed=5))


def test_subsample_nodes_on_real_cell(shared_data):
    path = shared_data / "morphology" / "allen_celltypes" / "swc" / "313862022.swc.gz"
    cell = read_swc(path, cell_id=1)
    link = cell.parents >= 0
    cable = np.linalg.norm(cell.nodes[link] - cell.nodes[cell.parents[link]], axis=1).sum()
    picks = subsample_nodes(cell, 5000.0, seed=1)
    assert 0.9 * cable / 5000.0 <= len(picks) <= 1.5 * cable / 5000.0
    assert len(np.unique(picks)) == len(picks)
    assert set(np.unique(cell.compartments[picks])) == {1, 2, 3, 4}
    with pytest.raises(ValueError, match="spacing_nm"):
        subsample_nodes(cell, 0.0, seed=1)


# -- rendering through the neuropil -----------------------------------------------------


@pytest.mark.parametrize("source", ["allen", "hemibrain"])
def test_placed_real_cells_render_with_their_compartments(shared_data, source):
    synthetic = pytest.importorskip("napari_segclr.synthetic", reason="renderer not available")
    if not hasattr(synthetic, "Neuropil"):
        pytest.skip("napari_segclr.synthetic.Neuropil is not available yet")
    if source == "allen":
        csv = shared_data / "morphology" / "allen_celltypes" / "metadata.csv"
        cells, n_cells, owned_share = read_morphology_table(csv, rows=[4, 8]), 6, 0.9
    else:
        # The hemibrain meshes are decimated (edges ~1 µm): about half the nodes
        # of thin dendrites lie just outside the surface, so fewer are owned.
        folder = shared_data / "hemibrain_da1"
        cells = [
            read_hemibrain_neuron(
                folder / "722817260.obj", folder / "722817260_nodes_compartment.csv"
            )
        ]
        n_cells, owned_share = 3, 0.3
    shape, vs = (64, 128, 128), 32.0
    placed = place_cells(cells, shape=shape, voxel_size=vs, seed=2, n_cells=n_cells)
    neuropil = synthetic.Neuropil(
        synthetic.NeuropilConfig(shape=shape, voxel_size=vs, seed=0), cells=placed
    )
    crop = neuropil.render(tuple(slice(0, n) for n in shape))
    in_volume = owned = agree = 0
    for cell in placed:
        voxel = np.round(cell.nodes / vs).astype(int)
        inside = np.all((voxel >= 0) & (voxel < shape), axis=1)
        at = tuple(voxel[inside].T)
        mine = crop.cells[at] == cell.cell_id
        in_volume += inside.sum()
        owned += mine.sum()
        agree += (crop.compartments[at][mine] == cell.compartments[inside][mine]).sum()
        assert (crop.cells == cell.cell_id).any()
    assert in_volume >= 10
    assert owned >= owned_share * in_volume
    assert agree >= 0.9 * owned
