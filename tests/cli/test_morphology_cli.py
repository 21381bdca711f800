"""train-morphology and evaluate-morphology: real cells end to end, one-line errors."""

from __future__ import annotations

import argparse
import json

import pandas as pd
import pytest
import torch

import napari_segclr.cli as cli
from napari_segclr.cli import morphology
from napari_segclr.evaluate.morphology import RenderConfig
from napari_segclr.model import load_checkpoint

SCALA = "morphology/scala2019_l4/metadata.csv"
FEW = ["--where", "cell_type=BPC,HBC", "--max-per-class", "4", "--fixed-radius-nm", "250"]


def _with_morphology(build):
    """``build_parser`` with the morphology commands, whether or not it lists them yet."""

    def build_with_morphology() -> argparse.ArgumentParser:
        parser = build()
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        if "evaluate-morphology" not in sub.choices:
            morphology.add_commands(sub)
        return parser

    return build_with_morphology


@pytest.fixture(autouse=True)
def with_morphology_commands(monkeypatch):
    monkeypatch.setattr(cli, "build_parser", _with_morphology(cli.build_parser))


@pytest.fixture(scope="module")
def encoder(tmp_path_factory, shared_data):
    """A tiny mask-only encoder trained for two steps on the five HBC cells."""
    path = tmp_path_factory.mktemp("encoder") / "tiny.pt"
    args = ["train-morphology", "--cells", str(shared_data / SCALA), "--out", str(path)]
    args += ["--where", "cell_type=HBC", "--fixed-radius-nm", "250", "--preset", "tiny"]
    args += ["--steps", "2", "--batch-size", "4", "--device", "cpu"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cli, "build_parser", _with_morphology(cli.build_parser))
        assert cli.main(args) == 0
    return path


@pytest.mark.parametrize("command", ["train-morphology", "evaluate-morphology"])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0
    assert len(capsys.readouterr().out.splitlines()) > 8


def test_training_writes_a_checkpoint_and_keeps_it(encoder, shared_data, capsys):
    assert encoder.is_file() and encoder.with_name("tiny.loss.csv").is_file()
    args = ["train-morphology", "--cells", str(shared_data / SCALA), "--out", str(encoder)]
    assert cli.main([*args, "--steps", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--resume" in err


def test_zero_steps_write_a_seeded_untrained_encoder(shared_data, tmp_path, capsys):
    args = ["train-morphology", "--cells", str(shared_data / SCALA), "--preset", "tiny"]
    args += ["--where", "cell_type=HBC", "--fixed-radius-nm", "250", "--steps", "0"]
    first, second = tmp_path / "a.pt", tmp_path / "b.pt"
    assert cli.main([*args, "--out", str(first)]) == 0
    assert "untrained" in capsys.readouterr().out
    assert cli.main([*args, "--out", str(second)]) == 0
    (model_a, extra), (model_b, _) = load_checkpoint(first), load_checkpoint(second)
    assert extra["step"] == 0 and RenderConfig.from_checkpoint(extra).fixed_radius_nm == 250.0
    for a, b in zip(model_a.state_dict().values(), model_b.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert cli.main([*args, "--out", str(tmp_path / "c.pt"), "--seed", "1"]) == 0
    other, _ = load_checkpoint(tmp_path / "c.pt")
    assert not torch.equal(
        next(iter(other.state_dict().values())), next(iter(model_a.state_dict().values()))
    )
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*args, "--out", str(first), "--resume"])
    assert exit_info.value.code == 2 and "no run to resume" in capsys.readouterr().err


def test_cross_validation_writes_results_and_refuses_to_overwrite(
    encoder, shared_data, tmp_path, capsys
):
    out = tmp_path / "results"
    args = ["evaluate-morphology", "--train", str(shared_data / SCALA), "--cv", "2"]
    args += ["--label", "cell_type", "--model", str(encoder), "--radius-um", "0", "10"]
    args += ["--out", str(out), "--sites", "2", "--spacing-um", "5", *FEW]
    args += ["--device", "cpu"]
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    assert "forest" in printed and "results.json" in printed
    summary = json.loads((out / "results.json").read_text())
    assert summary["cells"]["per_class"] == {"BPC": 4, "HBC": 4}
    assert summary["encoder"]["render"]["fixed_radius_nm"] == 250.0
    assert len(pd.read_csv(out / "cells.csv")) == 8
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--force" in err
    assert cli.main([*args, "--force", "--no-compartments"]) == 0


def _one_of_each(shared_data) -> str:
    table = pd.read_csv(shared_data / SCALA)
    files = [table.loc[table.cell_type == "BPC", "file"].iloc[0]]
    files += list(table.loc[table.cell_type == "HBC", "file"])
    return "file=" + ",".join(files)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (["--label", "colour"], "no column 'colour'"),
        (["--cv", "7"], "class 'HBC' has 5 cells; 7-fold cross-validation needs at least 7"),
        (["--where", "cell_type=BPC"], "at least two classes, found only 'BPC'"),
        (["--where", "ONE_BPC"], "class 'BPC' has 1 cell;"),
        (["--train", "nope.csv"], "nope.csv does not exist"),
    ],
)
def test_bad_input_is_one_line(encoder, shared_data, tmp_path, capsys, change, message):
    args = ["evaluate-morphology", "--train", str(shared_data / SCALA), "--cv", "3"]
    args += ["--label", "cell_type", "--model", str(encoder), "--out", str(tmp_path / "out")]
    if change[0] in ("--label", "--cv"):
        args += ["--where", "cell_type=BPC,HBC"]
    change = [
        str(tmp_path / c) if c == "nope.csv" else _one_of_each(shared_data) if c == "ONE_BPC" else c
        for c in change
    ]
    assert cli.main([*args, *change]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


def test_missing_swc_file_is_one_line(encoder, tmp_path, capsys):
    table = tmp_path / "cells.csv"
    pd.DataFrame({"file": ["a.swc", "b.swc"], "kind": ["x", "y"]}).to_csv(table, index=False)
    args = ["evaluate-morphology", "--train", str(table), "--cv", "2", "--label", "kind"]
    assert cli.main([*args, "--model", str(encoder), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "a.swc does not exist" in err
