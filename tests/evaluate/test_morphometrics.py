"""Whole-cell morphometrics against values worked out by hand, and the forest baseline."""

from __future__ import annotations

import numpy as np
import pytest

from napari_segclr.evaluate.morphometrics import (
    morphometric_features,
    morphometric_table,
    soma_centre,
)
from napari_segclr.synthetic import read_swc, transform_cell

# A soma at the origin (radius 5 µm); a dendrite 10 µm along +x that forks into a 5 µm
# branch along +x and a 5 µm branch along +y; a 20 µm axon along -x; a 30 µm apical
# dendrite along +y. Columns: id type x y z radius parent (µm).
SWC = """\
# a hand-made cell
1 1   0  0 0 5.0 -1
2 3  10  0 0 1.0  1
3 3  15  0 0 0.5  2
4 3  10  5 0 0.5  2
5 2 -20  0 0 0.2  1
6 4   0 30 0 1.0  1
"""


@pytest.fixture
def cell(tmp_path):
    path = tmp_path / "hand.swc"
    path.write_text(SWC)
    return read_swc(path, cell_id=7, min_radius_nm=1.0)


def test_cable_branches_tips_and_stems_per_compartment(cell):
    f = morphometric_features(cell)
    assert f["cable_um_total"] == pytest.approx(70.0)
    assert f["cable_um_dendrite"] == pytest.approx(20.0)
    assert f["cable_um_axon"] == pytest.approx(20.0)
    assert f["cable_um_apical"] == pytest.approx(30.0)
    assert (f["branch_points_total"], f["branch_points_dendrite"], f["branch_points_axon"]) == (
        1,
        1,
        0,
    )
    assert (f["tips_total"], f["tips_dendrite"], f["tips_axon"], f["tips_apical"]) == (4, 2, 1, 1)
    assert f["stems"] == 3
    assert f["soma_radius_um"] == pytest.approx(5.0)


def test_radius_reach_path_order_and_extent(cell):
    f = morphometric_features(cell)
    # Radii weighted by edge length: dendrite (10·1 + 5·0.5 + 5·0.5) / 20.
    assert f["radius_um_dendrite"] == pytest.approx(0.75)
    assert f["radius_um_axon"] == pytest.approx(0.2)
    assert f["radius_um_total"] == pytest.approx(49.0 / 70.0)
    assert f["reach_um_dendrite"] == pytest.approx(15.0)
    assert f["reach_um_axon"] == pytest.approx(20.0)
    assert f["reach_um_total"] == pytest.approx(30.0)
    assert f["max_path_um"] == pytest.approx(30.0)
    assert f["max_branch_order"] == 1
    assert (f["extent_z_um"], f["extent_y_um"], f["extent_x_um"]) == pytest.approx((0, 30, 35))


def test_sholl_counts_edges_crossing_each_sphere(cell):
    f = morphometric_features(cell, sholl_radii_um=(5.0, 12.0, 25.0, 40.0))
    # r = 5: the first dendrite edge, the axon and the apical; r = 12: the +x branch
    # (10 → 15 µm from the soma), the axon and the apical; the +y branch stays within
    # 10–11.2 µm; r = 25: the apical alone; nothing reaches 40 µm.
    assert [f[f"sholl_{r:g}um"] for r in (5, 12, 25, 40)] == [3, 3, 1, 0]


def test_orientation_free_features_do_not_change_when_the_cell_turns(cell):
    angle = 0.7
    turn = np.array(
        [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
    )
    turned = morphometric_features(transform_cell(cell, rotation=turn, translation_nm=500.0))
    before = morphometric_features(cell)
    for name in before:
        if not name.startswith("extent_"):
            assert turned[name] == pytest.approx(before[name], abs=1e-6), name
    assert turned["extent_z_um"] > 1.0  # the bounding box does turn with the cell
    assert before["spread_1_um"] >= before["spread_2_um"] >= before["spread_3_um"] == 0


def test_soma_edges_are_not_cable_and_the_soma_centre_is_their_mean(tmp_path):
    path = tmp_path / "two_soma_nodes.swc"
    path.write_text(SWC + "7 1 2 0 0 5.0 1\n")
    cell = read_swc(path, cell_id=8, min_radius_nm=1.0)
    f = morphometric_features(cell)
    assert f["cable_um_total"] == pytest.approx(70.0)
    np.testing.assert_allclose(soma_centre(cell), [0.0, 0.0, 1000.0])
    assert f["reach_um_axon"] == pytest.approx(21.0)


def test_table_has_one_row_per_cell(cell):
    table = morphometric_table([cell, transform_cell(cell, cell_id=9)])
    assert list(table.index) == [7, 9] and list(table.columns) == list(morphometric_features(cell))
    np.testing.assert_allclose(table.loc[7].to_numpy(), table.loc[9].to_numpy())
