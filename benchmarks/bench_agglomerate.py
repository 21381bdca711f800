"""The agglomeration alone: true fib25 affinities, blurred and noised, back to a segmentation.

Prints a table on stderr and one JSON document on stdout. Run from the
repository root:

    python benchmarks/bench_agglomerate.py                       # noise 0, 0.1, 0.2, 0.3
    python benchmarks/bench_agglomerate.py --link-thresholds 0.8 0.6 --noise 0.2

``bench_mae.py`` scores networks and agglomeration together. This separates
the two: affinities are made from the ground truth of fib25 sample2 (z 120–159
by default, the MAE benchmark's test slices) with ``labels_to_affinities``,
without links in a membrane of ``--membrane`` voxels each side of a boundary
(the labels are dense; a network sees membranes a few voxels wide), blurred
by a Gaussian of ``--blur`` voxels (networks do not draw sharp
boundaries) and given Gaussian noise of each ``--noise`` standard deviation
(clipped to [0, 1]). Each is segmented as ``agglomerate_sweep`` does it for every
seed / link threshold pair. Per pair the report gives the fragments, the
seconds of the sweep (fragments, graph and every merge, one core), and the
adapted Rand error and VOI at the merge threshold (of ``--thresholds``) with
the lowest error: chosen on the scored slices themselves, a floor rather than
an estimate. The FFN segmentation of the same slices is the reference. A
network whose affinities were as good as a noise level would score no better
than its row.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tifffile
from _common import report_header
from scipy.ndimage import binary_dilation, gaussian_filter

from napari_segclr.mae import labels_to_affinities
from napari_segclr.segment import fragment_graph, merge_fragments, watershed_fragments
from napari_segclr.segment.metrics import adapted_rand_error, variation_of_information

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fib25"
LABELS = "sample2_labels_z000-159.tif"
FFN = "sample2_ffn_z000-159.tif"


def noisy_affinities(
    truth: np.ndarray,
    *,
    membrane: int,
    blur: float,
    noise: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """float32 (3, Z, Y, X) affinities of ``truth``, blurred, noised and clipped to [0, 1].

    The ``membrane`` voxels of each cell nearest another cell have no links
    (affinity 0), as membranes are voxels wide at this resolution.
    """
    if membrane > 0:
        edge = np.zeros(truth.shape, bool)
        for axis in range(3):
            differs = np.diff(truth, axis=axis) != 0
            lo = [slice(None)] * 3
            hi = [slice(None)] * 3
            lo[axis], hi[axis] = slice(None, -1), slice(1, None)
            edge[tuple(lo)] |= differs
            edge[tuple(hi)] |= differs
        if membrane > 1:
            edge = binary_dilation(edge, iterations=membrane - 1)
        truth = np.where(edge, 0, truth)
    affinities = labels_to_affinities(truth).astype(np.float32)
    if blur > 0:
        affinities = np.stack([gaussian_filter(a, blur) for a in affinities])
    if noise > 0:
        affinities += rng.normal(0.0, noise, affinities.shape).astype(np.float32)
    return np.clip(affinities, 0.0, 1.0, out=affinities)


def score(truth: np.ndarray, segmentation: np.ndarray) -> dict[str, float]:
    split, merge = variation_of_information(truth, segmentation)
    return {
        "adapted_rand_error": round(adapted_rand_error(truth, segmentation), 4),
        "voi_split": round(split, 4),
        "voi_merge": round(merge, 4),
        "segments": len(np.unique(segmentation)),
    }


def segment_and_score(
    affinities: np.ndarray, truth: np.ndarray, seed: float, link: float, thresholds: Sequence[float]
) -> dict:
    """Fragments, seconds and the best-threshold scores of one seed / link pair.

    The fragments and their graph are built once, as ``agglomerate_sweep`` does;
    only the best segmentation is kept.
    """
    started = time.perf_counter()
    fragments = watershed_fragments(affinities, seed_threshold=seed, link_threshold=link)
    graph = fragment_graph(fragments, affinities)
    errors, best = {}, None
    for threshold in thresholds:
        segmentation = merge_fragments(*graph, threshold=threshold)[fragments]
        errors[threshold] = adapted_rand_error(truth, segmentation)
        if best is None or errors[threshold] < errors[best[0]]:
            best = threshold, segmentation
    seconds = time.perf_counter() - started
    return {
        "seed_threshold": seed,
        "link_threshold": link,
        "fragments": graph[0],
        "seconds": round(seconds, 1),
        "threshold": best[0],
        "are_by_threshold": {f"{t:g}": round(e, 4) for t, e in errors.items()},
        **score(truth, best[1]),
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DATA, help="the fib25 folder")
    p.add_argument("--z", type=int, nargs=2, default=[120, 160], help="slices (default 120 160)")
    p.add_argument("--xy-crop", type=int, help="keep the first N voxels in y and x")
    p.add_argument(
        "--noise",
        type=float,
        nargs="+",
        default=[0.0, 0.1, 0.2, 0.3],
        help="noise standard deviations (default 0 0.1 0.2 0.3)",
    )
    p.add_argument(
        "--membrane",
        type=int,
        default=1,
        help="voxels of each cell along a boundary with no links (default 1)",
    )
    p.add_argument("--blur", type=float, default=1.0, help="Gaussian blur in voxels (default 1)")
    p.add_argument("--seed-thresholds", type=float, nargs="+", default=[0.5], help="(default 0.5)")
    p.add_argument(
        "--link-thresholds", type=float, nargs="+", default=[0.8, 0.6], help="(default 0.8 0.6)"
    )
    p.add_argument(
        "--thresholds",
        type=float,
        nargs="+",
        default=[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9],
        help="merge thresholds tried (default 0.1 … 0.9)",
    )
    p.add_argument("--seed", type=int, default=0, help="seeds the noise")
    args = p.parse_args(argv)
    if args.z[0] < 0 or args.z[1] <= args.z[0]:
        p.error("--z needs FIRST LAST with 0 <= FIRST < LAST")
    if args.membrane < 0 or args.blur < 0 or min(args.noise) < 0:
        p.error("--membrane, --blur and --noise must be >= 0")
    for name in ("seed_thresholds", "link_thresholds", "thresholds"):
        if not all(0 < t < 1 for t in getattr(args, name)):
            p.error(f"--{name.replace('_', '-')} must lie strictly between 0 and 1")
    return args


def load(folder: Path, name: str, args: argparse.Namespace) -> np.ndarray:
    path = folder / name
    if not path.is_file():
        raise SystemExit(f"{path} is missing: pass --data with the fib25 folder")
    array = tifffile.imread(path)[args.z[0] : args.z[1], : args.xy_crop, : args.xy_crop]
    if not array.size:
        raise SystemExit(f"--z {args.z[0]} {args.z[1]} selects no slices of {path}")
    return np.ascontiguousarray(array)


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the benchmark, print the table and the JSON report, and return the report."""
    args = parse_args(argv)
    truth = load(args.data, LABELS, args)
    report: dict = {
        **report_header("agglomeration of noisy true affinities, fib25 sample2", threads=1),
        "slices": {"z": args.z, "shape": list(truth.shape)},
        "membrane_voxels": args.membrane,
        "blur_voxels": args.blur,
        "reference_ffn": score(truth, load(args.data, FFN, args)),
        "results": [],
    }
    for noise in args.noise:
        rng = np.random.default_rng((args.seed, round(noise * 1e6)))  # the same, run alone or not
        affinities = noisy_affinities(
            truth, membrane=args.membrane, blur=args.blur, noise=noise, rng=rng
        )
        for seed in args.seed_thresholds:
            for link in args.link_thresholds:
                result = segment_and_score(affinities, truth, seed, link, args.thresholds)
                report["results"].append({"noise": noise, **result})
    print(table(report), file=sys.stderr)
    print(json.dumps(report, indent=2))
    return report


def table(report: dict) -> str:
    rows = [
        "noise  seed  link  fragments  seconds  thr   ARE     VOI split  VOI merge  segments",
    ]
    for r in report["results"]:
        rows.append(
            f"{r['noise']:<6g} {r['seed_threshold']:<5g} {r['link_threshold']:<5g} "
            f"{r['fragments']:>9} {r['seconds']:>8} {r['threshold']:<5g} "
            f"{r['adapted_rand_error']:<7} {r['voi_split']:<10} {r['voi_merge']:<10} "
            f"{r['segments']}"
        )
    ffn = report["reference_ffn"]
    rows.append(
        f"FFN (ref.){'':38}{ffn['adapted_rand_error']:<7} {ffn['voi_split']:<10} "
        f"{ffn['voi_merge']:<10} {ffn['segments']}"
    )
    return "\n".join(rows)


if __name__ == "__main__":
    main()
