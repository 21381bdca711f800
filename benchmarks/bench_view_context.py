"""How much one view tells, by its shape and voxel size: a ceiling for any encoder.

Prints one JSON document. Run from the repository root:

    python benchmarks/bench_view_context.py                  # 33³/128, 49³/128, 65³/64, 33³/192 nm
    python benchmarks/bench_view_context.py --views 33/128 41/160 --cnn-passes 8192
    python benchmarks/bench_view_context.py --views 33/128 --cnn-seeds 2 \
        --cnn-inputs masked_em masked_em+mask em+mask

For every seed the evaluation's volume is rendered (``evaluation_volume``,
seeds >= 1000) and soma / dendrite / axon / glia view centres are drawn once,
half the widest field of view from every face, so that every view kind is cut
around the same centres. Each kind ("SHAPE/VOXEL_NM": cubic views) is scored
by two methods that need no pre-training, fitted on the views of the training
seeds and scored on those of the test seeds:

* hand-crafted shape and intensity features with a random forest
  (``view_features`` + ``fit_forest``, the evaluation's baseline);
* the ``lite`` network at that view shape and voxel size, trained supervised
  from random weights (``train_supervised_cnn``) for ``--cnn-passes`` views,
  once per input (``--cnn-inputs``, e.g. ``masked_em+mask``) and seed
  (``--cnn-seeds``): one training differs from another by a few points.

Where these rise with a wider or finer view, single views of the shipped
kind are ambiguous for lack of context or resolution, not for lack of training.

A third, reference method reads what no view shows so plainly: the same
features plus the ground-truth organelles in the view's segment (µm³ of
mitochondria, nucleus, vesicle clouds and lysosomes inside it, of myelin
touching it), from the rendered neuropil. It bounds what a reader of perfect
ultrastructure could score; where it far exceeds the other two, the classes
differ in the generator by organelles that the rendered EM of that view kind
shows too faintly. ``--cnn-seeds 0`` skips the CNNs.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch
from _common import add_held_out_options, check_held_out, report_header
from scipy import ndimage

from napari_segclr.evaluate import (
    SUBCOMPARTMENTS,
    EvaluationVolume,
    LabelledViews,
    SupervisedSettings,
    classification_scores,
    evaluation_volume,
    fit_forest,
    labelled_views,
    train_supervised_cnn,
    view_features,
)
from napari_segclr.model import get_preset
from napari_segclr.synthetic import Crop, Neuropil, render_all
from napari_segclr.views import INPUT_KINDS, ViewSpec

DEFAULT_VIEWS = ("33/128", "49/128", "65/64", "33/192")
#: Codes of ``Crop.organelles`` counted inside a view's segment, and the myelin code.
INNER_ORGANELLES = {"mitochondrion": 1, "nucleus": 2, "vesicle_cloud": 3, "lysosome": 4}
MYELIN = 5


def view_kind(text: str) -> tuple[int, float]:
    """``"SHAPE/VOXEL_NM"`` (e.g. ``"33/128"``) as (shape, voxel size)."""
    try:
        shape, voxel = text.split("/")
        kind = int(shape), float(voxel)
    except ValueError:
        message = f"expected SHAPE/VOXEL_NM such as 33/128, got {text!r}"
        raise argparse.ArgumentTypeError(message) from None
    if kind[0] < 3 or kind[0] % 2 == 0 or not 8 <= kind[1] <= 1000:
        raise argparse.ArgumentTypeError(f"odd shape >= 3 and voxel 8–1000 nm, got {text!r}")
    return kind


def input_kinds(text: str) -> str:
    """``"KIND+KIND"`` of :data:`INPUT_KINDS`, checked."""
    kinds = text.split("+")
    if not all(k in INPUT_KINDS for k in kinds) or len(set(kinds)) != len(kinds):
        raise argparse.ArgumentTypeError(
            f"expected channels of {', '.join(INPUT_KINDS)} joined by +, got {text!r}"
        )
    return text


def true_organelles(volume: EvaluationVolume, crop: Crop, field_of_view_nm: float) -> np.ndarray:
    """(N, 5) µm³ of each of :data:`INNER_ORGANELLES` inside each view's segment and of
    myelin touching it, within the view's field of view, from the ground truth ``crop``."""
    config = volume.config
    voxel = np.asarray(config.voxel_size)
    half = np.round(field_of_view_nm / 2 / voxel).astype(int)
    points = volume.view_points
    centres = np.rint((points.centers_nm - np.asarray(config.offset)) / voxel).astype(int)
    out = np.empty((len(points), len(INNER_ORGANELLES) + 1))
    for i, (centre, segment) in enumerate(zip(centres, points.segment_ids, strict=True)):
        box = tuple(slice(max(c - h, 0), c + h + 1) for c, h in zip(centre, half, strict=True))
        mask = crop.segmentation[box] == segment
        organelles = crop.organelles[box]
        touching = ndimage.binary_dilation(mask) & ~mask
        out[i, :-1] = [np.sum(mask & (organelles == c)) for c in INNER_ORGANELLES.values()]
        out[i, -1] = np.sum(touching & (organelles == MYELIN))
    return out * np.prod(voxel / 1000)


def cut_split(
    seeds: Sequence[int], kinds: Sequence[tuple[int, float]], args: argparse.Namespace
) -> list[tuple[LabelledViews, np.ndarray]]:
    """The views of every kind (in the order of ``kinds``) around the same centres, each
    with its ground-truth organelles (:func:`true_organelles`)."""
    widest = max(kinds, key=lambda k: k[0] * k[1])
    shares = np.full(len(seeds), args.per_class // len(seeds))
    shares[: args.per_class % len(seeds)] += 1
    parts: list[list[LabelledViews]] = [[] for _ in kinds]
    organelles: list[list[np.ndarray]] = [[] for _ in kinds]
    for seed, share in zip(seeds, shares, strict=True):
        volume = evaluation_volume(
            seed,
            ViewSpec((widest[0],) * 3, widest[1]),
            views_per_class=int(share),
            extent_um=args.extent_um,
            voxel_size_nm=args.voxel_size,
            nodes_per_type=0,  # views only
            rng=args.seed + seed,
        )
        crop = render_all(Neuropil(volume.config))  # the same window again, with its organelles
        for part, found, (shape, voxel) in zip(parts, organelles, kinds, strict=True):
            part.append(labelled_views(volume, (shape,) * 3, voxel))
            found.append(true_organelles(volume, crop, shape * voxel))
    return [
        (LabelledViews.concat(p), np.concatenate(o)) for p, o in zip(parts, organelles, strict=True)
    ]


def score_kind(
    train: tuple[LabelledViews, np.ndarray],
    test: tuple[LabelledViews, np.ndarray],
    shape: int,
    voxel: float,
    args: argparse.Namespace,
) -> dict:
    """Features + random forest (without and with the true organelles) and the supervised
    CNN on one view kind."""
    classes = list(SUBCOMPARTMENTS)
    started = time.perf_counter()
    (train, train_organelles), (test, test_organelles) = train, test
    train_features, test_features = view_features(train), view_features(test)
    found: dict = {"field_of_view_um": round(shape * voxel / 1000, 2), "voxels": shape**3}
    vesicles = test_organelles[:, list(INNER_ORGANELLES).index("vesicle_cloud")] > 0
    found["test_views_with_vesicle_clouds"] = {
        c: round(float(np.mean(vesicles[test.labels == c])), 3) for c in classes
    }
    for name, fit_on, score_on in (
        ("features_rf", train_features, test_features),
        (
            "features_true_organelles_rf",
            np.column_stack([train_features, train_organelles]),
            np.column_stack([test_features, test_organelles]),
        ),
    ):
        forest = fit_forest(fit_on, train.labels, seed=args.seed)
        found[name] = classification_scores(test.labels, forest.predict(score_on), classes=classes)
    lite = replace(get_preset("lite"), view_shape=(shape,) * 3, voxel_size_nm=(voxel,) * 3)
    budget = SupervisedSettings(min_passes=args.cnn_passes, max_passes=args.cnn_passes)
    found["supervised_cnn"] = {}
    for inputs in args.cnn_inputs:
        runs = []
        for seed in range(args.seed, args.seed + args.cnn_seeds):
            config = replace(lite, input_kinds=tuple(inputs.split("+")))
            network = train_supervised_cnn(
                train, config, classes=classes, settings=budget, seed=seed, device="cpu"
            )
            predicted = network.predict(test, device="cpu")
            runs.append(
                {"seed": seed, **classification_scores(test.labels, predicted, classes=classes)}
            )
        found["supervised_cnn"][inputs] = runs
    found["seconds"] = round(time.perf_counter() - started, 1)
    return found


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--views",
        type=view_kind,
        nargs="+",
        default=[view_kind(v) for v in DEFAULT_VIEWS],
        metavar="SHAPE/VOXEL_NM",
        help=f"cubic view kinds to compare (default {' '.join(DEFAULT_VIEWS)})",
    )
    add_held_out_options(p, train=[1000, 1001], test=[1002, 1003])
    p.add_argument(
        "--cnn-passes", type=int, default=4096, help="view passes of each CNN (default 4096)"
    )
    p.add_argument(
        "--cnn-inputs",
        type=input_kinds,
        nargs="+",
        default=["masked_em"],
        metavar="KIND[+KIND]",
        help="the CNN's input channels, one network each: masked_em, em, mask joined by + "
        "(default masked_em, the shipped model's)",
    )
    p.add_argument(
        "--cnn-seeds",
        type=int,
        default=1,
        help="CNNs per input, seeds from --seed (default 1; 0: no CNN)",
    )
    p.add_argument(
        "--voxel-size", type=float, default=64.0, help="nm of the rendered volumes (default 64)"
    )
    args = p.parse_args(argv)
    check_held_out(p, args)
    if args.cnn_passes < 1 or args.cnn_seeds < 0:
        p.error("--cnn-passes must be positive and --cnn-seeds at least 0")
    widest = max(shape * voxel for shape, voxel in args.views) / 1000
    if min(args.extent_um) <= widest:
        p.error(f"--extent-um must exceed the widest field of view, {widest:.2f} µm")
    return args


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the benchmark, print its JSON report and return it."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    report: dict = {
        **report_header("single-view F1 by view shape and voxel size", threads=args.threads),
        "volumes": {
            "voxel_size_nm": args.voxel_size,
            "extent_um": list(args.extent_um),
            "train_seeds": args.seeds_train,
            "test_seeds": args.seeds_test,
            "views_per_class": args.per_class,
        },
        "cnn_passes": args.cnn_passes,
    }
    train = cut_split(args.seeds_train, args.views, args)
    test = cut_split(args.seeds_test, args.views, args)
    report["kinds"] = {
        f"{shape}/{voxel:g}": score_kind(tr, te, shape, voxel, args)
        for (shape, voxel), tr, te in zip(args.views, train, test, strict=True)
    }
    report["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
