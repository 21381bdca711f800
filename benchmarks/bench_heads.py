"""Speed and quality of the classifier heads, and speed of radius aggregation.

Prints one JSON document. Run from the repository root, on one core:

    taskset -c 0 python benchmarks/bench_heads.py
    python benchmarks/bench_heads.py --train-sizes 1000 --predict-rows 10000 --repeats 3

The napari plugin refits a head on every annotation, so each kind must fit on
10,000 labelled 64-d embeddings and predict 100,000 nodes in under a second
on one CPU core. Speed bought with a useless head is no speed: each fit is
scored on a synthetic task, a Gaussian mixture of K classes in D dimensions
where every class is a mixture of three sub-clusters (so a linear head cannot
be perfect), with a scikit-learn logistic regression as the reference. The
uncertainty scores are scored by how well they tell test points from points
of sub-clusters never seen in training, drawn twice as far out (AUROC; 0.5 is
chance).

Aggregation is timed on a forest of random branched skeletons with nodes
1 µm apart: the mean over each node's neighbours within R along the skeleton
(given skeletons, and rebuilt from the nodes alone) and in space.

Timings are medians over repeats of wall time and of this process's CPU time;
on a shared machine the CPU time is the fairer figure.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from _common import report_header
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from napari_segclr.aggregate import aggregate_embeddings
from napari_segclr.heads import HEAD_KINDS, HeadOptions, fit_head
from napari_segclr.skeleton import Skeleton
from napari_segclr.store import EmbeddingTable

#: What the plugin needs: seconds to fit on 10,000 rows and to predict 100,000.
BAR_S = 1.0
SUB_CLUSTERS = 3


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kinds", nargs="+", choices=HEAD_KINDS, default=list(HEAD_KINDS))
    p.add_argument("--train-sizes", type=int, nargs="+", default=[1000, 10_000])
    p.add_argument("--predict-rows", type=int, default=100_000)
    p.add_argument("--test-rows", type=int, default=20_000, help="rows scored for accuracy")
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--classes", type=int, default=6)
    p.add_argument("--separation", type=float, default=0.6, help="scale of the sub-cluster centres")
    p.add_argument(
        "--steps", type=int, help="mini-batch steps of mlp and sngp (default: the heads' default)"
    )
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--aggregate-nodes", type=int, default=100_000)
    p.add_argument("--nodes-per-segment", type=int, default=1000)
    p.add_argument("--radius-um", type=float, default=10.0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def mixture(n: int, rng: np.random.Generator, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points of a mixture: class y, sub-cluster s around ``centres[y, s]``, unit noise."""
    n_classes, n_sub, dim = centres.shape
    y = rng.integers(0, n_classes, n)
    s = rng.integers(0, n_sub, n)
    x = centres[y, s] + rng.normal(size=(n, dim))
    return x.astype(np.float32), np.char.add("class", y.astype(str))


def timed(run: Callable[[], object], repeats: int) -> tuple[object, dict]:
    """The last result of ``run`` and the medians of its wall and CPU seconds."""
    walls, cpus = [], []
    result = None
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        result = run()
        cpus.append(time.process_time() - cpu)
        walls.append(time.perf_counter() - wall)
    return result, {
        "wall_s": round(float(np.median(walls)), 4),
        "cpu_s": round(float(np.median(cpus)), 4),
    }


def auroc(familiar: np.ndarray, novel: np.ndarray) -> float:
    truth = np.r_[np.zeros(len(familiar)), np.ones(len(novel))]
    return round(float(roc_auc_score(truth, np.r_[familiar, novel])), 4)


def bench_heads(args: argparse.Namespace, rng: np.random.Generator) -> dict:
    centres = args.separation * rng.normal(size=(args.classes, SUB_CLUSTERS, args.dim))
    unseen = 2 * args.separation * rng.normal(size=(args.classes, SUB_CLUSTERS, args.dim))
    train_x, train_y = mixture(max(args.train_sizes), rng, centres)
    test_x, test_y = mixture(args.test_rows, rng, centres)
    novel_x, _ = mixture(args.test_rows, rng, unseen)
    predict_x, _ = mixture(args.predict_rows, rng, centres)
    options = HeadOptions() if args.steps is None else HeadOptions(steps=args.steps)
    # The first fit of a process pays for lazy initialisation: reported, not in the medians.
    wall = time.perf_counter()
    fit_head(train_x[:100], train_y[:100], kind="sngp", options=options)
    results: dict = {"cold_first_fit_wall_s": round(time.perf_counter() - wall, 3), "sizes": []}
    for n in args.train_sizes:
        x, y = train_x[:n], train_y[:n]
        reference = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        accuracy = float(np.mean(reference.fit(x, y).predict(test_x) == test_y))
        entry: dict = {"train_rows": n, "reference_logistic_regression_accuracy": accuracy}
        for kind in args.kinds:
            seeds = iter(range(args.repeats))
            head, fit_time = timed(
                lambda kind=kind, x=x, y=y, seeds=seeds: fit_head(
                    x, y, kind=kind, seed=next(seeds)
                ),
                args.repeats,
            )
            _, predict_time = timed(lambda head=head: head.predict(predict_x), args.repeats)
            test, novel = head.predict(test_x), head.predict(novel_x)
            figures = {
                "fit": fit_time,
                f"predict_{args.predict_rows}": predict_time,
                "accuracy": round(float(np.mean(test.labels == test_y)), 4),
                "novel_auroc_dempster_shafer": auroc(test.dempster_shafer, novel.dempster_shafer),
                "novel_auroc_entropy": auroc(test.entropy, novel.entropy),
            }
            if kind == "sngp":
                figures["novel_auroc_variance"] = auroc(test.variance, novel.variance)
            entry[kind] = figures
        results["sizes"].append(entry)
    return results


def random_forest(n_segments: int, n_nodes: int, rng: np.random.Generator) -> list[Skeleton]:
    """Branched skeletons with nodes 1 µm apart: walks that turn slowly and branch 3 % of steps."""
    skeletons = []
    for segment in range(n_segments):
        branch = rng.random(n_nodes) < 0.03
        parents = np.arange(-1, n_nodes - 1)
        parents[branch] = (rng.random(branch.sum()) * np.flatnonzero(branch)).astype(int)
        parents[0] = -1
        turns = rng.normal(scale=0.3, size=(n_nodes, 3))
        nodes = np.zeros((n_nodes, 3))
        heading = np.zeros((n_nodes, 3))
        heading[0] = [0, 0, 1]
        nodes[0] = rng.uniform(0, 200_000, 3)
        for i in range(1, n_nodes):  # setup, not timed: a walk is sequential
            direction = heading[parents[i]] + turns[i]
            heading[i] = direction / np.linalg.norm(direction)
            nodes[i] = nodes[parents[i]] + 1000.0 * heading[i]
        skeletons.append(Skeleton(segment + 1, nodes, parents, np.full(n_nodes, 200.0)))
    return skeletons


def bench_aggregation(args: argparse.Namespace, rng: np.random.Generator) -> dict:
    n_segments = max(1, args.aggregate_nodes // args.nodes_per_segment)
    skeletons = random_forest(n_segments, args.nodes_per_segment, rng)
    table = EmbeddingTable(
        np.concatenate([np.full(len(s), s.segment_id, np.uint64) for s in skeletons]),
        np.concatenate([np.arange(len(s)) for s in skeletons]),
        np.concatenate([s.nodes for s in skeletons]),
        rng.normal(size=(n_segments * args.nodes_per_segment, args.dim)).astype(np.float32),
    )
    by_id = {s.segment_id: s for s in skeletons}
    runs = {
        "path_with_skeletons": {"metric": "path", "skeletons": by_id},
        "path_from_nodes": {"metric": "path", "spacing_nm": 1000.0},
        "euclidean": {"metric": "euclidean"},
    }
    report: dict = {
        "nodes": len(table),
        "segments": n_segments,
        "radius_um": args.radius_um,
        "node_spacing_nm": 1000.0,
    }
    repeats = max(1, min(args.repeats, 3))
    for name, options in runs.items():
        _, report[name] = timed(
            lambda options=options: aggregate_embeddings(
                table, radius_um=args.radius_um, **options
            ),
            repeats,
        )
    return report


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the benchmark, print its JSON report and return it."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    report: dict = {
        **report_header("classifier heads and radius aggregation", threads=args.threads),
        "cpu_affinity": sorted(os.sched_getaffinity(0)),
        "task": {
            "dim": args.dim,
            "classes": args.classes,
            "sub_clusters": SUB_CLUSTERS,
            "separation": args.separation,
            "test_rows": args.test_rows,
        },
        "repeats": args.repeats,
        "head_options": (
            HeadOptions() if args.steps is None else HeadOptions(steps=args.steps)
        ).to_dict(),
    }
    report["heads"] = bench_heads(args, rng)
    report["aggregation"] = bench_aggregation(args, rng)
    largest = report["heads"]["sizes"][-1]
    report["bar"] = {
        "seconds_at_most": BAR_S,
        "fit_rows": largest["train_rows"],
        "predict_rows": args.predict_rows,
        "met_cpu": {
            kind: largest[kind]["fit"]["cpu_s"] <= BAR_S
            and largest[kind][f"predict_{args.predict_rows}"]["cpu_s"] <= BAR_S
            for kind in args.kinds
        },
    }
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["load_average_1min_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
