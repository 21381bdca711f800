"""MAE pre-training against training from scratch, for neuron segmentation of fib25 FIB-SEM.

Prints a table (on stderr) and one JSON document (on stdout). Run from the
repository root:

    python benchmarks/bench_mae.py                                  # a few CPU minutes
    python benchmarks/bench_mae.py --preset base --pretrain-steps 20000 \\
        --finetune-steps 10000 --batch-size 32 --device cuda       # the full run, on a GPU

Data (``--data``, 10 nm isotropic FIB-SEM of the Drosophila medulla):

- pre-training, no labels: ``sample1_raw_unlabeled.tif`` (250³) and
  ``validation_raw_unlabeled_z000-255.tif`` (256 × 520 × 520);
- fine-tuning: ``sample2`` raw and ground-truth bodies, slices z 0–119;
- merge threshold: chosen per network on ``sample2`` z 100–119 (fine-tuning
  slices), where it gives the lowest adapted Rand error among ``--thresholds``;
- test: ``sample2`` z 120–159, never trained on. The FFN segmentation of the same
  slices (``sample2_ffn_z000-159.tif``) is scored as a reference.

One MAE is pre-trained per masking ratio (``--mask-ratios``, 0.5 / 0.75 / 0.9 by
default), each for ``--pretrain-steps``. Then, with one fine-tuning budget for
all (``--finetune-steps``, the same seed and so the same tiles in the same
order), an affinity network is fine-tuned from each MAE's encoder and one from
random weights ("scratch"). Each predicts affinities of the test slices
(``predict_affinities``, tiles overlapping by ``--overlap``), which are
agglomerated at its chosen threshold (``agglomerate``) and scored against the
ground truth: variation of information (split, merge; bits) and adapted Rand error
(0 is perfect). The boundary average precision (ranking of 1 − affinity against
the true boundaries between neighbouring voxels) scores the affinities
themselves, before any threshold.

``--pretrain-minutes`` and ``--finetune-minutes`` cap each run's time; a run that
hits its cap stops early and says so (``steps`` in the report), so keep the cap
above the step budget's time when comparing models.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tifffile
import torch
from _common import report_header
from sklearn.metrics import average_precision_score

from napari_segclr.io import Volume
from napari_segclr.mae import (
    PRESETS,
    AffinityModel,
    FinetuneConfig,
    PretrainConfig,
    finetune,
    get_preset,
    labels_to_affinities,
    load_affinity_model,
    pretrain,
)
from napari_segclr.segment import agglomerate, agglomerate_sweep, predict_affinities
from napari_segclr.segment.metrics import adapted_rand_error, variation_of_information

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fib25"
VOXEL_NM = 10.0
UNLABELLED = ("sample1_raw_unlabeled.tif", "validation_raw_unlabeled_z000-255.tif")
RAW, LABELS, FFN = (
    "sample2_raw_z000-159.tif",
    "sample2_labels_z000-159.tif",
    "sample2_ffn_z000-159.tif",
)
TRAIN_Z, THRESHOLD_Z, TEST_Z = (0, 120), (100, 120), (120, 160)
THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DATA, help="the fib25 folder")
    p.add_argument("--preset", choices=sorted(PRESETS), default="small", help="network (small)")
    p.add_argument("--mask-ratios", type=float, nargs="+", default=[0.5, 0.75, 0.9])
    p.add_argument("--pretrain-steps", type=int, default=300, help="per ratio (default 300)")
    p.add_argument("--pretrain-minutes", type=float, help="time cap of each pre-training run")
    p.add_argument("--finetune-steps", type=int, default=150, help="per network (default 150)")
    p.add_argument("--finetune-minutes", type=float, help="time cap of each fine-tuning run")
    p.add_argument("--batch-size", type=int, default=8, help="pre-training tiles/step (8)")
    p.add_argument("--finetune-batch-size", type=int, default=4, help="tiles/step (default 4)")
    p.add_argument("--learning-rate", type=float, default=1e-3, help="both stages (1e-3)")
    p.add_argument(
        "--xy-crop",
        type=int,
        help="use only the first N×N voxels in y and x of sample2 (tests; default: all)",
    )
    p.add_argument(
        "--thresholds",
        type=float,
        nargs="+",
        default=list(THRESHOLDS),
        help="merge thresholds to choose from on z 100–119 (one: used as is; default 0.1 … 0.9)",
    )
    p.add_argument("--overlap", type=float, default=0.25, help="tile overlap in prediction")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--threads", type=int, default=1, help="torch threads on the CPU (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", type=Path, help="keep checkpoints here (default: a temporary one)")
    args = p.parse_args(argv)
    if not all(0 < r < 1 for r in args.mask_ratios):
        p.error("--mask-ratios must lie in (0, 1)")
    if not all(0 <= t <= 1 for t in args.thresholds):
        p.error("--thresholds must lie in [0, 1]")
    if min(args.pretrain_steps, args.finetune_steps, args.batch_size) < 1:
        p.error("steps and batch sizes must be positive")
    return args


def load(
    folder: Path, name: str, z: tuple[int, int] = (0, 1 << 30), xy: int | None = None
) -> Volume:
    """A TIFF of the fib25 folder, slices ``z`` (and the first ``xy`` voxels in y, x), in memory."""
    path = folder / name
    if not path.is_file():
        raise SystemExit(f"{path} is missing: pass --data with the fib25 folder")
    array = tifffile.imread(path)[z[0] : z[1], :xy, :xy]
    kind = "image" if array.dtype == np.uint8 else "labels"
    source = f"{path}[z {z[0]}:{min(z[1], z[0] + len(array))}, y/x :{array.shape[2]}]"
    return Volume(np.ascontiguousarray(array), VOXEL_NM, kind=kind, source=source)


def boundary_average_precision(affinities: np.ndarray, truth: np.ndarray) -> float:
    """Average precision of 1 − affinity for the true boundaries between neighbours."""
    target = labels_to_affinities(truth)
    known = np.ones_like(truth, dtype=bool)
    pairs = labels_to_affinities(known.astype(np.uint8)).astype(bool)  # neighbour exists
    return float(average_precision_score(1 - target[pairs], 1 - affinities[pairs]))


def choose_threshold(
    model: AffinityModel, raw: Volume, truth: np.ndarray, args: argparse.Namespace
) -> tuple[float, dict[str, float]]:
    """The merge threshold of ``args.thresholds`` with the lowest adapted Rand error on
    ``raw``, and the error of each (none computed when there is one threshold)."""
    if len(args.thresholds) == 1:
        return float(args.thresholds[0]), {}
    affinities = predict_affinities(
        raw, model, overlap=args.overlap, batch_size=8, device=args.device
    )
    errors = {
        f"{t:g}": round(adapted_rand_error(truth, segmentation), 4)
        for t, segmentation in agglomerate_sweep(affinities, args.thresholds).items()
    }
    best = min(errors, key=errors.__getitem__)
    return float(best), errors


def score(truth: np.ndarray, segmentation: np.ndarray) -> dict[str, float]:
    split, merge = variation_of_information(truth, segmentation)
    return {
        "voi_split": round(split, 4),
        "voi_merge": round(merge, 4),
        "adapted_rand_error": round(adapted_rand_error(truth, segmentation), 4),
        "segments": len(np.unique(segmentation)),
    }


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the experiment, print the table and the JSON report, and return the report."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    report: dict = {
        **report_header(
            "MAE pre-training vs scratch, affinity segmentation of fib25 sample2",
            threads=args.threads,
        ),
        "device": args.device,
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }
    unlabelled = [load(args.data, name) for name in UNLABELLED]
    train_raw = load(args.data, RAW, TRAIN_Z, args.xy_crop)
    train_labels = load(args.data, LABELS, TRAIN_Z, args.xy_crop)
    threshold_raw = load(args.data, RAW, THRESHOLD_Z, args.xy_crop)
    threshold_truth = np.asarray(load(args.data, LABELS, THRESHOLD_Z, args.xy_crop).array)
    test_raw = load(args.data, RAW, TEST_Z, args.xy_crop)
    truth = np.asarray(load(args.data, LABELS, TEST_Z, args.xy_crop).array)
    ffn = np.asarray(load(args.data, FFN, TEST_Z, args.xy_crop).array)
    report["data"] = {
        "pretraining": [v.source for v in unlabelled],
        "finetuning": train_raw.source,
        "threshold_choice": threshold_raw.source,
        "test": test_raw.source,
        "test_truth_segments": len(np.unique(truth[truth != 0])),
    }
    network = get_preset(args.preset)
    report["network"] = network.to_dict()
    with tempfile.TemporaryDirectory() as scratch:
        workdir = args.workdir or Path(scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        report["pretraining"] = {}
        inits: dict[str, Path | None] = {"scratch": None}
        for ratio in args.mask_ratios:
            config = PretrainConfig(
                model=network,
                mask_ratio=ratio,
                steps=args.pretrain_steps,
                batch_size=args.batch_size,
                learning_rate=args.learning_rate,
                checkpoint_every=args.pretrain_steps,
                seed=args.seed,
                device=args.device,
            )
            path = workdir / f"mae-{ratio:g}.pt"
            result = pretrain(
                unlabelled, config, checkpoint=path, time_limit_s=_seconds(args.pretrain_minutes)
            )
            report["pretraining"][f"{ratio:g}"] = _training_summary(result)
            inits[f"mae {ratio:g}"] = path
        report["finetuning"] = {}
        report["results"] = {}
        for name, init in inits.items():
            config = FinetuneConfig(
                model=network if init is None else None,
                steps=args.finetune_steps,
                batch_size=args.finetune_batch_size,
                learning_rate=args.learning_rate,
                checkpoint_every=args.finetune_steps,
                seed=args.seed,
                device=args.device,
            )
            path = workdir / f"affinity-{name.replace(' ', '-')}.pt"
            result = finetune(
                train_raw,
                train_labels,
                config,
                init=init,
                checkpoint=path,
                time_limit_s=_seconds(args.finetune_minutes),
            )
            report["finetuning"][name] = _training_summary(result)
            model = load_affinity_model(path)
            threshold, errors = choose_threshold(model, threshold_raw, threshold_truth, args)
            tic = time.perf_counter()
            affinities = predict_affinities(
                test_raw, model, overlap=args.overlap, batch_size=8, device=args.device
            )
            predicted_s = time.perf_counter() - tic
            segmentation = agglomerate(affinities, threshold=threshold)
            report["results"][name] = {
                **score(truth, segmentation),
                "threshold": threshold,
                "threshold_choice_are": errors,
                "boundary_average_precision": round(
                    boundary_average_precision(affinities, truth), 4
                ),
                "prediction_s": round(predicted_s, 1),
            }
    report["reference_ffn"] = score(truth, ffn)
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["load_average_1min_end"] = round(os.getloadavg()[0], 2)
    print(table(report), file=sys.stderr)
    print(json.dumps(report, indent=2))
    return report


def table(report: dict) -> str:
    """The results as a text table: one row per network, the FFN last."""
    head = (
        f"{'network':<12} {'VOI split':>9} {'VOI merge':>9} {'ARE':>7} {'bAP':>6} {'segs':>6} "
        f"{'thr':>4}"
    )
    rows = [head, "-" * len(head)]
    for name, r in [*report["results"].items(), ("FFN (ref.)", report["reference_ffn"])]:
        ap = r.get("boundary_average_precision")
        threshold = r.get("threshold")
        rows.append(
            f"{name:<12} {r['voi_split']:>9.3f} {r['voi_merge']:>9.3f} "
            f"{r['adapted_rand_error']:>7.3f} {'' if ap is None else f'{ap:.3f}':>6} "
            f"{r['segments']:>6} {'' if threshold is None else f'{threshold:g}':>4}"
        )
    return "\n".join(rows)


def _training_summary(result) -> dict:
    losses = result.losses
    tail = max(1, len(losses) // 10)
    return {
        "steps": int(result.step),
        "first_loss": round(float(losses[:tail].mean()), 4),
        "last_loss": round(float(losses[-tail:].mean()), 4),
        "seconds": round(result.elapsed_s, 1),
    }


def _seconds(minutes: float | None) -> float | None:
    return None if minutes is None else 60.0 * minutes


if __name__ == "__main__":
    main()
