"""Write a synthetic neuropil to disk: OME-Zarr volumes and CSV ground truth."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from ..exceptions import OutputExistsError
from ..io.write import write_ome_zarr
from .neuropil import Neuropil

#: Files written into the output folder.
VOLUME_NAME = "neuropil.ome.zarr"
TABLES = ("nodes.csv", "cells.csv", "errors.csv")
CONFIG_NAME = "config.json"


def write_neuropil(
    neuropil: Neuropil,
    out: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Render ``neuropil`` chunk by chunk into the folder ``out``.

    Writes ``neuropil.ome.zarr`` (the EM image with OME-Zarr labels
    ``segmentation``, ``cells`` and ``compartments``), the ground-truth tables
    ``nodes.csv``, ``cells.csv`` and ``errors.csv`` (tuples joined with ``;``)
    and ``config.json`` (the configuration that reproduces the volume).

    Parameters
    ----------
    out
        Output folder, created; it must not exist unless ``overwrite``, which
        replaces only the files listed above.
    progress
        Called as ``progress(done, total)`` while the volumes are written.
    """
    folder = Path(out).expanduser()
    if folder.exists() and not overwrite:
        raise OutputExistsError(f"{folder}: already exists; pass overwrite=True to replace it")
    folder.mkdir(parents=True, exist_ok=True)
    volumes = neuropil.volumes()
    write_ome_zarr(
        volumes["em"],
        folder / VOLUME_NAME,
        labels={name: volumes[name] for name in ("segmentation", "cells", "compartments")},
        overwrite=overwrite,
        progress=progress,
    )
    neuropil.nodes().to_csv(folder / "nodes.csv", index=False)
    _joined(neuropil.cell_table(), ["segment_ids"]).to_csv(folder / "cells.csv", index=False)
    _joined(neuropil.errors, ["cell_ids", "nodes"]).to_csv(folder / "errors.csv", index=False)
    config = dataclasses.asdict(neuropil.config)
    (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def _joined(table: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Tuple columns as ``;``-joined text, for CSV."""
    return table.assign(**{c: table[c].map(lambda t: ";".join(map(str, t))) for c in columns})
