"""The synthetic neuropil: configuration, determinism, ground truth, errors, laziness."""

from __future__ import annotations

import time
import tracemalloc

import numpy as np
import pytest

from napari_segclr.synthetic import Compartment, Neuropil, NeuropilConfig, sample_neuropil
from napari_segclr.synthetic import neuropil as neuropil_module
from napari_segclr.synthetic.cell_types import CELL_TYPES

BOX = (slice(8, 40), slice(4, 52), slice(10, 50))


@pytest.fixture(scope="module")
def small() -> Neuropil:
    """A 64³ volume at 32 nm (2 µm): cheap crops for determinism and ground truth."""
    return Neuropil(NeuropilConfig(shape=(64, 64, 64), seed=3))


@pytest.fixture(scope="module")
def rich() -> Neuropil:
    """A 15 µm cube at 64 nm centred on a pyramidal soma: every type and compartment."""
    config = NeuropilConfig(shape=(1000, 1000, 1000), voxel_size=64, seed=1, soma_density=4)
    somata = Neuropil(config).somata()
    centre = somata.loc[somata["cell_type"] == "pyramidal", ["z_nm", "y_nm", "x_nm"]].iloc[0]
    offset = tuple(centre.to_numpy(float) - np.array([120, 60, 120]) * 64)  # apical points to +y
    return Neuropil(
        NeuropilConfig(shape=(240, 240, 240), voxel_size=64, seed=1, soma_density=4, offset=offset)
    )


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"shape": (0, 10, 10)}, "shape"),
        ({"shape": (10, 10)}, "shape"),
        ({"shape": (1.5, 10, 10)}, "shape"),
        ({"voxel_size": (32, -1, 32)}, "voxel_size"),
        ({"voxel_size": 1000}, "voxel_size"),
        ({"seed": -1}, "seed"),
        ({"density": 0}, "density"),
        ({"merge_rate": 1.5}, "merge_rate"),
        ({"split_rate": -0.1}, "split_rate"),
        ({"noise": float("nan")}, "noise"),
        ({"contrast_variation": 2}, "contrast_variation"),
        ({"cell_types": {"purkinje": 1.0}}, "cell_types"),
        ({"cell_types": {"basket": -1.0}}, "cell_types"),
    ],
)
def test_config_rejects_bad_values_naming_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=f"NeuropilConfig.{field}"):
        NeuropilConfig(**kwargs)


def test_config_normalises_values() -> None:
    config = NeuropilConfig(shape=(4, 5, 6), voxel_size=16, cell_types={"basket": 0})
    assert config.shape == (4, 5, 6)
    assert config.voxel_size == (16.0, 16.0, 16.0)
    assert config.type_weight("basket") == 0.0
    assert config.type_weight("pyramidal") == 1.0


def test_box_outside_the_volume_is_rejected(small: Neuropil) -> None:
    with pytest.raises(ValueError, match="outside"):
        small.render((slice(0, 10), slice(0, 10), slice(60, 70)))


def test_same_seed_renders_identical_crops(small: Neuropil) -> None:
    a = small.render(BOX)
    b = Neuropil(NeuropilConfig(shape=(64, 64, 64), seed=3)).render(BOX)
    for field in ("em", "segmentation", "cells", "compartments", "organelles"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)
    other = Neuropil(NeuropilConfig(shape=(64, 64, 64), seed=4)).render(BOX)
    assert not np.array_equal(a.cells > 0, other.cells > 0)


def test_overlapping_crops_agree_voxel_for_voxel(small: Neuropil) -> None:
    a = small.render((slice(0, 40), slice(0, 48), slice(0, 48)))
    b = small.render((slice(24, 64), slice(30, 64), slice(20, 60)))
    overlap_a = (slice(24, 40), slice(30, 48), slice(20, 48))
    overlap_b = (slice(0, 16), slice(0, 18), slice(0, 28))
    for field in ("em", "segmentation", "cells", "compartments", "organelles"):
        np.testing.assert_array_equal(
            getattr(a, field)[overlap_a], getattr(b, field)[overlap_b], err_msg=field
        )


def test_slabs_do_not_change_the_render(monkeypatch: pytest.MonkeyPatch) -> None:
    config = NeuropilConfig(shape=(40, 48, 48), seed=6)
    box = (slice(0, 40), slice(0, 48), slice(0, 48))
    whole = Neuropil(config).render(box)
    monkeypatch.setattr(neuropil_module, "_SLAB_VOXELS", 48 * 48 * 7)  # slabs of 7 planes
    slabs = Neuropil(config).render(box)
    for field in ("em", "segmentation", "cells", "compartments", "organelles"):
        np.testing.assert_array_equal(getattr(whole, field), getattr(slabs, field), err_msg=field)


def test_crop_dtypes_and_ids(small: Neuropil) -> None:
    crop = small.render(BOX)
    assert crop.em.dtype == np.uint8 and crop.em.shape == (32, 48, 40)
    assert crop.segmentation.dtype == np.uint64 and crop.cells.dtype == np.uint64
    assert crop.compartments.dtype == np.uint8
    ids = np.unique(crop.cells)
    assert ids[0] == 0 and len(ids) > 10  # dense neuropil, some extracellular space
    assert np.all(ids[1:] < 2**53) and ids[1:].max() > 2**40  # large, sparse, exact in float64
    # Extracellular space has no cell and no compartment; cells have one.
    np.testing.assert_array_equal(crop.cells == 0, crop.compartments == 0)
    np.testing.assert_array_equal(crop.cells == 0, crop.segmentation == 0)
    # Membranes are darker than cytoplasm, extracellular space brighter.
    assert crop.em[crop.cells == 0].mean() > crop.em[crop.cells > 0].mean()


def test_every_cell_type_and_compartment_occurs(rich: Neuropil) -> None:
    cells = rich.cell_table()
    assert set(cells["cell_type"]) == set(CELL_TYPES)
    assert set(cells["cell_class"]) == {"neuron", "glia"}
    assert cells["has_soma"].any()
    nodes = rich.nodes()
    expected = {Compartment.SOMA, Compartment.AXON, Compartment.DENDRITE, Compartment.APICAL}
    assert expected | {Compartment.GLIA} <= set(nodes["compartment"].tolist())
    # In voxels: a crop around the soma shows it with its nucleus, and neuropil.
    crop = rich.render((slice(118, 122), slice(0, 240), slice(0, 240)))
    assert {1, 2, 3, 5} <= set(np.unique(crop.compartments).tolist())
    assert {1, 2} <= set(np.unique(crop.organelles).tolist())  # mitochondria, a nucleus


def test_node_ground_truth_matches_the_voxels(small: Neuropil) -> None:
    whole = (slice(0, 64),) * 3
    crop = small.render(whole)
    nodes = small.nodes(whole)
    assert len(nodes) > 50
    vs = np.asarray(small.voxel_size)
    idx = np.clip(np.rint(nodes[["z_nm", "y_nm", "x_nm"]].to_numpy() / vs).astype(int), 0, 63)
    at = tuple(idx.T)
    same_cell = crop.cells[at] == nodes["cell_id"].to_numpy(np.uint64)
    same_comp = crop.compartments[at] == nodes["compartment"].to_numpy()
    same_seg = crop.segmentation[at] == nodes["segment_id"].to_numpy(np.uint64)
    # A node's voxel can be taken by a crossing neurite of another cell: rare.
    assert same_cell.mean() > 0.9
    assert same_comp[same_cell].mean() > 0.97
    assert same_seg[same_cell].mean() > 0.97


def _pairs(crop) -> tuple[np.ndarray, np.ndarray]:
    inside = crop.cells > 0
    pairs = np.unique(np.stack([crop.segmentation[inside], crop.cells[inside]]), axis=1)
    return pairs[0], pairs[1]


def test_segmentation_equals_cells_without_errors(small: Neuropil) -> None:
    assert small.errors.empty
    seg, cell = _pairs(small.render(BOX))
    assert len(np.unique(seg)) == len(seg) == len(np.unique(cell))
    assert not np.any(np.isin(seg, cell))  # segment ids are not the cell ids


def test_errors_are_injected_and_recorded() -> None:
    neuropil = Neuropil(NeuropilConfig(shape=(96, 96, 96), seed=5, merge_rate=0.4, split_rate=0.4))
    errors = neuropil.errors
    assert set(errors["kind"]) == {"merge", "split"}
    assert list(errors.columns) == [
        "kind",
        "segment_id",
        "cell_ids",
        "nodes",
        "z_nm",
        "y_nm",
        "x_nm",
    ]
    merged = set(errors.loc[errors["kind"] == "merge", "segment_id"])
    split_cells = {c for ids in errors.loc[errors["kind"] == "split", "cell_ids"] for c in ids}
    seg, cell = _pairs(neuropil.render((slice(0, 96), slice(0, 96), slice(0, 96))))
    segs, counts = np.unique(seg, return_counts=True)
    assert set(segs[counts > 1].tolist()) <= merged  # a segment holds several cells only at merges
    cells, counts = np.unique(cell, return_counts=True)
    assert set(cells[counts > 1].tolist()) <= split_cells  # a cell spans segments only at splits
    # The node table carries the same segment ids: a split cell's nodes hold
    # both its own segment and the split-off one (when both parts are inside).
    nodes = neuropil.nodes()
    per_cell = nodes.groupby("cell_id")["segment_id"].agg(set)
    split = errors[errors["kind"] == "split"]
    assert any(
        row["segment_id"] in per_cell.get(row["cell_ids"][0], set()) for _, row in split.iterrows()
    )


def test_voxel_size_changes_sampling_not_the_scene() -> None:
    # The same 3.2 µm region at 32 nm and at 16 nm.
    coarse = Neuropil(NeuropilConfig(shape=(100, 100, 100), voxel_size=32, seed=7))
    fine = Neuropil(NeuropilConfig(shape=(200, 200, 200), voxel_size=16, seed=7))
    a = coarse.render((slice(0, 50), slice(0, 100), slice(0, 100)))
    b = fine.render((slice(0, 100), slice(0, 200), slice(0, 200)))
    frac_a = np.bincount(a.compartments.ravel(), minlength=6) / a.compartments.size
    frac_b = np.bincount(b.compartments.ravel(), minlength=6) / b.compartments.size
    np.testing.assert_allclose(frac_a, frac_b, atol=0.03)
    ids, counts = np.unique(a.cells[a.cells > 0], return_counts=True)
    big = ids[np.argsort(counts)[-5:]]
    for cid in big:
        np.testing.assert_allclose(
            (a.cells == cid).mean(), (b.cells == cid).mean(), rtol=0.15, atol=2e-3
        )


def test_anisotropic_voxels() -> None:
    neuropil = Neuropil(NeuropilConfig(shape=(30, 80, 80), voxel_size=(40, 16, 16), seed=2))
    crop = neuropil.render((slice(0, 30), slice(0, 80), slice(0, 80)))
    assert crop.em.shape == (30, 80, 80)
    assert 0.5 < (crop.cells > 0).mean() < 1.0
    assert crop.em.std() > 10


def test_far_corner_of_a_huge_volume_is_cheap() -> None:
    neuropil = Neuropil(NeuropilConfig(shape=(4096, 4096, 4096), seed=11))
    tracemalloc.start()
    t0 = time.perf_counter()
    crop = neuropil.render((slice(4032, 4096),) * 3)
    seconds = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert crop.em.shape == (64, 64, 64)
    assert (crop.cells > 0).mean() > 0.5
    assert seconds < 20  # a few seconds; loose for shared machines
    assert peak < 400 * 2**20


def test_volumes_are_lazy_cached_and_match_render(small: Neuropil) -> None:
    neuropil = Neuropil(NeuropilConfig(shape=(64, 64, 64), seed=3))
    volumes = neuropil.volumes()
    assert set(volumes) == {"em", "segmentation", "cells", "compartments"}
    assert volumes["em"].kind == "image" and volumes["segmentation"].kind == "labels"
    assert volumes["cells"].dtype == np.uint64 and volumes["compartments"].dtype == np.uint8
    assert volumes["em"].voxel_size == (32.0, 32.0, 32.0)
    assert neuropil.renders == 0
    em = volumes["em"].read(BOX)
    seg = volumes["segmentation"].read(BOX)
    assert neuropil.renders == 1
    direct = small.render(BOX)
    np.testing.assert_array_equal(em, direct.em)
    np.testing.assert_array_equal(seg, direct.segmentation)
    # numpy-style indexing: integers, steps, negative indices.
    array = volumes["cells"].array
    np.testing.assert_array_equal(array[10, 4:52, 10:50], direct.cells[2])
    np.testing.assert_array_equal(array[8:40:2, -60:52, 10], direct.cells[::2, :, 0])


def test_sample_shows_a_soma_with_nucleus_and_glia() -> None:
    neuropil = sample_neuropil(0)
    assert neuropil.shape == (128, 256, 256) and neuropil.voxel_size == (32.0, 32.0, 32.0)
    z = neuropil.shape[0] // 2
    crop = neuropil.render((slice(z, z + 1), slice(0, 256), slice(0, 256)))
    present = set(np.unique(crop.compartments).tolist())
    assert {Compartment.SOMA, Compartment.AXON, Compartment.DENDRITE, Compartment.GLIA} <= present
    assert 2 in set(np.unique(crop.organelles).tolist())  # nucleus


def test_render_all_and_write_neuropil(tmp_path) -> None:
    from napari_segclr.exceptions import OutputExistsError
    from napari_segclr.io.open import open_volume
    from napari_segclr.synthetic import render_all, write_neuropil

    neuropil = Neuropil(NeuropilConfig(shape=(40, 48, 48), seed=2, split_rate=0.5))
    calls = []
    crop = render_all(neuropil, progress=lambda done, total: calls.append((done, total)))
    assert calls[-1][0] == calls[-1][1]
    out = tmp_path / "synthetic"
    write_neuropil(neuropil, out)
    assert {p.name for p in out.iterdir()} == {
        "neuropil.ome.zarr",
        "nodes.csv",
        "cells.csv",
        "errors.csv",
        "config.json",
    }
    em = open_volume(str(out / "neuropil.ome.zarr"))
    seg = open_volume(str(out / "neuropil.ome.zarr" / "labels" / "segmentation"))
    assert em.voxel_size == (32.0, 32.0, 32.0) and seg.kind == "labels"
    np.testing.assert_array_equal(em.read((slice(0, 40), slice(0, 48), slice(0, 48))), crop.em)
    np.testing.assert_array_equal(
        seg.read((slice(0, 40), slice(0, 48), slice(0, 48))), crop.segmentation
    )
    with pytest.raises(OutputExistsError, match="exists"):
        write_neuropil(neuropil, out)
    write_neuropil(neuropil, out, overwrite=True)
