""" "What is this cell?": click-to-prediction latency, and how fast a head refits.

Prints one JSON document. Run from the repository root:

    python benchmarks/bench_click.py                      # lite, the napari sample volume
    python benchmarks/bench_click.py --checkpoint model.pt --threads 4

The synthetic napari sample (128 × 256 × 256 voxels at 32 nm, 4 × 8 × 8 µm) is
rendered into memory once. Fragments for clicking are the segments whose
skeleton cable is closest to ``--cable-um`` (10 µm). Each click starts from
an empty embedding store (nothing cached) and runs what a Ctrl-click in
napari runs, :meth:`AnnotationSession.click`: skeletonise the segment around
the clicked voxel, embed a view every µm along it, predict its compartment per
node and its cell type (embeddings averaged over 10 µm) with heads loaded from
files. One click on another segment comes first (warm-up, reported apart).
Figures are the median and the spread over ``--clicks`` clicks, split into
skeletonise / embed / predict.

Refit: after the clicks, every clicked segment is labelled (classes drawn at
random) and ``refit`` is timed per head kind: the fit on the labelled nodes,
the reject calibration and the prediction of every embedded node.

Weights: the shipped ``lite`` model when it is installed, else ``--checkpoint``,
else random weights of ``--preset`` (the timing does not depend on them; the
report says which). The cores may be shared: the load average is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from _common import report_header

from napari_segclr.heads import HEAD_KINDS, fit_head
from napari_segclr.io import Dataset, Volume
from napari_segclr.model import SegclrModel, get_preset, load_checkpoint, model_signature
from napari_segclr.model.shipped import load_shipped_model, shipped_checkpoint_path
from napari_segclr.session import CELL_TYPE, COMPARTMENT, DEFAULT_CLASSES, AnnotationSession
from napari_segclr.skeleton import skeletonize_segment
from napari_segclr.synthetic import Neuropil, NeuropilConfig, render_all, sample_neuropil

#: Segments (by voxel count) skeletonised to find fragments of the asked cable length.
CANDIDATES = 24


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="lite", help="random-weight preset without a model")
    parser.add_argument("--checkpoint", type=Path, help="a model checkpoint (else shipped/random)")
    parser.add_argument("--clicks", type=int, default=5, help="timed clicks (distinct segments)")
    parser.add_argument("--cable-um", type=float, default=10.0, help="fragment cable length")
    parser.add_argument("--shape", type=int, nargs=3, default=(128, 256, 256), help="voxels")
    parser.add_argument("--seed", type=int, default=0, help="synthetic neuropil seed")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--device", default="cpu", help="auto, cpu or cuda")
    return parser.parse_args(argv)


def load_model(args: argparse.Namespace) -> tuple[SegclrModel, str]:
    """The model to time and what it is."""
    if args.checkpoint is not None:
        return load_checkpoint(args.checkpoint)[0], f"checkpoint {args.checkpoint}"
    if args.preset == "lite" and shipped_checkpoint_path().is_file():
        return load_shipped_model()[0], "shipped lite"
    torch.manual_seed(0)
    return SegclrModel(get_preset(args.preset)).eval(), f"random {args.preset} (none shipped)"


def sample_dataset(args: argparse.Namespace) -> tuple[Dataset, np.ndarray]:
    """The napari sample window (or a crop of it) rendered into memory, and its segmentation."""
    sample = sample_neuropil(args.seed).config
    config = NeuropilConfig(
        shape=tuple(args.shape), voxel_size=sample.voxel_size, seed=args.seed, offset=sample.offset
    )
    crop = render_all(Neuropil(config))
    dataset = Dataset(
        Volume(crop.em, config.voxel_size, config.offset, source="sample em"),
        Volume(crop.segmentation, config.voxel_size, config.offset, kind="labels", source="seg"),
    )
    return dataset, crop.segmentation


def fragments(
    dataset: Dataset, segmentation: np.ndarray, n: int, cable_um: float
) -> list[tuple[int, tuple[int, int, int], float]]:
    """``n`` segments whose cable is closest to ``cable_um``: (id, clicked voxel, cable µm)."""
    ids, counts = np.unique(segmentation, return_counts=True)
    largest = [int(s) for s in ids[np.argsort(-counts)] if s != 0][:CANDIDATES]
    found = []
    for sid in largest:
        voxels = np.argwhere(segmentation == sid)
        middle = voxels[np.argmin(np.linalg.norm(voxels - voxels.mean(axis=0), axis=1))]
        seed = tuple(int(v) for v in middle)
        cable = skeletonize_segment(dataset.segmentation, sid, seed_voxel=seed).cable_length
        found.append((sid, seed, cable / 1000))
    found.sort(key=lambda f: abs(f[2] - cable_um))
    return found[:n]


def head_files(model: SegclrModel, folder: Path) -> dict[str, Path]:
    """Heads on random embeddings for both targets: predictions need a head, not a good one."""
    rng = np.random.default_rng(0)
    paths = {}
    for target in (COMPARTMENT, CELL_TYPE):
        classes = np.asarray(DEFAULT_CLASSES[target])
        x = rng.normal(size=(20 * len(classes), model.config.embedding_dim)).astype(np.float32)
        y = np.repeat(classes, 20)
        head = fit_head(x, y, encoder_signature=model_signature(model))
        paths[target] = folder / f"{target}.head.npz"
        head.calibrate_reject(x).save(paths[target])
    return paths


def time_click(
    session: AnnotationSession, sid: int, seed: tuple[int, int, int]
) -> dict[str, float]:
    """One click on an empty store: total, and its skeletonise / embed / predict parts."""
    started = time.perf_counter()
    answers = session.click(sid, seed_voxel=seed)
    total = time.perf_counter() - started
    assert answers[CELL_TYPE].predicted, "the click gave no prediction"
    started = time.perf_counter()
    skeletonize_segment(session.dataset.segmentation, sid, seed_voxel=seed)
    skeleton = time.perf_counter() - started
    rows = session.store.read([sid])
    started = time.perf_counter()
    session.add_embeddings(rows)  # the prediction step alone, on the same rows
    predict = time.perf_counter() - started
    return {
        "total_s": total,
        "skeletonise_s": skeleton,
        "embed_s": max(total - skeleton - predict, 0.0),
        "predict_s": predict,
        "nodes": len(rows),
    }


def summary(values: Sequence[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
    }


def time_refits(session: AnnotationSession, segment_ids: Sequence[int]) -> dict[str, dict]:
    """Label the clicked segments (random classes, two at least) and time each head kind."""
    classes = DEFAULT_CLASSES[COMPARTMENT]
    for i, sid in enumerate(segment_ids):
        session.label([sid], classes[i % 2 if i < 2 else i % len(classes)], target=COMPARTMENT)
    labelled_nodes = int(np.count_nonzero(session.nodes(COMPARTMENT).annotation != ""))
    figures = {}
    for kind in HEAD_KINDS:
        session.head_kind = kind
        times = []
        for _ in range(3):
            started = time.perf_counter()
            session.refit(COMPARTMENT)
            times.append(time.perf_counter() - started)
        figures[kind] = {**summary(times), "labelled_nodes": labelled_nodes}
    return figures


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the benchmark, print its JSON report and return it."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    report: dict = {
        **report_header("click-to-prediction latency and head refit", threads=args.threads),
        "device": args.device,
    }
    model, report["model"] = load_model(args)
    report["views"] = {
        "shape": list(model.config.view_shape),
        "voxel_size_nm": list(model.config.voxel_size_nm),
    }
    dataset, segmentation = sample_dataset(args)
    report["volume"] = {"shape": list(args.shape), "voxel_size_nm": list(dataset.em.voxel_size)}
    chosen = fragments(dataset, segmentation, args.clicks + 1, args.cable_um)
    with tempfile.TemporaryDirectory() as tmp:
        heads = head_files(model, Path(tmp))
        clicks = []
        for i, (sid, seed, _) in enumerate(chosen):
            session = AnnotationSession(
                dataset, model, Path(tmp) / f"click{i}", device=args.device, heads=heads
            )
            clicks.append(time_click(session, sid, seed))
        warm_up, timed = clicks[0], clicks[1:]
        report["fragments_cable_um"] = [round(c, 1) for _, _, c in chosen[1:]]
        report["first_click_s"] = round(warm_up["total_s"], 3)
        report["click"] = {
            key: summary([c[key] for c in timed])
            for key in ("total_s", "skeletonise_s", "embed_s", "predict_s", "nodes")
        }
        session = AnnotationSession(
            dataset, model, Path(tmp) / "refit", device=args.device, heads=heads
        )
        for sid, seed, _ in chosen:
            session.click(sid, seed_voxel=seed)
        report["refit"] = time_refits(session, [sid for sid, _, _ in chosen])
    report["load_average_1min_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
