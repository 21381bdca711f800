"""Embed a whole volume on a Dask cluster, into one embedding store, safely under faults.

::

    from napari_segclr.cluster import DatasetSpec, embed_distributed, local_client

    data = DatasetSpec("/data/em.zarr", "/data/seg.zarr")
    with local_client(8) as client:                   # or distributed.Client("tcp://host:8786")
        result = embed_distributed(data, model, "/data/embeddings.zarr", client=client)

How a job runs:

1. **Plan** (driver and cluster). The skeletons (given, skeletonised from the
   segmentation on the driver, or, for a synthetic neuropil, built from its
   ground-truth nodes that lie on their segment, as for training data,
   gathered block by block on the workers) are resampled on the workers into
   view points exactly as :func:`~napari_segclr.embed.embed_segments` does, so
   node ids mean the same in both.
2. **Partition.** The points inside the volumes are cut into partitions: runs
   of segments (``"segments"``) or spatial chunks (``"chunks"``: every point
   whose centre falls in a chunk's core, so each point is in exactly one
   partition). A partition is named by a digest of its (segment, node) keys.
3. **Embed.** The model is registered once as a worker plugin: every worker,
   including one that joins or restarts later, receives the weights once and
   builds the model once; tasks carry only their points. A worker opens the
   volumes itself, lazily, from their spec (paths or a
   :class:`~napari_segclr.synthetic.NeuropilConfig`), and reads whatever its
   views need, across the chunk's faces too (the halo is half a view). It
   skips the nodes the store already holds, appends its rows every
   ``append_rows`` rows (each append one atomic part of the store), and then
   records the partition with an atomic marker in ``<store>/ledger/``.

Faults: a worker that dies mid-partition leaves committed parts and no marker;
the scheduler runs the partition again elsewhere, and ``missing()`` skips the
rows already committed, so none is stored twice. A driver that dies leaves the
markers of finished partitions: running the job again plans again (the plan is
deterministic) and runs only unrecorded partitions. Should a worker thought
dead still commit rows another has committed, readers keep the first commit
of each node and compaction drops the other.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
import pandas as pd
import torch
from dask.config import set as dask_config
from dask.system import CPU_COUNT
from distributed import Client, LocalCluster, WorkerPlugin, as_completed, get_worker

from .embed import (
    MAX_PARTS,
    EmbedResult,
    Progress,
    StoreLike,
    embed_views,
    embedding_signature,
    resolve_device,
    select_skeletons,
)
from .exceptions import SegmentNotFoundError, ShapeMismatchError
from .io import Dataset, Volume, open_dataset
from .io.volume import as_voxel_size
from .model import SegclrModel, load_checkpoint
from .skeleton import Skeleton, SkeletonParams, resample
from .store import EmbeddingStore
from .store.table import as_segment_ids
from .synthetic import Neuropil, NeuropilConfig
from .train import nodes_on_segment, skeletons_from_nodes
from .views import ViewPoints, ViewSpec

T = TypeVar("T")
PartitionKind = Literal["segments", "chunks"]
PARTITION_KINDS = ("segments", "chunks")
#: Folder inside the store holding one marker file per finished partition.
LEDGER = "ledger"
# Planning tasks per worker thread: enough to balance uneven ones.
_PLAN_TASKS_PER_THREAD = 4
# Edge in voxels of the blocks of a synthetic neuropil planned at once: a block's
# render holds about 20 bytes a voxel (140 MB), and each worker thread keeps the
# cells grown for its last blocks.
_PLAN_BLOCK = 192
# Voxels rendered around a planning block: a node's nearest voxel, one voxel on.
_MARGIN = 2
#: Most voxels of a volume a task holds in memory (its points' box and halo): 64 Mi,
#: e.g. a 6 µm chunk and its halo at 28 nm; larger boxes are read view by view.
_HALO_VOXELS = 2**26
_NODE_COLUMNS = ("cell_id", "node", "parent", "z_nm", "y_nm", "x_nm", "radius_nm", "segment_id")


# ----------------------------------------------------------------------------- data


@dataclass(frozen=True)
class DatasetSpec:
    """Where workers open the EM and its segmentation: paths or URLs, and voxel sizes.

    Paths must be valid on the workers (absolute, on a shared file system, or
    URLs); arguments as for :func:`~napari_segclr.io.open_dataset`.
    """

    em: str
    segmentation: str
    em_voxel_size: tuple[float, float, float] | None = None
    seg_voxel_size: tuple[float, float, float] | None = None

    def __post_init__(self) -> None:
        for name in ("em", "segmentation"):
            value = getattr(self, name)
            if not isinstance(value, str | os.PathLike) or not os.fspath(value):
                raise ValueError(f"DatasetSpec.{name} must be a path or URL, got {value!r}")
            object.__setattr__(self, name, os.fspath(value))
        for name in ("em_voxel_size", "seg_voxel_size"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, as_voxel_size(value, f"DatasetSpec.{name}"))

    def open(self) -> Dataset:
        """The dataset, opened lazily."""
        return open_dataset(
            self.em,
            self.segmentation,
            em_voxel_size=self.em_voxel_size,
            seg_voxel_size=self.seg_voxel_size,
        )


@dataclass(frozen=True)
class _Synthetic:
    """A synthetic neuropil as a data source: volumes rendered lazily, chunk by chunk."""

    config: NeuropilConfig

    def open(self) -> Dataset:
        volumes = _neuropil(self.config).volumes()
        return Dataset(volumes["em"], volumes["segmentation"])


Source = DatasetSpec | _Synthetic
_thread_cache = threading.local()


def thread_cached(slot: str, key: str, make: Callable[[], T]) -> T:
    """``make()``, kept in the calling thread's ``slot`` for its next tasks with the same ``key``.

    Per thread, because a synthetic neuropil's caches are not thread-safe; one
    object a slot, to bound the memory a render cache holds.
    """
    if not hasattr(_thread_cache, "held"):
        _thread_cache.held = {}
    held = _thread_cache.held
    if slot not in held or held[slot][0] != key:
        held[slot] = (key, make())
    return held[slot][1]


def _neuropil(config: NeuropilConfig) -> Neuropil:
    return thread_cached("data", repr(config), lambda: Neuropil(config))


def _open_cached(source: Source) -> Dataset:
    if isinstance(source, _Synthetic):
        return source.open()  # cheap: the neuropil behind it is cached
    return thread_cached("data", repr(source), source.open)


def _store_cached(path: str, signature: dict[str, Any]) -> EmbeddingStore:
    """The store opened for appending, once per thread: it keeps its committed parts open."""
    key = json.dumps(signature, sort_keys=True)
    return thread_cached(
        "store", f"{path} {key}", lambda: EmbeddingStore.open(path, signature=signature, mode="a")
    )


class _Held:
    """A lazy array with one box of it held in memory: reads inside the box cost nothing.

    Reads elsewhere go to the array, so a view reaching past the box is still
    right, only slower. The held voxels are read-only.
    """

    def __init__(self, array: Any, start: np.ndarray, data: np.ndarray) -> None:
        self._array = array
        self._start = start
        self._stop = start + np.asarray(data.shape)
        data.setflags(write=False)
        self._data = data

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self._array.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self._array.dtype)

    def __getitem__(self, key: Any) -> np.ndarray:
        # Volumes read crops as three slices with bounds; anything else reads the array.
        crop = isinstance(key, tuple) and len(key) == 3
        crop = crop and all(isinstance(k, slice) and k.step is None for k in key)
        if crop and None not in [b for k in key for b in (k.start, k.stop)]:
            start = np.array([k.start for k in key])
            stop = np.array([k.stop for k in key])
            if np.all(start >= self._start) and np.all(stop <= self._stop):
                return self._data[tuple(map(slice, start - self._start, stop - self._start))]
        return np.asarray(self._array[key])


def _with_halo(source: Source, dataset: Dataset, points: ViewPoints, spec: ViewSpec) -> Dataset:
    """The dataset with the voxels its views of ``points`` read held in memory.

    The box of the points, grown by half a view (the halo: views at its faces
    see their context), is read once, instead of crop by crop; the volumes keep
    their geometry, so the views are the very same. Multiscale volumes (views
    may read a coarser level) and boxes over ``_HALO_VOXELS`` are left lazy.
    """
    volumes = (dataset.em, dataset.segmentation)
    reach = np.asarray(spec.field_of_view_nm) / 2 + np.asarray(spec.voxel_size_nm)
    boxes = []
    for volume in volumes:
        margin = 2 * np.asarray(volume.voxel_size)  # resampling taps, centre snapping
        box = volume.box_nm(
            points.centers_nm.min(axis=0) - reach - margin,
            points.centers_nm.max(axis=0) + reach + margin,
        )
        start = np.clip([b.start for b in box], 0, volume.shape)
        stop = np.clip([b.stop for b in box], 0, volume.shape)
        if len(volume.levels) > 1 or np.any(stop <= start) or np.prod(stop - start) > _HALO_VOXELS:
            return dataset
        boxes.append((start, stop))
    if isinstance(source, _Synthetic):
        # One render gives both (one grid); the render cache would hold only part of it.
        box = tuple(map(slice, *boxes[0]))
        crop = _neuropil(source.config).render(box)
        held = (crop.em, crop.segmentation)
    else:
        held = tuple(
            v.read(tuple(map(slice, a, b))) for v, (a, b) in zip(volumes, boxes, strict=True)
        )
    return Dataset(
        *(
            replace(v, array=_Held(v.array, a, data), levels=(), level_voxel_sizes=())
            for v, (a, _), data in zip(volumes, boxes, held, strict=True)
        )
    )


# ----------------------------------------------------------------------------- partitions


@dataclass(frozen=True, eq=False)
class Partition:
    """A unit of work: view points sorted by (segment id, node id), and their digest.

    The digest names the partition in the store's ledger; it depends only on
    the keys, so a job planned again finds its finished partitions.
    """

    points: ViewPoints

    def __len__(self) -> int:
        return len(self.points)

    @cached_property
    def digest(self) -> str:
        keys = self.points.segment_ids.tobytes() + self.points.node_ids.tobytes()
        return hashlib.sha256(keys).hexdigest()[:32]


def partition_points(
    points: ViewPoints,
    *,
    by: PartitionKind = "chunks",
    chunk_nm: float | Sequence[float] = 6144.0,
    max_views: int = 4096,
    origin_nm: Sequence[float] = (0.0, 0.0, 0.0),
) -> list[Partition]:
    """Cut view points into partitions, each point into exactly one.

    Parameters
    ----------
    points
        The view points (e.g. of resampled skeletons).
    by
        "segments": runs of the points in (segment id, node id) order, so
        partitions hold whole segments but at their ends. "chunks": the points
        whose centres fall in each cube of a grid of ``chunk_nm`` cells from
        ``origin_nm`` (half-open cells: a centre on a face belongs to the
        upper chunk).
    chunk_nm
        Chunk edge in nm, one number or (z, y, x).
    max_views
        Most points in a partition; larger runs or chunks are split evenly.
    origin_nm
        A corner of the chunk grid (e.g. the volume's lower corner).
    """
    by = _partition_kind(by)
    chunk = _positive_nm(chunk_nm, "chunk_nm")
    _count(max_views, "max_views", minimum=1)
    order = np.lexsort((points.node_ids, points.segment_ids))
    sorted_points = points[order]
    if by == "segments":
        groups = [np.arange(len(sorted_points))] if len(sorted_points) else []
    else:
        origin = np.broadcast_to(np.asarray(origin_nm, dtype=np.float64), (3,))
        cells = np.floor((sorted_points.centers_nm - origin) / chunk).astype(np.int64)
        inverse = np.unique(cells, axis=0, return_inverse=True)[1].reshape(-1)
        members = np.argsort(inverse, kind="stable")  # keeps (segment, node) order in a chunk
        groups = np.split(members, np.flatnonzero(np.diff(inverse[members])) + 1)
    partitions = []
    for group in groups:
        pieces = np.array_split(group, -(-len(group) // max_views))
        partitions += [Partition(sorted_points[piece]) for piece in pieces if len(piece)]
    return partitions


def recorded_partitions(store: StoreLike) -> frozenset[str]:
    """Digests of the partitions the store's ledger records as finished."""
    folder = _store_path(store) / LEDGER
    if not folder.is_dir():
        return frozenset()
    with os.scandir(folder) as entries:
        names = [e.name for e in entries if e.name.endswith(".json") and e.name[0] != "."]
    return frozenset(name.removesuffix(".json") for name in names)


def record_partition(store: Path, digest: str, info: dict[str, Any]) -> None:
    """Write a partition's marker atomically: a reader sees all of it or none."""
    folder = store / LEDGER
    temporary = folder / f".{digest}.{uuid.uuid4().hex}.tmp"
    temporary.write_text(json.dumps(info))
    os.replace(temporary, folder / f"{digest}.json")


# ----------------------------------------------------------------------------- workers


class ModelPlugin(WorkerPlugin):
    """A network on every worker: its weights arrive once, it is moved once per device.

    Registered on the scheduler, so workers that start later (or restart after
    a crash) receive it too. Tasks find it by name in ``worker.plugins``.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        self.network = model.cpu().eval()
        self._models: dict[torch.device, Any] = {}
        self._lock: threading.Lock | None = None

    def setup(self, worker: Any) -> None:
        # One intra-op thread per task thread: worker threads (or processes)
        # already use the cores, and more threads than cores slow small networks.
        torch.set_num_threads(1)
        self._lock = threading.Lock()
        self._models = {}

    def teardown(self, worker: Any) -> None:
        self._models = {}

    def model(self, device: torch.device) -> Any:
        """The network on ``device``, in eval mode and channels-last 3D, moved on first use."""
        with self._lock:
            if device not in self._models:
                self._models[device] = self._placed(device)
            return self._models[device]

    def _placed(self, device: torch.device) -> Any:
        model = copy.deepcopy(self.network)
        return model.to(device, memory_format=torch.channels_last_3d).eval()


@dataclass(frozen=True)
class _Job:
    """What every partition task shares (small: no weights, no arrays)."""

    source: Source
    store: str
    signature: dict[str, Any]
    plugin: str
    device: str
    batch_size: int
    loader_threads: int
    append_rows: int


def _embed_partition(job: _Job, partition: Partition) -> dict[str, Any]:
    """Embed a partition's missing nodes into the store, then record it (runs on a worker)."""
    started = time.perf_counter()
    worker = get_worker()
    device = resolve_device(job.device)
    model = worker.plugins[job.plugin].model(device)
    dataset = _open_cached(job.source)
    store = _store_cached(job.store, job.signature)
    points = partition.points
    todo = store.missing(points.segment_ids, points.node_ids)
    if todo.any():
        dataset = _with_halo(job.source, dataset, points[todo], ViewSpec.from_config(model.config))
    batches = embed_views(
        dataset,
        model,
        points[todo],
        batch_size=job.batch_size,
        device=device,
        workers=job.loader_threads,
    )
    added = 0
    pending: list[tuple[ViewPoints, np.ndarray]] = []
    for batch, embeddings in batches:
        pending.append((batch, embeddings))
        if sum(len(b) for b, _ in pending) >= job.append_rows:
            added += _append(store, pending)
            pending = []
    added += _append(store, pending)
    info = {
        "partition": partition.digest,
        "views": len(points),
        "embedded": added,
        "already_stored": int(np.count_nonzero(~todo)),
        "seconds": time.perf_counter() - started,
        "worker": worker.address,
    }
    record_partition(Path(job.store), partition.digest, info)
    return info


def _append(store: EmbeddingStore, pending: list[tuple[ViewPoints, np.ndarray]]) -> int:
    """Append buffered batches as one part; returns the rows added."""
    if not pending:
        return 0
    return store.append(
        np.concatenate([b.segment_ids for b, _ in pending]),
        np.concatenate([b.node_ids for b, _ in pending]),
        np.concatenate([b.centers_nm for b, _ in pending]),
        np.concatenate([e for _, e in pending]),
    )


def _ground_truth_rows(
    config: NeuropilConfig, row: tuple[slice, slice], wanted: np.ndarray | None
) -> pd.DataFrame:
    """The true skeleton nodes in a row of blocks along x that lie on their segment.

    As for training data: a node is kept where its segment has a voxel within
    one voxel of it (processes thinner than a voxel may not be rendered). Each
    block holding nodes to keep (of the ``wanted`` segments only, if given) is
    rendered, with a margin so that the test never reaches past it inside the
    volume.
    """
    neuropil = _neuropil(config)
    nodes = neuropil.nodes((*row, slice(0, config.shape[2])))[list(_NODE_COLUMNS)]
    if wanted is not None:
        nodes = nodes[nodes["segment_id"].isin(wanted)]
    x = (nodes["x_nm"].to_numpy() - config.offset[2]) / config.voxel_size[2]
    block = np.clip(np.floor(x + 0.5), 0, config.shape[2] - 1).astype(np.int64) // _PLAN_BLOCK
    kept = [nodes.iloc[:0]]
    for b in np.unique(block):
        these = nodes[block == b]
        box = (*row, slice(b * _PLAN_BLOCK, min((b + 1) * _PLAN_BLOCK, config.shape[2])))
        start = np.maximum([s.start - _MARGIN for s in box], 0)
        stop = np.minimum([s.stop + _MARGIN for s in box], config.shape)
        labels = neuropil.render(tuple(map(slice, start, stop))).segmentation
        corner = np.asarray(config.offset) + start * np.asarray(config.voxel_size)
        volume = Volume(labels, config.voxel_size, tuple(corner), kind="labels")
        kept.append(these[nodes_on_segment(these, volume, labels)])
    return pd.concat(kept, ignore_index=True)


def _rows_to_points(rows: pd.DataFrame, spacing_nm: float) -> ViewPoints:
    """Ground-truth node rows of whole segments → their resampled skeletons' points."""
    skeletons = skeletons_from_nodes(rows)
    return _resampled([skeletons[sid] for sid in sorted(skeletons)], spacing_nm)


def _resampled(skeletons: list[Skeleton], spacing_nm: float) -> ViewPoints:
    """The points of the skeletons resampled every ``spacing_nm`` (node ids: node indices)."""
    return ViewPoints.from_skeletons([resample(s, spacing_nm) for s in skeletons])


# ----------------------------------------------------------------------------- driver


@dataclass(frozen=True)
class DistributedEmbedResult(EmbedResult):
    """What :func:`embed_distributed` did: :class:`~napari_segclr.embed.EmbedResult`, plus

    Attributes
    ----------
    partitions
        Partitions in the plan.
    partitions_run
        Partitions computed in this run.
    partitions_skipped
        Partitions the ledger recorded as finished by an earlier run.
    workers
        Workers in the cluster when the job started.
    plan_s
        Seconds spent planning (skeletons, resampling, partitioning).
    """

    partitions: int
    partitions_run: int
    partitions_skipped: int
    workers: int
    plan_s: float


@contextmanager
def local_client(n_workers: int | None = None, *, threads_per_worker: int = 1) -> Iterator[Client]:
    """A Dask cluster of worker processes on this machine and a client of it, closed on exit.

    Processes, not threads: view extraction and the synthetic renderer hold the
    GIL for part of their time, and a crashed worker is restarted alone. Each
    worker runs ``threads_per_worker`` tasks at once with one torch thread per
    task. Workers start by "spawn", never "fork": a forked copy of a process
    that already runs torch threads (or CUDA) can deadlock.

    Parameters
    ----------
    n_workers
        Worker processes; default one per core available.
    threads_per_worker
        Tasks each worker runs at once.
    """
    n = CPU_COUNT if n_workers is None else _count(n_workers, "n_workers", minimum=1)
    _count(threads_per_worker, "threads_per_worker", minimum=1)
    # Kept for the cluster's lifetime: the nanny reads it again to restart a worker.
    with (
        dask_config({"distributed.worker.multiprocessing-method": "spawn"}),
        LocalCluster(
            n_workers=n,
            threads_per_worker=threads_per_worker,
            processes=True,
            dashboard_address=":0",  # any free port: 8787 may be taken
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def embed_distributed(
    source: DatasetSpec | NeuropilConfig,
    model: SegclrModel | str | os.PathLike[str],
    store: StoreLike,
    *,
    client: Client | None = None,
    partition: PartitionKind = "chunks",
    chunk_nm: float | Sequence[float] = 6144.0,
    partition_views: int = 4096,
    segment_ids: Sequence[int] | None = None,
    skeletons: Mapping[int, Skeleton] | None = None,
    spacing_nm: float = 1000.0,
    batch_size: int = 32,
    append_rows: int = 1024,
    device: str = "auto",
    loader_threads: int = 0,
    skeleton_params: SkeletonParams | None = None,
    chunk_shape: int | Sequence[int] = (256, 256, 256),
    progress: Progress | None = None,
) -> DistributedEmbedResult:
    """Embed the skeleton nodes of a volume's segments on a Dask cluster.

    The store ends up as :func:`~napari_segclr.embed.embed_segments` would
    leave it (same signature, rows and node ids; embeddings equal up to float
    rounding), and the two can resume each other's stores.

    Parameters
    ----------
    source
        The data as the workers open it: a :class:`DatasetSpec`, or a
        :class:`~napari_segclr.synthetic.NeuropilConfig` (rendered chunk by
        chunk on the workers, never whole; its skeletons are its ground-truth
        nodes unless ``skeletons`` are given).
    model
        A SegCLR model, or the path of a checkpoint (read here).
    store
        The embedding store (created if absent), on a file system the workers
        share; refused if it holds another model's or data set's embeddings.
    client
        A client of the cluster to use; default: :func:`local_client` with a
        worker process per core, closed at the end.
    partition
        "chunks" (spatial chunks: neighbouring views share reads) or
        "segments" (runs of segments); see :func:`partition_points`.
    chunk_nm
        Chunk edge in nm, one number or (z, y, x), for "chunks". A task reads
        its chunk and a halo of half a view around it into memory at once
        (a 6 µm chunk at 32 nm: about 40 M voxels a volume); larger chunks
        read fewer voxels twice but hold more.
    partition_views
        Most views in a partition.
    segment_ids, skeletons, spacing_nm, batch_size, skeleton_params, chunk_shape
        As for :func:`~napari_segclr.embed.embed_segments`; a volume given by
        paths is skeletonised on this machine, chunk by chunk.
    append_rows
        Rows a worker gathers per append to the store (one atomic part each):
        a worker that dies loses at most this much work.
    device
        Resolved on each worker: "auto" (CUDA where a worker has it), "cpu",
        "cuda" or "cuda:N". Several workers may share one GPU.
    loader_threads
        Threads in each task cutting views ahead of the model (``workers`` of
        ``embed_segments``); 0: the task thread cuts them, leaving the other
        cores to the other workers.
    progress
        ``progress(done, total)``: over skeletonised chunks (a volume given by
        paths, no ``skeletons``), then over the views of the partitions this
        run computes, as partitions finish. An exception it raises cancels
        the job; finished partitions stay recorded.

    Raises
    ------
    SegmentNotFoundError
        A segment id with no skeleton.
    StoreSignatureError
        The store holds embeddings of another model, data set or spacing.
    CheckpointError
        ``model`` is a path that is no checkpoint.
    """
    kind = _partition_kind(partition)
    chunk = _positive_nm(chunk_nm, "chunk_nm")
    _count(partition_views, "partition_views", minimum=1)
    _count(batch_size, "batch_size", minimum=1)
    _count(append_rows, "append_rows", minimum=1)
    _count(loader_threads, "loader_threads", minimum=0)
    spacing = _positive_length(spacing_nm, "spacing_nm")
    resolve_device(device, check=False)
    data = _as_source(source)
    net = _as_model(model)
    dataset = data.open()
    signature = embedding_signature(net, dataset, spacing_nm=spacing)
    path = _store_path(store)
    if path.exists():  # refused before any work if it belongs to another model or data
        EmbeddingStore.open_or_create(path, signature=signature, dim=net.config.embedding_dim)
    with cluster_client(client) as active:
        workers = len(active.nthreads())
        started = time.perf_counter()
        points, n_segments = _plan(
            active,
            data,
            dataset,
            segment_ids=segment_ids,
            skeletons=skeletons,
            spacing_nm=spacing,
            skeleton_params=skeleton_params,
            chunk_shape=chunk_shape,
            progress=progress,
        )
        lo, hi = dataset.overlap_nm()
        inside = np.all((points.centers_nm >= lo) & (points.centers_nm < hi), axis=1)
        partitions = partition_points(
            points[inside], by=kind, chunk_nm=chunk, max_views=partition_views, origin_nm=lo
        )
        plan_s = time.perf_counter() - started
        opened = EmbeddingStore.open_or_create(
            path, signature=signature, dim=net.config.embedding_dim
        )
        (path / LEDGER).mkdir(exist_ok=True)
        recorded = recorded_partitions(path)
        todo = [p for p in partitions if p.digest not in recorded]
        job = _Job(
            source=data,
            store=str(path),
            signature=signature,
            plugin=f"napari-segclr-model-{uuid.uuid4().hex}",
            device=device,
            batch_size=batch_size,
            loader_threads=loader_threads,
            append_rows=append_rows,
        )
        started = time.perf_counter()
        infos = _run(active, job, net, todo, progress)
        embed_s = time.perf_counter() - started
    if opened.n_parts > MAX_PARTS:
        opened.compact()
    skipped = sum(len(p) for p in partitions if p.digest in recorded)
    return DistributedEmbedResult(
        store=path,
        segments=n_segments,
        nodes=len(points),
        embedded=sum(i["embedded"] for i in infos),
        already_stored=skipped + sum(i["already_stored"] for i in infos),
        outside=int(np.count_nonzero(~inside)),
        embed_s=embed_s,
        partitions=len(partitions),
        partitions_run=len(infos),
        partitions_skipped=len(partitions) - len(todo),
        workers=workers,
        plan_s=plan_s,
    )


def _run(
    client: Client,
    job: _Job,
    model: SegclrModel,
    partitions: list[Partition],
    progress: Progress | None,
) -> list[dict[str, Any]]:
    """Run the partitions with the model registered on the workers; their infos."""
    total = sum(len(p) for p in partitions)
    if progress is not None:
        progress(0, total)
    infos: list[dict[str, Any]] = []

    def finished(info: dict[str, Any]) -> None:
        infos.append(info)
        if progress is not None:
            progress(sum(i["views"] for i in infos), total)

    run_with_model(client, model, job.plugin, _embed_partition, job, partitions, finished)
    return infos


def run_with_model(
    client: Client,
    model: torch.nn.Module,
    plugin: str,
    task: Callable[[Any, T], Any],
    job: Any,
    items: Sequence[T],
    on_result: Callable[[Any], None],
) -> None:
    """``task(job, item)`` for every item on the workers, with ``model`` there as ``plugin``.

    The model is registered once (a :class:`ModelPlugin` named ``plugin``) and
    removed at the end; ``on_result`` gets each task's result as it finishes.
    An exception (from a task or ``on_result``, e.g. a cancel) cancels the tasks
    still running and is raised.
    """
    if not items:
        return
    client.register_plugin(ModelPlugin(copy.deepcopy(model)), name=plugin)
    running = {}
    for item in items:
        future = client.submit(task, job, item, pure=False)
        running[future.key] = future
    try:
        for future in as_completed(list(running.values())):
            result = future.result()
            # Released at once: a finished task's result held on a worker that
            # dies would otherwise be computed again.
            running.pop(future.key).release()
            on_result(result)
    except BaseException:
        client.cancel(list(running.values()))
        raise
    finally:
        client.unregister_worker_plugin(plugin)


def _plan(
    client: Client,
    data: Source,
    dataset: Dataset,
    *,
    segment_ids: Sequence[int] | None,
    skeletons: Mapping[int, Skeleton] | None,
    spacing_nm: float,
    skeleton_params: SkeletonParams | None,
    chunk_shape: int | Sequence[int],
    progress: Progress | None,
) -> tuple[ViewPoints, int]:
    """The view points of every node to embed, sorted by (segment, node); and the segments."""
    threads = max(1, sum(client.nthreads().values()))
    n_tasks = _PLAN_TASKS_PER_THREAD * threads
    if isinstance(data, _Synthetic) and skeletons is None:
        points = _ground_truth_points(client, data.config, segment_ids, spacing_nm, n_tasks)
    else:
        chosen = select_skeletons(
            dataset,
            segment_ids=segment_ids,
            skeletons=skeletons,
            skeleton_params=skeleton_params,
            chunk_shape=chunk_shape,
            progress=progress,
        )
        ordered = [chosen[sid] for sid in sorted(chosen)]
        groups = [
            [ordered[i] for i in group]
            for group in _balanced_groups(np.array([len(s) for s in ordered]), n_tasks)
        ]
        # Unhashed keys: an identical earlier job may still be releasing its keys.
        scattered = client.scatter(groups, hash=False)
        points = _concat(client.gather(client.map(_resampled, scattered, spacing_nm=spacing_nm)))
    return points, len(np.unique(points.segment_ids))


def _ground_truth_points(
    client: Client,
    config: NeuropilConfig,
    segment_ids: Sequence[int] | None,
    spacing_nm: float,
    n_tasks: int,
) -> ViewPoints:
    """Points of the neuropil's true skeletons: nodes gathered by block, skeletons by segment."""
    wanted = None if segment_ids is None else _wanted_ids(segment_ids)
    # A task plans a row of blocks along x: the cells it grows serve the whole row.
    edges = [range(0, n, _PLAN_BLOCK) for n in config.shape[:2]]
    rows_of_blocks = [
        (
            slice(z, min(z + _PLAN_BLOCK, config.shape[0])),
            slice(y, min(y + _PLAN_BLOCK, config.shape[1])),
        )
        for z, y in itertools.product(*edges)
    ]
    tasks = client.map(
        _ground_truth_rows,
        [config] * len(rows_of_blocks),
        rows_of_blocks,
        [wanted] * len(rows_of_blocks),
    )
    rows = pd.concat(client.gather(tasks), ignore_index=True)
    if wanted is not None:
        lost = np.setdiff1d(wanted, rows["segment_id"].to_numpy(np.uint64))
        if len(lost):
            shown = ", ".join(map(str, lost[:5].tolist())) + (", …" if len(lost) > 5 else "")
            raise SegmentNotFoundError(
                f"no skeleton for segment(s) {shown}: no ground-truth node of the synthetic "
                "neuropil lies on them"
            )
    rows = rows[rows["segment_id"] != 0].sort_values("segment_id", kind="stable")
    segment_of_row = rows["segment_id"].to_numpy(np.uint64)
    starts = np.flatnonzero(np.r_[True, segment_of_row[1:] != segment_of_row[:-1]])
    sizes = np.diff(np.r_[starts, len(rows)])
    pieces = []
    for group in _balanced_groups(sizes, n_tasks):
        first, last = starts[group[0]], starts[group[-1]] + sizes[group[-1]]
        pieces.append(rows.iloc[first:last])
    scattered = client.scatter(pieces, hash=False)
    return _concat(client.gather(client.map(_rows_to_points, scattered, spacing_nm=spacing_nm)))


def _wanted_ids(segment_ids: Sequence[int]) -> np.ndarray:
    """Distinct segment ids, ascending; 0 and an empty list are refused."""
    wanted = np.unique(as_segment_ids(list(segment_ids), name="segment_ids"))
    if len(wanted) == 0:
        raise ValueError("segment_ids is empty; pass None to embed every segment")
    if wanted[0] == 0:
        raise SegmentNotFoundError("segment id 0 is the background, not a segment")
    return wanted


def _balanced_groups(sizes: np.ndarray, n_groups: int) -> list[np.ndarray]:
    """Indices of the items, cut into at most ``n_groups`` runs of about equal total size."""
    if len(sizes) == 0:
        return []
    ends = np.cumsum(sizes)
    group = np.floor((ends - sizes) * n_groups / max(int(ends[-1]), 1)).astype(np.int64)
    items = np.arange(len(sizes))
    return np.split(items, np.flatnonzero(np.diff(group)) + 1)


def _concat(pieces: list[ViewPoints]) -> ViewPoints:
    if not pieces:
        return ViewPoints(np.zeros(0, np.uint64), np.zeros(0, np.int64), np.zeros((0, 3)))
    return ViewPoints(
        np.concatenate([p.segment_ids for p in pieces]),
        np.concatenate([p.node_ids for p in pieces]),
        np.concatenate([p.centers_nm for p in pieces]),
    )


@contextmanager
def cluster_client(client: Client | None) -> Iterator[Client]:
    """The client given, or one of a local cluster started for the job and closed after."""
    if client is not None:
        yield client
        return
    with local_client() as local:
        yield local


def _as_source(source: DatasetSpec | NeuropilConfig) -> Source:
    if isinstance(source, DatasetSpec):
        return source
    if isinstance(source, NeuropilConfig):
        return _Synthetic(source)
    raise TypeError(
        f"source must be a DatasetSpec or a NeuropilConfig (workers open the volumes "
        f"themselves), got {type(source).__name__}"
    )


def _as_model(model: SegclrModel | str | os.PathLike[str]) -> SegclrModel:
    if isinstance(model, SegclrModel):
        return model
    if isinstance(model, str | os.PathLike):
        return load_checkpoint(Path(model).expanduser())[0]
    raise TypeError(f"model must be a SegclrModel or a checkpoint path, got {model!r}")


def _store_path(store: StoreLike) -> Path:
    path = store.path if isinstance(store, EmbeddingStore) else Path(store).expanduser()
    return path.absolute()


def _partition_kind(value: str) -> PartitionKind:
    if value not in PARTITION_KINDS:
        raise ValueError(f"partition must be 'segments' or 'chunks', got {value!r}")
    return value


def _positive_nm(value: float | Sequence[float], name: str) -> np.ndarray:
    """One positive finite length in nm, or three (z, y, x), as a (3,) array."""
    try:
        arr = np.broadcast_to(np.asarray(value, dtype=np.float64), (3,))
    except (TypeError, ValueError):
        raise ShapeMismatchError(
            f"{name} must be one length in nm or three, got {value!r}"
        ) from None
    if not np.all(np.isfinite(arr) & (arr > 0)):
        raise ValueError(f"{name} must be positive lengths in nm, got {value!r}")
    return arr


def _positive_length(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"{name} must be a positive number of nm, got {value!r}")
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number of nm, got {value!r}")
    return float(value)


def _count(value: int, name: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)
