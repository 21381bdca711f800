"""Write a volume as an OME-Zarr image, one chunk at a time."""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..exceptions import OutputExistsError, SegclrError
from .ome import NgffVersion, multiscale_attrs
from .source import parse_source
from .volume import Volume

Progress = Callable[[int, int], None]


def write_ome_zarr(
    volume: Volume,
    path: str | os.PathLike[str],
    *,
    labels: Mapping[str, Volume] | None = None,
    chunks: Sequence[int] = (64, 64, 64),
    overwrite: bool = False,
    progress: Progress | None = None,
    ngff_version: NgffVersion = "0.5",
) -> None:
    """Write ``volume`` (all its levels) as an OME-Zarr image at ``path``.

    The volume is read and written chunk by chunk, so a lazily computed volume
    larger than memory can be written. The image reopens with ``open_volume``
    at the same voxel size and offset, and as labels if ``volume.kind`` is.

    Parameters
    ----------
    labels
        Segmentations of the image, written as OME-Zarr labels under
        ``path/labels/<name>`` (they reopen as ``open_volume("path/labels/<name>")``).
        Chunks of the image and its labels are written in lockstep, so a
        rendered source computes each chunk once.
    chunks
        Chunk shape (z, y, x) in voxels of the written arrays.
    overwrite
        Replace an existing Zarr store at ``path``; never a store the volume
        is read from, nor anything that is not a Zarr store.
    progress
        Called as ``progress(done, total)`` after each chunk.
    ngff_version
        "0.5" (Zarr v3) or "0.4" (Zarr v2, for older viewers).

    Examples
    --------
    >>> write_ome_zarr(open_volume("raw.tif", voxel_size=8), "raw.ome.zarr")  # doctest: +SKIP
    """
    import zarr  # here, not at the top: keeps zarr out of `import napari_segclr.io`

    chunk = _chunk_shape(chunks)
    if ngff_version not in ("0.4", "0.5"):
        raise ValueError(f"ngff_version must be '0.4' or '0.5', got {ngff_version!r}")
    labels = dict(labels or {})
    out = Path(path).expanduser()
    for source in (volume, *labels.values()):
        _prepare_output(out, source, overwrite=overwrite)
    zarr_format = 2 if ngff_version == "0.4" else 3
    root = zarr.open_group(str(out), mode="w-", zarr_format=zarr_format)
    name = out.name.removesuffix(".zarr").removesuffix(".ome")
    targets = _add_image(root, volume, name, chunk, ngff_version)
    if labels:
        group = root.create_group("labels")
        names = {"labels": list(labels)}
        group.attrs.update(names if ngff_version == "0.4" else {"ome": {"version": "0.5", **names}})
        for label_name, label in labels.items():
            targets += _add_image(
                group.create_group(label_name), label, label_name, chunk, ngff_version
            )
    # Level by level, box by box, every array in turn: sources rendered on
    # demand then compute each box once for the image and all its labels.
    jobs = sorted(
        (level, b, t, box)
        for t, (level, array, _) in enumerate(targets)
        for b, box in enumerate(_chunk_boxes(array.shape, array.chunks))
    )
    for done, (_, _, t, box) in enumerate(jobs, start=1):
        _, array, source = targets[t]
        array[box] = np.asarray(source[box])
        if progress is not None:
            progress(done, len(jobs))


def _add_image(
    group: Any, volume: Volume, name: str, chunk: tuple[int, int, int], version: NgffVersion
) -> list[tuple[int, Any, Any]]:
    """Create ``volume``'s multiscale arrays in ``group``: (level, array, source) each."""
    paths = [str(i) for i in range(len(volume.levels))]
    group.attrs.update(
        multiscale_attrs(
            paths,
            volume.level_voxel_sizes,
            volume.level_offsets,
            name=name,
            kind=volume.kind,
            version=version,
        )
    )
    layout = (
        {"chunk_key_encoding": {"name": "v2", "separator": "/"}}
        if version == "0.4"
        else {"dimension_names": ("z", "y", "x")}
    )
    targets = []
    for level, (path, source) in enumerate(zip(paths, volume.levels, strict=True)):
        shape = tuple(int(n) for n in source.shape)
        level_chunk = tuple(max(1, min(c, n)) for c, n in zip(chunk, shape, strict=True))
        array = group.create_array(
            path, shape=shape, dtype=source.dtype, chunks=level_chunk, fill_value=0, **layout
        )
        targets.append((level, array, source))
    return targets


def _chunk_shape(chunks: Sequence[int]) -> tuple[int, int, int]:
    values = tuple(int(c) for c in chunks)
    if len(values) != 3 or min(values) < 1:
        raise ValueError(f"chunks must be three positive integers (z, y, x), got {chunks!r}")
    return values  # type: ignore[return-value]


def _chunk_boxes(shape: tuple[int, ...], chunk: tuple[int, ...]) -> Iterator[tuple[slice, ...]]:
    """The chunk grid's boxes, so that each write fills exactly one stored chunk."""
    starts = [range(0, n, c) for n, c in zip(shape, chunk, strict=True)]
    for corner in itertools.product(*starts):
        yield tuple(slice(a, min(a + c, n)) for a, c, n in zip(corner, chunk, shape, strict=True))


def _prepare_output(out: Path, volume: Volume, *, overwrite: bool) -> None:
    """Refuse to write into the input; clear an existing store only when asked."""
    source = _local_source(volume.source)
    target = out.resolve()
    if source is not None and (
        target == source or target in source.parents or source in target.parents
    ):
        raise OutputExistsError(f"{out}: is or holds the input {volume.source}; write elsewhere")
    if not out.exists():
        return
    if not overwrite:
        raise OutputExistsError(f"{out}: already exists; pass overwrite=True to replace it")
    markers = ("zarr.json", ".zgroup", ".zarray", ".zattrs")
    if out.is_dir() and (not any(out.iterdir()) or any((out / m).is_file() for m in markers)):
        shutil.rmtree(out)
        return
    raise OutputExistsError(f"{out}: exists and is not a Zarr store; not replacing it")


def _local_source(spec: str) -> Path | None:
    try:
        source = parse_source(spec)
    except SegclrError:
        return None
    return None if source.is_url else source.path.resolve()
