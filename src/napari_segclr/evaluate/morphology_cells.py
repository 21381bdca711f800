"""Metadata tables of reconstructed cells: which cells, which labels, checked before any work.

A table is a CSV with a ``file`` column (SWC paths relative to the CSV) and
label columns, like ``morphology/*/metadata.csv`` of the shared data. Rows
can be filtered by column values (``where``), rows without a label are left
out, and every listed SWC file must exist: problems surface as one-line
errors before any cell is read.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..exceptions import LabelError, MorphologyFormatError
from ..synthetic import Cell, read_morphology_table

Progress = Callable[[int, int], None]


@dataclass(frozen=True, eq=False)
class MorphologyTable:
    """The rows of a metadata table that are kept, and the label column.

    Attributes
    ----------
    path
        The CSV file.
    frame
        The kept rows; the index is each row's position in the CSV (0-based).
    label
        The label column, or None (cells without labels, e.g. to train an encoder).
    dropped_unlabelled
        Rows left out because their label is empty.
    where
        The row filter applied: accepted values (as text) by column.
    """

    path: Path
    frame: pd.DataFrame
    label: str | None = None
    dropped_unlabelled: int = 0
    where: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def labels(self) -> np.ndarray:
        """(n,) the label of each kept row, as strings."""
        if self.label is None:
            raise LabelError(f"{self.path}: no label column was chosen")
        return self.frame[self.label].astype(str).to_numpy()

    @property
    def files(self) -> list[str]:
        """The SWC file of each kept row, as written in the table."""
        return [str(f) for f in self.frame["file"]]

    def read_cells(
        self,
        *,
        min_radius_nm: float,
        fixed_radius_nm: float | None = None,
        progress: Progress | None = None,
    ) -> list[Cell]:
        """Read the kept rows' SWC files (see :func:`~napari_segclr.synthetic.read_swc`).

        ``cell.cell_type`` is the label (the file name without a label column);
        every column of the row is in ``cell.attributes``.
        """
        cells = []
        for done, row in enumerate(self.frame.index, start=1):
            (cell,) = read_morphology_table(
                self.path,
                rows=[int(row)],
                cell_type_column=self.label or "file",
                min_radius_nm=min_radius_nm,
                fixed_radius_nm=fixed_radius_nm,
            )
            cells.append(cell)
            if progress is not None:
                progress(done, len(self.frame))
        return cells

    def describe(self) -> dict[str, object]:
        """Where the cells come from, as JSON-able values."""
        return {
            "table": str(self.path),
            "label": self.label,
            "where": {k: list(v) for k, v in self.where.items()},
            "cells": len(self.frame),
            "dropped_unlabelled": self.dropped_unlabelled,
        }


def read_table(
    path: str | os.PathLike[str],
    *,
    label: str | None = None,
    where: Mapping[str, Sequence[str]] | None = None,
    max_per_class: int | None = None,
    seed: int = 0,
) -> MorphologyTable:
    """Read and check a metadata table of SWC cells.

    Parameters
    ----------
    path
        CSV with a ``file`` column (SWC paths relative to the CSV).
    label
        Column holding each cell's class; rows where it is empty are left out.
    where
        Keep only rows whose ``column`` value (as text) is one of the given
        values, for every column named.
    max_per_class
        Keep at most this many cells of each class, drawn at random (``seed``).

    Raises
    ------
    MorphologyFormatError
        The table is missing or unreadable, lacks a named column, lists an SWC
        file that does not exist, or keeps no rows.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise MorphologyFormatError(f"metadata table {path} does not exist")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else "empty"
        raise MorphologyFormatError(f"{path}: not a readable CSV table ({reason})") from None
    where = {str(k): tuple(str(v) for v in values) for k, values in (where or {}).items()}
    for column in ("file", *([label] if label else []), *where):
        if column not in frame.columns:
            columns = ", ".join(map(str, frame.columns))
            raise MorphologyFormatError(f"{path}: no column {column!r}; the columns are {columns}")
    for column, values in where.items():
        frame = frame[frame[column].astype(str).isin(values)]
    dropped = 0
    if label:
        empty = frame[label].isna() | (frame[label].astype(str).str.strip() == "")
        dropped = int(empty.sum())
        frame = frame[~empty]
    if frame.empty:
        conditions = "; ".join(f"{k} in {list(v)}" for k, v in where.items()) or "no filter"
        raise MorphologyFormatError(f"{path}: no labelled rows are left ({conditions})")
    for row, name in zip(frame.index, frame["file"], strict=True):
        if not (path.parent / str(name)).is_file():
            raise MorphologyFormatError(
                f"{path}: line {int(row) + 2}: SWC file {name} does not exist"
            )
    if max_per_class is not None:
        if label is None:
            raise ValueError("max_per_class needs a label column")
        if max_per_class < 1:
            raise ValueError(f"max_per_class must be a positive integer, got {max_per_class}")
        rng = np.random.default_rng(seed)
        keep = [
            rng.choice(group.index.to_numpy(), size=min(len(group), max_per_class), replace=False)
            for _, group in frame.groupby(frame[label].astype(str), sort=True)
        ]
        frame = frame.loc[np.sort(np.concatenate(keep))]
    return MorphologyTable(path, frame, label, dropped, where)


def parse_where(items: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """``["COLUMN=VALUE[,VALUE…]", …]`` as a mapping of column to accepted values."""
    where: dict[str, tuple[str, ...]] = {}
    for item in items:
        column, sep, values = item.partition("=")
        accepted = tuple(v.strip() for v in values.split(",") if v.strip())
        if not sep or not column.strip() or not accepted:
            raise ValueError(f"a filter must read COLUMN=VALUE[,VALUE...], got {item!r}")
        where[column.strip()] = where.get(column.strip(), ()) + accepted
    return where


def check_classes(labels: np.ndarray, *, what: str, folds: int | None = None) -> tuple[str, ...]:
    """The sorted classes of ``labels``, checked to train and score a classifier.

    Every class needs 2 cells, and for ``folds``-fold cross-validation enough
    that each fold's training part keeps 2 and each fold can test one.

    Raises
    ------
    LabelError
        Fewer than two classes, or a class with too few cells.
    """
    names, counts = np.unique(np.asarray(labels, dtype=str), return_counts=True)
    if len(names) < 2:
        found = f"only {str(names[0])!r}" if len(names) else "none"
        raise LabelError(f"{what}: classifying needs at least two classes, found {found}")
    if folds is None:
        needed = 2
        reason = "every class needs at least 2"
    else:
        # Each fold tests at least one cell of a class and at most ceil(n / folds), leaving
        # n - ceil(n / folds) to train on: at least 2 from n = 3 on (n = 4 for 2 folds).
        needed = max(folds, 4 if folds == 2 else 3)
        reason = f"{folds}-fold cross-validation needs at least {needed} per class"
    small = counts < needed
    if small.any():
        name, count = str(names[small][0]), int(counts[small][0])
        raise LabelError(
            f"{what}: class {name!r} has {count} cell{'s' if count != 1 else ''}; {reason} "
            "(leave it out with a filter)"
        )
    return tuple(str(n) for n in names)
