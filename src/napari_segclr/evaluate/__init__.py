"""Evaluation of SegCLR models on labelled data they never saw.

On synthetic neuropil (seeds 1000 and above, never trained on): subcompartment
F1 and label efficiency against a supervised CNN and hand-crafted features,
cell types against the aggregation radius, out-of-distribution detection by
the heads' uncertainty, confusion matrices and a UMAP picture; written as
``report.json`` and PNG figures::

    from napari_segclr.evaluate import EvaluationConfig, run_evaluation
    from napari_segclr.model.shipped import load_shipped_model

    model, _ = load_shipped_model()
    report = run_evaluation(model, "evaluation/", EvaluationConfig.quick(), model_name="lite")
"""

from .baselines import (
    VIEW_FEATURES,
    SupervisedCnn,
    SupervisedSettings,
    fit_forest,
    train_supervised_cnn,
    view_features,
)
from .evaluation import (
    EvaluationConfig,
    bars,
    evaluate_model,
    fit_synthetic_heads,
    run_evaluation,
    umap_coordinates,
)
from .metrics import (
    classification_scores,
    label_multiple,
    learning_curve,
    macro_f1,
    ood_auroc,
    ood_scores,
    stratified_draw,
)
from .report import FIGURES, REPORT_JSON, check_output_dir, write_report
from .synthetic import (
    CELL_TYPE_NAMES,
    FIRST_EVALUATION_SEED,
    GLIA_TYPES,
    SUBCOMPARTMENTS,
    EvaluationVolume,
    LabelledSegments,
    LabelledViews,
    check_evaluation_seeds,
    evaluation_volume,
    labelled_segments,
    labelled_views,
    sample_points,
    window_config,
)

__all__ = [
    "CELL_TYPE_NAMES",
    "FIGURES",
    "FIRST_EVALUATION_SEED",
    "GLIA_TYPES",
    "REPORT_JSON",
    "SUBCOMPARTMENTS",
    "VIEW_FEATURES",
    "EvaluationConfig",
    "EvaluationVolume",
    "LabelledSegments",
    "LabelledViews",
    "SupervisedCnn",
    "SupervisedSettings",
    "bars",
    "check_evaluation_seeds",
    "check_output_dir",
    "classification_scores",
    "evaluate_model",
    "evaluation_volume",
    "fit_forest",
    "fit_synthetic_heads",
    "label_multiple",
    "labelled_segments",
    "labelled_views",
    "learning_curve",
    "macro_f1",
    "ood_auroc",
    "ood_scores",
    "run_evaluation",
    "sample_points",
    "stratified_draw",
    "train_supervised_cnn",
    "umap_coordinates",
    "view_features",
    "window_config",
    "write_report",
]
