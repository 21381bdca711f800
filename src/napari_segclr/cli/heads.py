"""Head commands: fit a classifier on labelled embeddings, predict every node and segment."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from .common import command, non_negative_float, non_negative_int, positive_float, segment_id

# As in ``heads``, whose import (torch) is left to the commands that run.
HEAD_KINDS = ("linear", "mlp", "sngp")
METRICS = ("path", "euclidean")
SCORES = ("dempster_shafer", "entropy", "variance")


def add_commands(sub: argparse._SubParsersAction) -> None:
    for add in (_add_fit_head, _add_predict):
        add(sub)


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1], got {text}")
    return value


def _holdout(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1), got {text}")
    return value


def _spacing_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--spacing-nm",
        type=positive_float,
        help="node spacing of the store in nm, needed to average along the skeleton (path "
        "metric); default: the spacing the store records (imported ZIP releases record none)",
    )


# --- fit-head ---------------------------------------------------------------------


def _add_fit_head(sub: argparse._SubParsersAction) -> None:
    p = command(
        sub,
        "fit-head",
        "Fit a classifier head (linear, residual MLP or SNGP with uncertainty) on the "
        "embeddings of labelled segments or nodes, optionally averaged over a radius first, "
        "and write it to a head file for `predict` and the napari plugin.",
        _fit_head,
    )
    p.add_argument("--store", type=Path, required=True, metavar="PATH", help="embedding store")
    p.add_argument(
        "--labels",
        type=Path,
        required=True,
        metavar="CSV",
        help="labels: columns segment_id,label and optionally node_id (empty: the whole segment)",
    )
    p.add_argument(
        "--out", type=Path, required=True, metavar="HEAD", help="head file to write (.npz)"
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing head file")
    p.add_argument(
        "--kind",
        choices=HEAD_KINDS,
        default="linear",
        help="linear (logistic regression, default), mlp (shallow residual MLP) or sngp "
        "(MLP with a Gaussian-process output whose variance flags unfamiliar inputs)",
    )
    p.add_argument(
        "--radius-um",
        type=non_negative_float,
        default=0.0,
        help="average each node's embedding over its segment's nodes within this radius, µm, "
        "before fitting (cell types: 10-25; default 0: none); `predict` averages alike",
    )
    p.add_argument(
        "--metric",
        choices=METRICS,
        default="path",
        help="distance for --radius-um: path (along the skeleton, default) or euclidean",
    )
    _spacing_option(p)
    p.add_argument(
        "--coverage",
        type=_fraction,
        help="calibrate a reject option on held-out segments (--holdout): its threshold accepts "
        "this fraction of them (e.g. 0.95) and `predict` marks less certain inputs as rejected "
        "(out of distribution); default: no reject option",
    )
    p.add_argument(
        "--holdout",
        type=_holdout,
        default=0.2,
        help="fraction of labelled segments held out for --coverage (default 0.2); the head "
        "is fitted on the rest",
    )
    p.add_argument(
        "--reject-score",
        choices=SCORES,
        help="uncertainty score for --coverage (default: variance for sngp, else dempster_shafer)",
    )
    p.add_argument(
        "--no-balance", action="store_true", help="do not weight classes by inverse frequency"
    )
    p.add_argument("--seed", type=non_negative_int, default=0, help="random seed (default 0)")
    p.set_defaults(parser=p)


def _fit_head(args: argparse.Namespace) -> int:
    from ..aggregate import Aggregation
    from ..exceptions import LabelError, OutputExistsError
    from ..heads import fit_head, select_labelled
    from ..store import EmbeddingStore

    if args.out.exists() and not args.force:  # before any work
        raise OutputExistsError(f"{args.out} exists; pass --force to overwrite it")
    score = args.reject_score or ("variance" if args.kind == "sngp" else "dempster_shafer")
    if args.coverage is not None and score == "variance" and args.kind != "sngp":
        args.parser.error("--reject-score variance needs --kind sngp")
    store = EmbeddingStore.open(args.store)
    labels = _read_labels(args.labels)
    aggregation = Aggregation(args.radius_um, args.metric)
    spacing = _spacing(args, store, aggregation)
    table = store.read(np.unique(labels["segment_id"]))
    table = aggregation.apply(table, spacing_nm=spacing)
    rows, names = select_labelled(
        table, labels["segment_id"], labels["label"], node_ids=labels["node_id"]
    )
    classes = tuple(np.unique(names).tolist())
    train = np.ones(len(rows), bool)
    if args.coverage is not None:
        train = ~_held_out_segments(table.segment_id[rows], names, args.holdout, args.seed)
        if train.all():
            raise LabelError(
                "--coverage holds out whole segments: label at least two segments of a class"
            )
    head = fit_head(
        table.embedding[rows[train]],
        names[train],
        kind=args.kind,
        classes=classes,
        balance=not args.no_balance,
        encoder_signature=_encoder_signature(store),
        seed=args.seed,
        aggregation=aggregation,
    )
    report = f"fitted a {args.kind} head on {train.sum()} labelled nodes of {len(classes)} classes"
    if args.coverage is not None:
        heldout = table.embedding[rows[~train]]
        head = head.calibrate_reject(heldout, coverage=args.coverage, score=score)
        accuracy = float(np.mean(head.predict(heldout).labels == names[~train]))
        report += (
            f"; on {len(heldout)} held-out nodes accuracy {accuracy:.3f}, reject {score} "
            f"above {head.reject.threshold:.4g} (keeps {args.coverage:.0%})"
        )
    head.save(args.out)
    counts = ", ".join(
        f"{c} {n}" for c, n in zip(*np.unique(names, return_counts=True), strict=True)
    )
    print(f"{report}; wrote {args.out}\nlabelled nodes per class: {counts}")
    return 0


def _read_labels(path: Path) -> dict[str, np.ndarray]:
    import pandas as pd

    from ..exceptions import LabelError, VolumeNotFoundError

    if not path.is_file():
        raise VolumeNotFoundError(f"labels file {path} does not exist")
    expected = "columns segment_id,label[,node_id]"
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise LabelError(f"{path} is not a CSV file with {expected}") from error
    missing = [c for c in ("segment_id", "label") if c not in frame.columns]
    if missing:
        raise LabelError(f"labels file {path} lacks {', '.join(missing)}: expected {expected}")
    try:  # Python ints: ids beyond int64 stay exact
        segments = np.array([int(s) for s in frame["segment_id"]], dtype=np.uint64)
    except (TypeError, ValueError, OverflowError):
        raise LabelError(f"labels file {path}: segment_id must hold integer ids") from None
    nodes = np.full(len(frame), np.nan)
    if "node_id" in frame.columns:
        nodes = pd.to_numeric(frame["node_id"], errors="coerce").to_numpy(float)
        if (np.isnan(nodes) & frame["node_id"].notna().to_numpy()).any():
            raise LabelError(f"labels file {path}: node_id must be integers or empty")
    return {"segment_id": segments, "label": frame["label"].to_numpy(object), "node_id": nodes}


def _spacing(args: argparse.Namespace, store: Any, aggregation: Any) -> float | None:
    spacing = args.spacing_nm or store.signature.get("node_spacing_nm")
    if aggregation.radius_um > 0 and aggregation.metric == "path" and spacing is None:
        args.parser.error(
            f"store {store.path} records no node spacing: give --spacing-nm, or --metric euclidean"
        )
    return None if spacing is None else float(spacing)


def _encoder_signature(store: Any) -> str | None:
    model = store.signature.get("model")
    return model if isinstance(model, str) else None


def _held_out_segments(
    segment_ids: np.ndarray, labels: np.ndarray, fraction: float, seed: int
) -> np.ndarray:
    """Mask of rows held out: about ``fraction`` of each class's segments, whole segments,
    so that held-out nodes are no neighbours of training nodes. A class in one segment
    stays in training."""
    import pandas as pd

    frame = pd.DataFrame({"segment_id": segment_ids, "label": labels})
    majority = frame.groupby("segment_id")["label"].agg(lambda s: s.value_counts().index[0])
    rng = np.random.default_rng(seed)
    held = []
    for _, segments in majority.groupby(majority):
        ids = rng.permutation(segments.index.to_numpy())
        n = min(len(ids) - 1, max(1, round(fraction * len(ids))))
        held.append(ids[:n])
    return np.isin(segment_ids, np.concatenate(held))


# --- predict ----------------------------------------------------------------------


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = command(
        sub,
        "predict",
        "Classify every node of an embedding store (or of some segments) with a head written by "
        "`fit-head`: class, probabilities, uncertainty and rejection per node and/or per segment "
        "(node probabilities combined by their normalised geometric mean).",
        _predict,
    )
    p.add_argument("--store", type=Path, required=True, metavar="PATH", help="embedding store")
    p.add_argument(
        "--head", type=Path, required=True, metavar="HEAD", help="head file from `fit-head`"
    )
    p.add_argument(
        "--nodes-csv",
        type=Path,
        metavar="CSV",
        help="write one row per node: segment_id, node_id, z_nm, y_nm, x_nm, label, confidence, "
        "p_<class>..., entropy, dempster_shafer, variance, rejected",
    )
    p.add_argument(
        "--segments-csv",
        type=Path,
        metavar="CSV",
        help="write one row per segment: segment_id, n_nodes, then the same columns",
    )
    p.add_argument(
        "--segments",
        type=segment_id,
        nargs="+",
        metavar="ID",
        help="predict these segments only (default: every segment in the store)",
    )
    _spacing_option(p)
    p.add_argument("--force", action="store_true", help="overwrite existing CSV files")
    p.set_defaults(parser=p)


def _predict(args: argparse.Namespace) -> int:
    from ..exceptions import OutputExistsError, ShapeMismatchError
    from ..heads import combine_segments, load_head
    from ..store import EmbeddingStore

    outputs = [path for path in (args.nodes_csv, args.segments_csv) if path is not None]
    if not outputs:
        args.parser.error("give --nodes-csv and/or --segments-csv")
    for path in outputs:
        if path.exists() and not args.force:
            raise OutputExistsError(f"{path} exists; pass --force to overwrite it")
    store = EmbeddingStore.open(args.store)
    head = load_head(args.head, encoder_signature=_encoder_signature(store))
    if store.dim != head.dim:
        raise ShapeMismatchError(
            f"store {args.store} holds {store.dim}-d embeddings, head {args.head} takes "
            f"{head.dim}-d"
        )
    table = store.read(args.segments)
    if head.aggregation is not None:
        spacing = _spacing(args, store, head.aggregation)
        table = head.aggregation.apply(table, spacing_nm=spacing)
    pred = head.predict(table.embedding)
    segments = combine_segments(pred, table.segment_id)
    if args.nodes_csv is not None:
        _write_csv(_node_keys(table).join(pred.to_frame()), args.nodes_csv)
    if args.segments_csv is not None:
        _write_csv(segments.to_frame(), args.segments_csv)
    print(
        f"predicted {len(pred)} nodes of {len(segments)} segments with a {head.kind} head "
        f"({pred.rejected.sum()} nodes, {segments.rejected.sum()} segments rejected); "
        f"wrote {' and '.join(map(str, outputs))}"
    )
    return 0


def _node_keys(table: Any) -> Any:
    import pandas as pd

    z, y, x = table.position_nm.T
    columns = {"segment_id": table.segment_id, "node_id": table.node_id}
    return pd.DataFrame({**columns, "z_nm": z, "y_nm": y, "x_nm": x})


def _write_csv(frame: Any, path: Path) -> None:
    """Write ``frame`` to ``path`` atomically (a reader never sees half a file)."""
    from ..atomic import write_csv_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    write_csv_atomic(frame, path)
