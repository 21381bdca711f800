"""Train the SegCLR checkpoint that ships with napari-segclr (the ``lite`` preset).

The model learns from synthetic neuropil only: several volumes rendered in
memory, one per seed, with skeletons from their ground truth. Seeds 1000 and
above are reserved for evaluation and never trained on (the script refuses
them). The loss of every step goes to a CSV log; the full-precision run
checkpoint (resumable with ``--resume``) goes to ``--run-dir``, and the compact
float16 copy that the package loads to ``src/napari_segclr/weights/``. Then
two heads are fitted on that copy's embeddings of labelled training seeds
(compartment per view, cell type over 10 µm along the skeleton, both SNGP with
a reject threshold) and saved beside it, so that the first click on a segment
gets an answer.

    python examples/train_shipped_model.py --steps 14000          # the real run
    python examples/train_shipped_model.py --minutes 2 --weights /tmp/lite.pt  # a trial
    python examples/train_shipped_model.py --heads-only           # refit the heads

With ``--minutes`` the number of steps is set from the speed of a few
calibration steps (the cosine schedule needs to know it in advance); rendering
the volumes is not counted.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from napari_segclr.evaluate import EvaluationConfig, fit_synthetic_heads
from napari_segclr.model import load_checkpoint
from napari_segclr.model.shipped import SHIPPED_HEAD_FILES, SHIPPED_PRESET, save_compact_checkpoint
from napari_segclr.runs import read_log
from napari_segclr.synthetic import NeuropilConfig
from napari_segclr.train import TrainConfig, TrainingData, train

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = REPO / "src" / "napari_segclr" / "weights" / "segclr_lite.pt"
#: Seeds from here on are kept for evaluation.
FIRST_EVALUATION_SEED = 1000
CALIBRATION_STEPS = 6


def main() -> int:
    args = parse_args()
    bad = [s for s in args.seeds if not 0 <= s < FIRST_EVALUATION_SEED]
    if bad:
        sys.exit(f"seeds {bad} are reserved for evaluation (use 0–{FIRST_EVALUATION_SEED - 1})")
    if not args.heads_only:
        train_encoder(args)
    fit_heads(args)
    return 0


def train_encoder(args: argparse.Namespace) -> None:
    """Train (or resume) the run and write the compact checkpoint."""
    args.run_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = args.run_dir / "segclr_lite_run.pt"
    log = args.run_dir / "loss.csv"
    if checkpoint.exists() and not args.resume:
        sys.exit(f"{checkpoint} exists: continue it with --resume or choose another --run-dir")

    started = time.perf_counter()
    data = []
    for seed in args.seeds:
        neuropil = NeuropilConfig(
            shape=tuple(args.shape), voxel_size=tuple(args.voxel_size), seed=seed
        )
        data.append(TrainingData.synthetic(neuropil))
        print(f"seed {seed}: {len(data[-1].skeletons)} segments with skeletons", flush=True)
    print(f"rendered {len(data)} volumes in {time.perf_counter() - started:.0f} s", flush=True)

    if args.steps is not None:
        config = make_config(args, steps=args.steps)
    elif args.resume and checkpoint.exists():
        config = make_config(args, steps=load_checkpoint(checkpoint)[1]["train_config"]["steps"])
    else:
        rate = calibrate(data, make_config(args, steps=CALIBRATION_STEPS), args.workers)
        steps = max(1, int(rate * args.minutes * 60))
        print(f"calibration: {rate:.3f} steps/s → {steps} steps in {args.minutes} min", flush=True)
        config = make_config(args, steps=steps)

    def report(update) -> None:
        if update.step % args.print_every == 0 or update.step == update.total:
            print(
                f"step {update.step}/{update.total} loss {update.loss:.4f} "
                f"lr {update.learning_rate:.2e} {update.steps_per_s:.3f} steps/s",
                flush=True,
            )

    result = train(
        data,
        config,
        checkpoint=checkpoint,
        resume=args.resume,
        workers=args.workers,
        progress=report,
        log=log,
    )
    losses = read_log(log)["loss"].to_numpy()
    extra = {
        "trained_on": "synthetic neuropil",
        "train_config": config.to_dict(),
        "data": [d.provenance for d in data],
        "evaluation_seeds": f">= {FIRST_EVALUATION_SEED}",
        "steps": result.step,
        "final_loss_mean_last_100": float(np.mean(losses[-100:])),
        "training_s": result.elapsed_s,
    }
    args.weights.parent.mkdir(parents=True, exist_ok=True)
    save_compact_checkpoint(args.weights, result.model, extra=extra)
    size_mb = args.weights.stat().st_size / 2**20
    print(f"steps/s {result.steps_per_s:.3f}; loss by tenths of the run: {curve(losses)}")
    print(f"wrote {args.weights} ({size_mb:.1f} MB), run checkpoint {checkpoint}, log {log}")


def fit_heads(args: argparse.Namespace) -> None:
    """Fit the shipped heads on the compact checkpoint's embeddings of labelled training seeds.

    The first half of the seeds fits them, the rest sets their reject thresholds;
    the compact (float16) weights make the embeddings, so the heads carry the
    signature of the model users load.
    """
    if len(args.seeds) < 2:
        sys.exit("fitting the heads needs two seeds or more (fit, then calibrate)")
    if not args.weights.is_file():
        sys.exit(f"{args.weights} does not exist: train the model first (without --heads-only)")
    started = time.perf_counter()
    model, _ = load_checkpoint(args.weights)
    half = (len(args.seeds) + 1) // 2
    config = EvaluationConfig(
        views_per_class=args.head_views_per_class, nodes_per_type=args.head_nodes_per_type
    )
    heads = fit_synthetic_heads(model, args.seeds[:half], args.seeds[half:], config)
    for target, head in heads.items():
        path = args.weights.with_name(SHIPPED_HEAD_FILES[target])
        head.save(path)
        print(f"wrote {path}: {head.kind} head, classes {', '.join(head.classes)}", flush=True)
    print(f"heads fitted in {time.perf_counter() - started:.0f} s", flush=True)


def make_config(args: argparse.Namespace, *, steps: int) -> TrainConfig:
    return TrainConfig(
        model=SHIPPED_PRESET,
        steps=steps,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        seed=args.seed,
        max_path_nm=args.max_path_nm,
        checkpoint_every=args.checkpoint_every,
        device=args.device,
    )


def calibrate(data: list[TrainingData], config: TrainConfig, workers: int) -> float:
    """Steps per second of this config on this machine (the first step is not counted)."""
    with tempfile.TemporaryDirectory() as tmp:
        seen: list[float] = []

        def clock(update) -> None:
            seen.append(time.perf_counter())

        train(
            data, config, checkpoint=Path(tmp) / "calibration.pt", workers=workers, progress=clock
        )
    return (len(seen) - 1) / (seen[-1] - seen[0])


def curve(losses: np.ndarray) -> str:
    parts = np.array_split(losses, min(10, len(losses)))
    return " ".join(f"{part.mean():.3f}" for part in parts)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    budget = p.add_mutually_exclusive_group()
    budget.add_argument(
        "--minutes", type=float, help="training time budget in minutes (resuming: the first run's)"
    )
    budget.add_argument("--steps", type=int, help="number of steps")
    p.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=list(range(100, 108)),
        help="synthetic volumes to train on, one per seed, all < 1000 (default 100–107)",
    )
    p.add_argument(
        "--shape",
        type=int,
        nargs=3,
        default=(160, 256, 256),
        help="voxels per volume (default 160 256 256: 10 × 16 × 16 µm at 64 nm)",
    )
    p.add_argument(
        "--voxel-size", type=float, nargs=3, default=(64.0, 64.0, 64.0), help="nm (default 64)"
    )
    p.add_argument("--batch-size", type=int, default=32, help="pairs per step (default 32)")
    p.add_argument("--learning-rate", type=float, default=1e-3, help="peak rate (default 1e-3)")
    p.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    p.add_argument(
        "--max-path-nm",
        type=float,
        default=1500.0,
        help="largest distance along the skeleton between a pair's views, nm (default 1500; "
        "against 4000 over 14,000 steps: the same probe, a higher OOD AUROC in evaluate)",
    )
    p.add_argument("--checkpoint-every", type=int, default=100, help="steps (default 100)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    p.add_argument("--workers", type=int, default=1, help="view-cutting threads (default 1)")
    p.add_argument("--print-every", type=int, default=10, help="print the loss every N steps")
    p.add_argument(
        "--run-dir",
        type=Path,
        default=REPO / "runs" / "shipped_lite",
        help="folder of the resumable run checkpoint and the loss log",
    )
    p.add_argument(
        "--resume", action="store_true", help="continue the run in --run-dir (same settings)"
    )
    p.add_argument(
        "--weights", type=Path, default=WEIGHTS, help=f"compact checkpoint (default {WEIGHTS})"
    )
    p.add_argument(
        "--heads-only",
        action="store_true",
        help="only fit the heads (beside --weights) on the checkpoint --weights already holds",
    )
    p.add_argument(
        "--head-views-per-class",
        type=int,
        default=400,
        help="compartment views per class for the heads (default 400)",
    )
    p.add_argument(
        "--head-nodes-per-type",
        type=int,
        default=200,
        help="skeleton nodes per cell type and seed for the cell-type head (default 200)",
    )
    args = p.parse_args()
    if not (args.heads_only or args.resume) and args.minutes is None and args.steps is None:
        p.error("give the training budget: --minutes or --steps")
    return args


if __name__ == "__main__":
    raise SystemExit(main())
