"""pretrain-mae and finetune-mae: help, a tiny run end to end, one-line refusals."""

from __future__ import annotations

import argparse

import pytest
import tifffile

from napari_segclr.cli import mae
from napari_segclr.exceptions import OutputExistsError
from napari_segclr.mae import load_affinity_model, load_model
from napari_segclr.runs import read_log

from .conftest import toy_cells

COMMANDS = ("pretrain-mae", "finetune-mae")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="napari-segclr")
    mae.add_commands(p.add_subparsers(required=True))
    return p


def run(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    return args.run(args)


@pytest.fixture(scope="module")
def tiffs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("toy")
    raw, labels = toy_cells()
    tifffile.imwrite(folder / "raw.tif", raw)
    tifffile.imwrite(folder / "labels.tif", labels)
    return folder


@pytest.mark.parametrize("command", COMMANDS)
def test_commands_have_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        parser().parse_args([command, "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert len(text.splitlines()) >= 9 and "--out" in text and "--minutes" in text


def test_pretrain_then_finetune_end_to_end(tiffs, tmp_path, capsys):
    mae_out, aff_out = tmp_path / "mae.pt", tmp_path / "aff.pt"
    common = [
        "--voxel-size",
        "10",
        "10",
        "10",
        "--steps",
        "2",
        "--batch-size",
        "2",
        "--device",
        "cpu",
    ]
    assert run(["pretrain-mae", str(tiffs / "raw.tif"), "--preset", "tiny", "--mask-ratio", "0.9",
                *common, "--out", str(mae_out)]) == 0  # fmt: skip
    assert "pre-trained 2 steps" in capsys.readouterr().out
    model, extra = load_model(mae_out, kind="mae")
    assert extra["train_config"]["mask_ratio"] == 0.9 and model.config.tile_shape == (8, 16, 16)
    assert read_log(tmp_path / "mae.loss.csv")["step"].tolist() == [1, 2]

    assert run(["finetune-mae", "--raw", str(tiffs / "raw.tif"), "--labels",
                str(tiffs / "labels.tif"), "--init", str(mae_out), *common,
                "--out", str(aff_out)]) == 0  # fmt: skip
    assert "fine-tuned 2 steps" in capsys.readouterr().out
    affinity = load_affinity_model(aff_out)
    assert affinity.patch_shape == (8, 16, 16) and affinity.config == model.config

    # Running it again goes on from the checkpoint only when asked to.
    again = ["finetune-mae", "--raw", str(tiffs / "raw.tif"), "--labels",
             str(tiffs / "labels.tif"), "--init", str(mae_out), *common,
             "--out", str(aff_out)]  # fmt: skip
    with pytest.raises(OutputExistsError, match="--resume"):
        run(again)
    assert run([*again, "--resume"]) == 0
    assert "already trained for 2 steps" in capsys.readouterr().out


def test_network_options_are_checked_against_the_data(tiffs, tmp_path, capsys):
    raw = str(tiffs / "raw.tif")
    out = ["--out", str(tmp_path / "m.pt"), "--device", "cpu", "--steps", "1"]
    with pytest.raises(SystemExit):
        run(["pretrain-mae", raw, "--voxel-size", "40", "10", "10", "--preset", "tiny", *out])
    assert "use patch_shape (1, 4, 4)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run(["pretrain-mae", raw, "--voxel-size", "10", "10", "10", "--tile-shape", "8", "16", "10",
             *out])  # fmt: skip
    assert "not divisible by patch_shape" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run(["finetune-mae", "--raw", raw, "--labels", raw, "--init", "m.pt", "--preset", "tiny",
             *out])  # fmt: skip
    assert "come from --init" in capsys.readouterr().err
    assert not (tmp_path / "m.pt").exists()
