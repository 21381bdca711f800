"""The SegCLR commands end to end: train, embed, export and import embeddings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from napari_segclr.cli import main
from napari_segclr.model import load_checkpoint
from napari_segclr.model.shipped import shipped_checkpoint_path
from napari_segclr.store import EmbeddingStore
from napari_segclr.synthetic import Neuropil, NeuropilConfig, render_all

SEED = 7
SHAPE = ("64", "64", "64")
VOXEL = ("128", "128", "128")


@pytest.fixture(scope="module")
def volumes(tmp_path_factory) -> tuple[str, str, list[int]]:
    """The synthetic neuropil as TIFF files, and its three largest segments."""
    folder = tmp_path_factory.mktemp("neuropil")
    crop = render_all(Neuropil(NeuropilConfig(shape=(64, 64, 64), voxel_size=128, seed=SEED)))
    tifffile.imwrite(folder / "em.tif", crop.em)
    tifffile.imwrite(folder / "seg.tif", crop.segmentation)
    ids, counts = np.unique(crop.segmentation, return_counts=True)
    largest = ids[np.argsort(counts)[::-1]]
    return str(folder / "em.tif"), str(folder / "seg.tif"), [int(i) for i in largest if i][:3]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("run") / "tiny.pt"
    argv = ["train", "--synthetic-seed", str(SEED), "--synthetic-shape", *SHAPE]
    argv += ["--synthetic-voxel-size", *VOXEL, "--preset", "tiny", "--steps", "3"]
    argv += ["--batch-size", "4", "--device", "cpu", "--out", str(out)]
    assert main(argv) == 0
    return str(out)


def embed_argv(volumes, model: str, store) -> list[str]:
    em, seg, ids = volumes
    return [
        "embed",
        "--em",
        em,
        "--seg",
        seg,
        "--em-voxel-size",
        *VOXEL,
        "--seg-voxel-size",
        *VOXEL,
        "--model",
        model,
        "--store",
        str(store),
        "--segments",
        *map(str, ids),
        "--device",
        "cpu",
    ]


def error_line(capsys) -> str:
    """The error printed, checked to be one line after any progress bars, with no traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.rstrip("\n").split("\n")[-1]
    assert last.startswith("napari-segclr: error: ") and err.endswith("\n")
    return last


def test_train_writes_checkpoint_and_log_then_resumes(checkpoint, capsys):
    _, extra = load_checkpoint(checkpoint)
    assert extra["step"] == 3 and extra["data"][0]["neuropil"]["seed"] == SEED
    log = Path(checkpoint).with_name("tiny.loss.csv")
    assert log.read_text().count("\n") == 4  # header and three steps

    argv = ["train", "--synthetic-seed", str(SEED), "--synthetic-shape", *SHAPE]
    argv += ["--synthetic-voxel-size", *VOXEL, "--preset", "tiny", "--steps", "3"]
    argv += ["--batch-size", "4", "--device", "cpu", "--out", checkpoint, "--resume"]
    assert main(argv) == 0
    assert "nothing to do" in capsys.readouterr().out
    argv.remove("--resume")
    assert main(argv) == 2  # the checkpoint exists and --resume is not given
    assert "exists" in capsys.readouterr().err


def test_train_then_embed_end_to_end(volumes, checkpoint, tmp_path, capsys):
    store = tmp_path / "emb.zarr"
    assert main(embed_argv(volumes, checkpoint, store)) == 0
    out = capsys.readouterr().out
    table = EmbeddingStore.open(store).read()
    assert set(table.segment_id.tolist()) == set(volumes[2])
    assert f"embedded {len(table)} nodes of 3 segments" in out

    assert main(embed_argv(volumes, checkpoint, store)) == 0
    assert "embedded 0 nodes" in capsys.readouterr().out
    assert len(EmbeddingStore.open(store)) == len(table)


def test_embed_errors_are_one_line(volumes, checkpoint, tmp_path, capsys):
    store = tmp_path / "emb.zarr"
    argv = embed_argv(volumes, checkpoint, store)
    argv[argv.index("--segments") + 1] = "424242"
    assert main(argv) == 2
    assert "424242" in error_line(capsys) and not store.exists()

    assert main(embed_argv(volumes, checkpoint, store)) == 0
    other = tmp_path / "other.pt"
    model, extra = load_checkpoint(checkpoint)
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    from napari_segclr.model import save_checkpoint

    save_checkpoint(other, model, extra=extra)
    capsys.readouterr()
    assert main(embed_argv(volumes, str(other), store)) == 2
    assert "another signature" in error_line(capsys)

    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    assert main(embed_argv(volumes, str(broken), store)) == 2
    assert "not a napari-segclr checkpoint" in error_line(capsys)


@pytest.mark.skipif(shipped_checkpoint_path().is_file(), reason="the shipped model is installed")
def test_missing_shipped_model_says_how_to_make_it(volumes, tmp_path, capsys):
    assert main(embed_argv(volumes, "lite", tmp_path / "emb.zarr")) == 2
    assert "train_shipped_model.py" in error_line(capsys)


def test_train_needs_one_kind_of_data(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--out", str(tmp_path / "m.pt"), "--em", "a.tif"])
    assert exit_info.value.code == 2
    assert "--synthetic-seed" in capsys.readouterr().err


def test_export_then_import_round_trip(volumes, checkpoint, tmp_path, capsys):
    store = tmp_path / "emb.zarr"
    assert main(embed_argv(volumes, checkpoint, store)) == 0
    zips = tmp_path / "zips"
    assert main(["export-zips", "--store", str(store), str(zips), "--n-shards", "4"]) == 0
    assert (zips / "sharding.json").is_file() and len(list(zips.glob("*.zip"))) >= 1

    copy = tmp_path / "copy.zarr"
    assert main(["import-zips", str(zips), "--store", str(copy)]) == 0
    assert main(["import-zips", str(zips), "--store", str(copy)]) == 0  # a rerun adds nothing
    assert "added 0 rows" in capsys.readouterr().out
    a, b = EmbeddingStore.open(store).read(), EmbeddingStore.open(copy).read()
    np.testing.assert_array_equal(a.segment_id, b.segment_id)
    np.testing.assert_array_equal(a.node_id, b.node_id)
    np.testing.assert_allclose(a.position_nm, b.position_nm, rtol=1e-7)
    np.testing.assert_array_equal(a.embedding, b.embedding)

    # An embedding store made by a model is no place to import a release into.
    assert main(["import-zips", str(zips), "--store", str(store)]) == 2
    assert "another signature" in error_line(capsys)
