"""Affinities of a whole volume on a Dask cluster, block by block, resumable.

::

    from napari_segclr.cluster import local_client
    from napari_segclr.mae import load_affinity_model
    from napari_segclr.segment import predict_affinities_distributed, segment_volume

    model = load_affinity_model("affinities.pt")
    with local_client(8) as client:              # or distributed.Client("tcp://host:8786")
        affinities = predict_affinities_distributed(
            "/data/em.zarr", model, "/data/affinities.zarr", client=client
        )
    seg = segment_volume(em, model, affinities=affinities, out="seg.ome.zarr")

The volume (at the model's voxel size) is cut into blocks, one zarr chunk of
the output each. The network is registered once as a worker plugin; a task
opens the EM itself, lazily, reads its block with a halo of half a tile around
it, predicts the affinities of that crop tile by tile (blended as in
:func:`~napari_segclr.segment.predict_affinities`), writes the block's own
voxels into its chunk (no two tasks write one chunk) and records the block
with an atomic marker in ``<out>/ledger/``. A worker that dies mid-block
leaves no marker and the block runs again; a job run again skips the recorded
blocks. Agglomeration runs afterwards on one machine (:func:`segment_volume`
with ``affinities=``).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from ..exceptions import OutputExistsError, ShapeMismatchError
from .tiling import (
    VOXEL_SIZE_TOLERANCE,
    AffinityPredictor,
    Overlap,
    Progress,
    model_level,
    patch_shape,
    predict_affinities,
)

#: Output blocks (z, y, x) in voxels: one zarr chunk and one task each.
DEFAULT_BLOCK = (64, 256, 256)
_FORMAT = "napari-segclr/affinities"


@dataclass(frozen=True)
class _Job:
    """What every block task shares (no weights, no arrays)."""

    em: str
    em_voxel_size: tuple[float, float, float] | None
    out: str
    plugin: str
    block: tuple[int, int, int]
    halo: tuple[int, int, int]
    patch: tuple[int, int, int]
    overlap: Overlap
    batch_size: int
    device: str
    tolerance: float


def predict_affinities_distributed(
    em: str | os.PathLike[str],
    model: AffinityPredictor,
    out: str | os.PathLike[str],
    *,
    client: Any = None,
    em_voxel_size: Sequence[float] | None = None,
    block: Sequence[int] = DEFAULT_BLOCK,
    overlap: Overlap = 0.25,
    batch_size: int = 4,
    device: str = "auto",
    voxel_size_tolerance: float = VOXEL_SIZE_TOLERANCE,
    progress: Progress | None = None,
) -> Any:
    """Affinities (3, Z, Y, X) of the EM at ``em`` into a zarr array at ``out``, on a cluster.

    Parameters
    ----------
    em
        The EM volume's path or URL, valid on the workers (as for
        :func:`~napari_segclr.io.open_volume`); its level at the model's voxel
        size is used.
    model
        An affinity network (e.g. from ``napari_segclr.mae.load_affinity_model``).
    out
        The zarr array to write, on a file system the workers share. An array
        left by an unfinished run of the same job is completed (its recorded
        blocks are skipped); anything else there raises ``OutputExistsError``.
    client
        A ``distributed.Client``; default: a local cluster with a worker per
        core, closed at the end.
    em_voxel_size
        The EM's voxel size (z, y, x) in nm where its file does not say.
    block
        Output block shape in voxels; a task holds the block and a halo of
        half a tile around it.
    overlap, batch_size, device, voxel_size_tolerance
        As for :func:`~napari_segclr.segment.predict_affinities`; ``device``
        is resolved on each worker.
    progress
        ``progress(done, total)`` in blocks as they finish; an exception it
        raises cancels the job (finished blocks stay recorded).

    Returns
    -------
    The zarr array, complete.
    """
    from ..cluster import LEDGER, cluster_client, recorded_partitions, run_with_model
    from ..embed import resolve_device
    from ..io import open_volume
    from ..model import weights_digest

    block3 = _block_shape(block)
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    resolve_device(device, check=False)
    level = model_level(
        open_volume(os.fspath(em), kind="image", voxel_size=em_voxel_size),
        model,
        tolerance=voxel_size_tolerance,
    )
    patch = patch_shape(model)
    job = _Job(
        em=os.fspath(em),
        em_voxel_size=None if em_voxel_size is None else tuple(map(float, em_voxel_size)),
        out=str(Path(out).expanduser().absolute()),
        plugin=f"napari-segclr-affinities-{uuid.uuid4().hex}",
        block=block3,
        halo=tuple(-(-p // 2) for p in patch),  # type: ignore[arg-type]
        patch=patch,
        overlap=overlap,
        batch_size=batch_size,
        device=device,
        tolerance=voxel_size_tolerance,
    )
    identity = {
        "format": _FORMAT,
        "em": job.em,
        "shape": list(level.shape),
        "voxel_size_nm": list(level.voxel_size),
        "block": list(block3),
        "overlap": overlap,
        "model": weights_digest(model),
    }
    array = _open_output(Path(job.out), level.shape, block3, identity)
    (Path(job.out) / LEDGER).mkdir(exist_ok=True)
    done_before = recorded_partitions(job.out)
    blocks = [b for b in _block_starts(level.shape, block3) if _digest(b) not in done_before]
    total = len(blocks)
    if progress is not None:
        progress(0, total)
    if not blocks:
        return array
    done = []

    def finished(info: dict[str, Any]) -> None:
        done.append(info)
        if progress is not None:
            progress(len(done), total)

    with cluster_client(client) as active:
        run_with_model(active, model, job.plugin, _block_task, job, blocks, finished)
    return array


def _block_task(job: _Job, start: tuple[int, int, int]) -> dict[str, Any]:
    """Predict one block with its halo, write its voxels, record it (runs on a worker)."""
    from distributed import get_worker

    from ..cluster import record_partition, thread_cached
    from ..embed import resolve_device
    from ..io import open_volume

    started = time.perf_counter()
    worker = get_worker()
    device = resolve_device(job.device)
    model = worker.plugins[job.plugin].model(device)
    level = thread_cached(
        "data",
        f"{job.em} {job.em_voxel_size}",
        lambda: model_level(
            open_volume(job.em, kind="image", voxel_size=job.em_voxel_size),
            model,
            tolerance=job.tolerance,
        ),
    )
    shape = np.asarray(level.shape)
    lo = np.asarray(start)
    hi = np.minimum(lo + job.block, shape)
    read_lo = np.maximum(lo - job.halo, 0)
    read_hi = np.minimum(hi + job.halo, shape)
    # A crop narrower than a tile (a thin last block) reaches further back instead.
    read_lo = np.maximum(np.minimum(read_lo, read_hi - job.patch), 0)
    crop = level.read(tuple(slice(a, b) for a, b in zip(read_lo, read_hi, strict=True)))
    affinities = predict_affinities(
        crop, model, overlap=job.overlap, batch_size=job.batch_size, device=str(device)
    )
    inner = tuple(slice(a, b) for a, b in zip(lo - read_lo, hi - read_lo, strict=True))
    out = zarr.open_array(job.out, mode="r+")
    out[(slice(None), *(slice(a, b) for a, b in zip(lo, hi, strict=True)))] = affinities[
        (slice(None), *inner)
    ]
    info = {
        "block": [int(v) for v in start],
        "seconds": time.perf_counter() - started,
        "worker": worker.address,
    }
    record_partition(Path(job.out), _digest(start), info)
    return info


def _open_output(
    path: Path, shape: tuple[int, ...], block: tuple[int, ...], identity: dict[str, Any]
) -> zarr.Array:
    """The output array: created, or reopened if an unfinished run of this job left it."""
    if path.exists():
        try:
            array = zarr.open_array(str(path), mode="r+")
            same = dict(array.attrs).get("napari_segclr") == identity
        except Exception:  # not a zarr array at all
            same = False
        if not same:
            raise OutputExistsError(
                f"{path}: exists and is not an unfinished affinity job of this model and "
                "volume; remove it or choose another path"
            )
        return array
    array = zarr.create_array(
        str(path),
        shape=(3, *shape),
        chunks=(3, *block),
        dtype="float32",
        fill_value=np.nan,  # a block never written stays visible
    )
    array.attrs["napari_segclr"] = identity
    return array


def _block_starts(shape: Sequence[int], block: Sequence[int]) -> list[tuple[int, int, int]]:
    axes = [range(0, n, b) for n, b in zip(shape, block, strict=True)]
    return [(int(z), int(y), int(x)) for z in axes[0] for y in axes[1] for x in axes[2]]


def _digest(start: Sequence[int]) -> str:
    return "block-" + "-".join(str(int(v)) for v in start)


def _block_shape(block: Sequence[int]) -> tuple[int, int, int]:
    values = tuple(block)
    if len(values) != 3 or not all(
        isinstance(v, int | np.integer) and not isinstance(v, bool) and v > 0 for v in values
    ):
        raise ShapeMismatchError(f"block must be three positive voxel counts, got {block!r}")
    return tuple(int(v) for v in values)  # type: ignore[return-value]
