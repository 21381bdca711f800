"""The evaluation end to end on a tiny model: the report's parts, bars and files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from matplotlib.image import imread

from napari_segclr.evaluate import (
    FIGURES,
    REPORT_JSON,
    EvaluationConfig,
    SupervisedSettings,
    evaluate_model,
    fit_synthetic_heads,
    run_evaluation,
    write_report,
)
from napari_segclr.exceptions import OutputExistsError
from napari_segclr.model import SegclrModel, get_preset, model_signature

#: Smaller than ``EvaluationConfig.quick()``: every part runs, on a handful of views and nodes.
TINY_RUN = EvaluationConfig.quick(
    views_per_class=8,
    labels_per_class=(2,),
    draws=1,
    cnn=SupervisedSettings(epochs=1, min_passes=8, max_passes=8, batch_size=8),
    nodes_per_type=15,
    radii_um=(0.0, 5.0),
    umap_epochs=20,
    umap_points=60,
    device="cpu",
)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return SegclrModel(get_preset("tiny"))


@pytest.fixture(scope="module")
def report(model):
    phases = []
    result = evaluate_model(
        model, TINY_RUN, model_name="tiny test", progress=lambda *a: phases.append(a)
    )
    result["_phases"] = sorted({phase for phase, _, _ in phases})
    return result


def test_config_refuses_training_seeds_and_shared_volumes():
    with pytest.raises(ValueError, match="below 1000"):
        EvaluationConfig(train_seeds=(10,))
    with pytest.raises(ValueError, match="in both"):
        EvaluationConfig(train_seeds=(1000, 1001), test_seeds=(1001,))
    with pytest.raises(ValueError, match=">= 2"):
        EvaluationConfig(labels_per_class=(1, 4))
    with pytest.raises(ValueError, match="at least the number of seeds"):
        EvaluationConfig(views_per_class=1)
    quick = EvaluationConfig.quick(seed=4)
    assert quick.seed == 4 and quick.train_seeds == (1000,)
    assert json.loads(json.dumps(quick.to_dict()))["cnn"]["max_passes"] == 64
    assert quick.render_voxel_size(get_preset("tiny")) == 128.0
    assert quick.render_voxel_size(get_preset("lite")) == 64.0


def test_report_holds_every_part_with_sane_figures(report):
    for key in ("model", "config", "data", "label_efficiency", "subcompartments"):
        assert key in report
    for key in ("cell_types", "ood", "umap", "bars", "seconds"):
        assert key in report
    assert report["model"]["name"] == "tiny test" and report["model"]["preset"] == "tiny"
    assert report["data"]["train_seeds"] == [1000] and report["data"]["test_seeds"] == [1001]
    curves = report["label_efficiency"]["methods"]
    assert set(curves) == {"segclr_linear", "supervised_cnn", "features_rf"}
    for curve in curves.values():
        assert curve["labels"] == sorted(curve["labels"]) and len(curve["median"]) == 2
        assert all(0 <= f <= 1 for f in curve["median"])
    assert curves["segclr_linear"]["labels"][-1] == report["subcompartments"]["n_train"]
    cells = report["cell_types"]
    assert cells["radii_um"] == [0.0, 5.0] and len(cells["per_node_macro_f1"]) == 2
    assert cells["best_radius_um"] in cells["radii_um"]
    ood = report["ood"]
    assert ood["in_distribution"] == ["astrocyte", "microglia"]
    assert set(ood["heads"]) == {"linear", "mlp", "sngp"}
    assert 0 <= ood["heads"]["sngp"]["scores"]["dempster_shafer"]["auroc"] <= 1
    assert len(report["umap"]["subcompartments"]["x"]) == len(
        report["umap"]["subcompartments"]["labels"]
    )
    assert "umap" in report["_phases"] and "seed 1000: render" in report["_phases"]
    json.dumps(report)


def test_bars_state_each_figure_and_say_met_or_missed(report):
    bars = report["bars"]
    assert len(bars) == 4
    for bar in bars:
        assert bar["verdict"] == {True: "met", False: "missed", None: "not measurable"}[bar["met"]]
    f1 = report["subcompartments"]["methods"]["segclr_linear"]["macro_f1"]
    assert bars[0]["value"] == f1 and bars[0]["met"] == (f1 >= 0.95)
    # Missed or met, each of the first two bars says what the other methods scored.
    forest = report["subcompartments"]["methods"]["features_rf"]["macro_f1"]
    assert f"features + forest {forest:.3f}" in bars[0]["context"]
    assert "linear head" in bars[1]["context"] and "CNN" in bars[1]["context"]
    forest = report["cell_types"]["features_rf_per_node_macro_f1"]
    assert len(forest) == len(report["cell_types"]["radii_um"])
    assert f"features + forest {forest[0]:.3f} at R=0" in bars[2]["context"]


def test_report_files_are_written_and_figures_are_not_blank(report, tmp_path):
    out = tmp_path / "report"
    written = write_report(report, out)
    assert sorted(p.name for p in written) == sorted([REPORT_JSON, *FIGURES])
    assert sorted(p.name for p in out.iterdir()) == sorted([REPORT_JSON, *FIGURES])  # no temp files
    assert json.loads((out / REPORT_JSON).read_text())["bars"] == report["bars"]
    for name in FIGURES:
        pixels = imread(out / name)[..., :3]
        assert pixels.shape[0] > 200 and pixels.shape[1] > 300
        assert np.mean(pixels.min(axis=-1) < 0.9) > 0.01, f"{name} is blank"
    with pytest.raises(OutputExistsError):
        write_report(report, out)
    write_report(report, out, force=True)


def test_run_refuses_a_non_empty_folder_before_any_work(model, tmp_path):
    (tmp_path / "old.txt").write_text("")
    with pytest.raises(OutputExistsError):
        run_evaluation(model, tmp_path, TINY_RUN, progress=lambda *a: pytest.fail("work began"))


def test_synthetic_heads_answer_both_targets_on_training_seeds(model):
    heads = fit_synthetic_heads(model, [3], [4], TINY_RUN, kind="linear", radius_um=5.0)
    assert set(heads) == {"compartment", "cell_type"}
    compartment, cell_type = heads["compartment"], heads["cell_type"]
    assert set(compartment.classes) == {"soma", "dendrite", "axon", "glia"}
    assert compartment.aggregation is None and cell_type.aggregation.radius_um == 5.0
    for head in heads.values():
        assert head.encoder_signature == model_signature(model) and head.reject is not None
    prediction = cell_type.predict(np.zeros((3, model.config.embedding_dim), np.float32))
    assert prediction.probabilities.shape == (3, len(cell_type.classes))
