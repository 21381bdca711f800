"""fit-head and predict end to end on small stores, through the commands' own parser."""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import pytest

from napari_segclr.cli import heads as heads_cli
from napari_segclr.exceptions import (
    LabelError,
    OutputExistsError,
    SegmentNotFoundError,
    ShapeMismatchError,
    StoreSignatureError,
)
from napari_segclr.heads import HEAD_KINDS, SCORES, load_head
from napari_segclr.store import EmbeddingStore

CLASSES = ("axon", "dendrite", "glia")
DIM = 8
NODES = 12  # per segment, 1 µm apart
BIG = 2**63 + 11  # ids beyond int64 stay exact through the CSV files


def _signature(model: str, **extra) -> dict:
    return {"model": model, "data": {"em": "em.zarr"}, **extra}


def _store(path, *, model="a" * 64, spacing=1000.0, dim=DIM, seed=0) -> EmbeddingStore:
    """15 segments of 12 nodes, 5 per class; class i's embeddings lie around 4 e_i."""
    extra = {} if spacing is None else {"node_spacing_nm": spacing}
    store = EmbeddingStore.create(path, signature=_signature(model, **extra), dim=dim)
    rng = np.random.default_rng(seed)
    segments = BIG + np.arange(15, dtype=np.uint64)
    truth = np.arange(15) % 3
    seg = np.repeat(segments, NODES)
    node = np.tile(np.arange(NODES), 15)
    position = np.stack(
        [np.repeat(np.arange(15) * 50_000.0, NODES), np.zeros(len(seg)), node * 1000.0], 1
    )
    centre = 4.0 * np.eye(dim)[np.repeat(truth, NODES) % dim]
    store.append(seg, node, position, centre + rng.normal(size=(len(seg), dim)))
    return store


@pytest.fixture
def store(tmp_path) -> EmbeddingStore:
    return _store(tmp_path / "emb.zarr")


@pytest.fixture
def labels(tmp_path) -> str:
    """Whole segments 0-11 labelled (4 per class); segments 12-14 are left to predict."""
    rows = [{"segment_id": BIG + i, "label": CLASSES[i % 3], "node_id": ""} for i in range(12)]
    path = tmp_path / "labels.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return str(path)


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="napari-segclr")
    heads_cli.add_commands(parser.add_subparsers(required=True))
    args = parser.parse_args(argv)
    return args.run(args)


def _fit_argv(store, labels, out, *extra) -> list[str]:
    return ["fit-head", "--store", str(store.path), "--labels", labels, "--out", str(out), *extra]


@pytest.mark.parametrize("kind", HEAD_KINDS)
def test_fit_head_then_predict_nodes_and_segments(kind, store, labels, tmp_path, capsys):
    head_path = tmp_path / "head.npz"
    extra = ["--kind", kind, "--radius-um", "3", "--coverage", "0.9", "--holdout", "0.25"]
    assert run(_fit_argv(store, labels, head_path, *extra)) == 0
    assert "held-out" in capsys.readouterr().out
    head = load_head(head_path)
    assert head.kind == kind and head.classes == CLASSES and head.encoder_signature == "a" * 64
    assert head.aggregation.radius_um == 3 and head.aggregation.metric == "path"
    assert head.reject.coverage == 0.9
    assert head.reject.score == ("variance" if kind == "sngp" else "dempster_shafer")
    nodes, segments = tmp_path / "nodes.csv", tmp_path / "segments.csv"
    argv = ["predict", "--store", str(store.path), "--head", str(head_path)]
    assert run([*argv, "--nodes-csv", str(nodes), "--segments-csv", str(segments)]) == 0
    per_node = pd.read_csv(nodes, dtype={"segment_id": np.uint64})
    per_segment = pd.read_csv(segments, dtype={"segment_id": np.uint64})
    assert len(per_node) == len(store) and len(per_segment) == 15
    expected = ["segment_id", "node_id", "z_nm", "y_nm", "x_nm", "label", "confidence"]
    assert per_node.columns[:7].tolist() == expected
    assert {f"p_{c}" for c in CLASSES} | {"entropy", "dempster_shafer", "rejected"} <= set(
        per_node.columns
    )
    truth = np.asarray(CLASSES)[(per_segment["segment_id"] - BIG).to_numpy(np.int64) % 3]
    assert (per_segment["label"].to_numpy() == truth).all()  # the unlabelled three as well
    assert (per_segment["n_nodes"] == NODES).all()
    assert per_node["rejected"].dtype == bool


def test_node_labels_and_a_subset_of_segments(store, tmp_path):
    rows = [
        {"segment_id": BIG + i, "label": CLASSES[i % 3], "node_id": n}
        for i in range(6)
        for n in (0, 5)
    ]
    labels = tmp_path / "nodes.csv"
    pd.DataFrame(rows).to_csv(labels, index=False)
    head_path = tmp_path / "head.npz"
    assert run(_fit_argv(store, str(labels), head_path)) == 0
    out = tmp_path / "seg.csv"
    argv = ["predict", "--store", str(store.path), "--head", str(head_path)]
    assert run([*argv, "--segments", str(BIG + 13), "--segments-csv", str(out)]) == 0
    frame = pd.read_csv(out, dtype={"segment_id": np.uint64})
    assert frame["segment_id"].tolist() == [BIG + 13] and frame["label"].tolist() == ["dendrite"]


def test_outputs_are_not_overwritten_without_force(store, labels, tmp_path):
    head_path = tmp_path / "head.npz"
    head_path.write_text("keep me")
    with pytest.raises(OutputExistsError, match="--force"):
        run(_fit_argv(store, labels, head_path))
    assert head_path.read_text() == "keep me"
    assert run(_fit_argv(store, labels, head_path, "--force")) == 0
    csv = tmp_path / "nodes.csv"
    csv.write_text("keep me")
    argv = [
        "predict",
        "--store",
        str(store.path),
        "--head",
        str(head_path),
        "--nodes-csv",
        str(csv),
    ]
    with pytest.raises(OutputExistsError):
        run(argv)
    assert csv.read_text() == "keep me"
    assert run([*argv, "--force"]) == 0 and csv.read_text().startswith("segment_id,node_id")


def test_predict_refuses_embeddings_of_another_encoder_or_size(store, labels, tmp_path):
    head_path = tmp_path / "head.npz"
    run(_fit_argv(store, labels, head_path))
    out = tmp_path / "nodes.csv"
    for other, error in (
        (_store(tmp_path / "b.zarr", model="b" * 64), StoreSignatureError),
        (_store(tmp_path / "c.zarr", model="a" * 64, dim=4), ShapeMismatchError),
    ):
        argv = ["predict", "--store", str(other.path), "--head", str(head_path)]
        with pytest.raises(error):
            run([*argv, "--nodes-csv", str(out)])
        assert not out.exists()


@pytest.mark.parametrize(
    ("rows", "error", "words"),
    [
        ([(0, "axon"), (3, "axon")], LabelError, "one class"),
        ([(0, "axon"), (3, "axon"), (1, "glia")], LabelError, "'glia'"),
        ([(0, "axon"), (1, "glia"), (99, "glia")], SegmentNotFoundError, str(BIG + 99)),
        ([(0, "axon"), (0, "glia"), (1, "glia")], LabelError, "conflicting"),
    ],
)
def test_bad_labels_write_no_head(store, tmp_path, rows, error, words):
    labels = tmp_path / "labels.csv"
    frame = pd.DataFrame([{"segment_id": BIG + s, "label": c} for s, c in rows])
    if error is not SegmentNotFoundError:  # single nodes: a segment of one label has 12 nodes
        frame["node_id"] = 0
    frame.to_csv(labels, index=False)
    head_path = tmp_path / "head.npz"
    with pytest.raises(error, match=words) as info:
        run(_fit_argv(store, str(labels), head_path))
    assert "\n" not in str(info.value) and not head_path.exists()


def test_labels_file_problems_are_one_line_errors(store, tmp_path):
    head_path = tmp_path / "head.npz"
    bad = tmp_path / "bad.csv"
    bad.write_text("segment,class\n1,axon\n")
    with pytest.raises(LabelError, match="segment_id, label"):
        run(_fit_argv(store, str(bad), head_path))
    bad.write_text("segment_id,label\nnot-an-id,axon\n")
    with pytest.raises(LabelError, match="integer"):
        run(_fit_argv(store, str(bad), head_path))
    with pytest.raises(FileNotFoundError, match=r"missing\.csv"):
        run(_fit_argv(store, str(tmp_path / "missing.csv"), head_path))


def test_path_radius_needs_a_node_spacing(tmp_path, labels, capsys):
    store = _store(tmp_path / "imported.zarr", spacing=None)
    head_path = tmp_path / "head.npz"
    with pytest.raises(SystemExit):
        run(_fit_argv(store, labels, head_path, "--radius-um", "2"))
    assert "--spacing-nm" in capsys.readouterr().err and not head_path.exists()
    assert run(_fit_argv(store, labels, head_path, "--radius-um", "2", "--spacing-nm", "1000")) == 0
    assert (
        run(
            _fit_argv(
                store, labels, head_path, "--radius-um", "2", "--metric", "euclidean", "--force"
            )
        )
        == 0
    )


@pytest.mark.parametrize("command", ["fit-head", "predict"])
def test_commands_explain_themselves(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run([command, "--help"])
    assert exit_info.value.code == 0
    assert len(capsys.readouterr().out.splitlines()) > 8


def test_command_choices_match_the_library():
    from napari_segclr.aggregate import METRICS

    assert heads_cli.HEAD_KINDS == HEAD_KINDS
    assert set(heads_cli.SCORES) == set(SCORES) and heads_cli.METRICS == METRICS
