"""OME-NGFF (OME-Zarr) multiscale image metadata, versions 0.4 and 0.5.

Only the parts that place a (z, y, x) image in space: the axes, and per level
a ``scale`` and ``translation`` (the centre of the level's first voxel), each
level's transforms followed by the multiscale's own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..exceptions import SegclrError, ShapeMismatchError, UnknownFormatError
from .units import nm_per_unit
from .volume import Kind, Vec3, as_vec3

NgffVersion = Literal["0.4", "0.5"]
SPACE_AXES = ("z", "y", "x")


@dataclass(frozen=True)
class Multiscale:
    """One multiscale image: level paths and where each level sits.

    ``keep`` indexes the z, y and x axes among the arrays' axes; ``scales`` and
    ``translations`` are (z, y, x), in nm when ``units_known``.
    """

    paths: tuple[str, ...]
    keep: tuple[int, ...]
    scales: tuple[Vec3, ...]
    translations: tuple[Vec3, ...]
    units_known: bool
    kind: Kind | None


def read_multiscale(attrs: Mapping[str, Any], source: str) -> Multiscale | None:
    """The first multiscale image described by a group's attributes, or None."""
    ome = attrs.get("ome", attrs)
    entries = ome.get("multiscales") if isinstance(ome, Mapping) else None
    if not entries:
        return None
    try:
        return _parse(entries[0], is_label="image-label" in ome, source=source)
    except SegclrError:
        raise
    except (KeyError, IndexError, TypeError, ValueError) as err:
        raise UnknownFormatError(f"{source}: malformed OME-Zarr metadata ({err!r})") from None


def _parse(entry: Mapping[str, Any], *, is_label: bool, source: str) -> Multiscale:
    datasets = entry["datasets"]
    # NGFF 0.1 and 0.2 had no axes: always (t, c, z, y, x), without units.
    axes = entry.get("axes", ["t", "c", "z", "y", "x"])
    names = [a["name"] if isinstance(a, Mapping) else str(a) for a in axes]
    if not set(SPACE_AXES) <= set(names):
        raise ShapeMismatchError(
            f"{source}: OME-Zarr axes are {names}; a volume needs z, y and x axes"
        )
    keep = tuple(names.index(n) for n in SPACE_AXES)
    factors = [
        nm_per_unit(axes[i].get("unit")) if isinstance(axes[i], Mapping) else None for i in keep
    ]
    units_known = all(f is not None for f in factors)
    unit = np.array([f if units_known else 1.0 for f in factors], dtype=float)
    top_scale, top_shift = _transform(entry.get("coordinateTransformations", []), len(names))
    scales, translations = [], []
    for dataset in datasets:
        scale, shift = _transform(dataset.get("coordinateTransformations", []), len(names))
        scale, shift = scale * top_scale, shift * top_scale + top_shift
        scales.append(as_vec3(scale[list(keep)] * unit, f"OME-Zarr scale of {source}"))
        translations.append(as_vec3(shift[list(keep)] * unit, f"OME-Zarr translation of {source}"))
    return Multiscale(
        paths=tuple(str(d["path"]) for d in datasets),
        keep=keep,
        scales=tuple(scales),
        translations=tuple(translations),
        units_known=units_known,
        kind="labels" if is_label else None,
    )


def _transform(items: Sequence[Mapping[str, Any]], ndim: int) -> tuple[np.ndarray, np.ndarray]:
    scale, shift = np.ones(ndim), np.zeros(ndim)
    for item in items:
        if item["type"] == "scale":
            scale = scale * np.asarray(item["scale"], dtype=float)
        elif item["type"] == "translation":
            shift = shift + np.asarray(item["translation"], dtype=float)
    return scale, shift


def multiscale_attrs(
    paths: Sequence[str],
    voxel_sizes: Sequence[Vec3],
    offsets: Sequence[Vec3],
    *,
    name: str,
    kind: Kind,
    version: NgffVersion,
) -> dict[str, Any]:
    """Group attributes for a (z, y, x) multiscale image in nm, NGFF ``version``."""
    multiscale: dict[str, Any] = {
        "name": name,
        "axes": [{"name": n, "type": "space", "unit": "nanometer"} for n in SPACE_AXES],
        "datasets": [
            {
                "path": path,
                "coordinateTransformations": [
                    {"type": "scale", "scale": list(size)},
                    {"type": "translation", "translation": list(offset)},
                ],
            }
            for path, size, offset in zip(paths, voxel_sizes, offsets, strict=True)
        ],
    }
    if version == "0.4":
        attrs: dict[str, Any] = {"multiscales": [{"version": "0.4", **multiscale}]}
        if kind == "labels":
            attrs["image-label"] = {"version": "0.4"}
        return attrs
    ome: dict[str, Any] = {"version": "0.5", "multiscales": [multiscale]}
    if kind == "labels":
        ome["image-label"] = {}
    return {"ome": ome}
