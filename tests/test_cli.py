"""The command line: help for every command, one-line errors, real files."""

from __future__ import annotations

import argparse

import pytest

from napari_segclr.cli import build_parser, main


def _subcommands() -> list[str]:
    actions = build_parser()._actions
    sub = next(a for a in actions if isinstance(a, argparse._SubParsersAction))
    return sorted(sub.choices)


@pytest.mark.parametrize("command", _subcommands())
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: napari-segclr {command}")
    assert len(out.splitlines()) > 8


def test_info_on_real_tiff(shared_data, capsys):
    path = shared_data / "fib25" / "sample2_raw_z000-159.tif"
    assert main(["info", str(path), "--voxel-size", "10", "10", "10"]) == 0
    out = capsys.readouterr().out
    assert "160" in out and "250" in out and "uint8" in out and "10" in out


def test_missing_path_is_one_line_error(tmp_path, capsys):
    missing = tmp_path / "nope.tif"
    assert main(["info", str(missing), "--voxel-size", "8", "8", "8"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope.tif" in err and "Traceback" not in err


def test_missing_voxel_size_asks_for_it(shared_data, capsys):
    path = shared_data / "gala" / "train_raw.tif"
    assert main(["info", str(path)]) == 2
    err = capsys.readouterr().err
    assert "voxel size" in err and "--voxel-size" in err and "train_raw.tif" in err


def test_synth_writes_volumes_and_tables_and_keeps_existing_output(tmp_path, capsys):
    from napari_segclr.io import open_volume

    out = tmp_path / "scene"
    args = ["synth", str(out), "--shape", "24", "32", "32", "--voxel-size", "40", "32", "32"]
    assert main([*args, "--split-rate", "0.5"]) == 0
    em = open_volume(out / "neuropil.ome.zarr")
    seg = open_volume(out / "neuropil.ome.zarr" / "labels" / "segmentation")
    assert em.shape == seg.shape == (24, 32, 32) and em.voxel_size == (40, 32, 32)
    assert seg.kind == "labels" and seg.dtype == "uint64"
    assert (out / "nodes.csv").stat().st_size > 0
    before = sorted(p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file())
    capsys.readouterr()
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err
    assert sorted(p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()) == before
