"""Cell types from mask views of SWC cells: tables, drawing, sampling, training, evaluation."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from napari_segclr.evaluate.morphology import (
    EVALUATE_PHASES,
    MorphologyEvalConfig,
    RenderConfig,
    embed_cells,
    evaluate_morphology,
    train_morphology_encoder,
)
from napari_segclr.evaluate.morphology_cells import check_classes, parse_where, read_table
from napari_segclr.evaluate.morphology_report import RESULT_FILES, format_summary, write_report
from napari_segclr.evaluate.morphology_views import (
    MORPHOLOGY_PRESETS,
    CellMasks,
    cell_skeleton,
    cells_dataset,
    drawn_min_radius_nm,
    morphology_preset,
    view_nodes,
)
from napari_segclr.exceptions import (
    CheckpointError,
    LabelError,
    MorphologyFormatError,
    OutputExistsError,
)
from napari_segclr.model import SegclrModel, get_preset, load_checkpoint
from napari_segclr.skeleton import path_distances
from napari_segclr.synthetic import Cell, Compartment, read_swc
from napari_segclr.train import TrainConfig

TINY = morphology_preset("tiny")


def _neurite(start, direction, length, step, radius, kind, zigzag=0.0):
    """Points (µm) along a straight or zig-zag neurite, with radius and SWC type."""
    direction = np.asarray(direction, float) / np.linalg.norm(direction)
    side = np.cross(direction, [0.0, 0.0, 1.0] if abs(direction[2]) < 0.9 else [1.0, 0.0, 0.0])
    side /= np.linalg.norm(side)
    n = int(length / step)
    offsets = zigzag * (np.arange(1, n + 1) % 2 * 2 - 1)
    points = start + np.outer(np.arange(1, n + 1) * step, direction) + np.outer(offsets, side)
    return [(p, radius, kind) for p in points]


def _swc_text(shape: str, seed: int) -> str:
    """A small cell: "thick" has six straight 1 µm-radius dendrites, "thin" three zig-zag
    0.15 µm-radius ones; both have a soma and a thin straight axon."""
    rng = np.random.default_rng(seed)
    lines = ["1 1 0 0 0 3.0 -1"]
    count, radius, zigzag = (6, 1.0, 0.0) if shape == "thick" else (3, 0.15, 0.8)
    branches = [
        _neurite(np.zeros(3), rng.normal(size=3), 24.0, 1.0, radius, 3, zigzag)
        for _ in range(count)
    ]
    branches.append(_neurite(np.zeros(3), rng.normal(size=3), 30.0, 1.0, 0.15, 2))
    node = 1
    for branch in branches:
        parent = 1
        for point, r, kind in branch:
            node += 1
            lines.append(f"{node} {kind} {point[2]:.3f} {point[1]:.3f} {point[0]:.3f} {r} {parent}")
            parent = node
    return "\n".join(lines) + "\n"


@pytest.fixture
def cell_table(tmp_path):
    """A metadata table of eight small cells, four of each shape, in two "batches"."""
    folder = tmp_path / "cells"
    (folder / "swc").mkdir(parents=True)
    rows = []
    for i in range(8):
        shape = ("thick", "thin")[i % 2]
        name = f"swc/cell_{i}.swc"
        (folder / name).write_text(_swc_text(shape, seed=i))
        rows.append({"file": name, "shape": shape, "batch": "ab"[i // 4], "note": ""})
    path = folder / "metadata.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _model(config=TINY, seed=0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return SegclrModel(config).eval()


# --- tables ---------------------------------------------------------------------------


def test_table_filters_rows_and_reads_labelled_cells(cell_table):
    table = read_table(cell_table, label="shape", where=parse_where(["batch=a"]))
    assert len(table) == 4 and list(table.labels) == ["thick", "thin", "thick", "thin"]
    cells = table.read_cells(min_radius_nm=50.0)
    assert [c.cell_type for c in cells] == list(table.labels)
    assert cells[0].attributes["batch"] == "a"
    assert len({c.cell_id for c in cells}) == 4
    capped = read_table(cell_table, label="shape", max_per_class=1, seed=3)
    assert sorted(capped.labels) == ["thick", "thin"]


def test_rows_without_a_label_are_left_out(cell_table):
    frame = pd.read_csv(cell_table)
    frame.loc[0, "shape"] = None
    frame.to_csv(cell_table, index=False)
    table = read_table(cell_table, label="shape")
    assert len(table) == 7 and table.dropped_unlabelled == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("missing_table", "does not exist"),
        ("unknown_column", "no column 'colour'"),
        ("missing_swc", "cell_3.swc does not exist"),
        ("filtered_away", "no labelled rows"),
    ],
)
def test_bad_tables_are_one_line_errors(cell_table, change, message):
    path, options = cell_table, {"label": "shape"}
    if change == "missing_table":
        path = cell_table.with_name("nope.csv")
    elif change == "unknown_column":
        options["label"] = "colour"
    elif change == "missing_swc":
        (cell_table.parent / "swc" / "cell_3.swc").unlink()
    else:
        options["where"] = {"batch": ("z",)}
    with pytest.raises(MorphologyFormatError, match=message) as error:
        read_table(path, **options)
    assert "\n" not in str(error.value)


def test_where_filters_must_name_values():
    assert parse_where(["a=x,y", "b=z", "a=w"]) == {"a": ("x", "y", "w"), "b": ("z",)}
    with pytest.raises(ValueError, match="COLUMN=VALUE"):
        parse_where(["a="])


def test_classes_need_two_classes_and_enough_cells_per_class():
    assert check_classes(np.array(["b", "a", "a", "b"]), what="t") == ("a", "b")
    with pytest.raises(LabelError, match="at least two classes"):
        check_classes(np.array(["a", "a"]), what="t")
    with pytest.raises(LabelError, match="class 'c' has 1 cell;"):
        check_classes(np.array(["a", "a", "c"]), what="t")
    with pytest.raises(LabelError, match="5-fold cross-validation needs at least 5"):
        check_classes(np.array(["a"] * 5 + ["b"] * 4), what="t", folds=5)
    with pytest.raises(LabelError, match="2-fold cross-validation needs at least 4"):
        check_classes(np.array(["a"] * 4 + ["b"] * 3), what="t", folds=2)


# --- drawing and sampling --------------------------------------------------------------


def _rod(radius_nm: float, cell_id: int = 5, step_nm: float = 1000.0) -> Cell:
    """A straight rod 20 µm along x, a node every ``step_nm``."""
    n = round(20_000 / step_nm) + 1
    x = np.arange(n) * step_nm
    nodes = np.stack([np.full(n, 4000.0), np.full(n, 4000.0), x + 4000.0], axis=1)
    return Cell(
        cell_id=cell_id,
        cell_type="rod",
        nodes=nodes,
        parents=np.arange(-1, n - 1),
        radii=np.full(n, radius_nm),
        compartments=np.full(n, Compartment.DENDRITE, np.uint8),
    )


def test_presets_take_masks_and_see_arbors_or_local_shape():
    for config in MORPHOLOGY_PRESETS.values():
        assert config.input_kinds == ("mask",)
    assert morphology_preset("morphology").field_of_view_nm == (528_000.0,) * 3
    assert morphology_preset("morphology-local").field_of_view_nm == (8448.0,) * 3
    with pytest.raises(ValueError, match="unknown morphology preset"):
        morphology_preset("huge")


def test_masks_are_the_capsules_voxelised():
    rod = _rod(1000.0)
    masks = CellMasks([rod], (40, 40, 140), (200.0, 200.0, 200.0))
    crop = masks[10:30, 10:30, 40:60]  # a piece of the rod's middle
    z, y = np.mgrid[10:30, 10:30] * 200.0
    inside = (z - 4000.0) ** 2 + (y - 4000.0) ** 2 <= 1000.0**2
    expected = np.broadcast_to(np.where(inside, 5, 0)[..., None], crop.shape)
    np.testing.assert_array_equal(crop, expected.astype(np.uint64))
    assert masks[0:5, 0:5, 0:5].sum() == 0
    assert masks[20:21, 20:21, 124:125].sum() == 5  # 0.8 µm past the end: in its ball
    assert masks[20:21, 20:21, 130:131].sum() == 0  # 2 µm past it: outside


def test_dense_skeletons_are_drawn_resampled_to_the_same_mask():
    dense, sparse = _rod(1500.0, step_nm=50.0), _rod(1500.0, step_nm=1000.0)
    shape, voxel = (9, 9, 30), (1000.0, 1000.0, 1000.0)
    a = CellMasks([dense], shape, voxel)[0:9, 0:9, 0:30]
    b = CellMasks([sparse], shape, voxel)[0:9, 0:9, 0:30]
    assert a.any() and np.array_equal(a, b)


def test_thin_neurites_are_drawn_at_least_half_a_voxel_diagonal_thick():
    voxel = 256.0
    volume = cells_dataset([_rod(20.0)], voxel, margin_nm=2000.0)
    seg = volume.dataset.segmentation
    rod = volume.cells[0]
    nearest = np.rint(seg.to_voxel(rod.nodes)).astype(int)
    values = [seg.read(tuple(slice(int(a), int(a) + 1) for a in v))[0, 0, 0] for v in nearest]
    assert set(values) == {rod.cell_id}
    assert drawn_min_radius_nm(voxel) == pytest.approx(221.7, abs=0.1)


def test_cells_are_laid_out_apart_and_drawn_the_same_wherever_they_are(cell_table):
    cells = read_table(cell_table, label="shape").read_cells(min_radius_nm=50.0)
    alone = cells_dataset(cells[3:4], 256.0, margin_nm=3000.0)
    together = cells_dataset(cells[:4], 256.0, margin_nm=3000.0)
    shifts = together.translations_nm - together.translations_nm[0]
    assert np.all(np.diff(shifts[:, 2]) > 6000.0) and np.all(shifts % 256.0 == 0)

    def crop(volume, cell):
        seg = volume.dataset.segmentation
        centre = np.rint(seg.to_voxel(cell.nodes[10])).astype(int)
        return seg.read(tuple(slice(int(c) - 12, int(c) + 13) for c in centre))

    a = crop(alone, alone.cells[0])
    b = crop(together, together.cells[3])
    assert a.any() and np.array_equal(a, b)
    assert set(np.unique(b)) == {0, cells[3].cell_id}


def test_view_nodes_hold_sites_and_their_context():
    rod = _rod(300.0)
    picks = view_nodes(rod, spacing_nm=1000.0, sites=2, context_nm=3000.0, seed=1)
    sites = picks.nodes[picks.sites]
    assert len(sites) == 2 and np.all(np.diff(picks.nodes) > 0)
    near = path_distances(cell_skeleton(rod), sites, max_nm=3000.0)
    assert set(picks.nodes) == set(near.indices.tolist())
    every = view_nodes(rod, spacing_nm=1000.0, sites=None, context_nm=3000.0, seed=1)
    assert every.sites.all() and len(every.nodes) >= 20


# --- training and embedding ------------------------------------------------------------


def test_training_stores_how_cells_were_drawn(cell_table, tmp_path):
    table = read_table(cell_table)
    config = TrainConfig(model=TINY, steps=2, batch_size=4, checkpoint_every=2, device="cpu")
    render = RenderConfig(min_radius_nm=80.0, fixed_radius_nm=300.0)
    calls = []
    result = train_morphology_encoder(
        table,
        tmp_path / "enc.pt",
        config,
        render=render,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert result.step == 2 and np.isfinite(result.losses).all()
    _, extra = load_checkpoint(tmp_path / "enc.pt")
    assert RenderConfig.from_checkpoint(extra) == render
    assert (8, 8) in calls and calls[-1] == (2, 2)
    with pytest.raises(ValueError, match="mask views only"):
        train_morphology_encoder(
            table, tmp_path / "other.pt", TrainConfig(model="tiny", steps=1, device="cpu")
        )


def test_a_run_in_minutes_stops_at_a_checkpoint_once_its_time_is_up(
    cell_table, tmp_path, monkeypatch
):
    import napari_segclr.evaluate.morphology as morphology

    # Timed steps promise 10 steps in the time, but every step takes longer than all of it.
    monkeypatch.setattr(morphology, "_steps_in", lambda *args: 10)
    config = TrainConfig(model=TINY, steps=1, batch_size=4, device="cpu")
    table = read_table(cell_table, where={"batch": ("a",)})
    result = train_morphology_encoder(table, tmp_path / "enc.pt", config, minutes=1e-4)
    _, extra = load_checkpoint(tmp_path / "enc.pt")
    assert result.step == extra["step"] == 1 and len(result.losses) == 1
    assert extra["train_config"]["steps"] == 10


def test_embedding_needs_a_mask_only_encoder(cell_table):
    cells = read_table(cell_table).read_cells(min_radius_nm=50.0)[:2]
    embedded = embed_cells(
        _model(), cells, spacing_nm=3000.0, sites=2, context_nm=3000.0, seed=0, device="cpu"
    )
    table = embedded.table
    assert table.embedding.shape == (len(table), TINY.embedding_dim)
    assert np.isfinite(table.embedding).all() and embedded.site.sum() == 4
    assert set(np.unique(embedded.compartment)) <= {1, 2, 3}
    with pytest.raises(CheckpointError, match="mask"):
        embed_cells(
            _model(get_preset("tiny")), cells, spacing_nm=3000.0, sites=1, context_nm=0.0, seed=0
        )


# --- evaluation ------------------------------------------------------------------------


def test_cross_validation_tells_thick_from_thin_cells(cell_table):
    table = read_table(cell_table, label="shape")
    phases = []

    def progress(done, total):
        if done == 0:
            phases.append(total)

    config = MorphologyEvalConfig(
        radii_um=(0.0, 4.0), spacing_um=2.0, sites=3, folds=2, device="cpu"
    )
    report = evaluate_morphology(
        _model(), table, config=config, render=RenderConfig(), progress=progress
    )
    summary = report.summary
    assert len(phases) == len(EVALUATE_PHASES)
    types = summary["cell_types"]
    assert [e["radius_um"] for e in types["by_radius"]] == [0.0, 4.0]
    assert max(e["macro_f1"] for e in types["by_radius"]) >= 0.75
    assert types["baseline"]["macro_f1"] >= 0.75
    assert len(types["by_radius"][0]["fold_macro_f1"]) == 2
    assert np.sum(types["confusion"]["segclr"]) == 8
    assert summary["cells"]["test"] == 8 and summary["cells"]["per_class"] == {
        "thick": 4,
        "thin": 4,
    }
    groups = summary["compartments"]["groups"]
    assert list(groups) == ["all"]
    for entry in groups["all"]["by_radius"]:
        assert set(entry["per_class_f1"]) == {"axon", "dendrite"} and 0 <= entry["macro_f1"] <= 1
    cells = report.cells
    assert len(cells) == 8 and set(cells["fold"]) == {0, 1}
    assert set(cells["predicted_R0"]) <= {"thick", "thin"}
    json.dumps(summary)


def test_train_and_test_tables_must_agree(cell_table):
    train = read_table(cell_table, label="shape", where={"batch": ("a",)})
    test = read_table(cell_table, label="shape", where={"batch": ("b",)})
    config = MorphologyEvalConfig(radii_um=(0.0,), spacing_um=3.0, sites=2, device="cpu")
    report = evaluate_morphology(_model(), train, test, config=config)
    assert report.summary["cells"] == {
        "train": 4,
        "test": 4,
        "per_class": {"thick": 4, "thin": 4},
    }
    with pytest.raises(LabelError, match="listed twice"):
        evaluate_morphology(_model(), train, train, config=config)
    only_thick = read_table(cell_table, label="shape", where={"shape": ("thick",)})
    with pytest.raises(LabelError, match="at least two classes"):
        evaluate_morphology(_model(), only_thick, test, config=config)


def test_report_files_are_written_once_unless_forced(cell_table, tmp_path):
    table = read_table(cell_table, label="shape")
    config = MorphologyEvalConfig(
        radii_um=(0.0,), spacing_um=3.0, sites=2, folds=2, compartments=False
    )
    report = evaluate_morphology(_model(), table, config=config)
    out = tmp_path / "results"
    written = write_report(report, out)
    assert [p.name for p in written] == list(RESULT_FILES)
    assert json.loads((out / "results.json").read_text())["label"] == "shape"
    assert (out / "results.png").read_bytes()[:4] == b"\x89PNG"
    assert len(pd.read_csv(out / "cells.csv")) == 8
    with pytest.raises(OutputExistsError, match="--force"):
        write_report(report, out)
    write_report(report, out, force=True)
    assert not list(out.glob(".*tmp"))
    text = format_summary(report.summary)
    assert "forest" in text and "macro F1" in text


# --- real reconstructions ----------------------------------------------------------------


def test_real_cells_are_drawn_and_embedded(shared_data):
    folder = shared_data / "morphology"
    scala = read_table(folder / "scala2019_l4" / "metadata.csv", label="cell_type", max_per_class=1)
    allen = read_table(
        folder / "allen_celltypes" / "metadata.csv",
        label="dendrite_type",
        where={"reconstruction_type": ("full",)},
        max_per_class=1,
    )
    cells = scala.read_cells(min_radius_nm=50.0, fixed_radius_nm=250.0)[:2]
    cells += allen.read_cells(min_radius_nm=50.0)[:2]
    embedded = embed_cells(
        _model(), cells, spacing_nm=10_000.0, sites=3, context_nm=0.0, seed=0, device="cpu"
    )
    assert embedded.site.sum() == 12 and np.isfinite(embedded.table.embedding).all()
    assert Compartment.AXON in embedded.compartment or Compartment.DENDRITE in embedded.compartment
    swc = read_swc(folder / "scala2019_l4" / scala.files[0], cell_id=1, fixed_radius_nm=250.0)
    assert np.all(swc.radii[swc.compartments != Compartment.SOMA] == 250.0)
