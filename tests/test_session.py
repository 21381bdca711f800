"""The annotation session: click, predict with uncertainty, label and learn, save, undo, reopen."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from napari_segclr.atomic import write_csv_atomic
from napari_segclr.exceptions import (
    LabelError,
    SegmentNotFoundError,
    SegmentTooSmallError,
    ShapeMismatchError,
    StoreSignatureError,
    UnknownFormatError,
    VoxelSizeError,
)
from napari_segclr.heads import fit_head
from napari_segclr.io import Dataset, Volume
from napari_segclr.model import ModelConfig, SegclrModel, get_preset, model_signature
from napari_segclr.session import (
    ANNOTATION_COLUMNS,
    CELL_TYPE,
    COMPARTMENT,
    AnnotationSession,
    read_annotations,
    read_predictions,
    session_folder_for,
    volume_from_layer_data,
)
from napari_segclr.synthetic import (
    Compartment,
    Neuropil,
    NeuropilConfig,
    render_all,
    sample_neuropil,
)

VOXEL = 32.0


@pytest.fixture(scope="module")
def scene():
    """A 1.5 × 4 × 4 µm neuropil at 32 nm, and per compartment its two largest segments."""
    config = NeuropilConfig(
        shape=(48, 128, 128), voxel_size=VOXEL, seed=0, offset=sample_neuropil(0).config.offset
    )
    neuropil = Neuropil(config)
    crop = render_all(neuropil)
    dataset = Dataset(
        Volume(crop.em, VOXEL, config.offset, source="em"),
        Volume(crop.segmentation, VOXEL, config.offset, kind="labels", source="seg"),
    )
    ids, counts = np.unique(crop.segmentation, return_counts=True)
    size = dict(zip(ids.tolist(), counts.tolist(), strict=True))
    nodes = neuropil.nodes()
    majority = nodes.groupby("segment_id")["compartment"].agg(lambda c: c.mode()[0])
    picked = {}
    for name, code in (("axon", Compartment.AXON), ("dendrite", Compartment.DENDRITE)):
        segments = [int(s) for s in majority.index[majority == code] if int(s) in size]
        picked[name] = sorted(segments, key=lambda s: -size[s])[:2]
    seeds = {
        sid: tuple(int(v) for v in np.argwhere(crop.segmentation == sid)[0])
        for segments in picked.values()
        for sid in segments
    }
    return dataset, picked, seeds


@pytest.fixture(scope="module")
def model() -> SegclrModel:
    torch.manual_seed(0)
    return SegclrModel(get_preset("tiny")).eval()


@pytest.fixture(scope="module")
def embedded(scene, model, tmp_path_factory) -> Path:
    """A session folder whose store holds the picked segments (embedded once per module)."""
    dataset, _, seeds = scene
    folder = tmp_path_factory.mktemp("embedded")
    session = AnnotationSession(dataset, model, folder, device="cpu")
    for sid, seed in seeds.items():
        session.add_embeddings(session.embed_segment(sid, seed_voxel=seed))
    return folder


@pytest.fixture
def session(scene, model, embedded, tmp_path) -> AnnotationSession:
    folder = tmp_path / "session"
    shutil.copytree(embedded, folder)
    return AnnotationSession(scene[0], model, folder, device="cpu", annotator="ann")


def test_a_click_embeds_a_segment_once_and_asks_for_labels(scene, model, tmp_path):
    dataset, picked, seeds = scene
    sid = picked["axon"][0]
    session = AnnotationSession(dataset, model, tmp_path / "s", device="cpu")
    heard = []
    session.changed.connect(heard.append)
    answers = session.click(sid, seed_voxel=seeds[sid])
    assert session.selected == (sid,) and sid in session
    rows = len(session.store)
    assert rows == len(session.table) > 1
    assert answers[COMPARTMENT].predicted == "" and "two classes" in answers[COMPARTMENT].status
    assert answers[CELL_TYPE].n_nodes == rows and answers[CELL_TYPE].radius_um == 10.0
    assert heard == ["selection", "embeddings", "predictions"]
    again = session.embed_segment(sid, seed_voxel=seeds[sid])  # nodes stored are not redone
    assert len(session.store) == rows and len(again) == rows
    session.click(sid, seed_voxel=seeds[sid])
    assert len(session.store) == rows


def test_labels_fit_heads_and_every_prediction_updates(session, scene):
    _, picked, _ = scene
    (a1, a2), (d1, d2) = picked["axon"], picked["dendrite"]
    session.label([a1], "axon", target=COMPARTMENT)
    assert session.head(COMPARTMENT) is None and "two classes" in session.status(COMPARTMENT)
    session.label([d1], "dendrite", target=COMPARTMENT)
    head = session.head(COMPARTMENT)
    assert head is not None and set(head.classes) == {"axon", "dendrite"}
    before = session.segments(COMPARTMENT)
    assert len(before.segment_id) == 4 and np.all(np.isfinite(before.confidence))
    session.label([a2], "axon", target=COMPARTMENT)
    after = session.segments(COMPARTMENT)
    assert session.head(COMPARTMENT) is not head
    assert not np.allclose(before.prediction.probabilities, after.prediction.probabilities)
    # the labelled segments are learnt; the answer carries every uncertainty score
    assert dict(zip(after.segment_id.tolist(), after.predicted, strict=True))[a1] == "axon"
    answer = session.answer(d2, COMPARTMENT)
    assert answer.predicted in ("axon", "dendrite") and answer.n_nodes > 0
    assert sum(answer.probabilities) == pytest.approx(1, abs=1e-5)
    assert 0 <= answer.entropy <= np.log(2) + 1e-6 and 0 < answer.dempster_shafer < 1
    assert np.isnan(answer.variance)  # a linear head has no GP variance
    assert session.segments(CELL_TYPE).prediction is None  # cell types are labelled apart
    saved = read_predictions(session.folder / "predictions.csv")
    assert saved["segment_id"].tolist() == after.segment_id.tolist()
    np.testing.assert_allclose(saved["compartment_confidence"], after.confidence, rtol=1e-5)
    assert (saved["model"] == session.model_signature).all()


def test_sngp_heads_give_a_gp_variance_and_reject_far_inputs(session, scene):
    _, picked, _ = scene
    session.head_kind = "sngp"
    session.label(picked["axon"], "basket", target=CELL_TYPE, refit=False)
    session.label(picked["dendrite"], "pyramidal", target=CELL_TYPE)
    head = session.head(CELL_TYPE)
    assert head.kind == "sngp" and head.reject is not None
    nodes = session.nodes(CELL_TYPE)
    assert np.all(np.isfinite(nodes.prediction.variance)) and np.all(nodes.prediction.variance > 0)
    far = head.predict(nodes.embedding * 0 + 1e3)
    assert far.rejected.all()  # nothing like the labelled nodes


def test_labels_are_on_disk_before_label_returns_and_reload(session, scene, model):
    _, picked, _ = scene
    a1, d1 = picked["axon"][0], picked["dendrite"][0]
    session.label([a1, picked["axon"][1]], "axon", target=COMPARTMENT)
    session.label([d1, picked["dendrite"][1]], "dendrite", target=COMPARTMENT)
    session.label([d1], "basket", target=CELL_TYPE)
    table = pd.read_csv(session.folder / "annotations.csv", dtype={"segment_id": np.uint64})
    assert tuple(table.columns) == ANNOTATION_COLUMNS and len(table) == 5
    row = table[(table["segment_id"] == d1) & (table["target"] == CELL_TYPE)].iloc[0]
    assert row["class"] == "basket" and row["annotator"] == "ann"
    assert row["model"] == model_signature(model)
    when = datetime.fromisoformat(row["time"])
    assert when.utcoffset() == timedelta(0) and abs(datetime.now(when.tzinfo) - when).seconds < 60
    reopened = AnnotationSession(session.dataset, model, session.folder, device="cpu")
    assert reopened.annotations.equals(session.annotations)
    assert len(reopened.table) == len(session.table)  # the store is reused, nothing embedded
    np.testing.assert_allclose(
        reopened.segments(COMPARTMENT).prediction.probabilities,
        session.segments(COMPARTMENT).prediction.probabilities,
        rtol=1e-5,
    )


def test_undo_takes_back_the_last_labels(session, scene):
    _, picked, _ = scene
    a1, d1 = picked["axon"][0], picked["dendrite"][0]
    session.label([a1], "axon", target=COMPARTMENT)
    session.label([d1], "dendrite", target=COMPARTMENT)
    session.label([a1, d1], "glia", target=COMPARTMENT)
    assert session.annotation(a1, COMPARTMENT) == "glia" and session.head(COMPARTMENT) is None
    assert session.undo() == (COMPARTMENT,)
    assert session.annotation(a1, COMPARTMENT) == "axon"
    assert session.annotation(d1, COMPARTMENT) == "dendrite"
    assert session.head(COMPARTMENT) is not None
    session.undo()
    session.undo()
    assert session.annotations.empty and not session.can_undo and session.undo() == ()
    assert read_annotations(session.folder / "annotations.csv") == {}


def test_next_uncertain_is_the_least_sure_unlabelled_segment(session, scene):
    _, picked, _ = scene
    assert session.next_uncertain(COMPARTMENT) is None  # no head, no ranking
    session.label([picked["axon"][0]], "axon", target=COMPARTMENT)
    session.label([picked["dendrite"][0]], "dendrite", target=COMPARTMENT)
    results = session.segments(COMPARTMENT)
    open_ = results.annotation == ""
    expected = results.segment_id[open_][np.argmax(results.uncertainty[open_])]
    assert session.next_uncertain(COMPARTMENT) == expected
    session.select_segments([int(expected)])
    other = session.next_uncertain(COMPARTMENT)
    assert other not in (None, expected) and session.annotation(other, COMPARTMENT) == ""


def test_cell_type_inputs_average_over_the_radius(session):
    raw = session.table
    assert session.radius_um(CELL_TYPE) == 10.0 and session.radius_um(COMPARTMENT) == 0.0
    averaged = session.nodes(CELL_TYPE)
    np.testing.assert_array_equal(averaged.node_id, raw.node_id)
    assert not np.allclose(averaged.embedding, raw.embedding)
    session.set_radius(CELL_TYPE, 1000)  # every node gets the mean of its segment
    averaged = session.nodes(CELL_TYPE).embedding
    for sid in np.unique(raw.segment_id):
        rows = raw.segment_id == sid
        mean = np.tile(raw.embedding[rows].mean(axis=0), (rows.sum(), 1))
        np.testing.assert_allclose(averaged[rows], mean, atol=1e-5)
    session.set_radius(CELL_TYPE, 0)
    np.testing.assert_array_equal(session.nodes(CELL_TYPE).embedding, raw.embedding)
    np.testing.assert_array_equal(session.nodes(COMPARTMENT).embedding, raw.embedding)


def test_a_head_file_predicts_before_any_label(session, scene, model, tmp_path):
    _, picked, _ = scene
    table = session.table
    labels = np.where(np.isin(table.segment_id, picked["axon"]), "axon", "dendrite")
    path = tmp_path / "compartments.head.npz"
    fit_head(table.embedding, labels, encoder_signature=model_signature(model)).save(path)
    opened = AnnotationSession(
        session.dataset, model, session.folder, device="cpu", heads={COMPARTMENT: path}
    )
    assert opened.status(COMPARTMENT) == f"head {path.name}"
    assert opened.answer(picked["axon"][0], COMPARTMENT).predicted == "axon"
    alien = tmp_path / "alien.head.npz"
    fit_head(table.embedding, labels, encoder_signature="0" * 64).save(alien)
    with pytest.raises(StoreSignatureError):
        opened.load_head(CELL_TYPE, alien)


def test_observers_selection_and_arrays_for_plots(session, scene):
    _, picked, _ = scene
    heard = []
    session.changed.connect(heard.append)
    session.select_segments([picked["axon"][1], picked["axon"][1], picked["dendrite"][0]])
    assert session.selected == (picked["axon"][1], picked["dendrite"][0])
    session.label(session.selected, "axon", target=COMPARTMENT)
    assert heard == ["selection", "annotations", "predictions"]
    nodes = session.nodes(COMPARTMENT)
    n = len(session.table)
    assert nodes.embedding.shape == (n, 64) and nodes.position_nm.shape == (n, 3)
    assert (nodes.annotation[np.isin(nodes.segment_id, list(session.selected))] == "axon").all()
    assert nodes.predicted.tolist() == [""] * n and np.isnan(nodes.uncertainty).all()
    frame = session.segment_frame()
    assert frame["segment_id"].dtype == np.uint64 and len(frame) == 4
    assert {"predicted_compartment", "compartment_entropy", "cell_type_radius_um"} <= set(frame)
    session.changed.disconnect(heard.append)
    session.select_segments([])
    assert len(heard) == 3


def test_bad_input_raises_one_line_errors(session, scene, model, tmp_path):
    dataset, picked, _ = scene
    with pytest.raises(ShapeMismatchError, match="segmentation"):
        AnnotationSession(Dataset(dataset.em), model, tmp_path / "a")
    fine = SegclrModel(ModelConfig(view_shape=(9, 9, 9), voxel_size_nm=2.0, stage_widths=(4,) * 4))
    with pytest.raises(VoxelSizeError, match="finer"):
        AnnotationSession(dataset, fine, tmp_path / "b")
    with pytest.raises(SegmentNotFoundError):
        session.click(0, seed_voxel=(0, 0, 0))
    with pytest.raises(LabelError, match="not in the compartment classes"):
        session.label([picked["axon"][0]], "myelin", target=COMPARTMENT)
    session.label([picked["axon"][0]], "axon", target=COMPARTMENT)
    with pytest.raises(LabelError, match="have labels"):
        session.set_classes(COMPARTMENT, ["dendrite", "soma"])
    session.set_classes(COMPARTMENT, ["axon", "dendrite", "myelin"])
    assert session.classes(COMPARTMENT) == ("axon", "dendrite", "myelin")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "annotations.csv").write_text("id,what\n1,axon\n")
    with pytest.raises(UnknownFormatError, match="annotations"):
        AnnotationSession(dataset, model, tmp_path / "c")


def test_a_speck_is_too_small_to_skeletonise(model, tmp_path):
    em = np.full((16, 32, 32), 128, np.uint8)
    seg = np.zeros((16, 32, 32), np.uint32)
    seg[8, 16, 16:18] = 7
    dataset = Dataset(Volume(em, VOXEL, source="em"), Volume(seg, VOXEL, kind="labels"))
    session = AnnotationSession(dataset, model, tmp_path, device="cpu")
    with pytest.raises(SegmentTooSmallError):
        session.click(7, seed_voxel=(8, 16, 16))
    assert len(session.store) == 0


def test_csv_writes_are_whole_or_not_at_all(tmp_path, monkeypatch):
    path = tmp_path / "annotations.csv"
    write_csv_atomic(pd.DataFrame({"segment_id": [1], "class": ["axon"]}), path)

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", fail)
    with pytest.raises(OSError, match="disk full"):
        write_csv_atomic(pd.DataFrame({"segment_id": [2], "class": ["glia"]}), path)
    monkeypatch.undo()
    assert pd.read_csv(path)["class"].tolist() == ["axon"]
    assert [p.name for p in tmp_path.iterdir()] == ["annotations.csv"]


def test_layer_data_become_volumes_and_sessions_find_a_folder(tmp_path):
    data = np.arange(8 * 16 * 16, dtype=np.uint32).reshape(8, 16, 16)
    volume = volume_from_layer_data(
        [data, data[::2, ::2, ::2]],
        scale=(40, 8, 8),
        translate=(100, 0, 0),
        kind="labels",
        source=None,
        name="seg",
    )
    assert volume.voxel_size == (40, 8, 8) and volume.offset == (100, 0, 0)
    assert volume.level_voxel_sizes[1] == (80, 16, 16) and volume.source.startswith("napari layer")
    changed = volume_from_layer_data(
        data + 1, scale=(40, 8, 8), translate=(0, 0, 0), kind="labels", source=None, name="seg"
    )
    assert changed.source != volume.source  # other values, another store
    with pytest.raises(ShapeMismatchError):
        volume_from_layer_data(
            data[0], scale=(1, 1), translate=(0, 0), kind="image", source=None, name="x"
        )
    (tmp_path / "seg.zarr").mkdir()
    assert session_folder_for(str(tmp_path / "seg.zarr"), "seg") == tmp_path / "seg.zarr.segclr"
    assert session_folder_for(None, "my seg").parts[-2:] == ("sessions", "my_seg")
