"""The evaluate command: its options reach the library, bad input is one line, no traceback."""

from __future__ import annotations

import argparse

import pytest
import torch

import napari_segclr.cli as cli
from napari_segclr.cli import evaluate as evaluate_cli
from napari_segclr.model import SegclrModel, get_preset, save_checkpoint


@pytest.fixture
def main(monkeypatch):
    """``napari-segclr`` with the evaluate command (added here if not registered yet)."""
    build = cli.build_parser

    def with_evaluate() -> argparse.ArgumentParser:
        parser = build()
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        if "evaluate" not in sub.choices:
            evaluate_cli.add_commands(sub)
        return parser

    monkeypatch.setattr(cli, "build_parser", with_evaluate)
    return cli.main


@pytest.fixture
def checkpoint(tmp_path):
    path = tmp_path / "tiny.pt"
    torch.manual_seed(0)
    save_checkpoint(path, SegclrModel(get_preset("tiny")), extra={})
    return path


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


def test_help_lists_the_options(main, capsys):
    with pytest.raises(SystemExit) as info:
        main(["evaluate", "--help"])
    out = capsys.readouterr().out
    assert info.value.code == 0
    for option in ("--model", "--out", "--seeds", "--views-per-class", "--quick", "--device"):
        assert option in out


def test_unknown_model_is_one_line(main, tmp_path, capsys):
    assert (
        main(["evaluate", "--model", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "o")]) == 2
    )
    assert "nope.pt" in _one_line_error(capsys)
    assert not (tmp_path / "o").exists()


def test_non_empty_output_is_refused_before_the_model_is_read(main, tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("")
    args = ["evaluate", "--model", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "out")]
    assert main(args) == 2
    assert "--force" in _one_line_error(capsys)


@pytest.mark.parametrize(
    ("seeds", "message"),
    [
        (["5", "1000"], "below 1000"),
        (["1000"], "at least two"),
        (["1000", "1000"], "more than once"),
    ],
)
def test_bad_seeds_are_refused_with_the_reason(main, checkpoint, tmp_path, capsys, seeds, message):
    args = ["evaluate", "--model", str(checkpoint), "--out", str(tmp_path / "o"), "--seeds", *seeds]
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err.splitlines()[-1] and "Traceback" not in err


def test_options_reach_the_evaluation_and_the_bars_are_printed(
    main, checkpoint, tmp_path, capsys, monkeypatch
):
    seen = {}

    def fake_run(model, out, config, *, model_name, force, progress):
        seen.update(model=model, out=out, config=config, model_name=model_name, force=force)
        progress("seed 1000: render", 1, 1)
        bar = {"what": "subcompartment macro F1", "bar": ">= 0.95", "value": 0.5}
        return {"bars": [{**bar, "met": False, "verdict": "missed"}]}

    monkeypatch.setattr("napari_segclr.evaluate.run_evaluation", fake_run)
    out = tmp_path / "report"
    args = ["evaluate", "--model", str(checkpoint), "--out", str(out), "--quick"]
    args += ["--seeds", "1002", "1000", "1001", "--views-per-class", "9", "--cnn-passes", "16"]
    assert main([*args, "--device", "cpu", "--seed", "3"]) == 0
    config = seen["config"]
    assert config.train_seeds == (1002, 1000) and config.test_seeds == (1001,)
    assert config.views_per_class == 9 and config.seed == 3 and config.device == "cpu"
    assert config.cnn.max_passes == 16 and config.cnn.min_passes == 16
    assert config.draws == 2  # the quick settings
    assert seen["model_name"] == str(checkpoint) and seen["force"] is False
    assert isinstance(seen["model"], SegclrModel)
    assert "MISSED" in capsys.readouterr().out
