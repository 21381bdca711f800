"""Linear-probe quality of SegCLR embeddings on synthetic neuropil never trained on.

Prints one JSON document. Run from the repository root:

    python benchmarks/bench_probe.py                      # the shipped "lite" checkpoint
    python benchmarks/bench_probe.py --checkpoint runs/my.pt --per-class 300

For every seed (1000 and above: the shipped model trained on seeds below 1000)
a window of synthetic neuropil is rendered into memory, placed so that the
neuron soma nearest the origin reaches into it. By default the windows are
those ``napari-segclr evaluate`` renders: 12.8 × 25.6 × 25.6 µm, at half the
views' voxel size but at least 32 nm (64 nm for ``lite``, the resolution its
training volumes had). View centres are ground-truth voxels of four classes:
soma, dendrite (apical included), axon and glia. Each synthetic soma is a
single skeleton node, so centres are drawn from voxels, not nodes: per class a
cell at random, then one of its voxels of that class. Centres keep half a
field of view from the window's faces, so that no view is cut off at the edge.

The views (the model's own kind, shape and voxel size) are embedded by the
checkpoint and by a randomly initialised encoder of the same config (the
baseline). A logistic-regression probe (standardised embeddings, class-balanced)
is fitted on the views of the training seeds and scored on the views of the
test seeds, never the same volume for both: macro F1, F1 per class and the
confusion matrix (rows: true class, columns: predicted) for both encoders.
The bar for the trained checkpoint: macro F1 >= 0.95 per view.

Windows and view centres are the evaluation's (``evaluation_volume``);
``napari-segclr evaluate`` writes the fuller report (label efficiency, cell
types, out-of-distribution detection, figures).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence

import numpy as np
import torch
from _common import add_held_out_options, check_held_out, report_header
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from napari_segclr.evaluate import (
    SUBCOMPARTMENTS,
    EvaluationConfig,
    classification_scores,
    evaluation_volume,
)
from napari_segclr.io import Dataset
from napari_segclr.model import PRESETS, ModelConfig, SegclrModel, get_preset, load_checkpoint
from napari_segclr.model.shipped import load_shipped_model, shipped_checkpoint_path
from napari_segclr.views import ViewLoader, ViewPoints

#: The bar the trained checkpoint is held to.
MACRO_F1_BAR = 0.95


def embed_points(
    dataset: Dataset,
    points: ViewPoints,
    models: Sequence[SegclrModel],
    *,
    batch_size: int,
) -> list[np.ndarray]:
    """Embeddings (N, D) of every point by every model, each view extracted once.

    Views are cut by a background worker while the models embed the previous batch.
    """
    out = [np.empty((len(points), m.config.embedding_dim), np.float32) for m in models]
    loader = ViewLoader(dataset, points, models[0].config, batch_size=batch_size, to_torch=True)
    with torch.inference_mode():
        for views, batch in loader:
            views = views.contiguous(memory_format=torch.channels_last_3d)
            for model, embeddings in zip(models, out, strict=True):
                embeddings[batch.node_ids] = model.embed(views).numpy()
    return out


def fit_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    *,
    classes: Sequence[str],
) -> dict:
    """Fit a class-balanced logistic regression on standardised features; score the test set.

    Macro F1 is over the classes present in the test set; classes absent from it
    get ``None``. The confusion matrix has a row (true) and a column (predicted)
    for every class.
    """
    probe = make_pipeline(
        StandardScaler(), LogisticRegression(class_weight="balanced", max_iter=5000)
    )
    probe.fit(train_x, train_y)
    names = np.asarray(classes)
    return classification_scores(names[test_y], names[probe.predict(test_x)], classes=classes)


def load_models(args: argparse.Namespace) -> tuple[dict[str, SegclrModel], dict]:
    """The encoders to compare, by name, and what is known of the checkpoint."""
    info: dict = {}
    models: dict[str, SegclrModel] = {}
    if args.checkpoint != "none":
        if args.checkpoint is None:
            model, extra = load_shipped_model()
            info["path"] = str(shipped_checkpoint_path())
        else:
            model, extra = load_checkpoint(args.checkpoint)
            info["path"] = args.checkpoint
        info.update({k: extra[k] for k in ("steps", "training_s", "trained_on") if k in extra})
        if args.preset is not None and get_preset(args.preset) != model.config:
            raise SystemExit(f"--preset {args.preset} is not the config of {info['path']}")
        models["trained"] = model
        config = model.config
    else:
        config = get_preset(args.preset or "lite")
    info["preset"] = next((n for n, c in PRESETS.items() if c == config), "custom")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)
        models["random_init"] = SegclrModel(config)
    for name, model in models.items():
        models[name] = model.eval().to(memory_format=torch.channels_last_3d)
    return models, info


def split_embeddings(
    seeds: Sequence[int],
    models: dict[str, SegclrModel],
    config: ModelConfig,
    args: argparse.Namespace,
    rng: np.random.Generator,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Embeddings by model name and class indices of the views of some seeds."""
    shares = np.full(len(seeds), args.per_class // len(seeds))
    shares[: args.per_class % len(seeds)] += 1
    parts: dict[str, list[np.ndarray]] = {name: [] for name in models}
    classes, labels = list(SUBCOMPARTMENTS), []
    for seed, share in zip(seeds, shares, strict=True):
        volume = evaluation_volume(
            seed,
            config,
            views_per_class=int(share),
            extent_um=args.extent_um,
            voxel_size_nm=args.voxel_size,
            nodes_per_type=0,  # views only, no labelled segments
            rng=rng,
        )
        embedded = embed_points(
            volume.dataset, volume.view_points, list(models.values()), batch_size=args.batch_size
        )
        for name, embeddings in zip(models, embedded, strict=True):
            parts[name].append(embeddings)
        labels.extend(classes.index(name) for name in volume.view_labels)
    return {name: np.concatenate(p) for name, p in parts.items()}, np.array(labels, int)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--checkpoint",
        help="SegCLR checkpoint to score (default: the shipped one; 'none': the baseline only)",
    )
    p.add_argument(
        "--preset",
        choices=list(PRESETS),
        help="encoder preset; must be the checkpoint's (default: the checkpoint's, else lite)",
    )
    add_held_out_options(p, train=[1000, 1001, 1002, 1003], test=[1004, 1005, 1006, 1007])
    p.add_argument(
        "--voxel-size",
        type=float,
        help="nm of the rendered volumes (default: half the views' voxel size, at least 32)",
    )
    p.add_argument("--batch-size", type=int, default=32, help="views per batch (default 32)")
    args = p.parse_args(argv)
    check_held_out(p, args)
    return args


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the benchmark, print its JSON report and return it."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    report: dict = {
        **report_header(
            "linear probe on SegCLR embeddings, synthetic neuropil", threads=args.threads
        ),
    }
    models, report["checkpoint"] = load_models(args)
    config = next(iter(models.values())).config
    fov_um = np.asarray(config.field_of_view_nm) / 1000
    if np.any(np.asarray(args.extent_um) <= fov_um):
        raise SystemExit(f"--extent-um must exceed the views' {fov_um.tolist()} µm in z, y and x")
    if args.voxel_size is None:
        args.voxel_size = EvaluationConfig().render_voxel_size(config)
    report["views"] = {
        "kinds": list(config.input_kinds),
        "shape": list(config.view_shape),
        "voxel_size_nm": list(config.voxel_size_nm),
    }
    report["volumes"] = {
        "voxel_size_nm": args.voxel_size,
        "extent_um": list(args.extent_um),
        "train_seeds": args.seeds_train,
        "test_seeds": args.seeds_test,
    }
    rng = np.random.default_rng(args.seed)
    train_x, train_y = split_embeddings(args.seeds_train, models, config, args, rng)
    test_x, test_y = split_embeddings(args.seeds_test, models, config, args, rng)
    classes = list(SUBCOMPARTMENTS)
    for split, labels in (("train", train_y), ("test", test_y)):
        counts = np.bincount(labels, minlength=len(classes)).tolist()
        report["views"][f"{split}_per_class"] = dict(zip(classes, counts, strict=True))
    report["classes"] = classes
    report["probe"] = "StandardScaler + LogisticRegression(class_weight='balanced')"
    for name in models:
        report[name] = fit_probe(train_x[name], train_y, test_x[name], test_y, classes=classes)
    if "trained" in models:
        macro = report["trained"]["macro_f1"]
        report["bar"] = {"macro_f1_at_least": MACRO_F1_BAR, "met": macro >= MACRO_F1_BAR}
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["load_average_1min_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
