"""Cell types of real reconstructions: SegCLR embeddings of mask views against morphometrics.

For each data set of ``shared/data/morphology`` a mask-only encoder (preset
``--preset``, "morphology" by default: 33³ views of 16 µm voxels) is trained
contrastively on all its cells for ``--minutes`` (or ``--steps``), without
labels; ``--steps 0`` keeps it untrained (seeded random weights). Then,
for each task, stratified ``--cv``-fold cross-validation over the cells: a
linear head on the embeddings of ``--sites`` random sites per cell,
averaged within R µm along the skeleton (each ``--radius-um``), each test
cell taking the combined prediction of its sites; beside it a random
forest on whole-cell morphometrics of the same cells and folds. Node
compartments (axon / dendrite / apical) are scored per reconstruction type.

Tasks:

- ``scala2019_l4``: ``cell_type`` (8 interneuron types, 66 cells), drawn with a
  fixed radius of 250 nm (the files' radii are unreliable);
- ``allen_celltypes``: ``dendrite_type`` (spiny / aspiny / sparsely spiny) and
  ``cre_class`` among interneurons (Pvalb, Sst, Vip, Htr3a_Ndnf).

Every task keeps at most ``--max-per-class`` random cells of each class; a
data set's encoder is trained on the cells of its first task.

Prints one table per task and the JSON report (also written, with figures, to
``--out`` when given).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from _common import report_header

from napari_segclr.evaluate.morphology import (
    MorphologyEvalConfig,
    RenderConfig,
    evaluate_morphology,
    train_morphology_encoder,
    untrained_morphology_encoder,
)
from napari_segclr.evaluate.morphology_cells import read_table
from napari_segclr.evaluate.morphology_report import format_summary, write_report
from napari_segclr.evaluate.morphology_views import MORPHOLOGY_PRESETS, morphology_preset
from napari_segclr.model import load_checkpoint
from napari_segclr.train import TrainConfig

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SEGCLR_SHARED_DATA", REPO.parent / "shared" / "data"))
INTERNEURONS = ("Pvalb", "Sst", "Vip", "Htr3a_Ndnf")
#: How each data set's cells are drawn.
RENDER = {
    "scala2019_l4": RenderConfig(fixed_radius_nm=250.0),
    "allen_celltypes": RenderConfig(),
}
#: The tasks, as "data set:label column", with their row filters.
TASKS = {
    "scala2019_l4:cell_type": {},
    "allen_celltypes:dendrite_type": {},
    "allen_celltypes:cre_class": {"cre_class": INTERNEURONS},
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DATA / "morphology", help="morphology folder")
    p.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS))
    p.add_argument("--preset", choices=sorted(MORPHOLOGY_PRESETS), default="morphology")
    p.add_argument("--minutes", type=float, default=5.0, help="encoder training per data set")
    p.add_argument(
        "--steps", type=int, help="train this many steps instead of --minutes (0: untrained)"
    )
    p.add_argument("--batch-size", type=int, default=16, help="pairs per training step")
    p.add_argument("--max-path-um", type=float, help="pair distance (default: half a view)")
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--encoders", type=Path, help="keep (and reuse) encoders in this folder")
    p.add_argument("--cv", type=int, default=5, help="cross-validation folds")
    p.add_argument("--radius-um", type=float, nargs="+", default=[0.0, 50.0, 100.0, 200.0])
    p.add_argument("--sites", type=int, default=16, help="sites per cell")
    p.add_argument("--spacing-um", type=float, default=10.0, help="node spacing along the cable")
    p.add_argument("--max-per-class", type=int, default=40, help="at most this many per class")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="write each task's results and figure here")
    return p.parse_args(argv)


def task_table(task: str, args: argparse.Namespace) -> object:
    """The cells of a task: its filter, at most ``--max-per-class`` of each class."""
    name, label = task.split(":")
    return read_table(
        args.data / name / "metadata.csv",
        label=label,
        where=TASKS[task],
        max_per_class=args.max_per_class,
        seed=args.seed,
    )


def encoder_for(task: str, args: argparse.Namespace, folder: Path) -> tuple[object, dict]:
    """The data set's encoder: trained on the cells of ``task`` (no labels), or reused;
    with ``--steps 0``, an untrained one (the reference for what training adds)."""
    name = task.split(":")[0]
    config = morphology_preset(args.preset)
    if args.steps == 0:
        path = folder / f"{name}_{args.preset}_untrained.pt"
        model = untrained_morphology_encoder(
            task_table(task, args), path, config, render=RENDER[name], seed=args.seed
        )
        return model, {"steps": 0, "trained_on": None}
    path = folder / f"{name}_{args.preset}.pt"
    info: dict = {"checkpoint": str(path) if args.encoders else None, "trained_on": task}
    if not path.exists():
        width = max(config.field_of_view_nm)
        started = time.perf_counter()
        training = TrainConfig(
            model=config,
            steps=args.steps or 1,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            max_path_nm=width / 2 if args.max_path_um is None else args.max_path_um * 1000.0,
            jitter_nm=width / 16,
            seed=args.seed,
            checkpoint_every=100,
            device="cpu",
        )
        result = train_morphology_encoder(
            task_table(task, args),
            path,
            training,
            render=RENDER[name],
            minutes=None if args.steps else args.minutes,
        )
        losses = result.losses
        info.update(
            {
                "trained_s": round(time.perf_counter() - started, 1),
                "loss_first_10": round(float(losses[:10].mean()), 3),
                "loss_last_10": round(float(losses[-10:].mean()), 3),
            }
        )
    model, extra = load_checkpoint(path)
    info.update({"steps": extra["step"], "batch_pairs": extra["train_config"]["batch_size"]})
    return model, info


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the benchmark, print its tables and JSON report, and return the report."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    report: dict = {
        **report_header(
            "cell types from mask-view SegCLR embeddings vs morphometrics (SWC cells)",
            threads=args.threads,
        ),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "datasets": {},
    }
    config = MorphologyEvalConfig(
        radii_um=tuple(args.radius_um),
        spacing_um=args.spacing_um,
        sites=args.sites,
        folds=args.cv,
        seed=args.seed,
        device="cpu",
    )
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.encoders or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        encoders: dict[str, tuple[object, dict]] = {}
        for task in args.tasks:
            name = task.split(":")[0]
            if name not in encoders:
                encoders[name] = encoder_for(task, args, folder)
                report["datasets"][name] = {"encoder": encoders[name][1], "tasks": {}}
            result = evaluate_morphology(
                encoders[name][0], task_table(task, args), config=config, render=RENDER[name]
            )
            print(f"\n{name}: {format_summary(result.summary)}", flush=True)
            if args.out:
                write_report(result, args.out / task.replace(":", "_"), force=True)
            report["datasets"][name]["tasks"][task.split(":")[1]] = {
                k: result.summary[k]
                for k in ("classes", "cells", "sampling", "cell_types", "compartments", "timings_s")
            }
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["load_average_1min_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
