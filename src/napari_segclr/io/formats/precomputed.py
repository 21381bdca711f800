"""Neuroglancer precomputed volumes, read through tensorstore.

Local directories, ``precomputed://file:///…`` or remote stores
(``precomputed://https://…``, ``gs://…``, ``s3://…``). All scales from the
chosen one (``:key``, default the finest) down are exposed as levels. Voxel
``i`` of a scale is placed at ``(voxel_offset + i) * resolution`` for the
finest scale read, and coarser scales keep their voxels' faces aligned to it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import tensorstore as ts

from ...exceptions import (
    DatasetNotFoundError,
    ShapeMismatchError,
    UnknownFormatError,
    VolumeNotFoundError,
)
from ..source import Source
from ..volume import as_vec3
from .base import Opened, missing_dataset
from .tensorstore_array import TensorStoreArray, error_reason


def root_and_key(source: Source) -> tuple[str, str]:
    """The store URL (ending in "/") and the scale key; ``vol/8_8_8`` means ``vol:8_8_8``."""
    if source.is_url:
        return source.location, source.inner
    path, key = Path(source.location), source.inner
    if not key and not (path / "info").is_file() and (path.parent / "info").is_file():
        path, key = path.parent, path.name
    return path.resolve().as_uri() + "/", key


def open_source(source: Source) -> Opened:
    url, key = root_and_key(source)
    info = _read_info(url, source.spec)
    try:
        scales = info["scales"]
        keys = [str(scale["key"]) for scale in scales]
        # (x, y, z) in the info file; (z, y, x) here.
        resolutions = [np.asarray(scale["resolution"], dtype=float)[::-1] for scale in scales]
        corners = [
            np.asarray(scale.get("voxel_offset", [0, 0, 0]), dtype=float)[::-1] * resolution
            for scale, resolution in zip(scales, resolutions, strict=True)
        ]
        channels = int(info.get("num_channels", 1))
    except (KeyError, TypeError, ValueError):
        raise UnknownFormatError(f"{source.spec}: malformed precomputed info file") from None
    if key and key not in keys:
        raise DatasetNotFoundError(missing_dataset(source, keys, "volume:scale_key"))
    if channels != 1:
        raise ShapeMismatchError(f"{source.spec}: has {channels} channels; only one can be read")
    first = keys.index(key) if key else 0
    levels, sizes, offsets = [], [], []
    for index in range(first, len(scales)):
        spec = {"driver": "neuroglancer_precomputed", "kvstore": url, "scale_index": index}
        try:
            store = ts.open(spec, read=True).result()
        except ValueError as err:
            raise UnknownFormatError(
                f"{source.spec}: unreadable scale {keys[index]} ({error_reason(err)})"
            ) from None
        # Stored axes are (x, y, z, channel): drop the channel, reverse to (z, y, x).
        levels.append(TensorStoreArray(store[ts.d["channel"][0]].T))
        size = resolutions[index]
        shift = corners[index] + (size - resolutions[first]) / 2
        sizes.append(as_vec3(size, f"resolution of {source.spec}"))
        offsets.append(as_vec3(shift, f"voxel_offset of {source.spec}"))
    kind = "labels" if info.get("type") == "segmentation" else "image"
    return Opened(tuple(levels), tuple(sizes), tuple(offsets), True, kind)


def _read_info(url: str, spec: str) -> dict[str, Any]:
    try:
        result = ts.KvStore.open(url).result().read("info").result()
    except ValueError as err:
        raise VolumeNotFoundError(
            f"{spec}: cannot read the precomputed info file ({error_reason(err)})"
        ) from None
    if result.state != "value":
        raise VolumeNotFoundError(f"{spec}: no precomputed info file at {url}info")
    try:
        info = json.loads(bytes(result.value))
    except ValueError:
        raise UnknownFormatError(f"{spec}: the precomputed info file is not JSON") from None
    if not isinstance(info, dict):
        raise UnknownFormatError(f"{spec}: malformed precomputed info file")
    return info
