"""N5 datasets (``container.n5/dataset``), read through tensorstore's ``n5`` driver.

N5 lists axes fastest first, (x, y, z) for a volume; they are reversed here so
the array reads as (z, y, x), as in other N5 readers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import tensorstore as ts

from ...exceptions import DatasetNotFoundError, UnknownFormatError
from ..source import Source
from .base import Opened, missing_dataset, n5_voxel_size
from .tensorstore_array import TensorStoreArray, error_reason


def open_source(source: Source) -> Opened:
    path = Path(source.location, source.inner)
    attrs = _attributes(path, source.spec)
    if "dimensions" not in attrs:  # a group, or nothing
        names = _datasets(Path(source.location))
        if source.inner or len(names) != 1:
            raise DatasetNotFoundError(missing_dataset(source, names, "container.n5/name"))
        return open_source(Source(source.spec, source.location, names[0]))
    try:
        store = ts.open({"driver": "n5", "kvstore": path.resolve().as_uri() + "/"}, read=True)
        array = TensorStoreArray(store.result().T)
    except ValueError as err:
        raise UnknownFormatError(
            f"{source.spec}: not a readable N5 dataset ({error_reason(err)})"
        ) from None
    return Opened.single(array, n5_voxel_size(attrs))


def _attributes(path: Path, spec: str) -> dict[str, Any]:
    file = path / "attributes.json"
    if not file.is_file():
        return {}
    try:
        attrs = json.loads(file.read_text())
    except (OSError, ValueError):
        raise UnknownFormatError(f"{spec}: unreadable N5 attributes in {file}") from None
    return attrs if isinstance(attrs, dict) else {}


def _datasets(root: Path) -> list[str]:
    """Datasets under an N5 group: folders whose attributes give dimensions."""
    names = []
    for folder, subfolders, files in os.walk(root):
        subfolders.sort()
        if "attributes.json" not in files:
            continue
        try:
            attrs = json.loads((Path(folder) / "attributes.json").read_text())
        except (OSError, ValueError):
            continue
        if isinstance(attrs, dict) and "dimensions" in attrs:
            subfolders.clear()  # a dataset's subfolders hold its blocks: do not walk them
            if Path(folder) != root:
                names.append(Path(folder).relative_to(root).as_posix())
    return names
