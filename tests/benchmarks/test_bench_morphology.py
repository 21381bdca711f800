"""The morphology benchmark, tiny: a two-step encoder and 2-fold cross-validation on 16 cells."""

from __future__ import annotations

import json

import numpy as np


def test_bench_morphology_runs_a_tiny_task(bench, shared_data, tmp_path, capsys):
    morphology = bench("bench_morphology")
    args = ["--data", str(shared_data / "morphology"), "--tasks", "allen_celltypes:cre_class"]
    args += ["--preset", "tiny", "--steps", "2", "--batch-size", "4", "--max-per-class", "4"]
    args += ["--cv", "2", "--sites", "2", "--radius-um", "0", "5"]
    args += ["--threads", "1", "--encoders", str(tmp_path / "enc"), "--out", str(tmp_path / "out")]
    report = morphology.main(args)
    allen = report["datasets"]["allen_celltypes"]
    assert allen["encoder"]["steps"] == 2 and (tmp_path / "enc").is_dir()
    task = allen["tasks"]["cre_class"]
    assert task["classes"] == sorted(morphology.INTERNEURONS)
    assert task["cells"]["per_class"] == dict.fromkeys(sorted(morphology.INTERNEURONS), 4)
    scores = [e["macro_f1"] for e in task["cell_types"]["by_radius"]]
    assert len(scores) == 2 and all(0 <= s <= 1 for s in scores)
    assert 0 <= task["cell_types"]["baseline"]["macro_f1"] <= 1
    assert (tmp_path / "out" / "allen_celltypes_cre_class" / "results.png").is_file()
    printed = capsys.readouterr().out
    assert "forest" in printed
    assert json.loads(printed[printed.index("\n{") :])["seconds"] == report["seconds"]
    assert np.isfinite(report["seconds"])
