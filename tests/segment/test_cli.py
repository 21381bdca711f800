"""The segment command end to end: a real checkpoint, TIFF in, OME-Zarr out, scores printed."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch

from napari_segclr.cli import main
from napari_segclr.io import open_volume


@pytest.fixture
def files(tmp_path, cell_image, cells):
    em, truth = tmp_path / "em.tif", tmp_path / "truth.tif"
    tifffile.imwrite(em, cell_image)
    tifffile.imwrite(truth, cells.astype("uint32"))
    return str(em), str(truth)


def _args(em, checkpoint, out, *more, voxel=("10", "10", "10")):
    return ["segment", "--em", em, "--em-voxel-size", *voxel, "--model", checkpoint,
            "--out", str(out), "--device", "cpu", *more]  # fmt: skip


def test_segments_writes_and_scores(files, checkpoint, tmp_path, capsys):
    em, truth = files
    out = tmp_path / "seg.ome.zarr"
    assert main(_args(em, checkpoint, out, "--truth", truth, "--overlap", "4")) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "(20, 28, 28)" in printed
    assert "adapted Rand error" in printed and "variation of information" in printed
    segmentation = open_volume(out)
    assert segmentation.kind == "labels" and segmentation.shape == (20, 28, 28)
    assert segmentation.voxel_size == (10.0, 10.0, 10.0) and segmentation.dtype == "uint64"


def test_keeps_existing_output_unless_forced(files, checkpoint, tmp_path, capsys):
    em, _ = files
    out = tmp_path / "seg.ome.zarr"
    out.mkdir()
    assert main(_args(em, checkpoint, out)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--force" in err and "seg.ome.zarr" in err
    assert main(_args(em, checkpoint, out, "--force", "--threshold", "0.3")) == 0
    assert open_volume(out).shape == (20, 28, 28)


def _fails_with(args, message, capsys) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


def test_clear_one_line_errors(files, checkpoint, tmp_path, capsys):
    em, _ = files
    out = tmp_path / "seg.zarr"
    missing = str(tmp_path / "missing.pt")
    _fails_with(_args(em, missing, out), "missing.pt does not exist", capsys)
    not_a_model = tmp_path / "notes.pt"
    torch.save({"notes": "not a network"}, not_a_model)
    _fails_with(_args(em, str(not_a_model), out), "not a napari-segclr checkpoint", capsys)
    coarse = _args(em, checkpoint, out, voxel=("40", "10", "10"))
    _fails_with(coarse, "(40, 10, 10) nm differs from the model's (10, 10, 10) nm", capsys)
    small = tmp_path / "small.tif"
    tifffile.imwrite(small, np.ones((4, 4, 4), np.uint32))
    truth = _args(em, checkpoint, out, "--truth", str(small))
    _fails_with(truth, "small.tif: shape (4, 4, 4) differs from the segmented EM's", capsys)
    assert not out.exists()


@pytest.mark.parametrize("option", [("--threshold", "1.5"), ("--overlap", "1.0")])
def test_bad_options_are_refused_by_the_parser(files, checkpoint, tmp_path, option, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(_args(files[0], checkpoint, tmp_path / "seg.zarr", *option))
    assert exit_info.value.code == 2
    assert option[0] in capsys.readouterr().err


def test_affinities_on_a_local_cluster(files, checkpoint, tmp_path, capsys):
    em, _ = files
    with pytest.raises(SystemExit) as stop:  # without a cluster there are no affinities to keep
        main(_args(em, checkpoint, tmp_path / "seg.ome.zarr", "--keep-affinities"))
    assert stop.value.code == 2 and "need --scheduler" in capsys.readouterr().err
    out = tmp_path / "seg.ome.zarr"
    affinities = tmp_path / "aff.zarr"
    argv = _args(em, checkpoint, out, "--local-workers", "1", "--affinities", str(affinities))
    assert main([*argv, "--keep-affinities"]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    assert open_volume(out).shape == (20, 28, 28) and (affinities / "ledger").is_dir()
    # Rerun: every block is recorded, nothing is predicted again; the affinities go at the end.
    assert main([*argv, "--force"]) == 0
    assert not affinities.exists() and open_volume(out).shape == (20, 28, 28)
