"""Labels for embedding rows: whole segments or single nodes, matched to a table's rows."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..exceptions import LabelError, SegmentNotFoundError
from ..store import EmbeddingTable
from ..store.table import as_segment_ids


def select_labelled(
    table: EmbeddingTable,
    segment_ids: Sequence[int] | np.ndarray,
    labels: Sequence[str] | np.ndarray,
    *,
    node_ids: Sequence[float] | np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The rows of ``table`` that the labels name, and their labels.

    Parameters
    ----------
    table
        The embedding rows.
    segment_ids, labels
        (L,) one label per entry.
    node_ids
        (L,) the node an entry labels; NaN (or None for all entries) labels
        every node of the segment.

    Returns
    -------
    rows
        Ascending row indices into ``table``.
    labels
        The class name of each of those rows.

    Raises
    ------
    SegmentNotFoundError
        A labelled segment or node has no row in ``table``.
    LabelError
        A label is missing, or one row gets two different labels.
    """
    segments = as_segment_ids(segment_ids, name="segment_ids")
    names = np.asarray(labels, dtype=object)
    if names.shape != segments.shape:
        raise LabelError(f"{len(names)} labels for {len(segments)} segment ids")
    if pd.isna(names).any():
        raise LabelError(f"label of entry {int(np.flatnonzero(pd.isna(names))[0])} is missing")
    nodes = np.full(len(segments), np.nan) if node_ids is None else np.asarray(node_ids, float)
    if nodes.shape != segments.shape:
        raise LabelError(f"{len(nodes)} node ids for {len(segments)} segment ids")
    given = ~np.isnan(nodes)
    if np.any(nodes[given] % 1 != 0) or np.any(nodes[given] < 0):
        raise LabelError("node ids must be integers >= 0 (or empty to label a whole segment)")
    # Segment ids as small codes: pandas cannot join on every flavour of uint64.
    _, codes = np.unique(np.concatenate([segments, table.segment_id]), return_inverse=True)
    entries = pd.DataFrame(
        {"segment": codes[: len(segments)], "label": names.astype(str), "node_id": nodes}
    )
    rows = pd.DataFrame(
        {"segment": codes[len(segments) :], "node_id": table.node_id, "row": np.arange(len(table))}
    )
    whole = entries[entries["node_id"].isna()].drop(columns="node_id")
    single = entries[entries["node_id"].notna()].astype({"node_id": np.int64})
    matched = pd.concat(
        [
            whole.merge(rows, on="segment", how="left"),
            single.merge(rows, on=["segment", "node_id"], how="left"),
        ]
    )
    unmatched = matched[matched["row"].isna()]
    if len(unmatched):
        first = unmatched.iloc[0]
        where = "" if pd.isna(first["node_id"]) else f"node {int(first['node_id'])} of "
        more = f" (and {len(unmatched) - 1} more labels)" if len(unmatched) > 1 else ""
        segment = segments[np.flatnonzero(codes[: len(segments)] == first["segment"])[0]]
        raise SegmentNotFoundError(f"no embedding for {where}segment {segment}{more}")
    matched = matched.astype({"row": np.int64}).drop_duplicates(["row", "label"])
    conflicts = matched["row"].duplicated(keep=False)
    if conflicts.any():
        row = int(matched.loc[conflicts, "row"].iloc[0])
        found = sorted(matched.loc[matched["row"] == row, "label"])
        raise LabelError(
            f"node {table.node_id[row]} of segment {table.segment_id[row]} has "
            f"conflicting labels {found}"
        )
    matched = matched.sort_values("row")
    return matched["row"].to_numpy(), matched["label"].to_numpy(dtype=str)
